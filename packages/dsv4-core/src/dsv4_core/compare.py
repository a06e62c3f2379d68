"""Golden comparators: the one tolerance rule every package uses.

Floating outputs (flash-attention's rule): the kernel's error against an fp64 evaluation
of the math must stay within `mult` × the error of the storage-dtype reference (the same
math with the documented bf16 rounding points) against that fp64 evaluation, elementwise
bounded by the scalar `bound = mult · max|ref − exact| + floor`. NaN or Inf in the output
always fails. Integer outputs compare exactly; top-k indices compare as sets, tolerating
swaps among tied scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch


@dataclasses.dataclass(frozen=True)
class Report:
    name: str
    ok: bool
    max_abs: float
    mean_abs: float
    bound: float
    frac_out: float  # fraction of elements whose error exceeds the bound
    worst_index: tuple[int, ...] | None
    ref_err: float  # max |storage-dtype reference − exact|
    detail: str = ""

    def __str__(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        s = (f"[{verdict}] {self.name}: max_abs={self.max_abs:.3e} mean_abs={self.mean_abs:.3e} "
             f"bound={self.bound:.3e} (ref_err={self.ref_err:.3e}) out_of_bound={self.frac_out:.2%}")
        if self.worst_index is not None:
            s += f" worst@{list(self.worst_index)}"
        return s + (f" {self.detail}" if self.detail else "")

    def raise_if_failed(self) -> Report:
        if not self.ok:
            raise AssertionError(str(self))
        return self


def _unravel(flat: int, shape: torch.Size) -> tuple[int, ...]:
    idx = []
    for s in reversed(shape):
        idx.append(flat % s)
        flat //= s
    return tuple(reversed(idx))


def compare(out: torch.Tensor, exact: torch.Tensor, ref: torch.Tensor, *, name: str = "out",
            mult: float = 2.0, floor: float | None = None) -> Report:
    """Check `out` against `exact` (fp64 math) with the bound set by `ref` (storage dtype).

    `floor` (default 2^-16 · max|exact|, or 1e-30 for an all-zero exact) keeps the bound
    from collapsing to 0 where the reference happens to be exact."""
    if out.shape != exact.shape or ref.shape != exact.shape:
        raise ValueError(f"{name}: shapes differ: out {tuple(out.shape)}, exact {tuple(exact.shape)}, "
                         f"ref {tuple(ref.shape)}")
    o = out.detach().to("cpu", torch.float64)
    e = exact.detach().to("cpu", torch.float64)
    r = ref.detach().to("cpu", torch.float64)
    if not torch.isfinite(e).all():
        raise ValueError(f"{name}: the exact evaluation has NaN/Inf; fix the case")
    ref_err = float((r - e).abs().max()) if e.numel() else 0.0
    scale = float(e.abs().max()) if e.numel() else 0.0
    if floor is None:
        floor = max(scale * 2.0 ** -16, 1e-30)
    bound = mult * ref_err + floor
    if o.numel() == 0:
        return Report(name, True, 0.0, 0.0, bound, 0.0, None, ref_err)
    nonfinite = ~torch.isfinite(o)
    err = (o - e).abs()
    err[nonfinite] = float("inf")
    flat = int(torch.argmax(err))
    max_abs = float(err.reshape(-1)[flat])
    out_mask = err > bound
    n_bad = int(out_mask.sum())
    n_nonfinite = int(nonfinite.sum())
    detail = f"nonfinite={n_nonfinite}" if n_nonfinite else ""
    finite_err = err[~nonfinite]
    mean_abs = float(finite_err.mean()) if finite_err.numel() else float("inf")
    return Report(name=name, ok=n_bad == 0 and n_nonfinite == 0, max_abs=max_abs, mean_abs=mean_abs,
                  bound=bound, frac_out=n_bad / o.numel(), worst_index=_unravel(flat, o.shape),
                  ref_err=ref_err, detail=detail)


def compare_exact(out: torch.Tensor, expected: torch.Tensor, *, name: str = "out") -> Report:
    """Exact equality for integer (or otherwise bit-exact) outputs."""
    if out.shape != expected.shape:
        raise ValueError(f"{name}: shape {tuple(out.shape)} != expected {tuple(expected.shape)}")
    o, e = out.detach().cpu(), expected.detach().cpu()
    if o.is_floating_point() and not torch.isfinite(o).all():
        bad = ~torch.isfinite(o)
    else:
        bad = o != e.to(o.dtype)
    n_bad = int(bad.sum())
    worst = _unravel(int(torch.nonzero(bad.reshape(-1))[0]), o.shape) if n_bad else None
    diff = (o.double() - e.double()).abs()
    return Report(name=name, ok=n_bad == 0, max_abs=float(diff.max()) if diff.numel() else 0.0,
                  mean_abs=float(diff.mean()) if diff.numel() else 0.0, bound=0.0,
                  frac_out=n_bad / max(o.numel(), 1), worst_index=worst, ref_err=0.0,
                  detail=f"mismatches={n_bad}" if n_bad else "")


def compare_topk(idx: torch.Tensor, ref_idx: torch.Tensor, scores: torch.Tensor, *, name: str = "topk",
                 tie_tol: float = 0.0, invalid: int = -1) -> Report:
    """Top-k indices per row `[..., k]`, compared as sets with tie awareness.

    `scores[..., n]` are the candidate scores the selection was made from (indices into the
    last dim). A row passes when its valid indices are distinct, in range, as many as the
    reference's, and every index that is not in the reference set has a score within
    `tie_tol` of the reference's k-th (smallest selected) score — i.e. only tied candidates
    were swapped."""
    if idx.shape != ref_idx.shape:
        raise ValueError(f"{name}: shape {tuple(idx.shape)} != reference {tuple(ref_idx.shape)}")
    i2 = idx.detach().cpu().reshape(-1, idx.shape[-1]).long()
    r2 = ref_idx.detach().cpu().reshape(-1, idx.shape[-1]).long()
    s2 = scores.detach().cpu().reshape(-1, scores.shape[-1]).double()
    bad_rows: list[tuple[int, str]] = []
    for row in range(i2.shape[0]):
        got = i2[row][i2[row] != invalid]
        want = r2[row][r2[row] != invalid]
        why = None
        if got.numel() != want.numel():
            why = f"{got.numel()} valid indices, expected {want.numel()}"
        elif got.numel() and (got.min() < 0 or got.max() >= s2.shape[1]):
            why = "index out of range"
        elif got.unique().numel() != got.numel():
            why = "duplicate indices"
        elif got.numel():
            kth = float(s2[row, want].min())
            extra = sorted(set(got.tolist()) - set(want.tolist()))
            if extra:
                worst = float(s2[row, extra].min())
                if worst < kth - tie_tol:
                    why = f"index {extra[0]} (score {worst:.6g}) is below the k-th score {kth:.6g}"
        if why:
            bad_rows.append((row, why))
    n = i2.shape[0]
    detail = f"first bad row {bad_rows[0][0]}: {bad_rows[0][1]}" if bad_rows else ""
    return Report(name=name, ok=not bad_rows, max_abs=float(len(bad_rows)), mean_abs=0.0, bound=0.0,
                  frac_out=len(bad_rows) / max(n, 1),
                  worst_index=(bad_rows[0][0],) if bad_rows else None, ref_err=0.0, detail=detail)


def summarize(reports: list[Report]) -> dict[str, Any]:
    return {"ok": all(r.ok for r in reports), "reports": [str(r) for r in reports]}
