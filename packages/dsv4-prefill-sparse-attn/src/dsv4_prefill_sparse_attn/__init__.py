"""dsv4-prefill-sparse-attn: DeepSeek-V4 prefill attention for SWA, CSA and HCA layers.

    out = prefill_sparse_attn(q, kv, kv_cache, block_table, start_pos, attn_sink, wo_a, wo_b,
                              compress_ratio=4, cmp_kv=..., cmp_block_table=..., topk_idxs=...,
                              config=FLASH, backend="auto")                    # [T, hidden]

A chunk of T tokens of one request at positions start_pos … start_pos+T−1. Token t at
position p attends the positions max(0, p−W+1) … p (the chunk's own tokens t' ≤ t from the
fresh `kv`, older ones from the request's ring page, which holds the W positions before
the chunk), plus for HCA (ratio 128) every compressed entry c < (p+1)//128 and for CSA
(ratio 4) the indexer's top-k entries with c < (p+1)//4. Softmax with the per-head sink in
the denominator, inverse RoPE at the query position (main profile for SWA, compress
profile for CSA / HCA), grouped low-rank output projection. The kernel, golden and index
plumbing (with the visibility rule shared with the decode packages) are
dsv4-sparse-attn-common's."""

from __future__ import annotations

import torch

from dsv4_core import AttentionConfig, resolve_backend
from dsv4_core.backends import on_device
from dsv4_core.config import kind_for_ratio
from dsv4_sparse_attn_common import (
    ROPE_ABI_CONSUMED,
    attend,
    index_rows,
    index_rows_unchecked,
    kernel_inputs,
    resolve,
    run_sparse_attn,
    share_group,
    validate_attention_args,
)
from dsv4_sparse_attn_common import write_window_cache as _write_window_cache

__version__ = "0.4.2"
# ROPE_ABI_CONSUMED: the family's (its kernel and golden do the rotation; it checks the ABI at import)

__all__ = ["ROPE_ABI_CONSUMED", "build_indices", "chunk_positions", "cmp_columns", "prefill_sparse_attn",
           "update_window_cache", "__version__"]


def chunk_positions(start_pos: int, tokens: int) -> torch.Tensor:
    """positions [1, T] of a chunk."""
    if not isinstance(start_pos, int) or isinstance(start_pos, bool) or start_pos < 0:
        raise ValueError(f"start_pos must be an int >= 0, got {start_pos!r}")
    if tokens < 1:
        raise ValueError(f"the chunk must hold at least one token, got T={tokens}")
    return (start_pos + torch.arange(tokens, dtype=torch.int64)).reshape(1, -1)


def build_indices(start_pos: int, tokens: int, *, compress_ratio: int, config: AttentionConfig,
                  topk_idxs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token index rows [T, K] int32 and lengths [T] int32 for a chunk (the prefill index
    contract): row t holds its valid entries first — the window positions oldest first
    (ring slot `pos % W` for positions before the chunk, `W + t'` for the chunk's token t'),
    then the compressed entries as `W + T + c` (HCA: every c < (p+1)//128 in order; CSA: the
    top-k entries with 0 ≤ c < (p+1)//4 in the caller's order) — then −1; lens[t] is the
    count. K = max(lens). topk_idxs [T, k] (CSA only): compressed entry ids, −1 none."""
    idx = index_rows(chunk_positions(start_pos, tokens), window=config.window, compress_ratio=compress_ratio,
                     topk_idxs=topk_idxs)
    order = torch.argsort((idx < 0).to(torch.int8), dim=1, stable=True)  # valid entries first, order kept
    idx = idx.gather(1, order)
    lens = (idx >= 0).sum(1).to(torch.int32)
    return idx[:, :max(1, int(lens.max()))].contiguous(), lens


def update_window_cache(kv_cache: torch.Tensor, block_table: torch.Tensor, start_pos: int, kv: torch.Tensor) -> None:
    """The ring write-back after attention: the chunk's last ≤ W positions into the page."""
    _write_window_cache(kv_cache, block_table, chunk_positions(start_pos, kv.shape[0]), kv)


def cmp_columns(cmp_kv: torch.Tensor, cmp_block_table: torch.Tensor, start_pos: int, tokens: int,
                compress_ratio: int) -> int:
    """HCA's compressed columns with validate=False: the most entries the chunk's last token
    sees, (start_pos + tokens) // ratio (host ints: nothing read back), capped by the block
    table's capacity M·blk (the kernel masks what a token may not see yet)."""
    return min(cmp_block_table.shape[-1] * cmp_kv.shape[1], (start_pos + tokens) // compress_ratio)


def prefill_sparse_attn(q: torch.Tensor, kv: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                        start_pos: int, attn_sink: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *,
                        compress_ratio: int, config: AttentionConfig, cmp_kv: torch.Tensor | None = None,
                        cmp_block_table: torch.Tensor | None = None, topk_idxs: torch.Tensor | None = None,
                        backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """Prefill sparse attention for one chunk; returns [T, hidden] bf16.

    q [T, H, 512] bf16, kv [T, 512] bf16 (the chunk, from qkv_proj_rope); kv_cache
    [P, W, 512] bf16 ring pages and block_table [1] int (the request's page, holding the
    positions start_pos−W … start_pos−1); start_pos int ≥ 0; attn_sink [H] fp32; wo_a
    [G, o_lora, hpg·512], wo_b [hidden, G·o_lora] bf16; compress_ratio 0 / 4 / 128 (the
    layer); CSA / HCA: cmp_kv [P2, blk, 512] bf16 with cmp_block_table [M] int (entry c at
    cmp_kv[cmp_block_table[c // blk], c % blk], the compressor has run on the chunk); CSA:
    topk_idxs [T, k] int from the indexer. Caches are not written (`update_window_cache`).

    The kernel backends hand the kernel the caches as they are (it resolves pages and rows
    itself). validate=True (default) checks the values (top-k, block tables, positions:
    read back on the host); validate=False reads nothing back (an entry the kernel cannot
    resolve selects nothing; HCA takes its compressed width from the chunk's last
    position, min(M·blk, (start_pos + T) // ratio), the width the validated path reads).
    The 'torch' backend is the golden and always validates."""
    cfg = config
    kind = kind_for_ratio(compress_ratio)
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor, got {type(q).__name__}")
    T = q.shape[0]
    p = chunk_positions(start_pos, T)
    if kind == "swa" and (cmp_kv is not None or cmp_block_table is not None):
        raise ValueError("cmp_kv / cmp_block_table are only taken by CSA and HCA layers (compress_ratio 4 / 128)")
    if kind != "swa" and (cmp_kv is None or cmp_block_table is None):
        raise ValueError(f"cmp_kv and cmp_block_table are required for a {kind.upper()} layer "
                         f"(compress_ratio {compress_ratio})")
    validate_attention_args(cfg, q, kv, kv_cache, block_table, attn_sink, wo_a, wo_b, tokens=T, requests=1,
                            cmp_kv=cmp_kv, cmp_block_table=cmp_block_table, cmp_block_table_dims=1)
    be = resolve_backend(backend)
    name = f"prefill_sparse_attn_{kind}"
    g = share_group(compress_ratio, 1, T)
    if be == "torch" or validate:
        # window columns, then compressed ones (the kernel's order; `build_indices` compacts them)
        idx = index_rows(p, window=cfg.window, compress_ratio=compress_ratio, topk_idxs=topk_idxs, group=g)
    if be == "torch":
        res = resolve(cfg, p, idx, kv=kv, kv_cache=kv_cache, block_table=block_table, compress_ratio=compress_ratio,
                      cmp_kv=cmp_kv, cmp_block_table=cmp_block_table)
        return attend(cfg, be, q, res, attn_sink, wo_a, wo_b, name=name)
    if not validate:
        if kind == "csa" and topk_idxs is None:
            raise ValueError("topk_idxs is required for a CSA layer (compress_ratio 4)")
        if kind != "csa" and topk_idxs is not None:
            raise ValueError(f"topk_idxs is only taken by CSA layers (compress_ratio 4), got compress_ratio "
                             f"{compress_ratio}")
        cap = cmp_columns(cmp_kv, cmp_block_table, start_pos, T, compress_ratio) if kind == "hca" else 0
        idx = index_rows_unchecked(on_device(p, q.device), window=cfg.window,
                                   compress_ratio=compress_ratio, topk_idxs=topk_idxs, cmp_capacity=cap, group=g)
    ki = kernel_inputs(cfg, p, idx, kv=kv, kv_cache=kv_cache, block_table=block_table, compress_ratio=compress_ratio,
                       cmp_kv=cmp_kv, cmp_block_table=cmp_block_table, validate=validate, group=g)
    return run_sparse_attn(cfg, be, q, ki, attn_sink, wo_a, wo_b, name=name)
