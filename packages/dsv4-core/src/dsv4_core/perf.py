"""Cost-model performance figures and the modelled chip's ceilings.

A kernel's figure is its modelled time (pypto cost model, `dsv4_core.sim`) next to its
ceiling on the same model: max(bytes / copy bandwidth, FLOPs / bf16 matmul throughput),
both measured by microbenchmarks under the cost model (best over several tile
configurations) and stored in `ceilings.json` beside this file with the command that
re-measures them:

    python -m dsv4_core.perf measure        # minutes: large matmuls are slow to model

A kernel modelled *faster* than its own bytes / copy ceiling is not fast but mis-priced
(the cost model under-prices some ops, e.g. index_select with a 2-D index): `efficiency`
flags it and it must not be reported as a fraction of the ceiling.
"""

# no `from __future__ import annotations`: pypto reads kernel annotations as objects

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import sim

CEILINGS_FILE = Path(__file__).with_name("ceilings.json")
MEASURE_COMMAND = "python -m dsv4_core.perf measure"

# Figures the stored ceilings must reach (guides/PYPTO_ON_CPU.md); a lower ceiling would
# flatter every kernel.
MIN_COPY_GBPS = 1200.0
MIN_MATMUL_TFLOPS = 185.0

last_run = sim.last_run

# The modelled chip's cube (AIC) cores: the cost model's swim lanes hold 24 AIC and 48 AIV
# lanes. Each cube task streams its operands at a roughly fixed per-core rate, so a
# weight-streaming matmul takes about (waves of tasks over these cores) × (bytes per task).
CUBE_CORES = 24


def balanced_n_tile(n: int, batches: int = 1, *, m: int = 128, cores: int = CUBE_CORES) -> int:
    """The output-column tile (a multiple of 16) for a matmul with `n` output columns per
    batch, `batches` batches, `m` rows per tile, that minimises waves × (m + tile width) —
    the modelled time of a matmul whose tasks each stream one [t, K] weight tile and re-read
    the [m, K] activations (bytes per task ∝ m + t). Bounded
    by the L0 buffers: n ≤ 256 and the fp32 [m, n] accumulator ≤ 96 KB."""
    hi = max(16, min(256, (96 * 1024 // (4 * max(m, 1))) // 16 * 16, -(-n // 16) * 16))
    best = None
    for t in range(16, hi + 1, 16):
        tasks = batches * -(-n // t)
        cost = -(-tasks // cores) * (m + t)
        if best is None or cost < best[0] or (cost == best[0] and t > best[1]):
            best = (cost, t)
    return best[1]


@dataclasses.dataclass(frozen=True)
class Ceilings:
    copy_gbps: float
    matmul_tflops: float
    copy_config: str
    matmul_config: str
    measured_on: str
    command: str
    trials: tuple[dict, ...]

    def describe(self) -> str:
        return (f"copy {self.copy_gbps:.1f} GB/s ({self.copy_config}); bf16 matmul "
                f"{self.matmul_tflops:.1f} TFLOP/s ({self.matmul_config}); measured {self.measured_on} "
                f"under pypto's cost model by `{self.command}` ({len(self.trials)} trials)")


def load_ceilings(path: Path = CEILINGS_FILE) -> Ceilings:
    d = json.loads(Path(path).read_text())
    return Ceilings(copy_gbps=float(d["copy_gbps"]), matmul_tflops=float(d["matmul_tflops"]),
                    copy_config=d["copy_config"], matmul_config=d["matmul_config"],
                    measured_on=d["measured_on"], command=d["command"], trials=tuple(d["trials"]))


@dataclasses.dataclass(frozen=True)
class Efficiency:
    modelled_us: float
    bytes: float
    flops: float
    copy_us: float  # bytes / copy ceiling
    matmul_us: float  # flops / matmul ceiling
    ceiling_us: float  # max of the two
    ratio: float  # ceiling_us / modelled_us (1.0 = at the ceiling)
    bound_by: str  # "memory" or "compute"
    mispriced: bool  # modelled faster than its own bytes / copy ceiling

    def __str__(self) -> str:
        if self.mispriced:
            return (f"{self.modelled_us:.1f} µs modelled < {self.copy_us:.1f} µs bytes/copy-ceiling: "
                    "MIS-PRICED by the cost model (not counted against the ceiling)")
        return (f"{self.modelled_us:.1f} µs vs ceiling {self.ceiling_us:.1f} µs ({self.bound_by}-bound) "
                f"= {self.ratio:.0%} of ceiling")


def efficiency(nbytes: float, flops: float, modelled_us: float, ceilings: Ceilings | None = None) -> Efficiency:
    """Turn (bytes moved, FLOPs, modelled µs) into the ratio to the modelled ceiling."""
    if modelled_us is None or modelled_us <= 0:
        raise ValueError(f"modelled_us must be positive, got {modelled_us!r}")
    c = ceilings or load_ceilings()
    copy_us = nbytes / (c.copy_gbps * 1e3)  # GB/s -> bytes/µs
    mm_us = flops / (c.matmul_tflops * 1e6)  # TFLOP/s -> FLOP/µs
    ceil = max(copy_us, mm_us)
    return Efficiency(modelled_us=modelled_us, bytes=nbytes, flops=flops, copy_us=copy_us, matmul_us=mm_us,
                      ceiling_us=ceil, ratio=ceil / modelled_us,
                      bound_by="memory" if copy_us >= mm_us else "compute",
                      mispriced=modelled_us < copy_us * 0.999)


# ---- microbenchmarks (cost model only) ----------------------------------------------------
# (rows, cols, tile rows, tile cols), fp32 out = a*1.0: 256-512 MiB read and written
COPY_TRIALS = ((8192, 8192, 64, 512), (8192, 8192, 32, 1024), (8192, 8192, 128, 256),
               (16384, 8192, 64, 512), (8192, 16384, 32, 1024), (16384, 16384, 64, 512))
MATMUL_SHAPE = (8192, 1024, 8192)
MATMUL_TILES = (
    ((128, 128), (64, 256), (256, 256)),
    ((128, 128), (128, 256), (256, 256)),  # does not compile in 0.2.0 (recorded as such)
    ((128, 256), (64, 256), (256, 256)),
)


def _copy_trial(rows: int, cols: int, t0: int, t1: int) -> dict:
    import pypto
    import torch

    S = pypto.STATIC

    @pypto.frontend.jit(runtime_options={"run_mode": pypto.RunMode.SIM})
    def copy(a: pypto.Tensor([S, S], pypto.DT_FP32), o: pypto.Tensor([S, S], pypto.DT_FP32)):
        pypto.set_vec_tile_shapes(t0, t1)
        o[:] = pypto.mul(a, 1.0)

    a = torch.zeros(rows, cols)
    r = sim.run(copy, [a, torch.zeros_like(a)], name="copy", values=False)
    nbytes = 2 * rows * cols * 4
    return {"kind": "copy", "shape": [rows, cols], "tile": [t0, t1], "us": r.aicore_us,
            "gbps": nbytes / (r.aicore_us * 1e3)}


def _matmul_trial(m: int, k: int, n: int, tiles: tuple) -> dict:
    import pypto
    import torch

    S = pypto.STATIC

    @pypto.frontend.jit(runtime_options={"run_mode": pypto.RunMode.SIM})
    def mm(a: pypto.Tensor([S, S], pypto.DT_BF16), b: pypto.Tensor([S, S], pypto.DT_BF16),
           c: pypto.Tensor([S, S], pypto.DT_FP32)):
        pypto.set_cube_tile_shapes(list(tiles[0]), list(tiles[1]), list(tiles[2]))
        c[:] = pypto.matmul(a, b, pypto.DT_FP32)

    args = [torch.zeros(m, k, dtype=torch.bfloat16), torch.zeros(k, n, dtype=torch.bfloat16), torch.zeros(m, n)]
    r = sim.run(mm, args, name="matmul", values=False)
    return {"kind": "matmul", "shape": [m, k, n], "tile": [list(t) for t in tiles], "us": r.aicore_us,
            "tflops": 2 * m * k * n / (r.aicore_us * 1e6)}


def measure(quick: bool = False) -> dict[str, Any]:
    """Run the microbenchmarks (each in its own process) and return the ceilings record."""
    trials = []
    copy_trials = COPY_TRIALS[:1] if quick else COPY_TRIALS
    mm_tiles = MATMUL_TILES[:1] if quick else MATMUL_TILES
    jobs = [(_copy_trial, t) for t in copy_trials] + [(_matmul_trial, (*MATMUL_SHAPE, t)) for t in mm_tiles]
    for fn, targs in jobs:
        try:
            res, _ = sim.isolated(fn, *targs)
        except sim.SimError as e:  # a tile configuration that does not compile is skipped
            res = {"kind": "copy" if fn is _copy_trial else "matmul", "args": repr(targs),
                   "error": str(e).splitlines()[0][:200]}
        print(json.dumps(res), flush=True)
        trials.append(res)
    ok = [t for t in trials if "error" not in t]
    best_copy = max((t for t in ok if t["kind"] == "copy"), key=lambda t: t["gbps"])
    best_mm = max((t for t in ok if t["kind"] == "matmul"), key=lambda t: t["tflops"])
    return {
        "copy_gbps": round(best_copy["gbps"], 1),
        "matmul_tflops": round(best_mm["tflops"], 1),
        "copy_config": f"fp32 out = a*1.0, {best_copy['shape'][0]}x{best_copy['shape'][1]}, vec tile {best_copy['tile']}",
        "matmul_config": (f"bf16 {'x'.join(map(str, best_mm['shape']))} -> fp32, cube tiles {best_mm['tile']}"),
        "measured_on": time.strftime("%Y-%m-%d"),
        "command": MEASURE_COMMAND,
        "trials": trials,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsv4_core.perf")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("show", help="print the stored ceilings and how they were measured")
    m = sub.add_parser("measure", help="re-measure the ceilings under the cost model (minutes)")
    m.add_argument("--quick", action="store_true", help="one tile configuration each")
    m.add_argument("--write", action="store_true", help=f"store the result in {CEILINGS_FILE.name}")
    a = ap.parse_args(argv)
    if a.cmd == "show":
        print(load_ceilings().describe())
        return 0
    rec = measure(quick=a.quick)
    print(json.dumps({k: v for k, v in rec.items() if k != "trials"}, indent=1))
    if rec["copy_gbps"] < MIN_COPY_GBPS or rec["matmul_tflops"] < MIN_MATMUL_TFLOPS:
        print(f"warning: below the known figures ({MIN_COPY_GBPS} GB/s, {MIN_MATMUL_TFLOPS} TFLOP/s)",
              file=sys.stderr)
    if a.write:
        CEILINGS_FILE.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"wrote {CEILINGS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
