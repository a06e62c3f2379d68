"""Semantics of the golden."""

import pytest
import torch

from dsv4_core import FLASH, TINY
from dsv4_qkv_proj_rope import qkv_exact, qkv_proj_rope, qkv_reference
from dsv4_qkv_proj_rope.cases import CASES, WEIGHT_ARGS, make_inputs
from dsv4_rope_tables import profile_for_ratio, rope_rows, to_freqs_cis


def _inputs(name="tiny-decode-B64S2"):
    case = CASES[name]
    return case, make_inputs(case)


def _call(inp, cfg=TINY, ratio=4):
    return qkv_proj_rope(inp["x"], *[inp[k] for k in WEIGHT_ARGS], inp["positions"], config=cfg,
                         compress_ratio=ratio, backend="torch")


def test_rope_lanes_match_complex_rotation():
    _, inp = _inputs()
    out = _call(inp)
    cos, sin = rope_rows(profile_for_ratio(TINY, 4), inp["positions"])
    # undo RoPE with the official complex formulation: the result is the (unrotated) normed q
    fc = to_freqs_cis(cos, sin)
    qc = torch.view_as_complex(out.q[..., -64:].double().unflatten(-1, (-1, 2)).contiguous())
    unrot = torch.view_as_real(qc * fc[:, None, :].conj().to(torch.complex128)).flatten(-2)
    T, H = out.q.shape[:2]
    qb = (qkv_reference(inp["x"], *[inp[k] for k in WEIGHT_ARGS], cos, sin, num_heads=H, eps=TINY.eps).qr.float()
          @ inp["wq_b"].float().T).bfloat16().float().reshape(T, H, -1)
    qn = qb * torch.rsqrt((qb * qb).mean(-1, keepdim=True) + TINY.eps)
    assert (unrot - qn[..., -64:].double()).abs().max() < 0.05


def test_nope_lanes_untouched_by_rope():
    _, inp = _inputs()
    a = _call(inp)
    inp2 = dict(inp, positions=(inp["positions"] + 12345) % TINY.max_position_embeddings)
    b = _call(inp2)
    assert torch.equal(a.q[..., :448], b.q[..., :448]) and torch.equal(a.kv[..., :448], b.kv[..., :448])
    assert not torch.equal(a.q[..., 448:], b.q[..., 448:])
    assert torch.equal(a.qr, b.qr)


def test_per_head_norm_is_unweighted():
    _, inp = _inputs()
    out = _call(inp)
    q_at_zero = _call(dict(inp, positions=torch.zeros_like(inp["positions"]))).q.float()  # no rotation
    rms = q_at_zero.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones_like(rms), atol=2e-2)  # unit RMS per head, no weight
    assert out.q.shape == (128, TINY.num_heads, 512)


def test_profile_selection_changes_long_positions():
    _, inp = _inputs("tiny-prefill-T1024-near1M")
    swa = _call(inp, ratio=0)
    csa = _call(inp, ratio=4)
    hca = _call(inp, ratio=128)
    assert torch.equal(csa.q, hca.q)  # CSA and HCA layers share the compress profile
    assert (swa.q[..., 448:].float() - csa.q[..., 448:].float()).abs().max() > 0.5
    assert torch.equal(swa.q[..., :448], csa.q[..., :448])


def test_golden_close_to_exact():
    case, inp = _inputs()
    cos, sin = rope_rows(profile_for_ratio(TINY, 4), inp["positions"])
    w = [inp[k] for k in WEIGHT_ARGS]
    ref = qkv_reference(inp["x"], *w, cos, sin, num_heads=TINY.num_heads, eps=TINY.eps)
    ex = qkv_exact(inp["x"], *w, cos, sin, num_heads=TINY.num_heads, eps=TINY.eps)
    for f in ("q", "kv", "qr"):
        assert (getattr(ref, f).double() - getattr(ex, f)).abs().max() < 0.05


@pytest.mark.parametrize("ratio", [0, 4])
def test_flash_shapes_on_torch_backend(ratio):
    g = torch.Generator().manual_seed(1)
    T = 3
    x = torch.randn(T, 4096, generator=g).bfloat16()
    w = {"wq_a": torch.randn(1024, 4096, generator=g).bfloat16() * 0.02, "q_norm_weight": torch.ones(1024).bfloat16(),
         "wq_b": torch.randn(64 * 512, 1024, generator=g).bfloat16() * 0.03,
         "wkv": torch.randn(512, 4096, generator=g).bfloat16() * 0.02, "kv_norm_weight": torch.ones(512).bfloat16()}
    out = qkv_proj_rope(x, *w.values(), torch.tensor([0, 7, 1_048_575]), config=FLASH, compress_ratio=ratio,
                        backend="torch")
    assert out.q.shape == (3, 64, 512) and out.kv.shape == (3, 512) and out.qr.shape == (3, 1024)
    assert all(t.dtype == torch.bfloat16 and torch.isfinite(t.float()).all() for t in out)
