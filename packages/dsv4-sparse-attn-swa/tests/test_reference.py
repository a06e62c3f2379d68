"""Semantics of the golden and of the window index contract."""

import torch

from dsv4_core import TINY
from dsv4_sparse_attn_common.testing import make_attention_inputs, semantic_exact
from dsv4_sparse_attn_swa import build_indices, sparse_attn_swa, update_window_cache
from dsv4_sparse_attn_swa.cases import CASES, call, exact, make_inputs, reference

W = TINY.window


def test_window_rows_partial_window():
    idx = build_indices(torch.tensor([[5]]), config=TINY)
    assert idx.shape == (1, W)
    assert idx[0, -6:-1].tolist() == [0, 1, 2, 3, 4] and idx[0, -1] == W + 0  # itself via the overlay, last
    assert (idx[0, :-6] == -1).all()


def test_window_rows_wrap_and_overlay():
    # MODULES.md §11 example: step positions 130, 131
    idx = build_indices(torch.tensor([[130, 131]]), config=TINY)
    t0, t1 = idx[0].tolist(), idx[1].tolist()
    assert t0[:3] == [3, 4, 5] and t0[-1] == W + 0 and -1 not in t0  # position 3 (slot 3) stays a ring index
    assert t1[0] == 4 and t1[-2:] == [W + 0, W + 1]  # position 130 -> overlay 0, 131 -> overlay 1
    assert len(set(t1)) == W


def test_torch_backend_matches_independent_oracle():
    case = CASES["tiny-wrap-B2S2"]
    inp = make_inputs(case)
    out = call(inp, TINY, "torch")
    oracle = semantic_exact(TINY, inp, compress_ratio=0)
    assert (exact(TINY, inp) - oracle).abs().max() < 1e-9  # same math, independent index handling
    assert (out.double() - oracle).abs().max() < 2 ** -6 * oracle.abs().max()
    assert torch.equal(out, reference(TINY, inp))


def test_step_of_two_equals_two_steps_with_cache_update():
    p = torch.tensor([[200, 201], [3, 4]])
    inp = make_attention_inputs(TINY, p, compress_ratio=0, seed=3)
    both = call(inp, TINY, "torch")
    # first tokens alone, then write them to the ring, then the second tokens alone
    first = {k: v for k, v in inp.items()}
    sel0, sel1 = torch.tensor([0, 2]), torch.tensor([1, 3])
    first.update(positions=p[:, :1], q=inp["q"][sel0], kv=inp["kv"][sel0])
    o0 = call(first, TINY, "torch")
    cache = inp["kv_cache"].clone()
    update_window_cache(cache, inp["block_table"], p[:, :1], inp["kv"][sel0])
    second = dict(inp, positions=p[:, 1:], q=inp["q"][sel1], kv=inp["kv"][sel1], kv_cache=cache)
    o1 = call(second, TINY, "torch")
    tol = 2 ** -7 * both.float().abs().max()  # same rows and order; fp32 summation order may differ
    assert (both[sel0].float() - o0.float()).abs().max() <= tol and (both[sel1].float() - o1.float()).abs().max() <= tol


def test_cache_is_not_written():
    inp = make_inputs(CASES["tiny-wrap-B2S2"])
    before = inp["kv_cache"].clone()
    call(inp, TINY, "torch")
    assert torch.equal(before, inp["kv_cache"])


def test_public_function_signature_example():
    inp = make_inputs(CASES["tiny-partial-B2S1"])
    out = sparse_attn_swa(inp["q"], inp["kv"], inp["kv_cache"], inp["block_table"], inp["positions"],
                          inp["attn_sink"], inp["wo_a"], inp["wo_b"], config=TINY, backend="torch")
    assert out.shape == (2, TINY.hidden_size) and out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
