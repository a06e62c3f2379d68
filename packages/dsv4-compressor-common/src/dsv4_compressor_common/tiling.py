"""Build-time tiling of the compressor kernels (`kernel.py`), chosen under the cost model.

The kernels stay dynamic in the token count T and the window count N; the tiling is a
build-time choice from the config and the expected T / N."""

from __future__ import annotations

import dataclasses

from dsv4_core.chip import VEC_OPERAND_ELEMS


@dataclasses.dataclass(frozen=True)
class CompressorTiling:
    tt: int = 128  # token rows per projection iteration
    cube: tuple = ((128, 128), (128, 1024), (128, 128))  # ([m0, m1], [k0, k1], [n0, n1])
    vec_elems: int = VEC_OPERAND_ELEMS  # elements per vector-tile operand
    nt: int = 32  # windows per pooling iteration


def default_tiling(cfg, ratio: int, tokens: int | None = None, windows: int | None = None) -> CompressorTiling:
    """Tiles found best under the cost model at FLASH shapes (README, Performance): at decode a
    long K tile, and for the 512-wide (ratio-128) projection 64-wide N tiles so more cube cores
    get work; for prefill-sized T, 256-token tiles with 256-row, 512-deep cube tiles; pooling
    tiles of 8 / 16 / 32 windows by window count."""
    k1 = min(1024, cfg.hidden_size)
    n = 64 if (ratio != 4 and tokens is not None and tokens <= 128) else 128
    nt = 32
    if windows is not None and windows <= 8:
        nt = 8
    elif windows is not None and windows <= 64 and ratio == 4:
        nt = 16
    if tokens is not None and tokens >= 512:  # prefill: 256-row cube tiles (fewer, fuller tasks)
        return CompressorTiling(tt=256, cube=((256, 256), (128, min(512, k1)), (n, n)), nt=nt)
    return CompressorTiling(tt=128, cube=((128, 128), (128, k1), (n, n)), nt=nt)
