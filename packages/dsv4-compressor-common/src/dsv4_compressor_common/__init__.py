"""dsv4-compressor-common: the ratio-generic core of DeepSeek-V4's KV compressors, shared by
the module packages (decode and prefill, ratio 4 and 128).

- `pooling`: window geometry and gated pooling (torch reference and pypto block);
- `paging`: the host plan of a call over the paged caches (which windows close, where each
  slot comes from, which rows are written), validated before anything is written;
- `reference`: the torch golden (`project`, `compress_windows`);
- `kernel` / `tiling`: the two pypto kernels (project, pool), built per config and ratio;
- `step`: plan, compute (golden or kernels), write;
- `calls`: validation, cache allocation, the decode / prefill entry points and
  `public_functions`, which builds a module package's public functions for its ratio;
- `testing`: scenario builders, the golden / bench protocol glue and the shared test suites
  (for tests and tools only; nothing at run time imports it).
"""

from __future__ import annotations

from dsv4_rope_tables import require_abi

from .calls import (
    CompressorOut,
    decode_call,
    make_caches,
    prefill_call,
    public_functions,
    start_position,
    validate_caches,
    validate_weights,
)
from .kernel import build_pool_kernel, build_project_kernel
from .paging import Plan, StateMissingError, plan_step
from .pooling import coff, gated_pool, window_positions, window_size
from .reference import compress_windows, project
from .step import last_runs, run_step
from .tiling import CompressorTiling, default_tiling

__version__ = "0.2.13"
# The RoPE ABI of the family's kernels and golden; the module packages consume RoPE only
# through them, re-export this and fail at import (here) when the installed rope-tables
# speaks another.
ROPE_ABI_CONSUMED = "dsv4-rope/1"
require_abi("dsv4-compressor-common", ROPE_ABI_CONSUMED)

__all__ = [
    "ROPE_ABI_CONSUMED", "CompressorOut", "CompressorTiling", "Plan", "StateMissingError", "build_pool_kernel",
    "build_project_kernel", "coff", "compress_windows", "decode_call", "default_tiling", "gated_pool", "last_runs",
    "make_caches", "plan_step", "prefill_call", "project", "public_functions", "run_step", "start_position",
    "validate_caches", "validate_weights", "window_positions", "window_size", "__version__",
]
