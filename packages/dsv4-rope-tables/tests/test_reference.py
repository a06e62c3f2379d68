import pytest
import torch

from dsv4_core import FLASH
from dsv4_rope_tables import apply_rope, profile_for_ratio, rope_rows, to_freqs_cis


def _complex_rotation(x, cos, sin, inverse=False):
    """The official formulation: view pairs as complex numbers and multiply by freqs_cis."""
    fc = to_freqs_cis(cos, sin)[:, None, :]
    if inverse:
        fc = fc.conj()
    xr = torch.view_as_complex(x[..., -64:].float().unflatten(-1, (-1, 2)).contiguous())
    y = torch.view_as_real(xr * fc).flatten(-2)
    out = x.float().clone()
    out[..., -64:] = y
    return out


@pytest.mark.parametrize("inverse", [False, True])
def test_matches_complex_multiplication(inverse):
    x = torch.randn(9, 4, 512)
    cos, sin = rope_rows(profile_for_ratio(FLASH, 4), torch.randint(0, 1 << 20, (9,)))
    got = apply_rope(x, cos, sin, inverse=inverse)
    assert torch.allclose(got, _complex_rotation(x, cos, sin, inverse), atol=1e-5)


def test_nope_lanes_untouched_and_dtype_kept():
    x = torch.randn(5, 3, 512).bfloat16()
    cos, sin = rope_rows(profile_for_ratio(FLASH, 0), torch.arange(100, 105))
    y = apply_rope(x, cos, sin)
    assert y.dtype == torch.bfloat16 and torch.equal(y[..., :448], x[..., :448])
    assert not torch.equal(y[..., 448:], x[..., 448:])


def test_inverse_undoes_forward():
    x = torch.randn(6, 2, 512, dtype=torch.float64)
    cos, sin = rope_rows(profile_for_ratio(FLASH, 4), torch.randint(0, 1 << 20, (6,)))
    y = apply_rope(apply_rope(x, cos.double(), sin.double(), validate=False), cos.double(), sin.double(), inverse=True,
                   validate=False)
    assert torch.allclose(y, x, atol=1e-6)


def test_bad_inputs():
    cos, sin = rope_rows(profile_for_ratio(FLASH, 4), torch.arange(3))
    with pytest.raises(ValueError, match="3 rows"):
        apply_rope(torch.randn(4, 512), cos, sin)
    with pytest.raises(ValueError, match="smaller than the rope dim"):
        apply_rope(torch.randn(3, 32), cos, sin)
