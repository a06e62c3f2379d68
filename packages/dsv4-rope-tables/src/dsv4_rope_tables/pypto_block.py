"""The pypto building block that applies the canonical RoPE inside a kernel.

    forward  y = x·cos + swap_pairs(x)·sin_signed
    inverse  y = x·cos − swap_pairs(x)·sin_signed

`swap_pairs` is an `index_select` over the last dim with the index `j ^ 1` (`swap_index`):
pypto rejects a reshape to a last dim of 2 (tiles need 32-byte rows), so the pair swap is a
lane gather. Any per-column scale (an RMSNorm weight) must be applied before the rotation,
because lane j reads lane j^1; per-row scales commute.

No `from __future__ import annotations` here: pypto's parser reads kernel annotations as
objects.
"""

import pypto
import torch

from dsv4_core.backends import jit_options
from dsv4_core.chip import VEC_OPERAND_ELEMS

F32, BF16, I32 = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32


def swap_index(rope_dim: int) -> torch.Tensor:
    """int32 [rope_dim] with j ^ 1: the lane each output lane reads its pair partner from."""
    return torch.arange(rope_dim, dtype=torch.int32) ^ 1


def rope_rotate(x_rope, cos, sin_signed, swap_idx, inverse: bool = False):
    """Rotate fp32 `x_rope [..., R]` by canonical rows `cos`, `sin_signed` (fp32, broadcastable
    against x_rope, e.g. [T, 1, R] for x [T, H, R]); `swap_idx` is the kernel input
    holding `swap_index(R)`. The caller sets vector tile shapes that fit x_rope's tile."""
    swapped = pypto.index_select(x_rope, -1, swap_idx)
    term = pypto.mul(swapped, sin_signed)
    straight = pypto.mul(x_rope, cos)
    return pypto.sub(straight, term) if inverse else pypto.add(straight, term)


def build_rope_heads_kernel(num_heads: int, head_dim: int, rope_dim: int, *, inverse: bool = False,
                            token_tile: int = 16, run_mode=None):
    """A kernel rotating the last `rope_dim` lanes of every head of x [T, H, D] bf16 (T
    dynamic) at per-token rows cos / sin [T, R] fp32; out [T, H, D] bf16 keeps the nope lanes.
    Rounding: rope lanes in fp32, one bf16 rounding at the end (as `apply_rope`)."""
    H, D, R, TT = num_heads, head_dim, rope_dim, token_tile
    NOPE = D - R
    DYN, S = pypto.DYNAMIC, pypto.STATIC
    opts = jit_options(run_mode)
    # heads per vector tile: ≤ VEC_OPERAND_ELEMS elements per operand keeps every op's
    # inputs + output inside the unified buffer
    hv = max(1, min(H, VEC_OPERAND_ELEMS // (TT * R)))
    hv_nope = max(1, min(H, VEC_OPERAND_ELEMS // (TT * NOPE))) if NOPE else 1

    @pypto.frontend.jit(runtime_options=opts)
    def rope_heads(x: pypto.Tensor([DYN, H, D], BF16), cos: pypto.Tensor([DYN, R], F32),
                   sin: pypto.Tensor([DYN, R], F32), swap: pypto.Tensor([S], I32),
                   out: pypto.Tensor([DYN, H, D], BF16)):
        n = x.shape[0]
        for i in pypto.loop((n + TT - 1) // TT, name="tok_tiles", idx_name="i"):
            off = i * TT
            rows = pypto.min(off + TT, n) - off
            xn = pypto.view(x, [TT, H, NOPE], [off, 0, 0], valid_shape=[rows, H, NOPE])
            xr = pypto.view(x, [TT, H, R], [off, 0, NOPE], valid_shape=[rows, H, R])
            ct = pypto.view(cos, [TT, R], [off, 0], valid_shape=[rows, R])
            st = pypto.view(sin, [TT, R], [off, 0], valid_shape=[rows, R])
            pypto.set_vec_tile_shapes(TT, R)
            c3 = pypto.reshape(ct, [TT, 1, R], valid_shape=[rows, 1, R])
            s3 = pypto.reshape(st, [TT, 1, R], valid_shape=[rows, 1, R])
            pypto.set_vec_tile_shapes(TT, hv, R)
            y = rope_rotate(pypto.cast(xr, F32), c3, s3, swap, inverse=inverse)
            pypto.assemble(pypto.cast(y, BF16, pypto.CastMode.CAST_RINT), [off, 0, NOPE], out)
            pypto.set_vec_tile_shapes(TT, hv_nope, NOPE)
            pypto.assemble(pypto.mul(xn, 1.0), [off, 0, 0], out)

    return rope_heads
