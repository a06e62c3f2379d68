"""The key path's Hadamard option (`rotate=True`, the lightning indexer's keys): the golden is
the unrotated entry followed by the rotation, the default path is unchanged, and the pool
kernel with the rotation matches the golden on the simulator, while keys rotated one
position late fail it."""

import dataclasses

import torch

from dsv4_compressor_common import decode_call
from dsv4_compressor_common.hadamard import hadamard, hadamard_matrix, walsh_hadamard_fwht
from dsv4_compressor_common.step import compute_reference
from dsv4_compressor_common.testing import Case, call_args, golden, make_inputs, plan_of
from dsv4_compressor_common.testing.reference_suites import golden_values
from dsv4_core import TINY, sim
from dsv4_core.compare import compare

KEYS = dataclasses.replace(TINY, name="tiny-keys", head_dim=TINY.index_head_dim)
CASE = Case("tiny-keys-decode-S5", KEYS, 4, (0, 5, 130, 2), 5, rotate=True)


def test_hadamard_matrix_and_butterfly():
    h = hadamard_matrix(128)
    assert torch.equal(h @ h.T, 128 * torch.eye(128)) and torch.equal(h, h.T)
    x = torch.randn(3, 128, dtype=torch.float64)
    assert torch.allclose(walsh_hadamard_fwht(x), x @ h.double() / 128 ** 0.5)
    assert torch.allclose(hadamard(x, dtype=torch.float64), walsh_hadamard_fwht(x))


def test_rotated_entries_are_the_rotation_of_the_plain_entries():
    inp = make_inputs(CASE)
    plan = plan_of(CASE, inp)
    plain = golden_values(CASE, inp, plan)
    x2d = inp["x"].reshape(CASE.tokens, -1)
    w = [inp[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    rot = compute_reference(KEYS, plan, x2d, *w, inp["state"], rotate=True)
    assert plan.num_windows >= 4
    assert torch.equal(rot.entries, hadamard(plain.entries))
    assert torch.equal(rot.kv_rows, plain.kv_rows) and torch.equal(rot.score_rows, plain.score_rows)
    exact = compute_reference(KEYS, plan, x2d, *w, inp["state"], dtype=torch.float64, rotate=True)
    assert compare(rot.entries, exact.entries, rot.entries).ok
    assert not compare(plain.entries, exact.entries, rot.entries).ok  # the rotation is not the identity


def test_calls_default_to_the_plain_path():
    a, b = make_inputs(CASE), make_inputs(CASE)
    plain = decode_call(4, *call_args(a), config=KEYS, backend="torch")
    rot = decode_call(4, *call_args(b), config=KEYS, backend="torch", rotate=True)
    c = plain.closes.reshape(-1)
    assert c.any() and torch.equal(rot.kv.reshape(-1, 128)[c].float(),
                                   hadamard(plain.kv.reshape(-1, 128)[c].float()))


def test_rotate_kernel_matches_the_golden():
    out, _ = sim.isolated(golden, "keys", CASE)
    assert out.ok, [str(r) for r in out.reports if not r.ok]
    assert "cmp_kv" in {r.name for r in out.reports} and out.run.values and "pool_rotate" in out.run.name


def test_rotate_kernel_with_rope_one_position_late_fails():
    out, _ = sim.isolated(golden, "keys", CASE, perturb="rope_pos")
    assert not out.ok and {r.name for r in out.reports if not r.ok} == {"cmp_kv"}
