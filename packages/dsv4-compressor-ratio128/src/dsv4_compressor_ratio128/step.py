"""One compressor call for B requests × S consecutive tokens, shared by the decode entry
point (`compressor_ratio128`) and the prefill package (B = 1): validate, plan the windows
(`paging.plan_step`), compute (golden in torch, or the pypto kernels), then write the caches.
Every check runs before anything is written; the caches are written only after the compute
succeeded."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch

from dsv4_core import AttentionConfig, resolve_backend
from dsv4_core.checks import check_same_device, check_tensor
from dsv4_rope_tables import profile_for_ratio, rope_rows

from .paging import Plan, gather_slots, plan_step, write_caches
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


def coff(ratio: int) -> int:
    return 2 if ratio == 4 else 1


def validate_weights(cfg: AttentionConfig, ratio: int, wkv, wgate, ape, norm_weight) -> None:
    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"config must be a dsv4_core.AttentionConfig, got {type(cfg).__name__}")
    C, D = coff(ratio) * cfg.head_dim, cfg.hidden_size
    other = 4 if ratio == 128 else 128
    hint = (f" (a ratio-{ratio} compressor has {C}-wide projections; [{coff(other) * cfg.head_dim}, ...] "
            f"weights belong to a ratio-{other} compressor)")
    for name, w in (("wkv", wkv), ("wgate", wgate)):
        check_tensor(name, w, dtype=torch.bfloat16)
        if tuple(w.shape) != (C, D):
            raise ValueError(f"{name} must have shape [{C}, {D}], got {list(w.shape)}" + hint)
    check_tensor("ape", ape, dtype=torch.float32)
    if tuple(ape.shape) != (ratio, C):
        raise ValueError(f"ape must have shape [{ratio}, {C}], got {list(ape.shape)}" +
                         (f" (wrong compress ratio: this is the ratio-{ratio} compressor)" if ape.dim() == 2 else ""))
    check_tensor("norm_weight", norm_weight, shape=(cfg.head_dim,), dtype=(torch.bfloat16, torch.float32))


def validate_caches(cfg: AttentionConfig, ratio: int, state, state_pos, cmp_kv) -> None:
    C = coff(ratio) * cfg.head_dim
    check_tensor("state", state, shape=(None, None, 2 * C), dtype=torch.float32)
    check_tensor("state_pos", state_pos, shape=tuple(state.shape[:2]), dtype=torch.int32)
    check_tensor("cmp_kv", cmp_kv, shape=(None, None, cfg.head_dim), dtype=torch.bfloat16)
    for name, t in (("state", state), ("state_pos", state_pos), ("cmp_kv", cmp_kv)):
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous (it is updated in place)")
    if state.shape[1] <= 0:
        raise ValueError(f"state must have a positive page size, got shape {list(state.shape)}")


def make_plan(cfg: AttentionConfig, ratio: int, start_pos: torch.Tensor, seq: int, state_pos, state_block_table,
              cmp_slot_mapping, cmp_kv) -> Plan:
    return plan_step(start_pos, seq, ratio=ratio, head_dim=cfg.head_dim, state_pos=state_pos,
                     state_block_table=state_block_table, cmp_slot_mapping=cmp_slot_mapping,
                     cmp_rows_total=cmp_kv.shape[0] * cmp_kv.shape[1], max_position=cfg.max_position_embeddings)


def rope_for(cfg: AttentionConfig, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = rope_rows(profile_for_ratio(cfg, plan.ratio), plan.rope_pos)
    return cos.reshape(-1, cfg.rope_dim), sin.reshape(-1, cfg.rope_dim)


def compute_reference(cfg: AttentionConfig, plan: Plan, x2d, wkv, wgate, ape, norm_weight, state, *,
                      dtype: torch.dtype = torch.float32) -> StepValues:
    """The golden (float32, bf16 rounding points; entries bf16-valued) or, with float64, the
    exact evaluation (no rounding)."""
    dev = x2d.device
    kv_rows, score_rows = project(x2d, wkv, wgate, ape, plan.positions.to(dev), dtype=dtype)
    kv_s, sc_s = gather_slots(plan, state, kv_rows, score_rows, dtype=dtype)
    cos, sin = rope_for(cfg, plan)
    entries = compress_windows(kv_s, sc_s, plan.slot_valid.to(dev), norm_weight, cos.to(dev), sin.to(dev),
                               eps=cfg.eps, dtype=dtype)
    return StepValues(kv_rows, score_rows, entries)


def compute_kernel(cfg: AttentionConfig, plan: Plan, backend: str, x2d, wkv, wgate, ape, norm_weight,
                   state) -> StepValues:
    """The pypto kernels: projections + scores, then pooling + norm + RoPE of the closing windows."""
    from dsv4_core import sim
    from dsv4_core.backends import runtime_options
    from dsv4_rope_tables.pypto_block import swap_index

    from .kernel import build_pool_kernel, build_project_kernel

    ratio = plan.ratio
    run_mode = runtime_options(backend)["run_mode"]
    T, dev = x2d.shape[0], x2d.device
    C, HD = coff(ratio) * cfg.head_dim, cfg.head_dim
    _LAST_RUNS.clear()

    def launch(kernel, args, name):
        if backend == "sim":
            _LAST_RUNS.append(sim.run(kernel, args, name=name))
        else:  # pragma: no cover - needs an Ascend NPU
            kernel(*args)

    kv_rows = torch.zeros(T, C, dtype=torch.float32, device=dev)
    score_rows = torch.zeros(T, C, dtype=torch.float32, device=dev)
    ape_idx = (plan.positions % ratio).to(dev, torch.int32)
    launch(build_project_kernel(cfg, ratio, run_mode=run_mode, tokens=T),
           [x2d.contiguous(), wkv.contiguous(), wgate.contiguous(), ape.contiguous(), ape_idx, kv_rows, score_rows],
           f"compressor_ratio{ratio}_project")
    N = plan.num_windows
    entries = torch.zeros(N, HD, dtype=torch.bfloat16, device=dev)
    if N:
        kv_s, sc_s = gather_slots(plan, state, kv_rows, score_rows)
        cos, sin = rope_for(cfg, plan)
        valid = plan.slot_valid.to(dev, torch.float32)
        launch(build_pool_kernel(cfg, ratio, run_mode=run_mode, windows=N),
               [kv_s, sc_s, valid, norm_weight.float().reshape(1, -1).to(dev), cos.to(dev), sin.to(dev),
                swap_index(cfg.rope_dim).to(dev), entries],
               f"compressor_ratio{ratio}_pool")
    return StepValues(kv_rows, score_rows, entries)


def run_step(cfg: AttentionConfig, ratio: int, backend: str, x2d, wkv, wgate, ape, norm_weight, start_pos, seq: int,
             state, state_pos, state_block_table, cmp_kv, cmp_slot_mapping, *,
             dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Plan, compute, write. Returns (entries_per_token [T, head_dim] in cmp_kv's dtype,
    zero where no window closes; closes [T] bool). Inputs are already validated for shape /
    dtype. `dtype=float64` (torch backend, float64 caches) is the exact evaluation used by
    the equivalence tests."""
    plan = make_plan(cfg, ratio, start_pos, seq, state_pos, state_block_table, cmp_slot_mapping, cmp_kv)
    if backend == "torch":
        vals = compute_reference(cfg, plan, x2d, wkv, wgate, ape, norm_weight, state, dtype=dtype)
    else:
        vals = compute_kernel(cfg, plan, backend, x2d, wkv, wgate, ape, norm_weight, state)
    entries = vals.entries.to(cmp_kv.dtype)
    write_caches(plan, state, state_pos, cmp_kv, vals.kv_rows, vals.score_rows, entries)
    T = x2d.shape[0]
    out = torch.zeros(T, cfg.head_dim, dtype=cmp_kv.dtype, device=x2d.device)
    closes = torch.zeros(T, dtype=torch.bool, device=x2d.device)
    tok = plan.closing_tok.to(x2d.device)
    out[tok] = entries
    closes[tok] = True
    return out, closes


class CompressorOut(NamedTuple):
    kv: torch.Tensor  # [B, S, head_dim] bf16: the entry each closing token produced, 0 elsewhere
    closes: torch.Tensor  # [B, S] bool: the token closes a window


def make_caches(config: AttentionConfig, *, ratio: int, state_blocks: int, state_page: int, cmp_blocks: int,
                cmp_block: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """(state, state_pos, cmp_kv) for a ratio-`ratio` compressor: state rows uninitialised
    (never read before written), position tags -1 (no position), cmp_kv zero."""
    C = coff(ratio) * config.head_dim
    state = torch.empty(state_blocks, state_page, 2 * C, dtype=torch.float32, device=device)
    state_pos = torch.full((state_blocks, state_page), -1, dtype=torch.int32, device=device)
    cmp_kv = torch.zeros(cmp_blocks, cmp_block, config.head_dim, dtype=torch.bfloat16, device=device)
    return state, state_pos, cmp_kv


def decode_call(ratio, x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos, state_block_table, cmp_kv,
            cmp_slot_mapping, *, config, backend) -> CompressorOut:
    """The decode entry point for either ratio (the public functions pin the ratio)."""
    cfg = config
    validate_weights(cfg, ratio, wkv, wgate, ape, norm_weight)
    dims: dict = {}
    check_tensor("x", x, shape=("B", "S", cfg.hidden_size), dtype=torch.bfloat16, dims=dims)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must hold at least one request and one token, got shape {list(x.shape)}")
    check_tensor("start_pos", start_pos, shape=("B",), dtype=(torch.int32, torch.int64), dims=dims)
    validate_caches(cfg, ratio, state, state_pos, cmp_kv)
    check_tensor("state_block_table", state_block_table, shape=("B", None), dtype=(torch.int32, torch.int64), dims=dims)
    check_tensor("cmp_slot_mapping", cmp_slot_mapping, shape=("B", "S"), dtype=(torch.int32, torch.int64), dims=dims)
    check_same_device(x=x, wkv=wkv, wgate=wgate, ape=ape, norm_weight=norm_weight, state=state, state_pos=state_pos,
                      cmp_kv=cmp_kv)
    be = resolve_backend(backend)
    B, S = x.shape[:2]
    out, closes = run_step(cfg, ratio, be, x.reshape(B * S, -1), wkv, wgate, ape, norm_weight, start_pos, S, state,
                           state_pos, state_block_table, cmp_kv, cmp_slot_mapping)
    return CompressorOut(out.reshape(B, S, -1), closes.reshape(B, S))


def prefill_call(ratio, x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos, state_block_table, cmp_kv,
                 cmp_slot_mapping, *, config, backend) -> CompressorOut:
    """The prefill entry point for either ratio: one request, x [T, D] from `start_pos` (any
    position; windows straddling it read the stored state), state_block_table [max_pages],
    cmp_slot_mapping [T]. Same math, paging and kernels as the decode call with B = 1."""
    cfg = config
    validate_weights(cfg, ratio, wkv, wgate, ape, norm_weight)
    dims: dict = {}
    check_tensor("x", x, shape=("T", cfg.hidden_size), dtype=torch.bfloat16, dims=dims)
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one token, got shape [0, D]")
    if isinstance(start_pos, torch.Tensor):
        if start_pos.numel() != 1 or start_pos.is_floating_point():
            raise TypeError(f"start_pos must be an int (or a one-element integer tensor), got {start_pos!r}")
        start_pos = int(start_pos.item())
    if not isinstance(start_pos, int) or isinstance(start_pos, bool):
        raise TypeError(f"start_pos must be an int, got {type(start_pos).__name__}")
    validate_caches(cfg, ratio, state, state_pos, cmp_kv)
    check_tensor("state_block_table", state_block_table, shape=(None,), dtype=(torch.int32, torch.int64))
    check_tensor("cmp_slot_mapping", cmp_slot_mapping, shape=("T",), dtype=(torch.int32, torch.int64), dims=dims)
    check_same_device(x=x, wkv=wkv, wgate=wgate, ape=ape, norm_weight=norm_weight, state=state, state_pos=state_pos,
                      cmp_kv=cmp_kv)
    be = resolve_backend(backend)
    out, closes = run_step(cfg, ratio, be, x, wkv, wgate, ape, norm_weight, torch.tensor([start_pos]), x.shape[0],
                           state, state_pos, state_block_table.reshape(1, -1), cmp_kv, cmp_slot_mapping.reshape(1, -1))
    return CompressorOut(out, closes)
