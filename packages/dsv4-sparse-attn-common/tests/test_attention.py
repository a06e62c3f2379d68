"""The shared sparse-attention core: reference semantics, index plumbing, tiling, and the
pypto kernel on the simulator (RoPE rows and rotation from dsv4-rope-tables)."""

import dataclasses
import math

import pytest
import torch

from dsv4_core import TINY, sim
from dsv4_core.compare import compare
from dsv4_rope_tables import profile_for_ratio, rope_rows, rotate
from dsv4_sparse_attn_common import (
    KernelInputs,
    attention_exact,
    default_tiling,
    kv_tile,
    pad_rows,
    resolve_rows,
    run_sparse_attn,
    sparse_attention_exact,
    sparse_attention_reference,
    window_indices,
)

H, D, R = 8, 512, 64
SCALE = D ** -0.5


def rows_at(pos):
    """Canonical cos / sin rows [T, R] at positions `pos` (main profile, θ 10000)."""
    return rope_rows(profile_for_ratio(TINY, 0), torch.as_tensor(pos, dtype=torch.int64))


def _case(T=6, K=200, N=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(T, H, D, generator=g) * 1.5).bfloat16()
    kv = torch.randn(N, D, generator=g).bfloat16()
    rows = torch.stack([torch.randperm(N, generator=g)[:K] for _ in range(T)]).int()  # distinct per token
    rows[:, -17:] = -1
    sink = torch.randn(H, generator=g)
    return q, kv, rows, sink


def _dense_exact(q, kv, rows, sink):
    """Dense fp64: scores against every row of kv, mask the rows not selected, sink as an
    extra key whose value is 0."""
    T, N = q.shape[0], kv.shape[0]
    mask = torch.zeros(T, N, dtype=torch.bool)
    for t in range(T):
        sel = rows[t][rows[t] >= 0].long()
        mask[t, sel] = True
    s = torch.einsum("thd,nd->thn", q.double(), kv.double()) * SCALE
    s = s.masked_fill(~mask[:, None, :], float("-inf"))
    keys = torch.cat([kv.double(), torch.zeros(1, D, dtype=torch.float64)], 0)
    logits = torch.cat([s, sink.double().reshape(1, H, 1).expand(T, H, 1)], -1)
    return torch.einsum("thn,nd->thd", torch.softmax(logits, -1), keys)


def test_sparse_matches_dense_masked_softmax():
    for seed in range(3):
        q, kv, rows, sink = _case(seed=seed)
        dense = _dense_exact(q, kv, rows, sink)
        assert (attention_exact(q, kv, rows, sink, softmax_scale=SCALE) - dense).abs().max() < 1e-12


def test_reference_close_to_exact_and_bf16_error_nonzero():
    q, kv, rows, sink = _case()
    T = q.shape[0]
    cos, sin = rows_at(torch.arange(T) * 1000)
    g = torch.Generator().manual_seed(1)
    wo_a = (torch.randn(2, 128, 4 * D, generator=g) * (4 * D) ** -0.5).bfloat16()
    wo_b = (torch.randn(256, 256, generator=g) * 256 ** -0.5).bfloat16()
    ref = sparse_attention_reference(q, kv, rows, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE)
    ex = sparse_attention_exact(q, kv, rows, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE)
    err = (ref.double() - ex).abs().max()
    assert 0 < err < 2 ** -6 * ex.abs().max()
    assert compare(ref, ex, ref).ok


def test_invariant_to_index_order():
    q, kv, rows, sink = _case()
    perm = torch.randperm(rows.shape[1])
    a = attention_exact(q, kv, rows, sink, softmax_scale=SCALE)
    b = attention_exact(q, kv, rows[:, perm], sink, softmax_scale=SCALE)
    assert (a - b).abs().max() < 1e-12
    cos, sin = rows_at(torch.zeros(q.shape[0]))
    wo_a = torch.eye(D).reshape(1, D, D).repeat(1, 1, H).bfloat16() / H  # any projection
    wo_b = torch.eye(D).bfloat16()
    ra = sparse_attention_reference(q, kv, rows, sink, cos, sin, wo_a[:, :, :H * D], wo_b, softmax_scale=SCALE,
                                    tile=32)
    rb = sparse_attention_reference(q, kv, rows[:, perm], sink, cos, sin, wo_a[:, :, :H * D], wo_b,
                                    softmax_scale=SCALE, tile=32)
    assert (ra.float() - rb.float()).abs().max() <= 2 ** -7 * ra.float().abs().max()  # bf16 rounding only


def test_all_masked_row_gives_zero():
    q, kv, rows, sink = _case()
    rows[2] = -1
    cos, sin = rows_at(torch.arange(q.shape[0]))
    wo_a = (torch.randn(2, 64, 4 * D) * 0.02).bfloat16()
    wo_b = (torch.randn(128, 128) * 0.1).bfloat16()
    ex = attention_exact(q, kv, rows, sink, softmax_scale=SCALE)
    assert torch.equal(ex[2], torch.zeros_like(ex[2]))
    ref = sparse_attention_reference(q, kv, rows, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE)
    assert torch.isfinite(ref.float()).all() and torch.equal(ref[2].float(), torch.zeros(128))


def test_sink_scales_output_as_the_formula_says():
    q, kv, rows, sink = _case()
    no_sink = attention_exact(q, kv, rows, torch.full((H,), -math.inf), softmax_scale=SCALE)
    with_sink = attention_exact(q, kv, rows, sink, softmax_scale=SCALE)
    # o_sink = o · Z / (Z + exp(sink)),  Z = Σ_i exp(s_i)
    kr = kv[rows.clamp(min=0).long()].double()
    s = torch.einsum("thd,tkd->thk", q.double(), kr) * SCALE
    z = torch.exp(s).masked_fill((rows < 0)[:, None, :], 0).sum(-1, keepdim=True)
    factor = z / (z + torch.exp(sink.double()).reshape(1, H, 1))
    assert (with_sink - no_sink * factor).abs().max() < 1e-12
    assert (with_sink - no_sink).abs().max() > 1e-3


def test_inverse_rope_undoes_forward_rotation_of_v():
    """Rotating q and every kv row forward at the query's position p leaves the scores
    unchanged and the value sum rotated by p; the inverse RoPE takes it back."""
    q, kv, rows, sink = _case(T=3, N=300)
    pos = torch.tensor([7, 1000, 65000])
    cos, sin = rows_at(pos)
    cos0, sin0 = rows_at(torch.zeros(3))
    g = torch.Generator().manual_seed(2)
    wo_a = (torch.randn(2, 64, 4 * D, generator=g) * 0.02).bfloat16()
    wo_b = (torch.randn(128, 128, generator=g) * 0.1).bfloat16()
    base = sparse_attention_exact(q, kv, rows, sink, cos0, sin0, wo_a, wo_b, softmax_scale=SCALE)
    for t in range(3):
        qr = q.double().clone()
        qr[..., -R:] = rotate(qr[..., -R:], cos[t], sin[t])
        kr = kv.double().clone()
        kr[..., -R:] = rotate(kr[..., -R:], cos[t], sin[t])
        sel = slice(t, t + 1)
        got = sparse_attention_exact(qr[sel], kr, rows[sel], sink, cos[sel], sin[sel], wo_a, wo_b,
                                     softmax_scale=SCALE)
        assert (got - base[sel]).abs().max() < 1e-6  # fp32 tables: rotation orthonormal to ~1e-8
        dropped = sparse_attention_exact(qr[sel], kr, rows[sel], sink, cos0[sel], sin0[sel], wo_a, wo_b,
                                         softmax_scale=SCALE)
        assert t == 0 or (dropped - base[sel]).abs().max() > 1e-3  # without the inverse it differs


def test_window_indices_examples():
    W = TINY.window
    idx = window_indices(torch.tensor([[130, 131]]), W)
    assert idx[0, 0] == 3 and idx[0, -1] == W and idx[1, -2:].tolist() == [W, W + 1]
    idx = window_indices(torch.tensor([[0], [127], [128]]), W)
    assert idx[0, -1] == W and (idx[0, :-1] == -1).all()  # a young request's row ends with its positions
    assert idx[1, :127].tolist() == list(range(127)) and idx[1, 127] == W
    assert idx[2, :127].tolist() == list(range(1, 128)) and idx[2, 127] == W


def test_resolve_rows_refuses_and_masks():
    W = TINY.window
    pos = torch.tensor([[600, 601]])
    bt = torch.tensor([1])
    cbt = torch.tensor([[2, 0]])
    idx = torch.tensor([[5, W + 0, W + 1, W + 2 + 3, W + 2 + 150],
                        [5, W + 0, W + 1, W + 2 + 3, W + 2 + 150]], dtype=torch.int32)
    out = resolve_rows(idx, pos, window=W, ring_pages=bt, num_ring_pages=2, compress_ratio=4,
                       cmp_block_table=cbt, cmp_block_size=128, num_cmp_pages=3)
    ring_rows = 2 * W
    assert out[0].tolist() == [W + 5, ring_rows + 0, -1, ring_rows + 2 + 2 * 128 + 3, -1]  # s'=1 > s=0 masked;
    assert out[1, 2] == ring_rows + 1  # entry 150 >= (600+1)//4 = 150 masked (causal cut)
    with pytest.raises(ValueError, match=">= -1"):
        resolve_rows(idx[:, :2] - 7, pos, window=W, ring_pages=bt, num_ring_pages=2)
    with pytest.raises(ValueError, match="capacity"):
        resolve_rows(idx + 300, pos, window=W, ring_pages=bt, num_ring_pages=2, compress_ratio=4,
                     cmp_block_table=cbt, cmp_block_size=128, num_cmp_pages=3)
    with pytest.raises(ValueError, match="without a compressed cache"):
        resolve_rows(idx, pos, window=W, ring_pages=bt, num_ring_pages=2)
    with pytest.raises(ValueError, match="outside the compressed cache"):
        resolve_rows(idx, pos, window=W, ring_pages=bt, num_ring_pages=2, compress_ratio=4,
                     cmp_block_table=torch.tensor([[9, 0]]), cmp_block_size=128, num_cmp_pages=3)
    lens = torch.tensor([2, 1])
    out = resolve_rows(idx[:, :3], pos, window=W, ring_pages=bt, num_ring_pages=2, lens=lens)
    assert out[1].tolist() == [W + 5, -1, -1]


def test_kv_tile_fewest_tiles_of_at_most_1024_in_64_row_steps():
    assert [kv_tile(k) for k in (1, 128, 130, 640, 648, 783, 1152, 8320)] == [128, 128, 192, 640, 704, 832, 576, 960]


def test_only_the_last_step_columns_of_a_window_read_the_step():
    """A token's step rows are the last S columns of its window (for runs too), so the
    kernel gathers the step's kv for those only (rounded so the ring-only part is a whole
    number of 16-column tiles); S = 0 or S >= the window: every window column."""
    from dsv4_sparse_attn_common import step_columns, tile_segments, window_indices

    assert [step_columns(128, s) for s in (0, 1, 2, 16, 17, 127, 128, 1024)] == [128, 16, 16, 16, 32, 128, 128, 128]
    assert step_columns(129, 2, 2) == 17  # a run of 2: W − 1 + 2 columns
    assert step_columns(135, 2, 8) == 135 - 112  # a run of 8 longer than the step: its last 8
    for W, S, g in ((128, 2, 1), (128, 2, 2), (128, 8, 8), (128, 5, 1), (128, 2, 8), (128, 12, 8), (128, 16, 8)):
        p = torch.tensor([[200 + s for s in range(S)], [3 + s for s in range(S)]])
        idx = window_indices(p, W, g)
        step_cols = (idx >= W).nonzero()[:, 1]
        tail = g * -(-S // g)
        assert int(step_cols.min()) == idx.shape[1] - tail, (W, S, g)  # step ids only in the last columns
        assert int(step_cols.min()) >= idx.shape[1] - step_columns(idx.shape[1], S, g)
    assert tile_segments(0, 128, 128, False, 16) == [("r", 0, 112), ("w", 112, 16)]
    assert tile_segments(0, 128, 128, False) == [("w", 0, 128)]  # default: unchanged
    assert tile_segments(0, 192, 143, False, 143) == [("w", 0, 192)]  # padding joins the window segment
    assert tile_segments(0, 640, 128, True, 16) == [("r", 0, 112), ("w", 112, 16), ("c", 128, 512)]
    assert tile_segments(1, 576, 128, True, 16) == [("c", 576, 576)]
    assert tile_segments(0, 704, 129, True, 17) == [("r", 0, 112), ("w", 112, 17), ("c", 129, 575)]


def test_pad_rows():
    r = pad_rows(torch.zeros(3, 130, dtype=torch.int32), 8, 128)
    assert r.shape == (8, 256) and (r[3:] == -1).all() and (r[:, 130:] == -1).all()


def test_score_tiles_are_wide_where_the_rows_are_narrow():
    from dsv4_core import FLASH, PRO
    from dsv4_sparse_attn_common.kernel import SCORE_TILE_BYTES, score_heads

    assert score_heads(FLASH.num_heads, 160) == 64 and score_heads(PRO.num_heads, 160) == 64
    assert score_heads(FLASH.num_heads, 640) == 16 and score_heads(PRO.num_heads, 1024) == 16
    assert score_heads(TINY.num_heads, 160) == TINY.num_heads
    for kt in (128, 160, 192, 320, 640, 704):
        hv = score_heads(PRO.num_heads, kt)
        assert hv * kt * 4 <= SCORE_TILE_BYTES or hv == 16


def test_default_tiling_covers_the_rows_in_whole_tiles():
    for k in (1, 128, 130, 640, 648, 1152, 8320):
        tl = default_tiling(TINY, 10, k)
        assert tl.nk * tl.kt >= k > (tl.nk - 1) * tl.kt, (k, tl.nk, tl.kt)
        assert pad_rows(torch.zeros(10, k, dtype=torch.int32), tl.to, tl.kt).shape[1] == tl.nk * tl.kt


def test_finalize_tile_heads_fit_the_unified_buffer():
    from dsv4_core import FLASH, PRO
    from dsv4_core.chip import UB_BYTES

    for cfg in (TINY, FLASH, PRO):
        tl = default_tiling(cfg, 128, 640)
        assert tl.hv_o == min(cfg.num_heads, 32)  # 32 heads of 512 lanes: three fp32 operands in 192 KB
        assert 3 * 4 * tl.hv_o * cfg.head_dim <= UB_BYTES


def test_the_lower_partition_bound_only_where_the_cost_model_needs_it():
    """128 heads over two or more row tiles (PRO CSA decode: 1152 columns) build with the
    lower partition bound pypto's cost model needs there; every other shape keeps pypto's
    own (the bench rows that run today are unchanged)."""
    from dsv4_core import FLASH, PRO
    from dsv4_sparse_attn_common.kernel import WIDE_PG_UPPER_BOUND

    assert default_tiling(PRO, 128, 1152).pg_upper_bound == WIDE_PG_UPPER_BOUND
    for cfg, k in ((PRO, 128), (PRO, 641), (FLASH, 640), (FLASH, 1152), (FLASH, 8321), (TINY, 1152)):
        assert default_tiling(cfg, 128, k).pg_upper_bound == 0, (cfg.num_heads, k)
        assert default_tiling(cfg, 128, k).step_split, (cfg.num_heads, k)
    # that kernel also gathers the step's kv over the whole window (the split modelled slower)
    assert not default_tiling(PRO, 128, 1152).step_split


def test_long_rows_loop_over_their_compressed_only_row_tiles():
    """Rows with two or more compressed-only row tiles (HCA at 1M context: 129 + 8192
    columns per run) run those in a loop; every kernel of the 64K bench (at most one such
    tile) stays unrolled, and a layer without a compressed cache never loops."""
    from dsv4_core import FLASH, PRO
    from dsv4_sparse_attn_common import LOOP_MIN_TILES, looped_row_tiles

    def looped(cfg, k, ws=129, compressed=True):
        return looped_row_tiles(default_tiling(cfg, 128, k), ws, compressed)

    assert LOOP_MIN_TILES == 2
    assert looped(FLASH, 129 + 8192) == default_tiling(FLASH, 128, 8321).nk - 1 == 8
    assert looped(PRO, 129 + 8192) == 8
    for cfg, k, ws in ((FLASH, 641, 129), (PRO, 641, 129), (FLASH, 640, 128), (PRO, 1152, 128),
                       (FLASH, 192 + 512, 192), (FLASH, 143 + 520, 143)):
        assert looped(cfg, k, ws) == 0, (cfg.num_heads, k)
    assert looped(FLASH, 129 + 8192, compressed=False) == 0


def test_long_rows_fold_two_looped_tiles_per_iteration():
    """The looped row tiles are folded LOOP_UNROLL (2) per iteration (an odd one unrolled
    before the loop), under the partition bound that lets pypto's cost model take in that
    loop body (PRO's wide kernels too); rows without looped tiles keep the tiling's bound."""
    from dsv4_core import FLASH, PRO
    from dsv4_sparse_attn_common import LOOP_UNROLL, loop_plan
    from dsv4_sparse_attn_common.kernel import LOOP_PG_UPPER_BOUND, WIDE_PG_UPPER_BOUND

    assert LOOP_UNROLL == 2 and LOOP_PG_UPPER_BOUND == 5000
    flash, pro = default_tiling(FLASH, 128, 130 + 8192, True), default_tiling(PRO, 128, 130 + 8192, True)
    assert loop_plan(flash, 8) == (2, 8, LOOP_PG_UPPER_BOUND)
    assert loop_plan(flash, 7) == (2, 6, LOOP_PG_UPPER_BOUND)  # one tile unrolled before the loop
    assert pro.pg_upper_bound == WIDE_PG_UPPER_BOUND and loop_plan(pro, 8) == (2, 8, LOOP_PG_UPPER_BOUND)
    assert loop_plan(flash, 1) == (1, 1, 0)
    assert loop_plan(flash, 0) == (1, 0, 0)
    assert loop_plan(default_tiling(FLASH, 128, 704, True), 0) == (1, 0, 0)
    assert loop_plan(pro, 0) == (1, 0, WIDE_PG_UPPER_BOUND)

def _paged(q, kv, rows, cos, sin, blk: int = 128, fill: float = float("nan")):
    """One-source physical rows [T, K] over kv [N, D] as the kernel takes a call: kv as the
    compressed cache (padded to whole pages of `fill` rows), each token its own request
    (S = 1) at a position that sees every entry, every window column −1 (the ring all
    `fill`). Returns (KernelInputs, the same rows as the golden's rows over kv with the W
    window columns in front)."""
    T, K = rows.shape
    N, D = kv.shape
    W = TINY.window
    pages = -(-N // blk)
    cmp = torch.full((pages * blk, D), fill).bfloat16()
    cmp[:N] = kv
    rows_full = torch.cat([torch.full((T, W), -1, dtype=torch.int32), rows.int()], 1)
    idx = torch.where(rows_full >= 0, rows_full + W + 1, rows_full).masked_fill(
        torch.arange(W + K) < W, -1)
    ki = KernelInputs(kv=torch.zeros(T, D).bfloat16(), kv_cache=torch.full((T + 1, W, D), fill).bfloat16(),
                      block_table=torch.arange(T, dtype=torch.int32),
                      positions=torch.full((T, 1), 4 * pages * blk, dtype=torch.int64), indices=idx,
                      compress_ratio=4, cmp_kv=cmp.reshape(pages, blk, D),
                      cmp_block_table=torch.arange(pages, dtype=torch.int32).repeat(T, 1), cos=cos, sin=sin)
    return ki, rows_full


def test_run_refuses_a_tiling_that_does_not_cover_the_rows():
    q, kv, rows, sink = _case(T=2, K=300, N=400, seed=1)
    ki, full = _paged(q, kv, rows, *rows_at(torch.arange(2)))
    tl = dataclasses.replace(default_tiling(TINY, 2, full.shape[1]), nk=1)  # 1 × 512 ≥ 428 is fine …
    bad = dataclasses.replace(tl, kt=128)  # … 1 × 128 is not
    with pytest.raises(ValueError, match="nk·kt"):
        run_sparse_attn(TINY, "sim", q, ki, sink, None, None, tiling=bad)


def test_paged_case_is_the_one_source_case():
    """The kernel test's paged form of a one-source case selects the same rows (golden)."""
    q, kv, rows, sink = _case(T=3, K=150, N=300, seed=2)
    cos, sin = rows_at(torch.arange(3))
    ki, full = _paged(q, kv, rows, cos, sin)
    assert (ki.indices[:, :TINY.window] == -1).all()
    assert torch.equal(ki.cmp_kv.reshape(-1, D)[:300], kv)
    a = attention_exact(q, kv, rows, sink, softmax_scale=SCALE)
    b = attention_exact(q, kv, full, sink, softmax_scale=SCALE)
    assert (a - b).abs().max() < 1e-12


# one row tile; two row tiles (the unrolled online softmax); two output tiles of one
# attention tile each (the second loop iteration writes the output tile's buffer that the
# first one's projection read)
@pytest.mark.parametrize("k, out_tiles", [(150, 1), (900, 1), (150, 2)])
def test_kernel_block_on_simulator(k, out_tiles):
    out, _ = sim.isolated(_kernel_case, k, out_tiles)
    assert out["ok"], out["report"]
    assert out["masked_row_zero"]


def _kernel_case(K: int = 150, out_tiles: int = 1):
    cfg = TINY
    T = 10 if out_tiles == 1 else 20  # T, K not multiples of the tiles
    q, kv, rows, sink = _case(T=T, K=K, N=max(500, 2 * K), seed=5)
    rows[3] = -1
    cos, sin = rows_at(torch.arange(T) * 977)
    g = torch.Generator().manual_seed(3)
    wo_a = (torch.randn(cfg.o_groups, cfg.o_lora_rank, cfg.group_in_dim, generator=g) * cfg.group_in_dim ** -0.5)
    wo_b = torch.randn(cfg.hidden_size, cfg.o_groups * cfg.o_lora_rank, generator=g) * 256 ** -0.5
    wo_a, wo_b = wo_a.bfloat16(), wo_b.bfloat16()
    ki, full = _paged(q, kv, rows, cos, sin)  # every row the case does not select is NaN
    ref = sparse_attention_reference(q, kv, full, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE)
    ex = sparse_attention_exact(q, kv, full, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE)
    tl = default_tiling(cfg, T, ki.indices.shape[1])  # run_sparse_attn's
    if out_tiles > 1:  # output tiles of one attention tile: T = 20 → 2 × 16 (padded)
        tl = dataclasses.replace(tl, to=tl.tt)
    assert -(-T // tl.to) == out_tiles
    out = run_sparse_attn(cfg, "sim", q, ki, sink, wo_a, wo_b, tiling=tl)
    rep = compare(out, ex, ref)
    return {"ok": rep.ok and bool(torch.isfinite(out.float()).all()), "report": str(rep),
            "masked_row_zero": bool((out[3].float() == 0).all())}
