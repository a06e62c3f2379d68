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


def gathered_bytes(cfg, tokens: int, rows_per_token: int, *, compressed: bool = True) -> float:
    """Bytes the kernel gathers with `index_select` in one call (pypto's cost model prices
    them 3.2–6.4× below a copy of the same bytes: a bench can charge them at the copy rate):
    per token, the window columns from both the ring and the step's kv (2·W rows), the other
    columns of its padded row tiles from the compressed cache, D bf16 lanes each; the
    selected copy of every gathered row (the select) is not counted."""
    from .kernel import kv_tile

    kt = kv_tile(rows_per_token)
    padded = max(kt, -(-rows_per_token // kt) * kt)
    w = min(cfg.window, padded) if compressed else padded
    rows = 2 * w + (padded - w)
    return float(2 * tokens * rows * cfg.head_dim)
