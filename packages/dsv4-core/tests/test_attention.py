"""The shared sparse-attention core: reference semantics, index plumbing, and the pypto
block on the simulator (kernel test skipped where dsv4-rope-tables is not installed:
dsv4-rope-tables depends on dsv4-core, so core's reference takes the rotation injected)."""

import math

import pytest
import torch

from dsv4_core import TINY
from dsv4_core.attention import (
    attention_exact,
    pad_rows,
    resolve_rows,
    sparse_attention_exact,
    sparse_attention_reference,
    window_indices,
)
from dsv4_core.compare import compare

H, D, R = 8, 512, 64
SCALE = D ** -0.5


def rotate(x, cos, sin, inverse=False):  # the canonical interleaved rotation (rope-tables' layout)
    sw = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos - sw * sin if inverse else x * cos + sw * sin


def rows_at(pos, theta=10000.0):
    w = 1.0 / theta ** (torch.arange(0, R, 2, dtype=torch.float64) / R)
    ang = pos.double()[:, None] * w[None, :]
    cos = torch.cos(ang).repeat_interleave(2, -1)
    sign = torch.tensor([-1.0, 1.0]).repeat(R // 2)
    sin = torch.sin(ang).repeat_interleave(2, -1) * sign
    return cos.float(), sin.float()


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
    ref = sparse_attention_reference(q, kv, rows, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE, rope=rotate)
    ex = sparse_attention_exact(q, kv, rows, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE, rope=rotate)
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
                                    rope=rotate, tile=32)
    rb = sparse_attention_reference(q, kv, rows[:, perm], sink, cos, sin, wo_a[:, :, :H * D], wo_b,
                                    softmax_scale=SCALE, rope=rotate, tile=32)
    assert (ra.float() - rb.float()).abs().max() <= 2 ** -7 * ra.float().abs().max()  # bf16 rounding only


def test_all_masked_row_gives_zero():
    q, kv, rows, sink = _case()
    rows[2] = -1
    cos, sin = rows_at(torch.arange(q.shape[0]))
    wo_a = (torch.randn(2, 64, 4 * D) * 0.02).bfloat16()
    wo_b = (torch.randn(128, 128) * 0.1).bfloat16()
    ex = attention_exact(q, kv, rows, sink, softmax_scale=SCALE)
    assert torch.equal(ex[2], torch.zeros_like(ex[2]))
    ref = sparse_attention_reference(q, kv, rows, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE, rope=rotate)
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
    base = sparse_attention_exact(q, kv, rows, sink, cos0, sin0, wo_a, wo_b, softmax_scale=SCALE, rope=rotate)
    for t in range(3):
        qr = q.double().clone()
        qr[..., -R:] = rotate(qr[..., -R:], cos[t], sin[t])
        kr = kv.double().clone()
        kr[..., -R:] = rotate(kr[..., -R:], cos[t], sin[t])
        sel = slice(t, t + 1)
        got = sparse_attention_exact(qr[sel], kr, rows[sel], sink, cos[sel], sin[sel], wo_a, wo_b,
                                     softmax_scale=SCALE, rope=rotate)
        assert (got - base[sel]).abs().max() < 1e-6  # fp32 tables: rotation orthonormal to ~1e-8
        dropped = sparse_attention_exact(qr[sel], kr, rows[sel], sink, cos0[sel], sin0[sel], wo_a, wo_b,
                                         softmax_scale=SCALE, rope=rotate)
        assert t == 0 or (dropped - base[sel]).abs().max() > 1e-3  # without the inverse it differs


def test_window_indices_examples():
    W = TINY.window
    idx = window_indices(torch.tensor([[130, 131]]), W)
    assert idx[0, 0] == 3 and idx[0, -1] == W and idx[1, -2:].tolist() == [W, W + 1]
    idx = window_indices(torch.tensor([[0], [127], [128]]), W)
    assert idx[0, 0] == W and (idx[0, 1:] == -1).all()
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


def test_kv_tile_fewest_tiles_of_at_most_768():
    from dsv4_core.attention import kv_tile

    assert [kv_tile(k) for k in (1, 128, 130, 640, 648, 1152, 8320)] == [128, 128, 256, 640, 768, 640, 768]


def test_pad_rows():
    r = pad_rows(torch.zeros(3, 130, dtype=torch.int32), 8, 128)
    assert r.shape == (8, 256) and (r[3:] == -1).all() and (r[:, 130:] == -1).all()


def test_default_tiling_covers_the_rows_in_whole_tiles():
    from dsv4_core.attention import default_tiling

    for k in (1, 128, 130, 640, 648, 1152, 8320):
        tl = default_tiling(TINY, 10, k)
        assert tl.nk * tl.kt >= k > (tl.nk - 1) * tl.kt, (k, tl.nk, tl.kt)
        assert pad_rows(torch.zeros(10, k, dtype=torch.int32), tl.to, tl.kt).shape[1] == tl.nk * tl.kt


def test_run_refuses_a_tiling_that_does_not_cover_the_rows():
    import dataclasses

    from dsv4_core.attention import default_tiling, run_sparse_attn

    q, kv, rows, sink = _case(T=2, K=300, N=400, seed=1)
    tl = dataclasses.replace(default_tiling(TINY, 2, 300), nk=1)  # 1 × 384 ≥ 300 is fine …
    bad = dataclasses.replace(tl, kt=128)  # … 1 × 128 is not
    with pytest.raises(ValueError, match="nk·kt"):
        run_sparse_attn(TINY, "sim", q, kv, rows, sink, None, None, None, None, tiling=bad,
                        swap_idx=torch.arange(R, dtype=torch.int32))


def test_widen_swap_is_identity_on_the_nope_lanes():
    from dsv4_core.attention import widen_swap

    sw = torch.tensor([1, 0, 3, 2], dtype=torch.int32)
    assert widen_swap(sw, 7).tolist() == [0, 1, 2, 4, 3, 6, 5]


@pytest.mark.parametrize("k", [150, 900])  # one row tile; two row tiles (the unrolled online softmax)
def test_kernel_block_on_simulator(k):
    pytest.importorskip("dsv4_rope_tables")
    from dsv4_core import sim

    out, _ = sim.isolated(_kernel_case, k)
    assert out["ok"], out["report"]
    assert out["masked_row_zero"]


def _kernel_case(K: int = 150):
    from dsv4_core.attention import run_sparse_attn
    from dsv4_rope_tables.pypto_block import rope_rotate, swap_index

    cfg = TINY
    q, kv, rows, sink = _case(T=10, K=K, N=max(500, 2 * K), seed=5)  # T, K not multiples of the tiles
    rows[3] = -1
    cos, sin = rows_at(torch.arange(10) * 977)
    g = torch.Generator().manual_seed(3)
    wo_a = (torch.randn(cfg.o_groups, cfg.o_lora_rank, cfg.group_in_dim, generator=g) * cfg.group_in_dim ** -0.5)
    wo_b = torch.randn(cfg.hidden_size, cfg.o_groups * cfg.o_lora_rank, generator=g) * 256 ** -0.5
    wo_a, wo_b = wo_a.bfloat16(), wo_b.bfloat16()
    ref = sparse_attention_reference(q, kv, rows, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE, rope=rotate)
    ex = sparse_attention_exact(q, kv, rows, sink, cos, sin, wo_a, wo_b, softmax_scale=SCALE, rope=rotate)
    out = run_sparse_attn(cfg, "sim", q, kv, rows, sink, cos, sin, wo_a, wo_b, rope_block=rope_rotate,
                          swap_idx=swap_index(R))
    rep = compare(out, ex, ref)
    return {"ok": rep.ok, "report": str(rep), "masked_row_zero": bool((out[3].float() == 0).all())}


def test_attention_cases_scenario_plumbing():
    from dsv4_core.attention_cases import DecodeCase, check_golden, seeded_starts

    st = seeded_starts(4, 100, 200, 7)
    assert st == seeded_starts(4, 100, 200, 7) and all(100 <= s < 200 for s in st)
    case = DecodeCase("c", TINY, (5, 60), 3)
    assert case.batch == 2
    assert case.positions().tolist() == [[5, 6, 7], [60, 61, 62]]
    assert case.positions(1).tolist() == [[5, 6, 7]]
    with pytest.raises(ValueError, match="perturb must be"):
        check_golden("m", "c", TINY, {}, reference=lambda c, i: None, exact=lambda c, i: None, resolved=None,
                     call=None, perturb="scale")
