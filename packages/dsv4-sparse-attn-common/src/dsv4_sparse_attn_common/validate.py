"""Argument checks shared by the sparse-attention packages' public functions."""

from __future__ import annotations

import torch

from dsv4_core.checks import check_same_device, check_tensor
from dsv4_core.config import AttentionConfig


def validate_attention_args(cfg, q, kv, kv_cache, block_table, attn_sink, wo_a, wo_b, *, tokens: int,
                            requests: int, cmp_kv=None, cmp_block_table=None, cmp_block_table_dims: int = 2) -> None:
    """Shapes / dtypes / devices of the arguments every sparse-attention entry point takes;
    each error names the argument (raised before anything is computed or written)."""
    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"config must be a dsv4_core.AttentionConfig, got {type(cfg).__name__}")
    bf16 = torch.bfloat16
    H, D, W = cfg.num_heads, cfg.head_dim, cfg.window
    G, OR, GIN = cfg.o_groups, cfg.o_lora_rank, cfg.group_in_dim
    check_tensor("q", q, shape=(tokens, H, D), dtype=bf16)
    check_tensor("kv", kv, shape=(tokens, D), dtype=bf16)
    check_tensor("kv_cache", kv_cache, shape=(None, W, D), dtype=bf16)
    if kv_cache.shape[0] == 0:
        raise ValueError("kv_cache must hold at least one window page, got shape [0, W, D]")
    check_tensor("block_table", block_table, shape=(requests,), dtype=(torch.int32, torch.int64))
    check_tensor("attn_sink", attn_sink, shape=(H,), dtype=torch.float32)
    check_tensor("wo_a", wo_a, shape=(G, OR, GIN), dtype=bf16)
    check_tensor("wo_b", wo_b, shape=(cfg.hidden_size, G * OR), dtype=bf16)
    tensors = dict(q=q, kv=kv, kv_cache=kv_cache, block_table=block_table, attn_sink=attn_sink, wo_a=wo_a, wo_b=wo_b)
    if cmp_kv is not None:
        check_tensor("cmp_kv", cmp_kv, shape=(None, None, D), dtype=bf16)
        if cmp_kv.shape[0] == 0 or cmp_kv.shape[1] == 0:
            raise ValueError(f"cmp_kv must hold at least one page of entries, got shape {list(cmp_kv.shape)}")
        shape = (requests, None) if cmp_block_table_dims == 2 else (None,)
        check_tensor("cmp_block_table", cmp_block_table, shape=shape, dtype=(torch.int32, torch.int64))
        tensors.update(cmp_kv=cmp_kv, cmp_block_table=cmp_block_table)
    check_same_device(**tensors)
