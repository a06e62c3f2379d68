"""Build-time tiling of the compressor kernels (`kernel.py`), chosen under the cost model.

The kernels stay dynamic in the token count T and the window count N; the tiling is a
build-time choice from the config and the expected T / N."""

from __future__ import annotations

import dataclasses

from dsv4_core.chip import CUBE_CORES, VEC_OPERAND_ELEMS

from .pooling import coff


@dataclasses.dataclass(frozen=True)
class CompressorTiling:
    tt: int = 128  # token rows per projection iteration
    cube: tuple = ((128, 128), (128, 1024), (128, 128))  # ([m0, m1], [k0, k1], [n0, n1])
    vec_elems: int = VEC_OPERAND_ELEMS  # elements per vector-tile operand
    nt: int = 32  # windows per pooling iteration
    k_split: int = 1  # the projection's K as this many partial matmuls (own cube tasks), summed in fp32
    l1_reuse: int | None = None  # pypto's cube_l1_reuse_setting (1: every output tile its own cube task)


def k_split(tasks: int, cores: int = CUBE_CORES) -> int:
    """1 or 2: the projection's K in two halves (twice the cube tasks, each half as long) where
    that takes fewer task-lengths of waves over the cube cores (32 tasks on 24 cores: two
    waves of whole tasks, or three of half tasks); a tie keeps one matmul (no partial sums)."""
    return 2 if -(-2 * tasks // cores) < 2 * -(-tasks // cores) else 1


def default_tiling(cfg, ratio: int, tokens: int | None = None, windows: int | None = None,
                   head_dim: int | None = None) -> CompressorTiling:
    """Tiles found best under the cost model at FLASH shapes (README, Performance). At decode:
    a long K tile with 256-deep L0 steps, the narrowest column tiles that keep one wave of cube
    tasks (`decode_columns`) and 64 KB vector tiles for the tail after the matmuls (the score
    add's three operands fill the unified buffer; half the vector tasks of 32 KB tiles). For
    prefill-sized T: 256-token tiles with 256-row, 512-deep cube tiles, every output tile its
    own cube task (`l1_reuse` 1: pypto otherwise merges a token tile's column tiles into
    fewer, longer tasks and the last tile's run alone) and K split in two where that fills the
    last wave (`k_split`; head_dim: the projection's, the config's by default). Pooling tiles
    of 8 / 16 / 32 windows by window count."""
    k1 = min(1024, cfg.hidden_size)
    C = coff(ratio) * (head_dim or cfg.head_dim)
    n = 128
    nt = 32
    if windows is not None and windows <= 8:
        nt = 8
    elif windows is not None and windows <= 64 and ratio == 4:
        nt = 16
    if tokens is not None and tokens >= 512:  # prefill: 256-row cube tiles (fewer, fuller tasks)
        tt = 256
        tasks = -(-tokens // tt) * 2 * -(-C // n)  # kv and score, per token tile
        ks = k_split(tasks) if cfg.hidden_size % 256 == 0 else 1  # halves of whole 128-deep K tiles
        k0 = min(512, k1, cfg.hidden_size // ks)
        return CompressorTiling(tt=tt, cube=((tt, tt), (128, k0), (n, n)), nt=nt, k_split=ks, l1_reuse=1)
    if tokens is not None:  # decode-sized T: 128-token tiles, their column tiles spread over the cube cores
        n = decode_columns(C, n)
        k0 = min(256, k1)
        return CompressorTiling(tt=128, cube=((128, 128), (k0, k1), (n, n)), nt=nt, vec_elems=2 * VEC_OPERAND_ELEMS)
    return CompressorTiling(tt=128, cube=((128, 128), (128, k1), (n, n)), nt=nt)


def decode_columns(width: int, widest: int, cores: int = CUBE_CORES) -> int:
    """The narrowest multiple of 32 (at most `widest`) whose column tiles of the two
    `width`-wide projections (kv and score) of one token tile still run as one wave on the cube
    cores: a decode tile's cube task streams the whole [128, D] x whatever its width, so more, narrower tasks
    pay for x more often; the narrowest that fits one wave uses the most cores (FLASH ratio 4,
    width 1024: 96, 22 tasks on 24 cores)."""
    n = widest
    while n > 32 and 2 * -(-width // (n - 32)) <= cores:
        n -= 32
    return n
