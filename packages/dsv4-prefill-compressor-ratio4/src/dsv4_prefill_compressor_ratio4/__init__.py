"""dsv4-prefill-compressor-ratio4: DeepSeek-V4's CSA KV compressor (ratio 4, overlapping windows), prefill.

    out = prefill_compressor_ratio4(x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos,
                                state_block_table, cmp_kv, cmp_slot_mapping, config=FLASH,
                                backend="auto")

One request, a chunk of T tokens starting at any position `start_pos` (not only 0 or a
multiple of the ratio): the same math as the decode compressor (`dsv4_compressor_ratio4`)
— windows that straddle the chunk start read the positions before it from the paged state
cache (tag-checked), every token's state row is written back so later chunks and decode
steps can close the unfinished windows. One prefill of N tokens, the same tokens in chunks,
and a prefill followed by decode steps leave the same caches."""

from __future__ import annotations

import torch

from dsv4_compressor_ratio4 import RATIO, make_caches
from dsv4_compressor_ratio128.paging import StateMissingError
from dsv4_compressor_ratio128.step import CompressorOut, last_runs, prefill_call
from dsv4_core import AttentionConfig
from dsv4_rope_tables import require_abi

__version__ = "0.1.0"
ROPE_ABI_CONSUMED = "dsv4-rope/1"
require_abi("dsv4-prefill-compressor-ratio4", ROPE_ABI_CONSUMED)

__all__ = ["RATIO", "ROPE_ABI_CONSUMED", "CompressorOut", "StateMissingError", "last_runs", "make_caches",
           "prefill_compressor_ratio4", "__version__"]


def prefill_compressor_ratio4(x: torch.Tensor, wkv: torch.Tensor, wgate: torch.Tensor, ape: torch.Tensor,
                              norm_weight: torch.Tensor, start_pos: int, state: torch.Tensor, state_pos: torch.Tensor,
                              state_block_table: torch.Tensor, cmp_kv: torch.Tensor, cmp_slot_mapping: torch.Tensor, *,
                              config: AttentionConfig, backend: str = "auto") -> CompressorOut:
    """One prefill chunk of the ratio-4 compressor; updates state, state_pos, cmp_kv in place.

    x [T, D] bf16; wkv, wgate [1024, D] bf16 (checkpoint [out, in]); ape [4, 1024] fp32;
    norm_weight [512] bf16/fp32; start_pos: int, the chunk's first position; state
    [num_state_blocks, page, 2048] fp32; state_pos [num_state_blocks, page] int32;
    state_block_table [max_pages] int32/int64 (−1: no page); cmp_kv [num_blocks, block_size,
    512] bf16; cmp_slot_mapping [T] int64 (flat cmp_kv row of the entry a closing token
    produces, −1: do not write). Returns CompressorOut(kv [T, 512] bf16, closes [T] bool)."""
    return prefill_call(RATIO, x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos, state_block_table,
                        cmp_kv, cmp_slot_mapping, config=config, backend=backend)
