"""The golden / bench protocol every kernel package's `cases.py` follows.

A package's `cases` module exposes

    GOLDEN_CASES: list[tuple[str, str]]     # (case name, tier "small" | "flash")
    def golden(case: str) -> GoldenOutcome  # kernel on the simulator vs the reference
    BENCH_CASES: list[str]
    def bench(case: str) -> BenchOutcome     # cost-model time at full size

`tools/golden.py` and `tools/bench.py` run each case in its own process
(`dsv4_core.sim.isolated`) and print one table."""

from __future__ import annotations

import dataclasses

from .compare import Report
from .sim import KernelRun


@dataclasses.dataclass
class GoldenOutcome:
    module: str
    case: str
    reports: list[Report]
    run: KernelRun | None
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.reports) and all(r.ok for r in self.reports)

    def worst(self) -> Report:
        """The report closest to (or furthest past) its bound."""
        def ratio(r: Report) -> float:
            return r.max_abs / r.bound if r.bound > 0 else (0.0 if r.ok else float("inf"))
        return max(self.reports, key=ratio)


@dataclasses.dataclass
class BenchOutcome:
    """One bench case: `modelled_us` the cost model's µs of the kernels; `gather_us` the
    gathered bytes an under-priced gather moved, charged at the copy rate; `host_us` the
    host side of the public call (measured wall time outside the kernels, plus the bytes it
    prepared for them at the copy rate — `dsv4_core.bench`); `nbytes` / `flops` what the
    ceiling counts (each distinct row a request reads once)."""

    module: str
    case: str
    modelled_us: float
    nbytes: float
    flops: float
    cores: int = 0
    note: str = ""
    gather_us: float = 0.0
    host_us: float = 0.0
    lanes: list = dataclasses.field(default_factory=list)  # [(kernel, lanes.Lanes | None)]: the swim lanes

    @property
    def total_us(self) -> float:
        return self.modelled_us + self.gather_us + self.host_us


def golden_table(outcomes: list[GoldenOutcome], errors: dict[str, str] | None = None) -> str:
    rows = [("module", "case", "outputs", "max err", "bound", "pass", "cost-model µs")]
    for o in outcomes:
        w = o.worst()
        us = f"{o.run.aicore_us:.1f}" if o.run and o.run.aicore_us else "-"
        rows.append((o.module, o.case, ",".join(r.name for r in o.reports), f"{w.max_abs:.2e}",
                     f"{w.bound:.2e}", "PASS" if o.ok else "FAIL", us))
    for name, err in (errors or {}).items():
        mod, case = name.split(":", 1)
        rows.append((mod, case, "-", "-", "-", "ERROR", err.splitlines()[0][:60] if err else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
