"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench`.

Small tier (TINY preset and shards): positions < 4 (empty compressed set, partial window),
fewer valid top-k entries than k plus ring wrap-around with S = 2 (the step's own tokens
through the overlay; the first token of a step handed an entry only its sibling may see,
which the causal cut masks), a TP shard, PRO group geometry (PRO sharded to 16 heads, top-k
1024). Flash tier: FLASH decode B=64, S=2 at 64K context (128 + 512 = 640 rows per token) —
numbers on
the full case in the interpreter (T = 128 tokens: about 3 minutes and 15 GB), timed by the
cost model in the same run."""

from __future__ import annotations

import torch

from dsv4_core import FLASH, PRO, TINY, AttentionConfig, shard_heads
from dsv4_core.attention import make_attention_inputs, traffic
from dsv4_core.attention_cases import DecodeCase, check_decode_case, seeded_starts, time_case
from dsv4_core.golden import BenchOutcome, GoldenOutcome

from .reference import _resolved, csa_exact, csa_reference

MODULE = "sparse_attn_csa"
RATIO = 4


Case = DecodeCase
CTX_64K = 65536
SMALL_CASES = [
    Case("tiny-empty-cmp-B2S1", TINY, (1, 2), 1),
    Case("tiny-fewer-wrap-B2S2", TINY, (20, 302), 2, fewer_topk=True, causal_probe=True),
    Case("tiny-tp2-B2S2", shard_heads(TINY, 2), (126, 1000), 2, causal_probe=True),
    Case("pro-tp8-B1S2", shard_heads(PRO, 8), (3000,), 2),
]
FLASH_CASES = [Case("flash-decode-B64S2-64K", FLASH, seeded_starts(64, CTX_64K - 130, CTX_64K - 2, 1), 2)]
BENCH = [
    Case("flash-decode-B64S2-64K", FLASH, seeded_starts(64, CTX_64K - 130, CTX_64K - 2, 1), 2),
    Case("pro-decode-B64S2-64K", PRO, seeded_starts(64, CTX_64K - 130, CTX_64K - 2, 2), 2),
]
CASES = {c.name: c for c in SMALL_CASES + FLASH_CASES}
BENCH_CASES_BY_NAME = {c.name: c for c in BENCH}
GOLDEN_CASES = [(c.name, "small") for c in SMALL_CASES] + [(c.name, "flash") for c in FLASH_CASES]
BENCH_CASES = [c.name for c in BENCH]


def make_inputs(case: Case, batch: int | None = None, materialize: bool = True) -> dict:
    p = case.positions(batch)
    inp = make_attention_inputs(case.config, p, compress_ratio=RATIO, topk=case.config.index_topk, seed=case.seed,
                                fewer_topk=case.fewer_topk, materialize=materialize,
                                max_cmp_pages=None if materialize else 64)
    if case.causal_probe and case.seq > 1:
        vis_last = (p[:, -1] + 1) // RATIO
        for b in range(p.shape[0]):
            if (p[b, 0] + 1) // RATIO < vis_last[b]:  # entry vis_last-1 closes inside the step
                inp["topk_idxs"][b * case.seq, -1] = int(vis_last[b]) - 1
    return inp


def call(inp: dict, cfg: AttentionConfig, backend: str) -> torch.Tensor:
    from . import sparse_attn_csa

    return sparse_attn_csa(inp["q"], inp["kv"], inp["kv_cache"], inp["block_table"], inp["cmp_kv"],
                           inp["cmp_block_table"], inp["topk_idxs"], inp["positions"], inp["attn_sink"],
                           inp["wo_a"], inp["wo_b"], config=cfg, backend=backend)


def golden(name: str, *, perturb: str | None = None) -> GoldenOutcome:
    """Kernel on the simulator vs the golden (`dsv4_core.attention_cases.check_decode_case`);
    perturb "sink" / "rope" must make the check fail."""
    return check_decode_case(MODULE, CASES[name], make_inputs, reference=csa_reference, exact=csa_exact,
                             resolved=_resolved, call=call, perturb=perturb)


def _cost_model_run(case: Case):
    run, rows = time_case(case.config, make_inputs(case, materialize=False), _resolved, case.name)
    return run, rows.shape[1]


def bench(name: str) -> BenchOutcome:
    """Cost model only (values=False) at full size."""
    case = BENCH_CASES_BY_NAME[name]
    run, k = _cost_model_run(case)
    T = case.batch * case.seq
    nbytes, flops = traffic(case.config, T, k)
    return BenchOutcome(MODULE, name, run.aicore_us, nbytes, flops, cores=run.cores,
                        note=f"T={T}, H={case.config.num_heads}, rows/token={k}")
