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


def test_subgraphs_and_their_ops(tmp_path, capsys):
    def task(tid, sg, a, b):
        return {"taskId": tid, "subGraphId": sg, "execStart": int(a * AICORE_MHZ), "execEnd": int(b * AICORE_MHZ)}

    swim = [{"coreType": "AIV", "blockIdx": 0, "tasks": [task(1, 7, 10, 14), task(2, 7, 14, 18)]},
            {"coreType": "AIC", "blockIdx": 0, "tasks": [task(3, 2, 20, 30)]},
            {"coreType": "HUB", "blockIdx": 0, "tasks": [task(4, 0, 0, 1)]}]
    rows = lanes.subgraphs(swim)
    assert [(r.kind, r.subgraph, r.tasks) for r in rows] == [("vector", 7, 2), ("cube", 2, 1)]
    assert (rows[0].busy_us, rows[0].start_us, rows[0].end_us) == pytest.approx((8.0, 0.0, 8.0))
    assert rows[1].task_ids == (3,) and lanes.subgraphs([]) == []
    run = tmp_path / "output_1"
    graphs = run / "CostModelSimulationOutput" / "graphs"
    graphs.mkdir(parents=True)
    (run / "CostModelSimulationOutput" / "_simulate.swim.json").write_text(json.dumps(swim))
    (graphs / "leaf_a.dot").write_text('label="leaf hash:11"; label="opcode:MULS"; label="opcode:MULS"; '
                                       'label="opcode:COPY_IN"')
    (graphs / "leaf_b.dot").write_text('label="leaf hash:22"; label="opcode:A_MUL_B"')
    (run / "dyn_topo.txt").write_text("seqNo,taskId,rootIndex,rootHash,opmagic,leafIndex,leafHash,coreType,psgId,"
                                      "successors\n0,1,0,0,0,0,11,4,0,\n1,2,0,0,0,0,11,4,0,\n2,3,0,0,0,1,22,3,0,\n")
    ops = lanes.leaf_ops(str(run))
    assert ops == {1: "2 MULS, 1 COPY_IN", 2: "2 MULS, 1 COPY_IN", 3: "1 A_MUL_B"}
    assert lanes.leaf_ops(str(tmp_path / "missing")) == {}
    assert lanes.main([str(tmp_path), "--ops"]) == 0
    out = capsys.readouterr().out
    assert "vector subgraph    7:     2 tasks, busy       8.0 µs" in out and "2 MULS, 1 COPY_IN" in out
    assert "cube   subgraph    2:     1 tasks" in out and "1 A_MUL_B" in out
