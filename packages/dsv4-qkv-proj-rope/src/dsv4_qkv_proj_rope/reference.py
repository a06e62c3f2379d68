"""Torch golden for the Q / KV projection (official DeepSeek-V4 `Attention.forward`, Q path
and sliding-window KV path), bf16 storage with fp32 math, rounding at:

    1. a   = bf16(x @ wq_aᵀ)
    2. qr  = bf16(rms(a) · γq)                       -> output qr [T, q_lora_rank]
    3. qb  = bf16(qr @ wq_bᵀ)                        viewed [T, H, head_dim]
    4. qn  = bf16(qb · rsqrt(mean(qb²) + eps))       per head, unweighted
    5. q   = qn, last rope_dim lanes bf16(rope(qn))  -> output q [T, H, head_dim]
    6. k   = bf16(x @ wkvᵀ);  kvn = bf16(rms(k) · γkv)
    7. kv  = kvn, last rope_dim lanes bf16(rope(kvn)) -> output kv [T, head_dim]

`qkv_exact` evaluates the same math in fp64 with no intermediate rounding (the comparator's
"exact" answer). The official model's FP8 simulation of the kv nope lanes is a later mode.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dsv4_rope_tables import rotate


class QKV(NamedTuple):
    q: torch.Tensor  # [T, H, head_dim]
    kv: torch.Tensor  # [T, head_dim]
    qr: torch.Tensor  # [T, q_lora_rank]


def _rms(v: torch.Tensor, eps: float) -> torch.Tensor:
    return v * torch.rsqrt((v * v).mean(-1, keepdim=True) + eps)


def _compute(x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, cos, sin, *, num_heads: int, eps: float,
             dtype: torch.dtype, rnd) -> QKV:
    T, r = x.shape[0], cos.shape[-1]
    xf = x.to(dtype)
    a = rnd(xf @ wq_a.to(dtype).T)
    qr = rnd(_rms(a, eps) * q_norm_weight.to(dtype).reshape(-1))
    qb = rnd(qr @ wq_b.to(dtype).T).reshape(T, num_heads, -1)
    qn = rnd(_rms(qb, eps))
    q = qn.clone()
    q[..., -r:] = rnd(rotate(qn[..., -r:], cos[:, None, :], sin[:, None, :]))
    k = rnd(xf @ wkv.to(dtype).T)
    kvn = rnd(_rms(k, eps) * kv_norm_weight.to(dtype).reshape(-1))
    kv = kvn.clone()
    kv[..., -r:] = rnd(rotate(kvn[..., -r:], cos, sin))
    return QKV(q, kv, qr)


def qkv_reference(x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, cos, sin, *, num_heads: int,
                  eps: float) -> QKV:
    """The golden: fp32 math, bf16 at the documented points; returns bf16 tensors."""
    def rnd(t):
        return t.to(torch.bfloat16).float()

    out = _compute(x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, cos, sin, num_heads=num_heads, eps=eps,
                   dtype=torch.float32, rnd=rnd)
    return QKV(*(t.to(torch.bfloat16) for t in out))


def qkv_exact(x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, cos, sin, *, num_heads: int, eps: float) -> QKV:
    """fp64, no intermediate rounding, from the same (bf16 / fp32) inputs."""
    return _compute(x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, cos, sin, num_heads=num_heads, eps=eps,
                    dtype=torch.float64, rnd=lambda t: t)
