"""Semantics of the prefill golden: the per-token causal cut inside a chunk, chunking, and the
dense fp64 formulation."""

import torch

from dsv4_compressor_common.indexer.reference import dense_exact, select_topk_reference, visible_entries
from dsv4_core import TINY
from dsv4_core.compare import compare_topk
from dsv4_prefill_indexer import prefill_index_scores, prefill_indexer
from dsv4_prefill_indexer.cases import CASES, make_inputs

ARGS = ("x", "qr", "wq_b", "weights_proj")


def _call(inp, start, fn=prefill_indexer, **kw):
    return fn(*(inp[a] for a in ARGS), start, inp["cache"], inp["table"].reshape(-1), config=inp["config"],
              backend="torch", **kw)


def test_per_token_cut_and_early_tokens():
    inp = make_inputs(CASES["tiny-from0-T40"])
    picks = _call(inp, 0)
    vis = visible_entries(inp["positions"]).reshape(-1)
    assert (picks[:3] == -1).all()  # positions 0..2 see nothing
    for t in range(40):
        got = picks[t][picks[t] >= 0]
        assert got.numel() == min(int(vis[t]), TINY.index_topk) and (got < vis[t]).all()


def test_uneven_chunks_equal_one_chunk():
    inp = make_inputs(CASES["tiny-start77-T70"])
    whole = _call(inp, 77)
    parts, a = [], 0
    for n in (1, 13, 40, 16):
        sub = {k: inp[k][a:a + n] for k in ("x", "qr")}
        parts.append(_call(dict(inp, **sub), 77 + a))
        a += n
    assert torch.equal(torch.cat(parts), whole)


def test_golden_agrees_with_dense_fp64():
    inp = make_inputs(CASES["tiny-start77-T70"])
    dense = dense_exact(TINY, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"].reshape(-1, 1),
                        inp["cache"], inp["table"].reshape(1, -1).expand(70, -1), inp["cos"], inp["sin"])
    scores = _call(inp, 77, fn=prefill_index_scores)
    fin = torch.isfinite(dense)
    assert torch.equal(fin, torch.isfinite(scores))
    assert (scores[fin].double() - dense[fin]).abs().max() <= 2 ** -6 * dense[fin].abs().max()
    ref = select_topk_reference(dense, TINY.index_topk)
    tie = 2 ** -6 * float(dense[fin].abs().max())
    assert compare_topk(_call(inp, 77), ref, dense, tie_tol=tie).ok
