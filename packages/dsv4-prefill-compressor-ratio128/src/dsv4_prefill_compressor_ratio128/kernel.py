"""The prefill compressor runs the decode compressor's pypto kernels (built per config with a
dynamic token count T and window count N): `build_project_kernel` over the chunk's T tokens
and `build_pool_kernel` over the windows that close in it. Re-exported here so the kernel a
package runs is visible from the package."""

from dsv4_compressor_ratio128.kernel import CompressorTiling, build_pool_kernel, build_project_kernel, default_tiling

__all__ = ["CompressorTiling", "build_pool_kernel", "build_project_kernel", "default_tiling"]
