"""Torch golden for HCA decode attention: the package's index rows resolved to physical
rows, then dsv4-core's sparse-attention reference (rounding points in the README) or its
fp64 evaluation."""

from __future__ import annotations

import torch

from dsv4_core.attention import prepare, sparse_attention_exact, sparse_attention_reference
from dsv4_rope_tables import profile_for_ratio, rope_rows, rotate

RATIO = 128


def _resolved(cfg, inp: dict):
    from . import build_indices

    p = inp["positions"]
    idx = build_indices(p, config=cfg)
    src, rows = prepare(idx, p, window=cfg.window, kv=inp["kv"], kv_cache=inp["kv_cache"],
                        block_table=inp["block_table"], compress_ratio=RATIO, cmp_kv=inp["cmp_kv"],
                        cmp_block_table=inp["cmp_block_table"])
    cos, sin = rope_rows(profile_for_ratio(cfg, RATIO), p.reshape(-1))
    return src, rows, cos, sin


def hca_reference(cfg, inp: dict) -> torch.Tensor:
    src, rows, cos, sin = _resolved(cfg, inp)
    return sparse_attention_reference(inp["q"], src, rows, inp["attn_sink"], cos, sin, inp["wo_a"], inp["wo_b"],
                                      softmax_scale=cfg.softmax_scale, rope=rotate)


def hca_exact(cfg, inp: dict) -> torch.Tensor:
    src, rows, cos, sin = _resolved(cfg, inp)
    return sparse_attention_exact(inp["q"], src, rows, inp["attn_sink"], cos, sin, inp["wo_a"], inp["wo_b"],
                                  softmax_scale=cfg.softmax_scale, rope=rotate)
