"""Semantics of the golden: the family's decode reference suite bound to
`compressor_ratio4` (the official decode state machine with its overlap transform and
shift, chunking equivalence, APE and RoPE position, state tags, closing tokens), and what
only the overlapping windows have: the halves and the first window."""

import dataclasses

import torch

from dsv4_compressor_common.testing import make_inputs, plan_of
from dsv4_compressor_common.testing.reference_suites import DecodeReferenceSuite, golden_values
from dsv4_compressor_ratio4 import RATIO, compressor_ratio4, make_caches
from dsv4_compressor_ratio4.cases import CASES, SCENARIOS
from dsv4_core.compare import compare


class TestReference(DecodeReferenceSuite):
    call, make_caches, scenarios = staticmethod(compressor_ratio4), staticmethod(make_caches), SCENARIOS


def test_swapped_halves_fail_the_golden():
    case = CASES["tiny-decode-S2"]
    inp = make_inputs(case)
    plan = plan_of(case, inp)
    exact = golden_values(case, inp, plan, dtype=torch.float64)
    ref = golden_values(case, inp, plan)
    assert compare(ref.entries, exact.entries, ref.entries).ok
    swapped = golden_values(case, inp, dataclasses.replace(plan, slot_half=1 - plan.slot_half))
    assert not compare(swapped.entries, exact.entries, ref.entries).ok


def test_first_window_has_no_previous_half():
    """The window closing at 3 pools only positions 0..3: garbage in any other state row
    (tags −1) and the previous-half slots at −4..−1 do not matter."""
    case = CASES["tiny-decode-S2"]
    inp = make_inputs(case)
    plan = plan_of(case, inp)
    first = torch.nonzero(plan.closing_pos == 3).reshape(-1)
    assert first.numel() and not bool(plan.slot_valid[first, :RATIO].any())
    inp["state"].fill_(float("nan"))
    inp["state"].view(-1, inp["state"].shape[-1])[plan.slot_row[plan.slot_row >= 0]] = 0.5  # rows the windows read
    vals = golden_values(case, inp, plan)
    assert torch.isfinite(vals.entries).all()
