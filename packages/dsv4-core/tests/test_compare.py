import pytest
import torch

from dsv4_core.compare import compare, compare_exact, compare_topk


def _case(n=4096):
    x = torch.rand(n, dtype=torch.float64) + 0.5  # values of one magnitude: the bound is absolute
    exact = torch.exp(x) * 0.5
    ref = (torch.exp(x.bfloat16().float()).bfloat16().float() * 0.5).double()  # a storage-dtype evaluation
    return exact, ref


def test_reference_itself_passes():
    exact, ref = _case()
    r = compare(ref, exact, ref, name="y")
    assert r.ok and r.frac_out == 0 and r.max_abs <= r.bound
    assert "PASS" in str(r)


@pytest.mark.parametrize("delta", [0.05, 1.0])
def test_perturbed_output_fails(delta):
    exact, ref = _case()
    out = ref.clone()
    out[123] += delta * max(1.0, float(exact[123].abs()))
    r = compare(out, exact, ref, name="y")
    assert not r.ok and r.worst_index == (123,) and r.frac_out == pytest.approx(1 / 4096)
    with pytest.raises(AssertionError, match="FAIL"):
        r.raise_if_failed()


def test_systematic_bias_fails():
    exact, ref = _case()
    r = compare(ref * 1.02, exact, ref)
    assert not r.ok and r.frac_out > 0.1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_fails(bad):
    exact, ref = _case()
    out = ref.clone()
    out[7] = bad
    r = compare(out, exact, ref)
    assert not r.ok and "nonfinite=1" in r.detail and r.worst_index == (7,)


def test_zero_exact_bound_is_not_zero_width():
    z = torch.zeros(8, dtype=torch.float64)
    assert compare(z, z, z).ok
    assert not compare(z + 1e-3, z, z).ok


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        compare(torch.zeros(3), torch.zeros(4), torch.zeros(4))


def test_compare_exact():
    a = torch.arange(10, dtype=torch.int32)
    assert compare_exact(a, a.clone()).ok
    b = a.clone()
    b[4] = -1
    r = compare_exact(b, a)
    assert not r.ok and r.worst_index == (4,) and "mismatches=1" in r.detail


def test_topk_tie_aware():
    scores = torch.tensor([[5.0, 4.0, 3.0, 3.0, 1.0]])
    ref = torch.tensor([[0, 1, 2]])
    assert compare_topk(torch.tensor([[1, 0, 2]]), ref, scores).ok  # order free
    assert compare_topk(torch.tensor([[0, 1, 3]]), ref, scores).ok  # swapped a tied candidate
    assert not compare_topk(torch.tensor([[0, 1, 4]]), ref, scores).ok  # not tied
    assert not compare_topk(torch.tensor([[0, 0, 1]]), ref, scores).ok  # duplicate
    assert not compare_topk(torch.tensor([[0, 1, -1]]), ref, scores).ok  # missing one
    assert not compare_topk(torch.tensor([[0, 1, 9]]), ref, scores).ok  # out of range
    assert compare_topk(torch.tensor([[0, 1, -1]]), torch.tensor([[1, 0, -1]]), scores).ok
