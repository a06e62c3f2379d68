"""`nox -s bench`: what every module's public call costs at full (FLASH / PRO) sizes and
serving-size caches — kernel µs (cost model), the gather surcharge (gathered bytes the
model under-prices, at the copy rate), host µs (the bytes the host prepares for the
kernels, at the copy rate; the host's CPU wall time is in the note), their total — next to the modelled chip's
ceiling (each distinct row a request reads counted once); written to build/bench/<module>.md
and from there into the READMEs (tools/bench_report.py).

    python tools/bench.py [--module M ...] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkgs  # noqa: E402

LANES_HEADING = "Where the time goes (each kernel's cost-model swim lanes):"


def lane_rows(case: str, lanes: list) -> list[str]:
    """One row per kernel of a case: its span, its cube and vector tasks, how busy each kind
    of core was over the span, and what bounds it (`dsv4_core.lanes.Lanes`)."""
    rows = []
    for kernel, ln in lanes:
        if ln is None:
            rows.append(f"| {case} | {kernel} | no swim lanes | | | | | | |")
            continue
        rows.append(f"| {case} | {kernel} | {ln.span_us:.1f} | {ln.cube_tasks} | {ln.busy('cube'):.0%} | "
                    f"{ln.vec_tasks} | {ln.vec_task_us:.1f} | {ln.busy('vector'):.0%} | {ln.limit()} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", action="append")
    ap.add_argument("--case", action="append")
    ap.add_argument("--out", type=Path, default=pkgs.ROOT / "build" / "bench")
    a = ap.parse_args(argv)

    from dsv4_core import chip, sim

    ceil = chip.load_ceilings()
    print("modelled chip ceilings (pypto cost model, Ascend 910B2 model):")
    print(f"  copy bandwidth : {ceil.copy_gbps:.1f} GB/s   ({ceil.copy_config})")
    print(f"  bf16 matmul    : {ceil.matmul_tflops:.1f} TFLOP/s ({ceil.matmul_config})")
    print(f"  measured {ceil.measured_on} by `{ceil.command}`, best of {len(ceil.trials)} trials\n")
    mods = pkgs.modules()
    wanted = a.module or sorted(mods)
    a.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for m in wanted:
        if m not in mods:
            print(f"unknown module {m!r}; known: {sorted(mods)}", file=sys.stderr)
            return 2
        cases = importlib.import_module(f"{mods[m].import_name}.cases")
        rows = ["| case | kernel µs | gather charge µs | host µs | total µs | MB (distinct) | GFLOP | ceiling µs "
                "| bound | ratio | note |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        lanes = ["| case | kernel | span µs | cube tasks | cube busy | vector tasks | µs per vector task "
                 "| vector busy | bound by |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for name in getattr(cases, "BENCH_CASES", []):
            if a.case and name not in a.case:
                continue
            try:
                b, _ = sim.isolated(cases.bench, name)
            except Exception as e:
                failed += 1
                print(f"[bench] {m}:{name} ERROR {type(e).__name__}: {str(e)[:1500]}", flush=True)
                rows.append(f"| {name} | ERROR | | | | | | | | | {type(e).__name__}: {str(e).splitlines()[0][:80]} |")
                continue
            eff = chip.efficiency(b.nbytes, b.flops, b.total_us, ceil)
            ratio = "mis-priced" if eff.mispriced else f"{eff.ratio:.0%}"
            rows.append(f"| {name} | {b.modelled_us:.1f} | {b.gather_us:.1f} | {b.host_us:.1f} | {b.total_us:.1f} | "
                        f"{b.nbytes / 1e6:.1f} | {b.flops / 1e9:.2f} | {eff.ceiling_us:.1f} | {eff.bound_by} | {ratio} "
                        f"| {b.note} |")
            lanes += lane_rows(name, b.lanes)
            print(f"[bench] {m}:{name}: {eff}", flush=True)
        table = "\n".join(rows)
        where = "\n".join(lanes) if len(lanes) > 2 else ""
        text = f"# {m}\n\n{ceil.describe()}\n\n{table}\n"
        if where:
            text += f"\n{LANES_HEADING}\n\n{where}\n"
        (a.out / f"{m}.md").write_text(text)
        print(f"\n## {m}\n{table}\n\n{where}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
