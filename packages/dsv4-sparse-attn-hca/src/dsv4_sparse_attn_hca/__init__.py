"""dsv4-sparse-attn-hca: DeepSeek-V4 decode attention for HCA layers (compress ratio 128).

    out = sparse_attn_hca(q, kv, kv_cache, block_table, cmp_kv, cmp_block_table, positions,
                          attn_sink, wo_a, wo_b, config=FLASH, backend="auto")   # [B·S, hidden]

Each token at position p attends its window (the last `window` positions including itself,
older ones from the ring page, the step's own tokens from the fresh `kv`) plus every
compressed entry c < (p+1)//128 — the count grows with context (8192 at 1M positions, no
fixed cap). Softmax with the per-head sink in the denominator, inverse RoPE at the query
position (compress profile), grouped low-rank output projection."""

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
from dsv4_rope_tables import profile_for_ratio, require_abi, rope_rows, rotate
from dsv4_rope_tables.pypto_block import rope_rotate, swap_index

__version__ = "0.2.1"
ROPE_ABI_CONSUMED = "dsv4-rope/1"
require_abi("dsv4-sparse-attn-hca", ROPE_ABI_CONSUMED)
COMPRESS_RATIO = 128

__all__ = ["COMPRESS_RATIO", "ROPE_ABI_CONSUMED", "build_indices", "sparse_attn_hca", "update_window_cache",
           "__version__"]


def build_indices(positions: torch.Tensor, *, config: AttentionConfig) -> torch.Tensor:
    """Index rows [B·S, W + n_max] int32 for positions [B, S] (consecutive per request),
    n_max = max over tokens of (p+1)//128: columns [0, W) the window (see
    dsv4-sparse-attn-swa: ring slot `pos % W` or overlay `W + s'`), then `W + S + c` for every
    compressed entry c < (p+1)//128 in order, −1 after them."""
    p = check_positions_grid(positions)
    B, S = p.shape
    win = window_indices(p, config.window)
    vis = ((p.reshape(-1) + 1) // COMPRESS_RATIO)[:, None]
    n_max = int(vis.max())
    c = torch.arange(n_max)[None, :].expand(B * S, -1)
    ent = torch.where(c < vis, c, torch.full_like(c, -1))
    return torch.cat([win, compressed_indices(ent, config.window, S)], 1)


def sparse_attn_hca(q: torch.Tensor, kv: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                    cmp_kv: torch.Tensor, cmp_block_table: torch.Tensor, positions: torch.Tensor,
                    attn_sink: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *, config: AttentionConfig,
                    backend: str = "auto") -> torch.Tensor:
    """HCA decode attention; returns [B·S, hidden] bf16.

    q [B·S, H, 512] bf16 and kv [B·S, 512] bf16 (this step, token b·S + s); kv_cache
    [P, W, 512] bf16 ring pages, block_table [B] int; cmp_kv [P2, blk, 512] bf16 compressed
    pages (entry c of request b at cmp_kv[cmp_block_table[b, c // blk], c % blk]; the
    compressor has already written the entries the step closes), cmp_block_table [B, M]
    int; positions [B, S] int consecutive per request; attn_sink [H] fp32; wo_a
    [G, o_lora, hpg·512], wo_b [hidden, G·o_lora] bf16. Caches are not written."""
    cfg = config
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be a torch.Tensor, got {type(positions).__name__}")
    p = check_positions_grid(positions)
    B, S = p.shape
    validate_attention_args(cfg, q, kv, kv_cache, block_table, attn_sink, wo_a, wo_b, tokens=B * S, requests=B,
                            cmp_kv=cmp_kv, cmp_block_table=cmp_block_table)
    cos, sin = rope_rows(profile_for_ratio(cfg, COMPRESS_RATIO), p.reshape(-1))  # validates the range
    be = resolve_backend(backend)
    idx = build_indices(p, config=cfg)
    src, rows = prepare(idx, p, window=cfg.window, kv=kv, kv_cache=kv_cache, block_table=block_table,
                        compress_ratio=COMPRESS_RATIO, cmp_kv=cmp_kv, cmp_block_table=cmp_block_table)
    return attend(cfg, be, q, src, rows, attn_sink, cos, sin, wo_a, wo_b, rope=rotate, rope_block=rope_rotate,
                  swap_idx=swap_index(cfg.rope_dim), name="sparse_attn_hca")
