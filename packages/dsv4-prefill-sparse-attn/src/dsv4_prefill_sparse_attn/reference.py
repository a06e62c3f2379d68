"""Torch golden for prefill sparse attention: the package's per-token index rows and
lengths resolved to physical rows, then dsv4-core's sparse-attention reference (rounding
points in the README) or its fp64 evaluation. `inputs` as `cases.make_inputs` builds them
(start_pos, compress_ratio, q, kv, kv_cache, block_table, cmp_kv, cmp_block_table,
topk_idxs, attn_sink, wo_a, wo_b)."""

from __future__ import annotations

import torch

from dsv4_core.attention import prepare, sparse_attention_exact, sparse_attention_reference
from dsv4_rope_tables import profile_for_ratio, rope_rows, rotate


def _resolved(cfg, inp: dict):
    from . import build_indices, chunk_positions

    ratio = inp["compress_ratio"]
    T = inp["q"].shape[0]
    p = chunk_positions(inp["start_pos"], T)
    idx, lens = build_indices(inp["start_pos"], T, compress_ratio=ratio, config=cfg, topk_idxs=inp.get("topk_idxs"))
    src, rows = prepare(idx, p, window=cfg.window, kv=inp["kv"], kv_cache=inp["kv_cache"],
                        block_table=inp["block_table"], compress_ratio=ratio, cmp_kv=inp.get("cmp_kv"),
                        cmp_block_table=inp.get("cmp_block_table"), lens=lens)
    cos, sin = rope_rows(profile_for_ratio(cfg, ratio), p.reshape(-1))
    return src, rows, cos, sin


def prefill_reference(cfg, inp: dict) -> torch.Tensor:
    src, rows, cos, sin = _resolved(cfg, inp)
    return sparse_attention_reference(inp["q"], src, rows, inp["attn_sink"], cos, sin, inp["wo_a"], inp["wo_b"],
                                      softmax_scale=cfg.softmax_scale, rope=rotate)


def prefill_exact(cfg, inp: dict) -> torch.Tensor:
    src, rows, cos, sin = _resolved(cfg, inp)
    return sparse_attention_exact(inp["q"], src, rows, inp["attn_sink"], cos, sin, inp["wo_a"], inp["wo_b"],
                                  softmax_scale=cfg.softmax_scale, rope=rotate)
