"""Seeded decode scenarios shared by the tests, `nox -s golden` and `nox -s bench`.

Small tier: positions < 4 (no candidates at all for some tokens), fewer candidates than
top-k with NaN in every unreferenced cache row and a −1 table column, more candidates than
top-k with S = 1, S = 8 tokens whose causal cut differs inside the step, a TP shard of the
index heads (2 of TINY's 8 → 4 heads), PRO geometry (PRO sharded to 8 index heads, top-k
1024). Flash tier: FLASH decode B = 64, S = 2 at 64K context, numbers on a 4-request slice,
the whole case timed by the cost model (values=False). Bench: FLASH and PRO decode B = 64,
S = 2 at 64K and 1M context."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_compressor_common.indexer import host
from dsv4_compressor_common.indexer.reference import visible_entries
from dsv4_compressor_common.testing import Case as KeyCase
from dsv4_compressor_common.testing import golden as key_golden
from dsv4_compressor_common.testing.indexer import (
    CacheSpec,
    combined_run,
    make_cache,
    make_tokens,
    make_weights,
    staged_golden,
    time_stages,
    traffic,
)
from dsv4_compressor_common.testing.indexer_streams import (
    exact_keys,
    index_stream_reports,
    make_index_stream,
    public_decode,
    run_index_stream,
)
from dsv4_core import FLASH, PRO, TINY, AttentionConfig, shard_heads
from dsv4_core.golden import BenchOutcome, GoldenOutcome

MODULE = "indexer"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    config: AttentionConfig
    starts: tuple[int, ...]  # first position of each request's step
    seq: int  # S
    block_size: int = 16
    seed: int = 0
    value_batch: int | None = None  # requests whose numbers are checked (None: all)

    @property
    def batch(self) -> int:
        return len(self.starts)

    def positions(self, batch: int | None = None) -> torch.Tensor:
        st = torch.tensor(self.starts[:batch or self.batch], dtype=torch.int64)
        return st[:, None] + torch.arange(self.seq)[None, :]


def _spread(n: int, lo: int, hi: int, seed: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(int(v) for v in torch.randint(lo, hi, (n,), generator=g))


CTX_64K, CTX_1M = 65536, 1 << 20
SMALL_CASES = [
    Case("tiny-early-B3S2", TINY, (0, 2, 9), 2),
    Case("tiny-fewer-B2S2", TINY, (20, 45), 2),
    Case("tiny-many-B2S1", TINY, (301, 518), 1),
    Case("tiny-S8-B1", TINY, (250,), 8),
    Case("tiny-tp2-B2S2", shard_heads(TINY, 2), (126, 1000), 2),
    Case("pro-tp8-B1S2", shard_heads(PRO, 8), (5002,), 2, block_size=128),
]
FLASH_CASES = [Case("flash-decode-B64S2-64K", FLASH, _spread(64, CTX_64K - 130, CTX_64K - 2, 1), 2,
                    block_size=128, value_batch=4)]
BENCH = [
    Case("flash-decode-B64S2-64K", FLASH, _spread(64, CTX_64K - 130, CTX_64K - 2, 1), 2, block_size=128),
    Case("pro-decode-B64S2-64K", PRO, _spread(64, CTX_64K - 130, CTX_64K - 2, 2), 2, block_size=128),
    Case("flash-decode-B64S2-1M", FLASH, _spread(64, CTX_1M - 130, CTX_1M - 2, 3), 2, block_size=128),
    Case("pro-decode-B64S2-1M", PRO, _spread(64, CTX_1M - 130, CTX_1M - 2, 4), 2, block_size=128),
]
# the key compressor (the family's ratio-4 path at index_head_dim with the Hadamard): windows
# closing on several tokens of a step, the first window, a page crossing
KEY_CASES = {c.name: c for c in [
    KeyCase("keys-tiny-decode-S5", dataclasses.replace(TINY, name="tiny-keys", head_dim=TINY.index_head_dim), 4,
            (0, 5, 130, 2), 5, rotate=True),
    # 8 requests x 3 candidate windows: two window tiles, the keys written once after both
    KeyCase("keys-tiny-decode-B8S9-two-tiles", dataclasses.replace(TINY, name="tiny-keys",
                                                                 head_dim=TINY.index_head_dim), 4,
            (0, 3, 6, 11, 40, 64, 130, 201), 9, rotate=True)]}
# a token stream: prefill (the family's key path) then decode steps of S = 1, 2, 8 (this
# package's public key compressor and indexer), all on the simulator, vs one torch prefill
CHAINS = {"chain-prefill61-decode-S1-S2-S8": (72, [("prefill", 61), ("decode", 1), ("decode", 2), ("decode", 8)])}
CASES = {c.name: c for c in SMALL_CASES + FLASH_CASES}
BENCH_CASES_BY_NAME = {c.name: c for c in BENCH}
GOLDEN_CASES = ([(c.name, "small") for c in SMALL_CASES] + [(n, "small") for n in KEY_CASES]
                + [(n, "small") for n in CHAINS] + [(c.name, "flash") for c in FLASH_CASES])
BENCH_CASES = [c.name for c in BENCH]


def make_inputs(case: Case, batch: int | None = None, materialize: bool = True) -> dict:
    cfg = case.config
    gen = torch.Generator().manual_seed(case.seed)
    pos = case.positions(batch)
    B, S = pos.shape
    needed = visible_entries(pos[:, -1]).tolist()
    cache, table = make_cache(cfg, needed, CacheSpec(block_size=case.block_size), gen, materialize=materialize)
    cos, sin = host.rope_rows_on_device(cfg, pos, True)
    return dict(config=cfg, positions=pos, cache=cache, table=table, cos=cos, sin=sin,
                **make_tokens(cfg, B * S, gen), **make_weights(cfg, gen))


def run_stage(stage: str, cfg, *args, values: bool = True):
    """One kernel stage on the simulator (decode grouping: a request's S tokens per group)."""
    if stage == "queries":
        x, qr, wq_b, wp, cos, sin = args
        return host.run_queries(cfg, "sim", x, qr, wq_b, wp, cos, sin, host.padded(x.shape[0]), values=values)
    if stage == "scores":
        q2d, w, pos, cache, table = args
        return host.run_scores(cfg, "sim", q2d, w, visible_entries(pos).reshape(-1), cache, table, pos.shape[1],
                               values=values)
    if stage == "select":
        (scores,) = args
        return host.run_select("sim", scores, cfg.index_topk, values=values)
    raise ValueError(stage)


def golden(name: str, *, perturb: str | None = None) -> GoldenOutcome:
    """Kernels on the simulator vs the references (see `casekit.check_stages`); perturb
    "wq_b" / "scores" / "picks" must make the check fail. A case with `value_batch` checks
    numbers on that many requests and times the whole case with the cost model. Key cases
    run the family's key-path check (perturb "rope_pos": keys rotated one position late);
    chains the stream equivalence (perturb "picks": one pick dropped)."""
    if name in KEY_CASES:
        return key_golden(MODULE, KEY_CASES[name], perturb=perturb)
    if name in CHAINS:
        return _chain_golden(name, perturb)
    case = CASES[name]
    inp = make_inputs(case, batch=case.value_batch)
    timed = (lambda: _time_case(case)[0]) if case.value_batch is not None else None
    return staged_golden(MODULE, name, case.config, inp, run_stage, perturb=perturb, timed=timed,
                         note=f"B={inp['positions'].shape[0]} of {case.batch}, S={case.seq}")


def _chain_golden(name: str, perturb: str | None) -> GoldenOutcome:
    from . import indexer, indexer_compressor

    n, steps = CHAINS[name]
    st = make_index_stream(TINY, n)
    single = run_index_stream(st, [("prefill", n)])
    host._RUNS.clear()
    got = run_index_stream(st, steps, decode=public_decode(indexer_compressor, indexer),
                           backends={"prefill": "sim", "decode": "sim"})
    run = combined_run(host.last_runs())  # the last decode step's indexer kernels
    if perturb == "picks":
        got[2][-1, 0] = -1
    reports = index_stream_reports(st, got, single, exact_keys(st))
    return GoldenOutcome(MODULE, name, reports, run, note=f"{n} tokens: {steps} on the simulator vs one torch prefill")


def _time_case(case: Case):
    """Cost model only (values=False) of the three kernels on the whole case."""
    inp = make_inputs(case, materialize=False)
    return time_stages(case.config, inp, run_stage), inp


def bench(name: str) -> BenchOutcome:
    """The public `indexer` call at a serving-size key cache (the B requests' pages at that
    context), validate=False, every kernel on the cost model alone: kernel µs + the score
    kernel's gathered key rows at the copy rate + host µs, against the ceiling of each
    request's keys read once."""
    from dsv4_core import bench as timing

    from . import indexer

    case = BENCH_CASES_BY_NAME[name]
    inp = make_inputs(case, materialize=False)
    args = [inp[k] for k in ("x", "qr", "wq_b", "weights_proj", "positions", "cache", "table")]
    m = timing.measure(lambda: indexer(*args, config=case.config, backend="sim", validate=False), given=args)
    gather_us = sum(r.aicore_us for r in host.last_runs() if r.name.endswith("gather_charge"))
    nbytes, flops = traffic(case.config, inp["positions"])
    o = timing.outcome(MODULE, name, m, nbytes=nbytes, flops=flops,
                       note=f"T={case.batch * case.seq}, H={case.config.index_num_heads}, "
                            f"entries/request≈{int(visible_entries(inp['positions'][:, -1]).float().mean())}")
    return dataclasses.replace(o, gather_us=gather_us)
