"""The pypto kernel: Q LoRA + KV projection, RMSNorms and forward RoPE, built per config.

    kernel(x [T, D] bf16, wq_a [QL, D] bf16, gq [1, QL] f32, wq_b [H·hd, QL] bf16,
           wkv [hd, D] bf16, gkv [1, hd] f32, cos [T, R] f32, sin [T, R] f32, swap [R] i32,
           q [T, H, hd] bf16 (out), kv [T, hd] bf16 (out), qr [T, QL] bf16 (out))

T is dynamic (`pypto.DYNAMIC`); the kernel loops over token tiles of `QKVTiling.tt` rows
with `valid_shape` for the ragged last tile. Weights stay in the checkpoint's [out, in]
layout (`matmul(..., b_trans=True)`). Rounding points are the reference's (reference.py).

No `from __future__ import annotations`: pypto reads the annotations as objects.
"""

import dataclasses

import pypto

from dsv4_core.backends import jit_options
from dsv4_core.blocks import rms_norm, to_bf16
from dsv4_rope_tables.pypto_block import rope_rotate

F32, BF16, I32 = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32


@dataclasses.dataclass(frozen=True)
class QKVTiling:
    tt: int = 128  # token rows per loop iteration
    cube_qa: tuple = ((128, 128), (128, 512), (128, 128))  # ([m0, m1], [k0, k1], [n0, n1])
    cube_qb: tuple = ((128, 128), (64, 256), (256, 256))  # the tiles that reach the matmul ceiling
    cube_kv: tuple = ((128, 128), (128, 512), (128, 128))
    group_heads: int = 8  # heads per up-projection group (matmul + norm + rope), unrolled
    rows_ql: int = 8  # rows of [tt, QL] vector tiles (q_norm)
    rows_hd: int = 16  # rows of [tt, hd] vector tiles (kv_norm)
    qb_tile: tuple = (4, 4096)  # [rows, cols] of the [tt, G·hd] cast
    heads: int = 8  # heads per [1, h, hd] tile (per-head norm)
    cs_rows: int = 32  # rows per tile of the [tt, R] -> [tt, 1, R] cos / sin reshape
    rope_heads: int = 16  # heads per [1, h, R] tile (q rope)
    rope_rows: int = 16  # rows of [tt, R] tiles (kv rope)


def default_tiling(cfg, tokens: int = 128) -> QKVTiling:
    """Head groups of 8 (or the largest power of two dividing H). Above one decode tile:
    256-token tiles with the ceiling cube tiles on every matmul (FLASH T=1024 models 666 µs,
    vs 846 µs with 128-token tiles and 702 µs with 512: larger tiles re-read wq_b less
    often, 512 loses parallelism)."""
    g = 8
    while cfg.num_heads % g:
        g //= 2
    if tokens <= 128:
        return QKVTiling(group_heads=g)
    big = ((128, 128), (64, 256), (256, 256))
    return QKVTiling(group_heads=g, tt=256, cube_qa=big, cube_kv=big)


def build_qkv_kernel(cfg, tiling: QKVTiling = None, run_mode=None, tokens: int = 128):
    """Build the kernel for `cfg` (a dsv4_core AttentionConfig; every size comes from it).
    T stays dynamic; `tokens` (the expected T) only picks the default token tile."""
    tl = tiling or default_tiling(cfg, tokens)
    D, H, QL = cfg.hidden_size, cfg.num_heads, cfg.q_lora_rank
    HD, R, EPS = cfg.head_dim, cfg.rope_dim, float(cfg.eps)
    NOPE, TT, G = HD - R, tl.tt, tl.group_heads
    if H % G:
        raise ValueError(f"QKVTiling.group_heads={G} must divide num_heads={H}")
    DYN, S = pypto.DYNAMIC, pypto.STATIC
    T = pypto.Tensor
    opts = jit_options(run_mode)
    hv = min(tl.heads, G)

    def cube(t):
        pypto.set_cube_tile_shapes(*[list(d) for d in t])

    @pypto.frontend.jit(runtime_options=opts)
    def qkv_proj_rope(x: T([DYN, D], BF16), wq_a: T([QL, D], BF16), gq: T([1, QL], F32),
                      wq_b: T([H * HD, QL], BF16), wkv: T([HD, D], BF16), gkv: T([1, HD], F32),
                      cos: T([DYN, R], F32), sin: T([DYN, R], F32), swap: T([S], I32),
                      q: T([DYN, H, HD], BF16), kv: T([DYN, HD], BF16), qr: T([DYN, QL], BF16)):
        n = x.shape[0]
        gq32, gkv32 = gq, gkv  # the norm weights arrive in fp32 (exact for bf16 checkpoints)
        for i in pypto.loop((n + TT - 1) // TT, name="token_tiles", idx_name="i"):
            off = i * TT
            rows = pypto.min(off + TT, n) - off
            xt = pypto.view(x, [TT, D], [off, 0], valid_shape=[rows, D])
            ct = pypto.view(cos, [TT, R], [off, 0], valid_shape=[rows, R])
            st = pypto.view(sin, [TT, R], [off, 0], valid_shape=[rows, R])
            # the reshape tile's leading dims also tile the 2-D input: several rows per task
            pypto.set_vec_tile_shapes(tl.cs_rows, R, R)
            c3 = pypto.reshape(ct, [TT, 1, R], valid_shape=[rows, 1, R])
            s3 = pypto.reshape(st, [TT, 1, R], valid_shape=[rows, 1, R])

            # KV projection, weighted kv_norm, rope                          [TT, HD]
            cube(tl.cube_kv)
            k = pypto.matmul(xt, wkv, BF16, b_trans=True)  # (6)
            pypto.set_vec_tile_shapes(tl.rows_hd, HD)
            kn = rms_norm(pypto.cast(k, F32), HD, EPS, gkv32)
            kv_nope = to_bf16(pypto.view(kn, [TT, NOPE], [0, 0], valid_shape=[rows, NOPE]))
            kv_rope = to_bf16(pypto.view(kn, [TT, R], [0, NOPE], valid_shape=[rows, R]))
            pypto.set_vec_tile_shapes(tl.rope_rows, R)
            kv_rot = to_bf16(rope_rotate(pypto.cast(kv_rope, F32), ct, st, swap))  # (7)
            pypto.set_vec_tile_shapes(tl.rows_hd, HD)
            pypto.assemble(kv_nope, [off, 0], kv)
            pypto.assemble(kv_rot, [off, NOPE], kv)

            # Q down-projection, weighted q_norm -> qr                        [TT, QL]
            cube(tl.cube_qa)
            a = pypto.matmul(xt, wq_a, BF16, b_trans=True)  # (1)
            pypto.set_vec_tile_shapes(tl.rows_ql, QL)
            qr_t = to_bf16(rms_norm(pypto.cast(a, F32), QL, EPS, gq32))  # (2)

            # Q up-projection per group of G heads: matmul, per-head norm, rope
            for g in range(H // G):  # unrolled at trace time
                wg = pypto.view(wq_b, [G * HD, QL], [g * G * HD, 0])
                cube(tl.cube_qb)
                qb = pypto.matmul(qr_t, wg, BF16, b_trans=True)  # (3)        [TT, G·HD]
                pypto.set_vec_tile_shapes(tl.qb_tile[0], min(tl.qb_tile[1], G * HD))
                qb32 = pypto.cast(qb, F32)  # cast before the reshape (pass-verify on ragged tiles)
                pypto.set_vec_tile_shapes(1, hv, HD)
                qf = pypto.reshape(qb32, [TT, G, HD], valid_shape=[rows, G, HD])
                sq = pypto.sum(pypto.mul(qf, qf), -1, keepdim=True)
                inv = pypto.rsqrt(pypto.add(pypto.mul(sq, 1.0 / HD), EPS))
                q_nope = to_bf16(pypto.mul(pypto.view(qf, [TT, G, NOPE], [0, 0, 0], valid_shape=[rows, G, NOPE]), inv))
                q_rope = to_bf16(pypto.mul(pypto.view(qf, [TT, G, R], [0, 0, NOPE], valid_shape=[rows, G, R]), inv))  # (4)
                pypto.set_vec_tile_shapes(1, min(tl.rope_heads, G), R)
                q_rot = to_bf16(rope_rotate(pypto.cast(q_rope, F32), c3, s3, swap))  # (5)
                pypto.set_vec_tile_shapes(1, hv, HD)
                pypto.assemble(q_nope, [off, g * G, 0], q)
                pypto.assemble(q_rot, [off, g * G, NOPE], q)

            pypto.set_vec_tile_shapes(tl.rows_ql, QL)
            pypto.assemble(qr_t, [off, 0], qr)

    return qkv_proj_rope
