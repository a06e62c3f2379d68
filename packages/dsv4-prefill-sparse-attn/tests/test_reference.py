"""Semantics of the golden and of the prefill index contract (rows + lengths)."""

import pytest
import torch

from dsv4_core import TINY
from dsv4_prefill_sparse_attn import build_indices, chunk_positions, update_window_cache
from dsv4_prefill_sparse_attn.cases import CASES, call, make_inputs
from dsv4_prefill_sparse_attn.reference import prefill_exact, prefill_reference
from dsv4_sparse_attn_common.testing import make_attention_inputs, semantic_exact

W = TINY.window


def test_rows_and_lengths_swa_from_zero():
    idx, lens = build_indices(0, 5, compress_ratio=0, config=TINY)
    assert lens.tolist() == [1, 2, 3, 4, 5] and idx.shape == (5, 5)
    assert idx[4].tolist() == [W + 0, W + 1, W + 2, W + 3, W + 4]  # the chunk's own tokens
    assert idx[0, 1:].tolist() == [-1] * 4


def test_rows_history_from_ring_and_hca_entries():
    idx, lens = build_indices(250, 8, compress_ratio=128, config=TINY)  # positions 250..257
    T = 8
    assert (lens == torch.tensor([W + 1] * 5 + [W + 2] * 3)).all()  # 255 closes entry 1 and sees it
    assert idx[0, 0] == 123 % W and idx[0, W - 1] == W + 0  # oldest: position 123 in ring slot 123
    assert idx[0, W] == W + T + 0 and idx[7, W:W + 2].tolist() == [W + T + 0, W + T + 1]


def test_csa_rows_keep_order_and_cut():
    tk = torch.tensor([[5, 39, -1, 1], [39, 5, 2, -1]])
    idx, lens = build_indices(158, 2, compress_ratio=4, config=TINY, topk_idxs=tk)  # visible 39, 40
    T = 2
    assert idx[0, W:].tolist() == [W + T + 5, W + T + 1, -1]  # entry 39 closes at 159: cut for 158
    assert idx[1, W:].tolist() == [W + T + 39, W + T + 5, W + T + 2] and lens.tolist() == [W + 2, W + 3]


def test_contract_errors():
    with pytest.raises(ValueError, match="topk_idxs is required"):
        build_indices(10, 2, compress_ratio=4, config=TINY)
    with pytest.raises(ValueError, match="only taken by CSA"):
        build_indices(10, 2, compress_ratio=128, config=TINY, topk_idxs=torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="start_pos must be an int >= 0"):
        chunk_positions(-1, 3)


@pytest.mark.parametrize("name,ratio", [("tiny-swa-wrap-T12", 0), ("tiny-hca-T12", 128), ("tiny-csa-fewer-T12", 4),
                                        ("tiny-csa-start0-T10", 4), ("tiny-csa-runs-T40", 4)])
def test_torch_backend_matches_independent_oracle(name, ratio):
    inp = make_inputs(CASES[name])
    out = call(inp, TINY, "torch")
    p = chunk_positions(inp["start_pos"], inp["q"].shape[0])
    assert torch.equal(inp["positions"], p)  # the oracle reads the chunk's positions from the inputs
    oracle = semantic_exact(TINY, inp, compress_ratio=ratio)
    assert (prefill_exact(TINY, inp) - oracle).abs().max() < 1e-9
    assert (out.double() - oracle).abs().max() < 2 ** -6 * oracle.abs().max()
    assert torch.equal(out, prefill_reference(TINY, inp))


def test_chunked_prefill_equals_one_chunk():
    """Two chunks with the ring written in between give the same rows as one chunk."""
    case = CASES["tiny-swa-wrap-T12"]
    inp = make_inputs(case)
    full = call(inp, TINY, "torch")
    a = dict(inp, q=inp["q"][:5], kv=inp["kv"][:5])
    oa = call(a, TINY, "torch")
    cache = inp["kv_cache"].clone()
    update_window_cache(cache, inp["block_table"], inp["start_pos"], inp["kv"][:5])
    b = dict(inp, q=inp["q"][5:], kv=inp["kv"][5:], kv_cache=cache, start_pos=inp["start_pos"] + 5)
    ob = call(b, TINY, "torch")
    # same rows in the same order; only fp32 summation order (batch shapes) may differ
    tol = 2 ** -7 * full.float().abs().max()
    assert (full[:5].float() - oa.float()).abs().max() <= tol and (full[5:].float() - ob.float()).abs().max() <= tol


def test_decode_is_a_chunk_of_one():
    p = torch.tensor([[777]])
    inp = make_attention_inputs(TINY, p, compress_ratio=128, seed=9)
    inp.update(start_pos=777, compress_ratio=128, cmp_block_table=inp["cmp_block_table"][0])
    out = call(inp, TINY, "torch")
    assert out.shape == (1, TINY.hidden_size) and torch.isfinite(out.float()).all()
