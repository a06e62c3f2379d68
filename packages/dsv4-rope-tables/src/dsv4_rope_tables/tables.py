"""RoPE frequencies, tables and layouts: the one definition every kernel consumes.

Data layout (official DeepSeek-V4 `apply_rotary_emb`): the last `rope_dim` lanes of a head,
`[nope | rope]`, rotated as interleaved pairs (2i, 2i+1) with frequency ω_i.

Canonical table layout `LAYOUT` ("lane-aligned, sign-folded sine", fp32):

    cos[p, j]        = cos(p·ω_{j>>1})                 -> [c0, c0, c1, c1, …]
    sin_signed[p, j] = (-1)^(j+1) · sin(p·ω_{j>>1})     -> [-s0, s0, -s1, s1, …]

so a kernel rotates with no frequency gather:

    forward  y = x·cos + swap_pairs(x)·sin_signed       (swap_pairs(x)[j] = x[j ^ 1])
    inverse  y = x·cos − swap_pairs(x)·sin_signed

Two profiles per model, chosen from the layer's compress ratio: `main` (θ = rope_theta, no
YaRN) for SWA layers and `compress` (θ = compress_rope_theta + YaRN) for every tensor of a
CSA / HCA layer. No YaRN mscale is applied anywhere.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch

ROPE_ABI = "dsv4-rope/1"  # bump the major when the data or table layout changes
LAYOUT = "lane-aligned-signfolded"
KNOWN_LAYOUTS = (LAYOUT, "split-duplicated", "lane-aligned-unsigned", "half-width", "freqs_cis")


class RopeLayoutError(ValueError):
    """A RoPE table is not in the layout this ABI defines."""


@dataclasses.dataclass(frozen=True)
class RopeProfile:
    """One RoPE frequency profile (official `precompute_freqs_cis` arguments)."""

    name: str  # "main" or "compress"
    dim: int  # rope lanes (64)
    base: float
    factor: float
    original_seq_len: int  # 0: no YaRN
    beta_fast: float
    beta_slow: float
    max_position: int  # positions must be in [0, max_position)

    def __post_init__(self) -> None:
        if self.dim <= 0 or self.dim % 2:
            raise ValueError(f"rope dim must be a positive even number, got {self.dim}")
        if self.max_position <= 0:
            raise ValueError(f"max_position must be positive, got {self.max_position}")


def profile_for_ratio(config: Any, compress_ratio: int) -> RopeProfile:
    """`main` for compress ratio 0 (SWA layers), `compress` for 4 / 128 (CSA / HCA)."""
    if compress_ratio not in (0, 4, 128):
        raise ValueError(f"compress_ratio must be 0, 4 or 128, got {compress_ratio!r}")
    if compress_ratio == 0:
        return RopeProfile("main", config.rope_dim, float(config.rope_theta), 1.0, 0,
                           float(config.beta_fast), float(config.beta_slow), config.max_position_embeddings)
    return RopeProfile("compress", config.rope_dim, float(config.compress_rope_theta), float(config.rope_factor),
                       int(config.original_max_position_embeddings), float(config.beta_fast),
                       float(config.beta_slow), config.max_position_embeddings)


def profile_for_layer(config: Any, layer: int) -> RopeProfile:
    return profile_for_ratio(config, config.compress_ratio(layer))


def _correction_dim(num_rotations: float, dim: int, base: float, seq_len: int) -> float:
    return dim * math.log(seq_len / (num_rotations * 2 * math.pi)) / (2 * math.log(base))


def correction_range(profile: RopeProfile) -> tuple[int, int]:
    """YaRN's (low, high) frequency indices: below low unscaled, above high divided by factor."""
    low = math.floor(_correction_dim(profile.beta_fast, profile.dim, profile.base, profile.original_seq_len))
    high = math.ceil(_correction_dim(profile.beta_slow, profile.dim, profile.base, profile.original_seq_len))
    return max(low, 0), min(high, profile.dim - 1)


def frequencies(profile: RopeProfile) -> torch.Tensor:
    """ω_i, i < dim/2, fp32, computed as the official model does (fp32 powers, YaRN ramp)."""
    half = profile.dim // 2
    freqs = 1.0 / (profile.base ** (torch.arange(0, profile.dim, 2, dtype=torch.float32) / profile.dim))
    if profile.original_seq_len > 0:
        low, high = correction_range(profile)
        hi = high + 0.001 if low == high else high
        ramp = ((torch.arange(half, dtype=torch.float32) - low) / (hi - low)).clamp(0, 1)
        smooth = 1 - ramp
        freqs = freqs / profile.factor * (1 - smooth) + freqs * smooth
    return freqs


def check_positions(positions: torch.Tensor | Any, profile: RopeProfile, name: str = "positions") -> torch.Tensor:
    """Positions as an int64 CPU tensor; refuse non-integers and values outside [0, max)."""
    pos = torch.as_tensor(positions)
    if pos.is_floating_point() or pos.is_complex() or pos.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {pos.dtype}")
    pos = pos.to("cpu", torch.int64)
    if pos.numel():
        lo, hi = int(pos.min()), int(pos.max())
        if lo < 0 or hi >= profile.max_position:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} must be in [0, {profile.max_position}) ({profile.name} profile), got {bad}")
    return pos


class RopeRows(NamedTuple):
    """Canonical-layout rows for some positions: cos [N, dim], sin_signed [N, dim], fp32."""

    cos: torch.Tensor
    sin: torch.Tensor


def _lane_sign(dim: int) -> torch.Tensor:
    sign = torch.ones(dim, dtype=torch.float64)
    sign[0::2] = -1.0
    return sign


def rope_rows(profile: RopeProfile, positions: torch.Tensor | Any) -> RopeRows:
    """Rows of the canonical table at `positions` (any shape; rows follow positions' shape).

    Computes only the rows asked for (512 bytes per position for dim 64), so positions up
    to max_position (1,048,576) need no 1M-row table. Angles are the fp32 product
    fp32(p)·ω_i, as the official fp32 `outer(t, freqs)`; cos/sin are evaluated in fp64 from
    that fp32 angle and rounded to fp32."""
    pos = check_positions(positions, profile)
    freqs = frequencies(profile)
    ang = (pos.reshape(-1, 1).to(torch.float32) * freqs.reshape(1, -1)).to(torch.float64)  # [N, dim/2]
    cos = torch.cos(ang).repeat_interleave(2, dim=-1)
    sin = torch.sin(ang).repeat_interleave(2, dim=-1) * _lane_sign(profile.dim)
    shape = tuple(pos.shape) + (profile.dim,)
    return RopeRows(cos.to(torch.float32).reshape(shape), sin.to(torch.float32).reshape(shape))


def build_table(profile: RopeProfile, num_positions: int | None = None) -> RopeRows:
    """The full canonical table for positions [0, num_positions) (default max_position:
    64 lanes × 2 × fp32 = 512 bytes per row, 512 MiB at 1M rows — prefer `rope_rows`)."""
    n = profile.max_position if num_positions is None else num_positions
    if not 0 < n <= profile.max_position:
        raise ValueError(f"num_positions must be in (0, {profile.max_position}], got {n}")
    return rope_rows(profile, torch.arange(n))


def gather_rows(table: RopeRows, positions: torch.Tensor | Any) -> RopeRows:
    """Rows of a (validated) canonical table at `positions`."""
    validate_table(table.cos, table.sin)
    pos = torch.as_tensor(positions)
    if pos.is_floating_point():
        raise TypeError(f"positions must be an integer tensor, got dtype {pos.dtype}")
    pos = pos.to(table.cos.device, torch.int64)
    n = table.cos.shape[0]
    if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= n):
        raise ValueError(f"positions must be in [0, {n}) (rows of this table), got "
                         f"{int(pos.min()) if int(pos.min()) < 0 else int(pos.max())}")
    return RopeRows(table.cos[pos], table.sin[pos])


# ---- layouts ---------------------------------------------------------------------------------
def detect_layout(cos: torch.Tensor, sin: torch.Tensor | None = None, *, atol: float = 0.0) -> str:
    """Which known layout a (cos, sin) pair is in. Rows at position 0 (cos 1, sin 0) fit every
    layout; a table whose rows are all like that reports the canonical layout."""
    if cos.is_complex():
        return "freqs_cis"
    if sin is None:
        raise TypeError("sin is required unless cos is a complex freqs_cis tensor")
    c, s = cos.detach().double(), sin.detach().double()
    d = c.shape[-1]
    if d % 2:
        return "unknown"

    def eq(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(torch.allclose(a, b, rtol=0.0, atol=atol))

    if eq(c[..., 0::2], c[..., 1::2]) and eq(s[..., 0::2], -s[..., 1::2]):
        return LAYOUT
    if eq(c[..., 0::2], c[..., 1::2]) and eq(s[..., 0::2], s[..., 1::2]):
        return "lane-aligned-unsigned"
    h = d // 2
    if eq(c[..., :h], c[..., h:]) and eq(s[..., :h], s[..., h:]):
        return "split-duplicated"
    # a half-width table: cos² + sin² = 1 lane by lane and no duplication
    if eq(c * c + s * s, torch.ones_like(c)) if atol else torch.allclose(c * c + s * s, torch.ones_like(c), atol=1e-5):
        return "half-width"
    return "unknown"


def validate_table(cos: torch.Tensor, sin: torch.Tensor, *, name: str = "rope table", dim: int | None = None) -> None:
    """Refuse a table that is not canonical: fp32, same shape, last dim even (== dim when
    given), lane-aligned cos with sign-folded sin."""
    if not isinstance(cos, torch.Tensor) or not isinstance(sin, torch.Tensor):
        raise TypeError(f"{name}: cos and sin must be torch tensors")
    if cos.is_complex():
        raise RopeLayoutError(f"{name}: got a complex freqs_cis tensor; convert it with from_freqs_cis()")
    if cos.dtype != torch.float32 or sin.dtype != torch.float32:
        raise TypeError(f"{name}: cos and sin must be float32, got {cos.dtype} and {sin.dtype}")
    if cos.shape != sin.shape:
        raise ValueError(f"{name}: cos {tuple(cos.shape)} and sin {tuple(sin.shape)} differ in shape")
    d = cos.shape[-1] if cos.dim() else 0
    if d == 0 or d % 2:
        raise ValueError(f"{name}: last dim must be a positive even rope dim, got {d}")
    if dim is not None and d != dim:
        raise ValueError(f"{name}: last dim must be the config's rope dim {dim}, got {d}")
    layout = detect_layout(cos, sin)
    if layout != LAYOUT:
        hint = {
            "split-duplicated": "pypto-lib's [c0..c31 | c0..c31] layout; convert with from_split_duplicated()",
            "lane-aligned-unsigned": "the sine is not sign-folded; expected sin[2i] = -s_i, sin[2i+1] = +s_i",
            "half-width": "a half-width [.., dim/2] table; expand it with from_half()",
        }.get(layout, "not a recognisable RoPE table")
        raise RopeLayoutError(f"{name}: layout is {layout!r}, expected {LAYOUT!r} ({ROPE_ABI}): {hint}")


def _half(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    validate_table(cos, sin)
    return cos[..., 0::2], sin[..., 1::2]


def to_split_duplicated(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical -> pypto-lib's split-duplicated `[c0..c{h-1} | c0..c{h-1}]` (sin unsigned)."""
    c, s = _half(cos, sin)
    return torch.cat([c, c], -1), torch.cat([s, s], -1)


def from_split_duplicated(cos: torch.Tensor, sin: torch.Tensor) -> RopeRows:
    """pypto-lib's split-duplicated layout -> canonical (fp32)."""
    if detect_layout(cos, sin) != "split-duplicated":
        raise RopeLayoutError(f"from_split_duplicated: input layout is {detect_layout(cos, sin)!r}")
    h = cos.shape[-1] // 2
    return from_half(cos[..., :h].float(), sin[..., :h].float())


def from_half(cos_half: torch.Tensor, sin_half: torch.Tensor) -> RopeRows:
    """Half-width `[.., dim/2]` cos/sin (one value per pair) -> canonical."""
    if cos_half.shape != sin_half.shape:
        raise ValueError(f"from_half: cos {tuple(cos_half.shape)} and sin {tuple(sin_half.shape)} differ")
    c = cos_half.float().repeat_interleave(2, dim=-1)
    s = sin_half.float().repeat_interleave(2, dim=-1) * _lane_sign(c.shape[-1]).to(torch.float32)
    return RopeRows(c, s)


def to_freqs_cis(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Canonical -> the official model's complex64 `freqs_cis` `[.., dim/2]`."""
    c, s = _half(cos, sin)
    return torch.complex(c, s)


def from_freqs_cis(freqs_cis: torch.Tensor) -> RopeRows:
    """The official model's complex `freqs_cis` `[.., dim/2]` -> canonical."""
    if not freqs_cis.is_complex():
        raise RopeLayoutError(f"from_freqs_cis: expected a complex tensor, got {freqs_cis.dtype}")
    return from_half(freqs_cis.real.float(), freqs_cis.imag.float())
