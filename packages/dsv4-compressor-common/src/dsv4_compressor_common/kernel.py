"""The two pypto kernels of the compressors, built per config and ratio (every size from
them; the head dim d from the config unless given).

    project(x [T, D] bf16, wkv [C, D] bf16, wgate [C, D] bf16, ape [ratio, C] f32,
            ape_idx [T] i32 (= pos % ratio), pick [T'] i32, state_dst [T' / TT, 2·TT] i64 (a
            tile's kv rows' destinations, then its score rows'), any_row [T' / TT] i32 (the state
            writes, see below), kv_rows [rows, C] f32 (out), score_rows [rows, C] f32 (out; rows
            = `rows_buffer` ≥ T, whole ratio-token blocks), state [num_state_rows·2, C] f32 (in
            place))
        kv_rows = x @ wkvᵀ, score_rows = x @ wgateᵀ + ape[ape_idx]       (fp32 accumulation; K
        in `tiling.k_split` partial matmuls summed in fp32 where the tiling splits it)
        state rows [kv | score] of the tokens that have one, scattered in place

    pool(state [num_state_rows·2coff, d] f32 (the state cache, in place), kv_rows, score_rows
         [rows·coff, d] f32 (this call's rows), kv_blk, score_blk [rows / ratio, ratio, C] f32
         (the same buffers as whole blocks: the windows read as views, `reads_views`),
         kv_state / score_state [N, W] i32 (the d-wide chunk
         of each slot in the state cache), tok [N, W] i32 (its chunk in this call's rows),
         masks: six [N, W, 1] f32 (`slot_masks`: valid (1 / 0) and its bias, in_state (1: the
         slot is read from the state cache) and its bias, in_tok (1: from this call's rows)
         and its bias; a bias is `pooling.mask_bias`: 0 / −1e30), gamma [1, d] f32, cos
         [N, R] f32, sin [N, R] f32, swap [R] i32, pick [N] i32,
         cmp_dst [1, N] i64, any_row [1] i32 (the entry writes: one tile of all N windows),
         state_v [1, num_state_rows, 2·C] f32 (the state cache again, as whole rows), win_base
         [N, 1] i32 and valid_b [N, W, 1] bool (`device.KernelMeta.win_base`, valid as a bool),
         state_first [1] i32 (`device.KernelMeta.state_first`), out [N, d] bf16 (out), cmp_kv
         [cmp_rows, d] bf16 (in place))
        kv slots = select(valid, select(in_state, state[kv_state], kv_rows[tok]), 0)  (score alike)
                 = select(valid, state[kv_state], 0)   at decode with ratio 4 where state_first is 1:
                   every slot's row is in the state cache, this call's written by project first
                 = select(valid_b, state_v[0, win_base : win_base + W, :C], 0)   at decode with
                   ratio 128 where state_first is 1 (every window's rows consecutive too): a view
                   per window, read in place, no gather (`reads_state_views`)
        out = rope(bf16(rms(bf16(gated_pool(slots))) · γ))               (reference.py's rounding)
        entries of the windows that have a cmp row scattered into cmp_kv in place
    pool with rotate=True (the indexer's keys): had_nope [d − R, d], had_rope [R, d] bf16 before
        `pick`; out = bf16((entry @ Had) · d^-0.5), the Hadamard as two ±1 matmuls on the cube

Writes into a cache go a tile at a time (`device.masked_scatter`): one `scatter_update` of
the tile's rows, where a row without a destination (−1) repeats a row of its tile that has
one (`pick`: same bits written twice to the same row) and a tile with none (`any_row` 0) is
skipped; the destination indices never hold −1. The project kernel writes a tile whose
every row has a destination (`any_row` 2) straight from its rows: the `pick` gather's output
tiles each wait on the whole tile, a fan-in the cost model charges per edge (FLASH decode
ratio 4: 42.1 → 33.3 µs). Each write is a single `scatter_update` (the
state's kv and score rows together, as [2·TT, C]): two updates of the same cache in one
tile ran as one task on one vector core (a 512-token prefill tile's state write: ~50 µs
after the matmuls). Writes into the same cache are ordered, so per-tile writes run one after
another; the pool kernel's entries are therefore one tile of all N windows, written once
after the last window tile when there are several (N is static: one build per padded
window count; with one window tile, straight from the tile).

C = coff(ratio)·d, W = window_size(ratio). T and the pool's loop over N are dynamic
(`pypto.DYNAMIC`); the host (`device.py`) pads N to whole window tiles (padding windows have
no valid slot and no cmp row). The caches are the caller's own tensors (flat views): the kernels read the state rows
of earlier calls through the indices the host derives from the block table, and write
state rows and entries in place (masked scatters, see above). An absent
slot is selected away (`where`) before any arithmetic, so whatever an unreferenced state
row holds (NaN included) never reaches an entry. Weights stay in the checkpoint's [out, in]
layout (`b_trans=True`).

No `from __future__ import annotations`: pypto reads the annotations as objects.
"""

import pypto
import torch

from dsv4_core.backends import jit_options
from dsv4_core.blocks import rms_norm, to_bf16
from dsv4_core.chip import VEC_OPERAND_ELEMS
from dsv4_rope_tables.pypto_block import rope_rotate

from .pooling import (
    SEGMENTS_MIN_WINDOW,
    coff,
    first_closing,
    gated_pool_segments,
    gated_pool_tile,
    mask_bias,
    slot_channels,
    slot_rows,
    window_size,
)
from .tiling import CompressorTiling, default_tiling

F32, BF16, I32, I64, BOOL = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32, pypto.DT_INT64, pypto.DT_BOOL


def build_project_kernel(cfg, ratio: int, tiling: CompressorTiling = None, run_mode=None, tokens: int | None = None,
                         head_dim: int | None = None):
    tl = tiling or default_tiling(cfg, ratio, tokens, head_dim=head_dim)
    D = cfg.hidden_size
    C = coff(ratio) * (head_dim or cfg.head_dim)
    TT, KS = tl.tt, tl.k_split
    DK = D // KS
    vrows = max(1, min(TT, tl.vec_elems // C))
    DYN = pypto.DYNAMIC
    T = pypto.Tensor
    passes = {"cube_l1_reuse_setting": {-1: tl.l1_reuse}} if tl.l1_reuse else None

    def _matmul(x, w, off, rows):  # x[off : off + rows] @ wᵀ, fp32; K in KS partial matmuls summed in fp32
        parts = [pypto.matmul(pypto.view(x, [TT, DK], [off, s * DK], valid_shape=[rows, DK]),
                              pypto.view(w, [C, DK], [0, s * DK]), F32, b_trans=True) for s in range(KS)]
        pypto.set_vec_tile_shapes(vrows, C)
        acc = parts[0]
        for p in parts[1:]:
            acc = pypto.add(acc, p)
        return acc

    def _write_state(state, state_dst, i, kv, score):  # tile i's kv rows, then its score rows
        pypto.set_vec_tile_shapes(vrows, C)
        rows_w = pypto.concat([kv, score], 0)
        state[:] = pypto.scatter_update(state, -2, pypto.view(state_dst, [1, 2 * TT], [i, 0]), rows_w)

    @pypto.frontend.jit(runtime_options=jit_options(run_mode), pass_options=passes)
    def compressor_project(x: T([DYN, D], BF16), wkv: T([C, D], BF16), wgate: T([C, D], BF16),
                           ape: T([ratio, C], F32), ape_idx: T([DYN], I32), pick: T([DYN], I32),
                           state_dst: T([DYN, 2 * TT], I64), any_row: T([DYN], I32),
                           kv_rows: T([DYN, C], F32), score_rows: T([DYN, C], F32), state: T([DYN, C], F32)):
        n = x.shape[0]
        for i in pypto.loop((n + TT - 1) // TT, name="token_tiles", idx_name="i"):
            off = i * TT
            rows = pypto.min(off + TT, n) - off
            it = pypto.view(ape_idx, [TT], [off], valid_shape=[rows])
            pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube])
            kv = _matmul(x, wkv, off, rows)  # [TT, C]
            sc = _matmul(x, wgate, off, rows)
            pypto.set_vec_tile_shapes(vrows, C)
            score = pypto.add(sc, pypto.index_select(ape, 0, it))
            # the tile's state rows into the state cache in place (state seen as [rows·2, C]):
            # a tile whose every token has a row writes them straight; otherwise a token
            # without a row repeats a row of its tile (same bits twice); a tile with no row
            # writes nothing
            if any_row[i] > 1:
                _write_state(state, state_dst, i, kv, score)
            elif any_row[i] > 0:
                pk = pypto.view(pick, [TT], [off])
                pypto.set_vec_tile_shapes(vrows, C)
                _write_state(state, state_dst, i, pypto.index_select(kv, 0, pk), pypto.index_select(score, 0, pk))
            pypto.set_vec_tile_shapes(vrows, C)
            pypto.assemble(kv, [off, 0], kv_rows)
            pypto.assemble(score, [off, 0], score_rows)

    return compressor_project


def _slot_tile(src_state, src_tok, idx_state, idx_tok, fs3, valid3, geo, sources):
    """One [NT, W, d] tile of window slots: each slot's chunk from the state cache or from this
    call's rows, selected (never multiplied) to 0 where the slot is absent. `sources` =
    (tok_slots, read_state): only a window's last tok_slots slots can hold this call's
    positions (a request's tokens up to its closer), so this call's rows are gathered for
    those alone; read_state False (the host knows no slot precedes the call's first
    position): the state cache is not read at all."""
    W, HD, NT = geo[0], geo[1], geo[4]
    K, read_state = sources
    if not read_state:  # every slot that exists is one of this call's positions
        return _one_source(src_tok, idx_tok, valid3, geo)
    ct = slot_channels(W, HD)
    wr = slot_rows(W, ct, NT)
    pypto.set_vec_tile_shapes(wr, W, ct)
    from_st = pypto.index_select(src_state, 0, idx_state)  # [NT, W, d]: rows of earlier calls
    tail_tok = idx_tok if K == W else pypto.view(idx_tok, [NT, K], [0, W - K])
    from_tok = pypto.index_select(src_tok, 0, tail_tok)  # [NT, K, d]: this call's rows
    if K == W:
        pick = pypto.where(pypto.greater(fs3, 0.5), from_st, from_tok)
    else:
        pypto.set_vec_tile_shapes(wr, K, ct)
        fs_tail = pypto.view(fs3, [NT, K, 1], [0, W - K, 0])
        tail = pypto.where(pypto.greater(fs_tail, 0.5), pypto.view(from_st, [NT, K, HD], [0, W - K, 0]), from_tok)
        pypto.set_vec_tile_shapes(wr, W, ct)
        pick = pypto.concat([pypto.view(from_st, [NT, W - K, HD], [0, 0, 0]), tail], 1)
    return pypto.where(pypto.greater(valid3, 0.5), pick, 0.0)


def _one_source(src, idx, valid3, geo):
    """A [NT, W, d] tile of window slots whose every chunk comes from one source (this call's
    rows where no slot precedes the call; the state cache where `state_first` holds: the
    project kernel has already written this call's rows there), selected to 0 where the slot
    is absent: one gather per tile and no choice between sources."""
    W, HD, NT = geo[0], geo[1], geo[4]
    ct = slot_channels(W, HD)
    pypto.set_vec_tile_shapes(slot_rows(W, ct, NT), W, ct)
    return pypto.where(pypto.greater(valid3, 0.5), pypto.index_select(src, 0, idx), 0.0)


def _slot_segments(state, kv_rows, score_rows, idx, mk, geo, K: int):
    """A [NT, W] window tile's slots as two segments for `gated_pool_segments`, none copied:
    every slot from the state cache ([NT, W, d], the slots whose chunk is there) and the last
    K from this call's rows ([NT, K, d], the slots whose chunk is one of this call's). For wide
    windows (ratio 128) this is cheaper than selecting the last K slots between both sources
    and concatenating them onto the others (`_slot_tile`), a copy of the whole slot tile; for
    the 8-slot windows of ratio 4 the copy is the cheaper."""
    W, HD, NT = geo[0], geo[1], geo[4]
    ct = slot_channels(W, HD)
    in_state, state_bias = mk[2], mk[3]
    pypto.set_vec_tile_shapes(1, K, ct)
    in_tok, tok_bias = (pypto.view(t, [NT, K, 1], [0, W - K, 0]) for t in mk[4:])
    pypto.set_vec_tile_shapes(1, W, ct)
    st = [pypto.where(pypto.greater(in_state, 0.5), pypto.index_select(state, 0, i), 0.0) for i in idx[:2]]
    tail = pypto.view(idx[2], [NT, K], [0, W - K])
    pypto.set_vec_tile_shapes(1, K, ct)
    tk = [pypto.where(pypto.greater(in_tok, 0.5), pypto.index_select(src, 0, tail), 0.0) for src in (kv_rows, score_rows)]
    return [(st[0], st[1], in_state, state_bias, W), (tk[0], tk[1], in_tok, tok_bias, K)]


def tok_slots(ratio: int, seq: int) -> int:
    """How many of a window's last slots can hold one of this call's positions: a request's
    tokens up to its closer, at most its `seq` new tokens and the window."""
    return min(window_size(ratio), seq)


def reads_state(ratio: int, first_pos: int | None) -> bool:
    """Whether a call whose requests start at `first_pos` (None: not known on the host, as in
    decode) can read a slot of the state cache: its first window holds a position p with
    0 <= p < first_pos."""
    if first_pos is None:
        return True
    return max(0, first_closing(first_pos, ratio) - window_size(ratio) + 1) < first_pos


def state_windows(ratio: int, windows: int, tile: int, first_pos: int | None = None) -> int:
    """How many of a call's windows the pool kernel reads from the state cache: all of them at
    decode (first_pos None), none when no window reaches before a prefill chunk, else the
    chunk's first window tile (a window that reaches before it is one of its first two)."""
    if not reads_state(ratio, first_pos):
        return 0
    return windows if first_pos is None else min(windows, tile)


def reads_views(ratio: int, first_pos: int | None, windows: int, tile: int) -> bool:
    """Whether the pool kernel reads a call's windows as views of this call's rows, no
    gather: a prefill chunk (`first_pos` known) that starts on a window boundary, so each
    window's slots are whole `ratio`-token blocks of the chunk (ratio 4: the back halves of
    its own block and the front halves of the block before). Ratio 4 gathers its first window
    tile (the first window's earlier block precedes the chunk), so it reads views from the
    second tile on and needs several tiles."""
    if first_pos is None or first_pos % ratio:
        return False
    return ratio != 4 or padded_windows(windows, tile) > tile


def gathered_windows(ratio: int, windows: int, tile: int, first_pos: int | None = None) -> int:
    """How many of a call's windows the pool kernel gathers slots for: every one, except where
    it reads views (`reads_views`: none at ratio 128, the first window tile at ratio 4)."""
    if not reads_views(ratio, first_pos, windows, tile):
        return windows
    return min(windows, tile) if ratio == 4 else 0


def reads_state_first(ratio: int, first_pos: int | None) -> bool:
    """Whether the pool kernel reads every slot from the state cache where all of them are
    there (`KernelMeta.state_first`): at decode (`first_pos` None) with narrow windows (ratio
    4); wide windows and prefill chunks keep this call's rows as their own source."""
    return first_pos is None and window_size(ratio) < SEGMENTS_MIN_WINDOW


def reads_state_views(ratio: int, first_pos: int | None) -> bool:
    """Whether the pool kernel reads each window's slots as one view of the state cache where
    every slot is there and each window's rows are consecutive (`KernelMeta.state_first`): at
    decode (`first_pos` None) with wide windows (ratio 128: a window is one run of positions,
    inside one state page where the page is a multiple of the window). Nothing is gathered:
    each window's W rows are read in place from its first row (`KernelMeta.win_base`)."""
    return first_pos is None and window_size(ratio) >= SEGMENTS_MIN_WINDOW


def gathered_slot_bytes(ratio: int, head_dim: int, windows: int, seq: int, first_pos: int | None = None,
                        tile: int = 1) -> int:
    """Bytes the pool kernel's slot gathers read (fp32 kv and score chunks): a window read
    from the state cache (`state_windows`, `tile` its window tile) gathers every slot there and
    its last `tok_slots` from this call's rows (at decode with ratio 4, every slot from the state
    alone: `reads_state_first`, the path a call whose every slot has its state row takes), any
    other gathered window (`gathered_windows`) every slot from this call's rows; a window read
    as views gathers nothing."""
    if reads_state_views(ratio, first_pos):
        return 0
    W = window_size(ratio)
    slots = gathered_windows(ratio, windows, tile, first_pos) * W
    if not reads_state_first(ratio, first_pos):
        slots += state_windows(ratio, windows, tile, first_pos) * tok_slots(ratio, seq)
    return 4 * slots * head_dim * 2


def rows_buffer(ratio: int, tokens: int, windows: int, tile: int, first_pos: int | None = None) -> int:
    """Rows of the buffers the project kernel writes this call's rows into (`kv_rows`,
    `score_rows` [rows, C]): the call's tokens in whole `ratio`-token blocks (the pool kernel
    receives them as [rows / ratio, ratio, C]); where it reads views (`reads_views`), one
    block per padded window at least, so every window tile's views stay inside them (rows
    past the call's tokens belong to windows that do not exist: no valid slot). Elsewhere
    (decode) nothing more: a decode call's windows are not its blocks."""
    blocks = -(-tokens // ratio)
    if reads_views(ratio, first_pos, windows, tile):
        blocks = max(blocks, padded_windows(windows, tile))
    return blocks * ratio


def _view_slots(blocks, off, geo):
    """A [NT, W, d] window tile's slots (kv or score) as views of this call's rows, seen as
    whole blocks `blocks [rows / ratio, ratio, C]` (`reads_views`): window k's slots are block
    k's (the back halves at ratio 4), after block k − 1's front halves at ratio 4. Nothing is
    gathered; ratio 4 concatenates the two halves (a copy of the tile, as `_slot_tile`)."""
    W, HD, NT = geo[0], geo[1], geo[4]
    ct = slot_channels(W, HD)
    wr = slot_rows(W, ct, NT)
    if W < SEGMENTS_MIN_WINDOW:  # ratio 4: W = 2 · ratio, two halves
        r = W // 2
        pypto.set_vec_tile_shapes(wr, r, ct)
        prev = pypto.view(blocks, [NT, r, HD], [off - 1, 0, 0])
        cur = pypto.view(blocks, [NT, r, HD], [off, 0, HD])
        pypto.set_vec_tile_shapes(wr, W, ct)
        return pypto.concat([prev, cur], 1)
    pypto.set_vec_tile_shapes(wr, W, ct)
    return pypto.view(blocks, [NT, W, HD], [off, 0, 0])


def _state_view_tile(state_v, win_base, valid_b, masks, gamma, cos, sin, swap, off, geo, out):
    """Steps 2–5 on the window tile [off, off + NT) whose every slot is in the state cache and
    whose windows' rows are consecutive (`reads_state_views`), each window's entry written to
    its row of `out`: per window, its kv and score chunks as views of the state cache seen as
    [1, rows, 2·d] from its first row (`win_base`, read on the device), each selected to 0
    where the slot is absent (`valid_b` [N, W, 1] bool, the valid mask as the host prepared
    it), pooled, normed and rotated on its own (no gather, and no window waits on another)."""
    W, HD, NT = geo[0], geo[1], geo[4]
    ct = slot_channels(W, HD)
    for t in range(NT):
        b = win_base[off + t, 0]
        pypto.set_vec_tile_shapes(slot_rows(W, ct, 1), W, ct)
        vm, bias, keep = (pypto.view(m, [1, W, 1], [off + t, 0, 0]) for m in (*masks[:2], valid_b))
        kv, sc = (pypto.where(keep, pypto.view(state_v, [1, W, HD], [0, b, c]), 0.0) for c in (0, HD))
        pooled = gated_pool_tile(kv, sc, None, window=W, channels=HD, tile_rows=1, masks=(vm, bias))
        n_nope, rot = _entry_tail(pooled, gamma, cos, sin, swap, off + t, geo, 1)
        _store_entries(out, n_nope, rot, off + t, 1, HD - geo[2])


def _entry_tail(pooled, gamma, cos, sin, swap, off, geo, rows):
    """Steps 3–5 of `rows` pooled windows [rows, d] fp32 at window `off`: (nope lanes bf16
    [rows, d − R], rotated rope lanes bf16 [rows, R])."""
    HD, R, EPS, NT = geo[1], geo[2], geo[3], geo[4]
    NOPE = HD - R
    rows_hd, rows_r = (geo[5], geo[6]) if rows == NT else (1, 1)
    pypto.set_vec_tile_shapes(rows_hd, HD)
    pb = pypto.cast(to_bf16(pooled), F32)  # (3)
    nrm = rms_norm(pb, HD, EPS, gamma)
    n_nope = to_bf16(pypto.view(nrm, [rows, NOPE], [0, 0]))  # (4)
    n_rope = to_bf16(pypto.view(nrm, [rows, R], [0, NOPE]))
    ct = pypto.view(cos, [rows, R], [off, 0])
    st = pypto.view(sin, [rows, R], [off, 0])
    pypto.set_vec_tile_shapes(rows_r, R)
    rot = to_bf16(rope_rotate(pypto.cast(n_rope, F32), ct, st, swap))  # (5)
    return n_nope, rot


def _store_entries(out, n_nope, rot, off, rows, nope):
    """A tile's entries (nope lanes, rotated rope lanes) into rows [off, off + rows) of out."""
    pypto.set_vec_tile_shapes(rows, out.shape[1])
    pypto.assemble(n_nope, [off, 0], out)
    pypto.assemble(rot, [off, nope], out)


def _pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state, tok, masks, gamma,
               cos, sin, swap, off, geo, sources):
    """Steps 2–5 on the window tile [off, off + NT): (nope lanes bf16 [NT, HD − R], rotated rope
    lanes bf16 [NT, R]); geo = (W, HD, R, EPS, NT, rows_hd, rows_r); sources = (tok_slots,
    read_state, views, state_only): state_only True gathers every slot from the state cache
    (`_one_source`), views True reads the slots as views of `kv_blk` / `score_blk`
    (`_view_slots`), else both sources are gathered (`_slot_tile`, `_slot_segments`)."""
    W, HD, NT = geo[0], geo[1], geo[4]
    pypto.set_vec_tile_shapes(max(1, min(NT, VEC_OPERAND_ELEMS // W)), W)
    idx = [pypto.view(t, [NT, W], [off, 0]) for t in (kv_state, score_state, tok)]
    ct = slot_channels(W, HD)
    pypto.set_vec_tile_shapes(slot_rows(W, ct, NT), W, ct)
    mk = [pypto.view(t, [NT, W, 1], [off, 0, 0]) for t in masks]  # `slot_masks`, this tile's windows
    K, read_state, views, state_only = sources
    if state_only:  # `state_first`: every slot from the state cache
        pooled = gated_pool_tile(_one_source(state, idx[0], mk[0], geo), _one_source(state, idx[1], mk[0], geo),
                                 None, window=W, channels=HD, tile_rows=NT, masks=mk[:2])
    elif views:
        pooled = gated_pool_tile(_view_slots(kv_blk, off, geo), _view_slots(score_blk, off, geo), None, window=W,
                                 channels=HD, tile_rows=NT, masks=mk[:2])
    elif read_state and K < W and W >= SEGMENTS_MIN_WINDOW:
        pooled = gated_pool_segments(_slot_segments(state, kv_rows, score_rows, idx, mk, geo, K), channels=HD,
                                     tile_rows=NT, channel_tile=ct)
    else:
        kv = _slot_tile(state, kv_rows, idx[0], idx[2], mk[2], mk[0], geo, sources[:2])
        sc = _slot_tile(state, score_rows, idx[1], idx[2], mk[2], mk[0], geo, sources[:2])
        pooled = gated_pool_tile(kv, sc, None, window=W, channels=HD, tile_rows=NT, masks=mk[:2])
    return _entry_tail(pooled, gamma, cos, sin, swap, off, geo, NT)


def project_tile(cfg, ratio: int, tokens: int | None = None) -> int:
    """Tokens per iteration of the project kernel (the tile its state writes are grouped by)."""
    return default_tiling(cfg, ratio, tokens).tt


def pool_tile(cfg, ratio: int, windows: int | None = None, rotate: bool = False) -> int:
    """Windows per iteration of the pool kernel; the rotate kernel takes N padded to it (at
    least 16: the rows of its Hadamard matmul)."""
    nt = default_tiling(cfg, ratio, windows=windows).nt
    return max(16, nt) if rotate else nt


def padded_windows(windows: int, tile: int) -> int:
    """The pool kernel's window count: `windows` padded to whole tiles of `tile`."""
    return max(1, -(-windows // tile)) * tile


def slot_masks(valid: torch.Tensor, from_state: torch.Tensor) -> list[torch.Tensor]:
    """The pool kernel's six slot masks [N, W, 1] fp32 from the host's valid and from_state
    [N, W] (from_state: the slot exists and is read from the state cache): valid, in_state,
    in_tok (exists, from this call's rows), each followed by its `mask_bias`. Prepared with
    the rest of a call's O(step) metadata, so the kernel's pooling tasks derive no mask and
    wait on no mask task (FLASH prefill ratio 128: pool 33.5 → 25.0 µs)."""
    in_tok = valid - from_state
    out = []
    for m in (valid, from_state, in_tok):
        m = m.to(torch.float32).unsqueeze(-1).contiguous()
        out += [m, mask_bias(m)]
    return out


def build_pool_kernel(cfg, ratio: int, windows: int, tiling: CompressorTiling = None, run_mode=None,
                      head_dim: int | None = None, rotate: bool = False, seq: int | None = None,
                      first_pos: int | None = None):
    """The pool kernel for a call of `windows` windows (N, padded by the host to a multiple of
    `pool_tile(...)`: padding windows have no valid slot and no cmp row; the entry write's
    shapes are static in the padded N); `rotate=True` (the indexer's keys) adds the Hadamard
    after RoPE and takes two more inputs before `cmp_rows`: had_nope [d − R, d] and had_rope
    [R, d] bf16, the rows of Sylvester's ±1 matrix (`hadamard.hadamard_halves`). `seq`: each
    request's new tokens (None: any; this call's rows are then gathered for every slot);
    `first_pos`: the call's first position when the host knows it (a prefill chunk), else
    None (see `_slot_tile`; a chunk that reads the state cache reads it in its first window
    tile only, the other tiles in a loop of their own: `state_windows`)."""
    tl = tiling or default_tiling(cfg, ratio, windows=windows)
    HD, R, EPS = head_dim or cfg.head_dim, cfg.rope_dim, float(cfg.eps)
    NOPE, W, NT = HD - R, window_size(ratio), (max(16, tl.nt) if rotate else tl.nt)
    rows_hd = max(1, min(NT, tl.vec_elems // HD))  # [rows, hd] vector tiles stay ≤ vec_elems
    rows_r = max(1, min(NT, tl.vec_elems // R))
    if slot_channels(W, HD) == HD:  # a slot tile holds whole windows: their norm and RoPE
        wr = slot_rows(W, HD, NT)  # run in the same task as their pooling, no fan-in
        geo = (W, HD, R, EPS, NT, wr, wr)
    else:
        geo = (W, HD, R, EPS, NT, rows_hd, rows_r)
    NP = padded_windows(windows, NT)
    C = coff(ratio) * HD
    VIEWS = reads_views(ratio, first_pos, windows, NT)
    # the first window tile reads views too where no window is gathered (ratio 128)
    sources = (tok_slots(ratio, seq or W), reads_state(ratio, first_pos),
               VIEWS and gathered_windows(ratio, windows, NT, first_pos) == 0, False)
    SV = reads_state_views(ratio, first_pos) and not rotate  # decode, wide windows: see below
    # several window tiles, or windows that write their own rows of `out` (SV): one write of
    # all their entries after the loop
    SEVERAL = NP > NT or SV
    # a prefill chunk that reads the state cache (first_pos known): only its first window tile
    # can (a window that reaches before the chunk is one of its first two); the others read
    # this call's rows alone, as views where the chunk starts on a window boundary (ratio 4:
    # the first tile is gathered, its first window's earlier block precedes the chunk)
    PEEL = first_pos is not None and SEVERAL and (sources[1] or (VIEWS and not sources[2]))
    FIRST, rest = (1, (sources[0], False, VIEWS, False)) if PEEL else (0, sources)
    # decode: where every slot is in the state cache (`state_first`, decided on the device:
    # this call's rows were written there by the project kernel), narrow windows (ratio 4)
    # gather that one source, wide windows (ratio 128) read each window's rows as one view of
    # it (`reads_state_views`, no gather); else both sources (`_slot_tile`; wide windows read
    # this call's last slots as a segment of their own, `_slot_segments`)
    FROM_STATE = reads_state_first(ratio, first_pos)
    only = (*sources[:3], True)
    scale, MT = HD ** -0.5, NT

    def _keys(entry, had_nope, had_rope, rows):  # the Hadamard on the cube, scaled: (6)
        pypto.set_cube_tile_shapes([MT, MT], [64, 64], [HD, HD])
        hk = pypto.add(pypto.matmul(entry[0], had_nope, F32), pypto.matmul(entry[1], had_rope, F32))
        pypto.set_vec_tile_shapes(rows, HD)
        return to_bf16(pypto.mul(hk, scale))
    DYN, S = pypto.DYNAMIC, pypto.STATIC
    T = pypto.Tensor

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def compressor_pool(state: T([DYN, HD], F32), kv_rows: T([DYN, HD], F32), score_rows: T([DYN, HD], F32),
                        kv_blk: T([DYN, ratio, C], F32), score_blk: T([DYN, ratio, C], F32),
                        kv_state: T([DYN, W], I32), score_state: T([DYN, W], I32), tok: T([DYN, W], I32),
                        valid: T([DYN, W, 1], F32), valid_bias: T([DYN, W, 1], F32), in_state: T([DYN, W, 1], F32),
                        state_bias: T([DYN, W, 1], F32), in_tok: T([DYN, W, 1], F32), tok_bias: T([DYN, W, 1], F32),
                        gamma: T([1, HD], F32),
                        cos: T([DYN, R], F32), sin: T([DYN, R], F32), swap: T([S], I32), pick: T([NP], I32),
                        cmp_dst: T([1, NP], I64), any_row: T([1], I32), state_v: T([1, DYN, 2 * C], F32),
                        win_base: T([DYN, 1], I32), valid_b: T([DYN, W, 1], BOOL), state_first: T([1], I32),
                        out: T([DYN, HD], BF16), cmp_kv: T([DYN, HD], BF16)):
        n = kv_state.shape[0]
        masks = (valid, valid_bias, in_state, state_bias, in_tok, tok_bias)
        if PEEL:  # a prefill chunk's first window tile, the only one that can read the state cache
            for _ in pypto.loop(1, name="state_tile", idx_name="s"):
                n_nope, rot = _pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state, tok,
                                         masks, gamma, cos, sin, swap, 0, geo, sources)
                _store_entries(out, n_nope, rot, 0, rows_hd, NOPE)
        if SV:
            if state_first[0] > 0:
                for i in pypto.loop(n // NT, name="view_tiles", idx_name="i"):
                    _state_view_tile(state_v, win_base, valid_b, masks, gamma, cos, sin, swap, i * NT, geo, out)
            else:
                for i in pypto.loop(n // NT, name="window_tiles", idx_name="i"):
                    n_nope, rot = _pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state,
                                             tok, masks, gamma, cos, sin, swap, i * NT, geo, rest)
                    _store_entries(out, n_nope, rot, i * NT, rows_hd, NOPE)
        else:
            for i in pypto.loop(FIRST, n // NT, name="window_tiles", idx_name="i"):  # the host pads N to NT
                off = i * NT
                if FROM_STATE:
                    if state_first[0] > 0:
                        n_nope, rot = _pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state,
                                                 tok, masks, gamma, cos, sin, swap, off, geo, only)
                    else:
                        n_nope, rot = _pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state,
                                                 tok, masks, gamma, cos, sin, swap, off, geo, rest)
                else:
                    n_nope, rot = _pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state, tok,
                                             masks, gamma, cos, sin, swap, off, geo, rest)
                if not SEVERAL:  # one tile: its entries into cmp_kv in place, straight from the tile
                    if any_row[i] > 0:
                        pypto.set_vec_tile_shapes(rows_hd, HD)
                        ent = pypto.index_select(pypto.concat([n_nope, rot], -1), 0, pick)
                        cmp_kv[:] = pypto.scatter_update(cmp_kv, -2, cmp_dst, ent)
                _store_entries(out, n_nope, rot, off, rows_hd, NOPE)
        if SEVERAL:  # the call's entries into cmp_kv in place, after the last tile (see the module)
            for j in pypto.loop(1, name="entries", idx_name="j"):
                if any_row[j] > 0:
                    pypto.set_vec_tile_shapes(rows_hd, HD)
                    cmp_kv[:] = pypto.scatter_update(cmp_kv, -2, cmp_dst, pypto.index_select(out, 0, pick))

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def compressor_pool_rotate(state: T([DYN, HD], F32), kv_rows: T([DYN, HD], F32),
                               score_rows: T([DYN, HD], F32), kv_blk: T([DYN, ratio, C], F32),
                               score_blk: T([DYN, ratio, C], F32), kv_state: T([DYN, W], I32),
                               score_state: T([DYN, W], I32), tok: T([DYN, W], I32), valid: T([DYN, W, 1], F32),
                               valid_bias: T([DYN, W, 1], F32), in_state: T([DYN, W, 1], F32),
                               state_bias: T([DYN, W, 1], F32), in_tok: T([DYN, W, 1], F32),
                               tok_bias: T([DYN, W, 1], F32), gamma: T([1, HD], F32), cos: T([DYN, R], F32),
                               sin: T([DYN, R], F32), swap: T([S], I32), had_nope: T([NOPE, HD], BF16),
                               had_rope: T([R, HD], BF16), pick: T([NP], I32), cmp_dst: T([1, NP], I64),
                               any_row: T([1], I32), state_v: T([1, DYN, 2 * C], F32),
                               win_base: T([DYN, 1], I32), valid_b: T([DYN, W, 1], BOOL),
                               state_first: T([1], I32), out: T([DYN, HD], BF16), cmp_kv: T([DYN, HD], BF16)):
        n = kv_state.shape[0]
        masks = (valid, valid_bias, in_state, state_bias, in_tok, tok_bias)
        if PEEL:  # as in compressor_pool
            for _ in pypto.loop(1, name="state_tile", idx_name="s"):
                k = _keys(_pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state, tok,
                                     masks, gamma, cos, sin, swap, 0, geo, sources), had_nope, had_rope,
                          rows_hd)
                pypto.set_vec_tile_shapes(rows_hd, HD)
                pypto.assemble(k, [0, 0], out)
        for i in pypto.loop(FIRST, n // NT, name="window_tiles", idx_name="i"):  # the host pads N to NT
            off = i * NT
            if FROM_STATE:  # as in compressor_pool
                if state_first[0] > 0:
                    k = _keys(_pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state, tok,
                                         masks, gamma, cos, sin, swap, off, geo, only), had_nope, had_rope, rows_hd)
                else:
                    k = _keys(_pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state, tok,
                                         masks, gamma, cos, sin, swap, off, geo, rest), had_nope, had_rope, rows_hd)
            else:
                k = _keys(_pool_tile(state, kv_rows, score_rows, kv_blk, score_blk, kv_state, score_state, tok,
                                     masks, gamma, cos, sin, swap, off, geo, rest), had_nope, had_rope, rows_hd)
            if not SEVERAL:  # as in compressor_pool
                if any_row[i] > 0:
                    pypto.set_vec_tile_shapes(rows_hd, HD)
                    cmp_kv[:] = pypto.scatter_update(cmp_kv, -2, cmp_dst, pypto.index_select(k, 0, pick))
            pypto.set_vec_tile_shapes(rows_hd, HD)
            pypto.assemble(k, [off, 0], out)
        if SEVERAL:  # the call's entries into cmp_kv in place, after the last tile (see the module)
            for j in pypto.loop(1, name="entries", idx_name="j"):
                if any_row[j] > 0:
                    pypto.set_vec_tile_shapes(rows_hd, HD)
                    cmp_kv[:] = pypto.scatter_update(cmp_kv, -2, cmp_dst, pypto.index_select(out, 0, pick))

    return compressor_pool_rotate if rotate else compressor_pool
