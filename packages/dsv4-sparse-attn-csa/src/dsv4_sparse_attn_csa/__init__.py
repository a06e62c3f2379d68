"""dsv4-sparse-attn-csa: DeepSeek-V4 decode attention for CSA layers (compress ratio 4).

    out = sparse_attn_csa(q, kv, kv_cache, block_table, cmp_kv, cmp_block_table, topk_idxs,
                          positions, attn_sink, wo_a, wo_b, config=FLASH, backend="auto")

Each token at position p attends its window (the last `window` positions including itself,
older ones from the ring page, the step's own tokens from the fresh `kv`) plus the indexer's
top-k compressed entries that pass the causal cut c < (p+1)//4 (the decode indexer scores
the whole step at the request's length, so an earlier token of the step may be handed an
entry only its later sibling may see: it is masked). Softmax with the per-head sink in the
denominator, inverse RoPE at the query position (compress profile), grouped low-rank
output projection. The kernel, golden and index plumbing are dsv4-sparse-attn-common's."""

from __future__ import annotations

import torch

from dsv4_core import AttentionConfig
from dsv4_sparse_attn_common import ROPE_ABI_CONSUMED, decode_attention, index_rows
from dsv4_sparse_attn_common import write_window_cache as update_window_cache

__version__ = "0.5.1"
# ROPE_ABI_CONSUMED: the family's (its kernel and golden do the rotation; it checks the ABI at import)
COMPRESS_RATIO = 4

__all__ = ["COMPRESS_RATIO", "ROPE_ABI_CONSUMED", "build_indices", "sparse_attn_csa", "update_window_cache",
           "__version__"]


def build_indices(positions: torch.Tensor, topk_idxs: torch.Tensor, *, config: AttentionConfig) -> torch.Tensor:
    """Index rows [B·S, W + k] int32 for positions [B, S] and the indexer's top-k [B·S, k]
    (compressed entry ids, −1 none, any order, holes allowed): columns [0, W) the window
    (ring slot `pos % W` or overlay `W + s'`, see dsv4-sparse-attn-swa), then `W + S + c`
    for each top-k entry with 0 ≤ c < (p+1)//4 in the caller's order, −1 for the others
    (the causal cut, `dsv4_sparse_attn_common.causal_topk`). Values below −1 are refused."""
    return index_rows(positions, window=config.window, compress_ratio=COMPRESS_RATIO, topk_idxs=topk_idxs)


def sparse_attn_csa(q: torch.Tensor, kv: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                    cmp_kv: torch.Tensor, cmp_block_table: torch.Tensor, topk_idxs: torch.Tensor,
                    positions: torch.Tensor, attn_sink: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *,
                    config: AttentionConfig, backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """CSA decode attention; returns [B·S, hidden] bf16.

    q [B·S, H, 512] bf16 and kv [B·S, 512] bf16 (this step, token b·S + s); kv_cache
    [P, W, 512] bf16 ring pages, block_table [B] int; cmp_kv [P2, blk, 512] bf16 compressed
    pages (entry c of request b at cmp_kv[cmp_block_table[b, c // blk], c % blk]),
    cmp_block_table [B, M] int; topk_idxs [B·S, k] int compressed entry ids from the
    indexer (no window offset; −1 none); positions [B, S] int consecutive per request;
    attn_sink [H] fp32; wo_a [G, o_lora, hpg·512], wo_b [hidden, G·o_lora] bf16. Caches
    are not written.

    The kernel backends hand the kernel the caches as they are (it resolves pages and
    rows itself). validate=True (default) checks the values (positions, indices, block
    tables: read back on the host); validate=False reads nothing back and an entry the
    kernel cannot resolve selects nothing. The 'torch' backend is the golden and always
    validates."""
    return decode_attention(q, kv, kv_cache, block_table, positions, attn_sink, wo_a, wo_b, config=config,
                            backend=backend, compress_ratio=COMPRESS_RATIO, cmp_kv=cmp_kv,
                            cmp_block_table=cmp_block_table, topk_idxs=topk_idxs, name="sparse_attn_csa", validate=validate)
