"""The memory contract on the kernel path (the family's `IndexerMemorySuite`)."""

from dsv4_compressor_common.testing.indexer_memory import IndexerMemorySuite
from dsv4_core import TINY
from dsv4_indexer import indexer
from dsv4_indexer.cases import CASES, make_inputs

ARGS = ("x", "qr", "wq_b", "weights_proj", "positions", "cache", "table")


class TestMemory(IndexerMemorySuite):
    @staticmethod
    def inputs():
        return make_inputs(CASES["tiny-fewer-B2S2"])

    @staticmethod
    def call(inp, backend, **kw):
        return indexer(*(inp[a] for a in ARGS), config=TINY, backend=backend, **kw)
