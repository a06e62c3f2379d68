"""The pypto kernels on the CPU simulator vs the golden (one process per case), and the
kernel path's equivalence: a prefill of k tokens then decode steps S = 1, 2, 5, all on the
simulator, leave the caches of one torch prefill of N tokens."""

from dsv4_core import sim
from dsv4_prefill_compressor_ratio4 import cases

# the 600-token case (prefill tiling, two 512-token tiles) runs in `nox -s golden_small`;
# left out here to keep the suite's time down
SMALL = [name for name, tier in cases.GOLDEN_CASES if tier == "small" and "T600" not in name]


def _goldens():
    """Every small scenario, then the second with a perturbed APE, in one simulator process
    (`nox -s golden` runs one process per case)."""
    return [cases.golden(n) for n in SMALL] + [cases.golden(SMALL[1], perturb="ape")]


def test_kernel_matches_golden_every_small_scenario_and_perturbed_ape_fails():
    outs, _ = sim.isolated(_goldens)
    *good, perturbed = outs
    bad = [f"{o.case}: {[str(r) for r in o.reports if not r.ok]}" for o in good if not o.ok]
    assert not bad, bad
    for o in good:
        assert o.run is not None and o.run.values and o.run.aicore_us > 0, o.case
    assert {r.name for r in perturbed.reports if not r.ok} == {"state_score", "cmp_kv"}


def _sim_stream(steps):
    from dsv4_compressor_ratio128 import casekit
    from dsv4_core import TINY

    st = casekit.make_stream(TINY, cases.R, sum(n for _, n in steps))
    return casekit.run_stream(st, steps, backend="sim")


def test_kernel_prefill_then_decode_equals_one_prefill():
    from dsv4_compressor_ratio128 import casekit
    from dsv4_core import TINY

    steps = [("prefill", 16), ("decode", 1), ("decode", 2), ("decode", 5)]
    got, _ = sim.isolated(_sim_stream, steps)
    st = casekit.make_stream(TINY, cases.R, 24)
    single = casekit.run_stream(st, [("prefill", 24)])
    exact = casekit.exact_stream(st)
    for r in casekit.equivalence_reports(got, single, exact):
        assert r.ok, str(r)
