"""What one sparse-attention call moves and computes, for the ceiling of `nox -s bench`."""

from __future__ import annotations


def traffic(cfg, tokens: int, rows_per_token: int) -> tuple:
    """(bytes, FLOPs) of one call: gathered KV rows (each distinct row a token reads, once),
    q, both projection weights once, the output, the row ids."""
    H, D, G, OR, DH = cfg.num_heads, cfg.head_dim, cfg.o_groups, cfg.o_lora_rank, cfg.hidden_size
    nbytes = 2 * tokens * rows_per_token * D + 2 * tokens * H * D + 2 * (G * OR * cfg.group_in_dim + DH * G * OR) \
        + 2 * tokens * DH + 4 * tokens * rows_per_token
    flops = 4 * tokens * H * rows_per_token * D + 2 * tokens * G * OR * cfg.group_in_dim + 2 * tokens * G * OR * DH
    return float(nbytes), float(flops)
