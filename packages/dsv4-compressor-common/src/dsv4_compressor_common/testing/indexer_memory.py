"""The memory-contract suite of the indexer packages (decode and prefill): the score kernel
receives the index-key cache itself (its own storage), the host prepares the same bytes for
a pool of N and of 16N pages holding the same reachable keys, validate=False reads nothing
back, and the grown pool gives the same picks.

    class TestMemory(IndexerMemorySuite):
        @staticmethod
        def inputs(): ...                       # a small case's inputs (cache, table, ...)
        @staticmethod
        def call(inp, backend, **kw): ...       # the package's public indexer on them
"""

from __future__ import annotations

import pytest
import torch

from dsv4_core import contract


def grown(inp: dict, factor: int) -> dict:
    """The same reachable keys in a pool `factor` times larger, on other page ids (the new
    pages hold NaN)."""
    cache, table = inp["cache"], inp["table"]
    P = cache.shape[0]
    big = torch.full((P * factor,) + tuple(cache.shape[1:]), float("nan"), dtype=cache.dtype)
    big[P * (factor - 1):] = cache
    return dict(inp, cache=big, table=torch.where(table >= 0, table + P * (factor - 1), table))


class IndexerMemorySuite:
    @staticmethod
    def inputs() -> dict:
        raise NotImplementedError

    @staticmethod
    def call(inp: dict, backend: str, **kw):
        raise NotImplementedError

    def launches(self, inp: dict, **kw) -> contract.Watch:
        with contract.watch(run=False) as w:
            self.call(inp, "sim", **kw)
        return w

    @pytest.mark.parametrize("validate", [True, False])
    def test_cache_stays_in_place_and_host_bytes_do_not_grow(self, validate):
        small = self.inputs()
        large = grown(small, 16)
        ws, wl = self.launches(small, validate=validate), self.launches(large, validate=validate)
        assert ws.receives(small["cache"]) and wl.receives(large["cache"])
        assert ws.prepared_bytes(small["cache"]) == wl.prepared_bytes(large["cache"])
        copied = dict(large, cache=large["cache"].clone())  # the check itself: a copy is not the cache
        assert not self.launches(copied, validate=validate).receives(large["cache"])

    def test_validate_false_reads_nothing_back(self):
        inp = grown(self.inputs(), 16)
        with contract.no_readback():
            self.launches(inp, validate=False)
        with pytest.raises(contract.ReadBackError):
            with contract.no_readback():
                self.launches(inp, validate=True)

    def test_the_grown_pool_holds_the_same_picks(self):
        inp = self.inputs()
        assert torch.equal(self.call(inp, "torch"), self.call(grown(inp, 16), "torch"))
