"""Gated pooling of KV-compressor windows and their geometry, for both compress ratios,
decode and prefill.

For a window of W slots and C channels, with per-slot projections `kv [W, C]`, gate scores
`score [W, C]` (APE already added) and a per-slot flag `valid [W]` (the slot holds a real
position: positions < 0 never do), the pooled entry is, per channel c,

    pooled[c] = Σ_w softmax_w(score[w, c] | valid) · kv[w, c]

where the softmax runs over the valid slots only (absent slots get weight exactly 0; a
window with no valid slot pools to 0). Window geometry (`window_positions`):

- ratio 128 (HCA): the ratio positions `p*−127 … p*` of the window closing at `p*`;
- ratio 4 (CSA and the indexer's key compressor, overlapping): 8 slots — the previous
  window's 4 positions `p*−7 … p*−4` read the *front* half `[:d]` of their projections, the
  current window's 4 positions `p*−3 … p*` the *back* half `[d:]`; for the first window the
  previous slots are at negative positions and do not exist.

`gated_pool` is the torch reference (fp32 or fp64 math follows the inputs' dtype);
`gated_pool_tile` the pypto building block used inside kernels, `gated_pool_segments` the same
over slots that come in segments (one softmax over all of them, nothing concatenated),
`pool_window_tile` on one row tile of [N, W, C] slot tensors.

No `from __future__ import annotations`: the pypto blocks are called inside jit kernels.
"""

import pypto
import torch

from dsv4_core.chip import VEC_OPERAND_ELEMS

MASK_BIAS = 1e30  # added (negated) to absent slots' scores in the kernel block


def window_size(ratio: int) -> int:
    """Slots per compressed entry: 2·ratio for the overlapping ratio 4, else ratio."""
    if ratio not in (4, 128):
        raise ValueError(f"compress ratio must be 4 or 128, got {ratio!r}")
    return 2 * ratio if ratio == 4 else ratio


# windows at least this wide (ratio 128) are whole runs of consecutive positions, one state
# page holds each of them where the page is a multiple of the window: the pool kernel reads
# such a window's state rows as one view (`kernel.reads_state_views`), and pools the last
# slots of this call as a segment of their own where it gathers
SEGMENTS_MIN_WINDOW = 64


def coff(ratio: int) -> int:
    """Projection width in head dims: 2 for the overlapping ratio 4 (front and back half),
    else 1 (the official model's `coff = 1 + overlap`)."""
    return window_size(ratio) // ratio


def first_closing(start, ratio: int):
    """The first position at or after `start` that closes a window ((p + 1) % ratio == 0);
    `start` an int or an integer tensor (elementwise)."""
    return start + (ratio - 1 - start % ratio) % ratio


def slot_channels(window: int, channels: int) -> int:
    """The channel width of a pooling block's [1, window, channel] vector tiles: each operand
    stays within `VEC_OPERAND_ELEMS`, at least 64 channels."""
    return min(channels, max(64, VEC_OPERAND_ELEMS // window))


def slot_rows(window: int, channel_tile: int, tile_rows: int) -> int:
    """Windows per [rows, window, channel_tile] pooling tile, at most a window tile's
    `tile_rows`: as many as keep each operand within `VEC_OPERAND_ELEMS`, so a window tile
    pools in as few vector tasks as its operands allow; 1 for windows of 64 slots and more
    (`slot_channels` wide)."""
    return max(1, min(tile_rows, VEC_OPERAND_ELEMS // (window * channel_tile)))


def window_positions(closing: torch.Tensor, ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot positions and halves of the windows closing at `closing [N]` ((p*+1) % ratio == 0).

    Returns (positions [N, W] int64, half [W] int64): slot w of window n holds position
    `positions[n, w]`'s projection half `half[w]` (0 = channels [:d], 1 = [d:]; ratio 128 has
    one half, all 0). Positions < 0 do not exist."""
    W = window_size(ratio)
    closing = torch.as_tensor(closing, dtype=torch.int64).reshape(-1)
    if closing.numel() and bool(((closing + 1) % ratio != 0).any()):
        raise ValueError(f"window_positions: closing positions must satisfy (p+1) % {ratio} == 0")
    pos = closing[:, None] - (W - 1) + torch.arange(W, dtype=torch.int64)[None, :]
    half = torch.zeros(W, dtype=torch.int64)
    if ratio == 4:
        half[ratio:] = 1
    return pos, half


def gated_pool(kv: torch.Tensor, score: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Reference pooling: kv, score [N, W, C] (fp32 or fp64), valid [N, W] bool -> [N, C].

    Softmax over the valid slots of each window per channel; absent slots never contribute,
    whatever their kv / score hold (NaN included); an all-absent window pools to 0."""
    if kv.shape != score.shape or kv.dim() != 3 or tuple(valid.shape) != tuple(kv.shape[:2]):
        raise ValueError(f"gated_pool: kv {tuple(kv.shape)}, score {tuple(score.shape)} must be [N, W, C] and "
                         f"valid {tuple(valid.shape)} [N, W]")
    v = valid.to(torch.bool)[..., None]
    s = torch.where(v, score, torch.full_like(score, float("-inf")))
    p = torch.softmax(s, dim=1).nan_to_num(0.0)
    return (p * torch.where(v, kv, torch.zeros_like(kv))).sum(1)


def mask_bias(mask: torch.Tensor) -> torch.Tensor:
    """The additive score mask of a 0 / 1 slot mask: 0 where a slot exists, −`MASK_BIAS` where not."""
    return (mask - 1.0) * MASK_BIAS


def gated_pool_tile(kv, score, valid, *, window: int, channels: int, tile_rows: int, rows=None,
                    channel_tile: int | None = None, masks=None):
    """pypto block: pool `tile_rows` windows at once.

    kv, score: fp32 [tile_rows, W, C] tiles; valid: fp32 [tile_rows, W] (1.0 slot exists, 0.0
    not); `rows` the number of valid windows in a ragged last tile (a symbolic scalar) or
    None; `masks`: (valid3, bias3) [tile_rows, W, 1] fp32, the mask and its `mask_bias` as
    the kernel received them (then `valid` is not read: nothing is derived in the kernel, so
    the pooling tasks wait on no mask task). Absent slots must hold finite kv / score (the
    pool kernel selects them to 0 before calling this block): their score is pushed down by
    1e30 and their weight multiplied by 0. Returns fp32 [tile_rows, C]. Sets its own vector
    tile shapes: each op's operands stay ≤ `VEC_OPERAND_ELEMS` elements (the unified buffer,
    `dsv4_core.chip.UB_BYTES`, holds inputs + output)."""
    W, C, NT = window, channels, tile_rows
    ct = channel_tile or slot_channels(W, C)
    wr = slot_rows(W, ct, NT)
    vs3 = None if rows is None else [rows, W, 1]
    if masks is not None:
        vm3, bias3 = masks
    else:
        pypto.set_vec_tile_shapes(max(1, min(NT, VEC_OPERAND_ELEMS // W)), W)
        bias = pypto.mul(pypto.sub(valid, 1.0), MASK_BIAS)
        if vs3 is None:
            bias3 = pypto.reshape(bias, [NT, W, 1])
            vm3 = pypto.reshape(valid, [NT, W, 1])
        else:
            bias3 = pypto.reshape(bias, [NT, W, 1], valid_shape=vs3)
            vm3 = pypto.reshape(valid, [NT, W, 1], valid_shape=vs3)
    pypto.set_vec_tile_shapes(wr, W, ct)
    s = pypto.add(score, bias3)
    m = pypto.amax(s, 1, keepdim=True)  # [NT, 1, C]: max over the window's slots
    e = pypto.mul(pypto.exp(pypto.sub(s, m)), vm3)  # absent slots -> exactly 0
    den = pypto.maximum(pypto.sum(e, 1, keepdim=True), 1e-30)  # all-absent window -> 0
    num = pypto.sum(pypto.mul(e, kv), 1, keepdim=True)
    pypto.set_vec_tile_shapes(wr, 1, ct)
    pooled = pypto.div(num, den)
    if rows is None:
        return pypto.reshape(pooled, [NT, C])
    return pypto.reshape(pooled, [NT, C], valid_shape=[rows, C])


def gated_pool_segments(segments, *, channels: int, tile_rows: int, channel_tile: int):
    """pypto block: `gated_pool_tile` over windows whose slots come in segments, one softmax
    over all of them without concatenating the slots: each segment's max, then the window's;
    each segment's weight sum and weighted kv, added. segments: [(kv, score [tile_rows, w, C]
    fp32, valid3 [tile_rows, w, 1] fp32 (1.0: the slot is this segment's), bias3 (its
    `mask_bias`, as the kernel received it), w)], every slot finite. Returns fp32
    [tile_rows, C]."""
    C, NT, ct = channels, tile_rows, channel_tile
    parts = []
    for kv, score, v3, b3, w in segments:
        pypto.set_vec_tile_shapes(1, w, ct)
        s = pypto.add(score, b3)
        parts.append((kv, s, v3, w, pypto.amax(s, 1, keepdim=True)))
    pypto.set_vec_tile_shapes(1, 1, ct)
    m = parts[0][4]
    for part in parts[1:]:
        m = pypto.maximum(m, part[4])  # [NT, 1, C]: the window's max over every segment
    den = num = None
    for kv, s, v3, w, _ in parts:
        pypto.set_vec_tile_shapes(1, w, ct)
        e = pypto.mul(pypto.exp(pypto.sub(s, m)), v3)  # slots not in the segment -> exactly 0
        d, n = pypto.sum(e, 1, keepdim=True), pypto.sum(pypto.mul(e, kv), 1, keepdim=True)
        pypto.set_vec_tile_shapes(1, 1, ct)
        den, num = (d, n) if den is None else (pypto.add(den, d), pypto.add(num, n))
    pooled = pypto.div(num, pypto.maximum(den, 1e-30))  # all-absent window -> 0
    return pypto.reshape(pooled, [NT, C])


def pool_window_tile(kv_slots, score_slots, valid, off, rows, *, window: int, channels: int, tile_rows: int):
    """pypto block: `gated_pool_tile` on the row tile [off, off + tile_rows) of kv_slots /
    score_slots [N, W, C] and valid [N, W] (`rows` valid rows in a ragged last tile)."""
    W, C, NT = window, channels, tile_rows
    kv = pypto.view(kv_slots, [NT, W, C], [off, 0, 0], valid_shape=[rows, W, C])
    sc = pypto.view(score_slots, [NT, W, C], [off, 0, 0], valid_shape=[rows, W, C])
    vd = pypto.view(valid, [NT, W], [off, 0], valid_shape=[rows, W])
    return gated_pool_tile(kv, sc, vd, window=W, channels=C, tile_rows=NT, rows=rows)
