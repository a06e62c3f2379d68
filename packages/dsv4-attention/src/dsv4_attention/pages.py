"""Page pools and the per-request page bookkeeping of one layer (host metadata only: the
layer never copies cache contents)."""

from __future__ import annotations

import dataclasses


class PoolExhausted(RuntimeError):
    """A page pool has no free page left."""


class PagePool:
    """A free list of `size` page ids; the lowest free id is handed out first, so a released
    page is reused before a never-used one."""

    def __init__(self, name: str, size: int):
        self.name, self.size = name, size
        self._free = list(range(size - 1, -1, -1))

    @property
    def free(self) -> int:
        return len(self._free)

    def take(self, n: int = 1) -> list[int]:
        if n > len(self._free):
            raise PoolExhausted(f"{self.name}: {n} page(s) wanted, {len(self._free)} free of {self.size}")
        return [self._free.pop() for _ in range(n)]

    def give(self, pages) -> None:
        self._free.extend(pages)
        self._free.sort(reverse=True)


@dataclasses.dataclass
class Request:
    """One request's place in the layer's caches."""

    rid: int
    length: int = 0  # positions written so far (the next token's position)
    ring: int = -1  # its ring page
    cmp_pages: list = dataclasses.field(default_factory=list)  # compressed-cache pages, in entry order
    state_pages: dict = dataclasses.field(default_factory=dict)  # state page index -> pool page
    idx_pages: list = dataclasses.field(default_factory=list)  # index-key cache pages (CSA)
    idx_state_pages: dict = dataclasses.field(default_factory=dict)  # indexer state page index -> pool page
