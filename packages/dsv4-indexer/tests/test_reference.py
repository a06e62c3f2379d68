"""Semantics of the golden: the dense fp64 formulation, the Hadamard, RoPE at each token's
own position, the causal cut and the selection, and the comparators on perturbed outputs."""

import pytest
import torch

from dsv4_compressor_common.indexer.host import rope_rows_on_device
from dsv4_compressor_common.indexer.reference import (
    dense_exact,
    hadamard,
    hadamard_matrix,
    index_queries,
    index_scores_reference,
    indexer_reference,
    score_matrix,
    select_topk_reference,
    visible_entries,
    walsh_hadamard_fwht,
)
from dsv4_compressor_common.testing.indexer import CacheSpec, make_cache, make_tokens, make_weights
from dsv4_core import TINY
from dsv4_core.compare import compare, compare_topk
from dsv4_indexer import indexer
from dsv4_indexer.cases import CASES, make_inputs


def _pipeline(inp, dtype):
    q, w = index_queries(TINY, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["cos"], inp["sin"],
                         dtype=dtype)
    return index_scores_reference(q, w, inp["positions"], inp["cache"], inp["table"], dtype=dtype)


@pytest.mark.parametrize("name", ["tiny-fewer-B2S2", "tiny-S8-B1", "tiny-early-B3S2"])
def test_golden_agrees_with_dense_fp64(name):
    inp = make_inputs(CASES[name])
    dense = dense_exact(TINY, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"], inp["cache"],
                        inp["table"], inp["cos"], inp["sin"])
    exact = _pipeline(inp, torch.float64)
    assert torch.equal(torch.isfinite(dense), torch.isfinite(exact))
    fin = torch.isfinite(dense)
    scale = float(dense[fin].abs().max()) if fin.any() else 1.0
    assert (exact[fin] - dense[fin]).abs().max() <= 1e-9 * scale
    gold = _pipeline(inp, torch.float32)
    assert torch.equal(torch.isfinite(gold), fin)
    assert (gold[fin].double() - dense[fin]).abs().max() <= 2 ** -6 * scale  # bf16 rounding points only
    picks, _ = indexer_reference(TINY, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"],
                                 inp["cache"], inp["table"], inp["cos"], inp["sin"], dtype=torch.float64)
    assert compare_topk(picks, select_topk_reference(dense, TINY.index_topk), dense).ok


def test_hadamard_is_orthonormal_and_matches_the_butterfly():
    h = hadamard_matrix(128, torch.float64)
    assert torch.equal(h, h.T) and torch.equal(h @ h, 128 * torch.eye(128, dtype=torch.float64))
    x = torch.randn(5, 3, 128, dtype=torch.float64)
    assert (hadamard(x, dtype=torch.float64) - walsh_hadamard_fwht(x)).abs().max() < 1e-12
    with pytest.raises(ValueError, match="power-of-two"):
        hadamard_matrix(96)


def test_hadamard_on_both_sides_changes_nothing_on_one_side_changes_picks():
    g = torch.Generator().manual_seed(3)
    S, H, D, n, k = 2, 8, 128, 200, 16
    q = torch.randn(S, H, D, generator=g, dtype=torch.float64)
    w = torch.randn(S, H, generator=g, dtype=torch.float64)
    keys = torch.randn(n, D, generator=g, dtype=torch.float64)
    plain = score_matrix(q, w, keys)
    rotated = score_matrix(walsh_hadamard_fwht(q), w, walsh_hadamard_fwht(keys))
    assert (plain - rotated).abs().max() <= 1e-10 * plain.abs().max()
    assert torch.equal(select_topk_reference(plain, k), select_topk_reference(rotated, k))
    one_side = score_matrix(walsh_hadamard_fwht(q), w, keys)
    for row in range(S):
        assert set(select_topk_reference(one_side, k)[row].tolist()) != set(select_topk_reference(plain, k)[row].tolist())


def test_queries_rotate_at_each_tokens_own_position():
    inp = make_inputs(CASES["tiny-S8-B1"])
    p = inp["positions"]
    first = p[:, :1].expand_as(p)  # the step's first position for every token (pypto-lib's shortcut)
    cos, sin = rope_rows_on_device(TINY, first, True)
    ours = _pipeline(inp, torch.float64)
    shortcut = _pipeline(dict(inp, cos=cos, sin=sin), torch.float64)
    fin = torch.isfinite(ours)
    assert (ours[0][fin[0]] - shortcut[0][fin[0]]).abs().max() == 0  # token 0 sits at the first position
    assert not compare(shortcut[1:][fin[1:]], ours[1:][fin[1:]], ours[1:][fin[1:]].float().double(),
                       name="scores").ok


def test_causal_cut_per_token_inside_a_step():
    inp = make_inputs(CASES["tiny-S8-B1"])  # positions 250..257: visible 62, 63, 63, 63, 63, 64, 64, 64
    scores = _pipeline(inp, torch.float32)
    vis = visible_entries(inp["positions"]).reshape(-1)
    assert vis.tolist() == [62, 63, 63, 63, 63, 64, 64, 64]
    for t, v in enumerate(vis.tolist()):
        assert torch.isfinite(scores[t, :v]).all() and torch.isinf(scores[t, v:]).all()
    picks = select_topk_reference(scores, TINY.index_topk)
    assert (picks < vis[:, None]).all() and (picks >= 0).all()


def test_positions_below_four_see_nothing_and_fewer_candidates_pad():
    inp = make_inputs(CASES["tiny-early-B3S2"])  # positions 0,1 | 2,3 | 9,10
    picks, _ = indexer_reference(TINY, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"],
                                 inp["cache"], inp["table"], inp["cos"], inp["sin"])
    assert (picks[:3] == -1).all()
    assert picks[3, 0] == 0 and (picks[3, 1:] == -1).all()  # position 3 closes entry 0
    assert sorted(picks[4, :2].tolist()) == [0, 1] and (picks[4, 2:] == -1).all()


def test_ties_go_to_the_lower_entry_and_order_is_descending():
    s = torch.tensor([[1.0, 3.0, 3.0, 2.0, float("-inf"), 3.0]])
    assert select_topk_reference(s, 4).tolist() == [[1, 2, 5, 3]]
    assert select_topk_reference(s, 8).tolist() == [[1, 2, 5, 3, 0, -1, -1, -1]]


def test_nan_in_unreferenced_rows_never_reaches_an_output():
    inp = make_inputs(CASES["tiny-fewer-B2S2"])
    assert torch.isnan(inp["cache"].float()).any()  # spare pages and rows past the visible entries
    scores = _pipeline(inp, torch.float32)
    assert not torch.isnan(scores).any()
    picks = select_topk_reference(scores, TINY.index_topk)
    vis = visible_entries(inp["positions"]).reshape(-1)
    assert ((picks >= 0).sum(1) == vis.clamp(max=TINY.index_topk)).all()


def test_minus_one_page_selects_nothing():
    g = torch.Generator().manual_seed(0)
    pos = torch.tensor([[200, 201]])
    cache, table = make_cache(TINY, [50], CacheSpec(), g)
    table[0, 1] = -1  # entries 16..31 have no page
    t = make_tokens(TINY, 2, g)
    w = make_weights(TINY, g)
    cos, sin = rope_rows_on_device(TINY, pos, True)
    q, wt = index_queries(TINY, t["x"], t["qr"], w["wq_b"], w["weights_proj"], cos, sin)
    scores = index_scores_reference(q, wt, pos, cache, table)
    assert torch.isinf(scores[:, 16:32]).all() and torch.isfinite(scores[:, :16]).all()


def test_torch_backend_is_the_golden_pipeline():
    inp = make_inputs(CASES["tiny-many-B2S1"])
    got = indexer(inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"], inp["cache"],
                  inp["table"], config=TINY, backend="torch")
    want, _ = indexer_reference(TINY, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"],
                                inp["cache"], inp["table"], inp["cos"], inp["sin"])
    assert got.dtype == torch.int32 and torch.equal(got, want)
    fast = indexer(inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"], inp["cache"],
                   inp["table"], config=TINY, backend="torch", validate=False)
    assert torch.equal(fast, want)


def test_comparators_fail_on_perturbed_outputs():
    inp = make_inputs(CASES["tiny-many-B2S1"])
    s32, s64 = _pipeline(inp, torch.float32), _pipeline(inp, torch.float64)
    fin = torch.isfinite(s64)
    assert compare(s32[fin], s64[fin], s32[fin]).ok
    bad = s32.clone()
    bad[fin] *= 1.01
    assert not compare(bad[fin], s64[fin], s32[fin]).ok
    picks = select_topk_reference(s32, TINY.index_topk)
    assert compare_topk(picks, picks, s64).ok
    swapped = picks.clone()
    worst = torch.sort(s64[0], descending=True).indices[TINY.index_topk + 5]  # clearly below the k-th
    swapped[0, -1] = worst
    assert not compare_topk(swapped, picks, s64).ok
    dropped = picks.clone()
    dropped[1, 3] = -1
    assert not compare_topk(dropped, picks, s64).ok
