"""pypto building blocks shared by more than one kernel package.

No `from __future__ import annotations` here: pypto's parser reads kernel annotations as
objects, and these functions are called inside jit kernels."""

import pypto


def rms_norm(xf, dim: int, eps: float, weight=None):
    """x · rsqrt(mean(x², -1) + eps) [· weight] on an fp32 tile `xf [..., dim]`.

    Hand-written (sum of squares, rsqrt, multiply): pypto's builtin `rms_norm` gives the right
    values but fails pass-level verification in 0.2.0. `weight` is an fp32 tile broadcastable
    against xf (e.g. [1, dim]); the caller sets vector tile shapes that fit xf."""
    ss = pypto.sum(pypto.mul(xf, xf), -1, keepdim=True)
    inv = pypto.rsqrt(pypto.add(pypto.mul(ss, 1.0 / dim), eps))
    y = pypto.mul(xf, inv)
    return y if weight is None else pypto.mul(y, weight)


def to_bf16(x):
    """Round an fp32 tile to bf16, round-to-nearest-even (the references' `.to(bfloat16)`)."""
    return pypto.cast(x, pypto.DT_BF16, pypto.CastMode.CAST_RINT)
