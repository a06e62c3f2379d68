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

The call machinery (validation, paging, kernels) is the ratio-generic one of
`dsv4_compressor_ratio128`; this package pins ratio 4."""

from __future__ import annotations

import torch

from dsv4_compressor_ratio128.paging import StateMissingError
from dsv4_compressor_ratio128.step import CompressorOut, decode_call, last_runs
from dsv4_compressor_ratio128.step import make_caches as _make_caches
from dsv4_core import AttentionConfig
from dsv4_rope_tables import require_abi

from .reference import RATIO, compress_windows, project

__version__ = "0.1.0"
ROPE_ABI_CONSUMED = "dsv4-rope/1"
require_abi("dsv4-compressor-ratio4", ROPE_ABI_CONSUMED)

__all__ = ["RATIO", "ROPE_ABI_CONSUMED", "CompressorOut", "StateMissingError", "compress_windows",
           "compressor_ratio4", "last_runs", "make_caches", "project", "__version__"]


def make_caches(config: AttentionConfig, *, state_blocks: int, state_page: int, cmp_blocks: int, cmp_block: int,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(state [state_blocks, state_page, 2048] fp32 uninitialised, state_pos [state_blocks,
    state_page] int32 filled with -1, cmp_kv [cmp_blocks, cmp_block, 512] bf16 zero)."""
    return _make_caches(config, ratio=RATIO, state_blocks=state_blocks, state_page=state_page, cmp_blocks=cmp_blocks,
                        cmp_block=cmp_block, device=device)


def compressor_ratio4(x: torch.Tensor, wkv: torch.Tensor, wgate: torch.Tensor, ape: torch.Tensor,
                      norm_weight: torch.Tensor, start_pos: torch.Tensor, state: torch.Tensor,
                      state_pos: torch.Tensor, state_block_table: torch.Tensor, cmp_kv: torch.Tensor,
                      cmp_slot_mapping: torch.Tensor, *, config: AttentionConfig,
                      backend: str = "auto") -> CompressorOut:
    """One decode step of the ratio-4 compressor; updates state, state_pos, cmp_kv in place.

    x [B, S, D] bf16; wkv, wgate [1024, D] bf16 (checkpoint [out, in]); ape [4, 1024] fp32;
    norm_weight [512] bf16/fp32; start_pos [B] int (position of each request's first new
    token); state [num_state_blocks, page, 2048] fp32 (row = [kv_proj 1024 | score 1024]);
    state_pos [num_state_blocks, page] int32; state_block_table [B, max_pages] int32/int64
    (−1: no page); cmp_kv [num_blocks, block_size, 512] bf16; cmp_slot_mapping [B, S] int64
    (flat cmp_kv row of the entry a closing token produces, −1: do not write). backend
    "npu" / "sim" / "torch" / "auto"."""
    return decode_call(RATIO, x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos, state_block_table, cmp_kv,
                       cmp_slot_mapping, config=config, backend=backend)
