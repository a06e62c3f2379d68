"""The lightning indexer's key compressor: the family's ratio-4 compressor (overlapping
windows, paged state with position tags) at the config's `index_head_dim` (128), with the
Hadamard after RoPE (`rotate=True`), writing the paged index-key cache. `key_functions`
builds the decode and prefill packages' public `indexer_compressor` /
`prefill_indexer_compressor` and `make_caches` with their argument names (errors name
`idx_kv_cache` and `idx_slot_mapping`)."""

from __future__ import annotations

import textwrap
from typing import Callable

import torch

from dsv4_core import AttentionConfig

from ..calls import CompressorOut, decode_call, make_caches, prefill_call
from .reference import RATIO

KEY_NAMES = ("idx_kv_cache", "idx_slot_mapping")

_DOC = ("x {x} bf16; wkv, wgate [2·index_head_dim, hidden] bf16 ([256, hidden] at index_head_dim 128; checkpoint "
        "[out, in]); ape [4, 2·index_head_dim] fp32; norm_weight [index_head_dim] bf16/fp32; start_pos {start}; state "
        "[state_blocks, state_page, 4·index_head_dim] fp32 (row of position p = [kv_proj | score + ape], page "
        "{table}[p // state_page], −1: no page); state_pos [state_blocks, state_page] int32 position tags (−1 none); "
        "state_block_table {table_shape} int32/int64; idx_kv_cache [blocks, block_size, index_head_dim] bf16; "
        "idx_slot_mapping {slots} int64 (flat idx_kv_cache row of the key a closing token produces, −1: not "
        "written); backend \"npu\" / \"sim\" / \"torch\" / \"auto\"; validate=False: the kernel backends skip the "
        "value checks that read indices back. Returns CompressorOut(kv {out} bf16: the key "
        "each closing token produced, 0 elsewhere; closes {closes} bool).")


_HEADS = {
    "decode": ("One decode step of the lightning indexer's key compressor (ratio 4, overlapping windows, index_head_dim "
               "wide, RoPE at each window's first position, then the Hadamard) for B requests × S new consecutive "
               "tokens each; updates state, state_pos and idx_kv_cache in place."),
    "prefill": ("One prefill chunk of the lightning indexer's key compressor (one request, T tokens from any start "
                "position; ratio 4, index_head_dim wide, RoPE at each window's first position, then the Hadamard); "
                "updates state, state_pos and idx_kv_cache in place."),
}
_SHAPES = {
    "decode": dict(x="[B, S, hidden]", start="[B] int (each request's first new position)", table="state_block_table[b]",
                   table_shape="[B, max_pages]", slots="[B, S]", out="[B, S, index_head_dim]", closes="[B, S]"),
    "prefill": dict(x="[T, hidden]", start="int (or a one-element integer tensor): the chunk's first position",
                    table="state_block_table", table_shape="[max_pages]", slots="[T]", out="[T, index_head_dim]",
                    closes="[T]"),
}


def _index_head_dim(config) -> int | None:
    return config.index_head_dim if isinstance(config, AttentionConfig) else None


def key_functions(module: str, name: str, kind: str) -> tuple[Callable[..., CompressorOut], Callable]:
    """(`name`, make_caches) of the key compressor of kind "decode" (B requests × S tokens) or
    "prefill" (one request's chunk), for the package `module`."""
    if kind not in ("decode", "prefill"):
        raise ValueError(f"kind must be 'decode' or 'prefill', got {kind!r}")
    call = decode_call if kind == "decode" else prefill_call

    def indexer_compressor(x: torch.Tensor, wkv: torch.Tensor, wgate: torch.Tensor, ape: torch.Tensor,
                           norm_weight: torch.Tensor, start_pos, state: torch.Tensor, state_pos: torch.Tensor,
                           state_block_table: torch.Tensor, idx_kv_cache: torch.Tensor,
                           idx_slot_mapping: torch.Tensor, *, config: AttentionConfig,
                           backend: str = "auto", validate: bool = True) -> CompressorOut:
        return call(RATIO, x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos, state_block_table,
                    idx_kv_cache, idx_slot_mapping, config=config, backend=backend,
                    head_dim=_index_head_dim(config), rotate=True, names=KEY_NAMES, validate=validate)

    head = _HEADS[kind]
    args = _DOC.format(**_SHAPES[kind])
    if kind == "prefill":
        indexer_compressor.__annotations__["start_pos"] = "int"
    indexer_compressor.__name__ = indexer_compressor.__qualname__ = name
    indexer_compressor.__module__ = module
    indexer_compressor.__doc__ = textwrap.fill(head, 92) + "\n\n" + textwrap.fill(args, 92, initial_indent="    ",
                                                                                 subsequent_indent="    ")

    def caches(config: AttentionConfig, *, state_blocks: int, state_page: int, cmp_blocks: int, cmp_block: int,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not isinstance(config, AttentionConfig):
            raise TypeError(f"config must be a dsv4_core.AttentionConfig, got {type(config).__name__}")
        return make_caches(config, ratio=RATIO, state_blocks=state_blocks, state_page=state_page,
                           cmp_blocks=cmp_blocks, cmp_block=cmp_block, device=device, head_dim=config.index_head_dim)

    caches.__name__ = caches.__qualname__ = "make_caches"
    caches.__module__ = module
    caches.__doc__ = ("(state [state_blocks, state_page, 4·index_head_dim] fp32 uninitialised, state_pos "
                      "[state_blocks, state_page] int32 filled with -1, idx_kv_cache [cmp_blocks, cmp_block, "
                      "index_head_dim] bf16 zero) for the lightning indexer's key compressor.")
    return indexer_compressor, caches
