"""Test helpers for the memory contract (DESIGN.md, "Memory contract"): what a public call
hands its kernels, and whether its host side reads a device value back.

    with contract.watch(run=False) as w:          # record every kernel launch, run none
        sparse_attn_csa(..., backend="sim", validate=False)
    w.launches[0].receives(kv_cache)              # the kernel got the cache's own storage
    w.prepared_bytes(kv_cache, cmp_kv)            # bytes of every other argument

    with contract.no_readback():                  # item() / int() / bool() / tolist() /
        sparse_attn_csa(..., validate=False)      # .cpu() / .numpy() / .to("cpu") raise

`watch` patches `dsv4_core.sim.run`, the one place every `sim` launch goes through
(`backends.launch`); `run=False` skips the simulator (outputs stay as the host left them),
so a test can call a public function with caches of any size. The read-back guard is
lifted while a kernel runs: the simulator reads its inputs, the host must not.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import torch


def _not_views_of(tensors: list[torch.Tensor], caches: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The tensors that are not views of any of `caches` (their own storage): what the host built."""
    ptrs = {c.untyped_storage().data_ptr() for c in caches}
    return [t for t in tensors if t.untyped_storage().data_ptr() not in ptrs]


@dataclasses.dataclass
class Launch:
    name: str
    args: list[Any]

    def tensors(self) -> list[torch.Tensor]:
        return [a for a in self.args if isinstance(a, torch.Tensor)]

    def receives(self, cache: torch.Tensor) -> bool:
        """Some argument is a view of `cache`'s own storage (no copy)."""
        ptr = cache.untyped_storage().data_ptr()
        return any(t.untyped_storage().data_ptr() == ptr for t in self.tensors())

    def prepared_bytes(self, *caches: torch.Tensor) -> int:
        """Bytes of the tensor arguments that are not views of `caches`: what the host built."""
        return sum(t.numel() * t.element_size() for t in _not_views_of(self.tensors(), caches))


@dataclasses.dataclass
class Watch:
    launches: list[Launch] = dataclasses.field(default_factory=list)

    def receives(self, cache: torch.Tensor) -> bool:
        """At least one launch received `cache`'s own storage."""
        return any(launch.receives(cache) for launch in self.launches)

    def prepared_bytes(self, *caches: torch.Tensor) -> int:
        """Bytes of the launches' tensor arguments that are not views of `caches`, each
        buffer counted once: a buffer one kernel writes and the next reads (an intermediate
        the host allocates) is prepared once, not once per launch that receives it."""
        spans: dict[int, list[tuple[int, int]]] = {}
        for t in _not_views_of([t for launch in self.launches for t in launch.tensors()], caches):
            lo = t.storage_offset() * t.element_size()
            spans.setdefault(t.untyped_storage().data_ptr(), []).append((lo, lo + t.numel() * t.element_size()))
        total = 0
        for parts in spans.values():  # the union of each buffer's byte ranges
            end = 0
            for lo, hi in sorted(parts):
                total += max(0, hi - max(lo, end))
                end = max(end, hi)
        return total


_GUARD = {"on": False}


@contextlib.contextmanager
def watch(*, run: bool = True) -> Iterator[Watch]:
    """Record every simulator launch (name and arguments); `run=False` skips the simulator."""
    from . import sim

    w = Watch()
    real = sim.run

    def recording(kernel, args, *, name="kernel", values=True, **kw):
        w.launches.append(Launch(name, list(args)))
        if not run:
            return None
        was = _GUARD["on"]
        _GUARD["on"] = False
        try:
            return real(kernel, args, name=name, values=values, **kw)
        finally:
            _GUARD["on"] = was

    sim.run = recording
    try:
        yield w
    finally:
        sim.run = real


class ReadBackError(AssertionError):
    """The host read a tensor value back while `no_readback` was active."""


_READS = ("item", "tolist", "cpu", "numpy", "__int__", "__bool__", "__float__", "__index__")


@contextlib.contextmanager
def no_readback() -> Iterator[None]:
    """Every way the host reads a tensor value back raises `ReadBackError` (a kernel launch
    through `dsv4_core.sim.run` is exempt while it runs)."""
    saved = {n: getattr(torch.Tensor, n) for n in _READS + ("to",)}

    def guard(name):
        real = saved[name]

        def method(self, *a, **k):
            if _GUARD["on"]:
                raise ReadBackError(f"host read-back: Tensor.{name} on a {list(self.shape)} {self.dtype} tensor")
            return real(self, *a, **k)
        return method

    def to(self, *a, **k):
        if _GUARD["on"]:
            dev = k.get("device")
            for x in a:
                if isinstance(x, (str, torch.device)):
                    dev = x
            # also from a CPU tensor: on a CPU-only run every tensor already lives on the host,
            # and a .to("cpu") is the line that would read a device value back on an accelerator
            if dev is not None and torch.device(dev).type == "cpu":
                raise ReadBackError(f"host read-back: Tensor.to('cpu') on a {list(self.shape)} tensor")
        return saved["to"](self, *a, **k)

    from . import sim

    real_run = sim.run

    def unguarded(*a, **k):
        was = _GUARD["on"]
        _GUARD["on"] = False
        try:
            return real_run(*a, **k)
        finally:
            _GUARD["on"] = was

    for n in _READS:
        setattr(torch.Tensor, n, guard(n))
    torch.Tensor.to = to
    sim.run = unguarded
    _GUARD["on"] = True
    try:
        yield
    finally:
        _GUARD["on"] = False
        sim.run = real_run
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
