"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench`.

Small tier (TINY preset and shards): positions < 128 (partial window, empty compressed
set), ring wrap-around with S = 2 (the step's own tokens through the overlay, a few
compressed entries, one closed by the step itself), a position near 1M (8191 compressed
entries), a TP shard, PRO group geometry (PRO sharded to 16 heads). Flash tier: FLASH
decode B=64, S=2 at 64K context (128 + 512 rows per token) — numbers on the full
case in the interpreter (T = 128 tokens: about 3 minutes and 15 GB), timed by the cost
model in the same run."""

from __future__ import annotations

import torch

from dsv4_core import FLASH, PRO, TINY, AttentionConfig, shard_heads
from dsv4_core.attention import make_attention_inputs, traffic
from dsv4_core.attention_cases import DecodeCase, check_decode_case, seeded_starts, time_case
from dsv4_core.golden import BenchOutcome, GoldenOutcome

from .reference import _resolved, hca_exact, hca_reference

MODULE = "sparse_attn_hca"
RATIO = 128
NEAR_1M = FLASH.max_position_embeddings - 2


Case = DecodeCase
CTX_64K = 65536
SMALL_CASES = [
    Case("tiny-partial-empty-B2S1", TINY, (5, 100), 1),
    Case("tiny-wrap-B2S2", TINY, (254, 700), 2),  # 254, 255: token 255 sees entry 1 closed by itself
    Case("tiny-near1M-B1S2", TINY, (NEAR_1M,), 2),
    Case("tiny-tp2-B2S2", shard_heads(TINY, 2), (126, 1000), 2),
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
    return make_attention_inputs(case.config, case.positions(batch), compress_ratio=RATIO, seed=case.seed,
                                 materialize=materialize, max_cmp_pages=None if materialize else 64)


def call(inp: dict, cfg: AttentionConfig, backend: str) -> torch.Tensor:
    from . import sparse_attn_hca

    return sparse_attn_hca(inp["q"], inp["kv"], inp["kv_cache"], inp["block_table"], inp["cmp_kv"],
                           inp["cmp_block_table"], inp["positions"], inp["attn_sink"], inp["wo_a"], inp["wo_b"],
                           config=cfg, backend=backend)


def golden(name: str, *, perturb: str | None = None) -> GoldenOutcome:
    """Kernel on the simulator vs the golden (`dsv4_core.attention_cases.check_decode_case`);
    perturb "sink" / "rope" must make the check fail."""
    return check_decode_case(MODULE, CASES[name], make_inputs, reference=hca_reference, exact=hca_exact,
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
