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
