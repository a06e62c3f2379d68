"""dsv4-compressor-ratio4: DeepSeek-V4's CSA KV compressor (ratio 4, overlapping windows), decode.

    out = compressor_ratio4(x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos,
                            state_block_table, cmp_kv, cmp_slot_mapping, config=FLASH,
                            backend="auto")

For B requests × S new consecutive tokens each (any S ≥ 1; with S ≥ 4 several windows close
in one step): per token `kv_proj = x @ wkvᵀ`, `score = x @ wgateᵀ + ape[pos % 4]` (fp32,
1024 wide, stored in the paged state cache with a position tag); for every window that
closes (`(pos+1) % 4 == 0`) the per-channel softmax-gated sum over 8 slots (the previous
window's front halves, the current window's back halves; the first window has no previous
half), bf16, weighted RMSNorm, forward RoPE (compress profile) at the window's first
position on the last 64 lanes, written to the paged compressed KV cache.

This package binds the compressor family (`dsv4_compressor_common`: validation, paging, the
golden with its overlapping windows, the kernels) to ratio 4 and the decode shape."""

from dsv4_compressor_common import ROPE_ABI_CONSUMED, CompressorOut, StateMissingError, compress_windows, last_runs, project
from dsv4_compressor_common.calls import public_functions

__version__ = "0.2.11"
RATIO = 4
compressor_ratio4, make_caches = public_functions(__name__, "compressor_ratio4", RATIO, "decode")
__all__ = ["RATIO", "ROPE_ABI_CONSUMED", "CompressorOut", "StateMissingError", "compress_windows", "compressor_ratio4",
           "last_runs", "make_caches", "project", "__version__"]
