"""Timing a public call honestly (DESIGN.md, "Performance"): everything the call does, its
kernels and its host side, at serving-size caches.

    m = bench.measure(lambda: sparse_attn_csa(..., backend="sim", validate=False), given=[...])
    m.kernel_us        # the cost model's µs of every kernel the call launched, summed
    m.host_us          # host wall time of the call outside the kernels (this process)
    m.prepared_bytes   # bytes of the kernels' arguments the host built (not a caller's cache)
    m.lanes            # per kernel: where its modelled time goes (`lanes.Lanes`, the swim lanes)

The kernels run on the cost model alone (`values=False`: outputs untouched), so caches may
be allocated with `torch.empty` at any size without touching their pages. `charge` adds
what the cost model under-prices: gathered bytes at the copy rate (a gather that the model
prices below a copy of the same bytes) and the host's prepared bytes at the copy rate (on a
device they are device copies too).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import torch

from . import contract


@dataclasses.dataclass(frozen=True)
class Measured:
    kernel_us: float  # cost-model µs, every launch of the call summed
    host_us: float  # wall µs of the call with its launches returning at once (best of a few)
    prepared_bytes: int  # kernel-argument bytes the host built (the caller's tensors excluded)
    launches: tuple[str, ...]  # kernel names, in launch order
    cores: int = 0
    result: Any = None
    lanes: tuple = ()  # (kernel name, lanes.Lanes | None) per launch: where each kernel's time goes


def measure(call: Callable[[], Any], *, given: Sequence[torch.Tensor] = (), host_repeats: int = 3) -> Measured:
    """Run `call()` (a public function on backend "sim") with every kernel on the cost model
    alone; `given` are the tensors the caller handed the call (caches, tables, activations,
    weights): the kernels receiving them or views of them is not host work. The host time
    is the best of `host_repeats` further calls whose launches return at once (warm: no
    first-call imports, no kernel in the way)."""
    from . import sim

    runs: list = []
    watched = contract.Watch()
    real = sim.run

    def cost_only(kernel, args, *, name="kernel", values=True, **kw):
        watched.launches.append(contract.Launch(name, list(args)))
        runs.append(real(kernel, args, name=name, values=False, **kw))
        return runs[-1]

    def no_kernel(kernel, args, *, name="kernel", values=True, **kw):
        return sim.KernelRun(name=name, aicore_us=0.0, total_us=0.0, cores=0, tasks=0, values=False,
                             verify_dir=None)

    sim.run = cost_only
    try:
        out = call()
        sim.run = no_kernel
        host = []
        for _ in range(max(1, host_repeats)):
            t0 = time.perf_counter()
            call()
            host.append(time.perf_counter() - t0)
    finally:
        sim.run = real
    us = [r.aicore_us for r in runs]
    if not runs or None in us:
        raise RuntimeError(f"measure: the call launched {len(runs)} kernel(s) and the cost model timed "
                           f"{sum(u is not None for u in us)} of them")
    return Measured(kernel_us=float(sum(us)), host_us=min(host) * 1e6, prepared_bytes=watched.prepared_bytes(*given),
                    launches=tuple(r.name for r in runs), cores=max(r.cores for r in runs), result=out,
                    lanes=tuple((r.name, r.lanes) for r in runs))


@dataclasses.dataclass(frozen=True)
class Charged:
    """A call's honest time: kernel µs + surcharges the cost model leaves out."""

    kernel_us: float
    gather_us: float  # gathered bytes at the copy rate, for a gather the model under-prices
    prepared_us: float  # host-prepared bytes at the copy rate
    host_us: float  # measured host wall time outside the kernels

    @property
    def total_us(self) -> float:
        return self.kernel_us + self.gather_us + self.prepared_us + self.host_us


def charge(m: Measured, *, gathered_bytes: float = 0.0, copy_gbps: float | None = None) -> Charged:
    """`m` with the under-priced work charged at the modelled copy rate (GB/s, default the
    stored ceiling)."""
    from .chip import load_ceilings

    bw = copy_gbps or load_ceilings().copy_gbps
    per_byte_us = 1.0 / (bw * 1e3)
    return Charged(kernel_us=m.kernel_us, gather_us=gathered_bytes * per_byte_us,
                   prepared_us=m.prepared_bytes * per_byte_us, host_us=m.host_us)


def outcome(module: str, case: str, m: Measured, *, nbytes: float, flops: float, gather_bytes: float = 0.0,
            note: str = ""):
    """A `BenchOutcome` of a measured call: kernel µs; the gather charge; host µs = the
    bytes the host prepared for the kernels at the copy rate (what those host ops cost as
    device copies: the host work a device pays for); against the ceiling of `nbytes` /
    `flops` (each distinct row a request reads counted once). The host's own wall time on
    the CPU that ran the bench goes into the note: it is that CPU's, not the modelled chip's."""
    from .golden import BenchOutcome

    c = charge(m, gathered_bytes=gather_bytes)
    host = f"host: {m.prepared_bytes / 1e6:.2f} MB prepared, {m.host_us:.0f} µs CPU wall"
    return BenchOutcome(module, case, m.kernel_us, nbytes, flops, cores=m.cores,
                        note=f"{note}; {host}" if note else host, gather_us=c.gather_us, host_us=c.prepared_us,
                        lanes=list(m.lanes))
