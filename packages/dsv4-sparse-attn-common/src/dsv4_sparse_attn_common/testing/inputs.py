"""Seeded inputs and the decode scenario record of the sparse-attention packages' cases."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from dsv4_core import FLASH, PRO

from ..indexing import check_positions_grid, visible_entries


def make_attention_inputs(cfg, positions: torch.Tensor, *, compress_ratio: int, topk: int = 0, seed: int = 0,
                          cmp_block_size: int = 128, fewer_topk: bool = False, materialize: bool = True,
                          max_cmp_pages: int | None = None, serving: bool = False) -> dict:
    """Random inputs for positions [B, S]: the step's q / kv, ring pages (shuffled page ids),
    compressed pages holding every entry the requests may see (shuffled block tables), a
    sink, wo_a / wo_b and (CSA) an indexer top-k [B·S, topk] of compressed entry ids (−1
    holes; with fewer_topk, only half the possible picks made). materialize=False gives zero
    tensors of the right shapes (cost-model runs); max_cmp_pages caps the compressed pool
    (block tables then alias pages: cost-model runs at long contexts only). serving=True (with
    materialize=False): the caches at serving size — every request's ring page and
    compressed pages, allocated uninitialised (`torch.empty`: untouched, so a 1M-context pool
    costs no memory until read) — for the bench."""
    g = torch.Generator().manual_seed(seed)
    p = check_positions_grid(positions)
    B, S = p.shape
    T = B * S
    H, D, W = cfg.num_heads, cfg.head_dim, cfg.window
    G, OR, GIN, DH = cfg.o_groups, cfg.o_lora_rank, cfg.group_in_dim, cfg.hidden_size

    def rn(*shape, scale=1.0):
        if not materialize:
            return torch.zeros(*shape).bfloat16()
        return (torch.randn(*shape, generator=g) * scale).bfloat16()

    def cache(*shape):
        return torch.empty(*shape, dtype=torch.bfloat16) if serving else rn(*shape)

    out = {
        "positions": p,
        "q": rn(T, H, D, scale=1.5),
        "kv": rn(T, D),
        "kv_cache": cache(B + 1, W, D),  # one spare page
        "block_table": torch.randperm(B + 1, generator=g)[:B].to(torch.int32),
        "attn_sink": torch.randn(H, generator=g) if materialize else torch.zeros(H),
        "wo_a": rn(G, OR, GIN, scale=GIN ** -0.5),
        "wo_b": rn(DH, G * OR, scale=(G * OR) ** -0.5),
    }
    if compress_ratio:
        n_vis = int(visible_entries(p[:, -1], compress_ratio).max())
        m = max(1, -(-n_vis // cmp_block_size))
        if max_cmp_pages is not None and B * m + 1 > max_cmp_pages and not serving:
            out["cmp_kv"] = rn(max_cmp_pages, cmp_block_size, D)
            out["cmp_block_table"] = torch.randint(0, max_cmp_pages, (B, m), generator=g, dtype=torch.int32)
        else:
            out["cmp_kv"] = cache(B * m + 1, cmp_block_size, D)
            out["cmp_block_table"] = torch.randperm(B * m + 1, generator=g)[:B * m].reshape(B, m).to(torch.int32)
    if compress_ratio == 4 and topk:
        vis = visible_entries(p.reshape(-1), compress_ratio)  # entries each token may see
        tk = torch.full((T, topk), -1, dtype=torch.int32)
        for t in range(T):
            n = int(vis[t])
            k = min(topk, n) // (2 if fewer_topk else 1)
            if k:
                pick = torch.randperm(n, generator=g)[:k]
                cols = torch.randperm(topk, generator=g)[:k]  # holes anywhere
                tk[t, cols] = pick.to(torch.int32)
        # the step's later token may pick an entry its earlier sibling must not see: the
        # causal cut masks it there (official semantics)
        out["topk_idxs"] = tk
    return out


@dataclasses.dataclass(frozen=True)
class DecodeCase:
    """A decode step: B requests, S tokens each at consecutive positions from `starts[b]`."""

    name: str
    config: Any  # dsv4_core.AttentionConfig
    starts: tuple  # first position of each request's step
    seq: int  # S tokens per request
    seed: int = 0
    fewer_topk: bool = False  # CSA: only half the visible entries picked (holes among the k columns)
    causal_probe: bool = False  # CSA: hand each step's first token an entry only its sibling may see
    value_batch: int | None = None  # only these requests checked in the interpreter (None: all)

    @property
    def batch(self) -> int:
        return len(self.starts)

    def positions(self, batch: int | None = None) -> torch.Tensor:
        st = torch.tensor(self.starts[:batch or self.batch], dtype=torch.int64)
        return st[:, None] + torch.arange(self.seq)[None, :]


def seeded_starts(n: int, lo: int, hi: int, seed: int) -> tuple:
    """n request start positions drawn uniformly from [lo, hi) with a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return tuple(int(v) for v in torch.randint(lo, hi, (n,), generator=g))


def serving_decode_cases(lo: int, hi: int, tag: str = "") -> tuple[list, list]:
    """(flash-tier golden cases, bench cases) of a decode package: B = 64 requests × S = 2
    tokens with starts drawn from [lo, hi) — FLASH (`flash-decode-B64S2{tag}`, seed 1: golden
    and bench) and PRO (`pro-decode-B64S2{tag}`, seed 2: bench)."""
    flash = DecodeCase(f"flash-decode-B64S2{tag}", FLASH, seeded_starts(64, lo, hi, 1), 2)
    return [flash], [flash, DecodeCase(f"pro-decode-B64S2{tag}", PRO, seeded_starts(64, lo, hi, 2), 2)]


def decode_inputs(case: DecodeCase, compress_ratio: int, batch: int | None = None, materialize: bool = True,
                  serving: bool = False) -> dict:
    """The inputs of a decode scenario on a layer of `compress_ratio` (the first `batch`
    requests; materialize=False: zero tensors for cost-model runs, compressed pool capped at
    64 pages). CSA: the config's top-k, and with `case.causal_probe` each step's first token
    is handed the last entry that closes inside the step (which the causal cut must mask)."""
    p = case.positions(batch)
    inp = make_attention_inputs(case.config, p, compress_ratio=compress_ratio, topk=case.config.index_topk,
                                seed=case.seed, fewer_topk=case.fewer_topk, materialize=materialize,
                                max_cmp_pages=None if materialize else 64, serving=serving)
    if case.causal_probe and case.seq > 1:
        vis_last = visible_entries(p[:, -1], compress_ratio)
        for b in range(p.shape[0]):
            if visible_entries(p[b, 0], compress_ratio) < vis_last[b]:  # entry vis_last-1 closes inside the step
                inp["topk_idxs"][b * case.seq, -1] = int(vis_last[b]) - 1
    return inp
