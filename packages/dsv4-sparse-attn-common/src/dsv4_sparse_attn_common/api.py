"""What the sparse-attention packages' public functions and goldens share after their own
index contract: RoPE rows at the query positions and physical rows (`resolve`), the run on a
resolved backend (`attend`), the whole decode entry point of the three decode packages
(`decode_attention`), and the torch golden / fp64 evaluation of a scenario's inputs
(`Golden`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import torch

from dsv4_core import resolve_backend
from dsv4_rope_tables import profile_for_ratio, rope_rows

from .indexing import check_positions_grid, index_rows, prepare
from .kernel import run_sparse_attn
from .reference import sparse_attention_exact, sparse_attention_reference
from .validate import validate_attention_args


class Resolved(NamedTuple):
    """A call resolved for the kernel: the KV source [N, D], physical rows [T, K] (−1 none)
    and the canonical RoPE rows cos / sin [T, R] at the query positions."""

    src: torch.Tensor
    rows: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor


def resolve(cfg, positions: torch.Tensor, indices: torch.Tensor, *, kv: torch.Tensor, kv_cache: torch.Tensor,
            block_table: torch.Tensor, compress_ratio: int = 0, cmp_kv: torch.Tensor | None = None,
            cmp_block_table: torch.Tensor | None = None, lens: torch.Tensor | None = None,
            name: str = "indices") -> Resolved:
    """RoPE rows at positions [B, S] (the layer's profile; positions past the model's range
    are refused first) and logical index rows [B·S, K] → physical rows (`prepare`)."""
    cos, sin = rope_rows(profile_for_ratio(cfg, compress_ratio), positions.reshape(-1))
    src, rows = prepare(indices, positions, window=cfg.window, kv=kv, kv_cache=kv_cache, block_table=block_table,
                        compress_ratio=compress_ratio, cmp_kv=cmp_kv, cmp_block_table=cmp_block_table, lens=lens,
                        name=name)
    return Resolved(src, rows, cos, sin)


def attend(cfg, backend: str, q: torch.Tensor, res: Resolved, attn_sink: torch.Tensor, wo_a: torch.Tensor,
           wo_b: torch.Tensor, *, name: str = "sparse_attn") -> torch.Tensor:
    """Run the resolved attention on a resolved backend: 'torch' (the golden) or the pypto
    kernel ('sim' / 'npu'). Never falls back from one to the other."""
    dev = q.device
    cos, sin = res.cos.to(dev), res.sin.to(dev)
    if backend == "torch":
        return sparse_attention_reference(q, res.src, res.rows, attn_sink, cos, sin, wo_a, wo_b,
                                          softmax_scale=cfg.softmax_scale).to(dev)
    return run_sparse_attn(cfg, backend, q, res.src, res.rows, attn_sink, cos, sin, wo_a, wo_b, name=name)


def decode_attention(q: torch.Tensor, kv: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                     positions: torch.Tensor, attn_sink: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *,
                     config, backend: str, compress_ratio: int, cmp_kv: torch.Tensor | None = None,
                     cmp_block_table: torch.Tensor | None = None, topk_idxs: torch.Tensor | None = None,
                     name: str) -> torch.Tensor:
    """A decode step of S ≥ 1 tokens for each of B requests on a layer of `compress_ratio`
    (0 SWA, 4 CSA with the indexer's `topk_idxs`, 128 HCA): validate, build the layer's
    index rows (`index_rows`), resolve them and run on the chosen backend. Returns
    [B·S, hidden] bf16; no cache is written. The decode packages' public functions."""
    cfg = config
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be a torch.Tensor, got {type(positions).__name__}")
    p = check_positions_grid(positions)
    B, S = p.shape
    validate_attention_args(cfg, q, kv, kv_cache, block_table, attn_sink, wo_a, wo_b, tokens=B * S, requests=B,
                            cmp_kv=cmp_kv, cmp_block_table=cmp_block_table)
    if isinstance(topk_idxs, torch.Tensor) and topk_idxs.device != q.device:
        raise ValueError(f"all tensors must be on one device: topk_idxs is on {topk_idxs.device}, q on {q.device}")
    be = resolve_backend(backend)
    idx = index_rows(p, window=cfg.window, compress_ratio=compress_ratio, topk_idxs=topk_idxs)
    res = resolve(cfg, p, idx, kv=kv, kv_cache=kv_cache, block_table=block_table, compress_ratio=compress_ratio,
                  cmp_kv=cmp_kv, cmp_block_table=cmp_block_table,
                  name="indices" if topk_idxs is None else "topk_idxs")
    return attend(cfg, be, q, res, attn_sink, wo_a, wo_b, name=name)


def decode_resolved(cfg, inputs: dict, *, compress_ratio: int) -> Resolved:
    """`Resolved` of a decode scenario's inputs (the keys of `decode_attention`'s arguments)."""
    p = inputs["positions"]
    idx = index_rows(p, window=cfg.window, compress_ratio=compress_ratio, topk_idxs=inputs.get("topk_idxs"))
    return resolve(cfg, p, idx, kv=inputs["kv"], kv_cache=inputs["kv_cache"], block_table=inputs["block_table"],
                   compress_ratio=compress_ratio, cmp_kv=inputs.get("cmp_kv"),
                   cmp_block_table=inputs.get("cmp_block_table"))


@dataclasses.dataclass(frozen=True)
class Golden:
    """The torch golden of one module over a scenario's inputs (a dict with q, attn_sink,
    wo_a, wo_b and what `resolved(cfg, inputs) -> Resolved` reads): `reference` (bf16, the
    kernel's rounding points) and `exact` (fp64, no intermediate rounding), from the same
    physical rows."""

    resolved: Callable[[Any, dict], Resolved]

    def reference(self, cfg, inputs: dict) -> torch.Tensor:
        r = self.resolved(cfg, inputs)
        return sparse_attention_reference(inputs["q"], r.src, r.rows, inputs["attn_sink"], r.cos, r.sin,
                                          inputs["wo_a"], inputs["wo_b"], softmax_scale=cfg.softmax_scale)

    def exact(self, cfg, inputs: dict) -> torch.Tensor:
        r = self.resolved(cfg, inputs)
        return sparse_attention_exact(inputs["q"], r.src, r.rows, inputs["attn_sink"], r.cos, r.sin, inputs["wo_a"],
                                      inputs["wo_b"], softmax_scale=cfg.softmax_scale)


def decode_golden(compress_ratio: int) -> Golden:
    """The golden of a decode package: its scenario inputs resolved by `decode_resolved`."""
    return Golden(functools.partial(decode_resolved, compress_ratio=compress_ratio))
