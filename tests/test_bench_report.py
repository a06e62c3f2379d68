"""The bench tables reach the READMEs as `nox -s bench` wrote them: the cost table and the
swim-lane table of each module, in that order, nothing typed by hand."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import bench  # noqa: E402
import bench_report  # noqa: E402

from dsv4_core.lanes import Lanes  # noqa: E402

COST = ["| case | kernel µs | gather charge µs | host µs | total µs | MB (distinct) | GFLOP | ceiling µs | bound "
        "| ratio | note |", "|---|---|---|---|---|---|---|---|---|---|---|",
        "| c1 | 100.0 | 20.0 | 1.0 | 121.0 | 10.0 | 1.00 | 50.0 | memory | 41% | n |"]


def _lanes():
    return Lanes(span_us=100.0, cube_tasks=10, cube_busy_us=480.0, vec_tasks=96, vec_busy_us=4320.0)


def test_lane_rows_name_each_kernel_and_the_bound():
    rows = bench.lane_rows("c1", [("k1", _lanes()), ("k2", None)])
    assert rows[0] == "| c1 | k1 | 100.0 | 10 | 20% | 96 | 45.0 | 90% | vector tasks |"
    assert rows[1].startswith("| c1 | k2 | no swim lanes")


def test_both_tables_reach_the_package_block_and_only_costs_the_root(tmp_path):
    where = ["| case | kernel | span µs |", "|---|---|---|", "| c1 | k1 | 100.0 |"]
    text = "\n".join(["# m", "", "copy 1 GB/s", "", *COST, "", bench.LANES_HEADING, "", *where, ""])
    (tmp_path / "m.md").write_text(text)
    (tmp_path / "n.md").write_text("\n".join(["# n", "", "copy 1 GB/s", "", *COST, ""]))  # no lanes table
    tables = bench_report.read_tables(tmp_path)
    assert tables["m"] == ("copy 1 GB/s", COST, where) and tables["n"] == ("copy 1 GB/s", COST, [])
    block = bench_report.package_block(*tables["m"])
    assert block.index(COST[-1]) < block.index(bench.LANES_HEADING) < block.index(where[-1])
    assert bench.LANES_HEADING not in bench_report.package_block(*tables["n"])
    root = bench_report.root_block(tables)
    assert "| m | c1 | 100.0 | 20.0 | 1.0 | 121.0 | 50.0 | memory | 41% |" in root and where[-1] not in root
