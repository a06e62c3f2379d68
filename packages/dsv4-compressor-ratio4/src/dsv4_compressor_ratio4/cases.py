"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench` (MODULES.md §7.1
plus what pypto-lib's fixture leaves out): windows closing on the first / second / a later
token of a step, a step that closes two windows, state and cmp page crossings, permuted
block tables, starts that are not window-aligned, the first window without a previous
half. Small tier at TINY, flash tier at FLASH (B = 64, S = 2)."""

from __future__ import annotations

from dsv4_compressor_ratio128 import casekit
from dsv4_compressor_ratio128.casekit import Case
from dsv4_core import FLASH, TINY
from dsv4_core.golden import BenchOutcome, GoldenOutcome

MODULE = "compressor_ratio4"
R = 4

SMALL_CASES = [
    # 0: nothing closes; 1: mid-window; 2: closes on the 2nd token, first window (no previous
    # half); 3: closes on the 1st token, first window; 6: overlap with window 0 on the 2nd
    # token; 7: on the 1st; 127: state page 31 -> 32 crossing
    Case("tiny-decode-S2", TINY, R, (0, 1, 2, 3, 6, 7, 127), 2),
    Case("tiny-decode-S1", TINY, R, (3, 7, 0, 10, 4), 1),
    Case("tiny-decode-S5", TINY, R, (0, 5, 130, 2), 5),
    Case("tiny-decode-S9-several-windows", TINY, R, (1, 6), 9),
]
_FLASH_STARTS = tuple([0, 1, 2, 3, 6, 7, 127][i % 7] + 8 * (i // 7) for i in range(64))
FLASH_CASES = [Case("flash-decode-B64S2", FLASH, R, _FLASH_STARTS, 2)]
CASES = {c.name: c for c in SMALL_CASES + FLASH_CASES}
GOLDEN_CASES = [(c.name, "small") for c in SMALL_CASES] + [(c.name, "flash") for c in FLASH_CASES]

# (name, config, tokens, closing windows): decode with every request closing a window
BENCH = {"flash-decode-B64S2": (FLASH, 128, 64)}
BENCH_CASES = list(BENCH)


def golden(name: str, *, perturb: str | None = None) -> GoldenOutcome:
    return casekit.golden(MODULE, CASES[name], perturb=perturb)


def bench(name: str) -> BenchOutcome:
    cfg, tokens, windows = BENCH[name]
    return casekit.bench(MODULE, name, cfg, R, tokens, windows)
