"""Microbenchmarks of the modelled chip under pypto's cost model, and the command that
measures and stores its ceilings (`dsv4_core.chip`):

    python -m dsv4_core.microbench show
    python -m dsv4_core.microbench measure [--quick] [--write]
"""

# no `from __future__ import annotations`: pypto reads kernel annotations as objects

import argparse
import json
import sys
import time
from typing import Any

from . import sim
from .backends import jit_options
from .chip import CEILINGS_FILE, MEASURE_COMMAND, MIN_COPY_GBPS, MIN_MATMUL_TFLOPS, load_ceilings

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

    @pypto.frontend.jit(runtime_options=jit_options())
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

    @pypto.frontend.jit(runtime_options=jit_options())
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
    ap = argparse.ArgumentParser(prog="python -m dsv4_core.microbench")
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
