"""Seeded scenarios shared by the tests, `nox -s golden` and `nox -s bench`.

Scenarios (each at the TINY preset for the small tier; FLASH / PRO for the flash tier and
bench): decode B=64 S=2, decode B=1 S=1, prefill T=1024 from position 0 and from a start
near 1M, a tensor-parallel shard, and PRO sizes."""

from __future__ import annotations

import dataclasses

import torch

from dsv4_core import FLASH, PRO, SMALL, TINY, AttentionConfig, shard_heads
from dsv4_core.compare import compare
from dsv4_core.golden import BenchOutcome, GoldenOutcome
from dsv4_rope_tables import profile_for_ratio, rope_rows

from .reference import qkv_exact, qkv_reference

MODULE = "qkv_proj_rope"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    config: AttentionConfig
    batch: int  # requests (decode) or 1 (prefill)
    seq: int  # tokens per request
    start: int | None = None  # first position (prefill); None: random per request
    compress_ratio: int = 4
    seed: int = 0

    @property
    def tokens(self) -> int:
        return self.batch * self.seq


NEAR_1M = FLASH.max_position_embeddings - 1024


def _scenarios(prefix: str, cfg: AttentionConfig, pro: AttentionConfig, tp: AttentionConfig) -> list[Case]:
    return [
        Case(f"{prefix}-decode-B64S2", cfg, 64, 2),
        Case(f"{prefix}-decode-B1S1-swa", cfg, 1, 1, compress_ratio=0),
        Case(f"{prefix}-prefill-T1024-start0", cfg, 1, 1024, start=0),
        Case(f"{prefix}-prefill-T1024-near1M", cfg, 1, 1024, start=NEAR_1M, compress_ratio=128),
        Case(f"{prefix}-tp-decode-B64S2", tp, 64, 2),
        Case(f"{prefix}-pro-decode-B16S2", pro, 16, 2),
    ]


SMALL_CASES = _scenarios("tiny", TINY, SMALL, shard_heads(TINY, 2))
# Both FLASH cases fit pypto's interpreter whole: decode ~70 s / 3 GB, prefill T=1024
# ~3 min / 10.5 GB in the interpreter.
FLASH_CASES = [
    Case("flash-decode-B64S2", FLASH, 64, 2),
    Case("flash-prefill-T1024", FLASH, 1, 1024, start=0),
]
BENCH = [
    Case("flash-decode-B64S2", FLASH, 64, 2),
    Case("flash-prefill-T1024", FLASH, 1, 1024, start=0),
    Case("flash-tp8-decode-B64S2", shard_heads(FLASH, 8), 64, 2),
    Case("pro-decode-B64S2", PRO, 64, 2),
    Case("pro-prefill-T1024", PRO, 1, 1024, start=0),
]
CASES = {c.name: c for c in SMALL_CASES + FLASH_CASES}
BENCH_CASES_BY_NAME = {c.name: c for c in BENCH}
GOLDEN_CASES = [(c.name, "small") for c in SMALL_CASES] + [(c.name, "flash") for c in FLASH_CASES]
BENCH_CASES = [c.name for c in BENCH]


def positions_for(case: Case, g: torch.Generator) -> torch.Tensor:
    cfg = case.config
    if case.start is not None:
        starts = torch.full((case.batch,), case.start, dtype=torch.int64)
    else:
        starts = torch.randint(0, cfg.max_position_embeddings - case.seq, (case.batch,), generator=g)
    return (starts[:, None] + torch.arange(case.seq)[None, :]).reshape(-1)


def make_inputs(case: Case) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    cfg = case.config
    D, QL, H, HD = cfg.hidden_size, cfg.q_lora_rank, cfg.num_heads, cfg.head_dim

    def rn(*shape):
        return torch.randn(*shape, generator=g)

    return {
        "x": rn(case.tokens, D).bfloat16(),
        "wq_a": (rn(QL, D) * D ** -0.5).bfloat16(),
        "q_norm_weight": (1 + 0.1 * rn(QL)).bfloat16(),
        "wq_b": (rn(H * HD, QL) * QL ** -0.5).bfloat16(),
        "wkv": (rn(HD, D) * D ** -0.5).bfloat16(),
        "kv_norm_weight": (1 + 0.1 * rn(HD)).bfloat16(),
        "positions": positions_for(case, g),
    }


WEIGHT_ARGS = ("wq_a", "q_norm_weight", "wq_b", "wkv", "kv_norm_weight")


def golden(name: str, *, perturb: str | None = None, norm_fp32: bool = False) -> GoldenOutcome:
    """Kernel on the simulator vs the golden. `perturb="wq_b"` (or another weight name)
    scales every eighth output row of that weight by 1.25 in the kernel's input only (not a
    whole head: the per-head RMSNorm would cancel a uniform scale): the check must fail.
    `norm_fp32=True` passes the norm weights in fp32, off the bf16 grid (as a checkpoint
    stores them)."""
    from . import qkv_proj_rope

    case = CASES[name]
    cfg = case.config
    inp = make_inputs(case)
    if norm_fp32:
        for k in ("q_norm_weight", "kv_norm_weight"):
            inp[k] = inp[k].float() * (1 + 2.0 ** -12)
    cos, sin = rope_rows(profile_for_ratio(cfg, case.compress_ratio), inp["positions"])
    weights = [inp[k] for k in WEIGHT_ARGS]
    ref = qkv_reference(inp["x"], *weights, cos, sin, num_heads=cfg.num_heads, eps=cfg.eps)
    exact = qkv_exact(inp["x"], *weights, cos, sin, num_heads=cfg.num_heads, eps=cfg.eps)
    kin = dict(inp)
    if perturb is not None:
        w = kin[perturb].clone()
        w[::8] = (w[::8].float() * 1.25).bfloat16()
        kin[perturb] = w
    out = qkv_proj_rope(kin["x"], *[kin[k] for k in WEIGHT_ARGS], kin["positions"], config=cfg,
                        compress_ratio=case.compress_ratio, backend="sim")
    from dsv4_core import sim

    reports = [compare(getattr(out, f), getattr(exact, f), getattr(ref, f), name=f) for f in ("q", "kv", "qr")]
    return GoldenOutcome(MODULE, name, reports, sim.last_run(), note=f"T={case.tokens} ratio={case.compress_ratio}")


def run_public(name: str, backend: str):
    """The public function on a case's inputs with the given backend (tests compare backends)."""
    from . import qkv_proj_rope

    case = CASES[name]
    inp = make_inputs(case)
    return qkv_proj_rope(inp["x"], *[inp[k] for k in WEIGHT_ARGS], inp["positions"], config=case.config,
                         compress_ratio=case.compress_ratio, backend=backend)


def traffic(cfg: AttentionConfig, tokens: int) -> tuple[float, float]:
    """(bytes moved, FLOPs) of one call: weights once, activations in and out, rope rows."""
    D, QL, H, HD, R = cfg.hidden_size, cfg.q_lora_rank, cfg.num_heads, cfg.head_dim, cfg.rope_dim
    w = QL * D + H * HD * QL + HD * D
    nbytes = 2 * (w + QL + HD) + 2 * tokens * (D + H * HD + HD + QL) + 2 * 4 * tokens * R
    flops = 2 * tokens * w
    return float(nbytes), float(flops)


def bench(name: str) -> BenchOutcome:
    """Cost model only (values=False) at full size."""
    from dsv4_core import sim
    from dsv4_rope_tables.pypto_block import swap_index

    from .kernel import build_qkv_kernel

    case = BENCH_CASES_BY_NAME[name]
    cfg = case.config
    T = case.tokens
    z = torch.zeros
    bf = torch.bfloat16
    args = [z(T, cfg.hidden_size, dtype=bf), z(cfg.q_lora_rank, cfg.hidden_size, dtype=bf),
            z(1, cfg.q_lora_rank, dtype=bf), z(cfg.num_heads * cfg.head_dim, cfg.q_lora_rank, dtype=bf),
            z(cfg.head_dim, cfg.hidden_size, dtype=bf), z(1, cfg.head_dim, dtype=bf),
            z(T, cfg.rope_dim), z(T, cfg.rope_dim), swap_index(cfg.rope_dim),
            z(T, cfg.num_heads, cfg.head_dim, dtype=bf), z(T, cfg.head_dim, dtype=bf),
            z(T, cfg.q_lora_rank, dtype=bf)]
    run = sim.run(build_qkv_kernel(cfg, tokens=T), args, name=name, values=False)
    nbytes, flops = traffic(cfg, T)
    return BenchOutcome(MODULE, name, run.aicore_us, nbytes, flops, cores=run.cores, note=f"T={T}, H={cfg.num_heads}")
