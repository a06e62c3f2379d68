"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench` (MODULES.md §7.2
plus what pypto-lib's fixture leaves out): windows closing on the first / second / a later
token of a step, a step that closes two windows, state and cmp page crossings, permuted
block tables, starts that are not window-aligned. Small tier at TINY, flash tier at FLASH
(B = 64, S = 2)."""

from __future__ import annotations

from dsv4_core import FLASH, TINY
from dsv4_core.golden import BenchOutcome, GoldenOutcome

from . import casekit
from .casekit import Case

MODULE = "compressor_ratio128"
R = 128

SMALL_CASES = [
    # 7, 10: mid-window, nothing closes; 126: closes on the 2nd token; 127: on the 1st (then
    # the state page 15 -> 16 crossing); 254 / 255: second window, cmp entry 1
    Case("tiny-decode-S2", TINY, R, (7, 10, 126, 127, 254, 255), 2),
    Case("tiny-decode-S1", TINY, R, (127, 0, 255, 383), 1),
    Case("tiny-decode-S5", TINY, R, (124, 253, 3), 5),
    Case("tiny-decode-S132-two-windows", TINY, R, (0, 126), 132),
]
_FLASH_STARTS = tuple([7, 10, 126, 127, 254, 255][i % 6] for i in range(64))
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
