"""dsv4-prefill-compressor-ratio128: DeepSeek-V4's HCA KV compressor (ratio 128), prefill.

    out = prefill_compressor_ratio128(x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos,
                                      state_block_table, cmp_kv, cmp_slot_mapping, config=FLASH,
                                      backend="auto")

One request, a chunk of T tokens starting at any position `start_pos` (not only 0 or a
multiple of the ratio): the same math and caches as the decode compressor
(`dsv4-compressor-ratio128`) — windows that straddle the chunk start read the positions
before it from the paged state cache (tag-checked), every token's state row is written back
so later chunks and decode steps can close the unfinished windows. One prefill of N tokens,
the same tokens in chunks, and a prefill followed by decode steps leave the same caches.

Validation, paging, golden and kernels are those of the compressor family
(`dsv4_compressor_common`), here for ratio 128 and one request's chunk: a chunk reads up to
127 positions before its start from the state (the window that straddles it)."""

from dsv4_compressor_common import ROPE_ABI_CONSUMED, CompressorOut, StateMissingError, last_runs
from dsv4_compressor_common.calls import public_functions

__version__ = "0.2.10"
RATIO = 128
prefill_compressor_ratio128, make_caches = public_functions(__name__, "prefill_compressor_ratio128", RATIO, "prefill")
__all__ = ["RATIO", "ROPE_ABI_CONSUMED", "CompressorOut", "StateMissingError", "last_runs", "make_caches",
           "prefill_compressor_ratio128", "__version__"]
