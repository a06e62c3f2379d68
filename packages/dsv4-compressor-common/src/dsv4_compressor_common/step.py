"""One compressor step for B requests × S consecutive tokens, either ratio. The torch backend:
plan the windows on the host (`paging.plan_step`), compute the golden, then write the caches.
The kernel backends: the plan's checks when `validate=True` (before anything is written),
then O(step) device metadata (`device.py`) and the two kernels, which read and write the
caches in place. Inputs are validated for shape and dtype by the caller (`calls.py`)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch

from dsv4_core import AttentionConfig
from dsv4_core.backends import launch, on_device, run_mode
from dsv4_rope_tables import profile_for_ratio, rope_rows
from dsv4_rope_tables.pypto_block import swap_index

from .device import KernelMeta, kernel_meta, masked_scatter, rope_on_device, write_tags
from .hadamard import hadamard_halves
from .kernel import build_pool_kernel, build_project_kernel, pool_tile, project_tile, rows_buffer, slot_masks
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


def compute_kernel(cfg: AttentionConfig, meta: KernelMeta, backend: str, x2d, wkv, wgate, ape, norm_weight,
                   state, state_pos, cmp_kv, *, rotate: bool = False, rope_shift: int = 0,
                   first_pos: int | None = None) -> StepValues:
    """The pypto kernels on the caches themselves: projections + scores, written into `state`
    in place (state rows of tokens that have one), and their position tags into `state_pos`;
    then, each state slot kept only where its row's tag is its position (`tag_checked`),
    pooling + norm + RoPE (+ the Hadamard with `rotate=True`) of the candidate windows, each
    slot read from the state cache or this call's rows, the entries written into `cmp_kv` in
    place. Returns this call's rows and the windows' entries [N, head_dim] (N =
    meta.windows). `rope_shift`: RoPE positions shifted (a perturbation the golden check must
    catch); `first_pos`: the call's first position when the host knows it (a prefill chunk:
    the pool kernel then skips the state cache when no window reaches before it)."""
    ratio, HD = meta.ratio, meta.head_dim
    mode = run_mode(backend)
    T, dev = x2d.shape[0], x2d.device
    C = coff(ratio) * HD
    _LAST_RUNS.clear()

    def run(kernel, args, name):
        kr = launch(kernel, args, backend=backend, name=name)
        if kr is not None:
            _LAST_RUNS.append(kr)

    N = meta.windows
    nt = pool_tile(cfg, ratio, N, rotate=rotate)
    rows = rows_buffer(ratio, T, N, nt, first_pos)  # whole blocks: the pool kernel views them as [rows / ratio, ratio, C]
    kv_rows = torch.zeros(rows, C, dtype=torch.float32, device=dev)
    score_rows = torch.zeros(rows, C, dtype=torch.float32, device=dev)
    ape_idx = (meta.positions % ratio).to(torch.int32)
    pick, dst, anyr = masked_scatter(meta.state_rows, project_tile(cfg, ratio, T))
    state_dst = torch.cat([2 * dst, 2 * dst + 1], 1)  # a tile's kv rows, then its score rows ([rows·2, C])
    run(build_project_kernel(cfg, ratio, run_mode=mode, tokens=T, head_dim=HD),
        [x2d.contiguous(), wkv.contiguous(), wgate.contiguous(), ape.contiguous(), ape_idx, pick, state_dst,
         anyr, kv_rows, score_rows, state.view(-1, C)], f"compressor_ratio{ratio}_project")
    write_tags(state_pos, meta)
    m = meta.tag_checked(state_pos).padded(nt)
    cos, sin = rope_on_device(cfg, ratio, m.rope_pos + rope_shift)
    had = [on_device(h, dev) for h in hadamard_halves(HD, cfg.rope_dim)] if rotate else []
    out = torch.zeros(m.kv_state.shape[0], HD, dtype=torch.bfloat16, device=dev)
    writes = masked_scatter(m.cmp_rows, m.kv_state.shape[0])  # one tile: the kernel writes all entries at once
    run(build_pool_kernel(cfg, ratio, N, run_mode=mode, head_dim=HD, rotate=rotate, seq=meta.seq, first_pos=first_pos),
        [state.view(-1, HD), kv_rows.view(-1, HD), score_rows.view(-1, HD), kv_rows.view(-1, ratio, C),
         score_rows.view(-1, ratio, C), m.kv_state, m.score_state, m.tok,
         *slot_masks(m.valid, m.from_state), on_device(norm_weight.float().reshape(1, -1), dev), cos, sin,
         on_device(swap_index(cfg.rope_dim), dev), *had, *writes, state.view(1, -1, 2 * C), m.win_base,
         (m.valid > 0).unsqueeze(-1).contiguous(), m.state_first, out,
         cmp_kv.view(-1, HD)],
        f"compressor_ratio{ratio}_pool" + ("_rotate" if rotate else ""))
    return StepValues(kv_rows[:T], score_rows[:T], out[:N])


def kernel_meta_for(cfg: AttentionConfig, ratio: int, start_pos: torch.Tensor, seq: int, state, state_block_table,
                    cmp_slot_mapping, cmp_kv, *, head_dim: int | None = None, swap_halves: bool = False) -> KernelMeta:
    dev = state.device
    return kernel_meta(ratio, head_dim or cfg.head_dim, on_device(start_pos, dev), seq, on_device(state_block_table, dev),
                       on_device(cmp_slot_mapping, dev),
                       state_blocks=state.shape[0], state_page=state.shape[1],
                       cmp_rows_total=cmp_kv.shape[0] * cmp_kv.shape[1], swap_halves=swap_halves)


def run_step(cfg: AttentionConfig, ratio: int, backend: str, x2d, wkv, wgate, ape, norm_weight, start_pos, seq: int,
             state, state_pos, state_block_table, cmp_kv, cmp_slot_mapping, *, head_dim: int | None = None,
             dtype: torch.dtype = torch.float32, rotate: bool = False, validate: bool = True,
             names: tuple[str, str] = ("cmp_kv", "cmp_slot_mapping"),
             first_pos: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Plan, compute, write. Returns (entries_per_token [T, head_dim] in cmp_kv's dtype,
    zero where no window closes; closes [T] bool). Inputs are already validated for shape /
    dtype. `dtype=float64` (torch backend, float64 caches) is the exact evaluation used by
    the equivalence tests.

    torch backend: the host plan (which validates, reading indices back) and the golden.
    Kernel backends: `validate=True` runs the same plan's checks first (nothing written on a
    refusal); then O(step) device metadata (`device.kernel_meta`, no read-back), the kernels
    on the caches in place, and the position tags written in place (O(step) elements); with
    `validate=False` a state slot whose tag is stale is absent (never pooled)."""
    if backend == "torch" or validate:
        plan = make_plan(cfg, ratio, start_pos, seq, state_pos, state_block_table, cmp_slot_mapping, cmp_kv,
                         head_dim=head_dim, names=names)
    if backend == "torch":
        vals = compute_reference(cfg, plan, x2d, wkv, wgate, ape, norm_weight, state, dtype=dtype, rotate=rotate)
        entries = vals.entries.to(cmp_kv.dtype)
        write_caches(plan, state, state_pos, cmp_kv, vals.kv_rows, vals.score_rows, entries)
        T = x2d.shape[0]
        out = torch.zeros(T, plan.head_dim, dtype=cmp_kv.dtype, device=x2d.device)
        closes = torch.zeros(T, dtype=torch.bool, device=x2d.device)
        tok = plan.closing_tok.to(x2d.device)
        out[tok] = entries
        closes[tok] = True
        return out, closes
    meta = kernel_meta_for(cfg, ratio, start_pos, seq, state, state_block_table, cmp_slot_mapping, cmp_kv,
                           head_dim=head_dim)
    vals = compute_kernel(cfg, meta, backend, x2d, wkv, wgate, ape, norm_weight, state, state_pos, cmp_kv,
                          rotate=rotate, first_pos=first_pos)
    return tokens_out(meta, vals.entries)


def tokens_out(meta: KernelMeta, entries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(entries per token [T, head_dim], zero where no window closes; closes [T]) from the
    windows' entries, on their device (a window that does not exist lands on a dropped row)."""
    T = meta.positions.numel()
    out = torch.zeros(T + 1, entries.shape[-1], dtype=entries.dtype, device=entries.device)
    out.index_copy_(0, on_device(meta.win_tok, entries.device), entries)
    return out[:T], on_device(meta.closes, entries.device)
