"""The golden check of one scenario — the package's public function on the simulator against
its golden, plus the two perturbations that must make it fail — the cost-model timing run,
and `DecodeKit`, everything a decode package's `cases.py` needs but its scenarios and its
public function."""

from __future__ import annotations

import importlib
from typing import Callable

import torch

from dsv4_core import sim
from dsv4_core.compare import compare
from dsv4_core.golden import BenchOutcome, GoldenOutcome
from dsv4_rope_tables import profile_for_ratio, rope_rows

from ..api import Golden, decode_golden
from ..indexing import window_span
from ..kernel import paged_window, run_sparse_attn, share_group
from ..perf import distinct_traffic, gathered_bytes
from ..reference import semantic_attention_exact
from .inputs import DecodeCase, decode_inputs

PERTURBATIONS = ("sink", "rope")


def run_resolved(cfg, inp: dict, kernel_inputs: Callable, *, sink_shift: float = 0.0, inverse_rope: bool = True,
                 values: bool = True, name: str = "sparse_attn") -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel on the simulator from a scenario's kernel inputs (`Golden.kernel`: what
    the packages' public functions hand it after validation): returns (out, logical index
    rows)."""
    ki = kernel_inputs(cfg, inp)
    out = run_sparse_attn(cfg, "sim", inp["q"], ki, inp["attn_sink"] + sink_shift, inp["wo_a"], inp["wo_b"],
                          inverse_rope=inverse_rope, values=values, name=name)
    return out, ki.indices


def check_golden(module: str, name: str, cfg, inp: dict, *, golden: Golden, call: Callable,
                 perturb: str | None = None, note: str = "", timing: Callable | None = None) -> GoldenOutcome:
    """One scenario: the package's public function on the `sim` backend (`call(inp, cfg,
    "sim")`) against `golden.reference` / `golden.exact` with the 2× comparator.
    perturb="sink" adds 1 to the kernel's sink, perturb="rope" builds the kernel without the
    inverse RoPE: the check must then fail. `timing()` (a KernelRun), when given, replaces the
    value run's cost-model figure (a value run on a slice, the full case timed alone)."""
    if perturb is not None and perturb not in PERTURBATIONS:
        raise ValueError(f"perturb must be None, 'sink' or 'rope', got {perturb!r}")
    ref = golden.reference(cfg, inp)
    ex = golden.exact(cfg, inp)
    if perturb is None:
        out = call(inp, cfg, "sim")
    else:
        out, _ = run_resolved(cfg, inp, golden.kernel, sink_shift=1.0 if perturb == "sink" else 0.0,
                              inverse_rope=perturb != "rope")
    reports = [compare(out, ex, ref, name="attn_out")]
    run = sim.last_run()
    if timing is not None and perturb is None:
        run = timing()
    return GoldenOutcome(module, name, reports, run, note=note)


def time_case(cfg, inp: dict, kernel_inputs: Callable, name: str):
    """Cost model only (values=False) on `inp` (zero tensors of the right shapes): returns
    (KernelRun, logical index rows)."""
    _, rows = run_resolved(cfg, inp, kernel_inputs, values=False, name=name)
    return sim.last_run(), rows


def check_decode_case(module: str, case: DecodeCase, make_inputs: Callable, *, golden: Golden, call: Callable,
                      perturb: str | None = None) -> GoldenOutcome:
    """`check_golden` for a decode scenario: numbers on `case.value_batch` requests (all when
    None), the full batch timed by the cost model alone when only a slice was checked.
    `make_inputs(case, batch=None, materialize=True)` is the package's input builder."""
    cfg = case.config
    inp = make_inputs(case, case.value_batch)
    T = inp["q"].shape[0]
    _, rows, _, _ = golden.resolved(cfg, inp)
    note = f"T={T} K={rows.shape[1]}"
    timing = None
    if case.value_batch is not None:
        note = f"values on B={case.value_batch} of {case.batch} (T={T}); µs for the full B={case.batch}"

        def timing():
            return time_case(cfg, make_inputs(case, materialize=False), golden.kernel, case.name)[0]
    return check_golden(module, case.name, cfg, inp, golden=golden, call=call, perturb=perturb, note=note,
                        timing=timing)


def semantic_exact(cfg, inp: dict, *, compress_ratio: int) -> torch.Tensor:
    """`semantic_attention_exact` (the independent fp64 oracle) on a scenario's inputs."""
    p = inp["positions"]
    cos, sin = rope_rows(profile_for_ratio(cfg, compress_ratio), p.reshape(-1))
    return semantic_attention_exact(cfg, p, inp["q"], inp["kv"], inp["kv_cache"], inp["block_table"],
                                    inp["attn_sink"], cos, sin, inp["wo_a"], inp["wo_b"],
                                    compress_ratio=compress_ratio, cmp_kv=inp.get("cmp_kv"),
                                    cmp_block_table=inp.get("cmp_block_table"), topk_idxs=inp.get("topk_idxs"))


class DecodeKit:
    """The `cases.py` protocol (dsv4_core.golden) of a decode package from its scenarios:
    `home` (the name of the cases module that binds the kit as `KIT`), `module`, the layer's
    `compress_ratio`, `call(inputs, cfg, backend)` (the package's public function on scenario
    inputs), the small- and flash-tier golden cases and the bench cases (`DecodeCase`s).
    `reference` / `exact` are the package's torch golden and its fp64 evaluation of a
    scenario's inputs (`dsv4_sparse_attn_common.decode_golden`).

        KIT = DecodeKit(__name__, MODULE, COMPRESS_RATIO, call, small=..., flash=..., bench=...)
        golden, bench = KIT.golden, KIT.bench

    A kit pickles as a reference to its home's `KIT`, so `dsv4_core.sim.isolated(golden,
    name)` sends the child a name, not the scenarios."""

    def __init__(self, home: str, module: str, compress_ratio: int, call: Callable, *, small: list, flash: list,
                 bench: list) -> None:
        self.home = home
        self.module, self.compress_ratio, self.call = module, compress_ratio, call
        self.torch_golden = decode_golden(compress_ratio)
        self.reference, self.exact = self.torch_golden.reference, self.torch_golden.exact
        self.cases = {c.name: c for c in list(small) + list(flash)}
        self.bench_by_name = {c.name: c for c in bench}
        self.golden_cases = [(c.name, "small") for c in small] + [(c.name, "flash") for c in flash]
        self.bench_cases = [c.name for c in bench]

    def __reduce__(self):
        return _kit_of, (self.home,)

    def make_inputs(self, case: DecodeCase, batch: int | None = None, materialize: bool = True) -> dict:
        return decode_inputs(case, self.compress_ratio, batch, materialize)

    def golden(self, name: str, *, perturb: str | None = None) -> GoldenOutcome:
        """Kernel on the simulator vs the golden (`check_decode_case`); perturb "sink" /
        "rope" must make the check fail."""
        return check_decode_case(self.module, self.cases[name], self.make_inputs, golden=self.torch_golden,
                                 call=self.call, perturb=perturb)

    def bench(self, name: str) -> BenchOutcome:
        """The package's public call, validate=False, at serving-size caches (every request's
        ring page and compressed pages), every kernel on the cost model alone
        (`dsv4_core.bench.measure`): kernel µs, the gathered rows charged at the copy rate
        (read + write: the model prices `index_select` below a copy), host µs, against the
        ceiling of each distinct row a request reads once (`perf.distinct_traffic`)."""
        case = self.bench_by_name[name]
        cfg = case.config
        inp = decode_inputs(case, self.compress_ratio, materialize=False, serving=True)
        cmp_mb = inp["cmp_kv"].numel() * 2 / 1e6 if "cmp_kv" in inp else 0.0
        return serving_bench(self.module, name, cfg, inp, self.call, compress_ratio=self.compress_ratio,
                             positions=inp["positions"], head=f"T={case.batch * case.seq}, H={cfg.num_heads}",
                             tail=f"; compressed cache {cmp_mb:.0f} MB", paged=paged_window(self.compress_ratio))


def serving_bench(module: str, name: str, cfg, inp: dict, call: Callable, *, compress_ratio: int,
                  positions: torch.Tensor, head: str, tail: str = "",
                  cmp_columns: int | None = None, paged: bool = False) -> BenchOutcome:
    """The bench row of one call `call(inp, cfg, "sim", validate=False)` of a sparse-attention
    package at serving-size caches `inp`: measured whole (`dsv4_core.bench.measure`), the rows
    the kernel gathers charged at the copy rate (read + write), the ceiling of each distinct
    row a request reads once (`perf.distinct_traffic`) for tokens at `positions` [B, S]. The
    row width with validate=False: the window, plus the top-k (CSA) or, for HCA, the call's
    compressed columns `cmp_columns` (default the compressed block table's capacity, the
    width of a decode call). paged: the call's window rows are paged (`paged_window_rows`: a
    decode call on a layer of `paged_window`), read in place and not charged."""
    from dsv4_core import bench as timing

    m = timing.measure(lambda: call(inp, cfg, "sim", validate=False),
                       given=[v for v in inp.values() if isinstance(v, torch.Tensor)])
    g = share_group(compress_ratio, *positions.shape, paged=paged)
    k = window_span(cfg.window, g, compress_ratio, positions.shape[1] if paged else 0)
    if compress_ratio == 4:
        k += inp["topk_idxs"].shape[1]
    elif compress_ratio:
        k += inp["cmp_block_table"].shape[-1] * inp["cmp_kv"].shape[1] if cmp_columns is None else cmp_columns
    gb = gathered_bytes(cfg, positions.numel(), k, compressed=compress_ratio > 0, group=g,
                        step_tokens=positions.shape[1], per_token_compressed=compress_ratio == 4, paged=paged)
    nbytes, flops = distinct_traffic(cfg, positions, compress_ratio=compress_ratio, topk_idxs=inp.get("topk_idxs"),
                                     rows_per_token=k)
    if g == 1:
        rows = f"rows/token={k}"
    elif compress_ratio == 4:  # a run shares its window, each token keeps its top-k
        ws = window_span(cfg.window, g, compress_ratio, positions.shape[1] if paged else 0)
        rows = f"rows/run of {g} tokens={ws} + {k - ws} per token"
    else:
        rows = f"rows/run of {g} tokens={k}"
    return timing.outcome(module, name, m, nbytes=nbytes, flops=flops, gather_bytes=2 * gb,
                          note=f"{head}, {rows}, gathered {gb / 1e6:.0f} MB{tail}")


def _kit_of(home: str) -> DecodeKit:
    return importlib.import_module(home).KIT
