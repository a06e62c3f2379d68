"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench`.

Small tier (TINY preset and shards): positions < 128 (partial window), ring wrap-around
with S = 2 (the step's own tokens through the overlay) and S = 3 (a step across the ring's
end, per-token paged rows), a TP shard, PRO group geometry
(PRO sharded to 16 heads). Flash tier: FLASH decode B=64, S=2 — numbers on the full
case in the interpreter (T = 128 tokens: about 3 minutes and 15 GB), timed by the cost
model in the same run."""

from __future__ import annotations

import torch

from dsv4_core import PRO, TINY, AttentionConfig, shard_heads
from dsv4_sparse_attn_common.testing import DecodeCase, DecodeKit, serving_decode_cases

from . import COMPRESS_RATIO, sparse_attn_swa

MODULE = "sparse_attn_swa"

Case = DecodeCase
SMALL_CASES = [
    Case("tiny-partial-B2S1", TINY, (5, 60), 1),
    Case("tiny-wrap-B2S2", TINY, (130, 383), 2),
    Case("tiny-tp2-B2S2", shard_heads(TINY, 2), (126, 1000), 2),
    Case("tiny-wrap-B3S3", TINY, (125, 2, 509), 3),  # runs of 1: 3 tokens do not divide the 8-token tile
    Case("pro-tp8-B1S2", shard_heads(PRO, 8), (70000,), 2),
]
FLASH_CASES, BENCH = serving_decode_cases(0, 65536)


def call(inp: dict, cfg: AttentionConfig, backend: str, **kw) -> torch.Tensor:
    return sparse_attn_swa(inp["q"], inp["kv"], inp["kv_cache"], inp["block_table"], inp["positions"],
                           inp["attn_sink"], inp["wo_a"], inp["wo_b"], config=cfg, backend=backend, **kw)


KIT = DecodeKit(__name__, MODULE, COMPRESS_RATIO, call, small=SMALL_CASES, flash=FLASH_CASES, bench=BENCH)
CASES, GOLDEN_CASES, BENCH_CASES = KIT.cases, KIT.golden_cases, KIT.bench_cases
make_inputs, golden, bench = KIT.make_inputs, KIT.golden, KIT.bench  # make_inputs(case, batch=None, materialize=True)
reference, exact = KIT.reference, KIT.exact  # the torch golden (bf16) and its fp64 evaluation of inputs
