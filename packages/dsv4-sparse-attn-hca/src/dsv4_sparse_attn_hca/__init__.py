"""dsv4-sparse-attn-hca: DeepSeek-V4 decode attention for HCA layers (compress ratio 128).

    out = sparse_attn_hca(q, kv, kv_cache, block_table, cmp_kv, cmp_block_table, positions,
                          attn_sink, wo_a, wo_b, config=FLASH, backend="auto")   # [B·S, hidden]

Each token at position p attends its window (the last `window` positions including itself,
older ones from the ring page, the step's own tokens from the fresh `kv`) plus every
compressed entry c < (p+1)//128 — the count grows with context (8192 at 1M positions, no
fixed cap). Softmax with the per-head sink in the denominator, inverse RoPE at the query
position (compress profile), grouped low-rank output projection. The kernel, golden and
index plumbing are dsv4-sparse-attn-common's."""

from __future__ import annotations

import torch

from dsv4_core import AttentionConfig
from dsv4_sparse_attn_common import ROPE_ABI_CONSUMED, decode_attention, index_rows
from dsv4_sparse_attn_common import write_window_cache as update_window_cache

__version__ = "0.4.4"
# ROPE_ABI_CONSUMED: the family's (its kernel and golden do the rotation; it checks the ABI at import)
COMPRESS_RATIO = 128

__all__ = ["COMPRESS_RATIO", "ROPE_ABI_CONSUMED", "build_indices", "sparse_attn_hca", "update_window_cache",
           "__version__"]


def build_indices(positions: torch.Tensor, *, config: AttentionConfig) -> torch.Tensor:
    """Index rows [B·S, W + n_max] int32 for positions [B, S] (consecutive per request),
    n_max = max over tokens of (p+1)//128: columns [0, W) the window (see
    dsv4-sparse-attn-swa: ring slot `pos % W` or overlay `W + s'`), then `W + S + c` for every
    compressed entry c < (p+1)//128 in order, −1 after them
    (`dsv4_sparse_attn_common.visible_entry_columns`)."""
    return index_rows(positions, window=config.window, compress_ratio=COMPRESS_RATIO)


def sparse_attn_hca(q: torch.Tensor, kv: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                    cmp_kv: torch.Tensor, cmp_block_table: torch.Tensor, positions: torch.Tensor,
                    attn_sink: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *, config: AttentionConfig,
                    backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """HCA decode attention; returns [B·S, hidden] bf16.

    q [B·S, H, 512] bf16 and kv [B·S, 512] bf16 (this step, token b·S + s); kv_cache
    [P, W, 512] bf16 ring pages, block_table [B] int; cmp_kv [P2, blk, 512] bf16 compressed
    pages (entry c of request b at cmp_kv[cmp_block_table[b, c // blk], c % blk]; the
    compressor has already written the entries the step closes), cmp_block_table [B, M]
    int; positions [B, S] int consecutive per request; attn_sink [H] fp32; wo_a
    [G, o_lora, hpg·512], wo_b [hidden, G·o_lora] bf16. Caches are not written.

    The kernel backends hand the kernel the caches as they are (it resolves pages and
    rows itself). validate=True (default) checks the values (positions, indices, block
    tables: read back on the host); validate=False reads nothing back and an entry the
    kernel cannot resolve selects nothing (the compressed width is then the block
    table's capacity, M·blk columns). The 'torch' backend is the golden and always
    validates."""
    return decode_attention(q, kv, kv_cache, block_table, positions, attn_sink, wo_a, wo_b, config=config,
                            backend=backend, compress_ratio=COMPRESS_RATIO, cmp_kv=cmp_kv,
                            cmp_block_table=cmp_block_table, name="sparse_attn_hca", validate=validate)
