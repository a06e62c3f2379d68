"""The `sim` backend: a pypto kernel run on the CPU.

pypto 0.2.0's `RunMode.SIM` runs only the cost model (a cycle model of an Ascend 910B2);
values come from its pass-verify interpreter ("calculator", a torch C++ library pypto
builds at run time). Without CANN the frontend hands the interpreter zero-filled copies
of the inputs; `_install_input_hook` rebinds one 0.2.0 internal so the interpreter sees the
real CPU tensors, and pypto then copies the interpreted results back into the kernel's
output tensors. `selftest()` checks it still gives known numbers. The one other touch is
`_share_parsed_sources`: the frontend parses each kernel function's source once per process
instead of at every site that inlines it (host build time only; the kernel, its values and
its cost-model time are the same).

- The calculator library is built once per (pypto, torch) pair into a cache directory
  (`$DSV4_PTO_CACHE`, default `~/.cache/dsv4-kernels`) under a file lock.
- Simulator artefacts go to a per-process temporary directory (removed at exit) unless
  `TILE_FWK_OUTPUT_DIR` is already set.
- Pass-level verify verdicts (`verify_result_brief.csv`, `verify_exception.log`) are only
  flushed when the process exits: `isolated()` runs a call in a fresh process and, after it
  exits, turns any FAILED verdict or exception line into `PassVerifyError`.
"""

# no `from __future__ import annotations`: pypto reads kernel annotations as objects

import atexit
import contextlib
import csv
import ctypes
import dataclasses
import glob
import json
import multiprocessing
import os
import re
import shutil
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Sequence

from .chip import AICORE_MHZ
from .lanes import Lanes, lanes_of

# ExpandFunction is left out: its check flags every matmul output that feeds a vector op in
# 0.2.0, even on full tiles. The tolerance is one bf16 ulp (pass outputs are bf16 tiles whose
# fp32 sums may be ordered differently).
PASS_VERIFY_TOL = (2.0 ** -7, 2.0 ** -7)
# verify_exception.log also lists tensors it had nothing to compare with: not a failure
_BENIGN_LOG = re.compile(r"result (NO_COMPARE|PASS)\s*$")
DEFAULT_PASS_FILTER = ("InferParamIndex", "CodegenPreproc")


class SimError(RuntimeError):
    """The simulator could not run a kernel."""


class PassVerifyError(SimError):
    """pypto's pass-level verify found a mismatch or raised inside the interpreter."""


@dataclasses.dataclass(frozen=True)
class KernelRun:
    """What one simulator run produced (besides the output tensors)."""

    name: str
    aicore_us: float | None  # (max end - min start) over AIC/AIV task lanes / 1.8 GHz
    total_us: float | None  # "Total Cycles" of the stat report, AICPU scheduling included
    cores: int
    tasks: int
    values: bool  # True when the interpreter computed the outputs
    verify_dir: str | None  # where pass-level verdicts will appear
    lanes: Lanes | None = None  # where the modelled time goes (cost model's swim lanes)


_state: dict[str, Any] = {"hooked": False, "calc": False, "out": None, "last": None, "vdirs": []}


def cache_root() -> Path:
    return Path(os.environ.get("DSV4_PTO_CACHE") or Path.home() / ".cache" / "dsv4-kernels")


def _artefact_root() -> str:
    if _state["out"] is None:
        root = os.environ.get("TILE_FWK_OUTPUT_DIR")
        if not root:
            root = tempfile.mkdtemp(prefix="dsv4_sim_")
            atexit.register(shutil.rmtree, root, True)
            os.environ["TILE_FWK_OUTPUT_DIR"] = root
        _state["out"] = root
    return _state["out"]


# After every cost-model run pypto's simulator starts `python3` on three of its own scripts
# that draw and convert the swim lanes (pictures, a perfetto trace, a bubble report): about
# 8 s per kernel run, most of a small kernel's time. Nothing here reads their output (the
# figures come from `_simulate.swim.json` and the statistics report, written before them), so
# runs skip them unless the artefacts are kept for analysis (DSV4_KEEP_SIM=1) or
# DSV4_SIM_SCRIPTS=1 asks for them.
_SWIM_SCRIPTS = ("draw_swim_lane.py", "draw_pipe_swim_lane.py", "print_swim_lane.py")


def _skip_swim_lane_scripts(root: str) -> None:
    if _state.get("shim") or "1" in (os.environ.get("DSV4_KEEP_SIM"), os.environ.get("DSV4_SIM_SCRIPTS")):
        return
    import shutil as _sh
    import sys

    real = _sh.which("python3") or sys.executable
    shim_dir = os.path.join(root, "bin")
    os.makedirs(shim_dir, exist_ok=True)
    shim = os.path.join(shim_dir, "python3")
    skip = "|".join(f"*/pypto/lib/scripts/{n}" for n in _SWIM_SCRIPTS)
    with open(shim, "w") as f:
        f.write(f'#!/bin/sh\ncase "$1" in\n  {skip}) exit 0 ;;\nesac\nexec "{real}" "$@"\n')
    os.chmod(shim, 0o755)
    os.environ["PATH"] = shim_dir + os.pathsep + os.environ.get("PATH", "")
    _state["shim"] = shim


def _skip_function_graphs() -> None:
    """pypto's simulator draws the dependency graphs between its tasks, tiles and tile ops
    (dot files, `simulation.draw_function_graph`) on every cost-model run. Nothing here
    reads them, and they do not enter the modelled time; they are skipped unless the
    artefacts are kept for analysis (DSV4_KEEP_SIM=1)."""
    if _state.get("graphs_off") or os.environ.get("DSV4_KEEP_SIM") == "1":
        return
    from pypto import config

    config.set_global_config("simulation.draw_function_graph", False)
    _state["graphs_off"] = True


def _share_parsed_sources() -> None:
    """pypto 0.2.0's frontend builds a `Source` (inspect.getsourcelines, ast.parse, line
    renumbering) of a function at every call site it inlines: dozens per kernel build, about
    half of a small kernel's build time (most of them of the class `pypto.Tensor`, whose
    source is looked up in its module at every tensor constructed). The parser only reads
    the tree, so each (file name, tree) is kept per process, keyed by a function's code
    object or a class itself."""
    if _state.get("sources"):
        return
    from pypto.frontend.parser import diagnostics

    src = getattr(diagnostics, "Source", None)
    if src is None or getattr(src, "_dsv4_shared", False):
        _state["sources"] = True
        return
    build = src.__init__
    parsed: dict = {}

    def __init__(self, program):
        key = getattr(program, "__code__", None) or (program if isinstance(program, type) else None)
        hit = parsed.get(key) if key is not None else None
        if hit is None:
            build(self, program)
            if key is not None and set(vars(self)) == {"source_name", "tree"}:
                parsed[key] = (self.source_name, self.tree)
            return
        self.source_name, self.tree = hit

    src.__init__ = __init__
    src._dsv4_shared = True
    _state["sources"] = True


def _install_input_hook() -> None:
    if _state["hooked"]:
        return
    import pypto.frontend.parser.entry as entry

    if not hasattr(entry, "_gen_pto_tensor"):
        raise SimError("pypto.frontend.parser.entry._gen_pto_tensor is gone: the sim hooks need pypto==0.2.0")
    entry._gen_pto_tensor = lambda tensors: (list(tensors), None)
    _state["hooked"] = True


def calculator_path() -> Path:
    from importlib.metadata import version

    import torch

    tag = f"pypto{version('pypto')}-torch{torch.__version__}"
    return cache_root() / f"calculator-{tag}"


def ensure_calculator() -> Path:
    """Build (once, cached on disk, under a lock) and load pypto's interpreter library."""
    from pypto._utils import BuildOnlineManager

    mgr = BuildOnlineManager()
    build_dir = calculator_path()
    so = build_dir / "install" / "lib" / "libtile_fwk_calculator.so"
    if _state["calc"] or getattr(mgr, "calculator_loaded", False):
        _state["calc"] = True
        return so
    build_dir.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not so.exists():
            tctx = mgr._TorchContext()
            cctx = mgr._CMakeContext()
            ctx = cctx.CompileContext(src_dir=Path(mgr.pkg_lib_dir, "calculator"), tmp_dir=build_dir)
            ctx.cfg_cmd_ext = (
                f"-DPY3_MOD_TORCH_VERSION={tctx.torch_version} "
                f"-DPY3_MOD_TORCH_ROOT_PATH={tctx.torch_root_dir} "
                f"-DPY3_MOD_TORCH_C_GLIBCXX_USE_CXX11_ABI={tctx.torch_c_use_cxx11_abi}"
            )
            ctx.build_job_num = os.cpu_count() or 2
            cctx.compile(ctx=ctx)
            if not so.exists():
                raise SimError(f"pypto calculator build finished without {so}")
    ctypes.CDLL(str(so), mode=ctypes.RTLD_GLOBAL)
    mgr.calculator_loaded = True
    _state["calc"] = True
    return so


def _latest_sim_dir(root: str, since: float) -> str | None:
    dirs = [d for d in glob.glob(os.path.join(root, "output_*", "CostModelSimulationOutput"))
            if os.path.getmtime(d) >= since - 1]
    return max(dirs, key=os.path.getmtime) if dirs else None


def parse_cost_model(sim_dir: str) -> dict[str, Any]:
    """Read the cost model's swim-lane JSON and stat report."""
    with open(os.path.join(sim_dir, "_simulate.swim.json")) as f:
        swim = json.load(f)
    cores = {(lane["coreType"], lane.get("blockIdx")) for lane in swim
             if lane.get("coreType") in ("AIC", "AIV") and lane.get("tasks")}
    lanes = lanes_of(swim)
    total = None
    rep = os.path.join(sim_dir, "_simulate.stat.report.txt")
    if os.path.exists(rep):
        m = re.search(r"Total Cycles\.+:\s+(\d+)", open(rep).read())
        total = int(m.group(1)) / AICORE_MHZ if m else None
    return {"aicore_us": lanes.span_us if lanes else None, "total_us": total, "cores": len(cores),
            "tasks": lanes.cube_tasks + lanes.vec_tasks if lanes else 0, "lanes": lanes}


def run(kernel: Callable, args: Sequence[Any], *, name: str = "kernel", values: bool = True,
        pass_verify: bool | None = None) -> KernelRun:
    """Run a `pypto.frontend.jit` kernel built with `RunMode.SIM` on the CPU.

    values=True: the interpreter fills the output tensors in `args` (torch CPU tensors).
    values=False: cost model only (outputs untouched) — for sizes the interpreter cannot
    hold in memory. pass_verify (default: env DSV4_PASS_VERIFY=1) also interprets the IR
    after `DEFAULT_PASS_FILTER` passes; its verdicts are checked by `isolated()`."""
    import time

    import pypto

    root = _artefact_root()
    _skip_swim_lane_scripts(root)
    _skip_function_graphs()
    _share_parsed_sources()
    vdir = None
    if values:
        _install_input_hook()
        ensure_calculator()
        if pass_verify is None:
            pass_verify = os.environ.get("DSV4_PASS_VERIFY") == "1"
        vdir = tempfile.mkdtemp(prefix="verify_", dir=root)
        pypto.set_verify_options(
            enable_pass_verify=True, pass_verify_save_tensor=False,
            pass_verify_save_tensor_dir=vdir,
            pass_verify_pass_filter=list(DEFAULT_PASS_FILTER) if pass_verify else [],
            pass_verify_error_tol=list(PASS_VERIFY_TOL),
        )
        pypto.set_verify_golden_data(goldens=[None] * len(args))
        _state["vdirs"].append(vdir)
    else:
        pypto.set_verify_options(enable_pass_verify=False)
    t0 = time.time()
    with _quiet(root):
        kernel(*args)
    sd = _latest_sim_dir(root, t0)
    cm = parse_cost_model(sd) if sd else {"aicore_us": None, "total_us": None, "cores": 0, "tasks": 0, "lanes": None}
    if sd and os.environ.get("DSV4_KEEP_SIM") != "1":  # keep the swim lanes for analysis when asked
        shutil.rmtree(os.path.dirname(sd), ignore_errors=True)  # 1-25 MB per kernel
    r = KernelRun(name=name, values=values, verify_dir=vdir, **cm)
    _state["last"] = r
    return r


@contextlib.contextmanager
def _quiet(root: str):
    """pypto prints progress lines (and tracebacks of its optional swim-lane plotting
    scripts) on stdout/stderr; send them to a log in the artefact directory and put its
    tail into the error when the kernel call fails. DSV4_SIM_VERBOSE=1 shows them."""
    if os.environ.get("DSV4_SIM_VERBOSE") == "1":
        yield
        return
    import sys

    log_path = os.path.join(root, "pypto.log")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except Exception as e:
            sys.stdout.flush()
            sys.stderr.flush()
            with open(log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(log_path) - 3000))
                tail = f.read().decode(errors="replace")
            raise SimError(f"pypto kernel failed: {type(e).__name__}: {e}\n--- pypto output (tail) ---\n{tail}") from e
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def last_run() -> KernelRun | None:
    """The most recent simulator run in this process."""
    return _state["last"]


def check_verify_dirs(dirs: Sequence[str]) -> None:
    """Raise PassVerifyError on any FAILED verdict or exception line (call after the
    process that ran the kernels has exited: pypto flushes these files at exit)."""
    problems = []
    for d in dirs:
        for csv_path in glob.glob(os.path.join(d, "verify_*", "verify_result_brief.csv")):
            with open(csv_path, newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("verifyResult", "").upper() not in ("PASS", ""):
                        problems.append(f"{row.get('passName')} {row.get('verifyType')} "
                                        f"{row.get('loopInfo')}: {row.get('verifyResult')} "
                                        f"maxAbsDiff={row.get('maxAbsDiff')}")
        for log in glob.glob(os.path.join(d, "verify_*", "verify_exception.log")):
            with open(log, errors="replace") as f:
                bad = [ln.strip() for ln in f if ln.strip() and not _BENIGN_LOG.search(ln)]
            if bad:
                problems.append(f"exception log {log}: " + " | ".join(bad[:5]))
    if problems:
        raise PassVerifyError("pypto pass verify failed:\n  " + "\n  ".join(problems[:20]))


def _child(fn: Callable, args: tuple, kwargs: dict) -> tuple[Any, list[str], KernelRun | None]:
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:  # send a picklable description back
        raise SimError(f"{type(e).__name__}: {e}\n--- child traceback ---\n{traceback.format_exc()}") from None
    return result, list(_state["vdirs"]), _state["last"]


def _child_init(root: str) -> None:
    os.environ["TILE_FWK_OUTPUT_DIR"] = root  # before the child imports pypto


def _death(procs: list) -> str:
    """Why a child died, from its exit code: SIGKILL is what the system's out-of-memory killer
    sends (a large case whose simulator outgrew the memory); anything else is a pypto crash.
    A child the out-of-memory killer took may take a while to be reaped (its memory is
    freed first): waited for up to a minute (5 s left it unknown for a 12 GB child). The
    pool's own manager thread may reap the child at the same moment (its `waitpid` wins and
    ours returns with no code until it stores the code): the code is polled until it is
    there, up to the same minute."""
    deadline = time.monotonic() + 60
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    while any(p.exitcode is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    codes = [p.exitcode for p in procs if p.exitcode is not None]
    if -9 in codes:
        return "killed with SIGKILL: most likely out of memory"
    return f"exit code {codes[0] if codes else 'unknown'}: a pypto crash; see ~/ascend/log/debug/plog"


def isolated(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, KernelRun | None]:
    """Run `fn(*args, **kwargs)` in a fresh process (a pypto compile error poisons the
    process it happens in) and return (result, the child's last KernelRun). After the child
    exits, pass-level verify verdicts are read and raised as PassVerifyError. Each call's
    child writes its artefacts to a directory of its own, so calls from several threads
    run side by side without reading each other's cost-model reports."""
    ctx = multiprocessing.get_context("spawn")
    root = tempfile.mkdtemp(prefix="case_", dir=_artefact_root())
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_child_init,
                                 initargs=(root,)) as pool:
            fut = pool.submit(_child, fn, args, kwargs)
            procs = list((getattr(pool, "_processes", None) or {}).values())  # to read an exit code
            try:
                result, vdirs, last = fut.result()
            except BrokenProcessPool as e:
                raise SimError(f"the simulator process died while running {getattr(fn, '__name__', fn)} "
                               f"({_death(procs)})") from e
        check_verify_dirs(vdirs)
    finally:
        if os.environ.get("DSV4_KEEP_SIM") != "1":
            shutil.rmtree(root, ignore_errors=True)
    return result, last


def selftest() -> float:
    """Run a known kernel (out = 2·a + 1) through the interpreter and return the max error;
    raises SimError when the input hook no longer delivers real numbers."""
    import pypto
    import torch

    from .backends import jit_options

    S = pypto.STATIC

    @pypto.frontend.jit(runtime_options=jit_options())
    def affine(a: pypto.Tensor([S, S], pypto.DT_FP32), out: pypto.Tensor([S, S], pypto.DT_FP32)):
        pypto.set_vec_tile_shapes(16, 64)
        out[:] = pypto.add(pypto.mul(a, 2.0), 1.0)

    a = torch.arange(32 * 64, dtype=torch.float32).reshape(32, 64) / 64.0
    out = torch.full_like(a, -7.0)
    run(affine, [a, out], name="selftest")
    err = float((out - (2 * a + 1)).abs().max())
    if err != 0.0:
        raise SimError(f"sim selftest: interpreter output differs from 2a+1 by {err} "
                       "(the pypto input hook no longer delivers the real inputs)")
    return err
