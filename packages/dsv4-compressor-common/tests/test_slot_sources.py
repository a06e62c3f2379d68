"""Which sources the pool kernel gathers a window's slots from (`kernel.tok_slots`,
`kernel.reads_state`), which windows it reads as views of this call's rows instead
(`kernel.reads_views`), and the bytes the bench charges for the gathers
(`gathered_slot_bytes`), checked against the window geometry the host plans
(`device.kernel_meta`)."""

import pytest
import torch

from dsv4_compressor_common.device import kernel_meta
from dsv4_compressor_common.kernel import (
    gathered_slot_bytes,
    gathered_windows,
    padded_windows,
    reads_state,
    reads_views,
    rows_buffer,
    state_windows,
    tok_slots,
)
from dsv4_compressor_common.pooling import coff, window_size


def _meta(ratio: int, starts: list[int], seq: int):
    B, page = len(starts), 8
    pages = -(-(max(starts) + seq) // page) + 1
    table = torch.arange(B * pages, dtype=torch.int64).reshape(B, pages)
    return kernel_meta(ratio, 16, torch.tensor(starts), seq, table, torch.zeros(B, seq, dtype=torch.int64),
                       state_blocks=B * pages, state_page=page, cmp_rows_total=64)


@pytest.mark.parametrize("ratio", [4, 128])
@pytest.mark.parametrize("seq", [1, 2, 5, 9, 130])
@pytest.mark.parametrize("starts", [[0], [3], [6, 127], [128, 517]])
def test_this_calls_rows_fill_only_a_windows_last_tok_slots(ratio, seq, starts):
    m = _meta(ratio, starts, seq)
    W, K = window_size(ratio), tok_slots(ratio, seq)
    from_tok = (m.valid > 0) & (m.from_state == 0)
    assert not from_tok[:, : W - K].any()  # the kernel gathers this call's rows for the last K slots only
    if seq < W:
        assert K == seq


@pytest.mark.parametrize("ratio", [4, 128])
@pytest.mark.parametrize("start", [0, 1, 3, 4, 6, 127, 128, 130, 256, 65536])
@pytest.mark.parametrize("seq", [1, 37, 600])
def test_reads_state_is_false_only_when_no_slot_precedes_the_call(ratio, start, seq):
    m = _meta(ratio, [start], seq)
    any_state = bool((m.from_state > 0).any())
    if not reads_state(ratio, start):
        assert not any_state
    # and it is not needlessly true where a window does reach before the call
    closer = start + (ratio - 1 - start % ratio) % ratio
    assert reads_state(ratio, start) == (start > 0 and closer - window_size(ratio) + 1 < start)
    assert reads_state(ratio, None)  # decode: the host does not know the starts


def test_reads_state_at_window_starts():
    assert not reads_state(128, 0) and not reads_state(128, 65536)
    assert reads_state(128, 5) and reads_state(4, 4) and reads_state(4, 65536)  # ratio 4 overlaps the previous window
    assert not reads_state(4, 0)


def test_gathered_slot_bytes_counts_both_sources_where_both_are_gathered():
    d, n = 512, 64
    assert gathered_slot_bytes(128, d, n, 2) == 0  # decode at ratio 128: each window one view of the state
    assert gathered_slot_bytes(4, d, n, 2) == 4 * n * 8 * d * 2  # decode at ratio 4: every slot from the state
    # prefill from 3: the first tile's windows from both sources (the state's 128 and this call's last 128)
    assert gathered_slot_bytes(128, d, 8, 1024, 3, tile=8) == 4 * 8 * (128 + 128) * d * 2
    assert gathered_slot_bytes(128, d, 8, 1024, 0) == 0  # from 0: every window a view
    # prefill at 517: the first window tile from both sources, the others from this call's rows
    assert gathered_slot_bytes(4, d, 256, 1024, 517, tile=32) == 4 * (256 * 8 + 32 * 8) * d * 2
    # at 64K (a window boundary): the first tile alone is gathered, the others are views
    assert gathered_slot_bytes(4, d, 256, 1024, 65536, tile=32) == 4 * (32 * 8 + 32 * 8) * d * 2
    assert gathered_slot_bytes(4, d, 256, 1024, 0, tile=32) == 4 * 32 * 8 * d * 2
    assert gathered_slot_bytes(4, d, 64, 2, None, tile=16) == gathered_slot_bytes(4, d, 64, 2)  # decode: every window


@pytest.mark.parametrize("ratio", [4, 128])
@pytest.mark.parametrize("start", [1, 3, 4, 6, 125, 130, 517, 65536])
@pytest.mark.parametrize("seq", [1, 37, 600])
def test_a_prefill_chunk_reads_the_state_in_its_first_window_tile_only(ratio, start, seq):
    m = _meta(ratio, [start], seq)
    reading = (m.from_state > 0).any(1).nonzero().flatten().tolist()
    assert all(w < 2 for w in reading)  # one of the chunk's first two windows
    tile = 8  # the smallest pool tile
    assert len(reading) <= state_windows(ratio, m.windows, tile, start)
    assert state_windows(ratio, m.windows, tile, None) == m.windows


def test_padded_windows():
    assert [padded_windows(n, 8) for n in (1, 8, 9, 16)] == [8, 8, 16, 16]


def test_reads_views_only_for_a_prefill_chunk_on_a_window_boundary():
    assert reads_views(128, 0, 1, 8) and reads_views(128, 65536, 8, 8)
    assert reads_views(4, 0, 256, 32) and reads_views(4, 65536, 33, 32)
    assert not reads_views(4, 0, 32, 32)  # ratio 4 gathers its first tile: one tile, no view
    assert not reads_views(4, None, 256, 32) and not reads_views(128, None, 8, 8)  # decode
    assert not reads_views(4, 6, 256, 32) and not reads_views(128, 517, 8, 8)
    assert gathered_windows(4, 256, 32, 0) == 32 and gathered_windows(128, 8, 8, 0) == 0
    assert gathered_windows(4, 256, 32, 517) == 256 and gathered_windows(4, 256, 32, None) == 256


@pytest.mark.parametrize("ratio", [4, 128])
@pytest.mark.parametrize("start", [0, 8, 128, 256, 65536])
@pytest.mark.parametrize("seq", [37, 98, 256, 600])
def test_views_read_the_slots_the_host_plans(ratio, start, seq):
    """A window read as views (every window at ratio 128, those past the first tile at ratio
    4) has exactly the slots of the kernel's block views, all of this call's rows: slot w of
    window k is the chunk of token ratio·k + w (ratio 128), or token 4(k − 1) + w's front half
    (w < 4) and token 4k + w − 4's back half (ratio 4); a candidate that does not close has
    no valid slot; the buffers hold every block a view reads."""
    tile = 8
    m = _meta(ratio, [start], seq)
    if not reads_views(ratio, start, m.windows, tile):
        assert start % ratio or (ratio == 4 and padded_windows(m.windows, tile) == tile)
        return
    W, CO = window_size(ratio), coff(ratio)
    first = gathered_windows(ratio, m.windows, tile, start)
    k = torch.arange(first, m.windows)[:, None]
    w = torch.arange(W)[None, :]
    if ratio == 4:
        want = torch.where(w < 4, (4 * (k - 1) + w) * CO, (4 * k + w - 4) * CO + 1)
    else:
        want = ratio * k + w
    valid = m.valid[first:] > 0
    closed = m.win_tok[first:] < seq
    assert torch.equal(valid, closed[:, None].expand_as(valid))  # a closing window: every slot
    assert not (m.from_state[first:] > 0).any()
    assert torch.equal(m.tok[first:].to(torch.int64)[valid], want.expand_as(valid)[valid])
    rows = rows_buffer(ratio, seq, m.windows, tile, start)
    assert rows % ratio == 0 and rows // ratio >= padded_windows(m.windows, tile) and rows >= seq


@pytest.mark.parametrize("ratio", [4, 128])
@pytest.mark.parametrize("tokens", [1, 3, 128, 130])
@pytest.mark.parametrize("windows", [1, 9, 64])
def test_rows_buffer_holds_the_call_only_where_no_view_reads(ratio, tokens, windows):
    """Where the pool kernel gathers (decode: `first_pos` unknown, or a chunk off a window
    boundary) the rows buffers hold the call's tokens in whole blocks and nothing more: a
    decode call's closing windows are not its blocks, so padding to them would only add
    bytes the host allocates (64 ratio-128 windows: 8192 rows for a 128-token step)."""
    tile = 8
    for first_pos in (None, 1):
        assert not reads_views(ratio, first_pos, windows, tile)
        assert rows_buffer(ratio, tokens, windows, tile, first_pos) == -(-tokens // ratio) * ratio
