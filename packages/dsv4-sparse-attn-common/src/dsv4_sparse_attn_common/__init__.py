"""dsv4-sparse-attn-common: the sparse-attention core shared by the four sparse-attention
packages (CSA / HCA / SWA decode and prefill) — the torch golden and fp64 oracles, the
host-side index plumbing (one home for the visibility rule of compressed entries), the
pypto kernel and its blocks, argument checks and the glue every public function runs.

Scenario kits for tests, `nox -s golden` and `nox -s bench` live in
`dsv4_sparse_attn_common.testing`, which nothing here imports."""

from dsv4_rope_tables import require_abi

from .api import (
    Golden,
    Resolved,
    attend,
    check_positions_shape,
    decode_attention,
    decode_golden,
    decode_kernel_inputs,
    decode_resolved,
    decode_rows,
    kernel_inputs,
    resolve,
    rope_rows_unchecked,
)
from .indexing import (
    KVSource,
    causal_topk,
    check_positions_grid,
    check_window_write,
    compressed_indices,
    index_rows,
    index_rows_unchecked,
    kv_source,
    paged_window_rows,
    prepare,
    resolve_rows,
    visible_entries,
    visible_entry_columns,
    window_columns,
    window_indices,
    window_rows,
    window_span,
    write_window_cache,
)
from .kernel import (
    KV_TILE_MAX,
    LOOP_MIN_TILES,
    LOOP_UNROLL,
    AttnTiling,
    KernelInputs,
    build_sparse_attn_kernel,
    compressed_segment,
    default_tiling,
    finalize_heads,
    fold_segments,
    group_meta,
    grouped_oproj,
    kv_tile,
    loop_plan,
    looped_row_tiles,
    pad_rows,
    page_bases,
    paged_segment,
    paged_window,
    ring_segment,
    run_sparse_attn,
    share_group,
    shared_segment,
    sink_softmax_tile,
    step_columns,
    tile_segments,
    token_meta,
    window_layout,
    window_masks,
    window_segment,
)
from .perf import gathered_bytes, traffic
from .reference import (
    attention_exact,
    semantic_attention_exact,
    sparse_attention_exact,
    sparse_attention_reference,
)
from .validate import validate_attention_args

__version__ = "0.4.5"
ROPE_ABI_CONSUMED = "dsv4-rope/1"
require_abi("dsv4-sparse-attn-common", ROPE_ABI_CONSUMED)

__all__ = [
    "KV_TILE_MAX", "ROPE_ABI_CONSUMED", "AttnTiling", "Golden", "KVSource", "KernelInputs", "Resolved", "attend",
    "attention_exact",
    "build_sparse_attn_kernel", "causal_topk", "check_positions_grid", "compressed_indices", "decode_attention",
    "decode_golden", "decode_resolved", "default_tiling", "finalize_heads", "grouped_oproj", "index_rows",
    "kv_source", "kv_tile", "pad_rows", "prepare", "resolve", "resolve_rows", "run_sparse_attn",
    "semantic_attention_exact", "sink_softmax_tile", "sparse_attention_exact", "sparse_attention_reference",
    "traffic", "gathered_bytes", "validate_attention_args", "visible_entries", "visible_entry_columns",
    "window_indices", "write_window_cache", "check_window_write", "__version__", "check_positions_shape",
    "decode_kernel_inputs", "index_rows_unchecked", "kernel_inputs", "rope_rows_unchecked", "token_meta",
    "window_rows", "compressed_segment", "fold_segments", "tile_segments", "window_segment",
    "decode_rows", "group_meta", "share_group", "shared_segment", "window_columns", "window_span", "ring_segment",
    "step_columns", "looped_row_tiles", "loop_plan", "LOOP_MIN_TILES", "LOOP_UNROLL",
    "window_layout", "paged_window_rows", "paged_window",
    "paged_segment", "page_bases", "window_masks",
]
