"""The two pypto kernels of the compressors, built per config and ratio (every size from
them; the head dim d from the config unless given).

    project(x [T, D] bf16, wkv [C, D] bf16, wgate [C, D] bf16, ape [ratio, C] f32,
            ape_idx [T] i32 (= pos % ratio), pick [T'] i32, kv_dst / score_dst [T' / TT, TT] i64,
            any_row [T' / TT] i32 (the state writes, see below), kv_rows [T, C] f32 (out),
            score_rows [T, C] f32 (out), state [num_state_rows·2, C] f32 (in place))
        kv_rows = x @ wkvᵀ, score_rows = x @ wgateᵀ + ape[ape_idx]       (fp32 accumulation)
        state rows [kv | score] of the tokens that have one, scattered in place

    pool(state [num_state_rows·2coff, d] f32 (the state cache, in place), kv_rows, score_rows
         [T·coff, d] f32 (this call's rows), kv_state / score_state [N, W] i32 (the d-wide chunk
         of each slot in the state cache), tok [N, W] i32 (its chunk in this call's rows),
         from_state [N, W] f32 (1: the state cache, 0: this call's rows), valid [N, W] f32
         (1 / 0), gamma [1, d] f32, cos [N, R] f32, sin [N, R] f32, swap [R] i32, pick [N] i32,
         cmp_dst [N / NT, NT] i64, any_row [N / NT] i32 (the entry writes), out [N, d] bf16
         (out), cmp_kv [cmp_rows, d] bf16 (in place))
        kv slots = select(valid, select(from_state, state[kv_state], kv_rows[tok]), 0)  (score alike)
        out = rope(bf16(rms(bf16(gated_pool(slots))) · γ))               (reference.py's rounding)
        entries of the windows that have a cmp row scattered into cmp_kv in place
    pool with rotate=True (the indexer's keys): had_nope [d − R, d], had_rope [R, d] bf16 before
        `pick`; out = bf16((entry @ Had) · d^-0.5), the Hadamard as two ±1 matmuls on the cube

Writes into a cache go one tile at a time (`device.masked_scatter`): one `scatter_update` of
the tile's rows, where a row without a destination (−1) repeats a row of its tile that has
one (`pick`: same bits written twice to the same row) and a tile with none (`any_row` 0) is
skipped; the destination indices never hold −1.

C = coff(ratio)·d, W = window_size(ratio). T and N are dynamic (`pypto.DYNAMIC`); the host
(`device.py`) pads N to whole window tiles (padding windows have no valid slot and no cmp
row). The caches are the caller's own tensors (flat views): the kernels read the state rows
of earlier calls through the indices the host derives from the block table, and write
state rows and entries in place (one masked scatter per tile, see above). An absent
slot is selected away (`where`) before any arithmetic, so whatever an unreferenced state
row holds (NaN included) never reaches an entry. Weights stay in the checkpoint's [out, in]
layout (`b_trans=True`).

No `from __future__ import annotations`: pypto reads the annotations as objects.
"""

import pypto

from dsv4_core.backends import jit_options
from dsv4_core.blocks import rms_norm, to_bf16
from dsv4_core.chip import VEC_OPERAND_ELEMS
from dsv4_rope_tables.pypto_block import rope_rotate

from .pooling import coff, gated_pool_tile, window_size
from .tiling import CompressorTiling, default_tiling

F32, BF16, I32, I64 = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32, pypto.DT_INT64


def build_project_kernel(cfg, ratio: int, tiling: CompressorTiling = None, run_mode=None, tokens: int | None = None,
                         head_dim: int | None = None):
    tl = tiling or default_tiling(cfg, ratio, tokens)
    D = cfg.hidden_size
    C = coff(ratio) * (head_dim or cfg.head_dim)
    TT = tl.tt
    vrows = max(1, min(TT, tl.vec_elems // C))
    DYN = pypto.DYNAMIC
    T = pypto.Tensor

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def compressor_project(x: T([DYN, D], BF16), wkv: T([C, D], BF16), wgate: T([C, D], BF16),
                           ape: T([ratio, C], F32), ape_idx: T([DYN], I32), pick: T([DYN], I32),
                           kv_dst: T([DYN, TT], I64), score_dst: T([DYN, TT], I64), any_row: T([DYN], I32),
                           kv_rows: T([DYN, C], F32), score_rows: T([DYN, C], F32), state: T([DYN, C], F32)):
        n = x.shape[0]
        for i in pypto.loop((n + TT - 1) // TT, name="token_tiles", idx_name="i"):
            off = i * TT
            rows = pypto.min(off + TT, n) - off
            xt = pypto.view(x, [TT, D], [off, 0], valid_shape=[rows, D])
            it = pypto.view(ape_idx, [TT], [off], valid_shape=[rows])
            pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube])
            kv = pypto.matmul(xt, wkv, F32, b_trans=True)  # [TT, C]
            sc = pypto.matmul(xt, wgate, F32, b_trans=True)
            pypto.set_vec_tile_shapes(vrows, C)
            score = pypto.add(sc, pypto.index_select(ape, 0, it))
            # the tile's state rows into the state cache in place (state seen as [rows·2, C]):
            # a token without a row repeats a row of its tile (same bits twice); a tile with
            # no row writes nothing
            if any_row[i] > 0:
                pk = pypto.view(pick, [TT], [off])
                pypto.set_vec_tile_shapes(vrows, C)
                kv_w = pypto.index_select(kv, 0, pk)
                sc_w = pypto.index_select(score, 0, pk)
                state[:] = pypto.scatter_update(state, -2, pypto.view(kv_dst, [1, TT], [i, 0]), kv_w)
                state[:] = pypto.scatter_update(state, -2, pypto.view(score_dst, [1, TT], [i, 0]), sc_w)
            pypto.set_vec_tile_shapes(vrows, C)
            pypto.assemble(kv, [off, 0], kv_rows)
            pypto.assemble(score, [off, 0], score_rows)

    return compressor_project


def _slot_tile(src_state, src_tok, idx_state, idx_tok, from_state3, valid3, fill, geo):
    """One [NT, W, d] tile of window slots: each slot's chunk from the state cache or from this
    call's rows, selected (never multiplied) to `fill` where the slot is absent."""
    W, HD = geo[0], geo[1]
    ct = min(HD, max(64, VEC_OPERAND_ELEMS // W))
    pypto.set_vec_tile_shapes(1, W, ct)
    from_st = pypto.index_select(src_state, 0, idx_state)  # [NT, W, d]: rows of earlier calls
    from_tok = pypto.index_select(src_tok, 0, idx_tok)  # [NT, W, d]: this call's rows
    pick = pypto.where(pypto.greater(from_state3, 0.5), from_st, from_tok)
    return pypto.where(pypto.greater(valid3, 0.5), pick, fill)


def _pool_tile(state, kv_rows, score_rows, kv_state, score_state, tok, from_state, valid, gamma, cos, sin, swap, off,
               geo):
    """Steps 2–5 on the window tile [off, off + NT): (nope lanes bf16 [NT, HD − R], rotated rope
    lanes bf16 [NT, R]); geo = (W, HD, R, EPS, NT, rows_hd, rows_r)."""
    W, HD, R, EPS, NT, rows_hd, rows_r = geo
    NOPE = HD - R
    pypto.set_vec_tile_shapes(max(1, min(NT, VEC_OPERAND_ELEMS // W)), W)
    idx = [pypto.view(t, [NT, W], [off, 0]) for t in (kv_state, score_state, tok)]
    fs = pypto.view(from_state, [NT, W], [off, 0])
    vd = pypto.view(valid, [NT, W], [off, 0])
    fs3 = pypto.reshape(fs, [NT, W, 1])
    vd3 = pypto.reshape(vd, [NT, W, 1])
    kv = _slot_tile(state, kv_rows, idx[0], idx[2], fs3, vd3, 0.0, geo)
    sc = _slot_tile(state, score_rows, idx[1], idx[2], fs3, vd3, 0.0, geo)
    pooled = gated_pool_tile(kv, sc, vd, window=W, channels=HD, tile_rows=NT)
    pypto.set_vec_tile_shapes(rows_hd, HD)
    pb = pypto.cast(to_bf16(pooled), F32)  # (3)
    nrm = rms_norm(pb, HD, EPS, gamma)
    n_nope = to_bf16(pypto.view(nrm, [NT, NOPE], [0, 0]))  # (4)
    n_rope = to_bf16(pypto.view(nrm, [NT, R], [0, NOPE]))
    ct = pypto.view(cos, [NT, R], [off, 0])
    st = pypto.view(sin, [NT, R], [off, 0])
    pypto.set_vec_tile_shapes(rows_r, R)
    rot = to_bf16(rope_rotate(pypto.cast(n_rope, F32), ct, st, swap))  # (5)
    return n_nope, rot


def project_tile(cfg, ratio: int, tokens: int | None = None) -> int:
    """Tokens per iteration of the project kernel (the tile its state writes are grouped by)."""
    return default_tiling(cfg, ratio, tokens).tt


def pool_tile(cfg, ratio: int, windows: int | None = None, rotate: bool = False) -> int:
    """Windows per iteration of the pool kernel; the rotate kernel takes N padded to it (at
    least 16: the rows of its Hadamard matmul)."""
    nt = default_tiling(cfg, ratio, windows=windows).nt
    return max(16, nt) if rotate else nt


def build_pool_kernel(cfg, ratio: int, tiling: CompressorTiling = None, run_mode=None, windows: int | None = None,
                      head_dim: int | None = None, rotate: bool = False):
    """The pool kernel (N padded to a multiple of `pool_tile(...)` windows: padding windows
    have no valid slot and no cmp row); `rotate=True` (the indexer's keys) adds the Hadamard
    after RoPE and takes two more inputs before `cmp_rows`: had_nope [d − R, d] and had_rope
    [R, d] bf16, the rows of Sylvester's ±1 matrix (`hadamard.hadamard_halves`)."""
    tl = tiling or default_tiling(cfg, ratio, windows=windows)
    HD, R, EPS = head_dim or cfg.head_dim, cfg.rope_dim, float(cfg.eps)
    NOPE, W, NT = HD - R, window_size(ratio), (max(16, tl.nt) if rotate else tl.nt)
    rows_hd = max(1, min(NT, tl.vec_elems // HD))  # [rows, hd] vector tiles stay ≤ vec_elems
    rows_r = max(1, min(NT, tl.vec_elems // R))
    geo = (W, HD, R, EPS, NT, rows_hd, rows_r)
    scale, MT = HD ** -0.5, NT
    DYN, S = pypto.DYNAMIC, pypto.STATIC
    T = pypto.Tensor

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def compressor_pool(state: T([DYN, HD], F32), kv_rows: T([DYN, HD], F32), score_rows: T([DYN, HD], F32),
                        kv_state: T([DYN, W], I32), score_state: T([DYN, W], I32), tok: T([DYN, W], I32),
                        from_state: T([DYN, W], F32), valid: T([DYN, W], F32), gamma: T([1, HD], F32),
                        cos: T([DYN, R], F32), sin: T([DYN, R], F32), swap: T([S], I32), pick: T([DYN], I32),
                        cmp_dst: T([DYN, NT], I64), any_row: T([DYN], I32), out: T([DYN, HD], BF16),
                        cmp_kv: T([DYN, HD], BF16)):
        n = kv_state.shape[0]
        for i in pypto.loop(n // NT, name="window_tiles", idx_name="i"):  # the host pads N to NT
            off = i * NT
            n_nope, rot = _pool_tile(state, kv_rows, score_rows, kv_state, score_state, tok, from_state, valid,
                                     gamma, cos, sin, swap, off, geo)
            # outputs last: the tile's entries into cmp_kv in place (a window without a cmp
            # row repeats an entry of its tile; a tile with none writes nothing)
            if any_row[i] > 0:
                pypto.set_vec_tile_shapes(rows_hd, HD)
                ent = pypto.index_select(pypto.concat([n_nope, rot], -1), 0, pypto.view(pick, [NT], [off]))
                cmp_kv[:] = pypto.scatter_update(cmp_kv, -2, pypto.view(cmp_dst, [1, NT], [i, 0]), ent)
            pypto.set_vec_tile_shapes(rows_hd, HD)
            pypto.assemble(n_nope, [off, 0], out)
            pypto.assemble(rot, [off, NOPE], out)

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def compressor_pool_rotate(state: T([DYN, HD], F32), kv_rows: T([DYN, HD], F32),
                               score_rows: T([DYN, HD], F32), kv_state: T([DYN, W], I32),
                               score_state: T([DYN, W], I32), tok: T([DYN, W], I32), from_state: T([DYN, W], F32),
                               valid: T([DYN, W], F32), gamma: T([1, HD], F32), cos: T([DYN, R], F32),
                               sin: T([DYN, R], F32), swap: T([S], I32), had_nope: T([NOPE, HD], BF16),
                               had_rope: T([R, HD], BF16), pick: T([DYN], I32), cmp_dst: T([DYN, NT], I64),
                               any_row: T([DYN], I32), out: T([DYN, HD], BF16), cmp_kv: T([DYN, HD], BF16)):
        n = kv_state.shape[0]
        for i in pypto.loop(n // NT, name="window_tiles", idx_name="i"):  # the host pads N to NT
            off = i * NT
            n_nope, rot = _pool_tile(state, kv_rows, score_rows, kv_state, score_state, tok, from_state, valid,
                                     gamma, cos, sin, swap, off, geo)
            pypto.set_cube_tile_shapes([MT, MT], [64, 64], [HD, HD])
            hk = pypto.add(pypto.matmul(n_nope, had_nope, F32), pypto.matmul(rot, had_rope, F32))
            pypto.set_vec_tile_shapes(rows_hd, HD)
            k = to_bf16(pypto.mul(hk, scale))  # (6)
            # outputs last: the keys into the index-key cache in place (as above)
            if any_row[i] > 0:
                pypto.set_vec_tile_shapes(rows_hd, HD)
                ent = pypto.index_select(k, 0, pypto.view(pick, [NT], [off]))
                cmp_kv[:] = pypto.scatter_update(cmp_kv, -2, pypto.view(cmp_dst, [1, NT], [i, 0]), ent)
            pypto.set_vec_tile_shapes(rows_hd, HD)
            pypto.assemble(k, [off, 0], out)

    return compressor_pool_rotate if rotate else compressor_pool
