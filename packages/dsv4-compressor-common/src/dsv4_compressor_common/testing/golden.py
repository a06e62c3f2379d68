"""The golden / bench protocol of the compressor module packages (`dsv4_core.golden`): the
golden check of one scenario (the kernels on the CPU simulator vs the golden and the fp64
evaluation), the cost-model bench at full size, and `CaseSet`, which turns a package's
list of scenarios into the `cases` module protocol `tools/golden.py` and `tools/bench.py`
read (GOLDEN_CASES, golden, BENCH_CASES, bench)."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_core import AttentionConfig
from dsv4_core.compare import compare, compare_exact
from dsv4_core.golden import BenchOutcome, GoldenOutcome

from ..kernel import gathered_slot_bytes, pool_tile
from ..pooling import coff, window_size
from ..step import combined_run, compute_kernel, compute_reference, kernel_meta_for
from .scenarios import Case, clone_inputs, make_inputs, plan_of


def golden(module: str, case: Case, *, perturb: str | None = None) -> GoldenOutcome:
    """The kernels (the step's "sim" path) vs the golden and the fp64 evaluation:
    the state rows written (kv and score halves) and the compressed entries. perturb:
    "ape" (APE rows shifted by one position in the kernel's input), "halves" (ratio 4: the
    previous window's slots read the back half and the current window's the front half),
    "rope_pos" (every entry rotated one position late) or a weight name (scaled by 1.25) —
    the check must fail. The kernels run as the public call runs them, on the caches in place
    (the state rows and entries compared are read from the caches). A case with `rotate` runs
    the key path with the Hadamard."""
    cfg, R = case.config, case.ratio
    inp = make_inputs(case)
    B, S = case.batch, case.seq
    plan = plan_of(case, inp)
    x2d = inp["x"].reshape(B * S, -1)
    w = [inp[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    ref = compute_reference(cfg, plan, x2d, *w, inp["state"], rotate=case.rotate)
    exact = compute_reference(cfg, plan, x2d, *w, inp["state"], dtype=torch.float64, rotate=case.rotate)
    kin = clone_inputs(inp)
    swap_halves, rope_shift = perturb == "halves", int(perturb == "rope_pos")
    if perturb == "ape":
        kin["ape"] = torch.roll(kin["ape"], 1, dims=0)
    elif perturb is not None and perturb not in ("halves", "rope_pos"):
        kin[perturb] = (kin[perturb].float() * 1.25).to(kin[perturb].dtype)
    # the kernel path of the public call: O(step) metadata, the kernels on the caches in place
    meta = kernel_meta_for(cfg, R, inp["start_pos"], S, kin["state"], kin["state_block_table"],
                           kin["cmp_slot_mapping"], kin["cmp_kv"], head_dim=plan.head_dim, swap_halves=swap_halves)
    compute_kernel(cfg, meta, "sim", x2d, kin["wkv"], kin["wgate"], kin["ape"], kin["norm_weight"], kin["state"],
                   kin["state_pos"], kin["cmp_kv"], rotate=case.rotate, rope_shift=rope_shift,
                   first_pos=case.starts[0] if module.startswith("prefill") else None)
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


SERVING_BATCH, SERVING_CONTEXT = 64, 65536  # the engine the bench's caches are sized for


def bench_caches(cfg: AttentionConfig, ratio: int, batch: int = SERVING_BATCH, context: int = SERVING_CONTEXT,
                 state_page: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(state [pages, page, 2C] f32, cmp_kv [blocks, 128, d] bf16) sized as a serving engine
    would for `batch` requests at `context` (uninitialised: the cost model reads no value):
    each request's state pages cover a window and a step, its compressed cache the context."""
    C, HD, W = coff(ratio) * cfg.head_dim, cfg.head_dim, window_size(ratio)
    pages = batch * (-(-(W + ratio) // state_page) + 1)
    blocks = batch * -(-(context // ratio) // 128)
    return (torch.empty(pages, state_page, 2 * C, dtype=torch.float32),
            torch.empty(blocks, 128, HD, dtype=torch.bfloat16))


def bench(module: str, name: str, cfg: AttentionConfig, ratio: int, tokens: int, windows: int,
          batch: int = 0, start: int = 0) -> BenchOutcome:
    """The public call, validate=False, every kernel on the cost model alone
    (`dsv4_core.bench.measure`): decode (`batch` requests × tokens / batch tokens, each
    request's last token closing a window near 64K) or prefill (`batch` 0: one chunk of
    `tokens` from `start`), on caches sized as a serving engine would for those requests at
    that context (`bench_caches`: state pages for the open windows only, the compressed cache
    for the whole context; uninitialised). Kernel µs, host µs (the bytes the host prepares at
    the copy rate; its CPU wall in the note); the slot gathers are charged at the copy rate
    (read + write), since the model prices `index_select` below a copy."""
    from dsv4_core import bench as timing

    from ..calls import decode_call, prefill_call

    C, D, HD = coff(ratio) * cfg.head_dim, cfg.hidden_size, cfg.head_dim
    bf = torch.bfloat16
    B = max(1, batch)
    S = tokens // B
    if batch:
        last = [(SERVING_CONTEXT // ratio - b) * ratio - 1 for b in range(B)]  # closes a window
        starts = torch.tensor([p - S + 1 for p in last])
    else:
        starts = torch.tensor([start])
    context = int(starts.max()) + S
    state, cmp_kv = bench_caches(cfg, ratio, batch=B, context=max(context, ratio))
    page = state.shape[1]
    per_req = state.shape[0] // B
    M = -(-context // page)
    table = torch.full((B, M), -1, dtype=torch.int32)
    for b in range(B):  # the open windows' pages (and the overlap), nothing older
        hi = (int(starts[b]) + S - 1) // page
        lo = max(0, hi - per_req + 1)
        table[b, lo:hi + 1] = torch.arange(b * per_req, b * per_req + hi - lo + 1, dtype=torch.int32)
    tags = torch.full(state.shape[:2], -1, dtype=torch.int32)
    slots = torch.arange(B * S, dtype=torch.int32) % (cmp_kv.shape[0] * cmp_kv.shape[1])
    w = dict(wkv=torch.zeros(C, D, dtype=bf), wgate=torch.zeros(C, D, dtype=bf), ape=torch.zeros(ratio, C),
             norm_weight=torch.ones(HD))
    if batch:
        x = torch.zeros(B, S, D, dtype=bf)
        args = (x, *w.values(), starts, state, tags, table, cmp_kv, slots.reshape(B, S))

        def call():
            return decode_call(ratio, *args, config=cfg, backend="sim", validate=False)
    else:
        x = torch.zeros(S, D, dtype=bf)
        args = (x, *w.values(), start, state, tags, table[0], cmp_kv, slots)

        def call():
            return prefill_call(ratio, *args, config=cfg, backend="sim", validate=False)
    m = timing.measure(call, given=[a for a in args if isinstance(a, torch.Tensor)])
    nbytes, flops = traffic(cfg, ratio, tokens, windows)
    gathered = gathered_slot_bytes(ratio, HD, windows, S, None if batch else start,  # what the pool kernel gathers
                                   tile=pool_tile(cfg, ratio, windows))
    return timing.outcome(module, name, m, nbytes=nbytes, flops=flops, gather_bytes=2 * gathered,
                          note=f"T={tokens} windows={windows} ({'B=' + str(B) if batch else 'from ' + str(start)}); "
                               f"kernels {' + '.join(m.launches)}; state {state.numel() * 4 / 1e6:.0f} MB, "
                               f"cmp_kv {cmp_kv.numel() * 2 / 1e6:.0f} MB")


@dataclasses.dataclass(frozen=True)
class CaseSet:
    """One module package's scenarios and the protocol over them: `small` (TINY, run by the
    tests and `nox -s golden`) and `flash` (full size, `golden_full`) golden cases, and the
    bench shapes {name: (config, tokens, closing windows[, requests])}."""

    module: str
    ratio: int
    small: tuple[Case, ...]
    flash: tuple[Case, ...]
    shapes: tuple[tuple, ...]

    @classmethod
    def of(cls, module: str, ratio: int, small: list[Case], flash: list[Case],
           bench: dict[str, tuple]) -> CaseSet:
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
        _, cfg, tokens, windows, *batch = next(s for s in self.shapes if s[0] == name)
        return bench(self.module, name, cfg, self.ratio, tokens, windows, *batch)
