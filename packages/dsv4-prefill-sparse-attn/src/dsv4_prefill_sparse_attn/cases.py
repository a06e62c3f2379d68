"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench`.

Small tier (TINY preset and shards), one chunk of one request each: SWA from position 0
(partial windows, empty history), SWA at a start past the ring (wrap-around, history from
the ring page), HCA across a compressed-entry boundary, HCA near 1M (8191+ entries), CSA
with fewer valid top-k entries than k, CSA from position 0 (empty compressed set at the
start), a TP shard and PRO group geometry. Flash tier: FLASH prefill T=1024 at 64K context
per kind — numbers on the first `value_tokens` = 128 tokens of the chunk (the largest slice
the interpreter holds in 24 GB), the full chunk timed with the cost model alone."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_core import FLASH, PRO, TINY, AttentionConfig, shard_heads
from dsv4_core.golden import BenchOutcome, GoldenOutcome
from dsv4_sparse_attn_common.testing import check_golden, make_attention_inputs, serving_bench, time_case

from . import cmp_columns, prefill_sparse_attn
from .reference import GOLDEN

MODULE = "prefill_sparse_attn"
NEAR_1M = FLASH.max_position_embeddings - 24


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    config: AttentionConfig
    ratio: int  # 0 SWA, 4 CSA, 128 HCA
    start: int
    tokens: int
    seed: int = 0
    fewer_topk: bool = False
    value_tokens: int | None = None  # flash tier: tokens checked in the interpreter
    time_tokens: int | None = None  # flash tier: tokens timed by the cost model (None: all)


SMALL_CASES = [
    Case("tiny-swa-start0-T20", TINY, 0, 0, 20),
    Case("tiny-swa-wrap-T12", TINY, 0, 1000, 12),
    Case("tiny-hca-T12", TINY, 128, 250, 12),
    Case("tiny-hca-near1M-T4", TINY, 128, NEAR_1M, 4),
    Case("tiny-csa-fewer-T12", TINY, 4, 150, 12, fewer_topk=True),
    Case("tiny-csa-start0-T10", TINY, 4, 0, 10),
    Case("tiny-tp2-csa-T8", shard_heads(TINY, 2), 4, 3000, 8),
    # runs of 16 tokens sharing the window (the last one short), each token its own top-k
    Case("tiny-csa-runs-T40", TINY, 4, 3000, 40),
    Case("pro-tp8-hca-T4", shard_heads(PRO, 8), 128, 600, 4),
]
CTX_64K = 65536
# the interpreter holds 128 tokens of a FLASH chunk with 640 rows each (about 15 GB, 3
# minutes); the cost model times the whole T = 1024 chunk (1–2 minutes)
FLASH_CASES = [Case(f"flash-prefill-{k}-T1024", FLASH, r, CTX_64K, 1024, value_tokens=128)
               for k, r in (("swa", 0), ("hca", 128), ("csa", 4))]
BENCH = [Case(f"flash-prefill-{k}-T1024-{tag}", FLASH, r, start, 1024)
         for k, r in (("swa", 0), ("hca", 128), ("csa", 4)) for tag, start in (("start0", 0), ("64K", CTX_64K))]
CASES = {c.name: c for c in SMALL_CASES + FLASH_CASES}
BENCH_CASES_BY_NAME = {c.name: c for c in BENCH}
GOLDEN_CASES = [(c.name, "small") for c in SMALL_CASES] + [(c.name, "flash") for c in FLASH_CASES]
BENCH_CASES = [c.name for c in BENCH]


def make_inputs(case: Case, tokens: int | None = None, materialize: bool = True, serving: bool = False) -> dict:
    T = tokens or case.tokens
    p = (case.start + torch.arange(T)).reshape(1, -1)
    inp = make_attention_inputs(case.config, p, compress_ratio=case.ratio, topk=case.config.index_topk,
                                seed=case.seed, fewer_topk=case.fewer_topk, materialize=materialize,
                                max_cmp_pages=None if materialize else 64, serving=serving)
    inp.update(start_pos=case.start, compress_ratio=case.ratio)
    if "cmp_block_table" in inp:
        inp["cmp_block_table"] = inp["cmp_block_table"][0]
    return inp


def call(inp: dict, cfg: AttentionConfig, backend: str, **kw) -> torch.Tensor:
    return prefill_sparse_attn(inp["q"], inp["kv"], inp["kv_cache"], inp["block_table"], inp["start_pos"],
                               inp["attn_sink"], inp["wo_a"], inp["wo_b"], compress_ratio=inp["compress_ratio"],
                               config=cfg, cmp_kv=inp.get("cmp_kv"), cmp_block_table=inp.get("cmp_block_table"),
                               topk_idxs=inp.get("topk_idxs"), backend=backend, **kw)


def golden(name: str, *, perturb: str | None = None) -> GoldenOutcome:
    """Kernel on the simulator vs the golden (`dsv4_sparse_attn_common.testing.check_golden`);
    perturb "sink" / "rope" must make the check fail."""
    case = CASES[name]
    cfg = case.config
    inp = make_inputs(case, case.value_tokens)
    rows = GOLDEN.resolved(cfg, inp).rows
    note = f"T={inp['q'].shape[0]} K={rows.shape[1]} ratio={case.ratio}"
    timing = None
    if case.value_tokens is not None:
        timed = case.time_tokens or case.tokens
        note = (f"values on T={case.value_tokens} of {case.tokens} at the same start; µs for T={timed} "
                f"of {case.tokens} (cost model alone)")

        def timing():
            return _cost_model_run(case, case.time_tokens)[0]
    return check_golden(MODULE, name, cfg, inp, golden=GOLDEN, call=call, perturb=perturb, note=note, timing=timing)


def _cost_model_run(case: Case, tokens: int | None = None):
    return time_case(case.config, make_inputs(case, tokens, materialize=False), GOLDEN.kernel, case.name)


def bench(name: str) -> BenchOutcome:
    """The public call, validate=False, at a serving-size cache (the request's ring page and
    compressed pages), every kernel on the cost model alone (`dsv4_core.bench.measure`):
    kernel µs, the gathered rows charged at the copy rate (read + write), host µs, against the
    ceiling of each distinct row the chunk reads once (`perf.distinct_traffic`)."""
    case = BENCH_CASES_BY_NAME[name]
    cfg = case.config
    inp = make_inputs(case, materialize=False, serving=True)
    return serving_bench(MODULE, name, cfg, inp, call, compress_ratio=case.ratio,
                         positions=(case.start + torch.arange(case.tokens)).reshape(1, -1),
                         head=f"T={case.tokens} from {case.start}, H={cfg.num_heads}",
                         cmp_columns=cmp_columns(inp["cmp_kv"], inp["cmp_block_table"], case.start, case.tokens,
                                                 case.ratio) if case.ratio == 128 else None)
