"""The pool kernel's decode paths at ratio 128 (`kernel.reads_state_views`): where every slot of
the call's windows is in the state cache and each window's rows are consecutive cache rows (a
state page a multiple of the window), it reads each window as one view of the state cache from
its first row (`KernelMeta.state_first` 1, `win_base`; the device decides, nothing read back);
elsewhere (pages of 8 rows in a permuted block table) it gathers the slots as before (0). Both
match the golden on the simulator, and a shifted RoPE position fails it."""

import torch

from dsv4_compressor_common.kernel import gathered_slot_bytes, reads_state_views
from dsv4_compressor_common.testing import Case, checked_meta, golden, plan_of
from dsv4_core import TINY, sim

# requests at 126, 127, 254, 255 close a window with S = 2 (on the 2nd / 1st token); 7 closes none
WHOLE_PAGES = Case("tiny-decode-S2-page128", TINY, 128, (7, 126, 127, 254, 255), 2, state_page=128)
SMALL_PAGES = Case("tiny-decode-S2-page8", TINY, 128, (7, 126, 127, 254, 255), 2)


def test_only_decode_with_wide_windows_reads_state_views():
    assert reads_state_views(128, None)
    assert not reads_state_views(4, None) and not reads_state_views(128, 0) and not reads_state_views(128, 300)
    assert gathered_slot_bytes(128, 512, 64, 2) == 0  # the view path gathers nothing


def test_views_hold_exactly_where_each_window_is_one_run_of_cache_rows():
    inp, _, checked = checked_meta(WHOLE_PAGES)
    assert int(checked.state_first) == 1
    closing = checked.valid.sum(1) > 0
    assert closing.sum() == plan_of(WHOLE_PAGES, inp).num_windows == 4
    # each window that closes: its W rows (this call's included) consecutive from its first
    rows = checked.slot_row[closing]
    assert (rows >= 0).all() and torch.equal(rows - rows[:, :1], torch.arange(128).expand_as(rows))
    assert torch.equal(checked.win_base.reshape(-1)[closing].long(), rows[:, 0])
    _, _, checked = checked_meta(SMALL_PAGES)  # 8-row pages, permuted: a window spans scattered pages
    assert int(checked.state_first) == 0


def _runs():
    return [golden("compressor_ratio128", c) for c in (WHOLE_PAGES, SMALL_PAGES)] + \
        [golden("compressor_ratio128", WHOLE_PAGES, perturb="rope_pos")]


def test_both_paths_match_the_golden_and_a_shifted_rope_fails():
    (views, gathered, shifted), _ = sim.isolated(_runs)
    for o in (views, gathered):
        assert o.ok, [str(r) for r in o.reports if not r.ok]
        assert o.run is not None and o.run.values
    assert not shifted.ok and "cmp_kv" in {r.name for r in shifted.reports if not r.ok}
