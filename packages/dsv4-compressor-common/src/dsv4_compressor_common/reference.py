"""Torch golden of the KV compressors (official DeepSeek-V4 `Compressor`, both compress
ratios), fp32 math with bf16 storage, rounding at:

    1. kv_proj = x @ wkvᵀ, score = x @ wgateᵀ + ape[pos % ratio]   fp32 [T, C] (stored in
                                                                   the state), C = coff·d
    2. pooled  = Σ_w softmax_w(score) · kv_proj                     fp32, per channel, over
       the window's slots (`pooling.window_positions`): ratio 128, the window's 128
       positions; ratio 4, the front halves [:d] of the previous window's positions
       p*−7 … p*−4 and the back halves [d:] of the current window's p*−3 … p*; slots at
       positions < 0 do not exist and are left out
    3. pb      = bf16(pooled)
    4. n       = bf16(pb · rsqrt(mean(pb²) + eps) · γ)
    5. entry   = n, last rope_dim lanes bf16(rope(n[-64:]))         compress profile, at the
                                                                    window's first position
    6. (rotate=True, the indexer's keys) entry = bf16((entry @ Had) · d^-0.5): Sylvester's ±1
       matrix (`hadamard`), fp32 accumulation, the scale in fp32

`project` is step 1, `compress_windows` steps 2–5 (for windows already assembled into slots,
see `paging.gather_slots`). Both take their widths from the tensors (any head dim d: the
attention compressors' 512, the indexer key compressor's 128) and take `dtype`: float32 for
the golden, float64 (with no rounding) for the comparator's exact evaluation.
"""

from __future__ import annotations

from typing import Callable

import torch

from dsv4_rope_tables import rotate as rope_rotate

from .hadamard import bf16_round, hadamard, no_round
from .pooling import gated_pool

__all__ = ["bf16_round", "compress_windows", "no_round", "project"]


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
                     dtype: torch.dtype = torch.float32, rnd: Callable | None = None,
                     rotate: bool = False) -> torch.Tensor:
    """Steps 2–5 (and 6 with `rotate=True`) for N windows: slots [N, W, head_dim], valid [N, W]
    bool, cos / sin [N, 64] (canonical rows at each window's first position) -> entries
    [N, head_dim] in `dtype` (bf16-valued when rnd rounds)."""
    rnd = rnd or (bf16_round if dtype == torch.float32 else no_round)
    pooled = gated_pool(kv_slots.to(dtype), score_slots.to(dtype), valid)
    pb = rnd(pooled)
    n = rnd(pb * torch.rsqrt((pb * pb).mean(-1, keepdim=True) + eps) * norm_weight.to(dtype).reshape(1, -1))
    r = cos.shape[-1]
    out = n.clone()
    out[:, -r:] = rnd(rope_rotate(n[:, -r:], cos.to(dtype), sin.to(dtype)))
    return hadamard(out, dtype=dtype, rnd=rnd) if rotate else out
