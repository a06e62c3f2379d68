"""The ratio-4 compressor runs the ratio-generic pypto kernels of `dsv4_compressor_ratio128`
(built per config and ratio, dynamic token count T and window count N):
`build_project_kernel(cfg, 4)` — both 1024-wide projections and the APE row gather + add —
and `build_pool_kernel(cfg, 4)` — 8-slot gated pooling, bf16, RMSNorm, RoPE. Re-exported here
so the kernel a package runs is visible from the package."""

from dsv4_compressor_ratio128.kernel import CompressorTiling, build_pool_kernel, build_project_kernel, default_tiling

__all__ = ["CompressorTiling", "build_pool_kernel", "build_project_kernel", "default_tiling"]
