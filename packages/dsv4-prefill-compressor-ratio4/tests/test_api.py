"""Bad input gets a clear error naming the argument, and the caches stay bit-identical: the
family's prefill API suite bound to `prefill_compressor_ratio4`."""

from dsv4_compressor_common.testing.api_suites import PrefillApiSuite
from dsv4_prefill_compressor_ratio4 import prefill_compressor_ratio4
from dsv4_prefill_compressor_ratio4.cases import SCENARIOS


class TestApi(PrefillApiSuite):
    call, scenarios = staticmethod(prefill_compressor_ratio4), SCENARIOS
