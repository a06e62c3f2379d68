"""Gated pooling: the torch reference against an explicit formula and its properties, the
window geometry of both ratios, and the pypto block on the simulator (one process per
shape)."""

import math

import pytest
import torch

from dsv4_compressor_common.pooling import coff, gated_pool, window_positions, window_size
from dsv4_core import sim
from dsv4_core.compare import compare


def _explicit(kv, score, valid):
    """Per window and channel: Σ_w e^{s_w − m} v_w / Σ_w e^{s_w − m} over the valid slots."""
    N, W, C = kv.shape
    out = torch.zeros(N, C, dtype=torch.float64)
    for n in range(N):
        idx = [w for w in range(W) if valid[n, w]]
        if not idx:
            continue
        s = score[n, idx].double()
        e = torch.exp(s - s.max(0).values)
        out[n] = (e * kv[n, idx].double()).sum(0) / e.sum(0)
    return out


def test_matches_explicit_formula():
    kv, score = torch.randn(5, 8, 16), torch.randn(5, 8, 16) * 3
    valid = torch.rand(5, 8) > 0.3
    valid[:, -1] = True
    assert torch.allclose(gated_pool(kv, score, valid).double(), _explicit(kv, score, valid), atol=1e-6)
    # fp64 inputs give fp64 math
    assert gated_pool(kv.double(), score.double(), valid).dtype == torch.float64


def test_absent_slots_never_contribute():
    kv, score = torch.randn(3, 8, 4), torch.randn(3, 8, 4)
    valid = torch.ones(3, 8, dtype=torch.bool)
    valid[:, :4] = False
    want = gated_pool(kv, score, valid)
    kv2, score2 = kv.clone(), score.clone()
    kv2[:, :4] = float("nan")
    score2[:, :4] = float("inf")
    assert torch.equal(gated_pool(kv2, score2, valid), want)
    assert torch.allclose(want, gated_pool(kv[:, 4:], score[:, 4:], valid[:, 4:]))


def test_all_absent_window_pools_to_zero_and_weights_sum_to_one():
    kv = torch.ones(2, 4, 3)
    valid = torch.tensor([[False] * 4, [True, False, True, True]])
    out = gated_pool(kv, torch.randn(2, 4, 3), valid)
    assert torch.equal(out[0], torch.zeros(3)) and torch.allclose(out[1], torch.ones(3))


def test_shape_errors():
    with pytest.raises(ValueError, match="must be \\[N, W, C\\]"):
        gated_pool(torch.zeros(2, 4, 3), torch.zeros(2, 4, 2), torch.ones(2, 4, dtype=torch.bool))


def test_window_geometry():
    assert window_size(4) == 8 and window_size(128) == 128
    assert coff(4) == 2 and coff(128) == 1
    pos, half = window_positions(torch.tensor([3, 11]), 4)
    assert pos.tolist() == [list(range(-4, 4)), list(range(4, 12))]
    assert half.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # previous window: front half; current: back half
    pos, half = window_positions(torch.tensor([255]), 128)
    assert pos[0].tolist() == list(range(128, 256)) and not half.any()
    with pytest.raises(ValueError, match="closing positions"):
        window_positions(torch.tensor([5]), 4)
    with pytest.raises(ValueError, match="must be 4 or 128"):
        window_size(2)


def _kernel_case(N, W, C, NT):
    """pool_window_tile inside a jit kernel over N windows (dynamic, ragged last tile)."""
    import pypto

    from dsv4_compressor_common.pooling import pool_window_tile
    from dsv4_core.backends import jit_options

    F32, DYN = pypto.DT_FP32, pypto.DYNAMIC

    @pypto.frontend.jit(runtime_options=jit_options())
    def pool(kv: pypto.Tensor([DYN, W, C], F32), score: pypto.Tensor([DYN, W, C], F32),
             valid: pypto.Tensor([DYN, W], F32), out: pypto.Tensor([DYN, C], F32)):
        n = kv.shape[0]
        for i in pypto.loop((n + NT - 1) // NT, name="tiles", idx_name="i"):
            off = i * NT
            p = pool_window_tile(kv, score, valid, off, pypto.min(off + NT, n) - off, window=W, channels=C, tile_rows=NT)
            pypto.set_vec_tile_shapes(NT, C)
            pypto.assemble(pypto.mul(p, 1.0), [off, 0], out)

    g = torch.Generator().manual_seed(0)
    kv, score = torch.randn(N, W, C, generator=g), torch.randn(N, W, C, generator=g) * 3
    valid = torch.rand(N, W, generator=g) > 0.3
    valid[:, -1] = True
    valid[0, : W // 2] = False
    kv[~valid] = 0.0  # the host zero-fills absent slots
    score[~valid] = 0.0
    out = torch.full((N, C), -7.0)
    sim.run(pool, [kv, score, valid.float(), out], name="gated_pool")
    return out, gated_pool(kv, score, valid), gated_pool(kv.double(), score.double(), valid)


@pytest.mark.parametrize("N,W,C", [(11, 8, 512), (3, 128, 128)])
def test_pypto_block_matches_reference(N, W, C):
    (out, ref, exact), run = sim.isolated(_kernel_case, N, W, C, 8)
    rep = compare(out, exact, ref, name="pooled")
    assert rep.ok, str(rep)
    assert run is not None and run.values and run.aicore_us > 0
    assert not math.isclose(float(out.abs().max()), 7.0)


def _segments_case(N, W, K, C, perturb):
    """gated_pool_segments on two segments of each window's slots, [NT, W] (the slots with
    `in_a`) and its last K ([NT, K], the others), against the reference over the whole
    window (each slot taken from the segment that holds it)."""
    import pypto

    from dsv4_compressor_common.pooling import MASK_BIAS, gated_pool_segments
    from dsv4_core.backends import jit_options

    F32, S = pypto.DT_FP32, pypto.STATIC

    @pypto.frontend.jit(runtime_options=jit_options())
    def pool(kv_a: pypto.Tensor([S, S, S], F32), sc_a: pypto.Tensor([S, S, S], F32), in_a: pypto.Tensor([S, S], F32),
             kv_b: pypto.Tensor([S, S, S], F32), sc_b: pypto.Tensor([S, S, S], F32), in_b: pypto.Tensor([S, S], F32),
             out: pypto.Tensor([S, S], F32)):
        pypto.set_vec_tile_shapes(N, W)
        a3 = pypto.reshape(pypto.mul(in_a, 1.0), [N, W, 1])
        b3 = pypto.view(pypto.reshape(pypto.mul(in_b, 1.0), [N, W, 1]), [N, K, 1], [0, W - K, 0])
        pypto.set_vec_tile_shapes(1, W, 64)
        ab = pypto.mul(pypto.sub(a3, 1.0), MASK_BIAS)  # the masks' biases
        bb = pypto.mul(pypto.sub(b3, 1.0), MASK_BIAS)
        p = gated_pool_segments([(kv_a, sc_a, a3, ab, W), (kv_b, sc_b, b3, bb, K)], channels=C, tile_rows=N,
                                channel_tile=64)
        pypto.set_vec_tile_shapes(N, C)
        out[:] = pypto.mul(p, 1.0)

    g = torch.Generator().manual_seed(1)
    kv, score = torch.randn(N, W, C, generator=g), torch.randn(N, W, C, generator=g) * 3
    valid = torch.rand(N, W, generator=g) > 0.3
    valid[0] = False  # a window with no slot pools to 0
    in_b = valid & (torch.rand(N, W, generator=g) > 0.5)
    in_b[:, : W - K] = False  # only the last K slots can be the second segment's
    in_a = valid & ~in_b
    kv_a, sc_a = torch.where(in_a[..., None], kv, 0.0), torch.where(in_a[..., None], score, 0.0)
    kv_b, sc_b = kv[:, W - K:].clone(), score[:, W - K:].clone()
    kv_b[~in_b[:, W - K:]] = 0.0
    sc_b[~in_b[:, W - K:]] = 0.0
    if perturb:  # the second segment's slots dropped: the check must fail
        in_b = torch.zeros_like(in_b)
    out = torch.full((N, C), -7.0)
    sim.run(pool, [kv_a, sc_a, in_a.float(), kv_b, sc_b, in_b.float(), out], name="gated_pool_segments")
    kv0, sc0 = torch.where(valid[..., None], kv, 0.0), torch.where(valid[..., None], score, 0.0)
    return out, gated_pool(kv0, sc0, valid), gated_pool(kv0.double(), sc0.double(), valid)


@pytest.mark.parametrize("perturb", [False, True])
def test_pypto_segments_match_the_whole_window(perturb):
    (out, ref, exact), run = sim.isolated(_segments_case, 8, 128, 2, 128, perturb)
    rep = compare(out, exact, ref, name="pooled")
    assert rep.ok != perturb, str(rep)
    assert run is not None and run.values


def test_slot_masks_are_the_masks_and_their_biases():
    from dsv4_compressor_common.kernel import slot_masks

    valid = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    from_state = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    got = slot_masks(valid, from_state)
    want = [valid, from_state, torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])]
    assert len(got) == 6
    for k, m in enumerate(want):
        mask, bias = got[2 * k], got[2 * k + 1]
        assert mask.shape == (2, 4, 1) and mask.dtype == torch.float32 and mask.is_contiguous()
        assert torch.equal(mask[..., 0], m)
        assert torch.equal(bias[..., 0], torch.where(m > 0, 0.0, -1e30))
