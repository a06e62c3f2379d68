"""Seeded cases for the RoPE building block, shared by tests, `nox -s golden` and `nox -s bench`.

Golden: the pypto block (`build_rope_heads_kernel`) on the simulator vs the torch reference
(`apply_rope`): forward, inverse, and forward∘inverse ≈ identity, at a small head count and
at FLASH heads (H = 64, head_dim 512), positions spread over 0 … 1,048,575."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_core import FLASH, TINY, AttentionConfig
from dsv4_core.compare import compare
from dsv4_core.golden import BenchOutcome, GoldenOutcome

from .reference import apply_rope
from .tables import profile_for_ratio, rope_rows

MODULE = "rope_tables"


@dataclasses.dataclass(frozen=True)
class RopeCase:
    name: str
    config: AttentionConfig
    tokens: int
    mode: str  # "forward" | "inverse" | "roundtrip"
    compress_ratio: int = 4
    seed: int = 0


_CASES = [
    RopeCase("tiny-fwd-T5", TINY, 5, "forward"),
    RopeCase("tiny-inv-T5", TINY, 5, "inverse", compress_ratio=0),
    RopeCase("tiny-roundtrip-T19", TINY, 19, "roundtrip"),
    RopeCase("flash-fwd-T128", FLASH, 128, "forward"),
    RopeCase("flash-inv-T128", FLASH, 128, "inverse"),
    RopeCase("flash-roundtrip-T37", FLASH, 37, "roundtrip"),
]
CASES = {c.name: c for c in _CASES}
GOLDEN_CASES = [(c.name, "flash" if c.config is FLASH else "small") for c in _CASES]
BENCH_CASES = ["flash-fwd-T128", "flash-fwd-T1024"]


def make_inputs(case: RopeCase) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    cfg = case.config
    x = torch.randn(case.tokens, cfg.num_heads, cfg.head_dim, generator=g).to(torch.bfloat16)
    positions = torch.randint(0, cfg.max_position_embeddings, (case.tokens,), generator=g)
    positions[0] = cfg.max_position_embeddings - 1  # the last position is always covered
    cos, sin = rope_rows(profile_for_ratio(cfg, case.compress_ratio), positions)
    return {"x": x, "positions": positions, "cos": cos, "sin": sin}


def _run_kernel(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cfg: AttentionConfig, inverse: bool,
                values: bool = True):
    from dsv4_core import sim

    from .pypto_block import build_rope_heads_kernel, swap_index

    kernel = build_rope_heads_kernel(cfg.num_heads, cfg.head_dim, cfg.rope_dim, inverse=inverse)
    out = torch.zeros_like(x)
    run = sim.run(kernel, [x, cos, sin, swap_index(cfg.rope_dim), out], name=f"rope_{'inv' if inverse else 'fwd'}",
                  values=values)
    return out, run


def _exact(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse: bool) -> torch.Tensor:
    """fp64 evaluation of the rotation from the same inputs (no rounding)."""
    r = cos.shape[-1]
    out = x.double().clone()
    c, s = cos.double()[:, None, :], sin.double()[:, None, :]
    xr = out[..., -r:]
    sw = xr.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    out[..., -r:] = xr * c - sw * s if inverse else xr * c + sw * s
    return out


def golden(name: str, *, perturb: str | None = None) -> GoldenOutcome:
    """Run one case. `perturb="flip_sin"` feeds the kernel the negated sine (tests use it to
    show the check fails)."""
    case = CASES[name]
    inp = make_inputs(case)
    x, cos, sin = inp["x"], inp["cos"], inp["sin"]
    ksin = -sin if perturb == "flip_sin" else sin
    if case.mode == "roundtrip":
        y, run1 = _run_kernel(x, cos, ksin, case.config, inverse=False)
        out, run = _run_kernel(y, cos, ksin, case.config, inverse=True)
        exact = x.double()  # forward∘inverse is the identity
        ref = apply_rope(apply_rope(x, cos, sin), cos, sin, inverse=True)
    else:
        inverse = case.mode == "inverse"
        out, run = _run_kernel(x, cos, ksin, case.config, inverse=inverse)
        exact = _exact(x, cos, sin, inverse)
        ref = apply_rope(x, cos, sin, inverse=inverse)
    reports = [compare(out, exact, ref, name="x_rotated")]
    nope = case.config.nope_dim
    same = bool(torch.equal(out[..., :nope], x[..., :nope]))
    if not same:
        reports[0] = dataclasses.replace(reports[0], ok=False, detail="nope lanes changed")
    return GoldenOutcome(MODULE, name, reports, run)


def bench(name: str) -> BenchOutcome:
    tokens = int(name.rsplit("T", 1)[1])
    case = RopeCase(name, FLASH, tokens, "forward")
    inp = make_inputs(case)
    _, run = _run_kernel(inp["x"], inp["cos"], inp["sin"], FLASH, inverse=False, values=False)
    cfg = FLASH
    nbytes = 2 * tokens * cfg.num_heads * cfg.head_dim * 2 + 2 * tokens * cfg.rope_dim * 4
    flops = 3 * tokens * cfg.num_heads * cfg.rope_dim
    return BenchOutcome(MODULE, name, run.aicore_us, nbytes, flops, cores=run.cores,
                        note="x [T,64,512] bf16 read + write, nope lanes copied")
