"""Microbenchmarks of the modelled chip under pypto's cost model, and the command that
measures and stores its ceilings (`dsv4_core.chip`):

    python -m dsv4_core.microbench show
    python -m dsv4_core.microbench measure [--quick] [--write]
    python -m dsv4_core.microbench gather [--quick]     # each gather path's price per byte
    python -m dsv4_core.microbench inputs [--gb 3]      # the simulator's host memory per input byte
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


# ---- the gather paths, priced per byte next to reading the same bytes in place ------------
# Each of T tokens reads K rows of D bf16 lanes (a paged source of `pages` × 128 rows) and
# multiplies them with its H query heads, as a sparse-attention or indexer score step does:
# rows = a contiguous view ("view": the bytes read in place, no gather), `index_select` on
# physical rows, `gather_in_ub` / `gather_in_l1` on logical rows through the block table.
# What the cost model charges for the gather is the path's time minus the view's.
GATHER_SHAPE = (16, 640, 512, 16)  # T, K, D, H
GATHER_BLOCK = 128
GATHER_PATHS = ("view", "index_select", "gather_in_ub", "gather_in_l1")


def _gather_trial(path: str, t: int, k: int, d: int, h: int, pages: int) -> dict:
    import pypto
    import torch

    S, BF16, I32, F32 = pypto.STATIC, pypto.DT_BF16, pypto.DT_INT32, pypto.DT_FP32
    BS = GATHER_BLOCK
    if path not in GATHER_PATHS:
        raise ValueError(f"unknown gather path {path!r}")

    @pypto.frontend.jit(runtime_options=jit_options())
    def kernel(q: pypto.Tensor([S, S], BF16), kv: pypto.Tensor([S, S], BF16), table: pypto.Tensor([S, S], I32),
               idx: pypto.Tensor([S, S], I32), flat: pypto.Tensor([S], I32), out: pypto.Tensor([S, S], F32)):
        for i in range(t):  # unrolled: the tokens' steps overlap as in a kernel's tile
            qt = pypto.view(q, [h, d], [i * h, 0])
            pypto.set_vec_tile_shapes(64, d)
            if path == "view":
                rows = pypto.view(kv, [k, d], [i * k, 0])
            elif path == "index_select":
                rows = pypto.index_select(kv, 0, pypto.view(flat, [k], [i * k]))
            elif path == "gather_in_ub":
                rows = pypto.experimental.gather_in_ub(kv, pypto.view(idx, [1, k], [i, 0]),
                                                       pypto.view(table, [1, pages], [0, 0]), BS, -2)
            else:
                rows = pypto.experimental.gather_in_l1(kv, pypto.view(idx, [1, k], [i, 0]),
                                                       pypto.view(table, [1, pages], [0, 0]), BS, d, True, True)
            pypto.set_cube_tile_shapes([16, 16], [128, d], [128, 128])
            sc = pypto.matmul(qt, rows, F32, b_trans=True)  # [H, K]
            pypto.set_vec_tile_shapes(h, min(k, 1024))
            pypto.assemble(sc, [i * h, 0], out)

    g = torch.Generator().manual_seed(0)
    kv = torch.empty(pages * BS, d, dtype=torch.bfloat16)
    table = torch.randperm(pages, generator=g).to(torch.int32).reshape(1, pages)
    logical = torch.randint(0, pages * BS, (t, k), generator=g, dtype=torch.int32)
    phys = (table[0, (logical // BS).long()] * BS + logical % BS).to(torch.int32)
    args = [torch.zeros(t * h, d, dtype=torch.bfloat16), kv, table, logical, phys.reshape(-1).contiguous(),
            torch.zeros(t * h, k)]
    r = sim.run(kernel, args, name=f"gather_{path}", values=False)
    return {"kind": "gather", "path": path, "shape": [t, k, d, h], "source_rows": pages * BS, "us": r.aicore_us}


def measure_gathers(quick: bool = False) -> list[dict]:
    """Each path at GATHER_SHAPE from a small and a 16× larger source, each in its own
    process; adds to each row the gathered bytes' rate (`gather_gbps`, read + write) at the
    path's time above the in-place read (None when it is not above it: not priced)."""
    t, k, d, h = GATHER_SHAPE
    out = []
    for pages in ((256,) if quick else (256, 4096)):
        rows = []
        for path in GATHER_PATHS:
            try:
                res, _ = sim.isolated(_gather_trial, path, t, k, d, h, pages)
            except sim.SimError as e:
                res = {"kind": "gather", "path": path, "shape": [t, k, d, h], "source_rows": pages * GATHER_BLOCK,
                       "error": str(e).splitlines()[0][:200]}
            rows.append(res)
        base = next((r["us"] for r in rows if r["path"] == "view" and "us" in r), None)
        for r in rows:
            extra = r["us"] - base if base is not None and "us" in r else None
            r["gather_us"] = extra
            r["gather_gbps"] = (2 * t * k * d * 2 / (extra * 1e3)) if extra and extra > 0 else None
            print(json.dumps(r), flush=True)
        out += rows
    return out


def _resident_gb() -> float:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1e6


def _input_memory_trial(gb: float) -> dict:
    """One cost-model run of a kernel that reads 16 rows of an uninitialised `gb`-GB input
    (`torch.empty`: no page touched before the call): the process's resident memory before
    and after the launch."""
    import pypto
    import torch

    DYN = pypto.DYNAMIC

    @pypto.frontend.jit(runtime_options=jit_options())
    def head_rows(big: pypto.Tensor([DYN, 512], pypto.DT_FP32), out: pypto.Tensor([16, 512], pypto.DT_FP32)):
        for i in pypto.loop(1, name="one", idx_name="i"):
            pypto.set_vec_tile_shapes(16, 512)
            pypto.assemble(pypto.mul(pypto.view(big, [16, 512], [i * 16, 0]), 1.0), [0, 0], out)

    big = torch.empty(int(gb * 1e9 / 2048), 512)
    before = _resident_gb()
    sim.run(head_rows, [big, torch.zeros(16, 512)], name="head_rows", values=False)
    return {"input_gb": big.numel() * 4 / 1e9, "resident_before_gb": before, "resident_after_gb": _resident_gb()}


def measure_input_memory(gb: float = 3.0) -> dict:
    """`_input_memory_trial` in its own process: how much host memory pypto's simulator
    holds per byte of a kernel's input, whatever the kernel reads of it."""
    res, _ = sim.isolated(_input_memory_trial, gb)
    res["resident_per_input_byte"] = (res["resident_after_gb"] - res["resident_before_gb"]) / res["input_gb"]
    return res


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
    g = sub.add_parser("gather", help="price each gather path per byte next to a copy (minutes)")
    g.add_argument("--quick", action="store_true", help="the small source only")
    i = sub.add_parser("inputs", help="the simulator's host memory per byte of a kernel input (seconds)")
    i.add_argument("--gb", type=float, default=3.0, help="size of the uninitialised input")
    m = sub.add_parser("measure", help="re-measure the ceilings under the cost model (minutes)")
    m.add_argument("--quick", action="store_true", help="one tile configuration each")
    m.add_argument("--write", action="store_true", help=f"store the result in {CEILINGS_FILE.name}")
    a = ap.parse_args(argv)
    if a.cmd == "show":
        print(load_ceilings().describe())
        return 0
    if a.cmd == "gather":
        copy = load_ceilings().copy_gbps
        rows = measure_gathers(quick=a.quick)
        print(f"\n| path | source rows | µs | µs above the in-place read | gathered GB/s "
              f"| vs the copy ceiling ({copy:.0f} GB/s) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            if "us" not in r:
                print(f"| {r['path']} | {r['source_rows']} | ERROR | {r['error']} | | |")
                continue
            gb = r["gather_gbps"]
            rel = "-" if r["path"] == "view" else ("not priced" if gb is None else f"{gb / copy:.2f}×")
            extra = "-" if r["path"] == "view" else f"{r['gather_us']:.1f}"
            print(f"| {r['path']} | {r['source_rows']} | {r['us']:.1f} | {extra} | "
                  f"{'-' if gb is None else f'{gb:.0f}'} | {rel} |")
        return 0
    if a.cmd == "inputs":
        r = measure_input_memory(a.gb)
        print(f"an uninitialised {r['input_gb']:.2f} GB input, of which the kernel reads 16 rows: resident "
              f"{r['resident_before_gb']:.2f} → {r['resident_after_gb']:.2f} GB "
              f"({r['resident_per_input_byte']:.2f} bytes per input byte)")
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
