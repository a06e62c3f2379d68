"""An independent formulation of the compressor for the reference tests: the official
DeepSeek-V4 `Compressor` decode loop, token by token from position 0, in fp32, written as
the model writes it (its own state buffers, complex RoPE) and sharing no code with the
golden (`reference.py`, `paging.py`)."""

from __future__ import annotations

import torch

from dsv4_core import AttentionConfig
from dsv4_rope_tables import profile_for_ratio, rope_rows, to_freqs_cis


def official_decode(cfg: AttentionConfig, ratio: int, w: dict[str, torch.Tensor], x: torch.Tensor) -> dict:
    """Returns {closing position: entry (fp32, bf16-valued)} for the tokens x [N, D].

    State [coff·R, coff·d] (score −inf), with overlap = (ratio == 4), coff = 1 + overlap: the
    token at pos goes to slot (coff − 1)·R + pos % R; on close (pos + 1) % R == 0 the pool runs
    over R slots (ratio 128) or over cat(state[:R, :d], state[R:, d:]) — 2R slots, the
    previous window's front halves and the current window's back halves — after which the
    second half of the state shifts into the first (ratio 4). Then bf16, RMSNorm (bf16 out),
    RoPE via complex freqs_cis at the window's first position pos + 1 − R."""
    R, d = ratio, w["norm_weight"].shape[0]
    overlap = ratio == 4
    co = 1 + overlap
    kv_state = torch.zeros(co * R, co * d)
    score_state = torch.full((co * R, co * d), float("-inf"))
    out = {}
    prof = profile_for_ratio(cfg, R)
    for pos in range(x.shape[0]):
        xf = x[pos].float()
        slot = (co - 1) * R + pos % R
        kv_state[slot] = xf @ w["wkv"].float().T
        score_state[slot] = xf @ w["wgate"].float().T + w["ape"][pos % R]
        if (pos + 1) % R:
            continue
        if overlap:
            k = torch.cat([kv_state[:R, :d], kv_state[R:, d:]])
            s = torch.cat([score_state[:R, :d], score_state[R:, d:]])
        else:
            k, s = kv_state, score_state
        pooled = (k * torch.softmax(s, dim=0)).sum(0).bfloat16().float()
        n = (pooled * torch.rsqrt(pooled.pow(2).mean() + cfg.eps) * w["norm_weight"].float()).bfloat16().float()
        cos, sin = rope_rows(prof, torch.tensor([pos + 1 - R]))
        fc = to_freqs_cis(cos, sin)[0]
        r = torch.view_as_real(torch.view_as_complex(n[-64:].reshape(-1, 2).contiguous()) * fc).reshape(-1)
        n[-64:] = r.bfloat16().float()
        out[pos] = n
        if overlap:
            kv_state[:R], score_state[:R] = kv_state[R:].clone(), score_state[R:].clone()
    return out
