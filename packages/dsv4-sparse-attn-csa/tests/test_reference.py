"""Semantics of the golden and of the CSA index contract."""

import pytest
import torch

from dsv4_core import TINY
from dsv4_sparse_attn_common.testing import semantic_exact
from dsv4_sparse_attn_csa import build_indices
from dsv4_sparse_attn_csa.cases import CASES, call, exact, make_inputs, reference

W = TINY.window


def test_causal_cut_and_order():
    p = torch.tensor([[302, 303]])  # visible: 75, 76
    tk = torch.tensor([[75, 3, -1, 74], [75, 3, -1, 74]], dtype=torch.int32)
    idx = build_indices(p, tk, config=TINY)
    S = 2
    assert idx.shape == (2, W + 4)
    assert idx[0, W:].tolist() == [-1, W + S + 3, -1, W + S + 74]  # 75 closes at 303: masked for 302
    assert idx[1, W:].tolist() == [W + S + 75, W + S + 3, -1, W + S + 74]


def test_empty_compressed_set():
    p = torch.tensor([[1], [2]])
    tk = torch.tensor([[0, 1], [-1, 0]], dtype=torch.int32)  # nothing visible before position 3
    assert (build_indices(p, tk, config=TINY)[:, W:] == -1).all()


def test_bad_topk_refused():
    p = torch.tensor([[10]])
    with pytest.raises(ValueError, match="topk_idxs values must be >= -1"):
        build_indices(p, torch.tensor([[-3, 0]]), config=TINY)
    with pytest.raises(ValueError, match=r"topk_idxs must have shape \[1, \*\]"):
        build_indices(p, torch.tensor([[0], [1]]), config=TINY)


def test_torch_backend_matches_independent_oracle():
    for name in ("tiny-fewer-wrap-B2S2", "tiny-empty-cmp-B2S1"):
        inp = make_inputs(CASES[name])
        out = call(inp, TINY, "torch")
        oracle = semantic_exact(TINY, inp, compress_ratio=4)  # the topk_idxs with the official cut
        assert (exact(TINY, inp) - oracle).abs().max() < 1e-9
        assert (out.double() - oracle).abs().max() < 2 ** -6 * oracle.abs().max()
        assert torch.equal(out, reference(TINY, inp))


def test_fewer_valid_topk_than_k():
    inp = make_inputs(CASES["tiny-fewer-wrap-B2S2"])
    valid = (inp["topk_idxs"] >= 0).sum(1)
    assert (valid < TINY.index_topk).all() and (valid > 0).all()


def test_topk_order_does_not_matter():
    inp = make_inputs(CASES["tiny-fewer-wrap-B2S2"])
    a = exact(TINY, inp)
    perm = torch.randperm(inp["topk_idxs"].shape[1])
    b = exact(TINY, dict(inp, topk_idxs=inp["topk_idxs"][:, perm]))
    assert (a - b).abs().max() < 1e-9
