"""Scenario helpers for the memory-contract tests (DESIGN.md, "Memory contract") of the
sparse-attention packages: which cache rows a scenario references, caches whose other rows
are poisoned (NaN / ±Inf), the same reachable contents spread over 16× the pages, and the
simulator run the NaN-isolation and validate=False tests share (one process, one kernel)."""

from __future__ import annotations

import importlib

import torch

POISON = (float("nan"), float("inf"), float("-inf"))


def golden_of(cases):
    """A package's torch golden (`Golden`): the decode kit's, or the module's `GOLDEN`."""
    g = getattr(cases, "GOLDEN", None)
    return g if g is not None else cases.KIT.torch_golden


def referenced_rows(cfg, inp: dict, golden) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Boolean masks over the ring cache's rows [P·W] and the compressed cache's rows
    [P2·blk] (None without one): the rows some token of the scenario attends (the golden's
    physical rows over ring ‖ step kv ‖ compressed)."""
    rows = golden.resolved(cfg, inp).rows.reshape(-1).long()
    rows = rows[rows >= 0]
    ring_n = inp["kv_cache"].shape[0] * inp["kv_cache"].shape[1]
    T = inp["kv"].shape[0]
    ring = torch.zeros(ring_n, dtype=torch.bool)
    ring[rows[rows < ring_n]] = True
    cmp = None
    if inp.get("cmp_kv") is not None:
        cmp = torch.zeros(inp["cmp_kv"].shape[0] * inp["cmp_kv"].shape[1], dtype=torch.bool)
        c = rows[rows >= ring_n + T] - ring_n - T
        cmp[c] = True
    return ring, cmp


def _fill(rows: torch.Tensor, keep: torch.Tensor) -> None:
    idx = (~keep).nonzero().reshape(-1)
    for k, v in enumerate(POISON):
        rows[idx[k::len(POISON)]] = v


def poisoned(cfg, inp: dict, golden, *, referenced: bool = False) -> dict:
    """The scenario with every unreferenced ring and compressed cache row set to NaN, +Inf or
    −Inf (in turn); referenced=True poisons one referenced ring row instead (the check that
    the test can fail). CSA: one more −1 hole in the top-k (its first column of token 0)."""
    ring_keep, cmp_keep = referenced_rows(cfg, inp, golden)
    out = dict(inp)
    kc = inp["kv_cache"].clone()
    flat = kc.view(-1, kc.shape[-1])
    if referenced:
        flat[ring_keep.nonzero()[0, 0]] = float("nan")
    else:
        _fill(flat, ring_keep)
    out["kv_cache"] = kc
    if cmp_keep is not None and not referenced:
        ck = inp["cmp_kv"].clone()
        _fill(ck.view(-1, ck.shape[-1]), cmp_keep)
        out["cmp_kv"] = ck
    return out


def with_hole(inp: dict) -> dict:
    """CSA inputs with topk_idxs[0, 0] = −1 (a hole); other kinds unchanged."""
    if inp.get("topk_idxs") is None:
        return inp
    tk = inp["topk_idxs"].clone()
    tk[0, 0] = -1
    return dict(inp, topk_idxs=tk)


def spread(inp: dict, factor: int = 16, fill: float = float("nan")) -> dict:
    """The same reachable contents in caches of `factor`× the pages: page i moves to
    factor·i + factor // 2 (block tables remapped, −1 kept), every other page is `fill`."""
    out = dict(inp)
    sh = factor // 2

    def move(cache, table):
        big = torch.full((cache.shape[0] * factor,) + tuple(cache.shape[1:]), fill, dtype=cache.dtype)
        big[torch.arange(cache.shape[0]) * factor + sh] = cache
        t = table.to(torch.int64)
        return big, torch.where(t >= 0, t * factor + sh, t).to(table.dtype)

    out["kv_cache"], out["block_table"] = move(inp["kv_cache"], inp["block_table"])
    if inp.get("cmp_kv") is not None:
        out["cmp_kv"], out["cmp_block_table"] = move(inp["cmp_kv"], inp["cmp_block_table"])
    return out


def caches(inp: dict) -> list[torch.Tensor]:
    return [inp[k] for k in ("kv_cache", "cmp_kv") if inp.get(k) is not None]


def sim_contract_run(cases_module: str, case: str) -> dict:
    """In one process (one kernel): the package's public function on the `sim` backend on
    the clean scenario (with a top-k hole for CSA), on the same scenario with every
    unreferenced cache row poisoned, and with validate=False."""
    cases = importlib.import_module(cases_module)
    c = cases.CASES[case]
    cfg = c.config
    inp = with_hole(cases.make_inputs(c))
    clean = cases.call(inp, cfg, "sim")
    bad = cases.call(poisoned(cfg, inp, golden_of(cases)), cfg, "sim")
    fast = cases.call(inp, cfg, "sim", validate=False)
    return {"clean": clean, "poisoned": bad, "unvalidated": fast}


def sim_step_isolation_run(cases_module: str, case: str) -> dict:
    """In one process (one kernel): a decode step of several requests on the `sim` backend,
    clean and with the first request's fresh kv rows (rows 0 … S − 1 of the step) set to
    NaN: no other request references them."""
    cases = importlib.import_module(cases_module)
    c = cases.CASES[case]
    inp = cases.make_inputs(c)
    kv = inp["kv"].clone()
    kv[:inp["positions"].shape[1]] = float("nan")
    return {"clean": cases.call(inp, c.config, "sim"), "poisoned": cases.call(dict(inp, kv=kv), c.config, "sim"),
            "positions": inp["positions"]}
