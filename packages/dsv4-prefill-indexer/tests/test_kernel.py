"""The pypto kernels on the CPU simulator vs the golden, one process per run."""

import pytest

from dsv4_core import sim
from dsv4_prefill_indexer import cases

PYTEST_CASES = ["tiny-from0-T40", "tiny-start77-T70"]


@pytest.mark.parametrize("name", PYTEST_CASES)
def test_kernel_matches_golden(name):
    out, _ = sim.isolated(cases.golden, name)
    assert out.ok, [str(r) for r in out.reports]
    assert out.run is not None and out.run.values and out.run.aicore_us > 0


def test_perturbed_scores_fail():
    out, _ = sim.isolated(cases.golden, "tiny-from0-T40", perturb="scores")
    assert not out.ok and "scores" in {r.name for r in out.reports if not r.ok}
