"""An fp64 evaluation of one DeepSeek-V4 attention layer over a request's whole sequence,
written from the official inference semantics directly (its own RoPE frequencies, windows,
pooling, indexer and attention) rather than from the module packages' references, so that
the composed layer is checked against an independent formulation.

    y, picks, scores = layer_exact(config, layer_id, weights, x)   # x [N, hidden] -> y [N, hidden] fp64

Token t sits at position t. No intermediate rounding: the storage-dtype rounding of the
kernels is what the comparison bound absorbs."""

from __future__ import annotations

import math

import torch

from dsv4_core import AttentionConfig

F64 = torch.float64


def _freqs(cfg: AttentionConfig, compressed: bool) -> torch.Tensor:
    """The rotary frequencies [R/2] (fp64): main θ without YaRN, or the compress θ with YaRN."""
    R = cfg.rope_dim
    base = cfg.compress_rope_theta if compressed else cfg.rope_theta
    freqs = 1.0 / base ** (torch.arange(0, R, 2, dtype=F64) / R)
    if compressed and cfg.original_max_position_embeddings > 0:
        L0 = cfg.original_max_position_embeddings

        def dim_of(rot: float) -> float:
            return R * math.log(L0 / (rot * 2 * math.pi)) / (2 * math.log(base))

        low = max(math.floor(dim_of(cfg.beta_fast)), 0)
        high = min(math.ceil(dim_of(cfg.beta_slow)), R - 1)
        ramp = ((torch.arange(R // 2, dtype=F64) - low) / max(high - low, 1e-3)).clamp(0, 1)
        smooth = 1 - ramp
        freqs = freqs / cfg.rope_factor * (1 - smooth) + freqs * smooth
    return freqs


def _rope(x: torch.Tensor, pos: torch.Tensor, freqs: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotate interleaved pairs of the last R lanes of x [..., n, D] at positions pos [n]."""
    R = 2 * freqs.numel()
    ang = pos.to(F64)[:, None] * freqs[None, :]  # [n, R/2]
    if inverse:
        ang = -ang
    shape = [1] * (x.dim() - 2) + list(ang.shape)
    c, s = torch.cos(ang).reshape(shape), torch.sin(ang).reshape(shape)
    if x.dim() == 3:  # [n, H, D]: broadcast over heads
        c, s = c.reshape(ang.shape[0], 1, -1), s.reshape(ang.shape[0], 1, -1)
    out = x.clone()
    a, b = x[..., -R::2], x[..., -R + 1::2]
    out[..., -R::2] = a * c - b * s
    out[..., -R + 1::2] = a * s + b * c
    return out


def rms(v: torch.Tensor, eps: float, w: torch.Tensor | None = None) -> torch.Tensor:
    y = v * torch.rsqrt((v * v).mean(-1, keepdim=True) + eps)
    return y if w is None else y * w.to(F64)


def _hadamard(d: int) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=F64)
    while h.shape[0] < d:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h * d ** -0.5


def compressed_entries(cfg: AttentionConfig, x: torch.Tensor, wkv, wgate, ape, norm, *, ratio: int,
                       rotate: bool = False) -> torch.Tensor:
    """Every closed window's entry [N // ratio, d] (fp64) of a compressor over x [N, hidden]."""
    N = x.shape[0]
    d = norm.shape[0]
    kvp = x.to(F64) @ wkv.to(F64).T
    sc = x.to(F64) @ wgate.to(F64).T + ape.to(F64)[torch.arange(N) % ratio]
    entries = []
    for w in range(N // ratio):
        cur = slice(w * ratio, (w + 1) * ratio)
        if ratio == 4:  # previous window's first half of the channels, this window's second half
            if w == 0:
                k, s = kvp[cur, d:], sc[cur, d:]
            else:
                prev = slice((w - 1) * ratio, w * ratio)
                k = torch.cat([kvp[prev, :d], kvp[cur, d:]])
                s = torch.cat([sc[prev, :d], sc[cur, d:]])
        else:
            k, s = kvp[cur], sc[cur]
        pooled = (torch.softmax(s, 0) * k).sum(0)
        e = rms(pooled, cfg.eps, norm)
        e = _rope(e[None, :], torch.tensor([w * ratio]), _freqs(cfg, True))[0]
        entries.append(_hadamard(d) @ e if rotate else e)
    return torch.stack(entries) if entries else torch.zeros(0, d, dtype=F64)


def indexer_picks(cfg: AttentionConfig, x, qr, w, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(picks [N, index_topk] (−1 padded, descending score), scores [N, n_keys] with −inf for
    entries a token may not see) of the lightning indexer, fp64."""
    N, IH, IHD = x.shape[0], cfg.index_num_heads, cfg.index_head_dim
    q = (qr.to(F64) @ w["indexer.wq_b"].to(F64).T).reshape(N, IH, IHD)
    q = _rope(q, torch.arange(N), _freqs(cfg, True)) @ _hadamard(IHD).T
    wts = (x.to(F64) @ w["indexer.weights_proj"].to(F64).T) * IHD ** -0.5 * IH ** -0.5
    scores = torch.einsum("th,thc->tc", wts, torch.relu(torch.einsum("thd,cd->thc", q, keys)))
    visible = (torch.arange(N)[:, None] + 1) // 4
    scores = torch.where(torch.arange(keys.shape[0])[None, :] < visible, scores, torch.full_like(scores, -math.inf))
    picks = torch.full((N, cfg.index_topk), -1, dtype=torch.int64)
    for t in range(N):
        n = min(cfg.index_topk, int(visible[t]))
        if n:
            picks[t, :n] = torch.topk(scores[t], n).indices
    return picks, scores


def layer_exact(cfg: AttentionConfig, layer_id: int, w, x: torch.Tensor, picks: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(y [N, hidden] fp64, CSA fp64 picks, CSA index scores [N, entries]) for a request whose
    tokens x [N, hidden] sit at positions 0 … N−1. `w` maps canonical checkpoint names to
    tensors (`load_weights`). CSA: `picks` [N, index_topk] (−1 none) attends those entries
    instead of the fp64 top-k (to evaluate a layer whose picks differ only among ties)."""
    ratio = cfg.compress_ratio(layer_id)
    N, H, HD, W = x.shape[0], cfg.num_heads, cfg.head_dim, cfg.window
    pos = torch.arange(N)
    freqs = _freqs(cfg, ratio != 0)
    xd = x.to(F64)
    qr = rms(xd @ w["wq_a"].to(F64).T, cfg.eps, w["q_norm"])
    q = rms((qr @ w["wq_b"].to(F64).T).reshape(N, H, HD), cfg.eps)
    q = _rope(q, pos, freqs)
    kv = _rope(rms(xd @ w["wkv"].to(F64).T, cfg.eps, w["kv_norm"])[:, None, :], pos, freqs)[:, 0]
    entries, scores, fp64_picks = None, None, None
    if ratio:
        entries = compressed_entries(cfg, x, w["compressor.wkv"], w["compressor.wgate"], w["compressor.ape"],
                                     w["compressor.norm"], ratio=ratio)
    if ratio == 4:
        keys = compressed_entries(cfg, x, w["indexer.compressor.wkv"], w["indexer.compressor.wgate"],
                                  w["indexer.compressor.ape"], w["indexer.compressor.norm"], ratio=4, rotate=True)
        fp64_picks, scores = indexer_picks(cfg, x, qr, w, keys)
        picks = fp64_picks if picks is None else picks.to(torch.int64)
    sink = w["attn_sink"].to(F64)
    o = torch.zeros(N, H, HD, dtype=F64)
    for t in range(N):
        rows = [kv[max(0, t - W + 1): t + 1]]
        if ratio == 128:
            rows.append(entries[: (t + 1) // 128])
        elif ratio == 4:
            sel = picks[t][picks[t] >= 0]
            rows.append(entries[sel])
        k = torch.cat(rows)  # [n, HD], K = V
        s = (q[t] @ k.T) * cfg.softmax_scale  # [H, n]
        m = torch.maximum(s.max(1).values, sink)
        p = torch.exp(s - m[:, None])
        o[t] = (p @ k) / (p.sum(1) + torch.exp(sink - m))[:, None]
    o = _rope(o, pos, freqs, inverse=True)
    G, OL = cfg.o_groups, cfg.o_lora_rank
    z = torch.einsum("tgi,goi->tgo", o.reshape(N, G, -1), w["wo_a"].to(F64).reshape(G, OL, -1))
    return z.reshape(N, G * OL) @ w["wo_b"].to(F64).T, fp64_picks, scores
