"""The pypto kernel on the CPU simulator vs the golden, one process per kernel run."""

import pytest

from dsv4_core import sim
from dsv4_qkv_proj_rope import cases

SMALL = [name for name, tier in cases.GOLDEN_CASES if tier == "small"]


@pytest.mark.parametrize("name", SMALL)
def test_kernel_matches_golden(name):
    out, _ = sim.isolated(cases.golden, name)
    assert out.ok, [str(r) for r in out.reports]
    assert out.run is not None and out.run.values and out.run.aicore_us > 0


@pytest.mark.parametrize("weight", ["wq_b", "wkv", "q_norm_weight"])
def test_perturbed_weight_fails(weight):
    out, _ = sim.isolated(cases.golden, "tiny-decode-B1S1-swa", perturb=weight)
    assert not out.ok
    failed = {r.name for r in out.reports if not r.ok}
    expected = {"wq_b": "q", "wkv": "kv", "q_norm_weight": "qr"}[weight]
    assert expected in failed
    assert weight != "wkv" or failed == {"kv"}  # the q path never reads wkv
    assert "kv" not in failed or weight == "wkv"  # the kv path never reads the q weights


def test_sim_backend_matches_torch_backend():
    import torch

    got, _ = sim.isolated(cases.run_public, "tiny-decode-B1S1-swa", "sim")
    want = cases.run_public("tiny-decode-B1S1-swa", "torch")
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert (g.float() - w.float()).abs().max() <= 0.0625  # bf16-lsb level; the golden test is the strict one
        assert torch.isfinite(g.float()).all()


def test_fp32_norm_weights_match_the_golden():
    out, _ = sim.isolated(cases.golden, "tiny-decode-B1S1-swa", norm_fp32=True)
    assert out.ok, [str(r) for r in out.reports]
