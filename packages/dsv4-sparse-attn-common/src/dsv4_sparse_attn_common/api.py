"""What the sparse-attention packages' public functions and goldens share after their own
index contract: the kernel's inputs (`kernel_inputs`: the caches as they are, logical index
rows, RoPE rows at the query positions; the value checks under `validate=True`), the torch
golden's physical rows over its one KV source (`resolve`), the whole decode entry point of
the three decode packages (`decode_attention`), and the torch golden / fp64 evaluation of a
scenario's inputs (`Golden`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import torch

from dsv4_core import resolve_backend
from dsv4_core.backends import on_device
from dsv4_rope_tables import profile_for_ratio, rope_rows
from dsv4_rope_tables.tables import frequencies

from .indexing import check_positions_grid, index_rows, index_rows_unchecked, prepare, resolve_rows
from .kernel import KernelInputs, kv_tile, paged_window, run_sparse_attn, share_group
from .reference import sparse_attention_exact, sparse_attention_reference
from .validate import validate_attention_args


class Resolved(NamedTuple):
    """A call resolved for the torch golden: the KV source [N, D] (ring ‖ step kv ‖
    compressed, a host concatenation: the golden's, never the kernel's), physical rows
    [T, K] (−1 none) and the canonical RoPE rows cos / sin [T, R] at the query positions."""

    src: torch.Tensor
    rows: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor


def resolve(cfg, positions: torch.Tensor, indices: torch.Tensor, *, kv: torch.Tensor, kv_cache: torch.Tensor,
            block_table: torch.Tensor, compress_ratio: int = 0, cmp_kv: torch.Tensor | None = None,
            cmp_block_table: torch.Tensor | None = None, lens: torch.Tensor | None = None,
            name: str = "indices") -> Resolved:
    """The golden's view of a call: RoPE rows at positions [B, S] (the layer's profile;
    positions past the model's range are refused first) and logical index rows [B·S, K] →
    physical rows of the one KV source (`prepare`)."""
    cos, sin = rope_rows(profile_for_ratio(cfg, compress_ratio), positions.reshape(-1))
    src, rows = prepare(indices, positions, window=cfg.window, kv=kv, kv_cache=kv_cache, block_table=block_table,
                        compress_ratio=compress_ratio, cmp_kv=cmp_kv, cmp_block_table=cmp_block_table, lens=lens,
                        name=name)
    return Resolved(src, rows, cos, sin)


def rope_rows_unchecked(profile, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dsv4-rope-tables' `rope_rows` without its range check (nothing read back; computed on
    the positions' device): the same fp32 angle fp32(p)·ω, cos / sin in fp64, rounded to
    fp32, sign-folded sine."""
    pos = positions.reshape(-1)
    freqs = on_device(frequencies(profile), pos.device)
    ang = (pos.reshape(-1, 1).to(torch.float32) * freqs.reshape(1, -1)).to(torch.float64)
    sign = torch.ones(profile.dim, dtype=torch.float64, device=pos.device)
    sign[0::2] = -1.0
    cos = torch.cos(ang).repeat_interleave(2, dim=-1)
    sin = torch.sin(ang).repeat_interleave(2, dim=-1) * sign
    return cos.to(torch.float32), sin.to(torch.float32)


def kernel_inputs(cfg, positions: torch.Tensor, indices: torch.Tensor, *, kv: torch.Tensor, kv_cache: torch.Tensor,
                  block_table: torch.Tensor, compress_ratio: int = 0, cmp_kv: torch.Tensor | None = None,
                  cmp_block_table: torch.Tensor | None = None, validate: bool = True,
                  name: str = "indices", group: int = 1, paged: bool = False) -> KernelInputs:
    """The kernel's view of a call: the caches as they are, the logical index rows and the
    RoPE rows at the query positions. validate=True first runs the value checks that read
    positions, indices and tables back (`resolve_rows`' refusals, the RoPE range);
    validate=False reads nothing back (the kernel selects nothing for an out-of-range entry).
    `group`: the row-sharing runs the index rows were built with (`share_group`); `paged`:
    their window columns are in the ring page's order (`paged_window_rows`)."""
    prof = profile_for_ratio(cfg, compress_ratio)
    if validate:
        resolve_rows(indices, positions, window=cfg.window, ring_pages=block_table, num_ring_pages=kv_cache.shape[0],
                     compress_ratio=compress_ratio, cmp_block_table=cmp_block_table,
                     cmp_block_size=cmp_kv.shape[1] if cmp_kv is not None else 0,
                     num_cmp_pages=cmp_kv.shape[0] if cmp_kv is not None else 0, name=name)
        cos, sin = rope_rows(prof, positions.reshape(-1))
    else:
        cos, sin = rope_rows_unchecked(prof, positions)
    dev = kv.device
    return KernelInputs(kv, kv_cache, block_table, on_device(positions, dev), on_device(indices, dev), compress_ratio,
                        cmp_kv, cmp_block_table, on_device(cos, dev), on_device(sin, dev), group, paged)


def attend(cfg, backend: str, q: torch.Tensor, res: Resolved, attn_sink: torch.Tensor, wo_a: torch.Tensor,
           wo_b: torch.Tensor, *, name: str = "sparse_attn", paged: bool = False) -> torch.Tensor:
    """The torch golden of a resolved call (the 'torch' backend), tiled as the kernel tiles
    its rows (`kv_tile`; `paged`: paged window rows)."""
    dev = q.device
    cos, sin = res.cos.to(dev), res.sin.to(dev)
    return sparse_attention_reference(q, res.src, res.rows, attn_sink, cos, sin, wo_a, wo_b,
                                      softmax_scale=cfg.softmax_scale,
                                      tile=kv_tile(res.rows.shape[1], paged)).to(dev)


def check_positions_shape(positions) -> None:
    """positions must be a 2-D [B, S] integer tensor (shape and dtype only: nothing read)."""
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be a torch.Tensor, got {type(positions).__name__}")
    if positions.dim() != 2 or positions.shape[1] == 0 or positions.shape[0] == 0:
        raise ValueError(f"positions must be 2-D [B, S] with B, S >= 1, got shape {list(positions.shape)}")
    if positions.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"positions must be an int32 / int64 tensor, got {positions.dtype}")


def _decode_layout(compress_ratio: int, batch: int, seq: int) -> tuple[bool, int]:
    """How a decode step of `batch` × `seq` tokens lays out its index rows: whether the window
    columns are paged (`paged_window`) and the row-sharing group (`share_group`). The public
    call and the golden's rows (`decode_rows`) take it from here, so they cannot disagree."""
    paged = paged_window(compress_ratio)
    return paged, share_group(compress_ratio, batch, seq, paged=paged)


def decode_attention(q: torch.Tensor, kv: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                     positions: torch.Tensor, attn_sink: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *,
                     config, backend: str, compress_ratio: int, cmp_kv: torch.Tensor | None = None,
                     cmp_block_table: torch.Tensor | None = None, topk_idxs: torch.Tensor | None = None,
                     name: str, validate: bool = True) -> torch.Tensor:
    """A decode step of S ≥ 1 tokens for each of B requests on a layer of `compress_ratio`
    (0 SWA, 4 CSA with the indexer's `topk_idxs`, 128 HCA): check, build the layer's
    index rows and run on the chosen backend. Returns [B·S, hidden] bf16; no cache is
    written. The decode packages' public functions.

    Shapes, dtypes and devices are always checked. validate=True (default) also checks the
    values (positions, indices, block tables: read back on the host); validate=False reads
    nothing back on the kernel backends — the kernel resolves the rows and selects nothing
    for an entry it cannot resolve. HCA with validate=False takes its compressed width from
    the compressed block table's capacity (M·blk columns) instead of the most entries any
    token sees. The 'torch' backend is the golden: it validates whatever `validate` says."""
    cfg = config
    check_positions_shape(positions)
    B, S = positions.shape
    validate_attention_args(cfg, q, kv, kv_cache, block_table, attn_sink, wo_a, wo_b, tokens=B * S, requests=B,
                            cmp_kv=cmp_kv, cmp_block_table=cmp_block_table)
    if isinstance(topk_idxs, torch.Tensor) and topk_idxs.device != q.device:
        raise ValueError(f"all tensors must be on one device: topk_idxs is on {topk_idxs.device}, q on {q.device}")
    be = resolve_backend(backend)
    tname = "indices" if topk_idxs is None else "topk_idxs"
    paged, g = _decode_layout(compress_ratio, B, S)
    if be == "torch" or validate:
        p = check_positions_grid(positions)
        idx = index_rows(p, window=cfg.window, compress_ratio=compress_ratio, topk_idxs=topk_idxs, group=g,
                         paged=paged)
    if be == "torch":
        res = resolve(cfg, p, idx, kv=kv, kv_cache=kv_cache, block_table=block_table, compress_ratio=compress_ratio,
                      cmp_kv=cmp_kv, cmp_block_table=cmp_block_table, name=tname)
        return attend(cfg, be, q, res, attn_sink, wo_a, wo_b, name=name, paged=paged)
    if not validate:
        if compress_ratio == 4 and topk_idxs is None:
            raise ValueError("topk_idxs is required for a CSA layer (compress_ratio 4)")
        if compress_ratio != 4 and topk_idxs is not None:
            raise ValueError(f"topk_idxs is only taken by CSA layers (compress_ratio 4), got compress_ratio "
                             f"{compress_ratio}")
        if compress_ratio and (cmp_kv is None or cmp_block_table is None):
            raise ValueError(f"cmp_kv and cmp_block_table are required for compress_ratio {compress_ratio}")
        cap = cmp_block_table.shape[-1] * cmp_kv.shape[1] if cmp_kv is not None else 0
        p = positions
        idx = index_rows_unchecked(p, window=cfg.window, compress_ratio=compress_ratio, topk_idxs=topk_idxs,
                                   cmp_capacity=cap, group=g, paged=paged)
    ki = kernel_inputs(cfg, p, idx, kv=kv, kv_cache=kv_cache, block_table=block_table, compress_ratio=compress_ratio,
                       cmp_kv=cmp_kv, cmp_block_table=cmp_block_table, validate=validate, name=tname, group=g,
                       paged=paged)
    return run_sparse_attn(cfg, be, q, ki, attn_sink, wo_a, wo_b, name=name)


def decode_rows(cfg, inputs: dict, *, compress_ratio: int) -> tuple[torch.Tensor, int]:
    """The logical index rows `decode_attention` builds for a decode scenario's inputs, and
    their row-sharing group."""
    p = inputs["positions"]
    paged, g = _decode_layout(compress_ratio, *p.shape)
    return index_rows(p, window=cfg.window, compress_ratio=compress_ratio, topk_idxs=inputs.get("topk_idxs"),
                      group=g, paged=paged), g


def decode_resolved(cfg, inputs: dict, *, compress_ratio: int) -> Resolved:
    """`Resolved` of a decode scenario's inputs (the keys of `decode_attention`'s arguments)."""
    p = inputs["positions"]
    idx, _ = decode_rows(cfg, inputs, compress_ratio=compress_ratio)
    return resolve(cfg, p, idx, kv=inputs["kv"], kv_cache=inputs["kv_cache"], block_table=inputs["block_table"],
                   compress_ratio=compress_ratio, cmp_kv=inputs.get("cmp_kv"),
                   cmp_block_table=inputs.get("cmp_block_table"))


def decode_kernel_inputs(cfg, inputs: dict, *, compress_ratio: int) -> KernelInputs:
    """`KernelInputs` of a decode scenario's inputs (what `decode_attention` hands the kernel)."""
    p = inputs["positions"]
    idx, g = decode_rows(cfg, inputs, compress_ratio=compress_ratio)
    return kernel_inputs(cfg, p, idx, kv=inputs["kv"], kv_cache=inputs["kv_cache"],
                         block_table=inputs["block_table"], compress_ratio=compress_ratio,
                         cmp_kv=inputs.get("cmp_kv"), cmp_block_table=inputs.get("cmp_block_table"), group=g,
                         paged=paged_window(compress_ratio))


@dataclasses.dataclass(frozen=True)
class Golden:
    """The torch golden of one module over a scenario's inputs (a dict with q, attn_sink,
    wo_a, wo_b and what `resolved(cfg, inputs) -> Resolved` reads): `reference` (bf16, the
    kernel's rounding points) and `exact` (fp64, no intermediate rounding), from the same
    physical rows; `kernel(cfg, inputs) -> KernelInputs` is what the public function hands
    the kernel for the same inputs (the perturbed and timing runs use it); `paged`: its
    rows are paged window rows, tiled as the kernel tiles them (`kv_tile`)."""

    resolved: Callable[[Any, dict], Resolved]
    kernel: Callable[[Any, dict], KernelInputs] | None = None
    paged: bool = False

    def reference(self, cfg, inputs: dict) -> torch.Tensor:
        r = self.resolved(cfg, inputs)
        return sparse_attention_reference(inputs["q"], r.src, r.rows, inputs["attn_sink"], r.cos, r.sin,
                                          inputs["wo_a"], inputs["wo_b"], softmax_scale=cfg.softmax_scale,
                                          tile=kv_tile(r.rows.shape[1], self.paged))

    def exact(self, cfg, inputs: dict) -> torch.Tensor:
        r = self.resolved(cfg, inputs)
        return sparse_attention_exact(inputs["q"], r.src, r.rows, inputs["attn_sink"], r.cos, r.sin, inputs["wo_a"],
                                      inputs["wo_b"], softmax_scale=cfg.softmax_scale)


def decode_golden(compress_ratio: int) -> Golden:
    """The golden of a decode package: its scenario inputs resolved by `decode_resolved`."""
    return Golden(functools.partial(decode_resolved, compress_ratio=compress_ratio),
                  functools.partial(decode_kernel_inputs, compress_ratio=compress_ratio), paged_window(compress_ratio))
