"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench` (MODULES.md §7.2
plus what pypto-lib's fixture leaves out): windows closing on the first / second / a later
token of a step, a step that closes two windows, state and cmp page crossings, permuted
block tables, starts that are not window-aligned. Small tier at TINY, flash tier at FLASH
(B = 64, S = 2). The protocol (golden, bench) is the family's `CaseSet`."""

from dsv4_compressor_common.testing import Case, CaseSet
from dsv4_core import FLASH, PRO, TINY

R = 128

SMALL_CASES = [
    # 7, 10: mid-window, nothing closes; 126: closes on the 2nd token; 127: on the 1st (then
    # the state page 15 -> 16 crossing); 254 / 255: second window, cmp entry 1
    Case("tiny-decode-S2", TINY, R, (7, 10, 126, 127, 254, 255), 2),
    Case("tiny-decode-S1", TINY, R, (127, 0, 255, 383), 1),
    Case("tiny-decode-S5", TINY, R, (124, 253, 3), 5),
    Case("tiny-decode-S132-two-windows", TINY, R, (0, 126), 132),
    # state pages of a whole window (128 rows): the pool kernel reads each window as one view
    # of the state cache (`reads_state_views`); the cases above (8-row pages, permuted) gather
    Case("tiny-decode-S2-page128", TINY, R, (7, 126, 127, 254, 255), 2, state_page=128),
]
_FLASH_STARTS = tuple([7, 10, 126, 127, 254, 255][i % 6] for i in range(64))
FLASH_CASES = [Case("flash-decode-B64S2", FLASH, R, _FLASH_STARTS, 2, state_page=128)]  # the bench's pages

# bench: {name: (config, tokens, closing windows, requests)}: decode with every request closing a window
SCENARIOS = CaseSet.of("compressor_ratio128", R, SMALL_CASES, FLASH_CASES,
                       bench={"flash-decode-B64S2": (FLASH, 128, 64, 64), "pro-decode-B64S2": (PRO, 128, 64, 64)})
CASES, GOLDEN_CASES, golden, BENCH_CASES, bench = SCENARIOS.protocol()
