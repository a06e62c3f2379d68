"""The modelled chip: its hardware constants and its measured ceilings, in one place.

The kernels target Ascend; their speed is measured with pypto's cost model, a deterministic
model of an Ascend 910B2 (24 cube + 48 vector cores). The constants below are what every
tiling decision in the packages is written against; the ceilings are max(bytes / copy
bandwidth, FLOPs / bf16 matmul throughput), both measured by microbenchmarks under the
same model (`dsv4_core.microbench`, best over several tile configurations) and stored in
`ceilings.json` beside this file with the command that re-measures them:

    python -m dsv4_core.microbench measure        # minutes: large matmuls are slow to model

A kernel modelled *faster* than its own bytes / copy ceiling is not fast but mis-priced
(the cost model under-prices some ops, e.g. index_select with a 2-D index): `efficiency`
flags it and it must not be reported as a fraction of the ceiling.
"""

import dataclasses
import json
from pathlib import Path

# ---- hardware constants of the modelled chip ------------------------------------------------
# The cost model's swim lanes hold 24 cube (AIC) and 48 vector (AIV) lanes. Each cube task
# streams its operands at a roughly fixed per-core rate, so a weight-streaming matmul takes
# about (waves of tasks over the cube cores) × (bytes per task).
CUBE_CORES = 24
VECTOR_CORES = 48
AICORE_MHZ = 1800.0  # the cost model's clock (cycles -> µs)
UB_BYTES = 192 * 1024  # a vector core's unified buffer
# Elements per vector-tile operand (32 KB fp32): keeps an op's inputs and output inside the
# unified buffer.
VEC_OPERAND_ELEMS = 8192
L0C_BYTES = 96 * 1024  # a cube core's fp32 accumulator (the [m, n] output tile of a matmul)

# ---- ceilings -----------------------------------------------------------------------------
CEILINGS_FILE = Path(__file__).with_name("ceilings.json")
MEASURE_COMMAND = "python -m dsv4_core.microbench measure"

# Figures the stored ceilings must reach (measured under the same cost model); a lower
# ceiling would flatter every kernel.
MIN_COPY_GBPS = 1200.0
MIN_MATMUL_TFLOPS = 185.0


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
