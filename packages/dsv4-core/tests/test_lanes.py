"""Reading the cost model's swim lanes: busy time per core kind, what bounds a span, the
timeline and its command."""

import json

import pytest

from dsv4_core import lanes
from dsv4_core.chip import AICORE_MHZ, CUBE_CORES, VECTOR_CORES


def _lane(kind, block, *spans_us):
    return {"coreType": kind, "blockIdx": block,
            "tasks": [{"execStart": int(a * AICORE_MHZ), "execEnd": int(b * AICORE_MHZ)} for a, b in spans_us]}


def test_busy_time_per_core_kind_and_the_bound():
    # every vector core busy 9 of a 10 µs span: vector-task bound
    swim = [_lane("AIV", i, (0, 4), (5, 10)) for i in range(VECTOR_CORES)]
    swim += [_lane("AIC", 0, (0, 2)), _lane("HUB", 0, (0, 100))]  # a HUB lane is not a core
    ln = lanes.lanes_of(swim)
    assert ln.span_us == pytest.approx(10.0)
    assert (ln.vec_tasks, ln.cube_tasks) == (2 * VECTOR_CORES, 1)
    assert ln.busy("vector") == pytest.approx(0.9)
    assert ln.busy("cube") == pytest.approx(2.0 / CUBE_CORES / 10.0)
    assert ln.limit() == "vector tasks"
    assert "bound by vector tasks" in ln.describe()
    # one core busy in a chain of tasks: the span waits on dependencies
    chain = lanes.lanes_of([_lane("AIV", 0, (0, 4), (4, 8)), _lane("AIC", 0, (8, 10))])
    assert chain.limit() == "dependencies" and chain.busy("vector") < 0.1
    # every cube core busy: cube-task bound
    cube = lanes.lanes_of([_lane("AIC", i, (0, 10)) for i in range(CUBE_CORES)])
    assert cube.limit() == "cube tasks" and cube.busy("cube") == pytest.approx(1.0)
    assert lanes.lanes_of([_lane("HUB", 0, (0, 1))]) is None


def _phases():
    # 0-20 µs every vector core busy, 20-40 µs every cube core busy
    return ([_lane("AIV", i, (100, 120)) for i in range(VECTOR_CORES)]
            + [_lane("AIC", i, (120, 140)) for i in range(CUBE_CORES)])


def test_timeline_shows_the_phases():
    rows = lanes.timeline(_phases(), bin_us=10.0)
    assert [r[0] for r in rows] == [0.0, 10.0, 20.0, 30.0]  # from the first task on
    assert [round(r[2], 6) for r in rows] == [1.0, 1.0, 0.0, 0.0]  # vector
    assert [round(r[1], 6) for r in rows] == [0.0, 0.0, 1.0, 1.0]  # cube
    assert lanes.timeline([]) == []


def test_command_prints_summary_and_timeline(tmp_path, capsys):
    run = tmp_path / "case" / "CostModelSimulationOutput"
    run.mkdir(parents=True)
    (run / "_simulate.swim.json").write_text(json.dumps(_phases()))
    assert lanes.main([str(tmp_path), "--bin", "20"]) == 0
    out = capsys.readouterr().out
    assert "span 40.0 µs" in out and "cube 100%" in out and "vector 100%" in out
    assert lanes.main([str(tmp_path / "case" / "nothing")]) == 1
