"""The pypto kernels on the CPU simulator vs the golden, one process per run.

pytest runs three scenarios (fewer candidates than top-k with NaN in unreferenced rows,
positions < 4, S = 8 with a per-token cut) and a perturbed weight; `nox -s golden` also runs
S = 1 with more candidates than top-k, a TP shard, PRO geometry and FLASH decode."""

import pytest
import torch

from dsv4_core import sim
from dsv4_indexer import cases

PYTEST_CASES = ["tiny-fewer-B2S2", "tiny-early-B3S2", "tiny-S8-B1"]


def test_subset_is_in_the_golden_cases():
    assert set(PYTEST_CASES) <= {name for name, tier in cases.GOLDEN_CASES if tier == "small"}


@pytest.mark.parametrize("name", PYTEST_CASES)
def test_kernel_matches_golden(name):
    out, _ = sim.isolated(cases.golden, name)
    assert out.ok, [str(r) for r in out.reports]
    assert {r.name for r in out.reports} >= {"q", "w", "scores", "picks", "picks_e2e"}
    assert out.run is not None and out.run.values and out.run.aicore_us > 0


def test_key_compressor_kernels_match_golden():
    out, _ = sim.isolated(cases.golden, "keys-tiny-decode-S5")
    assert out.ok, [str(r) for r in out.reports if not r.ok]
    assert "pool_rotate" in out.run.name and out.run.values


def test_chain_on_the_simulator_equals_one_prefill():
    """prefill, then decode steps of S = 1, 2, 8 (key compressor and indexer kernels) vs one
    torch prefill of the stream: keys and picks."""
    name = "chain-prefill61-decode-S1-S2-S8"
    out, _ = sim.isolated(cases.golden, name)
    assert out.ok, [str(r) for r in out.reports if not r.ok]
    assert {r.name for r in out.reports} == {"state_pos", "idx_kv_cache", "picks"}
    bad, _ = sim.isolated(cases.golden, name, perturb="picks")
    assert not bad.ok


def test_perturbed_weight_fails():
    out, _ = sim.isolated(cases.golden, "tiny-fewer-B2S2", perturb="wq_b")
    assert not out.ok and "q" in {r.name for r in out.reports if not r.ok}


def _public(name: str, backend: str):
    from dsv4_indexer import indexer

    inp = cases.make_inputs(cases.CASES[name])
    return indexer(inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"], inp["cache"],
                   inp["table"], config=inp["config"], backend=backend)


def test_sim_backend_matches_torch_backend():
    from dsv4_core.compare import compare_topk
    from dsv4_indexer import index_scores

    name = "tiny-many-B2S1"
    got, _ = sim.isolated(_public, name, "sim")
    want = _public(name, "torch")
    inp = cases.make_inputs(cases.CASES[name])
    scores = index_scores(inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["positions"], inp["cache"],
                          inp["table"], config=inp["config"], backend="torch")
    assert got.dtype == torch.int32 and got.shape == want.shape
    fin = torch.isfinite(scores)
    tie = 2 ** -7 * float(scores[fin].abs().max())  # a bf16 step of the query / weight roundings
    assert compare_topk(got, want, scores.double(), tie_tol=tie).ok
