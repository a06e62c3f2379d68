"""dsv4-sparse-attn-csa: DeepSeek-V4 decode attention for CSA layers (compress ratio 4).

    out = sparse_attn_csa(q, kv, kv_cache, block_table, cmp_kv, cmp_block_table, topk_idxs,
                          positions, attn_sink, wo_a, wo_b, config=FLASH, backend="auto")

Each token at position p attends its window (the last `window` positions including itself,
older ones from the ring page, the step's own tokens from the fresh `kv`) plus the indexer's
top-k compressed entries that pass the causal cut c < (p+1)//4 (the decode indexer scores
the whole step at the request's length, so an earlier token of the step may be handed an
entry only its later sibling may see: it is masked). Softmax with the per-head sink in the
denominator, inverse RoPE at the query position (compress profile), grouped low-rank
output projection."""

from __future__ import annotations

import torch

from dsv4_core import AttentionConfig, resolve_backend
from dsv4_core.attention import (
    attend,
    check_positions_grid,
    compressed_indices,
    prepare,
    validate_attention_args,
    window_indices,
)
from dsv4_core.attention import write_window_cache as update_window_cache
from dsv4_core.checks import check_tensor
from dsv4_rope_tables import profile_for_ratio, require_abi, rope_rows, rotate
from dsv4_rope_tables.pypto_block import rope_rotate, swap_index

__version__ = "0.2.1"
ROPE_ABI_CONSUMED = "dsv4-rope/1"
require_abi("dsv4-sparse-attn-csa", ROPE_ABI_CONSUMED)
COMPRESS_RATIO = 4

__all__ = ["COMPRESS_RATIO", "ROPE_ABI_CONSUMED", "build_indices", "sparse_attn_csa", "update_window_cache",
           "__version__"]


def build_indices(positions: torch.Tensor, topk_idxs: torch.Tensor, *, config: AttentionConfig) -> torch.Tensor:
    """Index rows [B·S, W + k] int32 for positions [B, S] and the indexer's top-k [B·S, k]
    (compressed entry ids, −1 none, any order, holes allowed): columns [0, W) the window
    (ring slot `pos % W` or overlay `W + s'`, see dsv4-sparse-attn-swa), then `W + S + c`
    for each top-k entry with 0 ≤ c < (p+1)//4 in the caller's order, −1 for the others
    (the causal cut). Values below −1 are refused."""
    p = check_positions_grid(positions)
    B, S = p.shape
    check_tensor("topk_idxs", topk_idxs, shape=(B * S, None), dtype=(torch.int32, torch.int64))
    tk = topk_idxs.to("cpu", torch.int64)
    if tk.numel() and int(tk.min()) < -1:
        raise ValueError(f"topk_idxs values must be >= -1 (-1 = none), got {int(tk.min())}")
    vis = ((p.reshape(-1) + 1) // COMPRESS_RATIO)[:, None]
    ent = torch.where((tk >= 0) & (tk < vis), tk, torch.full_like(tk, -1))
    return torch.cat([window_indices(p, config.window), compressed_indices(ent, config.window, S)], 1)


def sparse_attn_csa(q: torch.Tensor, kv: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                    cmp_kv: torch.Tensor, cmp_block_table: torch.Tensor, topk_idxs: torch.Tensor,
                    positions: torch.Tensor, attn_sink: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *,
                    config: AttentionConfig, backend: str = "auto") -> torch.Tensor:
    """CSA decode attention; returns [B·S, hidden] bf16.

    q [B·S, H, 512] bf16 and kv [B·S, 512] bf16 (this step, token b·S + s); kv_cache
    [P, W, 512] bf16 ring pages, block_table [B] int; cmp_kv [P2, blk, 512] bf16 compressed
    pages (entry c of request b at cmp_kv[cmp_block_table[b, c // blk], c % blk]),
    cmp_block_table [B, M] int; topk_idxs [B·S, k] int compressed entry ids from the
    indexer (no window offset; −1 none); positions [B, S] int consecutive per request;
    attn_sink [H] fp32; wo_a [G, o_lora, hpg·512], wo_b [hidden, G·o_lora] bf16. Caches
    are not written."""
    cfg = config
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be a torch.Tensor, got {type(positions).__name__}")
    p = check_positions_grid(positions)
    B, S = p.shape
    validate_attention_args(cfg, q, kv, kv_cache, block_table, attn_sink, wo_a, wo_b, tokens=B * S, requests=B,
                            cmp_kv=cmp_kv, cmp_block_table=cmp_block_table)
    if topk_idxs.device != q.device:
        raise ValueError(f"all tensors must be on one device: topk_idxs is on {topk_idxs.device}, q on {q.device}")
    cos, sin = rope_rows(profile_for_ratio(cfg, COMPRESS_RATIO), p.reshape(-1))  # validates the range
    be = resolve_backend(backend)
    idx = build_indices(p, topk_idxs, config=cfg)
    src, rows = prepare(idx, p, window=cfg.window, kv=kv, kv_cache=kv_cache, block_table=block_table,
                        compress_ratio=COMPRESS_RATIO, cmp_kv=cmp_kv, cmp_block_table=cmp_block_table,
                        name="topk_idxs")
    return attend(cfg, be, q, src, rows, attn_sink, cos, sin, wo_a, wo_b, rope=rotate, rope_block=rope_rotate,
                  swap_idx=swap_index(cfg.rope_dim), name="sparse_attn_csa")
