import pytest
import torch

from dsv4_core import BackendUnavailable, explain_auto, resolve_backend
from dsv4_core.backends import npu_unavailable_reasons
from dsv4_core.checks import check_index_range, check_same_device, check_tensor


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("cuda")


def test_auto_explains_itself():
    msg = explain_auto()
    assert msg.startswith("auto -> ")
    if npu_unavailable_reasons():
        assert resolve_backend("auto") == "torch" and "torch_npu" in msg
        with pytest.raises(BackendUnavailable, match="backend='npu' cannot run here"):
            resolve_backend("npu")


def test_sim_and_torch_resolve_here():
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("sim") == "sim"


def test_check_tensor_messages():
    x = torch.zeros(4, 8, dtype=torch.bfloat16)
    dims = {}
    check_tensor("x", x, shape=("T", 8), dtype=torch.bfloat16, device="cpu", dims=dims)
    assert dims == {"T": 4}
    with pytest.raises(TypeError, match="x must have dtype float32, got bfloat16"):
        check_tensor("x", x, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"x must have shape \[4, 9\], got \[4, 8\]"):
        check_tensor("x", x, shape=(4, 9))
    with pytest.raises(ValueError, match="must be 3-D"):
        check_tensor("x", x, shape=(4, 8, 1))
    with pytest.raises(ValueError, match=r"y dim 0 \(T\) must be 4"):
        check_tensor("y", torch.zeros(5, 8), shape=("T", 8), dims=dims)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        check_tensor("x", [1, 2])
    with pytest.raises(ValueError, match="must be on device meta"):
        check_tensor("x", x, device="meta")


def test_check_index_range():
    check_index_range("slots", torch.tensor([0, 3, -1]), 0, 4, allow=(-1,))
    with pytest.raises(ValueError, match=r"slots values must be in \[0, 4\) or \[-1\], got 4"):
        check_index_range("slots", torch.tensor([0, 4]), 0, 4, allow=(-1,))
    assert check_same_device(a=torch.zeros(1), b=torch.zeros(1)).type == "cpu"


def test_sim_names_the_extra_when_its_tooling_is_missing(monkeypatch):
    import importlib.util

    from dsv4_core import backends

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pandas" else real(name, *a))
    reasons = backends.sim_unavailable_reasons()
    assert any("pandas" in r and "dsv4-core[sim]" in r for r in reasons), reasons
    with pytest.raises(BackendUnavailable, match=r"dsv4-core\[sim\]"):
        resolve_backend("sim")


def test_launch_and_run_mode_take_kernel_backends_only():
    import pypto

    from dsv4_core.backends import jit_options, launch, run_mode

    assert run_mode("sim") == pypto.RunMode.SIM and run_mode("npu") == pypto.RunMode.NPU
    assert jit_options() == {"run_mode": pypto.RunMode.SIM}
    assert jit_options(run_mode("npu")) == {"run_mode": pypto.RunMode.NPU}
    for bad in ("torch", "auto"):
        with pytest.raises(ValueError, match="backend must be 'npu' or 'sim'"):
            run_mode(bad)
        with pytest.raises(ValueError, match="backend must be 'npu' or 'sim'"):
            launch(lambda *a: None, [], backend=bad)


def test_on_device_moves_only_what_lives_elsewhere():
    from dsv4_core import contract
    from dsv4_core.backends import on_device

    t = torch.arange(3)
    with contract.no_readback():  # a tensor already there: no .to() call at all
        assert on_device(t, "cpu") is t
        assert on_device(t, torch.device("cpu")) is t
    moved = on_device(t, "meta")  # elsewhere: moved
    assert moved.device == torch.device("meta") and moved is not t
