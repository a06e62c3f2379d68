"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench` (MODULES.md §7.1
plus what pypto-lib's fixture leaves out): windows closing on the first / second / a later
token of a step, a step that closes two windows, state and cmp page crossings, permuted
block tables, starts that are not window-aligned, the first window without a previous
half. Small tier at TINY, flash tier at FLASH (B = 64, S = 2). The protocol (golden, bench)
is the family's `CaseSet`."""

from dsv4_compressor_common.testing import Case, CaseSet
from dsv4_core import FLASH, PRO, TINY

R = 4

SMALL_CASES = [
    # 0: nothing closes; 1: mid-window; 2: closes on the 2nd token, first window (no previous
    # half); 3: closes on the 1st token, first window; 6: overlap with window 0 on the 2nd
    # token; 7: on the 1st; 127: state page 31 -> 32 crossing
    Case("tiny-decode-S2", TINY, R, (0, 1, 2, 3, 6, 7, 127), 2),
    Case("tiny-decode-S1", TINY, R, (3, 7, 0, 10, 4), 1),
    Case("tiny-decode-S5", TINY, R, (0, 5, 130, 2), 5),
    Case("tiny-decode-S9-several-windows", TINY, R, (1, 6), 9),
    # 8 requests x 3 candidate windows: two window tiles, the entries written once after both
    Case("tiny-decode-B8S9-two-tiles", TINY, R, (0, 3, 6, 11, 40, 64, 130, 201), 9),
]
_FLASH_STARTS = tuple([0, 1, 2, 3, 6, 7, 127][i % 7] + 8 * (i // 7) for i in range(64))
FLASH_CASES = [Case("flash-decode-B64S2", FLASH, R, _FLASH_STARTS, 2)]

# bench: {name: (config, tokens, closing windows, requests)}: decode with every request closing a window
SCENARIOS = CaseSet.of("compressor_ratio4", R, SMALL_CASES, FLASH_CASES,
                       bench={"flash-decode-B64S2": (FLASH, 128, 64, 64), "pro-decode-B64S2": (PRO, 128, 64, 64)})
CASES, GOLDEN_CASES, golden, BENCH_CASES, bench = SCENARIOS.protocol()
