"""The pypto rotation block on the CPU simulator vs the torch reference (one process per run)."""

import pytest

from dsv4_core import sim
from dsv4_rope_tables import cases


@pytest.mark.parametrize("name", ["tiny-fwd-T5", "tiny-inv-T5", "tiny-roundtrip-T19", "flash-roundtrip-T37"])
def test_block_matches_reference(name):
    out, _ = sim.isolated(cases.golden, name)
    assert out.ok, [str(r) for r in out.reports]
    assert out.run.aicore_us > 0


def test_flipped_sine_fails_the_check():
    out, _ = sim.isolated(cases.golden, "tiny-fwd-T5", perturb="flip_sin")
    assert not out.ok
    assert out.reports[0].frac_out > 0.01
