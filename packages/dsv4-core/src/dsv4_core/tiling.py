"""Tiling heuristics the kernels share, written against the modelled chip (`dsv4_core.chip`)."""

from .chip import CUBE_CORES, L0C_BYTES


def balanced_n_tile(n: int, batches: int = 1, *, m: int = 128, cores: int = CUBE_CORES) -> int:
    """The output-column tile (a multiple of 16) for a matmul with `n` output columns per
    batch, `batches` batches, `m` rows per tile, that minimises waves × (m + tile width) —
    the modelled time of a matmul whose tasks each stream one [t, K] weight tile and re-read
    the [m, K] activations (bytes per task ∝ m + t). Bounded by the L0 buffers: n ≤ 256 and
    the fp32 [m, n] accumulator ≤ `L0C_BYTES`."""
    hi = max(16, min(256, (L0C_BYTES // (4 * max(m, 1))) // 16 * 16, -(-n // 16) * 16))
    best = None
    for t in range(16, hi + 1, 16):
        tasks = batches * -(-n // t)
        cost = -(-tasks // cores) * (m + t)
        if best is None or cost < best[0] or (cost == best[0] and t > best[1]):
            best = (cost, t)
    return best[1]
