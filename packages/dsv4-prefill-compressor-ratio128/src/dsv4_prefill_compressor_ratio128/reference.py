"""The golden of the prefill compressor is the decode compressor's (one implementation of
the math for both): `project` (per-token kv projection and score + APE, fp32) and
`compress_windows` (gated pooling, bf16, weighted RMSNorm, RoPE at the window start),
re-exported from `dsv4_compressor_ratio128.reference`; rounding points are listed there and
in the README."""

from __future__ import annotations

from dsv4_compressor_ratio128.reference import RATIO, compress_windows, project

__all__ = ["RATIO", "compress_windows", "project"]
