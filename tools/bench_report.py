"""Write the bench tables into the READMEs, from `nox -s bench` output (build/bench/*.md).

    python tools/bench_report.py [--bench DIR]

Each README block between `<!-- bench:begin -->` and `<!-- bench:end -->` is regenerated:
the root README gets every module's cases, a package README its own module's. Numbers are
never typed by hand: run `nox -s bench`, then this."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkgs  # noqa: E402
from bench import LANES_HEADING  # noqa: E402

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def _tables(lines: list[str]) -> list[list[str]]:
    """The markdown tables of a file, in order (runs of lines starting with "|")."""
    tables, cur = [], []
    for ln in lines + [""]:
        if ln.startswith("|"):
            cur.append(ln)
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def read_tables(bench_dir: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    """module -> (ceilings line, cost table rows, swim-lane table rows or []) from
    build/bench/<module>.md."""
    out = {}
    for f in sorted(bench_dir.glob("*.md")):
        lines = f.read_text().splitlines()
        tables = _tables(lines)
        ceil = next((ln for ln in lines if ln.startswith("copy ")), "")
        if tables:
            out[f.stem] = (ceil, tables[0], tables[1] if len(tables) > 1 else [])
    return out


def root_block(tables: dict) -> str:
    ceil = next((t[0] for t in tables.values() if t[0]), "")
    lines = [BEGIN, "", f"Ceilings: {ceil}", "",
             "| module | case | kernel µs | gather charge µs | host µs | total µs | ceiling µs | bound | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, (_, rows, _) in sorted(tables.items()):
        for r in rows[2:]:
            c = [x.strip() for x in r.strip("|").split("|")]
            c += [""] * (11 - len(c))  # an ERROR row leaves the figures empty
            lines.append(f"| {m} | {c[0]} | {c[1]} | {c[2]} | {c[3]} | {c[4]} | {c[7]} | {c[8]} | {c[9]} |")
    return "\n".join(lines + ["", END])


def package_block(ceil: str, rows: list[str], lanes: list[str]) -> str:
    where = ["", LANES_HEADING, ""] + lanes if lanes else []
    return "\n".join([BEGIN, "", f"Ceilings: {ceil}", ""] + rows + where + ["", END])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", type=Path, default=pkgs.ROOT / "build" / "bench")
    a = ap.parse_args(argv)
    tables = read_tables(a.bench)
    if not tables:
        print(f"no bench tables in {a.bench}: run `nox -s bench` first", file=sys.stderr)
        return 1
    readmes = {pkgs.ROOT / "README.md": root_block(tables)}
    for m, p in pkgs.modules().items():
        if m in tables:
            readmes[p.path / "README.md"] = package_block(*tables[m])
    for path, block in readmes.items():
        text = path.read_text()
        if BEGIN in text:
            path.write_text(_BLOCK.sub(lambda _, b=block: b, text))
            print(f"wrote the bench block of {path.relative_to(pkgs.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
