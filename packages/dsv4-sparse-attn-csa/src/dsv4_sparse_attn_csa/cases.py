"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench`.

Small tier (TINY preset and shards): positions < 4 (empty compressed set, partial window),
fewer valid top-k entries than k plus ring wrap-around with S = 2 (the step's own tokens
through the overlay; the first token of a step handed an entry only its sibling may see,
which the causal cut masks), a TP shard, PRO group geometry (PRO sharded to 16 heads, top-k
1024) and PRO's own 128 heads over two row tiles (the kernel built with the lower partition
bound pypto's cost model needs there, `dsv4_sparse_attn_common.kernel.WIDE_PG_UPPER_BOUND`).
Flash tier: FLASH decode B=64, S=2 at 64K context (128 + 512 = 640 rows per token) —
numbers on
the full case in the interpreter (T = 128 tokens: about 3 minutes and 15 GB), timed by the
cost model in the same run."""

from __future__ import annotations

import torch

from dsv4_core import PRO, TINY, AttentionConfig, shard_heads
from dsv4_sparse_attn_common.testing import DecodeCase, DecodeKit, serving_decode_cases

from . import COMPRESS_RATIO, sparse_attn_csa

MODULE = "sparse_attn_csa"

Case = DecodeCase
CTX_64K = 65536
SMALL_CASES = [
    Case("tiny-empty-cmp-B2S1", TINY, (1, 2), 1),
    Case("tiny-fewer-wrap-B2S2", TINY, (20, 302), 2, fewer_topk=True, causal_probe=True),
    Case("tiny-tp2-B2S2", shard_heads(TINY, 2), (126, 1000), 2, causal_probe=True),
    Case("pro-tp8-B1S2", shard_heads(PRO, 8), (3000,), 2),
    Case("pro-B1S2", PRO, (3000,), 2),
]
CTX_1M = 1 << 20
FLASH_CASES, BENCH = serving_decode_cases(CTX_64K - 130, CTX_64K - 2, "-64K")
BENCH = BENCH + serving_decode_cases(CTX_1M - 130, CTX_1M - 2, "-1M")[1]  # FLASH and PRO at 1M


def call(inp: dict, cfg: AttentionConfig, backend: str, **kw) -> torch.Tensor:
    return sparse_attn_csa(inp["q"], inp["kv"], inp["kv_cache"], inp["block_table"], inp["cmp_kv"],
                           inp["cmp_block_table"], inp["topk_idxs"], inp["positions"], inp["attn_sink"],
                           inp["wo_a"], inp["wo_b"], config=cfg, backend=backend, **kw)


KIT = DecodeKit(__name__, MODULE, COMPRESS_RATIO, call, small=SMALL_CASES, flash=FLASH_CASES, bench=BENCH)
CASES, GOLDEN_CASES, BENCH_CASES = KIT.cases, KIT.golden_cases, KIT.bench_cases
make_inputs, golden, bench = KIT.make_inputs, KIT.golden, KIT.bench  # make_inputs(case, batch=None, materialize=True)
reference, exact = KIT.reference, KIT.exact  # the torch golden (bf16) and its fp64 evaluation of inputs
