"""Seeded prefill scenarios shared by the tests, `nox -s golden` and `nox -s bench`
(MODULES.md §7.4 generalised): chunks from position 0, from starts that are not
window-aligned (the straddling window reads its first positions from the state cache), a
single-token chunk that closes the first window, two windows in one chunk, page crossings, permuted block tables.
Small tier at TINY, flash tier at FLASH (T = 1024)."""

from __future__ import annotations

from dsv4_compressor_ratio128 import casekit
from dsv4_compressor_ratio128.casekit import Case
from dsv4_core import FLASH, TINY
from dsv4_core.golden import BenchOutcome, GoldenOutcome

MODULE = "prefill_compressor_ratio128"
R = 128

SMALL_CASES = [
    Case("tiny-prefill-T256-start0", TINY, R, (0,), 256),  # two windows inside the chunk
    Case("tiny-prefill-T100-start200", TINY, R, (200,), 100),  # window 128..255 straddles: 128..199 from state
    Case("tiny-prefill-T1-start127", TINY, R, (127,), 1),  # one token closes the first window
    Case("tiny-prefill-T133-start3", TINY, R, (3,), 133),  # non-aligned start, cmp page crossing
    Case("tiny-prefill-T600-start5", TINY, R, (5,), 600),  # prefill tiling: 512-token tiles, ragged last
]
FLASH_CASES = [Case("flash-prefill-T1024-start0", FLASH, R, (0,), 1024),
               Case("flash-prefill-T1024-start517", FLASH, R, (517,), 1024)]
CASES = {c.name: c for c in SMALL_CASES + FLASH_CASES}
GOLDEN_CASES = [(c.name, "small") for c in SMALL_CASES] + [(c.name, "flash") for c in FLASH_CASES]

# (config, tokens, closing windows)
BENCH = {"flash-prefill-T1024": (FLASH, 1024, 1024 // R)}
BENCH_CASES = list(BENCH)


def golden(name: str, *, perturb: str | None = None) -> GoldenOutcome:
    return casekit.golden(MODULE, CASES[name], perturb=perturb)


def bench(name: str) -> BenchOutcome:
    cfg, tokens, windows = BENCH[name]
    return casekit.bench(MODULE, name, cfg, R, tokens, windows)
