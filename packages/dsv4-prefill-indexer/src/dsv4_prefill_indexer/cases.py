"""Seeded prefill scenarios shared by the tests, `nox -s golden` and `nox -s bench`.

Small tier: a chunk from position 0 (its first tokens see nothing), a chunk at an uneven
start with fewer candidates than top-k for its early tokens and more for its late ones, a TP
shard, PRO geometry (top-k 1024). Flash tier: FLASH prefill T = 1024 at start 64K, numbers
on a 32-token slice, the whole chunk timed by the cost model. Bench: the same chunk."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_compressor_common.indexer import host
from dsv4_compressor_common.indexer.reference import visible_entries
from dsv4_compressor_common.testing.indexer import (
    CacheSpec,
    make_cache,
    make_tokens,
    make_weights,
    staged_golden,
    time_stages,
)
from dsv4_core import FLASH, PRO, TINY, AttentionConfig, shard_heads
from dsv4_core.golden import BenchOutcome, GoldenOutcome

MODULE = "prefill_indexer"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    config: AttentionConfig
    start: int
    tokens: int
    block_size: int = 16
    seed: int = 0
    value_tokens: int | None = None  # tokens whose numbers are checked (None: all)

    def positions(self, tokens: int | None = None) -> torch.Tensor:
        return (self.start + torch.arange(tokens or self.tokens)).reshape(1, -1)


SMALL_CASES = [
    Case("tiny-from0-T40", TINY, 0, 40),
    Case("tiny-start77-T70", TINY, 77, 70),
    Case("tiny-tp2-T24", shard_heads(TINY, 2), 300, 24),
    Case("pro-tp8-T8", shard_heads(PRO, 8), 4400, 8, block_size=128),
]
FLASH_CASES = [Case("flash-prefill-T1024-64K", FLASH, 65536, 1024, block_size=128, value_tokens=32)]
BENCH = FLASH_CASES
CASES = {c.name: c for c in SMALL_CASES + FLASH_CASES}
GOLDEN_CASES = [(c.name, "small") for c in SMALL_CASES] + [(c.name, "flash") for c in FLASH_CASES]
BENCH_CASES = [c.name for c in BENCH]


def make_inputs(case: Case, tokens: int | None = None, materialize: bool = True) -> dict:
    cfg = case.config
    gen = torch.Generator().manual_seed(case.seed)
    pos = case.positions(tokens)
    needed = visible_entries(pos[:, -1]).tolist()
    cache, table = make_cache(cfg, needed, CacheSpec(block_size=case.block_size), gen, materialize=materialize)
    cos, sin = host.rope_rows_on_device(cfg, pos, True)
    return dict(config=cfg, positions=pos, cache=cache, table=table, cos=cos, sin=sin,
                **make_tokens(cfg, pos.shape[1], gen), **make_weights(cfg, gen))


def run_stage(stage: str, cfg, *args, values: bool = True):
    """One kernel stage on the simulator (prefill grouping: `host.prefill_group` tokens of the
    chunk per group, every group on the request's table row)."""
    G = host.prefill_group(cfg)
    if stage == "queries":
        x, qr, wq_b, wp, cos, sin = args
        return host.run_queries(cfg, "sim", x, qr, wq_b, wp, cos, sin, host.padded(x.shape[0]), values=values)
    if stage == "scores":
        q2d, w, pos, cache, table = args
        T = pos.shape[1]
        rows = host.padded(T)
        vis = torch.zeros(rows, dtype=torch.int64)
        vis[:T] = visible_entries(pos.reshape(-1))
        q = torch.cat([q2d, q2d.new_zeros((rows - T) * cfg.index_num_heads, q2d.shape[1])]) if rows > T else q2d
        wp = torch.cat([w, w.new_zeros(rows - T, w.shape[1])]) if rows > T else w
        groups = table.reshape(1, -1).expand(rows // G, table.shape[-1]).contiguous()
        return host.run_scores(cfg, "sim", q, wp, vis, cache, groups, G, values=values)[:T]
    if stage == "select":
        (scores,) = args
        return host.run_select("sim", scores.contiguous(), cfg.index_topk, values=values)
    raise ValueError(stage)


def golden(name: str, *, perturb: str | None = None) -> GoldenOutcome:
    case = CASES[name]
    inp = make_inputs(case, tokens=case.value_tokens)
    timed = (lambda: _time_case(case)[0]) if case.value_tokens is not None else None
    return staged_golden(MODULE, name, case.config, inp, run_stage, perturb=perturb, timed=timed,
                         note=f"T={inp['positions'].shape[1]} of {case.tokens} from {case.start}")


def _time_case(case: Case):
    inp = make_inputs(case, materialize=False)
    return time_stages(case.config, inp, run_stage), inp


def bench(name: str) -> BenchOutcome:
    """The public `prefill_indexer` call at a serving-size key cache, validate=False, every
    kernel on the cost model alone: kernel µs + the score kernel's gathered key rows at the
    copy rate + host µs, against the ceiling of the request's keys read once."""
    from dsv4_compressor_common.testing.indexer import traffic
    from dsv4_core import bench as timing

    from . import prefill_indexer

    case = CASES[name]
    inp = make_inputs(case, materialize=False)
    args = [inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], case.start, inp["cache"], inp["table"][0]]
    m = timing.measure(lambda: prefill_indexer(*args, config=case.config, backend="sim", validate=False),
                       given=[a for a in args if isinstance(a, torch.Tensor)])
    gather_us = sum(r.aicore_us for r in host.last_runs() if r.name.endswith("gather_charge"))
    nbytes, flops = traffic(case.config, inp["positions"])
    o = timing.outcome(MODULE, name, m, nbytes=nbytes, flops=flops,
                       note=f"T={case.tokens} from {case.start}, H={case.config.index_num_heads}")
    return dataclasses.replace(o, gather_us=gather_us)
