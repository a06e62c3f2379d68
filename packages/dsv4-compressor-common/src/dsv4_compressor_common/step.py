"""One compressor step for B requests × S consecutive tokens, either ratio: plan the windows
(`paging.plan_step`), compute (the golden in torch, or the pypto kernels), then write the
caches. Inputs are validated by the caller (`calls.py`); the plan checks every index before
anything is written, and the caches are written only after the compute succeeded."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch

from dsv4_core import AttentionConfig
from dsv4_core.backends import launch, run_mode
from dsv4_rope_tables import profile_for_ratio, rope_rows
from dsv4_rope_tables.pypto_block import swap_index

from .hadamard import hadamard_halves
from .kernel import build_pool_kernel, build_project_kernel, pool_tile
from .paging import Plan, gather_slots, plan_step, write_caches
from .pooling import coff
from .reference import compress_windows, project


class StepValues(NamedTuple):
    kv_rows: torch.Tensor  # [T, C] this call's kv projections (state rows)
    score_rows: torch.Tensor  # [T, C] scores + ape
    entries: torch.Tensor  # [N, head_dim] compressed entries, one per closing token


_LAST_RUNS: list = []


def last_runs() -> list:
    """The simulator runs (`dsv4_core.sim.KernelRun`) of the last `sim` call in this process:
    [project] or [project, pool]."""
    return list(_LAST_RUNS)


def combined_run():
    """One KernelRun summing the last call's kernels' modelled time (None before any call)."""
    if not _LAST_RUNS:
        return None
    us = [r.aicore_us for r in _LAST_RUNS]
    tot = [r.total_us for r in _LAST_RUNS]
    return dataclasses.replace(_LAST_RUNS[-1], name="+".join(r.name for r in _LAST_RUNS),
                               aicore_us=None if None in us else sum(us), total_us=None if None in tot else sum(tot),
                               cores=max(r.cores for r in _LAST_RUNS), tasks=sum(r.tasks for r in _LAST_RUNS),
                               values=all(r.values for r in _LAST_RUNS))


def make_plan(cfg: AttentionConfig, ratio: int, start_pos: torch.Tensor, seq: int, state_pos, state_block_table,
              cmp_slot_mapping, cmp_kv, *, head_dim: int | None = None,
              names: tuple[str, str] = ("cmp_kv", "cmp_slot_mapping")) -> Plan:
    return plan_step(start_pos, seq, ratio=ratio, head_dim=head_dim or cfg.head_dim, state_pos=state_pos,
                     state_block_table=state_block_table, cmp_slot_mapping=cmp_slot_mapping,
                     cmp_rows_total=cmp_kv.shape[0] * cmp_kv.shape[1], max_position=cfg.max_position_embeddings,
                     names=names)


def rope_for(cfg: AttentionConfig, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = rope_rows(profile_for_ratio(cfg, plan.ratio), plan.rope_pos)
    return cos.reshape(-1, cfg.rope_dim), sin.reshape(-1, cfg.rope_dim)


def compute_reference(cfg: AttentionConfig, plan: Plan, x2d, wkv, wgate, ape, norm_weight, state, *,
                      dtype: torch.dtype = torch.float32, rotate: bool = False) -> StepValues:
    """The golden (float32, bf16 rounding points; entries bf16-valued) or, with float64, the
    exact evaluation (no rounding)."""
    dev = x2d.device
    kv_rows, score_rows = project(x2d, wkv, wgate, ape, plan.positions.to(dev), dtype=dtype)
    kv_s, sc_s = gather_slots(plan, state, kv_rows, score_rows, dtype=dtype)
    cos, sin = rope_for(cfg, plan)
    entries = compress_windows(kv_s, sc_s, plan.slot_valid.to(dev), norm_weight, cos.to(dev), sin.to(dev),
                               eps=cfg.eps, dtype=dtype, rotate=rotate)
    return StepValues(kv_rows, score_rows, entries)


def compute_kernel(cfg: AttentionConfig, plan: Plan, backend: str, x2d, wkv, wgate, ape, norm_weight,
                   state, *, rotate: bool = False) -> StepValues:
    """The pypto kernels: projections + scores, then pooling + norm + RoPE (+ the Hadamard with
    `rotate=True`) of the closing windows."""
    ratio, HD = plan.ratio, plan.head_dim
    mode = run_mode(backend)
    T, dev = x2d.shape[0], x2d.device
    C = coff(ratio) * HD
    _LAST_RUNS.clear()

    def run(kernel, args, name):
        kr = launch(kernel, args, backend=backend, name=name)
        if kr is not None:
            _LAST_RUNS.append(kr)

    kv_rows = torch.zeros(T, C, dtype=torch.float32, device=dev)
    score_rows = torch.zeros(T, C, dtype=torch.float32, device=dev)
    ape_idx = (plan.positions % ratio).to(dev, torch.int32)
    run(build_project_kernel(cfg, ratio, run_mode=mode, tokens=T, head_dim=HD),
        [x2d.contiguous(), wkv.contiguous(), wgate.contiguous(), ape.contiguous(), ape_idx, kv_rows, score_rows],
        f"compressor_ratio{ratio}_project")
    N = plan.num_windows
    entries = torch.zeros(N, HD, dtype=torch.bfloat16, device=dev)
    if N:
        kv_s, sc_s = gather_slots(plan, state, kv_rows, score_rows)
        cos, sin = rope_for(cfg, plan)
        valid = plan.slot_valid.to(dev, torch.float32)
        args = [kv_s, sc_s, valid, cos.to(dev), sin.to(dev)]
        had, out = [], entries
        if rotate:  # whole tiles: pad with windows that have no valid slot
            nt = pool_tile(cfg, ratio, N, rotate=True)
            n_pad = -(-N // nt) * nt
            args = [torch.cat([a, a.new_zeros((n_pad - N,) + tuple(a.shape[1:]))]) for a in args]
            had = list(hadamard_halves(HD, cfg.rope_dim, dev))
            out = torch.zeros(n_pad, HD, dtype=torch.bfloat16, device=dev)
        kv_s, sc_s, valid, cos, sin = args
        run(build_pool_kernel(cfg, ratio, run_mode=mode, windows=N, head_dim=HD, rotate=rotate),
            [kv_s, sc_s, valid, norm_weight.float().reshape(1, -1).to(dev), cos, sin,
             swap_index(cfg.rope_dim).to(dev), *had, out],
            f"compressor_ratio{ratio}_pool" + ("_rotate" if rotate else ""))
        entries = out[:N]
    return StepValues(kv_rows, score_rows, entries)


def run_step(cfg: AttentionConfig, ratio: int, backend: str, x2d, wkv, wgate, ape, norm_weight, start_pos, seq: int,
             state, state_pos, state_block_table, cmp_kv, cmp_slot_mapping, *, head_dim: int | None = None,
             dtype: torch.dtype = torch.float32, rotate: bool = False,
             names: tuple[str, str] = ("cmp_kv", "cmp_slot_mapping")) -> tuple[torch.Tensor, torch.Tensor]:
    """Plan, compute, write. Returns (entries_per_token [T, head_dim] in cmp_kv's dtype,
    zero where no window closes; closes [T] bool). Inputs are already validated for shape /
    dtype. `dtype=float64` (torch backend, float64 caches) is the exact evaluation used by
    the equivalence tests."""
    plan = make_plan(cfg, ratio, start_pos, seq, state_pos, state_block_table, cmp_slot_mapping, cmp_kv,
                     head_dim=head_dim, names=names)
    if backend == "torch":
        vals = compute_reference(cfg, plan, x2d, wkv, wgate, ape, norm_weight, state, dtype=dtype, rotate=rotate)
    else:
        vals = compute_kernel(cfg, plan, backend, x2d, wkv, wgate, ape, norm_weight, state, rotate=rotate)
    entries = vals.entries.to(cmp_kv.dtype)
    write_caches(plan, state, state_pos, cmp_kv, vals.kv_rows, vals.score_rows, entries)
    T = x2d.shape[0]
    out = torch.zeros(T, plan.head_dim, dtype=cmp_kv.dtype, device=x2d.device)
    closes = torch.zeros(T, dtype=torch.bool, device=x2d.device)
    tok = plan.closing_tok.to(x2d.device)
    out[tok] = entries
    closes[tok] = True
    return out, closes
