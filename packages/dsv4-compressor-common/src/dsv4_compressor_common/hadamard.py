"""The Walsh–Hadamard rotation of DeepSeek-V4's indexer (`rotate_activation`): Sylvester's ±1
matrix scaled by n^-0.5, applied to the indexer's queries and, after RoPE, to its keys (the
family's key path with `rotate=True`).

`hadamard_matrix` is exact in bf16 (±1 entries), so a kernel multiplies by it on the cube
and applies the scale in fp32; `walsh_hadamard_fwht` is the same rotation by the butterfly,
the independent formulation the dense fp64 oracles use."""

from __future__ import annotations

import torch


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(t.dtype)


def no_round(t: torch.Tensor) -> torch.Tensor:
    return t


def rounder(dtype: torch.dtype):
    """bf16 rounding for the fp32 golden, none for the fp64 exact evaluation."""
    return bf16_round if dtype == torch.float32 else no_round


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sylvester's ±1 Hadamard matrix [n, n] (n a power of two): H_{2m} = [[H, H], [H, −H]]."""
    if n <= 0 or n & (n - 1):
        raise ValueError(f"the Hadamard rotation needs a power-of-two width, got {n}")
    h = torch.ones(1, 1, dtype=dtype)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def hadamard(x: torch.Tensor, *, dtype: torch.dtype = torch.float32, rnd=None) -> torch.Tensor:
    """`rotate_activation`: (x @ Had) · n^-0.5 over the last dim, rounded by `rnd` (bf16 for the
    golden). Sylvester's matrix is symmetric and Had·Had = n·I, so the rotation is orthonormal."""
    rnd = rnd or rounder(dtype)
    n = x.shape[-1]
    return rnd((x.to(dtype) @ hadamard_matrix(n, dtype).to(x.device)) * n ** -0.5)


def walsh_hadamard_fwht(x: torch.Tensor) -> torch.Tensor:
    """The same rotation by the fast butterfly (no matrix, no rounding)."""
    n = x.shape[-1]
    y = x.clone()
    h = 1
    while h < n:
        y = y.reshape(*x.shape[:-1], n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack([a + b, a - b], -2)
        h *= 2
    return y.reshape(x.shape) * n ** -0.5


def hadamard_halves(n: int, rope_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sylvester's matrix in bf16 split by rows into the nope rows [n − rope_dim, n] and the
    rope rows [rope_dim, n]: a kernel rotates [nope | rope] as nope @ Had_nope + rope @ Had_rope
    (so the rotated rope lanes never leave the core)."""
    had = hadamard_matrix(n, torch.bfloat16)
    if device is not None and had.device != torch.device(device):  # a host constant, uploaded
        had = had.to(device)
    return had[:n - rope_dim].contiguous(), had[n - rope_dim:].contiguous()
