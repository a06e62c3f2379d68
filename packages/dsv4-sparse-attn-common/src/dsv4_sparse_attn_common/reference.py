"""The torch golden of sparse attention with sink and its fp64 evaluations.

For each query token t and head h, over the KV rows selected by index:

    s_i   = (q_h · k_i) · head_dim^-0.5                          (fp32, K = V)
    o_h   = Σ_i exp(s_i − M) v_i / (Σ_i exp(s_i − M) + exp(sink_h − M))
    o     = bf16(o);  o[..., −R:] = bf16(inverse_rope(o[..., −R:]))  at the query's position
    o_r   = bf16(einsum("tgd,grd->tgr", o.view(T, G, hpg·D), wo_a))  (heads in contiguous groups)
    out   = bf16(o_r.flatten(1) @ wo_bᵀ)                                              [T, hidden]

The sink enters only the denominator (a zero-valued extra key); an index of −1 selects
nothing; a row with no valid index gives 0, never NaN. The rotation is dsv4-rope-tables'
`rotate` (the canonical interleaved layout).

- `sparse_attention_reference`: the golden (fp32 math, online softmax over tiles of rows
  exactly like the kernel, probabilities rounded to bf16 before P·V, fp32 accumulation);
- `sparse_attention_exact` / `attention_exact`: fp64, dense, no rounding, from the same
  physical rows;
- `semantic_attention_exact`: an independent fp64 oracle that collects each token's KV
  vectors by position from the caches, with no index rows or block-table arithmetic shared
  with `indexing`.
"""

from __future__ import annotations

import torch

from dsv4_rope_tables import rotate

from .indexing import check_positions_grid
from .kernel import kv_tile


def _gather_rows(kv: torch.Tensor, rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """kv rows [t, K, D] at rows (−1: a zero row — selected, not multiplied, so a NaN in the
    row a −1 would clamp to never reaches an output)."""
    g = kv[rows.clamp(min=0).long()].to(dtype)
    return torch.where((rows >= 0)[..., None], g, torch.zeros((), dtype=dtype))


def _attend(q, kv, rows, sink, *, scale: float, tile: int, dtype, rnd, chunk: int = 32):
    """Online softmax with sink over tiles of `tile` rows; returns fp32/fp64 o [T, H, D]."""
    T, H, D = q.shape
    K = rows.shape[1]
    out = torch.zeros(T, H, D, dtype=dtype)
    sk = sink.to(dtype).reshape(1, H, 1)
    for a in range(0, T, chunk):  # bound the gathered [t, K, D] block
        b = min(T, a + chunk)
        qc = q[a:b].to(dtype)
        rc = rows[a:b]
        kr = _gather_rows(kv, rc, dtype)
        s = torch.einsum("thd,tkd->thk", qc, kr) * scale
        s = s.masked_fill((rc < 0)[:, None, :], float("-inf"))
        m = sk.expand(b - a, H, 1).clone()
        ll = torch.ones(b - a, H, 1, dtype=dtype)
        acc = torch.zeros(b - a, H, D, dtype=dtype)
        for j in range(0, K, tile):
            st = s[..., j:j + tile]
            m_new = torch.maximum(m, st.amax(-1, keepdim=True))
            alpha = torch.exp(m - m_new)
            p = torch.exp(st - m_new)
            ll = ll * alpha + p.sum(-1, keepdim=True)
            acc = acc * alpha + torch.einsum("thk,tkd->thd", rnd(p), kr[:, j:j + tile])
            m = m_new
        out[a:b] = acc / ll
    return out


def _inverse_rope(o, cos, sin, rope_dim: int):
    o = o.clone()
    o[..., -rope_dim:] = rotate(o[..., -rope_dim:], cos[:, None, :], sin[:, None, :], inverse=True)
    return o


def _oproj(o, wo_a, wo_b, dtype, rnd):
    T = o.shape[0]
    G = wo_a.shape[0]
    og = o.reshape(T, G, -1)
    o_r = rnd(torch.einsum("tgd,grd->tgr", og, wo_a.to(dtype)))
    return rnd(o_r.reshape(T, -1) @ wo_b.to(dtype).T)


def sparse_attention_reference(q: torch.Tensor, kv: torch.Tensor, rows: torch.Tensor, sink: torch.Tensor,
                               cos: torch.Tensor, sin: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *,
                               softmax_scale: float, tile: int | None = None,
                               inverse_rope: bool = True) -> torch.Tensor:
    """The golden, bf16 out [T, hidden]. q [T, H, D] bf16, kv [N, D] bf16 (one KV source),
    rows [T, K] physical row ids of kv (−1 = none), sink [H] fp32, cos/sin [T, R] canonical
    rows at the query positions, wo_a [G, o_lora, hpg·D] bf16, wo_b [hidden, G·o_lora] bf16.

    Rounding points: (1) P = bf16(exp(s − m_running)) per tile of `tile` rows (default
    `kv_tile(K)`, the kernel's), fp32
    accumulation, fp32 denominator; (2) o = bf16(acc / l); (3) rope lanes
    bf16(inverse_rope(o)) in fp32; (4) o_r = bf16(per-group o·wo_aᵀ), fp32 accumulation;
    (5) out = bf16(o_r · wo_bᵀ). `inverse_rope=False` exists only to prove the tests see it."""
    def rnd(t):
        return t.to(torch.bfloat16).float()

    tile = tile or kv_tile(rows.shape[1])
    o = rnd(_attend(q, kv, rows, sink, scale=softmax_scale, tile=tile, dtype=torch.float32, rnd=rnd))
    if inverse_rope:
        o = rnd(_inverse_rope(o, cos, sin, cos.shape[-1]))
    return _oproj(o, wo_a, wo_b, torch.float32, rnd).to(torch.bfloat16)


def attention_exact(q, kv, rows, sink, *, softmax_scale: float) -> torch.Tensor:
    """fp64 sparse attention with sink, before RoPE / projection: o [T, H, D] (dense form:
    softmax over [selected scores | sink], the sink's value vector is 0)."""
    qd = q.double()
    kr = _gather_rows(kv, rows, torch.float64)
    s = torch.einsum("thd,tkd->thk", qd, kr) * softmax_scale
    s = s.masked_fill((rows < 0)[:, None, :], float("-inf"))
    T, H = q.shape[:2]
    logits = torch.cat([s, sink.double().reshape(1, H, 1).expand(T, H, 1)], -1)
    p = torch.softmax(logits, -1)[..., :-1]
    return torch.einsum("thk,tkd->thd", p, kr)


def sparse_attention_exact(q, kv, rows, sink, cos, sin, wo_a, wo_b, *, softmax_scale: float) -> torch.Tensor:
    """fp64, no intermediate rounding, from the same inputs: the comparator's exact answer."""
    o = attention_exact(q, kv, rows, sink, softmax_scale=softmax_scale)
    o = _inverse_rope(o, cos.double(), sin.double(), cos.shape[-1])
    return _oproj(o, wo_a, wo_b, torch.float64, lambda t: t)


def semantic_attention_exact(cfg, positions: torch.Tensor, q, kv, kv_cache, block_table, attn_sink, cos, sin, wo_a,
                             wo_b, *, compress_ratio: int, cmp_kv=None, cmp_block_table=None,
                             topk_idxs=None) -> torch.Tensor:
    """An independent oracle (fp64): for each token, collect the KV vectors the official
    semantics say it sees — window positions max(0, p−W+1)…p (this step's own tokens from
    `kv`, older ones from the ring page at slot pos % W), then every compressed entry
    c < (p+1)//ratio (HCA) or the valid top-k entries with that causal cut (CSA) — and
    evaluate the dense softmax with the sink as an extra zero-valued key. No index rows,
    no block-table arithmetic and no visibility rule shared with `indexing`: the official
    rule is restated here on purpose, so a mistake there cannot hide in both."""
    p = check_positions_grid(positions)
    B, S = p.shape
    W = cfg.window
    H, D = cfg.num_heads, cfg.head_dim
    o = torch.zeros(B * S, H, D, dtype=torch.float64)
    for b in range(B):
        p0 = int(p[b, 0])
        for s in range(S):
            t = b * S + s
            pos = int(p[b, s])
            vecs = []
            for w in range(max(0, pos - W + 1), pos + 1):
                vecs.append(kv[b * S + (w - p0)] if w >= p0 else kv_cache[int(block_table[b]), w % W])
            if compress_ratio:
                blk = cmp_kv.shape[1]
                bt = cmp_block_table[b] if cmp_block_table.dim() == 2 else cmp_block_table
                n = (pos + 1) // compress_ratio
                if compress_ratio == 128:
                    entries = list(range(n))
                else:
                    entries = [int(c) for c in topk_idxs[t].tolist() if 0 <= c < n]
                for c in entries:
                    vecs.append(cmp_kv[int(bt[c // blk]), c % blk])
            qh = q[t].double()  # [H, D]
            if vecs:
                kk = torch.stack(vecs).double()  # [n, D]
                sc = qh @ kk.T * cfg.softmax_scale
            else:
                kk = torch.zeros(0, D, dtype=torch.float64)
                sc = torch.zeros(H, 0, dtype=torch.float64)
            logits = torch.cat([sc, attn_sink.double().reshape(H, 1)], 1)
            pr = torch.softmax(logits, 1)[:, :-1]
            o[t] = pr @ kk
    R = cos.shape[-1]
    o[..., -R:] = rotate(o[..., -R:], cos.double()[:, None, :], sin.double()[:, None, :], inverse=True)
    return _oproj(o, wo_a, wo_b, torch.float64, lambda x: x)
