"""Input validation shared by every public kernel function: each error names the argument,
what was expected and what it got, and is raised before anything is written."""

from __future__ import annotations

from typing import Sequence

import torch


def check_tensor(name: str, t: object, *, shape: Sequence[int | str | None] | None = None,
                 dtype: torch.dtype | Sequence[torch.dtype] | None = None,
                 device: torch.device | str | None = None, dims: dict[str, int] | None = None) -> torch.Tensor:
    """Validate one tensor argument.

    shape entries: an int (must match), None (any) or a symbol name (str) bound on first use
    in `dims` so later arguments must agree (e.g. "T")."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtype is not None:
        allowed = (dtype,) if isinstance(dtype, torch.dtype) else tuple(dtype)
        if t.dtype not in allowed:
            want = " or ".join(str(d).replace("torch.", "") for d in allowed)
            raise TypeError(f"{name} must have dtype {want}, got {str(t.dtype).replace('torch.', '')}")
    if device is not None and torch.device(device).type != t.device.type:
        raise ValueError(f"{name} must be on device {torch.device(device)}, got {t.device}")
    if shape is not None:
        if t.dim() != len(shape):
            raise ValueError(f"{name} must be {len(shape)}-D {_fmt(shape)}, got shape {list(t.shape)}")
        for i, (want, got) in enumerate(zip(shape, t.shape)):
            if want is None:
                continue
            if isinstance(want, str):
                if dims is None:
                    continue
                if want in dims and dims[want] != got:
                    raise ValueError(f"{name} dim {i} ({want}) must be {dims[want]} to match the other "
                                     f"arguments, got shape {list(t.shape)}")
                dims.setdefault(want, got)
            elif got != want:
                raise ValueError(f"{name} must have shape {_fmt(shape)}, got {list(t.shape)}")
    return t


def _fmt(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    devs = {n: t.device for n, t in tensors.items()}
    first = next(iter(devs.values()))
    for n, d in devs.items():
        if d != first:
            raise ValueError(f"all tensors must be on one device: {n} is on {d}, "
                             f"{next(iter(devs))} on {first}")
    return first


def check_index_range(name: str, t: torch.Tensor, low: int, high: int, *, allow: Sequence[int] = ()) -> None:
    """Every value v of t satisfies low <= v < high, or is one of `allow` (e.g. -1)."""
    if t.numel() == 0:
        return
    v = t.detach().to("cpu", torch.int64)
    ok = (v >= low) & (v < high)
    for a in allow:
        ok |= v == a
    if not bool(ok.all()):
        bad = v[~ok][0].item()
        extra = f" or {list(allow)}" if allow else ""
        raise ValueError(f"{name} values must be in [{low}, {high}){extra}, got {bad}")
