"""Test support of the lightning indexer (not part of the runtime API): seeded index-key
caches, weights and the stage-by-stage golden check shared by the decode and the prefill
indexer packages' `cases.py` (kernels on the simulator vs the references).

The check runs the three kernels one after another on the same inputs the public call
would give them and compares each stage with its reference on the *kernel's* inputs, so a
mismatch points at one kernel, plus the picks against the whole golden pipeline:

- q, w: the query kernel vs `index_queries` (flash-attention's rule against fp64);
- scores: the score kernel vs `index_scores_reference` from the kernel's q, w (fp32
  reference and fp64 exact on the same bf16 inputs: the bound is the fp32 summation error),
  the −inf pattern (which columns are candidates) exactly;
- picks: the select kernel vs `select_topk_reference` of the kernel's scores, tie-aware
  (`compare_topk`, tie tolerance 0), and vs the picks of the golden pipeline with the score
  bound of the whole pipeline as tie tolerance ("picks_e2e")."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_core.compare import Report, compare, compare_exact, compare_topk
from dsv4_core.golden import GoldenOutcome

from ..indexer import host
from ..indexer.reference import index_queries, index_scores_reference, select_topk_reference, visible_entries


@dataclasses.dataclass(frozen=True)
class CacheSpec:
    block_size: int = 16
    spare_pages: int = 3  # pages no request uses (filled with NaN: must never reach an output)
    extra_table_cols: int = 1  # table columns past the needed ones (−1)


def make_weights(cfg, gen: torch.Generator) -> dict:
    H, D = cfg.index_num_heads, cfg.index_head_dim

    def rn(*shape, std=1.0):
        return (torch.randn(*shape, generator=gen) * std).to(torch.bfloat16)

    return {"wq_b": rn(H * D, cfg.q_lora_rank, std=cfg.q_lora_rank ** -0.5),
            "weights_proj": rn(H, cfg.hidden_size, std=cfg.hidden_size ** -0.5)}


def make_tokens(cfg, n: int, gen: torch.Generator) -> dict:
    return {"x": torch.randn(n, cfg.hidden_size, generator=gen).to(torch.bfloat16),
            "qr": torch.randn(n, cfg.q_lora_rank, generator=gen).to(torch.bfloat16)}


def make_cache(cfg, needed: list[int], spec: CacheSpec, gen: torch.Generator, *, materialize: bool = True,
               nan_unused: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A paged index-key cache holding `needed[b]` entries for request b on shuffled pages
    (keys ~ N(0, 1) bf16, as rotated RMS-normed keys are), NaN in every row past them and in
    the spare pages, and the block table [B, M] (−1 past each request's pages).
    materialize=False: an uninitialised cache of the same shape (cost-model runs)."""
    bs = spec.block_size
    pages = [-(-n // bs) for n in needed]
    M = max(pages + [1]) + spec.extra_table_cols
    P = sum(pages) + spec.spare_pages
    perm = torch.randperm(P, generator=gen)
    table = torch.full((len(needed), M), -1, dtype=torch.int32)
    k = 0
    for b, n in enumerate(pages):
        table[b, :n] = perm[k:k + n].to(torch.int32)
        k += n
    if not materialize:
        return torch.empty(P, bs, cfg.index_head_dim, dtype=torch.bfloat16), table
    cache = torch.full((P, bs, cfg.index_head_dim), float("nan") if nan_unused else 0.0, dtype=torch.bfloat16)
    for b, n in enumerate(needed):
        for c in range(0, n, bs):
            m = min(bs, n - c)
            cache[table[b, c // bs], :m] = torch.randn(m, cfg.index_head_dim, generator=gen).to(torch.bfloat16)
    return cache, table


def finite_compare(name: str, out: torch.Tensor, exact: torch.Tensor, ref: torch.Tensor) -> list[Report]:
    """Scores: the candidate pattern exactly, then the candidates' values (flash rule)."""
    keep = torch.isfinite(exact)
    pattern = compare_exact(torch.isfinite(out) | torch.isnan(out), keep, name=f"{name}_pattern")
    if not keep.any():
        return [pattern]
    return [pattern, compare(out[keep], exact[keep], ref[keep], name=name)]


def check_stages(cfg, inp: dict, run_stage, perturb: str | None = None) -> tuple[list[Report], torch.Tensor]:
    """Kernel stages vs references. `inp` holds x, qr, wq_b, weights_proj, positions [B, S]
    (or a prefill chunk as [1, T]), cos, sin, cache, table, group; `run_stage(name, *args)`
    runs one kernel stage and returns its outputs. Returns (reports, kernel picks)."""
    cfg = inp["config"]
    T = inp["x"].shape[0]
    H, D = cfg.index_num_heads, cfg.index_head_dim
    wq_b = inp["wq_b"]
    if perturb == "wq_b":
        wq_b = wq_b.clone()
        wq_b[0, 0] += 0.5
    q_k, w_k = run_stage("queries", cfg, inp["x"], inp["qr"], wq_b, inp["weights_proj"], inp["cos"], inp["sin"])
    q_k, w_k = q_k[:T * H].reshape(T, H, D), w_k[:T]
    q32, w32 = index_queries(cfg, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["cos"], inp["sin"])
    q64, w64 = index_queries(cfg, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["cos"], inp["sin"],
                             dtype=torch.float64)
    reports = [compare(q_k.float(), q64, q32, name="q"), compare(w_k, w64, w32, name="w")]

    pos, cache, table = inp["positions"], inp["cache"], inp["table"]
    scores_k = run_stage("scores", cfg, q_k.reshape(T * H, D), w_k, pos, cache, table)
    if perturb == "scores":
        scores_k = scores_k.clone()
        fin = torch.isfinite(scores_k)
        scores_k[fin] *= 1.01
    s32 = index_scores_reference(q_k, w_k, pos, cache, table)
    s64 = index_scores_reference(q_k, w_k, pos, cache, table, dtype=torch.float64)
    reports += finite_compare("scores", scores_k, s64, s32)

    picks_k = run_stage("select", cfg, scores_k)
    if perturb == "picks":
        picks_k = picks_k.clone()
        row = int(torch.argmax((picks_k >= 0).sum(1)))
        picks_k[row, 0] = -1
    reports.append(compare_topk(picks_k, select_topk_reference(scores_k.to("cpu"), cfg.index_topk),
                                scores_k.double().nan_to_num(float("-inf")), name="picks"))
    # the whole golden pipeline: its picks, with the score bound of the whole pipeline as tie tolerance
    g32 = index_scores_reference(q32, w32, pos, cache, table)
    g64 = index_scores_reference(q64, w64, pos, cache, table, dtype=torch.float64)
    keep = torch.isfinite(g64)
    tie = compare(scores_k[keep], g64[keep], g32[keep], name="e2e").bound if keep.any() else 0.0
    reports.append(compare_topk(picks_k, select_topk_reference(g32, cfg.index_topk), g64, tie_tol=tie,
                                name="picks_e2e"))
    return reports, picks_k


def combined_run(runs: list):
    """One KernelRun summing the modelled time of a call's kernels (None before any run)."""
    if not runs:
        return None
    return dataclasses.replace(runs[-1], name="+".join(r.name for r in runs),
                               aicore_us=sum(r.aicore_us or 0.0 for r in runs),
                               total_us=sum(r.total_us or 0.0 for r in runs), cores=max(r.cores for r in runs),
                               tasks=sum(r.tasks for r in runs), values=all(r.values for r in runs))


def traffic(cfg, positions: torch.Tensor) -> tuple[float, float]:
    """(bytes, FLOPs) of the ceiling for tokens at positions [B, S] (a prefill chunk: [1, T]):
    each request's visible keys read once (its last token's count), the query-side weights and
    activations once, the picks written; FLOPs of q·k over every (token, head, visible entry)
    plus the query projections and the Hadamard."""
    H, D = cfg.index_num_heads, cfg.index_head_dim
    T = positions.numel()
    keys = int(visible_entries(positions[:, -1]).sum()) * D * 2
    weights = (H * D * cfg.q_lora_rank + H * cfg.hidden_size + D * D) * 2
    acts = T * (cfg.q_lora_rank + cfg.hidden_size) * 2 + T * cfg.index_topk * 4
    pairs = int(visible_entries(positions).sum())
    flops = 2.0 * pairs * H * D + 2.0 * T * (H * D * cfg.q_lora_rank + H * cfg.hidden_size + H * D * D)
    return float(keys + weights + acts), flops


def time_stages(cfg, inp: dict, run_stage):
    """Cost model only (values=False): the three kernels on a case's inputs, one KernelRun."""
    T = inp["x"].shape[0]
    host._RUNS.clear()
    q, w = run_stage("queries", cfg, inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], inp["cos"], inp["sin"],
                     values=False)
    scores = run_stage("scores", cfg, q, w, inp["positions"], inp["cache"], inp["table"], values=False)
    run_stage("select", cfg, scores[:T], values=False)
    return combined_run(host.last_runs())


def staged_golden(module: str, name: str, cfg, inp: dict, run_stage, *, perturb: str | None, note: str,
                  timed=None) -> GoldenOutcome:
    """`check_stages` as a GoldenOutcome; `timed()` (a KernelRun of the whole case, cost model
    only) replaces the run when the numbers were checked on a slice."""
    host._RUNS.clear()
    reports, _ = check_stages(cfg, inp, run_stage, perturb=perturb)
    run = combined_run(host.last_runs())
    if timed is not None:
        run = timed()
        note += " (slice checked; whole case timed by the cost model)"
    return GoldenOutcome(module, name, reports, run, note=note)
