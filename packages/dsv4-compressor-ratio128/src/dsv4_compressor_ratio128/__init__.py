"""dsv4-compressor-ratio128: DeepSeek-V4's HCA KV compressor (ratio 128), decode.

    out = compressor_ratio128(x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos,
                              state_block_table, cmp_kv, cmp_slot_mapping, config=FLASH,
                              backend="auto")

For B requests × S new consecutive tokens each (any S ≥ 1; several windows may close in one
step): per token `kv_proj = x @ wkvᵀ`, `score = x @ wgateᵀ + ape[pos % 128]` (fp32, stored in
the paged state cache with a position tag); for every window of 128 positions that closes
(`(pos+1) % 128 == 0`) the per-channel softmax-gated sum of its 128 positions, bf16,
weighted RMSNorm, forward RoPE (compress profile) at the window's first position on the
last 64 lanes, written to the paged compressed KV cache.

This package binds the compressor family (`dsv4_compressor_common`: validation, paging, the
golden, the kernels) to ratio 128 and the decode shape."""

from dsv4_compressor_common import ROPE_ABI_CONSUMED, CompressorOut, StateMissingError, compress_windows, last_runs, project
from dsv4_compressor_common.calls import public_functions

__version__ = "0.2.12"
RATIO = 128
compressor_ratio128, make_caches = public_functions(__name__, "compressor_ratio128", RATIO, "decode")
__all__ = ["RATIO", "ROPE_ABI_CONSUMED", "CompressorOut", "StateMissingError", "compress_windows", "compressor_ratio128",
           "last_runs", "make_caches", "project", "__version__"]
