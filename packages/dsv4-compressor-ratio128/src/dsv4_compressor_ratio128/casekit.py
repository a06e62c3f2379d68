"""Ratio-generic seeded scenarios for the compressor packages (decode and prefill, ratio 4
and 128): weights, paged caches with permuted block tables, a state history before each
request's start, slot mappings; the golden check (kernel on the simulator vs the golden
and the fp64 evaluation) and the cost-model bench. Each package's `cases.py` lists its
scenarios and calls these."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from dsv4_core import AttentionConfig
from dsv4_core.compare import compare
from dsv4_core.golden import BenchOutcome, GoldenOutcome
from dsv4_core.pooling import window_size

from .paging import write_caches
from .step import coff, combined_run, compute_kernel, compute_reference, make_caches, make_plan, run_step


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


def golden(module: str, case: Case, *, perturb: str | None = None) -> GoldenOutcome:
    """The kernels (public entry point, backend "sim") vs the golden and the fp64 evaluation:
    the state rows written (kv and score halves) and the compressed entries. perturb:
    "ape" (APE rows shifted by one position in the kernel's input), "halves" (ratio 4: the
    previous window's slots read the back half and the current window's the front half) or
    a weight name (scaled by 1.25) — the check must fail."""
    cfg, R = case.config, case.ratio
    inp = make_inputs(case)
    B, S = case.batch, case.seq
    plan = make_plan(cfg, R, inp["start_pos"], S, inp["state_pos"], inp["state_block_table"], inp["cmp_slot_mapping"],
                     inp["cmp_kv"])
    x2d = inp["x"].reshape(B * S, -1)
    w = [inp[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    ref = compute_reference(cfg, plan, x2d, *w, inp["state"])
    exact = compute_reference(cfg, plan, x2d, *w, inp["state"], dtype=torch.float64)
    kin = clone_inputs(inp)
    kplan = plan
    if perturb == "ape":
        kin["ape"] = torch.roll(kin["ape"], 1, dims=0)
    elif perturb == "halves":  # previous window read from the back half, current from the front
        kplan = dataclasses.replace(plan, slot_half=1 - plan.slot_half)
    elif perturb is not None:
        kin[perturb] = (kin[perturb].float() * 1.25).to(kin[perturb].dtype)
    vals = compute_kernel(cfg, kplan, "sim", x2d, kin["wkv"], kin["wgate"], kin["ape"], kin["norm_weight"],
                          kin["state"])
    write_caches(plan, kin["state"], kin["state_pos"], kin["cmp_kv"], vals.kv_rows, vals.score_rows,
                 vals.entries.to(torch.bfloat16))
    C = coff(R) * cfg.head_dim
    written = plan.state_rows >= 0
    rows = kin["state"].view(-1, 2 * C)[plan.state_rows[written]]
    reports = [
        compare(rows[:, :C], exact.kv_rows[written], ref.kv_rows[written], name="state_kv"),
        compare(rows[:, C:], exact.score_rows[written], ref.score_rows[written], name="state_score"),
    ]
    tags_ok = torch.equal(kin["state_pos"].view(-1)[plan.state_rows[written]].long(), plan.positions[written])
    from dsv4_core.compare import compare_exact

    reports.append(compare_exact(torch.tensor([int(tags_ok)]), torch.tensor([1]), name="state_pos"))
    if plan.num_windows:
        c = plan.cmp_rows >= 0
        got = kin["cmp_kv"].view(-1, cfg.head_dim)[plan.cmp_rows[c]].float()
        reports.append(compare(got, exact.entries[c], ref.entries[c], name="cmp_kv"))
    note = f"B={B} S={S} ratio={R} windows={plan.num_windows}"
    return GoldenOutcome(module, case.name, reports, combined_run(), note=note)


def traffic(cfg: AttentionConfig, ratio: int, tokens: int, windows: int) -> tuple[float, float]:
    """(bytes, FLOPs) of one call: weights and ape once, x in, state rows out, the windows'
    slots (kv and score halves, fp32) in, entries out."""
    C, D, HD = coff(ratio) * cfg.head_dim, cfg.hidden_size, cfg.head_dim
    W = window_size(ratio)
    nbytes = (2 * 2 * C * D + 4 * ratio * C + 2 * tokens * D + 4 * tokens * 2 * C
              + 4 * windows * W * HD * 2 + 2 * windows * HD)
    flops = 2 * tokens * D * 2 * C
    return float(nbytes), float(flops)


def bench(module: str, name: str, cfg: AttentionConfig, ratio: int, tokens: int, windows: int) -> BenchOutcome:
    """Cost model only (values=False) at full size: the projection kernel over `tokens`
    tokens and the pooling kernel over `windows` closing windows."""
    from dsv4_core import sim
    from dsv4_rope_tables.pypto_block import swap_index

    from .kernel import build_pool_kernel, build_project_kernel

    C, D, HD, Rd = coff(ratio) * cfg.head_dim, cfg.hidden_size, cfg.head_dim, cfg.rope_dim
    W = window_size(ratio)
    z, bf = torch.zeros, torch.bfloat16
    proj_args = [z(tokens, D, dtype=bf), z(C, D, dtype=bf), z(C, D, dtype=bf), z(ratio, C),
                 z(tokens, dtype=torch.int32), z(tokens, C), z(tokens, C)]
    r1 = sim.run(build_project_kernel(cfg, ratio, tokens=tokens), proj_args, name=f"{name}-project", values=False)
    us, cores = r1.aicore_us, r1.cores
    note = f"T={tokens} windows={windows}: project {r1.aicore_us:.1f} µs"
    if windows:
        pool_args = [z(windows, W, HD), z(windows, W, HD), z(windows, W), z(1, HD), z(windows, Rd), z(windows, Rd),
                     swap_index(Rd), z(windows, HD, dtype=bf)]
        r2 = sim.run(build_pool_kernel(cfg, ratio, windows=windows), pool_args, name=f"{name}-pool", values=False)
        us += r2.aicore_us
        cores = max(cores, r2.cores)
        note += f" + pool {r2.aicore_us:.1f} µs"
    nbytes, flops = traffic(cfg, ratio, tokens, windows)
    return BenchOutcome(module, name, us, nbytes, flops, cores=cores, note=note)


# ---- one request's token stream, run in chunks (equivalence tests) ----------------------------
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
    from .step import decode_call, prefill_call

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
    from dsv4_core.compare import compare_exact

    written = exact[1] >= 0
    return [
        compare_exact(got[1], single[1], name=f"{label}state_pos"),
        compare(got[0][written], exact[0][written], single[0][written], name=f"{label}state"),
        compare(got[2].float(), exact[2], single[2].float(), name=f"{label}cmp_kv"),
    ]
