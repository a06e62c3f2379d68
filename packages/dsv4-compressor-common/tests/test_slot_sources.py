"""Which sources the pool kernel gathers a window's slots from (`kernel.tok_slots`,
`kernel.reads_state`) and the bytes the bench charges for them (`gathered_slot_bytes`),
checked against the window geometry the host plans (`device.kernel_meta`)."""

import pytest
import torch

from dsv4_compressor_common.device import kernel_meta
from dsv4_compressor_common.kernel import gathered_slot_bytes, padded_windows, reads_state, state_windows, tok_slots
from dsv4_compressor_common.pooling import window_size


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
    assert gathered_slot_bytes(128, d, n, 2) == 4 * n * (128 + 2) * d * 2  # decode: state slots + the last 2
    assert gathered_slot_bytes(4, d, n, 2) == 4 * n * (8 + 2) * d * 2
    assert gathered_slot_bytes(128, d, 8, 1024, 0) == 4 * 8 * 128 * d * 2  # prefill from 0: this call's rows only
    # prefill at 64K: the first window tile from both sources, the others from this call's rows
    assert gathered_slot_bytes(4, d, 256, 1024, 65536, tile=32) == 4 * (256 * 8 + 32 * 8) * d * 2
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
