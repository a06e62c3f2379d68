"""The memory contract on the kernel path (the family's `IndexerMemorySuite`)."""

from dsv4_compressor_common.testing.indexer_memory import IndexerMemorySuite
from dsv4_core import TINY
from dsv4_prefill_indexer import prefill_indexer
from dsv4_prefill_indexer.cases import CASES, make_inputs


class TestMemory(IndexerMemorySuite):
    @staticmethod
    def inputs():
        return make_inputs(CASES["tiny-start77-T70"])

    @staticmethod
    def call(inp, backend, **kw):
        return prefill_indexer(inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], 77, inp["cache"],
                               inp["table"].reshape(-1), config=TINY, backend=backend, **kw)
