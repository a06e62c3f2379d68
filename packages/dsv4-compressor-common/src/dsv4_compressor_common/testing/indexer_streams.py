"""One request's token stream through the lightning indexer's key compressor and the indexer,
fed in chunks (prefill chunks of any length, decode steps of any S), for the equivalence tests
of both indexer packages: any split leaves the index-key cache of one call over the whole
stream (comparator rule against the fp64 evaluation) and gives every token the same picks
(tie-aware). A package binds its own public functions for its phase; the other phase runs
through the family (`family_prefill`, `family_decode`: the family's calls with the key path's
`rotate=True` and the indexer's torch golden), since module packages may not import each
other."""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from dsv4_core import AttentionConfig
from dsv4_core.compare import compare, compare_exact, compare_topk

from ..calls import decode_call, make_caches, prefill_call
from ..indexer.host import rope_rows_on_device
from ..indexer.keys import KEY_NAMES
from ..indexer.reference import RATIO, index_queries, index_scores_reference, select_topk_reference
from ..step import run_step
from .indexer import make_weights as index_weights
from .scenarios import make_weights as key_weights


@dataclasses.dataclass
class IndexStream:
    config: AttentionConfig
    x: torch.Tensor  # [N, hidden]
    qr: torch.Tensor  # [N, q_lora_rank]
    keys: dict  # wkv, wgate, ape, norm_weight of the key compressor (index_head_dim)
    index: dict  # wq_b, weights_proj
    state: torch.Tensor
    state_pos: torch.Tensor
    state_table: torch.Tensor  # [pages] (permuted)
    cache: torch.Tensor  # idx_kv_cache
    table: torch.Tensor  # [cache pages] (permuted), the indexer's block table
    block: int


def make_index_stream(cfg: AttentionConfig, n_tokens: int, *, seed: int = 0, page: int = 4,
                      block: int = 16) -> IndexStream:
    g = torch.Generator().manual_seed(seed)
    keys = key_weights(dataclasses.replace(cfg, head_dim=cfg.index_head_dim), RATIO, g)
    index = index_weights(cfg, g)
    x = torch.randn(n_tokens, cfg.hidden_size, generator=g).bfloat16()
    qr = torch.randn(n_tokens, cfg.q_lora_rank, generator=g).bfloat16()
    pages = n_tokens // page + 2
    cpages = n_tokens // RATIO // block + 2
    state, state_pos, cache = make_caches(cfg, ratio=RATIO, state_blocks=pages, state_page=page, cmp_blocks=cpages,
                                          cmp_block=block, head_dim=cfg.index_head_dim)
    state.normal_(generator=g)  # garbage in untagged rows
    cache.fill_(float("nan"))  # rows never written must never reach a score
    return IndexStream(cfg, x, qr, keys, index, state, state_pos, torch.randperm(pages, generator=g).to(torch.int32),
                       cache, torch.randperm(cpages, generator=g).to(torch.int32), block)


def key_slots(st: IndexStream, start: int, n: int) -> torch.Tensor:
    """idx_slot_mapping [n] int64 of positions start … start + n − 1 (−1 where no window closes)."""
    pos = torch.arange(start, start + n)
    c = pos // RATIO
    slot = st.table[c // st.block].to(torch.int64) * st.block + c % st.block
    return torch.where((pos + 1) % RATIO == 0, slot, torch.full_like(slot, -1))


def _key_weights(st: IndexStream) -> list:
    return [st.keys[k] for k in ("wkv", "wgate", "ape", "norm_weight")]


def _reference_picks(st: IndexStream, x, qr, positions, cache, table) -> torch.Tensor:
    cfg = st.config
    cos, sin = rope_rows_on_device(cfg, positions, True)
    q, w = index_queries(cfg, x, qr, st.index["wq_b"], st.index["weights_proj"], cos, sin)
    return select_topk_reference(index_scores_reference(q, w, positions, cache, table), cfg.index_topk)


def family_prefill(st: IndexStream, p: int, n: int, state, state_pos, cache, backend: str) -> torch.Tensor:
    """A prefill chunk through the family: the key path (prefill_call, rotate=True), then the
    indexer's golden picks [n, topk]."""
    cfg = st.config
    prefill_call(RATIO, st.x[p:p + n], *_key_weights(st), p, state, state_pos, st.state_table, cache,
                 key_slots(st, p, n), config=cfg, backend=backend, head_dim=cfg.index_head_dim, rotate=True,
                 names=KEY_NAMES)
    pos = (p + torch.arange(n)).reshape(1, -1)
    return _reference_picks(st, st.x[p:p + n], st.qr[p:p + n], pos, cache, st.table[None])


def family_decode(st: IndexStream, p: int, n: int, state, state_pos, cache, backend: str) -> torch.Tensor:
    """A decode step of S = n tokens through the family (decode_call, rotate=True; golden picks)."""
    cfg = st.config
    decode_call(RATIO, st.x[None, p:p + n], *_key_weights(st), torch.tensor([p]), state, state_pos,
                st.state_table[None], cache, key_slots(st, p, n)[None], config=cfg, backend=backend,
                head_dim=cfg.index_head_dim, rotate=True, names=KEY_NAMES)
    pos = (p + torch.arange(n)).reshape(1, -1)
    return _reference_picks(st, st.x[p:p + n], st.qr[p:p + n], pos, cache, st.table[None])


def public_prefill(compressor: Callable, indexer: Callable) -> Callable:
    """A prefill step from the prefill package's public `prefill_indexer_compressor` and `prefill_indexer`."""
    def step(st: IndexStream, p: int, n: int, state, state_pos, cache, backend: str) -> torch.Tensor:
        compressor(st.x[p:p + n], *_key_weights(st), p, state, state_pos, st.state_table, cache, key_slots(st, p, n),
                   config=st.config, backend=backend)
        return indexer(st.x[p:p + n], st.qr[p:p + n], st.index["wq_b"], st.index["weights_proj"], p, cache, st.table,
                       config=st.config, backend=backend)
    return step


def public_decode(compressor: Callable, indexer: Callable) -> Callable:
    """A decode step (B = 1, S = n) from the decode package's public `indexer_compressor` and `indexer`."""
    def step(st: IndexStream, p: int, n: int, state, state_pos, cache, backend: str) -> torch.Tensor:
        compressor(st.x[None, p:p + n], *_key_weights(st), torch.tensor([p]), state, state_pos, st.state_table[None],
                   cache, key_slots(st, p, n)[None], config=st.config, backend=backend)
        pos = (p + torch.arange(n)).reshape(1, -1)
        return indexer(st.x[p:p + n], st.qr[p:p + n], st.index["wq_b"], st.index["weights_proj"], pos, cache,
                       st.table[None], config=st.config, backend=backend)
    return step


def run_index_stream(st: IndexStream, steps: list[tuple[str, int]], *, prefill: Callable = family_prefill,
                     decode: Callable = family_decode, backends: dict | None = None) -> tuple[torch.Tensor, ...]:
    """Feed the stream as ("prefill", T) / ("decode", S) steps on copies of its caches; returns
    (idx_kv_cache, state_pos, picks [N, topk]). `backends`: {"prefill": …, "decode": …}, torch
    by default."""
    be = {"prefill": "torch", "decode": "torch", **(backends or {})}
    state, state_pos, cache = st.state.clone(), st.state_pos.clone(), st.cache.clone()
    picks, p = [], 0
    for kind, n in steps:
        fn = prefill if kind == "prefill" else decode
        picks.append(fn(st, p, n, state, state_pos, cache, be[kind]))
        p += n
    if p != st.x.shape[0]:
        raise ValueError(f"steps cover {p} tokens, the stream has {st.x.shape[0]}")
    return cache, state_pos, torch.cat(picks)


def exact_keys(st: IndexStream) -> torch.Tensor:
    """The index-key cache after one fp64 call over the whole stream, no rounding."""
    cfg = st.config
    state, state_pos, cache = st.state.double(), st.state_pos.clone(), st.cache.double()
    n = st.x.shape[0]
    run_step(cfg, RATIO, "torch", st.x, *_key_weights(st), torch.tensor([0]), n, state, state_pos,
             st.state_table[None], cache, key_slots(st, 0, n)[None], head_dim=cfg.index_head_dim, dtype=torch.float64,
             rotate=True)
    return cache


def stream_scores(st: IndexStream, cache: torch.Tensor) -> torch.Tensor:
    """The golden's scores [N, L] of every stream token over `cache` (the tie scale of the picks)."""
    cfg, n = st.config, st.x.shape[0]
    pos = torch.arange(n).reshape(1, -1)
    cos, sin = rope_rows_on_device(cfg, pos, True)
    q, w = index_queries(cfg, st.x, st.qr, st.index["wq_b"], st.index["weights_proj"], cos, sin)
    return index_scores_reference(q, w, pos, cache, st.table[None])


def index_stream_reports(st: IndexStream, got: tuple, single: tuple, exact_cache: torch.Tensor, *,
                         label: str = "") -> list:
    """`got` (a split's cache, tags, picks) vs `single` (one prefill chunk over the stream): the
    keys under the comparator rule (bound from the single call's error against the fp64
    cache), the tags exactly, the picks as sets with a tie tolerance of one bf16 step of the
    largest score (the splits' keys may differ by a rounding)."""
    written = single[1].reshape(-1) >= 0
    n_keys = st.x.shape[0] // RATIO
    rows = (st.table[torch.arange(n_keys) // st.block].to(torch.int64) * st.block + torch.arange(n_keys) % st.block)
    flat = st.cache.shape[-1]
    reports = [
        compare_exact(got[1].reshape(-1)[written], single[1].reshape(-1)[written], name=f"{label}state_pos"),
        compare(got[0].reshape(-1, flat)[rows].float(), exact_cache.reshape(-1, flat)[rows],
                single[0].reshape(-1, flat)[rows].float(), name=f"{label}idx_kv_cache"),
    ]
    scores = stream_scores(st, single[0])
    fin = torch.isfinite(scores)
    tie = 2 ** -7 * float(scores[fin].abs().max()) if fin.any() else 0.0
    reports.append(compare_topk(got[2], single[2], scores.double(), tie_tol=tie, name=f"{label}picks"))
    return reports


# the splits both packages check: (tokens, {name: steps})
INDEX_PLANS = (72, {
    "uneven-prefill-chunks": [("prefill", 5), ("prefill", 27), ("prefill", 1), ("prefill", 39)],
    "prefill-then-decode-S1-S2-S8": [("prefill", 61), ("decode", 1), ("decode", 2), ("decode", 8)],
    "decode-S8-S2-S1-across-closes": [("prefill", 7), ("decode", 8), ("decode", 2), ("decode", 1), ("prefill", 54)],
})
