"""Semantics of the prefill golden: one prefill of N tokens ≡ the same tokens in uneven
chunks ≡ a prefill of k tokens followed by decode steps of S = 1, 2 and 5 (same caches within
the comparator rule); chunks that start inside a window read the stored state. The family's
prefill reference suite bound to `prefill_compressor_ratio128`."""

from dsv4_compressor_common.testing.reference_suites import PrefillReferenceSuite
from dsv4_prefill_compressor_ratio128 import prefill_compressor_ratio128
from dsv4_prefill_compressor_ratio128.cases import SCENARIOS


class TestReference(PrefillReferenceSuite):
    call, scenarios = staticmethod(prefill_compressor_ratio128), SCENARIOS
