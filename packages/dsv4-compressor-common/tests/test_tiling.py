"""The projection's build-time tiling (`tiling.default_tiling`): K split in two exactly where
that fills the last wave of cube tasks, every output tile its own task at prefill, and at
decode the narrowest column tiles that keep one wave. `tiny-prefill-T512-start4`
(dsv4-prefill-compressor-ratio4's small golden cases) runs the split kernel on the simulator
against the golden."""

import pytest

from dsv4_compressor_common.pooling import coff
from dsv4_compressor_common.tiling import decode_columns, default_tiling, k_split
from dsv4_core import FLASH, PRO, TINY
from dsv4_core.chip import CUBE_CORES, VEC_OPERAND_ELEMS


def test_k_split_fills_the_last_wave():
    assert CUBE_CORES == 24
    assert k_split(32) == 2  # 2 waves of whole tasks vs 3 of halves (1.5)
    assert k_split(12) == 2  # one wave either way, of half tasks
    for tasks in (16, 24, 48, 64):  # halves take as many task-lengths: keep one matmul
        assert k_split(tasks) == 1, tasks


def test_prefill_tiling_splits_where_the_waves_say():
    r128 = default_tiling(FLASH, 128, tokens=1024)  # 4 tiles x 2 matmuls x 4 column tiles = 32 tasks
    assert r128.k_split == 2 and r128.l1_reuse == 1 and r128.tt == 256
    assert r128.cube[1] == (128, 512)
    r4 = default_tiling(FLASH, 4, tokens=1024)  # 64 tasks
    assert r4.k_split == 1 and r4.l1_reuse == 1
    assert default_tiling(TINY, 4, tokens=512).k_split == 2  # the small golden case that runs it
    assert default_tiling(TINY, 4, tokens=512).cube[1] == (128, 256)  # K tiles inside a half
    idx = default_tiling(FLASH, 4, tokens=1024, head_dim=FLASH.index_head_dim)  # 16 tasks: one wave
    assert idx.k_split == 1
    assert PRO.hidden_size % 256 == 0 and default_tiling(PRO, 128, tokens=1024).k_split == 2


def test_decode_tiling_fills_one_wave_of_cube_tasks():
    for ratio, n in ((4, 96), (128, 64)):  # 1024 / 512 columns: 22 / 16 tasks on 24 cores
        tl = default_tiling(FLASH, ratio, tokens=128)
        assert tl.k_split == 1 and tl.l1_reuse is None and tl.tt == 128
        assert tl.cube == ((128, 128), (256, 1024), (n, n)) and tl.vec_elems == 2 * VEC_OPERAND_ELEMS
        assert 2 * -(-coff(ratio) * FLASH.head_dim // n) <= CUBE_CORES
    assert decode_columns(1024, 128) == 96 and decode_columns(512, 128) == 64
    assert decode_columns(256, 128) == 32  # the index keys' projection: 16 tasks
    assert decode_columns(8192, 128) == 128  # more columns than one wave can hold: the widest


def test_query_tiling_takes_the_largest_token_tile_that_divides_the_rows():
    from dsv4_compressor_common.indexer.host import TOKEN_TILE
    from dsv4_compressor_common.indexer.kernel import QUERY_TILES, query_tiling

    assert QUERY_TILES[-1] == TOKEN_TILE  # every padded token count has a tile
    for rows, tt in [(16, 16), (48, 16), (96, 32), (64, 64), (128, 128), (1024, 128), (1040, 16)]:
        tl = query_tiling(rows)
        assert (tl.tt, tl.cube[0]) == (tt, (tt, tt))
    with pytest.raises(ValueError, match="rows: 40 must be a multiple of 16"):
        query_tiling(40)
