"""`nox -s golden`: every module's kernel on the CPU simulator vs its golden, one table.

    python tools/golden.py [--module M ...] [--tier small|flash|all] [--case NAME ...] [--jobs N]

Each case runs in its own process (a pypto compile error poisons its process); `--jobs`
cases at a time (default: 2 for the small tier, 1 with FLASH cases, which may each hold
≈ 15 GB). A line per case as it ends, then one table. Exit 1 when any case fails or errors."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkgs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", action="append", help="module key(s); default: all")
    ap.add_argument("--tier", default="all", choices=["small", "flash", "all"])
    ap.add_argument("--case", action="append", help="only these case names")
    ap.add_argument("--json", type=Path, help="also write the outcomes as JSON")
    ap.add_argument("--jobs", type=int, help="cases run at a time")
    a = ap.parse_args(argv)
    jobs = a.jobs or (2 if a.tier == "small" else 1)

    from dsv4_core import sim
    from dsv4_core.golden import golden_table

    mods = pkgs.modules()
    wanted = a.module or sorted(mods)
    unknown = [m for m in wanted if m not in mods]
    if unknown:
        print(f"unknown module(s) {unknown}; known: {sorted(mods)}", file=sys.stderr)
        return 2
    todo = []
    for m in wanted:
        cases = importlib.import_module(f"{mods[m].import_name}.cases")
        for name, tier in cases.GOLDEN_CASES:
            if (a.tier != "all" and tier != a.tier) or (a.case and name not in a.case):
                continue
            todo.append((m, cases, name, tier))

    def run_one(item):
        m, cases, name, tier = item
        t0 = time.time()
        try:
            out, _ = sim.isolated(cases.golden, name)
            status = "PASS" if out.ok else "FAIL"
            detail = "; ".join(str(r) for r in out.reports if not r.ok) or out.note
            err = None
        except Exception as e:  # report and go on with the other cases
            out, err = None, f"{type(e).__name__}: {e}"
            status, detail = "ERROR", err[:2000]
        print(f"[golden] {m}:{name} ({tier}) {status} in {time.time() - t0:.0f}s {detail}", flush=True)
        return m, name, out, err

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(run_one, todo))
    outcomes = [out for _, _, out, _ in results if out is not None]
    errors = {f"{m}:{name}": err for m, name, _, err in results if err is not None}
    print()
    print(golden_table(outcomes, errors))
    if a.json:
        a.json.write_text(json.dumps([{"module": o.module, "case": o.case, "ok": o.ok,
                                       "reports": [str(r) for r in o.reports],
                                       "cost_us": o.run.aicore_us if o.run else None} for o in outcomes]
                                     + [{"case": k, "error": v} for k, v in errors.items()], indent=1))
    ran = len(outcomes) + len(errors)
    failed = sum(not o.ok for o in outcomes) + len(errors)
    print(f"\n{ran - failed} passed, {failed} failed")
    return 1 if failed or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
