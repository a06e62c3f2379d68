"""Backend selection shared by every kernel package.

`backend="npu"` runs the pypto kernel on an Ascend device, `"sim"` runs the same kernel on
the CPU (values from pypto's verify interpreter, time from its cost model, see
`dsv4_core.sim`), `"torch"` runs the golden reference on any torch device. `"auto"` picks
`npu` where an NPU is present, else `torch`, and `explain_auto()` says why. A kernel never
falls back to the reference by itself: asking for `npu` or `sim` where they cannot run
raises `BackendUnavailable`.
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Literal

import torch

Backend = Literal["npu", "sim", "torch", "auto"]
BACKENDS: tuple[str, ...] = ("npu", "sim", "torch", "auto")
# what the `sim` extra (`pip install 'dsv4-core[sim]'`) brings: pypto's simulator tooling
# imports them when it writes its cost-model reports
SIM_EXTRA_MODULES: tuple[str, ...] = ("matplotlib", "pandas")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""


def npu_unavailable_reasons() -> list[str]:
    """Why the `npu` backend cannot run here (empty list: it can)."""
    reasons = []
    if importlib.util.find_spec("torch_npu") is None:
        reasons.append("torch_npu is not installed")
    else:
        try:
            import torch_npu  # noqa: F401

            if not torch.npu.is_available():  # type: ignore[attr-defined]
                reasons.append("torch_npu reports no NPU device")
        except Exception as e:  # pragma: no cover - needs torch_npu
            reasons.append(f"torch_npu failed to initialise: {e}")
    if importlib.util.find_spec("pypto") is None:
        reasons.append("pypto is not installed")
    return reasons


def sim_unavailable_reasons() -> list[str]:
    """Why the `sim` backend cannot run here (empty list: it can)."""
    reasons = []
    if importlib.util.find_spec("pypto") is None:
        reasons.append("pypto is not installed (pip install pypto==0.2.0)")
    else:
        from importlib.metadata import version

        v = version("pypto")
        if v != "0.2.0":
            reasons.append(f"pypto {v} installed; the simulator hooks are written for pypto 0.2.0")
    missing = [m for m in SIM_EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        reasons.append(f"{', '.join(missing)} not installed (pypto's simulator tooling needs them): "
                       "pip install 'dsv4-core[sim]'")
    for tool in ("cmake", "g++"):
        if shutil.which(tool) is None:
            reasons.append(f"{tool} not found (pypto builds its interpreter library with it)")
    return reasons


def explain_auto() -> str:
    """One line: which backend `auto` picks here and why."""
    reasons = npu_unavailable_reasons()
    if not reasons:
        return "auto -> npu: torch_npu and an Ascend device are present"
    return "auto -> torch: npu unavailable (" + "; ".join(reasons) + ")"


def resolve_backend(backend: str) -> str:
    """Validate `backend` and resolve `auto`; raise when the choice cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "npu" if not npu_unavailable_reasons() else "torch"
    if backend == "npu":
        reasons = npu_unavailable_reasons()
        if reasons:
            raise BackendUnavailable("backend='npu' cannot run here: " + "; ".join(reasons))
    if backend == "sim":
        reasons = sim_unavailable_reasons()
        if reasons:
            raise BackendUnavailable("backend='sim' cannot run here: " + "; ".join(reasons))
    return backend


def run_mode(backend: str):
    """pypto's run mode for a resolved kernel backend ('npu' or 'sim')."""
    import pypto

    if backend == "sim":
        return pypto.RunMode.SIM
    if backend == "npu":
        return pypto.RunMode.NPU
    raise ValueError(f"run_mode: backend must be 'npu' or 'sim', got {backend!r}")


def runtime_options(backend: str) -> dict:
    """pypto `runtime_options` for a resolved kernel backend ('npu' or 'sim')."""
    return {"run_mode": run_mode(backend)}


def jit_options(mode=None) -> dict:
    """`runtime_options` for `pypto.frontend.jit` in a kernel builder: `mode` is a pypto run
    mode (from `run_mode`), None builds for the simulator."""
    import pypto

    return {"run_mode": pypto.RunMode.SIM if mode is None else mode}


def launch(kernel, args, *, backend: str, name: str = "kernel", values: bool = True):
    """Run a built pypto kernel on a resolved kernel backend: the CPU simulator for 'sim'
    (returns its `dsv4_core.sim.KernelRun`: cost-model time), the device for 'npu' (returns
    None). The kernel must have been built with `jit_options(run_mode(backend))`."""
    if backend == "sim":
        from . import sim

        return sim.run(kernel, args, name=name, values=values)
    if backend == "npu":  # pragma: no cover - needs an Ascend NPU
        kernel(*args)
        return None
    raise ValueError(f"launch: backend must be 'npu' or 'sim', got {backend!r}")


def on_device(t: torch.Tensor, device) -> torch.Tensor:
    """`t` on `device`: a host→device copy of small metadata when it lives elsewhere, `t`
    itself otherwise (no `.to(...)` call on a tensor already there, so nothing is read back:
    `contract.no_readback` refuses every `.to("cpu")`)."""
    return t if t.device == torch.device(device) else t.to(device)
