"""Composition: the indexer's picks handed to `dsv4_sparse_attn_csa.sparse_attn_csa` agree end
to end with the references (the indexer's dense fp64 scores and selection, then the
independent fp64 attention oracle over the official semantics). dsv4-sparse-attn-csa is not
a dependency of this package: the test is skipped where it is not installed and runs in
`nox -s crosscheck` (all packages in one environment)."""

import pytest
import torch

from dsv4_compressor_common.indexer.reference import dense_exact, select_topk_reference
from dsv4_core import TINY
from dsv4_core.compare import compare, compare_topk
from dsv4_indexer import indexer
from dsv4_indexer.cases import CASES, make_inputs

csa = pytest.importorskip("dsv4_sparse_attn_csa")
attn_testing = pytest.importorskip("dsv4_sparse_attn_common.testing")


@pytest.mark.parametrize("name", ["tiny-fewer-B2S2", "tiny-many-B2S1", "tiny-S8-B1"])
def test_indexer_then_sparse_attn_csa_matches_the_references(name):
    idx = make_inputs(CASES[name])
    pos = idx["positions"]
    picks = indexer(idx["x"], idx["qr"], idx["wq_b"], idx["weights_proj"], pos, idx["cache"], idx["table"],
                    config=TINY, backend="torch")
    dense = dense_exact(TINY, idx["x"], idx["qr"], idx["wq_b"], idx["weights_proj"], pos, idx["cache"], idx["table"],
                        idx["cos"], idx["sin"])
    ref_picks = select_topk_reference(dense, TINY.index_topk)
    fin = torch.isfinite(dense)
    assert compare_topk(picks, ref_picks, dense, tie_tol=2 ** -7 * float(dense[fin].abs().max())).ok
    assert torch.equal(picks.sort(1).values, ref_picks.sort(1).values)  # these seeds have no near ties

    att = attn_testing.make_attention_inputs(TINY, pos, compress_ratio=4, topk=TINY.index_topk, seed=1)
    att["topk_idxs"] = picks
    out = csa.sparse_attn_csa(att["q"], att["kv"], att["kv_cache"], att["block_table"], att["cmp_kv"],
                              att["cmp_block_table"], picks, pos, att["attn_sink"], att["wo_a"], att["wo_b"],
                              config=TINY, backend="torch")
    oracle = attn_testing.semantic_exact(TINY, dict(att, topk_idxs=ref_picks), compress_ratio=4)
    golden = csa.sparse_attn_csa(att["q"], att["kv"], att["kv_cache"], att["block_table"], att["cmp_kv"],
                                 att["cmp_block_table"], ref_picks, pos, att["attn_sink"], att["wo_a"], att["wo_b"],
                                 config=TINY, backend="torch")  # the reference chain: dense picks, golden attention
    assert compare(out.float(), oracle, golden.float()).ok
    # the composition sees the picks: a pick replaced by another visible entry changes the output
    if (picks >= 0).sum(1).max() > 1:
        bad = picks.clone()
        t = int(torch.argmax((picks >= 0).sum(1)))
        bad[t, 0] = -1
        out_bad = csa.sparse_attn_csa(att["q"], att["kv"], att["kv_cache"], att["block_table"], att["cmp_kv"],
                                      att["cmp_block_table"], bad, pos, att["attn_sink"], att["wo_a"], att["wo_b"],
                                      config=TINY, backend="torch")
        assert not compare(out_bad.float(), oracle, golden.float()).ok
