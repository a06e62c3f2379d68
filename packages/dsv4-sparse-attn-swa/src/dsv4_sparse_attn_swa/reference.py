"""Torch golden for SWA decode attention: the package's index rows resolved to physical
rows, then dsv4-core's sparse-attention reference (rounding points in the README) or its
fp64 evaluation.

    ref   = swa_reference(cfg, inputs)   # bf16 [B·S, hidden]
    exact = swa_exact(cfg, inputs)       # fp64, no intermediate rounding
"""

from __future__ import annotations

import torch

from dsv4_core.attention import prepare, sparse_attention_exact, sparse_attention_reference, window_indices
from dsv4_rope_tables import profile_for_ratio, rope_rows, rotate


def _resolved(cfg, inp: dict):
    p = inp["positions"]
    idx = window_indices(p, cfg.window)
    src, rows = prepare(idx, p, window=cfg.window, kv=inp["kv"], kv_cache=inp["kv_cache"],
                        block_table=inp["block_table"])
    cos, sin = rope_rows(profile_for_ratio(cfg, 0), p.reshape(-1))
    return src, rows, cos, sin


def swa_reference(cfg, inp: dict) -> torch.Tensor:
    src, rows, cos, sin = _resolved(cfg, inp)
    return sparse_attention_reference(inp["q"], src, rows, inp["attn_sink"], cos, sin, inp["wo_a"], inp["wo_b"],
                                      softmax_scale=cfg.softmax_scale, rope=rotate)


def swa_exact(cfg, inp: dict) -> torch.Tensor:
    src, rows, cos, sin = _resolved(cfg, inp)
    return sparse_attention_exact(inp["q"], src, rows, inp["attn_sink"], cos, sin, inp["wo_a"], inp["wo_b"],
                                  softmax_scale=cfg.softmax_scale, rope=rotate)
