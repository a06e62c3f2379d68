"""Torch golden for the ratio-4 (CSA) KV compressor (official DeepSeek-V4 `Compressor`,
`compress_ratio = 4`, overlapping windows), fp32 math with bf16 storage, rounding at:

    1. kv_proj = x @ wkvᵀ, score = x @ wgateᵀ + ape[pos % 4]       fp32 [T, 1024] (stored in
                                                                  the state)
    2. pooled  = Σ_w softmax_w(score) · kv_proj                   fp32, per channel, over 8
       slots: front halves [:512] of the previous window's positions p*−7 … p*−4 and back
       halves [512:] of the current window's positions p*−3 … p*; slots at positions < 0
       (the first window's previous half) do not exist and are left out
    3. pb      = bf16(pooled)
    4. n       = bf16(pb · rsqrt(mean(pb²) + eps) · γ)
    5. entry   = n, last rope_dim lanes bf16(rope(n[-64:]))       compress profile, at the
                                                                  window's first position p*−3

The math is ratio-generic and shared with the ratio-128 compressor: `project` (step 1) and
`compress_windows` (steps 2–5) come from `dsv4_compressor_ratio128.reference`, the window
geometry (which position and which half feeds each slot) from
`dsv4_core.pooling.window_positions`, the gated pooling from `dsv4_core.pooling.gated_pool`.
"""

from __future__ import annotations

from dsv4_compressor_ratio128.reference import bf16_round, compress_windows, no_round, project

RATIO = 4

__all__ = ["RATIO", "bf16_round", "compress_windows", "no_round", "project"]
