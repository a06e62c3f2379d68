"""The pool kernel's two decode paths at ratio 4 (`kernel.reads_state_first`): where every
slot of the call's windows is in the state cache — this call's positions included, which the
project kernel writes there first — it reads that one source (`KernelMeta.state_first` 1, the
device decides, nothing read back); where a new token has no state page it reads this call's
positions from this call's rows (0). Both match the golden on the simulator."""

import torch

from dsv4_compressor_common.kernel import reads_state_first
from dsv4_compressor_common.testing import Case, checked_meta, golden, plan_of
from dsv4_core import TINY, sim

# two requests at 6, 7 close the window [0, 7]; request 0's new tokens have no state page
# (its window reads them from this call's rows), request 1's have one
UNPAGED = Case("tiny-decode-S2-unpaged", TINY, 4, (6, 6), 2, state_page=2, unpaged=(0,))
PAGED = Case("tiny-decode-S2-paged", TINY, 4, (6, 6), 2, state_page=2)


def test_only_decode_at_ratio_4_reads_the_state_first():
    assert reads_state_first(4, None)
    assert not reads_state_first(128, None) and not reads_state_first(4, 0) and not reads_state_first(4, 517)


def test_state_first_holds_exactly_when_every_slot_has_its_state_row():
    inp, meta, checked = checked_meta(PAGED)
    assert int(checked.state_first) == 1
    # this call's slots point at their own state rows (written by the project kernel first)
    plan = plan_of(PAGED, inp)
    new = (meta.valid > 0) & (meta.from_state == 0)
    assert new.any()
    tok_rows = plan.state_rows[plan.slot_tok.clamp(min=0)]
    assert torch.equal(meta.slot_row[new], tok_rows[new])
    assert torch.equal(meta.kv_state[new].long(), (tok_rows * 4 + plan.slot_half[None, :])[new])
    _, meta, checked = checked_meta(UNPAGED)
    assert int(checked.state_first) == 0
    assert (meta.slot_row[(meta.valid > 0) & (meta.from_state == 0)] == -1).any()


def _both():
    return [golden("compressor_ratio4", c) for c in (PAGED, UNPAGED)] + \
        [golden("compressor_ratio4", UNPAGED, perturb="halves")]


def test_both_paths_match_the_golden_and_a_swapped_overlap_fails():
    (paged, unpaged, swapped), _ = sim.isolated(_both)
    for o in (paged, unpaged):
        assert o.ok, [str(r) for r in o.reports if not r.ok]
        assert o.run is not None and o.run.values
    assert not swapped.ok and {r.name for r in swapped.reports if not r.ok} == {"cmp_kv"}
