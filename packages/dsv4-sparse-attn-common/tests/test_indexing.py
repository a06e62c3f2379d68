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
    window_columns,
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


@pytest.mark.parametrize("positions,group", [([[520, 521]], 2), ([[5, 6], [300, 301]], 2), ([[3, 4, 5, 6, 7]], 4),
                                             ([list(range(120, 140))], 16), ([list(range(0, 20))], 8)])
def test_runs_share_one_window_layout_with_each_tokens_own_rows(positions, group):
    """index rows with group > 1: each token sees exactly the window positions of the
    per-token layout, and within a run every column holds one id or −1 (its union is
    what the kernel gathers once)."""
    p = torch.tensor(positions)
    per_token = window_indices(p, W)
    runs = window_indices(p, W, group)
    assert runs.shape == (p.numel(), W - 1 + group)
    for t in range(p.numel()):
        assert sorted(runs[t][runs[t] >= 0].tolist()) == sorted(per_token[t][per_token[t] >= 0].tolist())
    S = p.shape[1]
    for b in range(p.shape[0]):
        for s0 in range(0, S, group):
            run = runs[b * S + s0:b * S + min(S, s0 + group)]
            top = run.amax(0)
            assert ((run == top) | (run == -1)).all()
    assert torch.equal(index_rows(p, window=W, compress_ratio=0, group=group), runs)


@pytest.mark.parametrize("group", [2, 16])
def test_csa_runs_share_the_window_and_keep_each_tokens_top_k(group):
    """A CSA run's rows: the run's window layout padded with −1 to `window_span`, then each
    token's own top-k columns, the same as in its per-token row."""
    from dsv4_sparse_attn_common import index_rows_unchecked, window_span

    p = torch.arange(3000, 3000 + 2 * group).reshape(1, -1)
    T = p.numel()
    tk = torch.randint(-1, 700, (T, 5), dtype=torch.int32)
    ws = window_span(W, group, 4)
    assert ws % 64 == 0 and ws >= window_columns(W, group) and window_span(W, group, 128) == window_columns(W, group)
    assert window_span(W, 1, 4) == W
    rows = index_rows(p, window=W, compress_ratio=4, topk_idxs=tk, group=group)
    per_token = index_rows(p, window=W, compress_ratio=4, topk_idxs=tk)
    assert rows.shape == (T, ws + 5)
    assert torch.equal(rows[:, :window_columns(W, group)], window_indices(p, W, group))
    assert (rows[:, window_columns(W, group):ws] == -1).all()
    assert torch.equal(rows[:, ws:], per_token[:, W:])
    for t in range(T):  # the same entries as the token's own row
        assert sorted(rows[t][rows[t] >= 0].tolist()) == sorted(per_token[t][per_token[t] >= 0].tolist())
    un = index_rows_unchecked(p, window=W, compress_ratio=4, topk_idxs=tk, group=group)
    assert un.shape == rows.shape and torch.equal(un[:, :ws], rows[:, :ws])


def test_unchecked_runs_match_the_checked_ones():
    from dsv4_sparse_attn_common import index_rows_unchecked

    p = torch.tensor([[700, 701], [9, 10]])
    h = index_rows(p, window=W, compress_ratio=128, group=2)
    hu = index_rows_unchecked(p, window=W, compress_ratio=128, cmp_capacity=64, group=2)
    assert hu.shape[1] == W + 1 + 64 and torch.equal(h[h >= 0], hu[:, :h.shape[1]][h >= 0])


def test_share_group_runs_stay_inside_a_request():
    from dsv4_sparse_attn_common import share_group

    assert share_group(128, 64, 2) == 2  # decode: a request's S tokens
    assert share_group(128, 4, 4) == 4
    assert share_group(128, 1, 1024) == 16  # a prefill chunk: one attention tile per run
    assert share_group(0, 1, 1024) == 16
    assert share_group(128, 3, 3) == 1  # 3 does not divide the 16-token tile
    assert share_group(0, 64, 2) == 1  # SWA decode: per token (a run's window pads wider)
    assert share_group(4, 1, 1024) == 16  # a CSA chunk's runs share the window (top-k per token)
    assert share_group(4, 64, 2) == 1  # CSA decode: per token
    assert share_group(4, 1, 2) == 1 and share_group(4, 1, 12) == 1  # shorter than a tile
    assert share_group(4, 1, 40) == 16
    assert share_group(128, 64, 1) == 1


def test_group_meta_is_each_runs_union():
    from dsv4_sparse_attn_common import group_meta

    idx = torch.tensor([[5, -1, 7], [-1, 6, 7], [1, 2, -1], [-1, -1, -1]], dtype=torch.int32)
    req = torch.tensor([3, 3, 0, 0], dtype=torch.int32)
    meta = torch.tensor([[6.0, 0.0], [6.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).repeat(1, 4)
    gi, gr, gm = group_meta(idx, req, meta, 2)
    assert gi.tolist() == [[5, 6, 7], [1, 2, -1]] and gr.tolist() == [3, 0]
    assert gm[:, :2].tolist() == [[6.0, 1.0], [0.0, 0.0]]


def test_gathered_bytes_count_a_runs_rows_once():
    from dsv4_core import FLASH
    from dsv4_sparse_attn_common import gathered_bytes

    W, D = FLASH.window, FLASH.head_dim
    per_token = gathered_bytes(FLASH, 128, W + 512)  # 640 columns: 2·W window rows + 512
    assert per_token == 2 * 128 * (2 * W + 512) * D
    runs = gathered_bytes(FLASH, 128, W + 1 + 512, group=2)  # 641 → 704 columns per run of 2
    assert runs == 2 * 64 * (2 * (W + 1) + 704 - (W + 1)) * D
    assert runs < per_token
    # a decode step of S = 2: the step's kv gathered for the last 16 window columns only
    assert gathered_bytes(FLASH, 128, W + 512, step_tokens=2) == 2 * 128 * (640 + 16) * D
    assert gathered_bytes(FLASH, 128, W, compressed=False, step_tokens=2) == 2 * 128 * (W + 16) * D
    assert gathered_bytes(FLASH, 128, W + 1 + 512, group=2, step_tokens=2) == 2 * 64 * (704 + 17) * D
    # PRO CSA decode (128 heads, two row tiles) keeps the two-source window (`step_split`)
    from dsv4_core import PRO

    assert gathered_bytes(PRO, 128, W + 1024, step_tokens=2) == 2 * 128 * (1152 + W) * D
    # a prefill chunk longer than the window: every window column reads both sources
    assert gathered_bytes(FLASH, 1024, W + 15, compressed=False, group=16, step_tokens=1024) \
        == 2 * 64 * (192 + 192) * D
    # a CSA chunk: each run's window (143 columns padded to 192) from both sources once,
    # each token's 512 top-k columns on its own
    csa = gathered_bytes(FLASH, 1024, 192 + 512, group=16, step_tokens=1024, per_token_compressed=True)
    assert csa == 2 * (64 * 2 * 192 + 1024 * 512) * D
    assert csa < gathered_bytes(FLASH, 1024, W + 512, step_tokens=1024)


def test_paged_gathered_bytes_count_the_compressed_columns_only():
    from dsv4_core import FLASH
    from dsv4_sparse_attn_common import gathered_bytes

    W, D = FLASH.window, FLASH.head_dim
    # SWA decode, paged: the window (ring page and step rows) is read in place
    assert gathered_bytes(FLASH, 128, W + 2, compressed=False, group=2, step_tokens=2, paged=True) == 0.0
    # HCA decode at 64K, runs of 2: W + 2 window columns, then 512 entries → 672-column tiles
    assert gathered_bytes(FLASH, 128, W + 2 + 512, group=2, step_tokens=2, paged=True) == 2 * 64 * (672 - 130) * D


def _taken_rows(idx, positions, pages, P):
    """Each token's sorted physical rows of `resolve_rows` (the golden's one KV source)."""
    from dsv4_sparse_attn_common import resolve_rows

    rows = resolve_rows(idx, positions, window=W, ring_pages=pages, num_ring_pages=P)
    return [sorted(r[r >= 0].tolist()) for r in rows]


@pytest.mark.parametrize("pos0,S", [((0, 5), 1), ((3, 126), 2), ((127, 400), 2), ((129, 1000), 3), ((7,), 4)])
def test_paged_window_rows_take_the_same_rows_as_the_window_rows(pos0, S):
    """The ring page's order takes, token by token, exactly the rows of `window_indices`:
    the same positions (young requests, wrap-around, a step of several tokens)."""
    from dsv4_sparse_attn_common import paged_window_rows

    p = torch.tensor(pos0)[:, None] + torch.arange(S)[None, :]
    B = p.shape[0]
    pages = torch.arange(B).flip(0) + 1
    P = B + 2
    paged = paged_window_rows(p, W)
    assert paged.shape == (B * S, W + S) and paged.dtype == torch.int32
    assert _taken_rows(paged, p, pages, P) == _taken_rows(window_indices(p, W), p, pages, P)
    # a perturbed layout (one slot too many) is told apart
    bad = paged.clone()
    bad[0, (int(p[0, 0]) % W)] = int(p[0, 0]) % W
    assert _taken_rows(bad, p, pages, P) != _taken_rows(window_indices(p, W), p, pages, P)


def test_paged_rows_share_a_run_and_tile_to_32():
    from dsv4_sparse_attn_common import kv_tile, share_group

    assert share_group(0, 64, 2) == 1 and share_group(0, 64, 2, paged=True) == 2  # SWA decode runs when paged
    assert share_group(128, 64, 2, paged=True) == 2
    assert kv_tile(W + 2) == 192 and kv_tile(W + 2, paged=True) == 160
    assert index_rows(torch.tensor([[300, 301]]), window=W, compress_ratio=0, paged=True).shape == (2, W + 2)


def test_window_masks_select_by_page_and_slot():
    """The paged masks: a ring slot where the request's page is in the cache, a step token
    up to the token's own slot; a run's union over its tokens; −1e30 bias elsewhere."""
    from dsv4_sparse_attn_common import paged_window_rows
    from dsv4_sparse_attn_common.kernel import M_SLOT, META_COLS, window_masks

    p = torch.tensor([[200, 201], [300, 301]])
    idx = paged_window_rows(p, W)
    req = torch.tensor([0, 0, 1, 1], dtype=torch.int32)
    meta = torch.zeros(4, META_COLS)
    meta[:, M_SLOT] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    bt = torch.tensor([[3], [-1]], dtype=torch.int32)  # request 1's page is outside the cache
    keep, bias = window_masks(idx, req, meta, bt, 4, W, 2)
    assert keep.shape == (2, W + 2, 1) and bias.shape == (4, W + 2)
    taken = bias == 0
    assert torch.equal(taken[:2], idx[:2] >= 0)  # request 0: every id it holds
    assert not taken[2:, :W].any() and taken[3, W:].all() and taken[2, W] and not taken[2, W + 1]
    assert torch.equal(keep[0, :, 0] > 0, taken[0] | taken[1]) and torch.equal(keep[1, :, 0] > 0, taken[2] | taken[3])
    assert (bias[~taken] == -1e30).all()
