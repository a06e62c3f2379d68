"""Torch golden of the lightning indexer (official DeepSeek-V4 `Indexer`, bf16 storage, fp32
math), its selection, and a dense fp64 formulation written independently of it.

Rounding points (`dtype=float32`; `dtype=float64` runs the same code with no rounding):

    1. q      = bf16(qr @ wq_bᵀ)                                    [T, H, 128], fp32 accumulation
    2. q_rope = bf16(rope(q[..., -64:]))  at each token's own position (compress profile, fp32)
    3. q      = bf16((q @ Had) · 128^-0.5)                           Had: Sylvester ±1, fp32 acc.
    4. w      = bf16(bf16(x @ weights_projᵀ) · 128^-0.5 · n_heads^-0.5)            [T, H]
    5. score[t, c] = Σ_h w[t, h] · bf16(ReLU(q[t, h] · k[c]))        q·k fp32 from bf16 operands,
                                                                    rounded to bf16 (5a: the cube's
                                                                    output), then the weighted head
                                                                    sum in fp32 (5b); c < (pos_t + 1)
                                                                    // 4, −inf for every other column
    6. picks  = the min(index_topk, visible) highest scores, descending, ties → lower entry id
                first, −1 after them                                   [T, index_topk] int32

`n_heads` in (4) is the model's index head count (`index_num_heads · tp_size`): a
tensor-parallel rank scores its own heads, the ranks' scores are summed, then selected.
Keys `k` come from the index-key cache as stored (bf16, already rotated by the key
compressor).
"""

from __future__ import annotations

import math

import torch

from dsv4_rope_tables import rotate

from ..hadamard import bf16_round, hadamard, hadamard_matrix, no_round, walsh_hadamard_fwht
from ..hadamard import rounder as _rounder

RATIO = 4  # the indexer's keys are ratio-4 compressed entries
__all__ = ["RATIO", "bf16_round", "dense_exact", "hadamard", "hadamard_matrix", "index_queries", "index_scores_reference",
           "indexer_reference", "no_round", "request_keys", "score_matrix", "select_topk_reference", "visible_entries",
           "walsh_hadamard_fwht", "weights_scale"]


def weights_scale(cfg) -> float:
    """128^-0.5 · n_heads^-0.5 with the model's (unsharded) index head count."""
    return cfg.index_head_dim ** -0.5 * (cfg.index_num_heads * cfg.tp_size) ** -0.5


def index_queries(cfg, x: torch.Tensor, qr: torch.Tensor, wq_b: torch.Tensor, weights_proj: torch.Tensor,
                  cos: torch.Tensor, sin: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                  rotate_queries: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1–4: (q [T, H, D], w [T, H]) in `dtype` (bf16-valued for the golden). x [T, hidden],
    qr [T, q_lora_rank], wq_b [H·D, q_lora_rank], weights_proj [H, hidden] (checkpoint
    [out, in]); cos / sin [T, 64] canonical rows at each token's position.
    `rotate_queries=False` leaves out the Hadamard (only for the tests that show it matters)."""
    rnd = _rounder(dtype)
    T, H, D, R = qr.shape[0], cfg.index_num_heads, cfg.index_head_dim, cfg.rope_dim
    q = rnd(qr.to(dtype) @ wq_b.to(dtype).T).reshape(T, H, D)
    q = q.clone()
    q[..., -R:] = rnd(rotate(q[..., -R:], cos.to(dtype)[:, None, :], sin.to(dtype)[:, None, :]))
    if rotate_queries:
        q = hadamard(q, dtype=dtype, rnd=rnd)
    w = rnd(rnd(x.to(dtype) @ weights_proj.to(dtype).T) * weights_scale(cfg))
    return q, w


def visible_entries(positions: torch.Tensor) -> torch.Tensor:
    """Compressed entries token at position p may use: c < (p + 1) // 4."""
    return (positions.to(torch.int64) + 1) // RATIO


def request_keys(cache: torch.Tensor, table_row: torch.Tensor, n: int, dtype: torch.dtype) -> tuple[torch.Tensor,
                                                                                                    torch.Tensor]:
    """Entries 0..n−1 of one request from the paged cache [P, bs, D]: (keys [n, D], ok [n] bool:
    the entry's page is a real page; a −1 / out-of-range page selects nothing)."""
    P, bs, D = cache.shape
    c = torch.arange(n, device=cache.device)
    pages = table_row.to(cache.device, torch.int64)[c // bs] if n else c
    ok = (pages >= 0) & (pages < P)
    rows = torch.where(ok, pages * bs + c % bs, torch.zeros_like(pages))
    return cache.reshape(P * bs, D)[rows].to(dtype), ok


def score_matrix(q: torch.Tensor, w: torch.Tensor, keys: torch.Tensor, rnd=no_round) -> torch.Tensor:
    """Step 5 without masking: q [S, H, D], w [S, H], keys [n, D] (all in one dtype) -> [S, n];
    `rnd` rounds ReLU(q·k) (bf16 for the golden, step 5a)."""
    return torch.einsum("sh,shn->sn", w, rnd(torch.relu(torch.einsum("shd,nd->shn", q, keys))))


def index_scores_reference(q: torch.Tensor, w: torch.Tensor, positions: torch.Tensor, cache: torch.Tensor,
                           block_table: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Step 5 for B requests × S tokens (token b·S + s at positions[b, s]): q [B·S, H, D],
    w [B·S, H], cache [P, bs, D], block_table [B, M]. Returns scores [B·S, M·bs] in `dtype`:
    column c holds entry c's score where c < (pos + 1) // 4 and its page is real, −inf
    elsewhere (a NaN in a row no token may see never reaches an output: masking selects)."""
    B, S = positions.shape
    bs = cache.shape[1]
    L = block_table.shape[1] * bs
    out = torch.full((B * S, L), float("-inf"), dtype=dtype, device=q.device)
    vis = visible_entries(positions).cpu()
    for b in range(B):
        n = int(vis[b].max())
        if n == 0:
            continue
        keys, ok = request_keys(cache, block_table[b], n, dtype)
        sc = score_matrix(q[b * S:(b + 1) * S].to(dtype), w[b * S:(b + 1) * S].to(dtype), keys.to(q.device),
                          _rounder(dtype))
        keep = ok.to(q.device)[None, :] & (torch.arange(n, device=q.device)[None, :] < vis[b].to(q.device)[:, None])
        out[b * S:(b + 1) * S, :n] = torch.where(keep, sc, torch.full_like(sc, float("-inf")))
    return out


def select_topk_reference(scores: torch.Tensor, topk: int) -> torch.Tensor:
    """Step 6: scores [T, L] (−inf = not a candidate) -> picks [T, topk] int32: descending score,
    ties by lower entry id (a stable sort), −1 once the candidates run out."""
    T, L = scores.shape
    if L < topk:
        scores = torch.cat([scores, scores.new_full((T, topk - L), float("-inf"))], 1)
    vals, idx = torch.sort(scores, dim=-1, descending=True, stable=True)
    vals, idx = vals[:, :topk], idx[:, :topk]
    return torch.where(vals > float("-inf"), idx, torch.full_like(idx, -1)).to(torch.int32)


def indexer_reference(cfg, x, qr, wq_b, weights_proj, positions, cache, block_table, cos, sin, *,
                      dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1–6 for positions [B, S]: (picks [B·S, index_topk] int32, scores [B·S, M·bs])."""
    q, w = index_queries(cfg, x, qr, wq_b, weights_proj, cos, sin, dtype=dtype)
    scores = index_scores_reference(q, w, positions, cache, block_table, dtype=dtype)
    return select_topk_reference(scores, cfg.index_topk), scores


def dense_exact(cfg, x, qr, wq_b, weights_proj, positions, cache, block_table, cos, sin) -> torch.Tensor:
    """fp64 scores [B·S, M·bs] from a dense formulation written apart from the golden: per
    token, per visible entry, the head sum of ReLU'd dot products, with the query rotated by
    the butterfly Hadamard and RoPE as complex multiplication; no intermediate rounding."""
    B, S = positions.shape
    T = B * S
    H, D, R = cfg.index_num_heads, cfg.index_head_dim, cfg.rope_dim
    P, bs, _ = cache.shape
    q = (qr.double() @ wq_b.double().T).reshape(T, H, D)
    rot = torch.complex(cos[:, 0::2].double(), sin[:, 1::2].double())  # e^{i·p·ω} from the rows
    z = torch.complex(q[..., D - R::2], q[..., D - R + 1::2]) * rot[:, None, :]
    q = torch.cat([q[..., :D - R], torch.stack([z.real, z.imag], -1).flatten(-2)], -1)
    q = walsh_hadamard_fwht(q)
    w = (x.double() @ weights_proj.double().T) * (D ** -0.5) / math.sqrt(H * cfg.tp_size)
    flat = cache.reshape(P * bs, D).double()
    out = torch.full((T, block_table.shape[1] * bs), float("-inf"), dtype=torch.float64)
    pos = positions.reshape(-1).cpu()
    for t in range(T):
        n = (int(pos[t]) + 1) // RATIO
        if n == 0:
            continue
        c = torch.arange(n)
        page = block_table[t // S].cpu().to(torch.int64)[c // bs]
        real = (page >= 0) & (page < P)
        k = flat[(page.clamp(0, P - 1) * bs + c % bs)]  # [n, D]
        s = (w[t][:, None] * (q[t] @ k.T).clamp(min=0)).sum(0)  # [n]
        out[t, :n] = torch.where(real, s, torch.full_like(s, float("-inf")))
    return out
