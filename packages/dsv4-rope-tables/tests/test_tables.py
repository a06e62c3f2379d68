import math

import pytest
import torch

from dsv4_core import FLASH, PRO, TINY
from dsv4_rope_tables import (
    LAYOUT,
    ROPE_ABI,
    RopeLayoutError,
    RopeProfile,
    build_table,
    correction_range,
    detect_layout,
    frequencies,
    from_freqs_cis,
    from_half,
    from_split_duplicated,
    gather_rows,
    profile_for_layer,
    profile_for_ratio,
    require_abi,
    rope_rows,
    to_freqs_cis,
    to_split_duplicated,
    validate_table,
)


def _independent_freqs(base, dim, factor, orig, beta_fast, beta_slow):
    """fp64, written from the YaRN formulas (not from tables.py)."""
    half = dim // 2
    w = [base ** (-2.0 * i / dim) for i in range(half)]
    if orig:
        def cdim(rot):
            return dim * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))
        lo, hi = max(math.floor(cdim(beta_fast)), 0), min(math.ceil(cdim(beta_slow)), dim - 1)
        out = []
        for i in range(half):
            ramp = min(max((i - lo) / (hi - lo), 0.0), 1.0)
            out.append(w[i] / factor * ramp + w[i] * (1 - ramp))
        w = out
    return torch.tensor(w, dtype=torch.float64)


def test_profile_selection_by_ratio():
    assert profile_for_ratio(FLASH, 0).name == "main" and profile_for_ratio(FLASH, 0).base == 10000.0
    assert profile_for_ratio(FLASH, 0).original_seq_len == 0
    for r in (4, 128):
        p = profile_for_ratio(FLASH, r)
        assert (p.name, p.base, p.factor, p.original_seq_len) == ("compress", 160000.0, 16.0, 65536)
    assert profile_for_layer(FLASH, 0).name == "main" and profile_for_layer(FLASH, 2).name == "compress"
    assert profile_for_layer(PRO, 0).name == "compress"  # Pro's layers 0-1 are HCA
    with pytest.raises(ValueError, match="compress_ratio must be 0, 4 or 128"):
        profile_for_ratio(FLASH, 8)


def test_compress_profile_known_values():
    p = profile_for_ratio(FLASH, 4)
    assert correction_range(p) == (15, 25)
    f = frequencies(p).double()
    base = torch.tensor([160000.0 ** (-2 * i / 64) for i in range(32)], dtype=torch.float64)
    assert torch.allclose(f[:16], base[:16], rtol=1e-6)  # unscaled
    assert torch.allclose(f[25:], base[25:] / 16, rtol=1e-6)  # divided by the factor
    assert bool(((f[16:25] < base[16:25]) & (f[16:25] > base[16:25] / 16)).all())  # ramped between


def test_main_profile_plain_rope():
    f = frequencies(profile_for_ratio(FLASH, 0)).double()
    assert torch.allclose(f, torch.tensor([10000.0 ** (-2 * i / 64) for i in range(32)], dtype=torch.float64),
                          rtol=1e-6)


@pytest.mark.parametrize("ratio", [0, 4])
def test_rows_match_independent_complex_exponential(ratio):
    p = profile_for_ratio(FLASH, ratio)
    w = _independent_freqs(p.base, 64, p.factor, p.original_seq_len, p.beta_fast, p.beta_slow)
    pos = torch.tensor([0, 1, 2, 17, 128, 4095, 65535])
    z = torch.exp(1j * pos[:, None].double() * w[None, :])  # freqs_cis, fp64
    cos, sin = rope_rows(p, pos)
    got = to_freqs_cis(cos, sin).to(torch.complex128)
    assert (got - z).abs().max() < 5e-3 * max(1, 65535 * 6e-8 * 16)


def test_large_positions_use_the_official_fp32_angle():
    p = profile_for_ratio(FLASH, 4)
    pos = torch.tensor([1_048_575, 999_999])
    cos, sin = rope_rows(p, pos)
    ang = (pos[:, None].float() * frequencies(p)[None, :]).double()  # fp32 outer product, as model.py
    assert torch.allclose(cos[:, 0::2].double(), torch.cos(ang), atol=1e-7)
    assert torch.allclose(sin[:, 1::2].double(), torch.sin(ang), atol=1e-7)


def test_canonical_layout_and_validator():
    p = profile_for_ratio(TINY, 4)
    cos, sin = rope_rows(p, torch.arange(1, 50))
    assert cos.dtype == torch.float32 and cos.shape == (49, 64)
    assert torch.equal(cos[:, 0::2], cos[:, 1::2]) and torch.equal(sin[:, 0::2], -sin[:, 1::2])
    assert detect_layout(cos, sin) == LAYOUT
    validate_table(cos, sin)
    sd_cos, sd_sin = to_split_duplicated(cos, sin)
    assert detect_layout(sd_cos, sd_sin) == "split-duplicated"
    with pytest.raises(RopeLayoutError, match="split-duplicated.*from_split_duplicated"):
        validate_table(sd_cos, sd_sin)
    with pytest.raises(RopeLayoutError, match="not sign-folded"):
        validate_table(cos, sin.abs() * torch.sign(cos[:, :1] + 2))
    with pytest.raises(TypeError, match="float32"):
        validate_table(cos.bfloat16(), sin.bfloat16())
    with pytest.raises(ValueError, match="rope dim 64, got 32"):
        validate_table(cos[:, :32], sin[:, :32], dim=64)
    with pytest.raises(ValueError, match="positive even"):
        validate_table(cos[:, :63], sin[:, :63])
    with pytest.raises(RopeLayoutError, match="freqs_cis"):
        validate_table(to_freqs_cis(cos, sin), sin)


def test_converters_round_trip_exactly():
    p = profile_for_ratio(FLASH, 0)
    cos, sin = rope_rows(p, torch.randint(0, 1 << 20, (33,)))
    c2, s2 = from_split_duplicated(*to_split_duplicated(cos, sin))
    assert torch.equal(c2, cos) and torch.equal(s2, sin)
    c3, s3 = from_freqs_cis(to_freqs_cis(cos, sin))
    assert torch.equal(c3, cos) and torch.equal(s3, sin)
    c4, s4 = from_half(cos[:, 0::2], sin[:, 1::2])
    assert torch.equal(c4, cos) and torch.equal(s4, sin)
    with pytest.raises(RopeLayoutError):
        from_split_duplicated(cos, sin)
    with pytest.raises(RopeLayoutError):
        from_freqs_cis(cos)


def test_table_and_gather():
    p = profile_for_ratio(TINY, 128)
    t = build_table(p, 300)
    pos = torch.tensor([[0, 299], [7, 128]])
    rows = gather_rows(t, pos)
    direct = rope_rows(p, pos)
    assert rows.cos.shape == (2, 2, 64)
    assert torch.equal(rows.cos, direct.cos) and torch.equal(rows.sin, direct.sin)
    with pytest.raises(ValueError, match=r"positions must be in \[0, 300\)"):
        gather_rows(t, torch.tensor([300]))
    with pytest.raises(ValueError, match="num_positions"):
        build_table(p, 0)


def test_positions_validated():
    p = profile_for_ratio(FLASH, 4)
    rope_rows(p, torch.tensor([1_048_575]))  # the last position, no 1M-row table built
    with pytest.raises(ValueError, match=r"positions must be in \[0, 1048576\).*got 1048576"):
        rope_rows(p, torch.tensor([1_048_576]))
    with pytest.raises(ValueError, match="got -1"):
        rope_rows(p, torch.tensor([3, -1]))
    with pytest.raises(TypeError, match="integer tensor"):
        rope_rows(p, torch.tensor([1.5]))


def test_odd_rope_dim_rejected():
    with pytest.raises(ValueError, match="rope dim must be a positive even number, got 63"):
        RopeProfile("main", 63, 1e4, 1.0, 0, 32.0, 1.0, 10)
    with pytest.raises(ValueError, match="rope_dim must be even"):
        FLASH.replace(rope_dim=63)


def test_abi_version_check():
    require_abi("dsv4-x", ROPE_ABI)
    with pytest.raises(ImportError, match="consumes RoPE ABI 'dsv4-rope/2'"):
        require_abi("dsv4-x", "dsv4-rope/2")
