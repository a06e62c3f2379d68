"""The pypto sparse-attention kernel the four sparse-attention packages run, and its blocks:
in-kernel resolution and gather of the paged caches read in place (`window_segment`: ring
pages through the window block table and the step's kv, for the window's last
`step_columns`; `ring_segment`: the ring alone, for the others; `compressed_segment`: compressed
pages through their block table; `index_select`, masked by a select; `paged_segment`: a decode
step's window as each request's ring page and step rows, views of the caches read in place,
nothing gathered), tiled online softmax
with sink (`fold_segments`; `sink_softmax_tile` is the one-tile form), inverse RoPE
(dsv4-rope-tables' `rope_rotate`), grouped output projection (`grouped_oproj`).
`build_sparse_attn_kernel(cfg, default_tiling(cfg, T, K))` builds it per config and
index-row width; `run_sparse_attn` builds and launches it on a `KernelInputs`.
The README's *The kernel* section explains the loop structure and where the time goes.

No `from __future__ import annotations`: pypto reads kernel annotations as objects.
"""

import dataclasses
from typing import NamedTuple

import pypto
import torch

from dsv4_core import backends
from dsv4_core.backends import on_device
from dsv4_core.blocks import to_bf16
from dsv4_core.chip import UB_BYTES
from dsv4_core.tiling import balanced_n_tile
from dsv4_rope_tables.pypto_block import rope_rotate, swap_index

from .indexing import window_columns, window_span


@dataclasses.dataclass(frozen=True)
class AttnTiling:
    tt: int = 8  # query tokens per attention tile
    to: int = 8  # query tokens per output-projection tile, a multiple of tt (the host pads T to it)
    kt: int = 128  # KV rows per online-softmax tile
    nk: int = 1  # online-softmax tiles per index row, unrolled in the kernel (the host pads K to nk·kt, −1)
    hv_s: int = 16  # heads per vector tile of [tt, H, kt] fp32 score tiles
    hv_o: int = 8  # heads per vector tile of [tt, H, D] fp32 accumulator tiles (the finalize: see default_tiling)
    cube_s: tuple = ((16, 16), (128, 256), (128, 128))  # q·kᵀ
    cube_pv: tuple = ((16, 16), (128, 128), (128, 256))  # p·v
    cube_oa: tuple = ((16, 16), (128, 512), (128, 128))  # per-group o·wo_aᵀ
    cube_ob: tuple = ((16, 16), (128, 512), (128, 128))  # o_r·wo_bᵀ
    pg_upper_bound: int = 0  # pypto's partition bound for the kernel's leaf functions (0: pypto's own)
    step_split: bool = True  # gather the step's kv for a window's last `step_columns` only (see default_tiling)


# rows per online-softmax tile at most: fewer, larger tiles model faster (HCA at 64K has
# 128 + 512 + a few rows: one 768-row tile 388 µs vs two 384-row tiles 490 µs, FLASH T=128;
# prefill HCA T=1024 at 64K with 16-token runs, 143 + 640 rows: one 832-row tile 2250 µs vs
# two 448-row tiles 2419)
KV_TILE_MAX = 1024
# a tile's width is a multiple of this (the P·V L1 k tile holds whole L0 k tiles, see
# `_cube_pv`): HCA decode at 64K with 2-token runs, 641 rows: 704 columns 510 µs vs 768
# columns 545 (16-row selects); 16-row steps model no faster (656 columns 462 µs vs 704
# 461; prefill HCA T=1024 at 64K 784 columns 2375 µs vs 832 2292)
KV_ROUND = 64
# paged rows (`paged_window_rows`: W + S window columns) round to 32: FLASH SWA decode, W + 2
# = 130 columns: 160-column tiles 279.4 µs, 192-column 293.9, 144-column 281.2
PAGED_KV_ROUND = 32


def kv_tile(rows_per_token: int, paged: bool = False) -> int:
    """Rows per online-softmax tile for index rows of this width: the fewest tiles of at
    most KV_TILE_MAX rows, each rounded up to KV_ROUND (PAGED_KV_ROUND for paged rows;
    K = 1152 → 2 × 576, not 1024 + 128), at least 128. The golden tiles the same way (its
    bf16 probabilities depend on the running max at each tile)."""
    k = max(1, rows_per_token)
    n = -(-k // KV_TILE_MAX)  # tiles
    per_tile = -(-k // n)
    r = PAGED_KV_ROUND if paged else KV_ROUND
    return max(128, -(-per_tile // r) * r)


def finalize_heads(head_dim: int) -> int:
    """Heads per vector tile of the finalize (acc / l, bf16, inverse RoPE): about three fp32
    [heads, head_dim] operands live in a vector core's unified buffer at once — 32 heads at
    head_dim 512 (64 overflow it)."""
    return max(1, UB_BYTES // (3 * 4 * head_dim))


# heads per vector tile of the online softmax's fp32 scores [tt, H, kt]: as many as fit in
# SCORE_TILE_BYTES, at most SCORE_HEADS_MAX, at least 16. A vector task is priced per tile,
# not per byte, so wider tiles are cheaper where the rows are narrow: FLASH SWA decode (160
# columns) 282.7 -> 263.8 µs of kernel with 64 heads (32: 267.7), PRO 582.5 -> 520.3 (128
# heads: 529.5); wide rows keep 16 (PRO CSA decode, 576 columns, with 32: 1249.8 -> 1256.9
# µs total; FLASH HCA 704 columns 475.7 -> 471.8, PRO 758.9 -> 759.7)
SCORE_TILE_BYTES = UB_BYTES // 4
SCORE_HEADS_MAX = 64


def score_heads(heads: int, kt: int) -> int:
    """Heads per vector tile of the online softmax over kt-row tiles (`SCORE_TILE_BYTES`)."""
    hv = 16
    while hv * 2 <= SCORE_HEADS_MAX and hv * 2 * kt * 4 <= SCORE_TILE_BYTES:
        hv *= 2
    return min(heads, hv)


def attn_tile_tokens(tokens: int) -> int:
    """Query tokens per attention tile for a call of `tokens` tokens."""
    # 16-token attention tiles: twice as many independent gather → softmax → P·V chains as
    # 32-token ones, which the scheduler overlaps better (FLASH decode at 64K: CSA 496 → 466
    # µs, HCA 501 → 463, HCA PRO 819 → 763; prefill T=1024 at 64K: HCA 3231 → 3003, CSA 2994
    # → 2800, but HCA prefill from 0 2227 → 2265; 8-token tiles: CSA 648)
    return 8 if tokens <= 8 else 16


def share_group(compress_ratio: int, batch: int, seq: int, paged: bool = False) -> int:
    """Tokens per row-sharing group for a call of `batch` requests × `seq` tokens on a layer
    of `compress_ratio`: runs of consecutive tokens of one request whose window rows and
    compressed entries the kernel reads once for the whole run (`shared_segment`) — the
    attention tile for one request (a prefill chunk), the request's S tokens in a decode
    step when S divides the tile. CSA shares a run's window rows only (each token keeps its
    own top-k columns: `build_sparse_attn_kernel(per_token_compressed=True)`), and only in
    a one-request call of at least one tile (a prefill chunk: its tokens' windows overlap
    in all but a few rows; FLASH CSA decode B=64 × S=2 at 64K in runs of 2: 587.0 → 646.9
    µs total, PRO B=1 × S=2 padded to a run of 8: 453.5 → 468.5 µs of kernel).
    Calls where a run would cross a request: 1 (per token). paged (a decode step whose
    window rows are its ring page and step, `paged_window_rows`): SWA runs too, their
    window being W + S columns whatever the run.
    """
    if seq == 1:
        return 1
    tt = attn_tile_tokens(batch * seq)
    if compress_ratio == 4:
        return tt if batch == 1 and seq >= tt else 1
    if compress_ratio == 0 and seq < tt and not paged:
        # SWA decode: a short run's W − 1 + S window rows pad to a wider tile than a token's W
        # (FLASH B=64, S=2: 383 µs per token, 418 in runs of 2)
        return 1
    if batch == 1 or seq % tt == 0:
        return tt
    return seq if tt % seq == 0 else 1


def paged_window(compress_ratio: int) -> bool:
    """Whether a decode step on a layer of `compress_ratio` reads its window as paged rows
    (`paged_window_rows`: each request's ring page and step rows as views of the caches,
    nothing gathered): SWA and HCA, whose step tokens share their window in runs
    (`share_group`). CSA keeps the gathered window: its tokens attend per token, and the
    paged rows' two extra columns widen its 640-column tiles to 672 (FLASH decode at 64K:
    kernel 411.5 → 440.8 µs, total 554.8 → about 553 with the smaller gather charge)."""
    return compress_ratio != 4


# pypto 0.2.0's cost model fails to take in ("Errcode: FFFFFF", CostModel::ParseInput::
# BuildFunction: a leaf function's op sequence longer than its tile ops) the kernel of
# 128 heads over two or more row tiles (PRO CSA decode at 64K: 1152 columns); a lower
# partition bound splits its vector work into smaller leaf functions and it runs. Only
# there: elsewhere the default passes (FLASH CSA decode modelled the same span under either
# bound when it was tried, README)
WIDE_PG_UPPER_BOUND = 2000


def default_tiling(cfg, tokens: int = 1, rows_per_token: int = 128, paged: bool = False) -> AttnTiling:
    """Tiles for `cfg` and a call of `tokens` query tokens with index rows of
    `rows_per_token` columns (the kernel is built per call; `paged`: paged window rows):
    attention over tiles of 8 or 16 tokens and `kv_tile` rows, the output projection over
    up to 256 tokens at once."""
    h = cfg.num_heads
    m = max(16, min(h, 64))
    tt = attn_tile_tokens(tokens)
    # the projection weights are streamed once per output tile: 256 tokens for long chunks
    # (128 → 256 took FLASH T=1024 from 2406 to 2344 µs; the host pads T to a multiple of
    # `to`, so shorter calls keep 128 and waste less padding)
    to = min((256 if tokens >= 1024 else 128) // tt * tt, -(-tokens // tt) * tt)
    mo = max(16, min(128, to))
    kt = kv_tile(rows_per_token, paged)
    nk = max(1, -(-rows_per_token // kt))
    # more than 64 heads over two or more row tiles (PRO CSA decode): the lower partition
    # bound, and the step's kv gathered over the whole window — the ring-only segment
    # (`step_columns`) modelled slower there (kernel 1132 → 1170 µs, total 1412 → 1426),
    # where it is faster elsewhere (FLASH SWA decode total 369 → 357 µs, PRO 668 → 622)
    wide = h > 64 and nk > 1
    na = balanced_n_tile(cfg.o_lora_rank, cfg.o_groups, m=mo)
    nb = balanced_n_tile(cfg.hidden_size, 1, m=mo)
    return AttnTiling(tt=tt, to=to, kt=kt, nk=nk, hv_s=score_heads(h, kt),
                      hv_o=min(h, finalize_heads(cfg.head_dim)),
                      # whole-row L1 tiles (k = D for q·kᵀ, k = kt for p·v): fewer, larger copies
                      cube_s=((m, m), (128, cfg.head_dim), (256, 256)), cube_pv=((m, m), (128, kt), (128, 256)),
                      # weight-streaming projections: column tiles that fill whole waves of cube cores
                      cube_oa=((mo, mo), (128, 512), (na, na)), cube_ob=((mo, mo), (128, 512), (nb, nb)),
                      pg_upper_bound=WIDE_PG_UPPER_BOUND if wide else 0, step_split=not wide)


def pad_rows(rows: torch.Tensor, tt: int, kt: int) -> torch.Tensor:
    """Pad [T, K] physical rows with −1 to multiples of (tt, kt) (at least one kt tile)."""
    T, K = rows.shape
    Tp = -(-T // tt) * tt
    Kp = max(kt, -(-K // kt) * kt)
    out = torch.full((Tp, Kp), -1, dtype=torch.int32)
    out[:T, :K] = rows.to(torch.int32)
    return out


def sink_softmax_tile(qt, kt_rows, ids, state, sink, *, scale: float, tl: AttnTiling, h: int, d: int):
    """One tile of kt gathered rows [tt, kt, D] bf16 (ids [tt, kt] i32, −1 = none) folded into
    the online-softmax state (running max [tt, H, 1], denominator [tt, H, 1], accumulator
    [tt, H, D], fp32), returned as a new state. `state=None` starts from the sink: running
    max = the sink logit, denominator = exp(sink − m) (the sink as a zero-valued key), no
    accumulator pass. Scores in fp32 with a −1e30 bias on masked rows, P rounded to bf16
    before P·V with fp32 accumulation."""
    F32, BF16 = pypto.DT_FP32, pypto.DT_BF16
    tt, kt = tl.tt, tl.kt
    pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_s])
    s = pypto.matmul(qt, kt_rows, F32, b_trans=True)  # [tt, H, kt]
    pypto.set_vec_tile_shapes(1, kt)
    bias = pypto.mul(pypto.minimum(pypto.cast(ids, F32), 0.0), 1e30)  # 0 / -1e30
    pypto.set_vec_tile_shapes(1, tl.hv_s, kt)
    s = pypto.add(pypto.mul(s, scale), pypto.reshape(bias, [tt, 1, kt]))
    if state is None:
        pypto.set_vec_tile_shapes(1, h, 1)
        m_old = pypto.expand_clone(sink, [tt, h, 1])
        pypto.set_vec_tile_shapes(1, tl.hv_s, kt)
    else:
        m_old, l_old, acc = state
    m_new = pypto.maximum(m_old, pypto.amax(s, -1, keepdim=True))
    alpha = pypto.exp(pypto.sub(m_old, m_new))  # the first tile: exp(sink − m), the sink's share
    p = pypto.exp(pypto.sub(s, m_new))
    l_new = pypto.sum(p, -1, keepdim=True)
    l_new = pypto.add(alpha if state is None else pypto.mul(l_old, alpha), l_new)
    pb = pypto.cast(p, BF16, pypto.CastMode.CAST_RINT)
    pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_pv])
    pv = pypto.matmul(pb, kt_rows, F32)  # [tt, H, D]
    if state is None:
        return m_new, l_new, pv
    pypto.set_vec_tile_shapes(1, tl.hv_o, d)
    return m_new, l_new, pypto.add(pypto.mul(acc, alpha), pv)


# columns per vector tile of the [tt, n] index math: a comparison's bool output takes 32×
# its element count in the unified buffer ([8, 512] overflowed it)
IDX_TILE = 128
# rows per vector tile of the selects on gathered bf16 rows [tt, n, D]: 16, or 32 where
# `row_tile` allows (the compressed rows' select: FLASH CSA decode at 64K 466 → 443 µs;
# n = 40, 48 fail with 32; the window's one select likewise, except on a tile that is a
# single run, see `_window_rows`); 64 rows overflow the unified buffer
ROW_TILE = 16


def row_tile(n: int) -> int:
    """Rows per vector tile of a select on a segment of n gathered rows (the compressed
    rows'; the window's where a tile holds several tokens or runs)."""
    return min(n, 32 if n >= 64 else ROW_TILE)


META_COLS = 8  # per-token f32 metadata columns of the kernel (`token_meta`)
# column of each per-token quantity in `meta`
M_REQ_BASE, M_SLOT, M_VISIBLE, M_RING_ROWS, M_CMP_PAGES, M_CMP_BASE, M_OWN = range(7)


def _ring_resolve(ring_bt, ids, req, meta, *, tt: int, n: int, w: int):
    """Ring slots' resolution: logical ids [tt, n] i32 → (ids f32, ring row f32, ring-ok
    bool), each [tt, n]: slot r of token t is row page·W + r, page = its request's
    block-table entry; selected where 0 ≤ r < W and the row is inside the ring cache."""
    F32 = pypto.DT_FP32
    pypto.set_vec_tile_shapes(tt, min(n, IDX_TILE))
    x = pypto.cast(ids, F32)
    page = pypto.cast(pypto.index_select(ring_bt, 0, req), F32)  # [tt, 1]
    ring_row = pypto.add(x, pypto.mul(page, float(w)))  # [tt, n]
    ring_ok = pypto.logical_and(pypto.logical_and(pypto.ge(x, 0.0), pypto.lt(x, float(w))),
                                pypto.logical_and(pypto.ge(ring_row, 0.0),
                                                  pypto.lt(ring_row, pypto.view(meta, [tt, 1], [0, M_RING_ROWS]))))
    return x, ring_row, ring_ok


def _ring_only(ring_bt, ids, req, meta, *, tt: int, n: int, w: int):
    """Ring-only columns' resolution (`ring_segment`): → (ring row i32 in range, selected
    f32 0/1), each [tt, n]."""
    _, ring_row, ring_ok = _ring_resolve(ring_bt, ids, req, meta, tt=tt, n=n, w=w)
    return pypto.cast(pypto.where(ring_ok, ring_row, 0.0), pypto.DT_INT32), pypto.where(ring_ok, 1.0, 0.0)


def _step_resolve(x, meta, *, tt: int, w: int):
    """The step's kv of window columns with ids x [tt, n] f32: (overlay s' = id − W, selected
    bool: 0 ≤ s' ≤ the token's own slot)."""
    y = pypto.sub(x, float(w))
    return y, pypto.logical_and(pypto.ge(y, 0.0), pypto.le(y, pypto.view(meta, [tt, 1], [0, M_SLOT])))


def _window_keep(ring_bt, ids, req, meta, *, tt: int, n: int, w: int):
    """Window columns' mask alone (a run's tokens' masks, `shared_segment`): [tt, n] f32 1
    where a column selects a row from the ring or the step, else 0."""
    x, _, ring_ok = _ring_resolve(ring_bt, ids, req, meta, tt=tt, n=n, w=w)
    _, ov_ok = _step_resolve(x, meta, tt=tt, w=w)
    return pypto.add(pypto.where(ring_ok, 1.0, 0.0), pypto.where(ov_ok, 1.0, 0.0))  # the two exclude each other


def _window_resolve(ring_bt, ids, req, meta, *, tt: int, n: int, w: int):
    """Window columns' resolution: logical ids [tt, n] i32 → (ring row i32, step row i32,
    ring-selected f32 0/1, step-selected f32 0/1), each [tt, n] (see `window_segment`)."""
    I32 = pypto.DT_INT32
    x, ring_row, ring_ok = _ring_resolve(ring_bt, ids, req, meta, tt=tt, n=n, w=w)
    y, ov_ok = _step_resolve(x, meta, tt=tt, w=w)
    ov_row = pypto.add(y, pypto.view(meta, [tt, 1], [0, M_REQ_BASE]))
    ri = pypto.cast(pypto.where(ring_ok, ring_row, 0.0), I32)
    # a column that reads no step row takes the token's own (its run's first) step row,
    # which the token itself references (see `_window_rows`)
    oi = pypto.cast(pypto.where(ov_ok, ov_row, pypto.view(meta, [tt, 1], [0, M_OWN])), I32)
    return ri, oi, pypto.where(ring_ok, 1.0, 0.0), pypto.where(ov_ok, 1.0, 0.0)


def _keep_bias(keep):
    """0 where a column selects a row (keep [tt, n] f32 1), −1e30 where it selects nothing (0)."""
    return pypto.mul(pypto.sub(keep, 1.0), 1e30)


def _window_bias(fr, fo):
    """0 where a window column selects a row (from the ring or the step), −1e30 where it
    selects nothing."""
    return _keep_bias(pypto.add(fr, fo))


def _window_rows(ring, step, ri, oi, fr, *, tt: int, n: int, d: int):
    """Both sources gathered over the window columns and each column's row selected: the
    ring's where the column reads the ring, else the step's. One select: a column that
    reads neither holds the step row of the token itself (its run's first token: every
    token of a run references it), which the −1e30 bias masks; a NaN / Inf there is in a
    row the token references, so it reaches the output through that reference anyway,
    and a ring row no token references (the ring gather's clamp) is never selected."""
    pypto.set_vec_tile_shapes(1, min(n, IDX_TILE), 1)  # [.., 1] lanes pad to 32 bytes
    kr = pypto.gt(pypto.reshape(fr, [tt, n, 1]), 0.5)
    pypto.set_vec_tile_shapes(1, 16, d)
    g_ring = pypto.index_select(ring, 0, ri)  # [tt, n, D]
    g_step = pypto.index_select(step, 0, oi)
    # 32-row tiles (`row_tile`) where a tile holds several tokens' or runs' rows (decode,
    # per-token prefill); a tile that is one run (a prefill chunk's 16 tokens) keeps 16
    # (FLASH prefill HCA T=1024 from 0: 1557 µs on 32-row tiles, 1521 on 16)
    pypto.set_vec_tile_shapes(1, row_tile(n) if tt > 1 else min(n, ROW_TILE), d)
    return pypto.where(kr, g_ring, g_step)


def window_segment(ring, step, ring_bt, ids, req, meta, *, tt: int, n: int, w: int, d: int):
    """Window columns of a tile: logical ids [tt, n] i32 (−1 none; [0, W) ring slot;
    [W, W+S) the step's token s') → (rows [tt, n, D] bf16, bias [tt, n] f32 0 / −1e30).
    Ring slot r of token t: row page·W + r of the ring cache viewed [P·W, D] (page = the
    request's block-table entry, gathered here; a page outside [0, P) selects nothing).
    Overlay s' ≤ s_t: row req·S + s' of the step's kv. Both sources are gathered over the
    window columns and each column's row selected (one select, not a multiply); every other
    column selects nothing from the caches: it holds the token's own step row (its run's
    first token's, which every token of the run references) under the −1e30 bias, so a
    NaN / Inf in a cache row no token references never reaches the output."""
    ri, oi, fr, fo = _window_resolve(ring_bt, ids, req, meta, tt=tt, n=n, w=w)
    bias = _window_bias(fr, fo)
    return _window_rows(ring, step, ri, oi, fr, tt=tt, n=n, d=d), bias


def ring_segment(ring, ring_bt, ids, req, meta, *, tt: int, n: int, w: int, d: int):
    """Window columns that read the ring only (`tile_segments`' "r": before the last
    `step_columns` of the window, where no token's step row can be): ring rows gathered
    and selected as `window_segment`'s, a column that reads no ring row → a zero row under
    the −1e30 bias; the step's kv is not gathered for them."""
    ri, fr = _ring_only(ring_bt, ids, req, meta, tt=tt, n=n, w=w)
    bias = _keep_bias(fr)  # on the index math's [tt, n] tiles (after the select it would take its [1, 16] ones)
    return _select_rows(ring, ri, fr, tt=tt, n=n, d=d, rt=ring_row_tile(n)), bias


def ring_row_tile(n: int) -> int:
    """Rows per vector tile of a ring-only segment's select: 32 where they divide its n
    rows, else 16 (FLASH SWA decode, 112 ring-only rows: 332 µs on 32-row tiles, 324 on 16)."""
    return row_tile(n) if n % 32 == 0 else min(n, ROW_TILE)


def _select_rows(src, index, keep, *, tt: int, n: int, d: int, rt: int = 0):
    """src rows at index [tt, n] i32 (in range) → [tt, n, D], rows where keep [tt, n] f32 is 0
    replaced by zeros (a select) on vector tiles of rt rows (default `row_tile`)."""
    pypto.set_vec_tile_shapes(1, min(n, IDX_TILE), 1)  # [.., 1] lanes pad to 32 bytes
    k3 = pypto.gt(pypto.reshape(keep, [tt, n, 1]), 0.5)
    pypto.set_vec_tile_shapes(1, 16, d)
    g = pypto.index_select(src, 0, index)  # [tt, n, D]
    pypto.set_vec_tile_shapes(1, rt or row_tile(n), d)
    return pypto.where(k3, g, 0.0)


def _compressed_resolve(cmp_bt, ids, req, meta, *, tt: int, n: int, blk: int, cap: int):
    """Compressed columns' resolution: logical ids [tt, n] → (row [tt, n] i32 in range,
    selected [tt, n] f32 0/1) (see `compressed_segment`)."""
    F32, I32 = pypto.DT_FP32, pypto.DT_INT32
    pypto.set_vec_tile_shapes(tt, min(n, IDX_TILE))
    c = pypto.sub(pypto.cast(ids, F32), pypto.view(meta, [tt, 1], [0, M_CMP_BASE]))
    c_ok = pypto.logical_and(pypto.logical_and(pypto.ge(c, 0.0), pypto.lt(c, float(cap))),
                             pypto.lt(c, pypto.view(meta, [tt, 1], [0, M_VISIBLE])))
    cs = pypto.where(c_ok, c, 0.0)
    bi = pypto.floor(pypto.mul(cs, 1.0 / blk))  # exact: blk a power of two, c < 2^24
    off = pypto.sub(cs, pypto.mul(bi, float(blk)))
    pypto.set_vec_tile_shapes(tt, -(-cmp_bt.shape[1] // 8) * 8)  # whole 32-byte blocks
    tbl = pypto.index_select(cmp_bt, 0, req)  # [tt, M] the tokens' table rows
    pypto.set_vec_tile_shapes(tt, min(n, IDX_TILE))
    page = pypto.gather(tbl, -1, pypto.cast(bi, I32))  # [tt, n] i32
    pf = pypto.cast(page, F32)
    ok = pypto.logical_and(c_ok, pypto.logical_and(pypto.ge(pf, 0.0),
                                                   pypto.lt(pf, pypto.view(meta, [tt, 1], [0, M_CMP_PAGES]))))
    # page ids and offsets are exact in fp32; the row itself (up to P2·blk, past 2^24 at 1M
    # context) in int32
    row = pypto.add(pypto.mul(pypto.cast(pypto.where(ok, pf, 0.0), I32), blk),
                    pypto.cast(pypto.where(ok, off, 0.0), I32))
    return row, pypto.where(ok, 1.0, 0.0)


def compressed_segment(cmp, cmp_bt, ids, req, meta, *, tt: int, n: int, blk: int, cap: int, d: int):
    """Compressed columns of a tile: logical ids [tt, n] i32 (≥ W+S: entry c = id − W − S)
    → (rows [tt, n, D] bf16, bias [tt, n] f32). Entry c of token t is row
    page·blk + c % blk of the compressed cache viewed [P2·blk, D], page =
    cmp_bt[req_t, c // blk]; it selects nothing unless 0 ≤ c < min(visible_t, capacity) and
    the page is in [0, P2) (clamped index, zero row, −1e30 bias: see `window_segment`)."""
    row, fk = _compressed_resolve(cmp_bt, ids, req, meta, tt=tt, n=n, blk=blk, cap=cap)
    bias = _keep_bias(fk)
    return _select_rows(cmp, row, fk, tt=tt, n=n, d=d), bias


def shared_segment(ring, step, ring_bt, cmp, cmp_bt, kind: str, ids, gids, req, greq, meta, gmeta, *, tt: int,
                   groups: int, n: int, w: int, blk: int, cap: int, d: int):
    """A segment of a tile whose tokens come in `groups` groups of tt // groups tokens that
    share one row set (`share_group`): each group's rows are resolved from its union row
    gids [groups, n] (group metadata greq / gmeta) and gathered once → [groups, n, D]; each
    token's bias [tt, n] comes from its own logical ids (index math, no gather). The
    window's segments of a run, and HCA's compressed ones (CSA's top-k columns are each
    token's own: `compressed_segment`, per token)."""
    if kind == "r":
        ri, fr = _ring_only(ring_bt, gids, greq, gmeta, tt=groups, n=n, w=w)
        rows = _select_rows(ring, ri, fr, tt=groups, n=n, d=d, rt=ring_row_tile(n))
        _, _, tok = _ring_resolve(ring_bt, ids, req, meta, tt=tt, n=n, w=w)  # each token's mask only
        return rows, _keep_bias(pypto.where(tok, 1.0, 0.0))
    if kind == "w":
        ri, oi, fr, fo = _window_resolve(ring_bt, gids, greq, gmeta, tt=groups, n=n, w=w)
        rows = _window_rows(ring, step, ri, oi, fr, tt=groups, n=n, d=d)
        return rows, _keep_bias(_window_keep(ring_bt, ids, req, meta, tt=tt, n=n, w=w))  # each token's mask only
    row, fk = _compressed_resolve(cmp_bt, gids, greq, gmeta, tt=groups, n=n, blk=blk, cap=cap)
    rows = _select_rows(cmp, row, fk, tt=groups, n=n, d=d)
    _, tk = _compressed_resolve(cmp_bt, ids, req, meta, tt=tt, n=n, blk=blk, cap=cap)
    return rows, _keep_bias(tk)


def paged_segment(ring_v, step_v, pbase, wkeep, wbias, *, tt: int, groups: int, off, base, a: int, n: int, w: int,
                  s: int, d: int):
    """Window columns [a, a + n) of paged rows (`paged_window_rows`: ring slot j, or the
    step's token s' at W + s') for a tile of tt tokens at `off` in `groups` row sets
    (tt: per token; fewer: runs of one request, `share_group`) from `base`: each set's
    ring page and step rows read in place as views of the caches (ring_v / step_v [1,
    rows, D], from its pbase row: the page's first row and its request's first step row,
    `page_bases`), zeros after them, each column's row kept where the set's wkeep [·, n, 1]
    f32 is 1 and zero elsewhere (a select: a NaN in a slot no token of the set takes
    never reaches an output) → (rows [groups, n, D] bf16, each token's bias [tt, n] f32
    from wbias; `window_masks`)."""
    pypto.set_vec_tile_shapes(1, min(n, IDX_TILE), 1)  # [.., 1] lanes pad to 32 bytes
    k3 = pypto.gt(pypto.view(wkeep, [groups, n, 1], [base, a, 0]), 0.5)
    sets = []
    ring_n = max(0, min(a + n, w) - a)  # the columns from the ring page, then from the step
    lo, hi = max(a, w), min(a + n, w + s)
    step_n = max(0, hi - lo)
    for k in range(groups):
        parts = []
        if ring_n:
            parts.append(pypto.view(ring_v, [1, ring_n, d], [0, pbase[base + k, 0] + a, 0]))
        if step_n:
            parts.append(pypto.view(step_v, [1, step_n, d], [0, pbase[base + k, 1] + (lo - w), 0]))
        pypto.set_vec_tile_shapes(1, row_tile(n), d)
        if n > ring_n + step_n:
            parts.append(pypto.full([1, n - ring_n - step_n, d], 0.0, pypto.DT_BF16))
        rows = parts[0] if len(parts) == 1 else pypto.concat(parts, 1)
        sets.append(pypto.where(pypto.view(k3, [1, n, 1], [k, 0, 0]), rows, 0.0))
    return (sets[0] if groups == 1 else pypto.concat(sets, 0)), pypto.view(wbias, [tt, n], [off, a])


# compressed-only row tiles from which the kernel loops over them (`looped_row_tiles`)
# instead of unrolling them: an unrolled kernel's graph grows with its row tiles, and the
# simulator's for HCA decode at 1M context (9 row tiles) grew until it was killed for memory
LOOP_MIN_TILES = 2
# looped row tiles folded per iteration: the tiles of one iteration gather, select and run
# q·kᵀ side by side, only their softmax updates wait on each other (FLASH HCA decode at 1M:
# kernel 3170.8 µs folding one tile per iteration, 2529.1 folding two, 2433.2 four, whose
# simulator held 17.9 GB where two held 12.5)
LOOP_UNROLL = 2
# the partition bound of a kernel that folds LOOP_UNROLL tiles per iteration: with pypto's
# own (10000) its cost model refuses the loop body ("Errcode: FFFFFF", as for the wide
# kernels below); 2000 builds but models slower (FLASH HCA decode at 1M: 2924.3 µs). PRO
# at 1M (a wide kernel, 2000 before) takes it too: kernel 6190.7 -> 4437.9 µs, 18.6 GB
LOOP_PG_UPPER_BOUND = 5000


def looped_row_tiles(tl: AttnTiling, window_cols: int, compressed: bool) -> int:
    """Row tiles the kernel runs in a loop (0: every row tile unrolled): the compressed-only
    ones after the first ceil(window_cols / kt) (`window_span` columns), when there are at
    least LOOP_MIN_TILES of them."""
    n = tl.nk - -(-window_cols // tl.kt)
    return n if compressed and n >= LOOP_MIN_TILES else 0


def loop_plan(tl: AttnTiling, looped: int) -> tuple[int, int, int]:
    """(tiles folded per iteration, tiles in the loop, partition bound) of a kernel whose
    rows have `looped` compressed-only row tiles to loop over (`looped_row_tiles`):
    LOOP_UNROLL per iteration where there are that many (the `looped` % LOOP_UNROLL others
    are unrolled before the loop) under LOOP_PG_UPPER_BOUND, also where the tiling sets its
    own (PRO's wide kernels: measured at 1M with LOOP_PG_UPPER_BOUND); otherwise one per
    iteration and the tiling's bound (0: pypto's own)."""
    if looped < LOOP_UNROLL:
        return 1, looped, tl.pg_upper_bound
    return LOOP_UNROLL, looped // LOOP_UNROLL * LOOP_UNROLL, LOOP_PG_UPPER_BOUND


# the ring-only columns of a window end on a multiple of this (`step_columns`)
STEP_ROUND = 16


def step_columns(window_cols: int, step_tokens: int = 0, group: int = 1) -> int:
    """Trailing window columns of an index row that may read the step's kv. A token's step
    rows are its request's positions from the step's first on, at the end of its row
    (`window_indices`): the last S columns of a token's row; with runs of `group` tokens
    (which may be longer than the step: a padded one-request call), the last
    group·⌈S / group⌉. The columns before them read the ring only, and the step's kv is
    gathered for these only, rounded so that the ring-only part is a multiple of
    STEP_ROUND. 0 (or S ≥ the window): every window column."""
    if step_tokens <= 0:
        return window_cols
    tail = group * -(-step_tokens // group)
    return window_cols - max(0, window_cols - tail) // STEP_ROUND * STEP_ROUND


def window_layout(window: int, group: int = 1, step_tokens: int = 0, step_split: bool = True,
                  per_token_compressed: bool = False, paged: bool = False) -> tuple[int, int]:
    """(ws, tail) of the index rows a kernel built with these reads: ws columns before the
    compressed ones (`window_columns`; CSA runs, `per_token_compressed` with group > 1:
    `window_span`, the window padded with −1) and, of them, the last `tail` that may read
    the step's kv (`step_columns`, every window column without `step_split`, plus the
    padding). paged (`paged_window_rows`): W + S window columns, all one paged segment."""
    ps = step_tokens if paged else 0
    ww = window_columns(window, group, ps)
    ws = window_span(window, group, 4, ps) if per_token_compressed and group > 1 else ww
    tail = step_columns(ww, step_tokens, group) if step_split and not paged else ww
    return ws, tail + ws - ww


def paged_columns(tl: AttnTiling, window_cols: int, compressed: bool) -> int:
    """Columns of the paged window masks (`window_masks`): the paged segment's, the window
    columns, and without a compressed cache every column (the row's padding joins it)."""
    return window_cols if compressed else tl.nk * tl.kt


def tile_segments(j: int, kt: int, w: int, compressed: bool, step_cols: int | None = None) -> list:
    """Column segments [(kind, start, width)] of online-softmax tile j: of the window
    columns [0, w), the last `step_cols` (default all: `step_columns`) gathered from the
    ring and the step's kv ("w") and the others from the ring alone ("r"); the columns
    after the window from the compressed cache ("c"), or without a compressed cache part of
    the last window segment (−1 columns). The kernel concatenates a tile's segments into
    one [tt, kt, D] tile."""
    a, b = j * kt, (j + 1) * kt
    tail = w if step_cols is None else min(w, step_cols)
    if compressed:
        spans = [("r", 0, w - tail), ("w", w - tail, w), ("c", w, b)]
    else:
        spans = [("r", 0, w - tail), ("w", w - tail, max(b, w))]
    segs = []
    for kind, lo, hi in spans:
        lo, hi = max(a, lo), min(b, hi)
        if hi > lo:
            segs.append((kind, lo, hi - lo))
    return segs


def fold_segments(qs: dict, segs, state, sink, *, scale: float, tl: AttnTiling, h: int, d: int):
    """One online-softmax tile made of column segments [(rows, bias [tt, n] f32, n, group)]
    folded into the state (running max, denominator, accumulator; None starts from the
    sink, see `sink_softmax_tile`): the running max and the bf16 probabilities are the
    tile's as a whole (the golden's `kv_tile` tiles), the segments' P·V summed in fp32.
    A segment of group 1 holds each token's own rows [tt, n, D] and takes q as qs[1]
    [tt, H, D]; one of group g > 1 holds rows its tokens share in groups of g
    (`shared_segment`) [tt / g, n, D] and takes qs[g] [tt / g, g·H, D] (the same memory):
    both matmuls run per group (M = g·H, each row read once for the group) and the scores
    / P·V are seen per token ([tt, H, ·], the same memory) by the vector work."""
    F32, BF16 = pypto.DT_FP32, pypto.DT_BF16
    tt = tl.tt
    scores = []
    for rows, bias, n, g in segs:
        pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_s])
        s = pypto.matmul(qs[g], rows, F32, b_trans=True)  # [tt, H, n] ([tt / g, g·H, n])
        if g > 1:
            s = pypto.reshape(s, [tt, h, n])
        pypto.set_vec_tile_shapes(tt, n)
        b3 = pypto.reshape(bias, [tt, 1, n])
        pypto.set_vec_tile_shapes(1, tl.hv_s, n)
        scores.append(pypto.add(pypto.mul(s, scale), b3))
    if state is None:
        pypto.set_vec_tile_shapes(1, h, 1)
        m_old = pypto.expand_clone(sink, [tt, h, 1])
    else:
        m_old, l_old, acc = state
    m_new = m_old
    for s, (_, _, n, _) in zip(scores, segs):
        pypto.set_vec_tile_shapes(1, tl.hv_s, n)
        m_new = pypto.maximum(m_new, pypto.amax(s, -1, keepdim=True))
    alpha = pypto.exp(pypto.sub(m_old, m_new))  # the first tile: exp(sink − m), the sink's share
    l_new = alpha if state is None else pypto.mul(l_old, alpha)
    pv_sum = None
    for s, (rows, _, n, g) in zip(scores, segs):
        pypto.set_vec_tile_shapes(1, tl.hv_s, n)
        p = pypto.exp(pypto.sub(s, m_new))
        l_new = pypto.add(l_new, pypto.sum(p, -1, keepdim=True))
        pb = pypto.cast(p, BF16, pypto.CastMode.CAST_RINT)
        if g > 1:
            pb = pypto.reshape(pb, [tt // g, g * h, n])
        pypto.set_cube_tile_shapes(*[list(t) for t in _cube_pv(tl, n)])
        pv = pypto.matmul(pb, rows, F32)  # [tt, H, D] ([tt / g, g·H, D])
        if g > 1:
            pv = pypto.reshape(pv, [tt, h, d])
        if pv_sum is not None:
            pypto.set_vec_tile_shapes(1, tl.hv_o, d)
            pv = pypto.add(pv_sum, pv)
        pv_sum = pv
    if state is None:
        return m_new, l_new, pv_sum
    pypto.set_vec_tile_shapes(1, tl.hv_o, d)
    return m_new, l_new, pypto.add(pypto.mul(acc, alpha), pv_sum)


def _cube_pv(tl: AttnTiling, n: int) -> tuple:
    """P·V cube tiles for a segment of n rows: the whole segment as the L1 k tile."""
    (m0, m1), (k0, _), nn = tl.cube_pv
    k0 = min(k0, n)
    while n % k0 and k0 > 16:  # the L1 k tile must hold whole L0 k tiles
        k0 //= 2
    return (m0, m1), (k0, n), nn


def build_sparse_attn_kernel(cfg, tiling: AttnTiling | None = None, run_mode=None, *, inverse_rope: bool = True,
                             cmp_block_size: int = 0, cmp_table_width: int = 0, group: int = 1,
                             step_tokens: int = 0, per_token_compressed: bool = False, paged_window: bool = False):
    """The sparse-attention kernel for `cfg` (every size from the config), reading the paged
    caches in place:

        kernel(q [T, H, D] bf16, ring [P·W, D] bf16, step [N, D] bf16,
               [cmp [P2·blk, D] bf16, cmp_bt [B, M] i32,]  ring_bt [B, 1] i32,
               ring_v [1, P·W, D] bf16, step_v [1, N, D] bf16, pbase [T / group, 2] i32,
               wkeep [T / group, NW, 1] f32, wbias [T, NW] f32,
               idx [T, K] i32, req [T] i32, meta [T, 8] f32, gidx, greq, gmeta, sink [1, H, 1] f32,
               cos [T, R] f32, sin [T, R] f32, swap [R] i32, wo_a [G·O, hpg·D] bf16,
               wo_b [hidden, G·O] bf16, out [T, hidden] bf16)

    ring is the ring cache [P, W, D] viewed as rows, step the step's fresh kv, cmp the
    compressed cache [P2, blk, D] viewed as rows with its block table (present when
    `cmp_block_size` > 0; M = `cmp_table_width`), ring_bt the window block table, idx the
    logical index rows (indexing.py's encoding), req the request of each token and meta
    its `token_meta` row. The kernel resolves logical → physical rows itself
    (`window_segment`, `compressed_segment`). cos / sin / swap are the canonical RoPE rows
    of the R rope lanes and their pair swap (`swap_index(R)`); wo_a is [G, O, hpg·D] viewed
    as rows (`grouped_oproj`). T, P·W, N, P2·blk and B are dynamic, T a multiple of `tiling.to`;
    K = `tiling.nk · tiling.kt`: the kernel is built per index-row width. `run_mode` is a
    pypto run mode (`dsv4_core.backends.run_mode`), None builds for the simulator.

    group > 1 (`share_group`): the tokens come in groups of `group` consecutive tokens of
    one request whose index rows share one column layout (`index_rows(group=)`); q is then
    [T / group, group·H, D] (the same memory), and gidx [T / group, K] i32 (each group's
    union row), greq [T / group] i32 and gmeta [T / group, 8] f32 (`group_meta`) resolve
    each group's rows once (`shared_segment`). With group 1 they are not read.

    step_tokens S > 0 (the call's positions [B, S]; a prefill chunk's [1, T]): a request's
    step rows are in its rows' last `step_columns(W − 1 + group, S, group)` window columns;
    the columns before them read the ring alone (`ring_segment`) and the step's kv is
    gathered for the last ones only (a step id in a ring-only column selects nothing).
    0, or a tiling without `step_split`: every window column may read it.

    per_token_compressed (CSA runs): a run shares its window rows only; each token's
    compressed columns are its own top-k, gathered per token and attended with q per token
    ([T, H, D], the same memory). The window part of a row is then `window_span` wide (−1
    padding after the window), so the tokens' own columns start on a whole tile.

    paged_window (a decode step, `paged_window`): the index rows' window columns are paged
    (`paged_window_rows`: W ring slots in the page's order, then the S step tokens), read by
    `paged_segment` from ring_v / step_v (the ring cache and the step's kv again, as [1,
    rows, D]) at each row set's pbase row (`page_bases`), kept by wkeep and biased by wbias
    over their first NW columns (`paged_columns`, `window_masks`). Otherwise those five
    inputs are not read (NW = 1)."""
    tl = tiling or default_tiling(cfg)
    H, D, G, W = cfg.num_heads, cfg.head_dim, cfg.o_groups, cfg.window
    R = cfg.rope_dim
    NOPE = D - R
    OR, GIN, DH = cfg.o_lora_rank, cfg.group_in_dim, cfg.hidden_size
    TT, KT, TO, NK = tl.tt, tl.kt, tl.to, tl.nk
    GR = int(group)
    if GR < 1 or TT % GR:
        raise ValueError(f"group: {GR} must divide the attention tile's {TT} tokens")
    NG = TT // GR
    OWN_C = bool(per_token_compressed) and GR > 1  # compressed columns per token, window per run
    # WS columns before the compressed ones; of them, the last TAIL may read the step's kv
    PAGED = bool(paged_window) and step_tokens > 0
    S = int(step_tokens)
    WS, TAIL = window_layout(W, GR, step_tokens, tl.step_split, OWN_C, PAGED)
    SCALE = float(cfg.softmax_scale)
    BLK, MW = int(cmp_block_size), int(cmp_table_width)
    compressed = BLK > 0
    NL = looped_row_tiles(tl, WS, compressed)  # compressed-only row tiles run in a loop (0: none)
    LOOP = NL > 0
    UN, NLU, pgb = loop_plan(tl, NL)
    passes = {"pg_upper_bound": pgb} if pgb else None
    F32, BF16, I32 = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32
    DYN = pypto.DYNAMIC
    Tn = pypto.Tensor
    NW = paged_columns(tl, WS, compressed) if PAGED else 1  # columns of the paged window masks

    def tile_views(q, req, meta, greq, gmeta, i, u):
        """Views of attention tile u of output tile i: (token offset, req, meta, q by group,
        run offset, run req, run meta)."""
        off = i * TO + u * TT
        rq = pypto.view(req, [TT], [off])
        mt = pypto.view(meta, [TT, META_COLS], [off, 0])
        if GR == 1:
            return off, rq, mt, {1: pypto.view(q, [TT, H, D], [off, 0, 0])}, None, None, None
        goff = i * (TO // GR) + u * NG
        qt = pypto.view(q, [NG, GR * H, D], [goff, 0, 0])
        qs = {GR: qt}
        if OWN_C:
            pypto.set_vec_tile_shapes(1, tl.hv_o, D)
            qs[1] = pypto.reshape(qt, [TT, H, D])
        return (off, rq, mt, qs, goff, pypto.view(greq, [NG], [goff]),
                pypto.view(gmeta, [NG, META_COLS], [goff, 0]))

    def fold_tile(tv, segments, state, ring, step, cmp, cmp_bt, ring_bt, idx, gidx, sink, ring_v, step_v, pbase, wkeep,
                  wbias):
        """Fold one row tile (its column segments [(kind, column, width)]) into the state."""
        off, rq, mt, qs, goff, grq, gmt = tv
        by_group = {}  # the tile's segments by the group their rows are shared in
        for kind, a, w in segments:
            ids = pypto.view(idx, [TT, w], [off, a])
            g = GR if GR > 1 and not (OWN_C and kind == "c") else 1
            if PAGED and kind == "w":
                rows, bias = paged_segment(ring_v, step_v, pbase, wkeep, wbias, tt=TT, groups=TT // g, off=off,
                                           base=off if g == 1 else goff, a=a, n=w, w=W, s=S, d=D)
            elif g > 1:
                gids = pypto.view(gidx, [NG, w], [goff, a])
                rows, bias = shared_segment(ring, step, ring_bt, cmp, cmp_bt, kind, ids, gids, rq, grq, mt, gmt,
                                            tt=TT, groups=NG, n=w, w=W, blk=BLK, cap=BLK * MW, d=D)
            elif kind == "r":
                rows, bias = ring_segment(ring, ring_bt, ids, rq, mt, tt=TT, n=w, w=W, d=D)
            elif kind == "w":
                rows, bias = window_segment(ring, step, ring_bt, ids, rq, mt, tt=TT, n=w, w=W, d=D)
            else:
                rows, bias = compressed_segment(cmp, cmp_bt, ids, rq, mt, tt=TT, n=w, blk=BLK, cap=BLK * MW, d=D)
            by_group.setdefault(g, []).append((rows, bias, w))
        segs = []
        for g, parts_g in by_group.items():
            if len(parts_g) > 1:  # one tile per group: one q·kᵀ and one P·V (modelled faster than
                # a pair of matmuls per segment: 496 vs 550 µs at FLASH CSA decode)
                pypto.set_vec_tile_shapes(1, 16, D)
                rows = pypto.concat([s[0] for s in parts_g], 1)
                pypto.set_vec_tile_shapes(TT, IDX_TILE)
                bias = pypto.concat([s[1] for s in parts_g], 1)
                parts_g = [(rows, bias, sum(s[2] for s in parts_g))]
            segs.append((*parts_g[0], g))
        return fold_segments(tv[3], segs, state, sink, scale=SCALE, tl=tl, h=H, d=D)

    def finalize(off, state, cos, sin, swap, obuf, row):
        """bf16(acc / l) of the attention tile at token `off`, RoPE undone on its last R
        lanes, written to rows [row, row + TT) of the output tile's buffer obuf [TO, H, D]."""
        _, l_st, acc = state
        if not inverse_rope or R == 0:
            pypto.set_vec_tile_shapes(1, tl.hv_o, D)
            pypto.assemble(to_bf16(pypto.div(acc, l_st)), [row, 0, 0], obuf)
            return
        # the rotation on the R rope lanes only: the nope lanes are bf16(acc / l) as they
        # are, and cos / sin broadcast over the heads on R lanes, not D
        if NOPE:
            pypto.set_vec_tile_shapes(1, tl.hv_o, NOPE)
            on = to_bf16(pypto.div(pypto.view(acc, [TT, H, NOPE], [0, 0, 0]), l_st))
            pypto.assemble(on, [row, 0, 0], obuf)
        ct = pypto.view(cos, [TT, R], [off, 0])
        st = pypto.view(sin, [TT, R], [off, 0])
        pypto.set_vec_tile_shapes(TT, R)
        c3 = pypto.reshape(ct, [TT, 1, R])
        s3 = pypto.reshape(st, [TT, 1, R])
        pypto.set_vec_tile_shapes(1, H, R)
        orr = pypto.cast(to_bf16(pypto.div(pypto.view(acc, [TT, H, R], [0, 0, NOPE]), l_st)), F32)
        pypto.assemble(to_bf16(rope_rotate(orr, c3, s3, swap, inverse=True)), [row, 0, NOPE], obuf)

    def project(i, o_buf, wo_a, wo_b, out):
        """The output tile's grouped projection of its attention outputs o_buf [TO, H, D],
        written to out."""
        # grouped output projection once per TO tokens: the weights are read n / TO times
        y = grouped_oproj(o_buf, wo_a, wo_b, tl=tl, tt=TO, g=G, o_rank=OR, gin=GIN)
        pypto.set_vec_tile_shapes(min(TO, 16), min(DH, 1024))
        pypto.assemble(y, [i * TO, 0], out)

    # an attention tile's online-softmax state: running max, denominator, accumulator
    state_shapes = ([TT, H, 1], [TT, H, 1], [TT, H, D])

    def state_tiles(shape):
        pypto.set_vec_tile_shapes(1, tl.hv_o if shape[-1] == D else H, shape[-1])

    def new_state():
        """Kernel-local tensors that carry one attention tile's state across the looped row
        tiles (updated in place: `store_state`)."""
        carried = []
        for shape in state_shapes:
            state_tiles(shape)
            carried.append(pypto.full(shape, 0.0, F32))
        return carried

    def store_state(state, carried):
        for dst, src, shape in zip(carried, state, state_shapes):
            state_tiles(shape)
            dst[:] = src

    def load_state(carried):
        views = []
        for src, shape in zip(carried, state_shapes):
            state_tiles(shape)
            views.append(pypto.view(src, shape, [0, 0, 0]))
        return tuple(views)

    def body(q, ring, step, cmp, cmp_bt, ring_bt, ring_v, step_v, pbase, wkeep, wbias, idx, req, meta, gidx, greq, gmeta,
             sink, cos, sin, swap, wo_a, wo_b, out):
        n = idx.shape[0]  # tokens (q is [n / GR, GR·H, D])
        cache = (ring, step, cmp, cmp_bt, ring_bt, idx, gidx, sink, ring_v, step_v, pbase, wkeep, wbias)
        # straight-line code inside one loop body: pypto runs the code between two loops as
        # one root function and the root functions one after another, so the TO // TT
        # attention tiles and their NK row tiles are unrolled here (a pypto.loop per tile
        # serialised them: 5–8 % of the ceiling), and the scheduler overlaps them
        for i in pypto.loop(n // TO, name="o_tiles", idx_name="i"):
            obuf = pypto.tensor([TO, H, D], BF16)  # the TO // TT tiles' attention outputs, RoPE undone
            if not LOOP:
                for u in range(TO // TT):
                    tv = tile_views(q, req, meta, greq, gmeta, i, u)
                    state = None
                    for j in range(NK):
                        state = fold_tile(tv, tile_segments(j, KT, WS, compressed, TAIL), state, *cache)
                    finalize(tv[0], state, cos, sin, swap, obuf, u * TT)
                project(i, obuf, wo_a, wo_b, out)
                continue
            # long rows (`looped_row_tiles`): the first NK − NLU row tiles (those with window
            # columns, and NL % UN compressed-only ones) unrolled, the other compressed-only
            # ones in a loop whose iterations fold UN (`LOOP_UNROLL`) of them each and carry
            # each attention tile's state in kernel-local tensors. The tiles' views are made
            # once, before the loop (views remade inside it failed to build: "Operation
            # already in a group")
            tvs = [tile_views(q, req, meta, greq, gmeta, i, u) for u in range(TO // TT)]
            carried = [new_state() for _ in tvs]
            for tv, c in zip(tvs, carried):
                state = None
                for j in range(NK - NLU):
                    state = fold_tile(tv, tile_segments(j, KT, WS, compressed, TAIL), state, *cache)
                store_state(state, c)
            for jj in pypto.loop(NLU // UN, name="c_tiles", idx_name="jj"):
                for tv, c in zip(tvs, carried):
                    state = load_state(c)
                    for r in range(UN):  # LOOP_UNROLL tiles per iteration
                        state = fold_tile(tv, [("c", (NK - NLU + r) * KT + jj * (UN * KT), KT)], state, *cache)
                    store_state(state, c)
            for u, (tv, c) in enumerate(zip(tvs, carried)):
                finalize(tv[0], load_state(c), cos, sin, swap, obuf, u * TT)
            project(i, obuf, wo_a, wo_b, out)

    if compressed:
        @pypto.frontend.jit(runtime_options=backends.jit_options(run_mode), pass_options=passes)
        def sparse_attn(q: Tn([DYN, GR * H, D], BF16), ring: Tn([DYN, D], BF16), step: Tn([DYN, D], BF16),
                        cmp: Tn([DYN, D], BF16), cmp_bt: Tn([DYN, MW], I32), ring_bt: Tn([DYN, 1], I32),
                        ring_v: Tn([1, DYN, D], BF16), step_v: Tn([1, DYN, D], BF16), pbase: Tn([DYN, 2], I32),
                        wkeep: Tn([DYN, NW, 1], F32), wbias: Tn([DYN, NW], F32), idx: Tn([DYN, NK * KT], I32),
                        req: Tn([DYN], I32), meta: Tn([DYN, META_COLS], F32),
                        gidx: Tn([DYN, NK * KT], I32), greq: Tn([DYN], I32), gmeta: Tn([DYN, META_COLS], F32),
                        sink: Tn([1, H, 1], F32), cos: Tn([DYN, R], F32), sin: Tn([DYN, R], F32),
                        swap: Tn([R], I32), wo_a: Tn([G * OR, GIN], BF16), wo_b: Tn([DH, G * OR], BF16),
                        out: Tn([DYN, DH], BF16)):
            body(q, ring, step, cmp, cmp_bt, ring_bt, ring_v, step_v, pbase, wkeep, wbias, idx, req, meta, gidx, greq,
                 gmeta, sink, cos, sin, swap, wo_a, wo_b, out)
    else:
        @pypto.frontend.jit(runtime_options=backends.jit_options(run_mode), pass_options=passes)
        def sparse_attn(q: Tn([DYN, GR * H, D], BF16), ring: Tn([DYN, D], BF16), step: Tn([DYN, D], BF16),
                        ring_bt: Tn([DYN, 1], I32), ring_v: Tn([1, DYN, D], BF16), step_v: Tn([1, DYN, D], BF16),
                        pbase: Tn([DYN, 2], I32), wkeep: Tn([DYN, NW, 1], F32), wbias: Tn([DYN, NW], F32),
                        idx: Tn([DYN, NK * KT], I32), req: Tn([DYN], I32),
                        meta: Tn([DYN, META_COLS], F32), gidx: Tn([DYN, NK * KT], I32), greq: Tn([DYN], I32),
                        gmeta: Tn([DYN, META_COLS], F32), sink: Tn([1, H, 1], F32), cos: Tn([DYN, R], F32),
                        sin: Tn([DYN, R], F32), swap: Tn([R], I32), wo_a: Tn([G * OR, GIN], BF16),
                        wo_b: Tn([DH, G * OR], BF16), out: Tn([DYN, DH], BF16)):
            body(q, ring, step, None, None, ring_bt, ring_v, step_v, pbase, wkeep, wbias, idx, req, meta, gidx, greq,
                 gmeta, sink, cos, sin, swap, wo_a, wo_b, out)

    return sparse_attn


def grouped_oproj(o, wo_a, wo_b, *, tl: AttnTiling, tt: int, g: int, o_rank: int, gin: int):
    """o [tt, H, D] bf16 → G per-group matmuls, group k's heads [tt, hpg·D] (a column block of
    o viewed [tt, H·D]) with wo_a's rows [k·O, (k + 1)·O) of [G·O, hpg·D] (b transposed),
    each written to its column block of o_r [tt, G·O] bf16 → o_r · wo_bᵀ → bf16 [tt, hidden].
    No transpose: the groups are column blocks on both sides."""
    BF16 = pypto.DT_BF16
    OR, GIN = o_rank, gin
    pypto.set_vec_tile_shapes(1, 1, min(GIN, 4096))
    o2 = pypto.reshape(o, [tt, g * GIN])
    y = pypto.tensor([tt, g * OR], BF16)
    pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_oa])
    for k in range(g):
        yk = pypto.matmul(pypto.view(o2, [tt, GIN], [0, k * GIN]), pypto.view(wo_a, [OR, GIN], [k * OR, 0]),
                          BF16, b_trans=True)
        pypto.set_vec_tile_shapes(min(tt, 16), min(OR, 1024))
        pypto.assemble(yk, [0, k * OR], y)
    pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_ob])
    return pypto.matmul(y, wo_b, BF16, b_trans=True)


class KernelInputs(NamedTuple):
    """A call as the kernel takes it: the caches as the caller holds them, the logical index
    rows and the canonical RoPE rows at the query positions (`api.kernel_inputs`)."""

    kv: torch.Tensor  # [T, D] bf16 the step's fresh kv
    kv_cache: torch.Tensor  # [P, W, D] bf16 ring pages
    block_table: torch.Tensor  # [B] int the request's ring page
    positions: torch.Tensor  # [B, S] int (prefill: [1, T])
    indices: torch.Tensor  # [T, K] int logical index rows (indexing.py's encoding)
    compress_ratio: int
    cmp_kv: torch.Tensor | None  # [P2, blk, D] bf16
    cmp_block_table: torch.Tensor | None  # [B, M] (prefill [M]) int
    cos: torch.Tensor  # [T, R] fp32
    sin: torch.Tensor
    group: int = 1  # tokens per row-sharing group of the index rows (`share_group`; 1: none)
    paged: bool = False  # window columns in the ring page's order (`paged_window_rows`, a decode step)


def group_meta(idx: torch.Tensor, req: torch.Tensor, meta: torch.Tensor, group: int) -> tuple:
    """The per-group inputs of a kernel built with `group` > 1 from the per-token ones
    (device ops on O(step) metadata, nothing read back): each group's union row gidx
    [Tp / group, K] (a group's rows hold one column layout, each column the same id or −1:
    the max), its request greq and metadata gmeta (the max over its tokens: the last real
    token's slot and visible entries; padding tokens hold zeros — except `M_OWN`, the
    group's first token's own step row, which every token of the group references)."""
    Tp, K = idx.shape
    g = group
    gm = meta.view(Tp // g, g, META_COLS).amax(1)
    gm[:, M_OWN] = meta.view(Tp // g, g, META_COLS)[:, 0, M_OWN]  # the run's first token's step row
    return (idx.view(Tp // g, g, K).amax(1).contiguous(), req.view(Tp // g, g).amax(1).contiguous(),
            gm.contiguous())


def token_meta(ki: KernelInputs, tokens_padded: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-token metadata the kernel resolves rows with, from shapes and positions only
    (nothing read back): req [Tp] i32 (the token's request) and meta [Tp, 8] f32 — req·S
    (its first overlay row in the step's kv), its step slot s, the compressed entries it may
    see ((p+1)//ratio, `visible_entries`), the ring's row count P·W, the compressed cache's
    page count P2, W + S (the first compressed logical index) and its own step row req·S + s
    (`group_meta`: a run's first token's). Padding tokens: request 0, nothing visible (their
    index rows are −1)."""
    B, S = ki.positions.shape
    T = B * S
    W = ki.kv_cache.shape[1]
    req = torch.zeros(tokens_padded, dtype=torch.int32, device=device)
    req[:T] = torch.arange(B, dtype=torch.int32, device=device).repeat_interleave(S)
    meta = torch.zeros(tokens_padded, META_COLS, dtype=torch.float32, device=device)
    meta[:T, M_REQ_BASE] = (req[:T] * S).float()
    meta[:T, M_SLOT] = torch.arange(S, dtype=torch.float32, device=device).repeat(B)
    if ki.compress_ratio:
        meta[:T, M_VISIBLE] = ((on_device(ki.positions.reshape(-1), device) + 1) // ki.compress_ratio).float()
        meta[:, M_CMP_PAGES] = float(ki.cmp_kv.shape[0])
    meta[:, M_RING_ROWS] = float(ki.kv_cache.shape[0] * W)
    meta[:, M_CMP_BASE] = float(W + S)
    meta[:T, M_OWN] = meta[:T, M_REQ_BASE] + meta[:T, M_SLOT]  # the token's own step row
    return req, meta


def _ring_pages(ring_bt: torch.Tensor, reqs: torch.Tensor, pages: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ring page of each request in reqs and whether it is inside the ring cache
    ([0, pages)); device ops, nothing read back."""
    page = ring_bt.reshape(-1)[reqs.long()]
    return page, (page >= 0) & (page < pages)


def page_bases(ring_bt: torch.Tensor, reqs: torch.Tensor, pages: int, window: int, step: int) -> torch.Tensor:
    """[n, 2] i32 for the row sets of requests reqs [n] (tokens, or runs): each one's ring
    page's first row page·W in the ring cache viewed as rows (0 where its block-table entry
    is outside [0, pages): `window_masks` then keeps none of its slots) and its request's
    first row req·S in the step's kv. Device ops on O(step) metadata, nothing read back."""
    page, ok = _ring_pages(ring_bt, reqs, pages)
    return torch.stack([torch.where(ok, page * window, torch.zeros_like(page)), reqs * step], 1).to(torch.int32)


def window_masks(ids: torch.Tensor, req: torch.Tensor, meta: torch.Tensor, ring_bt: torch.Tensor, pages: int,
                 window: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paged window columns' masks from their logical ids [Tp, n] (`paged_window_rows`;
    device ops on O(step) index rows, nothing read back): (keep [Tp / group, n, 1] f32,
    1 where a token of the row set takes the column's row; bias [Tp, n] f32, 0 where the
    token takes it, −1e30 elsewhere). A ring slot j < W is taken where the request's page
    is inside the ring cache, the step's token s' (id W + s') where s' ≤ the token's own
    slot; −1 and any other id take nothing."""
    W = window
    page_ok = _ring_pages(ring_bt, req, pages)[1][:, None]
    y = ids.long() - W
    keep = ((ids >= 0) & (ids < W) & page_ok) | ((y >= 0) & (y <= meta[:, M_SLOT].long()[:, None]))
    bias = torch.where(keep, 0.0, -1e30).to(torch.float32)
    Tp, n = ids.shape
    union = keep.view(Tp // group, group, n).any(1).reshape(Tp // group, n, 1)
    return union.to(torch.float32).contiguous(), bias.contiguous()


def _int32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.int32 else t.to(torch.int32)


def _rows_of(cache: torch.Tensor) -> torch.Tensor:
    """A paged cache [P, n, D] as rows [P·n, D]: a view of the same storage (never a copy)."""
    return cache.view(-1, cache.shape[-1])


def run_sparse_attn(cfg, backend: str, q, ki: KernelInputs, sink, wo_a, wo_b, *, name: str = "sparse_attn",
                    tiling: AttnTiling | None = None, inverse_rope: bool = True, values: bool = True) -> torch.Tensor:
    """Build and launch the pypto kernel on a resolved kernel backend ('sim' or 'npu') with the
    caches as they are (views of their storage), the logical index rows and O(step)
    metadata (`token_meta`); returns out [T, hidden] bf16. q and the index rows are padded
    (copied) only when T is not a multiple of the output tile or K of the row tile. On
    'sim', `dsv4_core.sim.last_run()` holds the cost-model figure; values=False runs the
    cost model alone (out stays zero)."""
    T = q.shape[0]
    K = ki.indices.shape[1]
    tl = tiling or default_tiling(cfg, T, K, ki.paged)
    Tp = -(-T // tl.to) * tl.to
    Kp = max(tl.kt, -(-K // tl.kt) * tl.kt)
    if Kp != tl.nk * tl.kt:
        raise ValueError(f"tiling: nk·kt = {tl.nk}·{tl.kt} must cover the {K} index columns "
                         f"in whole tiles ({Kp} after padding); see default_tiling")
    dev = q.device
    H, D, R = cfg.num_heads, cfg.head_dim, cfg.rope_dim
    idx = ki.indices
    if tuple(idx.shape) != (Tp, Kp) or idx.dtype != torch.int32:
        idx = torch.full((Tp, Kp), -1, dtype=torch.int32, device=dev)
        idx[:T, :K] = ki.indices
    if Tp == T:
        qp = q
    else:
        qp = torch.zeros(Tp, H, D, dtype=torch.bfloat16, device=dev)
        qp[:T] = q
    cp = torch.ones(Tp, R, dtype=torch.float32, device=dev)
    spd = torch.zeros(Tp, R, dtype=torch.float32, device=dev)
    cp[:T], spd[:T] = ki.cos, ki.sin
    req, meta = token_meta(ki, Tp, dev)
    g = ki.group
    idx = idx.contiguous()
    gx = group_meta(idx, req, meta, g) if g > 1 else (idx, req, meta)
    out = torch.zeros(Tp, cfg.hidden_size, dtype=torch.bfloat16, device=dev)
    head = [qp.contiguous().view(Tp // g, g * H, D), _rows_of(ki.kv_cache), ki.kv.contiguous()]
    blk = mw = 0
    if ki.compress_ratio:
        cbt = ki.cmp_block_table
        cbt = cbt.reshape(1, -1) if cbt.dim() == 1 else cbt
        blk, mw = ki.cmp_kv.shape[1], cbt.shape[1]
        head += [_rows_of(ki.cmp_kv), _int32(cbt).contiguous()]
    ring_bt = _int32(ki.block_table).reshape(-1, 1)
    P, W = ki.kv_cache.shape[:2]
    S = ki.positions.shape[1]
    if ki.paged:
        ws, _ = window_layout(W, g, S, tl.step_split, ki.compress_ratio == 4 and g > 1, True)
        masks = window_masks(idx[:, :paged_columns(tl, ws, bool(ki.compress_ratio))], req, meta, ring_bt, P, W, g)
    else:
        masks = (torch.zeros(Tp // g, 1, 1, device=dev), torch.zeros(Tp, 1, device=dev))
    args = head + [ring_bt, ki.kv_cache.view(1, -1, D), head[2].view(1, -1, D), page_bases(ring_bt, gx[1], P, W, S),
                   *masks, idx, req, meta, *gx,
                   sink.float().reshape(1, H, 1).contiguous(), cp, spd, on_device(swap_index(R), dev),
                   wo_a.reshape(-1, wo_a.shape[-1]).contiguous(),
                   wo_b.contiguous(), out]

    kernel = build_sparse_attn_kernel(cfg, tl, backends.run_mode(backend), inverse_rope=inverse_rope,
                                      cmp_block_size=blk, cmp_table_width=mw, group=g,
                                      step_tokens=ki.positions.shape[1], per_token_compressed=ki.compress_ratio == 4,
                                      paged_window=ki.paged)
    backends.launch(kernel, args, backend=backend, name=name, values=values)
    return out[:T]
