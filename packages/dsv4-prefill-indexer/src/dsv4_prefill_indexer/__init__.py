"""dsv4-prefill-indexer: DeepSeek-V4's lightning indexer for a prefill chunk (CSA layers).

    picks = prefill_indexer(x, qr, wq_b, weights_proj, start_pos, idx_kv_cache, idx_block_table,
                            config=FLASH, backend="auto")                  # [T, index_topk] int32

For one request's chunk of T tokens at positions start_pos … start_pos + T − 1 (any start:
earlier chunks' keys are read from the cache): queries q = hadamard(rope(qr @ wq_bᵀ)) at each
token's own position, head weights w = x @ weights_projᵀ · 128^-0.5 · n_heads^-0.5,
score[t, c] = Σ_h w[t,h]·ReLU(q[t,h]·k[c]) (fp32) over the compressed index keys with the
per-token causal cut c < (pos_t + 1) // 4, read in place from the paged index-key cache, and
the top min(index_topk, visible) entry ids, descending, −1 after them — the format
dsv4-prefill-sparse-attn takes. Run the key compressor for the chunk first, so the chunk's
own closing windows are in the cache.

Tensor parallel: a rank holding a shard of the index heads calls `prefill_index_scores`, the
ranks' scores are summed, then `select_topk` picks."""

from __future__ import annotations

import torch

from dsv4_compressor_common import ROPE_ABI_CONSUMED, CompressorOut, start_position
from dsv4_compressor_common.indexer import host, key_functions
from dsv4_compressor_common.indexer.host import last_runs, select_topk
from dsv4_compressor_common.indexer.reference import (
    index_queries,
    index_scores_reference,
    select_topk_reference,
    visible_entries,
)
from dsv4_core import AttentionConfig, resolve_backend
from dsv4_core.checks import check_same_device, check_tensor

__version__ = "0.1.8"
# ROPE_ABI_CONSUMED: the compressor family's (its kernels and golden do every rotation; it checks the ABI at import)

prefill_indexer_compressor, make_caches = key_functions(__name__, "prefill_indexer_compressor", "prefill")

__all__ = ["ROPE_ABI_CONSUMED", "CompressorOut", "chunk_positions", "last_runs", "make_caches", "prefill_index_scores",
           "prefill_indexer", "prefill_indexer_compressor", "select_topk", "__version__"]


def chunk_positions(start_pos, num_tokens: int, device=None) -> torch.Tensor:
    """positions [1, T] of a chunk (the reference's B = 1, S = T grid)."""
    return (start_position(start_pos) + torch.arange(num_tokens, device=device)).reshape(1, -1)


def _check_args(cfg, x, qr, wq_b, weights_proj, start_pos, idx_kv_cache, idx_block_table, validate):
    host.check_config(cfg)
    dims: dict = {}
    check_tensor("x", x, shape=("T", cfg.hidden_size), dtype=torch.bfloat16, dims=dims)
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one token, got shape [0, hidden]")
    check_tensor("qr", qr, shape=("T", cfg.q_lora_rank), dtype=torch.bfloat16, dims=dims)
    host.check_weights(cfg, wq_b, weights_proj)
    check_tensor("idx_block_table", idx_block_table, shape=(None,), dtype=(torch.int32, torch.int64))
    host.check_cache(cfg, idx_kv_cache, idx_block_table.reshape(1, -1), rows=1)
    check_same_device(x=x, qr=qr, wq_b=wq_b, weights_proj=weights_proj, idx_kv_cache=idx_kv_cache,
                      idx_block_table=idx_block_table)
    start, T = start_position(start_pos), x.shape[0]
    pos = chunk_positions(start, T, x.device)
    if start < 0 or start + T > cfg.max_position_embeddings:
        bad = start if start < 0 else start + T - 1
        raise ValueError(f"start_pos: the chunk's positions must be in [0, {cfg.max_position_embeddings}), got {bad}")
    if validate:
        host.check_pages(idx_block_table.reshape(1, -1), torch.tensor([(start + T) // 4]), idx_kv_cache.shape[0],
                         idx_kv_cache.shape[1])
    return pos


def prefill_index_scores(x: torch.Tensor, qr: torch.Tensor, wq_b: torch.Tensor, weights_proj: torch.Tensor,
                         start_pos: int, idx_kv_cache: torch.Tensor, idx_block_table: torch.Tensor, *,
                         config: AttentionConfig, backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """This rank's index scores [T, M·block_size] fp32 for a chunk: column c holds
    Σ_h w·ReLU(q·k_c) where c < (pos + 1) // 4 and its page is real, −inf elsewhere.

    x [T, hidden] bf16; qr [T, q_lora_rank] bf16; wq_b [heads·128, q_lora_rank] and
    weights_proj [heads, hidden] bf16 (checkpoint [out, in]); start_pos int (position of the
    chunk's first token); idx_kv_cache [P, block_size, 128] bf16; idx_block_table [M] int
    (entry c at [idx_block_table[c // block_size], c % block_size]; −1: no page)."""
    cfg = config
    pos = _check_args(cfg, x, qr, wq_b, weights_proj, start_pos, idx_kv_cache, idx_block_table, validate)
    be = resolve_backend(backend)
    cos, sin = host.rope_rows_on_device(cfg, pos, validate)
    table = idx_block_table.reshape(1, -1)
    if be == "torch":
        q, w = index_queries(cfg, x, qr, wq_b, weights_proj, cos, sin)
        return index_scores_reference(q, w, pos, idx_kv_cache, table)
    T = x.shape[0]
    G = host.prefill_group(cfg)
    rows = host.padded(T, max(G, host.TOKEN_TILE))
    host._RUNS.clear()
    q, w = host.run_queries(cfg, be, x, qr, wq_b, weights_proj, cos, sin, rows)
    vis = torch.zeros(rows, dtype=torch.int64, device=x.device)
    vis[:T] = visible_entries(pos.reshape(-1))
    groups = table.expand(rows // G, table.shape[1]).contiguous()
    return host.run_scores(cfg, be, q, w, vis, idx_kv_cache, groups, G)[:T]


def prefill_indexer(x: torch.Tensor, qr: torch.Tensor, wq_b: torch.Tensor, weights_proj: torch.Tensor,
                    start_pos: int, idx_kv_cache: torch.Tensor, idx_block_table: torch.Tensor, *,
                    config: AttentionConfig, backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """The prefill lightning indexer (all index heads on this rank): picks [T, index_topk]
    int32, compressed entry ids (no offset), −1 none. Arguments as `prefill_index_scores`."""
    if isinstance(config, AttentionConfig) and config.tp_size != 1:
        raise ValueError(f"config {config.name!r} is a tensor-parallel shard (tp_size={config.tp_size}): sum "
                         "prefill_index_scores over the ranks, then call select_topk")
    scores = prefill_index_scores(x, qr, wq_b, weights_proj, start_pos, idx_kv_cache, idx_block_table,
                                  config=config, backend=backend, validate=validate)
    be = resolve_backend(backend)
    if be == "torch":
        return select_topk_reference(scores, config.index_topk)
    return host.run_select(be, scores.contiguous(), config.index_topk)
