"""Composition: the prefill indexer's picks handed to
`dsv4_prefill_sparse_attn.prefill_sparse_attn` agree end to end with the references (dense
fp64 scores and selection, then the independent fp64 attention oracle). dsv4-prefill-sparse-attn
is not a dependency of this package: skipped where it is not installed; `nox -s crosscheck`
runs it."""

import pytest
import torch

from dsv4_compressor_common.indexer.reference import dense_exact, select_topk_reference
from dsv4_core import TINY
from dsv4_core.compare import compare
from dsv4_prefill_indexer import prefill_indexer
from dsv4_prefill_indexer.cases import CASES, make_inputs

psa = pytest.importorskip("dsv4_prefill_sparse_attn")
attn_testing = pytest.importorskip("dsv4_sparse_attn_common.testing")


def _attn(att, start, picks):
    return psa.prefill_sparse_attn(att["q"], att["kv"], att["kv_cache"], att["block_table"], start, att["attn_sink"],
                                   att["wo_a"], att["wo_b"], compress_ratio=4, config=TINY, cmp_kv=att["cmp_kv"],
                                   cmp_block_table=att["cmp_block_table"].reshape(-1), topk_idxs=picks,
                                   backend="torch")


@pytest.mark.parametrize("name", ["tiny-from0-T40", "tiny-start77-T70"])
def test_prefill_indexer_then_prefill_sparse_attn_matches_the_references(name):
    case = CASES[name]
    idx = make_inputs(case)
    pos = idx["positions"]
    T = pos.shape[1]
    picks = prefill_indexer(idx["x"], idx["qr"], idx["wq_b"], idx["weights_proj"], case.start, idx["cache"],
                            idx["table"].reshape(-1), config=TINY, backend="torch")
    dense = dense_exact(TINY, idx["x"], idx["qr"], idx["wq_b"], idx["weights_proj"], pos.reshape(-1, 1), idx["cache"],
                        idx["table"].reshape(1, -1).expand(T, -1), idx["cos"], idx["sin"])
    ref_picks = select_topk_reference(dense, TINY.index_topk)
    assert torch.equal(picks.sort(1).values, ref_picks.sort(1).values)  # these seeds have no near ties
    att = attn_testing.make_attention_inputs(TINY, pos, compress_ratio=4, topk=TINY.index_topk, seed=1)
    out = _attn(att, case.start, picks)
    golden = _attn(att, case.start, ref_picks)
    oracle = attn_testing.semantic_exact(TINY, dict(att, topk_idxs=ref_picks), compress_ratio=4)
    assert compare(out.float(), oracle, golden.float()).ok
    bad = picks.clone()
    t = int(torch.argmax((picks >= 0).sum(1)))
    bad[t, 0] = -1
    assert not compare(_attn(att, case.start, bad).float(), oracle, golden.float()).ok
