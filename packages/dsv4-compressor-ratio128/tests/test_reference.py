"""Semantics of the golden: an independent formulation (the official model's decode state
machine), chunking equivalence, APE, the RoPE position, the state tags: the family's decode
reference suite bound to `compressor_ratio128`."""

from dsv4_compressor_common.testing.reference_suites import DecodeReferenceSuite
from dsv4_compressor_ratio128 import compressor_ratio128, make_caches
from dsv4_compressor_ratio128.cases import SCENARIOS


class TestReference(DecodeReferenceSuite):
    call, make_caches, scenarios = staticmethod(compressor_ratio128), staticmethod(make_caches), SCENARIOS
