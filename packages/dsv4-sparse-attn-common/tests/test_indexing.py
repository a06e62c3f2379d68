"""The one home of the visibility rule of compressed entries and the layer kinds' index rows."""

import pytest
import torch

from dsv4_core import TINY
from dsv4_sparse_attn_common import (
    causal_topk,
    compressed_indices,
    index_rows,
    visible_entries,
    visible_entry_columns,
    window_indices,
)

W = TINY.window


def test_visible_entries_close_at_the_last_position_of_their_window():
    pos = torch.tensor([0, 2, 3, 4, 7, 126, 127, 128, 255])
    assert visible_entries(pos, 4).tolist() == [0, 0, 1, 1, 2, 31, 32, 32, 64]
    assert visible_entries(pos, 128).tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 2]


def test_causal_topk_keeps_order_and_cuts():
    p = torch.tensor([[302, 303]])  # visible: 75, 76
    tk = torch.tensor([[75, 3, -1, 74], [75, 3, -1, 74]], dtype=torch.int32)
    assert causal_topk(tk, p, compress_ratio=4).tolist() == [[-1, 3, -1, 74], [75, 3, -1, 74]]
    with pytest.raises(ValueError, match="topk_idxs values must be >= -1"):
        causal_topk(tk - 5, p, compress_ratio=4)
    with pytest.raises(ValueError, match=r"topk_idxs must have shape \[2, \*\]"):
        causal_topk(tk[:1], p, compress_ratio=4)


def test_visible_entry_columns_every_entry_in_order():
    ent = visible_entry_columns(torch.tensor([[126, 127], [255, 256]]), compress_ratio=128)
    assert ent.tolist() == [[-1, -1], [0, -1], [0, 1], [0, 1]]


@pytest.mark.parametrize("ratio,topk", [(0, None), (4, torch.tensor([[5, 0], [-1, 1]])), (128, None)])
def test_index_rows_window_then_compressed_columns(ratio, topk):
    p = torch.tensor([[520, 521]])
    idx = index_rows(p, window=W, compress_ratio=ratio, topk_idxs=topk)
    assert torch.equal(idx[:, :W], window_indices(p, W))
    if ratio == 0:
        assert idx.shape == (2, W)
    elif ratio == 4:
        assert idx[:, W:].tolist() == compressed_indices(torch.tensor([[5, 0], [-1, 1]]), W, 2).tolist()
    else:
        assert idx[:, W:].tolist() == [[W + 2 + 0, W + 2 + 1, W + 2 + 2, W + 2 + 3]] * 2  # (521+1)//128 = 4


def test_index_rows_topk_only_for_csa():
    p = torch.tensor([[10, 11]])
    with pytest.raises(ValueError, match="topk_idxs is required"):
        index_rows(p, window=W, compress_ratio=4)
    with pytest.raises(ValueError, match="only taken by CSA"):
        index_rows(p, window=W, compress_ratio=128, topk_idxs=torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="compress_ratio must be 0, 4 or 128"):
        index_rows(p, window=W, compress_ratio=8)


def test_the_ring_write_back_refuses_bad_input_before_writing():
    import pytest

    from dsv4_sparse_attn_common import write_window_cache

    W, D = 8, 16
    cache = torch.randn(4, W, D).bfloat16()
    before = cache.clone()
    pos = torch.tensor([[5, 6], [9, 10]])
    kv = torch.randn(4, D).bfloat16()
    pages = torch.tensor([1, 3])
    bad = [
        (dict(ring_pages=torch.tensor([1, -1])), ValueError, r"block_table values must be ring pages in \[0, 4\), got -1"),
        (dict(ring_pages=torch.tensor([1, 4])), ValueError, "got 4"),
        (dict(ring_pages=torch.tensor([2, 2])), ValueError, "two requests share a ring page"),
        (dict(ring_pages=torch.tensor([1])), ValueError, "one ring page per request"),
        (dict(kv=kv[:3]), ValueError, r"kv must have shape \[4, 16\]"),
        (dict(kv=kv.float()), ValueError, "kv must match kv_cache's dtype"),
        (dict(positions=pos.float()), TypeError, "positions must be an int32 / int64 tensor"),
        (dict(positions=torch.tensor([[5, 7], [9, 10]])), ValueError, "consecutive positions"),
        (dict(positions=torch.tensor([[-1, 0], [9, 10]])), ValueError, "positions must be >= 0"),
        (dict(ring_pages=pages.float()), TypeError, "block_table must be an int32 / int64 tensor"),
    ]
    for change, exc, match in bad:
        args = dict(kv_cache=cache, ring_pages=pages, positions=pos, kv=kv) | change
        with pytest.raises(exc, match=match):
            write_window_cache(**args)
        assert torch.equal(cache, before), change
    write_window_cache(cache, pages, pos, kv)
    assert torch.equal(cache[1, 5], kv[0]) and torch.equal(cache[3, 10 % W], kv[3])
    assert torch.equal(cache[0], before[0]) and torch.equal(cache[2], before[2])


def test_unchecked_rows_and_rope_match_the_checked_ones():
    """validate=False's host pieces (nothing read back) equal validate=True's where the
    widths agree: window rows, CSA rows (the causal cut is the kernel's there, so only the
    visible picks are compared), HCA rows up to the most visible entries, RoPE rows."""
    from dsv4_core import TINY
    from dsv4_rope_tables import profile_for_ratio, rope_rows
    from dsv4_sparse_attn_common import index_rows_unchecked, rope_rows_unchecked, window_rows

    W = TINY.window
    p = torch.tensor([[130, 131], [700, 701]])
    assert torch.equal(window_rows(p, W), window_indices(p, W))
    tk = torch.tensor([[3, -1, 170], [3, 175, -1], [0, 1, 2], [-1, -1, 175]], dtype=torch.int32)
    a = index_rows(p, window=W, compress_ratio=4, topk_idxs=tk)
    b = index_rows_unchecked(p, window=W, compress_ratio=4, topk_idxs=tk)
    vis = (a >= 0) | (b < 0)
    assert torch.equal(a[vis], b[vis]) and (a[~vis] == -1).all()  # b keeps the picks the kernel cuts
    h = index_rows(p, window=W, compress_ratio=128)
    hu = index_rows_unchecked(p, window=W, compress_ratio=128, cmp_capacity=256)
    assert hu.shape[1] == W + 256 and torch.equal(h[h >= 0], hu[:, :h.shape[1]][h >= 0])
    for ratio in (0, 4):
        prof = profile_for_ratio(TINY, ratio)
        c0, s0 = rope_rows(prof, p.reshape(-1))
        c1, s1 = rope_rows_unchecked(prof, p)
        assert torch.equal(c0, c1) and torch.equal(s0, s1)


def test_token_meta_from_shapes():
    from dsv4_core import TINY
    from dsv4_sparse_attn_common import KernelInputs, token_meta

    W, D = TINY.window, 512
    p = torch.tensor([[600, 601], [8, 9]])
    ki = KernelInputs(kv=torch.zeros(4, D), kv_cache=torch.zeros(3, W, D), block_table=torch.tensor([2, 0]),
                      positions=p, indices=torch.zeros(4, W, dtype=torch.int32), compress_ratio=4,
                      cmp_kv=torch.zeros(5, 128, D), cmp_block_table=torch.zeros(2, 2, dtype=torch.int32),
                      cos=None, sin=None)
    req, meta = token_meta(ki, 8, "cpu")
    assert req.tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert meta[:4, 0].tolist() == [0, 0, 2, 2] and meta[:4, 1].tolist() == [0, 1, 0, 1]
    assert meta[:4, 2].tolist() == [150, 150, 2, 2] and (meta[4:, 2] == 0).all()
    assert (meta[:, 3] == 3 * W).all() and (meta[:, 4] == 5).all() and (meta[:, 5] == W + 2).all()
