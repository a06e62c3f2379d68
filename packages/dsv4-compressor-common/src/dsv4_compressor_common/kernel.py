"""The two pypto kernels of the compressors, built per config and ratio (every size from
them; the head dim d from the config unless given).

    project(x [T, D] bf16, wkv [C, D] bf16, wgate [C, D] bf16, ape [ratio, C] f32,
            ape_idx [T] i32 (= pos % ratio), kv_rows [T, C] f32 (out), score_rows [T, C] f32 (out))
        kv_rows = x @ wkvᵀ, score_rows = x @ wgateᵀ + ape[ape_idx]      (fp32 accumulation)

    pool(kv_slots [N, W, d] f32, score_slots [N, W, d] f32, valid [N, W] f32 (1 / 0),
         gamma [1, d] f32, cos [N, R] f32, sin [N, R] f32, swap [R] i32, out [N, d] bf16 (out))
        out = rope(bf16(rms(bf16(gated_pool(...))) · γ))                 (reference.py's rounding)
    pool with rotate=True (the indexer's keys): had_nope [d − R, d], had_rope [R, d] bf16 before
        `out`; out = bf16((entry @ Had) · d^-0.5), the Hadamard as two ±1 matmuls on the cube

C = coff(ratio)·d, W = window_size(ratio). T and N are dynamic (`pypto.DYNAMIC`); both loop
over row tiles with `valid_shape` for the ragged last tile. Weights stay in the checkpoint's
[out, in] layout (`b_trans=True`). The host (`paging.py`) assembles the window slots from
the state cache and this call's rows and scatters the results into the paged caches.

No `from __future__ import annotations`: pypto reads the annotations as objects.
"""

import pypto

from dsv4_core.backends import jit_options
from dsv4_core.blocks import rms_norm, to_bf16
from dsv4_rope_tables.pypto_block import rope_rotate

from .pooling import coff, pool_window_tile, window_size
from .tiling import CompressorTiling, default_tiling

F32, BF16, I32 = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32


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
                           ape: T([ratio, C], F32), ape_idx: T([DYN], I32),
                           kv_rows: T([DYN, C], F32), score_rows: T([DYN, C], F32)):
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
            pypto.assemble(kv, [off, 0], kv_rows)
            pypto.assemble(score, [off, 0], score_rows)

    return compressor_project


def _pool_tile(kv_slots, score_slots, valid, gamma, cos, sin, swap, off, rows, geo):
    """Steps 2–5 on one row tile: (nope lanes bf16 [NT, HD − R], rotated rope lanes bf16 [NT, R]);
    geo = (W, HD, R, EPS, NT, rows_hd, rows_r)."""
    W, HD, R, EPS, NT, rows_hd, rows_r = geo
    NOPE = HD - R
    pooled = pool_window_tile(kv_slots, score_slots, valid, off, rows, window=W, channels=HD, tile_rows=NT)
    pypto.set_vec_tile_shapes(rows_hd, HD)
    pb = pypto.cast(to_bf16(pooled), F32)  # (3)
    nrm = rms_norm(pb, HD, EPS, gamma)
    n_nope = to_bf16(pypto.view(nrm, [NT, NOPE], [0, 0], valid_shape=[rows, NOPE]))  # (4)
    n_rope = to_bf16(pypto.view(nrm, [NT, R], [0, NOPE], valid_shape=[rows, R]))
    ct = pypto.view(cos, [NT, R], [off, 0], valid_shape=[rows, R])
    st = pypto.view(sin, [NT, R], [off, 0], valid_shape=[rows, R])
    pypto.set_vec_tile_shapes(rows_r, R)
    rot = to_bf16(rope_rotate(pypto.cast(n_rope, F32), ct, st, swap))  # (5)
    return n_nope, rot


def pool_tile(cfg, ratio: int, windows: int | None = None, rotate: bool = False) -> int:
    """Windows per iteration of the pool kernel; the rotate kernel takes N padded to it (at
    least 16: the rows of its Hadamard matmul)."""
    nt = default_tiling(cfg, ratio, windows=windows).nt
    return max(16, nt) if rotate else nt


def build_pool_kernel(cfg, ratio: int, tiling: CompressorTiling = None, run_mode=None, windows: int | None = None,
                      head_dim: int | None = None, rotate: bool = False):
    """The pool kernel; `rotate=True` (the indexer's keys) adds the Hadamard after RoPE and
    takes two more inputs before `out`: had_nope [d − R, d] and had_rope [R, d] bf16, the rows
    of Sylvester's ±1 matrix (`hadamard.hadamard_halves`), and N padded to a multiple of
    `pool_tile(...)` windows (padding windows have no valid slot: they pool to 0)."""
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
    def compressor_pool(kv_slots: T([DYN, W, HD], F32), score_slots: T([DYN, W, HD], F32), valid: T([DYN, W], F32),
                        gamma: T([1, HD], F32), cos: T([DYN, R], F32), sin: T([DYN, R], F32), swap: T([S], I32),
                        out: T([DYN, HD], BF16)):
        n = kv_slots.shape[0]
        for i in pypto.loop((n + NT - 1) // NT, name="window_tiles", idx_name="i"):
            off = i * NT
            rows = pypto.min(off + NT, n) - off
            n_nope, rot = _pool_tile(kv_slots, score_slots, valid, gamma, cos, sin, swap, off, rows, geo)
            # outputs last
            pypto.set_vec_tile_shapes(rows_hd, HD)
            pypto.assemble(n_nope, [off, 0], out)
            pypto.assemble(rot, [off, NOPE], out)

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def compressor_pool_rotate(kv_slots: T([DYN, W, HD], F32), score_slots: T([DYN, W, HD], F32),
                               valid: T([DYN, W], F32), gamma: T([1, HD], F32), cos: T([DYN, R], F32),
                               sin: T([DYN, R], F32), swap: T([S], I32), had_nope: T([NOPE, HD], BF16),
                               had_rope: T([R, HD], BF16), out: T([DYN, HD], BF16)):
        n = kv_slots.shape[0]
        for i in pypto.loop(n // NT, name="window_tiles", idx_name="i"):  # the host pads N to NT
            off = i * NT
            n_nope, rot = _pool_tile(kv_slots, score_slots, valid, gamma, cos, sin, swap, off, NT, geo)
            pypto.set_cube_tile_shapes([MT, MT], [64, 64], [HD, HD])
            hk = pypto.add(pypto.matmul(n_nope, had_nope, F32), pypto.matmul(rot, had_rope, F32))
            pypto.set_vec_tile_shapes(rows_hd, HD)
            k = to_bf16(pypto.mul(hk, scale))  # (6)
            # outputs last
            pypto.assemble(k, [off, 0], out)

    return compressor_pool_rotate if rotate else compressor_pool
