"""One request's token stream fed to the compressor in chunks (prefill chunks of any length,
decode steps of any S), for the equivalence tests: any split of the stream leaves the
caches of one call over all of it, within the comparator rule against the fp64 evaluation.
`PLANS` holds, per ratio, the splits the test suites check."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_core import AttentionConfig
from dsv4_core.compare import compare, compare_exact

from ..calls import decode_call, make_caches, prefill_call
from ..step import run_step
from .scenarios import make_weights


@dataclasses.dataclass
class Stream:
    config: AttentionConfig
    ratio: int
    weights: dict[str, torch.Tensor]
    x: torch.Tensor  # [N, D]
    state: torch.Tensor
    state_pos: torch.Tensor
    table: torch.Tensor  # [pages] state block table (permuted)
    cmp_kv: torch.Tensor
    cmp_table: torch.Tensor  # [cmp pages] (permuted)
    cmp_block: int


def make_stream(cfg: AttentionConfig, ratio: int, n_tokens: int, *, seed: int = 0, page: int | None = None,
                cmp_block: int = 4) -> Stream:
    g = torch.Generator().manual_seed(seed)
    page = page or (4 if ratio == 4 else 8)
    weights = make_weights(cfg, ratio, g)
    x = torch.randn(n_tokens, cfg.hidden_size, generator=g).bfloat16()
    pages = (n_tokens + page - 1) // page + 2
    cpages = n_tokens // ratio // cmp_block + 2
    state, state_pos, cmp_kv = make_caches(cfg, ratio=ratio, state_blocks=pages, state_page=page, cmp_blocks=cpages,
                                           cmp_block=cmp_block)
    state.normal_(generator=g)
    return Stream(cfg, ratio, weights, x, state, state_pos, torch.randperm(pages, generator=g).to(torch.int32),
                  cmp_kv, torch.randperm(cpages, generator=g), cmp_block)


def stream_slots(st: Stream, start: int, n: int) -> torch.Tensor:
    pos = torch.arange(start, start + n)
    c = pos // st.ratio
    slot = st.cmp_table[c // st.cmp_block] * st.cmp_block + c % st.cmp_block
    return torch.where((pos + 1) % st.ratio == 0, slot, torch.full_like(slot, -1))


def run_stream(st: Stream, steps: list[tuple[str, int]], *, backend: str = "torch") -> tuple[torch.Tensor, ...]:
    """Feed the stream's tokens as a sequence of ("prefill", T) / ("decode", S) calls on
    copies of its caches; returns (state, state_pos, cmp_kv) afterwards."""
    state, state_pos, cmp_kv = st.state.clone(), st.state_pos.clone(), st.cmp_kv.clone()
    w = [st.weights[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    p = 0
    for kind, n in steps:
        xs, slot = st.x[p:p + n], stream_slots(st, p, n)
        if kind == "prefill":
            prefill_call(st.ratio, xs, *w, p, state, state_pos, st.table, cmp_kv, slot, config=st.config,
                         backend=backend)
        else:
            decode_call(st.ratio, xs[None], *w, torch.tensor([p]), state, state_pos, st.table[None], cmp_kv, slot[None],
                        config=st.config, backend=backend)
        p += n
    if p != st.x.shape[0]:
        raise ValueError(f"steps cover {p} tokens, the stream has {st.x.shape[0]}")
    return state, state_pos, cmp_kv


def exact_stream(st: Stream) -> tuple[torch.Tensor, ...]:
    """The whole stream in one fp64 call without rounding (the comparator's exact answer)."""
    state, state_pos, cmp_kv = st.state.double(), st.state_pos.clone(), st.cmp_kv.double()
    w = [st.weights[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    n = st.x.shape[0]
    run_step(st.config, st.ratio, "torch", st.x, *w, torch.tensor([0]), n, state, state_pos, st.table[None], cmp_kv,
             stream_slots(st, 0, n)[None], dtype=torch.float64)
    return state, state_pos, cmp_kv


def equivalence_reports(got: tuple, single: tuple, exact: tuple, *, label: str = "") -> list:
    """`got` vs the single-call golden `single` under the comparator rule (bound from the
    single call's own error against `exact`); tags must be identical."""
    written = exact[1] >= 0
    return [
        compare_exact(got[1], single[1], name=f"{label}state_pos"),
        compare(got[0][written], exact[0][written], single[0][written], name=f"{label}state"),
        compare(got[2].float(), exact[2], single[2].float(), name=f"{label}cmp_kv"),
    ]


@dataclasses.dataclass(frozen=True)
class StreamPlans:
    """The streams a ratio's suites run: `official` (tokens and the split checked against the
    official decode state machine), `decode` / `prefill` (tokens and the named splits checked
    against one call over the stream by the decode / prefill packages' suites)."""

    official: tuple[int, list[tuple[str, int]]]
    decode: tuple[int, dict[str, list[tuple[str, int]]]]
    prefill: tuple[int, dict[str, list[tuple[str, int]]]]


PLANS = {
    128: StreamPlans(
        official=(260, [("prefill", 130), ("decode", 5), ("prefill", 125)]),
        decode=(258, {
            "uneven-prefill-and-decode": [("prefill", 100), ("prefill", 27), ("decode", 1), ("prefill", 130)],
            "prefill-then-S1-S2-S5": [("prefill", 250), ("decode", 1), ("decode", 2), ("decode", 5)],
            "decode-S5-across-the-close": [("prefill", 124), ("decode", 5), ("prefill", 129)],
        }),
        prefill=(258, {
            "uneven-prefill-chunks": [("prefill", 61), ("prefill", 120), ("prefill", 2), ("prefill", 75)],
            "prefill-then-decode-S1-S2-S5": [("prefill", 250), ("decode", 1), ("decode", 2), ("decode", 5)],
        }),
    ),
    4: StreamPlans(
        official=(21, [("decode", 3), ("decode", 9), ("decode", 9)]),
        decode=(24, {
            "uneven-decode": [("decode", 5), ("decode", 7), ("decode", 1), ("decode", 11)],
            "prefill-then-S1-S2-S5": [("prefill", 6), ("decode", 1), ("decode", 2), ("decode", 5), ("decode", 10)],
            "uneven-prefill": [("prefill", 2), ("prefill", 13), ("prefill", 9)],
        }),
        prefill=(24, {
            "uneven-prefill-chunks": [("prefill", 5), ("prefill", 11), ("prefill", 1), ("prefill", 7)],
            "prefill-then-decode-S1-S2-S5": [("prefill", 16), ("decode", 1), ("decode", 2), ("decode", 5)],
        }),
    ),
}


def stream_reports(cfg: AttentionConfig, ratio: int, n_tokens: int, steps: list[tuple[str, int]], *,
                   got: tuple | None = None) -> list:
    """The equivalence reports of `steps` over a fresh stream of `n_tokens` (run on the torch
    backend unless `got`, the caches a run elsewhere left, is given) against one prefill of
    the whole stream."""
    st = make_stream(cfg, ratio, n_tokens)
    single = run_stream(st, [("prefill", n_tokens)])
    exact = exact_stream(st)
    return equivalence_reports(run_stream(st, steps) if got is None else got, single, exact)
