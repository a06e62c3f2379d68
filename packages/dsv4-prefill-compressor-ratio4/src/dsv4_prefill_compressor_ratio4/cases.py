"""Seeded prefill scenarios shared by the tests, `nox -s golden` and `nox -s bench`
(MODULES.md §7.3 generalised): chunks from position 0, from starts that are not
window-aligned (the straddling window reads its first positions from the state cache), a
single-token chunk that closes the first window, page crossings, permuted block tables.
Small tier at TINY, flash tier at FLASH (T = 1024). The protocol (golden, bench) is the
family's `CaseSet`."""

from dsv4_compressor_common.testing import Case, CaseSet
from dsv4_core import FLASH, PRO, TINY

R = 4
FLASH_CASES = [Case("flash-prefill-T1024-start0", FLASH, R, (0,), 1024),
               Case("flash-prefill-T1024-start517", FLASH, R, (517,), 1024)]

SMALL_CASES = [
    Case("tiny-prefill-T64-start0", TINY, R, (0,), 64),
    Case("tiny-prefill-T37-start6", TINY, R, (6,), 37),  # straddles window 4..7, previous half 0..3 from state
    Case("tiny-prefill-T1-start3", TINY, R, (3,), 1),  # one token closes the first window
    Case("tiny-prefill-T130-start125", TINY, R, (125,), 130),  # state page 31 -> 32, cmp page crossings
    Case("tiny-prefill-T600-start5", TINY, R, (5,), 600),  # prefill tiling: 512-token tiles, ragged last
    Case("tiny-prefill-T512-start4", TINY, R, (4,), 512),  # two 256-token tiles, 32 projection tasks: K in halves
    Case("tiny-prefill-T98-start8", TINY, R, (8,), 98),  # aligned: windows past the first tile read as views
]

# bench: {name: (config, tokens, closing windows)}
SCENARIOS = CaseSet.of("prefill_compressor_ratio4", R, SMALL_CASES, FLASH_CASES,
                       bench={"flash-prefill-T1024-start0": (FLASH, 1024, 1024 // R, 0, 0),
                              "flash-prefill-T1024-64K": (FLASH, 1024, 1024 // R, 0, 65536),
                              "pro-prefill-T1024-start0": (PRO, 1024, 1024 // R, 0, 0),
                              "pro-prefill-T1024-64K": (PRO, 1024, 1024 // R, 0, 65536)})
CASES, GOLDEN_CASES, golden, BENCH_CASES, bench = SCENARIOS.protocol()
