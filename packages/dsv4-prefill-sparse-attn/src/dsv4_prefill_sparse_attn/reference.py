"""Torch golden for prefill sparse attention: the package's per-token index rows and
lengths (`build_indices`) resolved to physical rows, then dsv4-sparse-attn-common's
sparse-attention reference (rounding points in the README) or its fp64 evaluation.
`inputs` as `cases.make_inputs` builds them (start_pos, compress_ratio, q, kv, kv_cache,
block_table, cmp_kv, cmp_block_table, topk_idxs, attn_sink, wo_a, wo_b).

    ref   = prefill_reference(cfg, inputs)   # bf16 [T, hidden]
    exact = prefill_exact(cfg, inputs)       # fp64, no intermediate rounding
"""

from __future__ import annotations

from dsv4_sparse_attn_common import Golden, Resolved, resolve

from . import build_indices, chunk_positions


def resolved(cfg, inp: dict) -> Resolved:
    """The chunk's KV source, physical rows and RoPE rows."""
    ratio = inp["compress_ratio"]
    T = inp["q"].shape[0]
    idx, lens = build_indices(inp["start_pos"], T, compress_ratio=ratio, config=cfg, topk_idxs=inp.get("topk_idxs"))
    return resolve(cfg, chunk_positions(inp["start_pos"], T), idx, kv=inp["kv"], kv_cache=inp["kv_cache"],
                   block_table=inp["block_table"], compress_ratio=ratio, cmp_kv=inp.get("cmp_kv"),
                   cmp_block_table=inp.get("cmp_block_table"), lens=lens)


GOLDEN = Golden(resolved)
prefill_reference = GOLDEN.reference
prefill_exact = GOLDEN.exact
