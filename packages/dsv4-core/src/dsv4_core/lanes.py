"""Where a kernel's modelled time goes, read off pypto's cost-model swim lanes
(`_simulate.swim.json`: one lane per core, each task with its start and end cycle).

`Lanes` sums a run per core kind (every `sim.run` carries one); `timeline` shows which
kind of core was busy when. Keep a run's swim lanes with `DSV4_KEEP_SIM=1` (they are
written under `TILE_FWK_OUTPUT_DIR`) and print both:

    python -m dsv4_core.lanes DIR [--bin 20]    # a swim-lane JSON, or a directory above kept runs
    python -m dsv4_core.lanes DIR --ops         # and per subgraph: tasks, busy µs, when, its ops

`subgraphs` groups a run's tasks by the subgraph they execute; `leaf_ops` names each task's
tile ops from the kept run's leaf graphs (`CostModelSimulationOutput/graphs/*.dot`, matched
to tasks through `dyn_topo.txt`'s leaf hashes): a task with hundreds of small ops where one
would do is a tile shape left over from the op before it.
"""

import argparse
import collections
import csv
import dataclasses
import glob
import json
import math
import os
import re
import sys

from .chip import AICORE_MHZ, CUBE_CORES, VECTOR_CORES

_KINDS = {"AIC": "cube", "AIV": "vector"}


@dataclasses.dataclass(frozen=True)
class Lanes:
    """Where a kernel's modelled time goes, read off the cost model's swim lanes: the span
    (first task start to last task end) and, per core kind, how many tasks ran and how long
    they kept the cores busy. `floor_us` of a kind is its busy time spread evenly over all
    its cores: the span could not be shorter. A span well above both floors waits on
    dependencies (tasks issued one after another), one near the vector floor is bound by
    the number of vector tasks (each costs about the same whatever its tile size)."""

    span_us: float
    cube_tasks: int
    cube_busy_us: float
    vec_tasks: int
    vec_busy_us: float

    @property
    def cube_floor_us(self) -> float:
        return self.cube_busy_us / CUBE_CORES

    @property
    def vec_floor_us(self) -> float:
        return self.vec_busy_us / VECTOR_CORES

    def busy(self, kind: str) -> float:
        """Fraction of the span the cores of `kind` ("cube" / "vector") were busy."""
        floor = self.cube_floor_us if kind == "cube" else self.vec_floor_us
        return floor / self.span_us if self.span_us > 0 else 0.0

    def limit(self) -> str:
        """What bounds the span, in words: the busier pipe when it is at least two thirds
        busy, else the dependency chain."""
        kind = "vector" if self.vec_floor_us >= self.cube_floor_us else "cube"
        if self.busy(kind) >= 2 / 3:
            return f"{kind} tasks"
        return "dependencies"

    @property
    def cube_task_us(self) -> float:
        """Mean µs of a cube task (0 without any)."""
        return self.cube_busy_us / self.cube_tasks if self.cube_tasks else 0.0

    @property
    def vec_task_us(self) -> float:
        """Mean µs of a vector task (0 without any)."""
        return self.vec_busy_us / self.vec_tasks if self.vec_tasks else 0.0

    def describe(self) -> str:
        return (f"span {self.span_us:.1f} µs; cube {self.cube_tasks} tasks × {self.cube_task_us:.1f} µs, busy "
                f"{self.busy('cube'):.0%}; vector {self.vec_tasks} tasks × {self.vec_task_us:.1f} µs, busy "
                f"{self.busy('vector'):.0%}; bound by {self.limit()}")


def _tasks(swim: list) -> list[tuple[str, float, float]]:
    """(core kind, start µs, end µs) of every cube and vector task of a swim-lane list."""
    return [(_KINDS[lane["coreType"]], t["execStart"] / AICORE_MHZ, t["execEnd"] / AICORE_MHZ)
            for lane in swim if lane.get("coreType") in _KINDS for t in lane.get("tasks", [])]


def lanes_of(swim: list) -> Lanes | None:
    """`Lanes` of a cost-model swim-lane list (`_simulate.swim.json`); None without tasks."""
    tasks = _tasks(swim)
    if not tasks:
        return None
    busy = {"cube": 0.0, "vector": 0.0}
    count = {"cube": 0, "vector": 0}
    for kind, a, b in tasks:
        busy[kind] += b - a
        count[kind] += 1
    return Lanes(span_us=max(b for _, _, b in tasks) - min(a for _, a, _ in tasks), cube_tasks=count["cube"],
                 cube_busy_us=busy["cube"], vec_tasks=count["vector"], vec_busy_us=busy["vector"])


def timeline(swim: list, bin_us: float = 20.0) -> list[tuple[float, float, float]]:
    """[(bin start µs from the first task, cube busy fraction, vector busy fraction)] over
    bins of `bin_us`: the phases of a kernel (a vector-only stretch, then the cube, ...)."""
    tasks = _tasks(swim)
    if not tasks:
        return []
    t0 = min(a for _, a, _ in tasks)
    n = max(1, math.ceil((max(b for _, _, b in tasks) - t0) / bin_us))
    busy = {"cube": [0.0] * n, "vector": [0.0] * n}
    for kind, a, b in tasks:
        a, b = a - t0, b - t0
        i = int(a // bin_us)
        while i < n and i * bin_us < b:
            busy[kind][i] += min(b, (i + 1) * bin_us) - max(a, i * bin_us)
            i += 1
    return [(i * bin_us, busy["cube"][i] / (bin_us * CUBE_CORES), busy["vector"][i] / (bin_us * VECTOR_CORES))
            for i in range(n)]


@dataclasses.dataclass(frozen=True)
class Subgraph:
    """The tasks of one subgraph on one core kind: how many, their busy µs, first start and
    last end (µs from the run's first task), and their task ids."""

    kind: str
    subgraph: int
    tasks: int
    busy_us: float
    start_us: float
    end_us: float
    task_ids: tuple


def subgraphs(swim: list) -> list[Subgraph]:
    """A run's cube and vector tasks grouped by (core kind, subgraph id), by first start."""
    tasks = [(_KINDS[lane["coreType"]], t) for lane in swim if lane.get("coreType") in _KINDS
             for t in lane.get("tasks", [])]
    if not tasks:
        return []
    t0 = min(t["execStart"] for _, t in tasks) / AICORE_MHZ
    groups = collections.defaultdict(list)
    for kind, t in tasks:
        groups[(kind, t.get("subGraphId", -1))].append(t)
    rows = []
    for (kind, sg), ts in groups.items():
        rows.append(Subgraph(kind, sg, len(ts), sum(t["execEnd"] - t["execStart"] for t in ts) / AICORE_MHZ,
                             min(t["execStart"] for t in ts) / AICORE_MHZ - t0,
                             max(t["execEnd"] for t in ts) / AICORE_MHZ - t0,
                             tuple(t.get("taskId", -1) for t in ts)))
    return sorted(rows, key=lambda r: (r.start_us, r.kind, r.subgraph))


def leaf_ops(run_dir: str, top: int = 8) -> dict:
    """{task id: its leaf graph's `top` most frequent tile ops, e.g. "19 GATHER, 19 WHERE_TS"}
    for a kept run (the directory holding `dyn_topo.txt` and `CostModelSimulationOutput`);
    empty when those files are missing."""
    ops_by_hash = {}
    for dot in glob.glob(os.path.join(run_dir, "CostModelSimulationOutput", "graphs", "*.dot")):
        with open(dot) as fh:
            text = fh.read()
        h = re.search(r"hash:(\d+)", text)
        if h:
            counts = collections.Counter(re.findall(r"opcode:([A-Z0-9_]+)", text))
            ops_by_hash[h.group(1)] = ", ".join(f"{n} {op}" for op, n in counts.most_common(top))
    topo = os.path.join(run_dir, "dyn_topo.txt")
    if not ops_by_hash or not os.path.isfile(topo):
        return {}
    out = {}
    with open(topo) as fh:
        for row in csv.DictReader(fh):
            ops = ops_by_hash.get((row.get("leafHash") or "").strip())
            if ops:
                out[int(row["taskId"])] = ops
    return out


def _swim_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    return sorted(glob.glob(os.path.join(path, "**", "_simulate.swim.json"), recursive=True), key=os.path.getmtime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsv4_core.lanes")
    ap.add_argument("path", help="a swim-lane JSON, or a directory holding kept runs")
    ap.add_argument("--bin", type=float, default=20.0, help="µs per timeline row")
    ap.add_argument("--ops", action="store_true", help="also each subgraph's tasks, busy µs and tile ops")
    a = ap.parse_args(argv)
    files = _swim_files(a.path)
    if not files:
        print(f"no _simulate.swim.json under {a.path} (run with DSV4_KEEP_SIM=1)", file=sys.stderr)
        return 1
    for f in files:
        with open(f) as fh:
            swim = json.load(fh)
        ln = lanes_of(swim)
        print(f"{f}\n  {ln.describe() if ln else 'no tasks'}")
        for start, cube, vec in timeline(swim, a.bin):
            print(f"  {start:7.0f} µs  cube {cube:4.0%} {'#' * round(cube * 20):<20}  vector {vec:4.0%} "
                  f"{'#' * round(vec * 20)}")
        if a.ops:
            ops = leaf_ops(os.path.dirname(os.path.dirname(os.path.abspath(f))))
            for sg in subgraphs(swim):
                names = next((ops[t] for t in sg.task_ids if t in ops), "")  # the same leaf for each
                print(f"  {sg.kind:6} subgraph {sg.subgraph:4}: {sg.tasks:5} tasks, busy {sg.busy_us:9.1f} µs, "
                      f"{sg.start_us:7.1f}–{sg.end_us:7.1f} µs  {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
