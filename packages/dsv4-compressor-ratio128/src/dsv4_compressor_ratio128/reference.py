"""Torch golden for the ratio-128 (HCA) KV compressor (official DeepSeek-V4 `Compressor`,
`compress_ratio = 128`), fp32 math with bf16 storage, rounding at:

    1. kv_proj = x @ wkvᵀ, score = x @ wgateᵀ + ape[pos % 128]   fp32 (stored in the state)
    2. pooled  = Σ_w softmax_w(score) · kv_proj                   fp32, per channel, over the
                                                                  window's 128 positions
    3. pb      = bf16(pooled)
    4. n       = bf16(pb · rsqrt(mean(pb²) + eps) · γ)
    5. entry   = n, last rope_dim lanes bf16(rope(n[-64:]))       compress profile, at the
                                                                  window's first position

`project` is step 1, `compress_windows` steps 2–5 (for windows already assembled into slots,
see `paging.py`). Both take `dtype`: float32 for the golden, float64 (with no rounding)
for the comparator's exact evaluation. The prefill package reuses these functions.
"""

from __future__ import annotations

from typing import Callable

import torch

from dsv4_core.pooling import gated_pool
from dsv4_rope_tables import rotate

RATIO = 128


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(t.dtype)


def no_round(t: torch.Tensor) -> torch.Tensor:
    return t


def project(x: torch.Tensor, wkv: torch.Tensor, wgate: torch.Tensor, ape: torch.Tensor, positions: torch.Tensor,
            *, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token state rows: x [T, D] -> (kv_proj [T, C], score [T, C]) with the APE row
    `ape[pos % ratio]` added to the score (ratio = ape.shape[0])."""
    xf = x.to(dtype)
    kv = xf @ wkv.to(dtype).T
    idx = positions.to(torch.int64).reshape(-1) % ape.shape[0]
    score = xf @ wgate.to(dtype).T + ape.to(dtype)[idx.to(ape.device)]
    return kv, score


def compress_windows(kv_slots: torch.Tensor, score_slots: torch.Tensor, valid: torch.Tensor,
                     norm_weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, eps: float,
                     dtype: torch.dtype = torch.float32, rnd: Callable | None = None) -> torch.Tensor:
    """Steps 2–5 for N windows: slots [N, W, head_dim], valid [N, W] bool, cos / sin [N, 64]
    (canonical rows at each window's first position) -> entries [N, head_dim] in `dtype`
    (bf16-valued when rnd rounds)."""
    rnd = rnd or (bf16_round if dtype == torch.float32 else no_round)
    pooled = gated_pool(kv_slots.to(dtype), score_slots.to(dtype), valid)
    pb = rnd(pooled)
    n = rnd(pb * torch.rsqrt((pb * pb).mean(-1, keepdim=True) + eps) * norm_weight.to(dtype).reshape(1, -1))
    r = cos.shape[-1]
    out = n.clone()
    out[:, -r:] = rnd(rotate(n[:, -r:], cos.to(dtype), sin.to(dtype)))
    return out
