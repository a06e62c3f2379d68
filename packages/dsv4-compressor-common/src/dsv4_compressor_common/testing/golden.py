"""The golden / bench protocol of the compressor module packages (`dsv4_core.golden`): the
golden check of one scenario (the kernels on the CPU simulator vs the golden and the fp64
evaluation), the cost-model bench at full size, and `CaseSet`, which turns a package's
list of scenarios into the `cases` module protocol `tools/golden.py` and `tools/bench.py`
read (GOLDEN_CASES, golden, BENCH_CASES, bench)."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_core import AttentionConfig
from dsv4_core.backends import launch
from dsv4_core.compare import compare, compare_exact
from dsv4_core.golden import BenchOutcome, GoldenOutcome
from dsv4_rope_tables.pypto_block import swap_index

from ..kernel import build_pool_kernel, build_project_kernel
from ..paging import write_caches
from ..pooling import coff, window_size
from ..step import combined_run, compute_kernel, compute_reference
from .scenarios import Case, clone_inputs, make_inputs, plan_of


def golden(module: str, case: Case, *, perturb: str | None = None) -> GoldenOutcome:
    """The kernels (the step's "sim" path) vs the golden and the fp64 evaluation:
    the state rows written (kv and score halves) and the compressed entries. perturb:
    "ape" (APE rows shifted by one position in the kernel's input), "halves" (ratio 4: the
    previous window's slots read the back half and the current window's the front half),
    "rope_pos" (every entry rotated one position late) or a weight name (scaled by 1.25) —
    the check must fail. A case with `rotate` runs the key path with the Hadamard."""
    cfg, R = case.config, case.ratio
    inp = make_inputs(case)
    B, S = case.batch, case.seq
    plan = plan_of(case, inp)
    x2d = inp["x"].reshape(B * S, -1)
    w = [inp[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    ref = compute_reference(cfg, plan, x2d, *w, inp["state"], rotate=case.rotate)
    exact = compute_reference(cfg, plan, x2d, *w, inp["state"], dtype=torch.float64, rotate=case.rotate)
    kin = clone_inputs(inp)
    kplan = plan
    if perturb == "ape":
        kin["ape"] = torch.roll(kin["ape"], 1, dims=0)
    elif perturb == "halves":  # previous window read from the back half, current from the front
        kplan = dataclasses.replace(plan, slot_half=1 - plan.slot_half)
    elif perturb == "rope_pos":
        kplan = dataclasses.replace(plan, closing_pos=plan.closing_pos + 1)
    elif perturb is not None:
        kin[perturb] = (kin[perturb].float() * 1.25).to(kin[perturb].dtype)
    vals = compute_kernel(cfg, kplan, "sim", x2d, kin["wkv"], kin["wgate"], kin["ape"], kin["norm_weight"],
                          kin["state"], rotate=case.rotate)
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
    reports.append(compare_exact(torch.tensor([int(tags_ok)]), torch.tensor([1]), name="state_pos"))
    if plan.num_windows:
        c = plan.cmp_rows >= 0
        got = kin["cmp_kv"].view(-1, cfg.head_dim)[plan.cmp_rows[c]].float()
        reports.append(compare(got, exact.entries[c], ref.entries[c], name="cmp_kv"))
    note = f"B={B} S={S} ratio={R} windows={plan.num_windows}" + (" rotate" if case.rotate else "")
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
    C, D, HD, Rd = coff(ratio) * cfg.head_dim, cfg.hidden_size, cfg.head_dim, cfg.rope_dim
    W = window_size(ratio)
    z, bf = torch.zeros, torch.bfloat16
    proj_args = [z(tokens, D, dtype=bf), z(C, D, dtype=bf), z(C, D, dtype=bf), z(ratio, C),
                 z(tokens, dtype=torch.int32), z(tokens, C), z(tokens, C)]
    r1 = launch(build_project_kernel(cfg, ratio, tokens=tokens), proj_args, backend="sim", name=f"{name}-project",
                values=False)
    us, cores = r1.aicore_us, r1.cores
    note = f"T={tokens} windows={windows}: project {r1.aicore_us:.1f} µs"
    if windows:
        pool_args = [z(windows, W, HD), z(windows, W, HD), z(windows, W), z(1, HD), z(windows, Rd), z(windows, Rd),
                     swap_index(Rd), z(windows, HD, dtype=bf)]
        r2 = launch(build_pool_kernel(cfg, ratio, windows=windows), pool_args, backend="sim", name=f"{name}-pool",
                    values=False)
        us += r2.aicore_us
        cores = max(cores, r2.cores)
        note += f" + pool {r2.aicore_us:.1f} µs"
    nbytes, flops = traffic(cfg, ratio, tokens, windows)
    return BenchOutcome(module, name, us, nbytes, flops, cores=cores, note=note)


@dataclasses.dataclass(frozen=True)
class CaseSet:
    """One module package's scenarios and the protocol over them: `small` (TINY, run by the
    tests and `nox -s golden`) and `flash` (full size, `golden_full`) golden cases, and the
    bench shapes {name: (config, tokens, closing windows)}."""

    module: str
    ratio: int
    small: tuple[Case, ...]
    flash: tuple[Case, ...]
    shapes: tuple[tuple[str, AttentionConfig, int, int], ...]

    @classmethod
    def of(cls, module: str, ratio: int, small: list[Case], flash: list[Case],
           bench: dict[str, tuple[AttentionConfig, int, int]]) -> CaseSet:
        bad = [c.name for c in small + flash if c.ratio != ratio]
        if bad:
            raise ValueError(f"{module}: cases {bad} are not ratio-{ratio} cases")
        return cls(module, ratio, tuple(small), tuple(flash), tuple((k, *v) for k, v in bench.items()))

    def __repr__(self) -> str:
        return (f"CaseSet({self.module!r}, ratio={self.ratio}, {len(self.small)} small / {len(self.flash)} flash cases, "
                f"bench {self.bench_cases})")

    @property
    def cases(self) -> dict[str, Case]:
        return {c.name: c for c in self.small + self.flash}

    @property
    def golden_cases(self) -> list[tuple[str, str]]:
        return [(c.name, "small") for c in self.small] + [(c.name, "flash") for c in self.flash]

    @property
    def bench_cases(self) -> list[str]:
        return [s[0] for s in self.shapes]

    def protocol(self) -> tuple:
        """(CASES, GOLDEN_CASES, golden, BENCH_CASES, bench): what a `cases` module exposes."""
        return self.cases, self.golden_cases, self.golden, self.bench_cases, self.bench

    def golden(self, name: str, *, perturb: str | None = None) -> GoldenOutcome:
        return golden(self.module, self.cases[name], perturb=perturb)

    def bench(self, name: str) -> BenchOutcome:
        _, cfg, tokens, windows = next(s for s in self.shapes if s[0] == name)
        return bench(self.module, name, cfg, self.ratio, tokens, windows)
