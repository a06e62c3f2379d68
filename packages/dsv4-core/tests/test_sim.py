"""The simulator runner: real numbers through the interpreter, cost-model time, isolation
and verdict parsing. Every kernel runs in its own process."""

import os

import pytest

from dsv4_core import sim


def _broken_kernel():
    import pypto

    S = pypto.STATIC

    @pypto.frontend.jit(runtime_options={"run_mode": pypto.RunMode.SIM})
    def too_big(a: pypto.Tensor([S, S], pypto.DT_FP32), o: pypto.Tensor([S, S], pypto.DT_FP32)):
        pypto.set_vec_tile_shapes(512, 512)  # 1 MiB tiles cannot fit the 192 KB unified buffer
        o[:] = pypto.exp(a)

    import torch

    a = torch.zeros(512, 512)
    sim.run(too_big, [a, torch.zeros_like(a)])


def test_selftest_gives_known_numbers():
    err, run = sim.isolated(sim.selftest)
    assert err == 0.0
    assert run is not None and run.values and run.aicore_us > 0 and run.cores >= 1
    ln = run.lanes
    assert ln is not None and ln.span_us == run.aicore_us and ln.vec_tasks + ln.cube_tasks == run.tasks
    assert 0 < ln.busy("vector") <= 1


def _sources_shared():
    """After a run: each function's and class's source is parsed once per process."""
    import pypto
    from pypto.frontend.parser.diagnostics import Source

    sim.selftest()
    a, b = Source(sim.selftest), Source(sim.selftest)
    t1, t2 = Source(pypto.Tensor), Source(pypto.Tensor)
    return a.tree is b.tree and a.source_name == b.source_name and t1.tree is t2.tree, a.tree.name


def test_parsed_sources_are_shared_within_a_process():
    (shared, name), _ = sim.isolated(_sources_shared)
    assert shared and name == "selftest"


def _die(how):
    import os
    import signal

    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


@pytest.mark.parametrize("how, says", [("kill", "SIGKILL: most likely out of memory"), ("exit", "exit code 3")])
def test_a_dead_child_says_why(how, says):
    with pytest.raises(sim.SimError, match=says):
        sim.isolated(_die, how)


def test_compile_error_is_contained():
    with pytest.raises(sim.SimError):
        sim.isolated(_broken_kernel)
    err, _ = sim.isolated(sim.selftest)  # the parent and the next child are fine
    assert err == 0.0


def test_pass_verify_verdicts_are_raised(tmp_path):
    d = tmp_path / "verify_x"
    d.mkdir()
    (d / "verify_result_brief.csv").write_text(
        "funcID,passName,verifyType,loopInfo,verifyResult,maxAbsDiff\n"
        "1,Pass_04_ExpandFunction,T,loop_idx_0=0,PASS,0\n"
        "2,Pass_28_InferParamIndex,T,loop_idx_0=1,FAILED,3.5\n")
    (d / "verify_exception.log").write_text("tensor_graph Verify for 2 data view list index 0 result NO_COMPARE\n")
    with pytest.raises(sim.PassVerifyError, match="InferParamIndex.*FAILED"):
        sim.check_verify_dirs([str(tmp_path)])


def test_benign_exception_log_is_not_a_failure(tmp_path):
    d = tmp_path / "verify_y"
    d.mkdir()
    (d / "verify_result_brief.csv").write_text("funcID,passName,verifyResult\n1,P,PASS\n")
    (d / "verify_exception.log").write_text("tensor_graph Verify for 2 data view list index 1 result NO_COMPARE\n")
    sim.check_verify_dirs([str(tmp_path)])
    (d / "verify_exception.log").write_text("std::runtime_error: interpreter crashed in op Gather\n")
    with pytest.raises(sim.PassVerifyError, match="interpreter crashed"):
        sim.check_verify_dirs([str(tmp_path)])


def test_calculator_is_cached_on_disk():
    sim.isolated(sim.selftest)
    assert (sim.calculator_path() / "install" / "lib" / "libtile_fwk_calculator.so").exists()
    assert str(sim.cache_root()) in str(sim.calculator_path())
    assert os.environ.get("TILE_FWK_OUTPUT_DIR")  # artefacts go to a temporary directory


def test_isolated_calls_from_two_threads_each_get_their_own_run():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: sim.isolated(sim.selftest), range(2)))
    for err, run in results:
        assert err == 0.0 and run is not None and run.name == "selftest" and run.aicore_us > 0
    assert results[0][1].verify_dir != results[1][1].verify_dir


def test_swim_lane_scripts_are_skipped_and_everything_else_runs(tmp_path, monkeypatch):
    import os
    import subprocess

    from dsv4_core import sim

    monkeypatch.delenv("DSV4_KEEP_SIM", raising=False)
    monkeypatch.delenv("DSV4_SIM_SCRIPTS", raising=False)
    monkeypatch.setitem(sim._state, "shim", None)
    monkeypatch.setenv("PATH", os.environ["PATH"])
    sim._skip_swim_lane_scripts(str(tmp_path))
    shim = sim._state["shim"]
    assert os.environ["PATH"].split(os.pathsep)[0] == os.path.dirname(shim)
    skipped = subprocess.run([shim, "/x/pypto/lib/scripts/print_swim_lane.py", "y"], capture_output=True)
    assert skipped.returncode == 0 and skipped.stdout == b""
    ran = subprocess.run([shim, "-c", "print(6 * 7)"], capture_output=True)
    assert ran.stdout.strip() == b"42"
    other = subprocess.run([shim, str(tmp_path / "missing_script.py")], capture_output=True)
    assert other.returncode != 0  # anything else really runs (and fails like python3 would)


def test_swim_lane_scripts_run_when_asked(tmp_path, monkeypatch):
    from dsv4_core import sim

    monkeypatch.setenv("DSV4_SIM_SCRIPTS", "1")
    monkeypatch.setitem(sim._state, "shim", None)
    sim._skip_swim_lane_scripts(str(tmp_path))
    assert sim._state["shim"] is None
