"""Semantics of the golden and of the HCA index contract."""

import torch

from dsv4_core import TINY
from dsv4_sparse_attn_common.testing import make_attention_inputs, semantic_exact
from dsv4_sparse_attn_hca import build_indices, update_window_cache
from dsv4_sparse_attn_hca.cases import CASES, NEAR_1M, call, exact, make_inputs, reference

W = TINY.window


def test_compressed_columns_follow_the_causal_rule():
    p = torch.tensor([[126, 127], [255, 256]])
    idx = build_indices(p, config=TINY)
    S = 2
    comp = idx[:, W:]
    assert comp.shape[1] == 2  # (256+1)//128
    assert (comp[0] == -1).all()  # position 126 sees no compressed entry
    assert comp[1].tolist() == [W + S + 0, -1]  # 127 closes entry 0 and sees it
    assert comp[2].tolist() == [W + S + 0, W + S + 1] and comp[3].tolist() == [W + S + 0, W + S + 1]


def test_near_1m_grows_without_cap():
    idx = build_indices(torch.tensor([[NEAR_1M, NEAR_1M + 1]]), config=TINY)
    assert idx.shape == (2, W + 8192)
    assert int((idx[0, W:] >= 0).sum()) == 8191 and int((idx[1, W:] >= 0).sum()) == 8192


def test_torch_backend_matches_independent_oracle():
    for name in ("tiny-wrap-B2S2", "tiny-partial-empty-B2S1"):
        inp = make_inputs(CASES[name])
        out = call(inp, TINY, "torch")
        oracle = semantic_exact(TINY, inp, compress_ratio=128)  # every entry c < (p+1)//128
        assert (exact(TINY, inp) - oracle).abs().max() < 1e-9
        assert (out.double() - oracle).abs().max() < 2 ** -6 * oracle.abs().max()
        assert torch.equal(out, reference(TINY, inp))


def test_compressed_entries_matter():
    inp = make_inputs(CASES["tiny-wrap-B2S2"])
    a = call(inp, TINY, "torch")
    cmp2 = inp["cmp_kv"].clone()
    cmp2[int(inp["cmp_block_table"][1, 0]), 3] += 1.0  # entry 3 of request 1 (position 700 sees 5)
    b = call(dict(inp, cmp_kv=cmp2), TINY, "torch")
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2:], b[2:])


def test_step_of_two_equals_two_steps_with_cache_update():
    p = torch.tensor([[300, 301]])
    inp = make_attention_inputs(TINY, p, compress_ratio=128, seed=4)
    both = call(inp, TINY, "torch")
    o0 = call(dict(inp, positions=p[:, :1], q=inp["q"][:1], kv=inp["kv"][:1]), TINY, "torch")
    cache = inp["kv_cache"].clone()
    update_window_cache(cache, inp["block_table"], p[:, :1], inp["kv"][:1])
    o1 = call(dict(inp, positions=p[:, 1:], q=inp["q"][1:], kv=inp["kv"][1:], kv_cache=cache), TINY, "torch")
    tol = 2 ** -7 * both.float().abs().max()  # same rows and order; fp32 summation order may differ
    assert (both[:1].float() - o0.float()).abs().max() <= tol and (both[1:].float() - o1.float()).abs().max() <= tol
