"""Scenario plumbing shared by the sparse-attention packages' `cases.py` (their tests,
`nox -s golden` and `nox -s bench`): the decode scenario record, seeded request starts, the
golden check of one scenario — the kernel on the simulator against the package's golden,
plus the two perturbations that must make it fail — (`check_golden`, and
`check_decode_case` for a decode scenario) and the cost-model timing run.

Each package supplies what differs: its inputs, its golden and fp64 references, and
`resolved(cfg, inputs) -> (kv source, physical rows, cos, sin)`, its index resolution."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from dsv4_core.attention import run_sparse_attn
from dsv4_core.compare import compare
from dsv4_core.golden import GoldenOutcome

PERTURBATIONS = ("sink", "rope")


@dataclasses.dataclass(frozen=True)
class DecodeCase:
    """A decode step: B requests, S tokens each at consecutive positions from `starts[b]`."""

    name: str
    config: Any  # dsv4_core.AttentionConfig
    starts: tuple  # first position of each request's step
    seq: int  # S tokens per request
    seed: int = 0
    fewer_topk: bool = False  # CSA: only half the visible entries picked (holes among the k columns)
    causal_probe: bool = False  # CSA: hand each step's first token an entry only its sibling may see
    value_batch: int | None = None  # only these requests checked in the interpreter (None: all)

    @property
    def batch(self) -> int:
        return len(self.starts)

    def positions(self, batch: int | None = None) -> torch.Tensor:
        st = torch.tensor(self.starts[:batch or self.batch], dtype=torch.int64)
        return st[:, None] + torch.arange(self.seq)[None, :]


def seeded_starts(n: int, lo: int, hi: int, seed: int) -> tuple:
    """n request start positions drawn uniformly from [lo, hi) with a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return tuple(int(v) for v in torch.randint(lo, hi, (n,), generator=g))


def run_resolved(cfg, inp: dict, resolved: Callable, *, sink_shift: float = 0.0, inverse_rope: bool = True,
                 values: bool = True, name: str = "sparse_attn") -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel on the simulator from resolved rows (the packages' public functions do the
    same after validation): returns (out, physical rows)."""
    from dsv4_rope_tables.pypto_block import rope_rotate, swap_index

    src, rows, cos, sin = resolved(cfg, inp)
    out = run_sparse_attn(cfg, "sim", inp["q"], src, rows, inp["attn_sink"] + sink_shift, cos, sin, inp["wo_a"],
                          inp["wo_b"], inverse_rope=inverse_rope, values=values, name=name, rope_block=rope_rotate,
                          swap_idx=swap_index(cfg.rope_dim))
    return out, rows


def check_golden(module: str, name: str, cfg, inp: dict, *, reference: Callable, exact: Callable,
                 resolved: Callable, call: Callable, perturb: str | None = None, note: str = "",
                 timing: Callable | None = None) -> GoldenOutcome:
    """One scenario: the package's public function on the `sim` backend (`call(inp, cfg,
    "sim")`) against `reference` / `exact` with the 2× comparator. perturb="sink" adds 1 to
    the kernel's sink, perturb="rope" builds the kernel without the inverse RoPE: the check
    must then fail. `timing()` (a KernelRun), when given, replaces the value run's cost-model
    figure (a value run on a slice, the full case timed alone)."""
    from dsv4_core import sim

    ref = reference(cfg, inp)
    ex = exact(cfg, inp)
    if perturb is None:
        out = call(inp, cfg, "sim")
    elif perturb in PERTURBATIONS:
        out, _ = run_resolved(cfg, inp, resolved, sink_shift=1.0 if perturb == "sink" else 0.0,
                              inverse_rope=perturb != "rope")
    else:
        raise ValueError(f"perturb must be None, 'sink' or 'rope', got {perturb!r}")
    reports = [compare(out, ex, ref, name="attn_out")]
    run = sim.last_run()
    if timing is not None and perturb is None:
        run = timing()
    return GoldenOutcome(module, name, reports, run, note=note)


def check_decode_case(module: str, case: DecodeCase, make_inputs: Callable, *, reference: Callable,
                      exact: Callable, resolved: Callable, call: Callable,
                      perturb: str | None = None) -> GoldenOutcome:
    """`check_golden` for a decode scenario: numbers on `case.value_batch` requests (all when
    None), the full batch timed by the cost model alone when only a slice was checked.
    `make_inputs(case, batch=None, materialize=True)` is the package's input builder."""
    cfg = case.config
    inp = make_inputs(case, case.value_batch)
    T = inp["q"].shape[0]
    _, rows, _, _ = resolved(cfg, inp)
    note = f"T={T} K={rows.shape[1]}"
    timing = None
    if case.value_batch is not None:
        note = f"values on B={case.value_batch} of {case.batch} (T={T}); µs for the full B={case.batch}"

        def timing():
            return time_case(cfg, make_inputs(case, materialize=False), resolved, case.name)[0]
    return check_golden(module, case.name, cfg, inp, reference=reference, exact=exact, resolved=resolved, call=call,
                        perturb=perturb, note=note, timing=timing)


def time_case(cfg, inp: dict, resolved: Callable, name: str):
    """Cost model only (values=False) on `inp` (zero tensors of the right shapes): returns
    (KernelRun, physical rows)."""
    from dsv4_core import sim

    _, rows = run_resolved(cfg, inp, resolved, values=False, name=name)
    return sim.last_run(), rows
