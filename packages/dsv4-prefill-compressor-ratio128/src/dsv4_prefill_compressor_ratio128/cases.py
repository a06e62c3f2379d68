"""Seeded prefill scenarios shared by the tests, `nox -s golden` and `nox -s bench`
(MODULES.md §7.4 generalised): chunks from position 0, from starts that are not
window-aligned (the straddling window reads its first positions from the state cache), a
single-token chunk that closes the first window, two windows in one chunk, page crossings,
permuted block tables. Small tier at TINY, flash tier at FLASH (T = 1024). The protocol
(golden, bench) is the family's `CaseSet`."""

from dsv4_compressor_common.testing import Case, CaseSet
from dsv4_core import FLASH, PRO, TINY

R = 128
FLASH_CASES = [Case("flash-prefill-T1024-start0", FLASH, R, (0,), 1024),
               Case("flash-prefill-T1024-start517", FLASH, R, (517,), 1024)]

SMALL_CASES = [
    Case("tiny-prefill-T256-start0", TINY, R, (0,), 256),  # two windows inside the chunk
    Case("tiny-prefill-T100-start200", TINY, R, (200,), 100),  # window 128..255 straddles: 128..199 from state
    Case("tiny-prefill-T1-start127", TINY, R, (127,), 1),  # one token closes the first window
    Case("tiny-prefill-T133-start3", TINY, R, (3,), 133),  # non-aligned start, cmp page crossing
    Case("tiny-prefill-T600-start5", TINY, R, (5,), 600),  # prefill tiling: 512-token tiles, ragged last
    Case("tiny-prefill-T200-start128", TINY, R, (128,), 200),  # aligned: views; the second window not closed
]

# bench: {name: (config, tokens, closing windows)}
SCENARIOS = CaseSet.of("prefill_compressor_ratio128", R, SMALL_CASES, FLASH_CASES,
                       bench={"flash-prefill-T1024-start0": (FLASH, 1024, 1024 // R, 0, 0),
                              "flash-prefill-T1024-64K": (FLASH, 1024, 1024 // R, 0, 65536),
                              "pro-prefill-T1024-start0": (PRO, 1024, 1024 // R, 0, 0),
                              "pro-prefill-T1024-64K": (PRO, 1024, 1024 // R, 0, 65536)})
CASES, GOLDEN_CASES, golden, BENCH_CASES, bench = SCENARIOS.protocol()
