"""The pypto kernel on the CPU simulator vs the golden, one process per kernel run.

pytest runs the scenarios this package adds (tiny-swa-start0-T20, tiny-hca-T12, tiny-csa-fewer-T12); the remaining
small-tier golden cases (TP shard, PRO geometry, ...) run the same shared kernel and are
checked by `nox -s golden` (tools/golden.py), as are the FLASH cases. The perturbed-sink and
dropped-inverse-RoPE checks of the shared block live in dsv4-sparse-attn-swa's tests."""

import pytest

from dsv4_core import sim
from dsv4_prefill_sparse_attn import cases

PYTEST_CASES = ['tiny-swa-start0-T20', 'tiny-hca-T12', 'tiny-csa-fewer-T12']


def test_subset_is_in_the_golden_cases():
    assert set(PYTEST_CASES) <= {name for name, tier in cases.GOLDEN_CASES if tier == "small"}


@pytest.mark.parametrize("name", PYTEST_CASES)
def test_kernel_matches_golden(name):
    out, _ = sim.isolated(cases.golden, name)
    assert out.ok, [str(r) for r in out.reports]
    assert out.run is not None and out.run.values and out.run.aicore_us > 0
