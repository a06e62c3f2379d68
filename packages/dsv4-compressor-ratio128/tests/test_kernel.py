"""The pypto kernels on the CPU simulator vs the golden. The small scenarios share one
simulator process (each compiles its kernels afresh; a compile error would fail them all),
which keeps the suite's time down; `nox -s golden` runs one process per case. The public
`sim` path (decode and prefill calls) is exercised by the prefill packages' kernel
equivalence test."""

from dsv4_compressor_ratio128 import cases
from dsv4_core import sim

SMALL = [name for name, tier in cases.GOLDEN_CASES if tier == "small"]


def _goldens(names, perturb=None):
    return [cases.golden(n, perturb=perturb) for n in names]


def test_kernel_matches_golden_every_small_scenario():
    outs, _ = sim.isolated(_goldens, SMALL)
    bad = [f"{o.case}: {[str(r) for r in o.reports if not r.ok]}" for o in outs if not o.ok]
    assert not bad, bad
    for o in outs:
        assert o.run is not None and o.run.values and o.run.aicore_us > 0, o.case
        assert {r.name for r in o.reports} >= {"state_kv", "state_score", "state_pos", "cmp_kv"}, o.case


PERTURBED = dict([("ape", {"state_score", "cmp_kv"}), ("norm_weight", {"cmp_kv"})])


def _perturbed():
    return {p: cases.golden("tiny-decode-S2", perturb=p) for p in PERTURBED}


def test_perturbed_kernel_inputs_fail():
    outs, _ = sim.isolated(_perturbed)
    for p, failing in PERTURBED.items():
        assert {r.name for r in outs[p].reports if not r.ok} == failing, p
