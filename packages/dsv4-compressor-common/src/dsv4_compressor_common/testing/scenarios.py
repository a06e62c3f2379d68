"""Seeded scenarios of one compressor call (decode and prefill, ratio 4 and 128): weights,
paged caches with permuted block tables, a state history before each request's start,
slot mappings. Each module package's `cases.py` lists its scenarios (`Case`); the golden
check and the bench (`golden.py`), the streams (`streams.py`) and the test suites build
their inputs here."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from dsv4_core import AttentionConfig

from ..calls import make_caches
from ..device import write_tags
from ..pooling import coff, window_size
from ..step import kernel_meta_for, make_plan


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    config: AttentionConfig
    ratio: int
    starts: tuple[int, ...]  # first position of each request (B = len(starts))
    seq: int  # new tokens per request
    state_page: int = 0  # 0: ratio (4) or 8 (128)
    cmp_block: int = 16
    permuted: bool = True  # permuted block tables
    seed: int = 0
    ape_scale: float = 0.5
    rotate: bool = False  # the Hadamard after RoPE (the indexer's keys; the config's head_dim is then 128)
    unpaged: tuple[int, ...] = ()  # requests whose new tokens' state pages are not allocated (−1: no state row)

    @property
    def batch(self) -> int:
        return len(self.starts)

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def page(self) -> int:
        return self.state_page or (4 if self.ratio == 4 else 8)


def make_weights(cfg: AttentionConfig, ratio: int, g: torch.Generator, ape_scale: float = 0.5) -> dict[str, torch.Tensor]:
    C, D = coff(ratio) * cfg.head_dim, cfg.hidden_size

    def rn(*shape):
        return torch.randn(*shape, generator=g)

    return {
        "wkv": (rn(C, D) * D ** -0.5).bfloat16(),
        "wgate": (rn(C, D) * D ** -0.5).bfloat16(),
        "ape": rn(ratio, C) * ape_scale,
        "norm_weight": (1 + 0.1 * rn(cfg.head_dim)).bfloat16(),
    }


def _perm(n: int, g: torch.Generator, permuted: bool) -> torch.Tensor:
    return torch.randperm(n, generator=g) if permuted else torch.arange(n)


def make_inputs(case: Case) -> dict[str, Any]:
    """Inputs of a decode-shaped call (B requests × seq tokens) with caches sized for the
    positions involved and a random state history for the positions before each start that
    a window closing in this call needs."""
    g = torch.Generator().manual_seed(case.seed)
    cfg, R, B, S, P = case.config, case.ratio, case.batch, case.seq, case.page
    W = window_size(R)
    inp = make_weights(cfg, R, g, case.ape_scale)
    inp["x"] = torch.randn(B, S, cfg.hidden_size, generator=g).bfloat16()
    start = torch.tensor(case.starts, dtype=torch.int64)
    inp["start_pos"] = start
    last = int(start.max()) + S
    pages = (last + P - 1) // P + 1
    state, state_pos, cmp_kv = make_caches(cfg, ratio=R, state_blocks=B * pages, state_page=P,
                                           cmp_blocks=B * ((last // R) // case.cmp_block + 1), cmp_block=case.cmp_block)
    state.normal_(generator=g)  # stale rows hold garbage; their tags say they hold nothing
    sblk = _perm(B * pages, g, case.permuted).reshape(B, pages).to(torch.int32)
    for b in case.unpaged:  # its new tokens write no state row; their windows read them from this call's rows
        s0 = int(start[b])
        if s0 % P:
            raise ValueError(f"{case.name}: request {b} starts mid-page ({s0} % {P}); its page holds earlier rows")
        sblk[b, s0 // P:(s0 + S - 1) // P + 1] = -1
    cpr = cmp_kv.shape[0] // B
    cblk = _perm(cmp_kv.shape[0], g, case.permuted).reshape(B, cpr)
    C = coff(R) * cfg.head_dim
    for b in range(B):  # history: positions [start - start % R - (W - R), start)
        s0 = int(start[b])
        for p in range(max(0, s0 - s0 % R - (W - R)), s0):
            row = int(sblk[b, p // P]) * P + p % P
            state.view(-1, 2 * C)[row, :C] = torch.randn(C, generator=g) * 0.5
            state.view(-1, 2 * C)[row, C:] = torch.randn(C, generator=g)
            state_pos.view(-1)[row] = p
    pos = start[:, None] + torch.arange(S)[None, :]
    c = pos // R
    slot = cblk[torch.arange(B)[:, None].expand(B, S), c // case.cmp_block] * case.cmp_block + c % case.cmp_block
    slot = torch.where((pos + 1) % R == 0, slot, torch.full_like(slot, -1))
    inp.update(state=state, state_pos=state_pos, state_block_table=sblk, cmp_kv=cmp_kv, cmp_slot_mapping=slot)
    return inp


CALL_ARGS = ("x", "wkv", "wgate", "ape", "norm_weight", "start_pos", "state", "state_pos", "state_block_table",
             "cmp_kv", "cmp_slot_mapping")


def clone_inputs(inp: dict[str, Any]) -> dict[str, Any]:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in inp.items()}


def call_args(inp: dict[str, Any]) -> list[Any]:
    """The positional arguments of a decode call, in order."""
    return [inp[k] for k in CALL_ARGS]


def prefill_inputs(inp: dict[str, Any]) -> dict[str, Any]:
    """A one-request decode-shaped input (`make_inputs` of a prefill case) as the prefill
    call takes it: x [T, D], start_pos int, state_block_table [max_pages], cmp_slot_mapping [T]."""
    out = {k: inp[k] for k in CALL_ARGS}
    out.update(x=inp["x"][0], start_pos=int(inp["start_pos"][0]), state_block_table=inp["state_block_table"][0],
               cmp_slot_mapping=inp["cmp_slot_mapping"][0])
    return out


def plan_of(case: Case, inp: dict[str, Any]):
    """The step's plan for a case's inputs (`make_inputs`)."""
    return make_plan(case.config, case.ratio, inp["start_pos"], case.seq, inp["state_pos"], inp["state_block_table"],
                     inp["cmp_slot_mapping"], inp["cmp_kv"])


def checked_meta(case: Case) -> tuple[dict[str, Any], Any, Any]:
    """A case's inputs (`make_inputs`), its kernel metadata (`device.kernel_meta`) and that
    metadata tag-checked after this call's tags are written (`KernelMeta.tag_checked`: the
    slots, `state_first` and `win_base` the pool kernel receives)."""
    inp = make_inputs(case)
    meta = kernel_meta_for(case.config, case.ratio, inp["start_pos"], case.seq, inp["state"],
                           inp["state_block_table"], inp["cmp_slot_mapping"], inp["cmp_kv"])
    write_tags(inp["state_pos"], meta)
    return inp, meta, meta.tag_checked(inp["state_pos"])


def first_state_slots(case: Case, inp: dict[str, Any]) -> tuple[int, torch.Tensor]:
    """The first window of a case that reads positions from the state cache: (its request,
    the positions it reads from the state, in slot order)."""
    plan = plan_of(case, inp)
    from_state = plan.slot_row >= 0
    if not bool(from_state.any()):
        raise ValueError(f"{case.name}: no window reads the state cache")
    n = int(torch.nonzero(from_state.any(1))[0])
    return int(plan.closing_tok[n]) // case.seq, plan.slot_pos[n][from_state[n]]


def straddling_case(cases: list[Case]) -> Case:
    """The first one-request case whose chunk starts inside a window and closes it (that
    window reads its first positions from the state cache)."""
    for c in cases:
        s, R = c.starts[0], c.ratio
        if c.batch == 1 and s % R and s - s % R + R <= s + c.seq:
            return c
    raise ValueError("no case starts inside a window and closes it")
