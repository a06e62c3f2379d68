"""Torch reference rotation on the canonical layout (fp32 math)."""

from __future__ import annotations

import torch

from .tables import validate_table


def swap_pairs(x: torch.Tensor) -> torch.Tensor:
    """x[..., j] -> x[..., j ^ 1]."""
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


def rotate(x_rope: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
    """Rotate exactly `rope_dim` lanes: x·cos ± swap_pairs(x)·sin_signed in fp32 (fp64 when
    x_rope is fp64, for exact evaluations).

    cos / sin broadcast against x_rope (e.g. x [T, H, 64] with cos [T, 1, 64])."""
    xf = x_rope if x_rope.dtype == torch.float64 else x_rope.float()
    cos, sin = cos.to(xf.dtype), sin.to(xf.dtype)
    sw = swap_pairs(xf)
    return xf * cos - sw * sin if inverse else xf * cos + sw * sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, inverse: bool = False,
               validate: bool = True) -> torch.Tensor:
    """Rotate the last `rope_dim` lanes of x ([T, ..., D]) at per-token rows cos/sin [T, rope_dim].

    Math in fp32 (the official `apply_rotary_emb`), result in x.dtype; the nope lanes are
    returned untouched. `inverse=True` applies the conjugate rotation (attention output)."""
    if validate:
        validate_table(cos, sin, name="apply_rope(cos, sin)")
    r = cos.shape[-1]
    if x.shape[-1] < r:
        raise ValueError(f"apply_rope: x's last dim {x.shape[-1]} is smaller than the rope dim {r}")
    if x.shape[0] != cos.shape[0]:
        raise ValueError(f"apply_rope: x has {x.shape[0]} tokens but cos/sin have {cos.shape[0]} rows")
    extra = x.dim() - cos.dim()
    c = cos.reshape(cos.shape[:1] + (1,) * extra + cos.shape[1:])
    s = sin.reshape(sin.shape[:1] + (1,) * extra + sin.shape[1:])
    out = x.clone()
    out[..., -r:] = rotate(x[..., -r:], c, s, inverse=inverse).to(x.dtype)
    return out
