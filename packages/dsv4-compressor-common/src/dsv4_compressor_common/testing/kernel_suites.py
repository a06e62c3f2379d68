"""The kernel suites: the pypto kernels on the CPU simulator vs the golden for every small
scenario of a module package, perturbed kernel inputs that must fail, and (prefill) the
kernel path's chunking equivalence. A module package binds one to its scenarios:

    class TestKernel(DecodeKernelSuite):
        scenarios = SCENARIOS

The small scenarios share one simulator process (each compiles its kernels afresh; a
compile error would fail them all), which keeps the suites' time down; `nox -s golden` runs
one process per case."""

from __future__ import annotations

from dsv4_core import TINY, sim

from .golden import CaseSet
from .scenarios import straddling_case
from .streams import PLANS, make_stream, run_stream, stream_reports

GOLDEN_OUTPUTS = {"state_kv", "state_score", "state_pos", "cmp_kv"}


def _goldens(scenarios: CaseSet, names: list[str], perturb: str | None = None) -> list:
    return [scenarios.golden(n, perturb=perturb) for n in names]


def _perturbed(scenarios: CaseSet, name: str, perturbs: list[str]) -> dict:
    return {p: scenarios.golden(name, perturb=p) for p in perturbs}


def _prefill_goldens(scenarios: CaseSet, names: list[str], straddling: str) -> tuple[list, list]:
    return _goldens(scenarios, names), _goldens(scenarios, [straddling], perturb="ape")


def _sim_stream(ratio: int, steps: list[tuple[str, int]]) -> tuple:
    st = make_stream(TINY, ratio, sum(n for _, n in steps))
    return run_stream(st, steps, backend="sim")


def _check_goldens(outs: list, outputs: set[str] = frozenset()) -> None:
    bad = [f"{o.case}: {[str(r) for r in o.reports if not r.ok]}" for o in outs if not o.ok]
    assert not bad, bad
    for o in outs:
        assert o.run is not None and o.run.values and o.run.aicore_us > 0, o.case
        assert {r.name for r in o.reports} >= outputs, o.case


class DecodeKernelSuite:
    """Bind `scenarios` (the decode package's CaseSet, with a "tiny-decode-S2" case)."""

    scenarios: CaseSet

    def perturbed(self) -> dict[str, set[str]]:
        """Kernel input perturbation -> the outputs it must fail: shifted APE rows, and the
        overlap halves swapped (ratio 4) or a scaled norm weight (ratio 128)."""
        return {"ape": {"state_score", "cmp_kv"}, ("halves" if self.scenarios.ratio == 4 else "norm_weight"): {"cmp_kv"}}

    def test_kernel_matches_golden_every_small_scenario(self):
        outs, _ = sim.isolated(_goldens, self.scenarios, [c.name for c in self.scenarios.small])
        _check_goldens(outs, GOLDEN_OUTPUTS)

    def test_perturbed_kernel_inputs_fail(self):
        failing = self.perturbed()
        outs, _ = sim.isolated(_perturbed, self.scenarios, "tiny-decode-S2", list(failing))
        for p, want in failing.items():
            assert {r.name for r in outs[p].reports if not r.ok} == want, p


class PrefillKernelSuite:
    """Bind `scenarios` (the prefill package's CaseSet, with a small case whose chunk starts
    inside a window and closes it)."""

    scenarios: CaseSet

    def test_kernel_matches_golden_every_small_scenario_and_perturbed_ape_fails(self):
        """Every small scenario of one 512-token tile at most (a longer one runs in
        `nox -s golden`), then the straddling one with a perturbed APE, in one simulator
        process."""
        names = [c.name for c in self.scenarios.small if c.tokens <= 512]
        straddling = straddling_case(list(self.scenarios.small)).name
        (outs, [perturbed]), _ = sim.isolated(_prefill_goldens, self.scenarios, names, straddling)
        _check_goldens(outs)
        assert {r.name for r in perturbed.reports if not r.ok} == {"state_score", "cmp_kv"}

    def test_kernel_prefill_then_decode_equals_one_prefill(self):
        """A prefill then decode steps S = 1, 2, 5, all on the simulator, leave the caches of
        one torch prefill of the whole stream."""
        R = self.scenarios.ratio
        steps = PLANS[R].prefill[1]["prefill-then-decode-S1-S2-S5"]
        got, _ = sim.isolated(_sim_stream, R, steps)
        for r in stream_reports(TINY, R, sum(n for _, n in steps), steps, got=got):
            assert r.ok, str(r)
