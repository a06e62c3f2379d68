"""dsv4-sparse-attn-swa: DeepSeek-V4 decode attention for sliding-window-only (SWA) layers.

    out = sparse_attn_swa(q, kv, kv_cache, block_table, positions, attn_sink, wo_a, wo_b,
                          config=FLASH, backend="auto")            # [B·S, hidden] bf16

For a decode step of S ≥ 1 tokens per request, every token attends the last `window`
positions including itself (fewer at the start of a sequence): older positions from the
request's ring page, the step's own earlier tokens (and itself) from the freshly projected
`kv` (the ring is updated after attention, `update_window_cache`). Softmax with the per-head
sink in the denominator, inverse RoPE at the query position (main profile, θ 10000), grouped
low-rank output projection. The kernel, golden and index plumbing are
dsv4-sparse-attn-common's."""

from __future__ import annotations

import torch

from dsv4_core import AttentionConfig
from dsv4_sparse_attn_common import ROPE_ABI_CONSUMED, decode_attention, window_indices
from dsv4_sparse_attn_common import write_window_cache as update_window_cache

__version__ = "0.4.4"
# ROPE_ABI_CONSUMED: the family's (its kernel and golden do the rotation; it checks the ABI at import)
COMPRESS_RATIO = 0

__all__ = ["COMPRESS_RATIO", "ROPE_ABI_CONSUMED", "build_indices", "sparse_attn_swa", "update_window_cache",
           "__version__"]


def build_indices(positions: torch.Tensor, *, config: AttentionConfig) -> torch.Tensor:
    """Index rows [B·S, W] int32 for positions [B, S] (consecutive per request): token (b, s)
    at position p gets the positions max(0, p−W+1) … p oldest first as ring slot `pos % W`
    (older than the step) or `W + s'` (the step's token s' ≤ s), aligned to the row's end
    (column j holds position p − W + 1 + j; −1 before them)."""
    return window_indices(positions, config.window)


def sparse_attn_swa(q: torch.Tensor, kv: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                    positions: torch.Tensor, attn_sink: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *,
                    config: AttentionConfig, backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """SWA decode attention; returns [B·S, hidden] bf16.

    q [B·S, H, 512] bf16 and kv [B·S, 512] bf16 (this step, from qkv_proj_rope, token
    b·S + s); kv_cache [P, W, 512] bf16 ring pages; block_table [B] int the ring page of
    each request; positions [B, S] int consecutive per request; attn_sink [H] fp32;
    wo_a [G, o_lora, hpg·512], wo_b [hidden, G·o_lora] bf16. The cache is not written:
    call `update_window_cache(kv_cache, block_table, positions, kv)` after attention.

    The kernel backends hand the kernel the cache as it is (it resolves pages and rows
    itself). validate=True (default) checks the values (positions, block table: read back
    on the host); validate=False reads nothing back and an entry the kernel cannot resolve
    selects nothing. The 'torch' backend is the golden and always validates."""
    return decode_attention(q, kv, kv_cache, block_table, positions, attn_sink, wo_a, wo_b, config=config,
                            backend=backend, compress_ratio=COMPRESS_RATIO, name="sparse_attn_swa", validate=validate)
