"""Torch golden for prefill sparse attention: the chunk's logical index rows in the
kernel's column order (window, then compressed: `index_rows`; `build_indices`' compacted
rows hold the same entries) resolved to physical rows, then dsv4-sparse-attn-common's
sparse-attention reference (rounding points in the README) or its fp64 evaluation.
`inputs` as `cases.make_inputs` builds them (start_pos, compress_ratio, q, kv, kv_cache,
block_table, cmp_kv, cmp_block_table, topk_idxs, attn_sink, wo_a, wo_b).

    ref   = prefill_reference(cfg, inputs)   # bf16 [T, hidden]
    exact = prefill_exact(cfg, inputs)       # fp64, no intermediate rounding
"""

from __future__ import annotations

from dsv4_sparse_attn_common import Golden, KernelInputs, Resolved, index_rows, kernel_inputs, resolve, share_group

from . import chunk_positions


def _rows(cfg, inp: dict):
    """The chunk's positions [1, T], its logical index rows in the kernel's column order
    (window columns, then compressed: `index_rows`, with the kernel's row-sharing runs), so
    the golden's online-softmax tiles are the kernel's, and the runs' length."""
    T = inp["q"].shape[0]
    p = chunk_positions(inp["start_pos"], T)
    g = share_group(inp["compress_ratio"], 1, T)
    return p, index_rows(p, window=cfg.window, compress_ratio=inp["compress_ratio"], topk_idxs=inp.get("topk_idxs"),
                         group=g), g


def resolved(cfg, inp: dict) -> Resolved:
    """The chunk's KV source, physical rows and RoPE rows."""
    p, idx, _ = _rows(cfg, inp)
    return resolve(cfg, p, idx, kv=inp["kv"], kv_cache=inp["kv_cache"], block_table=inp["block_table"],
                   compress_ratio=inp["compress_ratio"], cmp_kv=inp.get("cmp_kv"),
                   cmp_block_table=inp.get("cmp_block_table"))


def kernel(cfg, inp: dict) -> KernelInputs:
    """What `prefill_sparse_attn` hands the kernel for the same inputs."""
    p, idx, g = _rows(cfg, inp)
    return kernel_inputs(cfg, p, idx, kv=inp["kv"], kv_cache=inp["kv_cache"], block_table=inp["block_table"],
                         compress_ratio=inp["compress_ratio"], cmp_kv=inp.get("cmp_kv"),
                         cmp_block_table=inp.get("cmp_block_table"), group=g)


GOLDEN = Golden(resolved, kernel)
prefill_reference = GOLDEN.reference
prefill_exact = GOLDEN.exact
