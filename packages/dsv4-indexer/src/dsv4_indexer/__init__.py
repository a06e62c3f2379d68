"""dsv4-indexer: DeepSeek-V4's lightning indexer for decode (CSA layers, compress ratio 4).

    picks = indexer(x, qr, wq_b, weights_proj, positions, idx_kv_cache, idx_block_table,
                    config=FLASH, backend="auto")                      # [B·S, index_topk] int32

For B requests × S ≥ 1 tokens each (token b·S + s at positions[b, s], each at its own
position): queries q = hadamard(rope(qr @ wq_bᵀ)) [index heads, 128], head weights
w = x @ weights_projᵀ · 128^-0.5 · n_heads^-0.5, score[t, c] = Σ_h w[t,h]·ReLU(q[t,h]·k[c])
(fp32) over the request's compressed index keys c < (pos_t + 1) // 4, read in place from the
paged index-key cache, and the top min(index_topk, visible) entry ids, descending, −1 after
them — the `topk_idxs` format of dsv4-sparse-attn-csa. The keys are written by the
indexer's own ratio-4 key compressor (run it for the step first).

Tensor parallel: a rank holding a shard of the index heads calls `index_scores`, the ranks'
scores are summed (all-reduce), then `select_topk` picks."""

from __future__ import annotations

import torch

from dsv4_compressor_common import ROPE_ABI_CONSUMED, CompressorOut
from dsv4_compressor_common.hadamard import hadamard, hadamard_matrix
from dsv4_compressor_common.indexer import host, key_functions
from dsv4_compressor_common.indexer.host import last_runs, select_topk
from dsv4_compressor_common.indexer.reference import (
    RATIO,
    index_queries,
    index_scores_reference,
    select_topk_reference,
    visible_entries,
)
from dsv4_core import AttentionConfig, resolve_backend
from dsv4_core.checks import check_same_device, check_tensor

__version__ = "0.1.8"
# ROPE_ABI_CONSUMED: the compressor family's (its kernels and golden do every rotation; it checks the ABI at import)

indexer_compressor, make_caches = key_functions(__name__, "indexer_compressor", "decode")

__all__ = ["RATIO", "ROPE_ABI_CONSUMED", "CompressorOut", "hadamard", "hadamard_matrix", "index_scores", "indexer",
           "indexer_compressor", "last_runs", "make_caches", "select_topk", "__version__"]


def _check_positions(positions, cfg, validate: bool) -> None:
    check_tensor("positions", positions, dtype=(torch.int32, torch.int64))
    if positions.dim() != 2 or positions.shape[0] == 0 or positions.shape[1] == 0:
        raise ValueError(f"positions must be 2-D [B, S] with B, S >= 1, got shape {list(positions.shape)}")
    if not validate:
        return
    p = positions.detach().to("cpu", torch.int64)
    if int(p.min()) < 0 or int(p.max()) >= cfg.max_position_embeddings:
        bad = int(p.min()) if int(p.min()) < 0 else int(p.max())
        raise ValueError(f"positions must be in [0, {cfg.max_position_embeddings}), got {bad}")
    if p.shape[1] > 1 and not bool((p[:, 1:] - p[:, :-1] == 1).all()):
        raise ValueError("positions: the S tokens of one request must be at consecutive positions")


def _check_args(cfg, x, qr, wq_b, weights_proj, positions, idx_kv_cache, idx_block_table, validate) -> None:
    host.check_config(cfg)
    _check_positions(positions, cfg, validate)
    B, S = positions.shape
    check_tensor("x", x, shape=(B * S, cfg.hidden_size), dtype=torch.bfloat16)
    check_tensor("qr", qr, shape=(B * S, cfg.q_lora_rank), dtype=torch.bfloat16)
    host.check_weights(cfg, wq_b, weights_proj)
    host.check_cache(cfg, idx_kv_cache, idx_block_table, rows=B)
    check_same_device(x=x, qr=qr, wq_b=wq_b, weights_proj=weights_proj, positions=positions,
                      idx_kv_cache=idx_kv_cache, idx_block_table=idx_block_table)
    if validate:
        host.check_pages(idx_block_table, visible_entries(positions[:, -1]), idx_kv_cache.shape[0],
                         idx_kv_cache.shape[1])


def index_scores(x: torch.Tensor, qr: torch.Tensor, wq_b: torch.Tensor, weights_proj: torch.Tensor,
                 positions: torch.Tensor, idx_kv_cache: torch.Tensor, idx_block_table: torch.Tensor, *,
                 config: AttentionConfig, backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """This rank's index scores [B·S, M·block_size] fp32: column c holds Σ_h w·ReLU(q·k_c) over
    the config's index heads where c < (pos + 1) // 4 and its page is real, −inf elsewhere.

    x [B·S, hidden] bf16; qr [B·S, q_lora_rank] bf16; wq_b [heads·128, q_lora_rank] and
    weights_proj [heads, hidden] bf16 (checkpoint [out, in], this rank's heads); positions
    [B, S] int; idx_kv_cache [P, block_size, 128] bf16 (entry c of request b at
    [idx_block_table[b, c // block_size], c % block_size]); idx_block_table [B, M] int
    (−1: no page). Nothing is written."""
    cfg = config
    _check_args(cfg, x, qr, wq_b, weights_proj, positions, idx_kv_cache, idx_block_table, validate)
    be = resolve_backend(backend)
    cos, sin = host.rope_rows_on_device(cfg, positions, validate)
    B, S = positions.shape
    vis = visible_entries(positions).reshape(-1)
    if be == "torch":
        q, w = index_queries(cfg, x, qr, wq_b, weights_proj, cos, sin)
        return index_scores_reference(q, w, positions, idx_kv_cache, idx_block_table)
    host._RUNS.clear()
    q, w = host.run_queries(cfg, be, x, qr, wq_b, weights_proj, cos, sin, host.padded(B * S))
    return host.run_scores(cfg, be, q, w, vis, idx_kv_cache, idx_block_table, S)


def indexer(x: torch.Tensor, qr: torch.Tensor, wq_b: torch.Tensor, weights_proj: torch.Tensor,
            positions: torch.Tensor, idx_kv_cache: torch.Tensor, idx_block_table: torch.Tensor, *,
            config: AttentionConfig, backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """The decode lightning indexer (all index heads on this rank); returns picks
    [B·S, index_topk] int32: compressed entry ids (no window offset), −1 none. Arguments as
    `index_scores`. Refuses a tensor-parallel shard (its scores must be summed across ranks
    before selecting: use `index_scores` + `select_topk`)."""
    if isinstance(config, AttentionConfig) and config.tp_size != 1:
        raise ValueError(f"config {config.name!r} is a tensor-parallel shard (tp_size={config.tp_size}): sum "
                         "index_scores over the ranks, then call select_topk")
    scores = index_scores(x, qr, wq_b, weights_proj, positions, idx_kv_cache, idx_block_table, config=config,
                          backend=backend, validate=validate)
    be = resolve_backend(backend)
    if be == "torch":
        return select_topk_reference(scores, config.index_topk)
    return host.run_select(be, scores, config.index_topk)
