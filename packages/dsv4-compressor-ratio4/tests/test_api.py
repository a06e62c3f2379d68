"""Bad input gets a clear error naming the argument, and the caches stay bit-identical: the
family's decode API suite bound to `compressor_ratio4`."""

from dsv4_compressor_common.testing.api_suites import DecodeApiSuite
from dsv4_compressor_ratio4 import compressor_ratio4
from dsv4_compressor_ratio4.cases import SCENARIOS


class TestApi(DecodeApiSuite):
    call, scenarios = staticmethod(compressor_ratio4), SCENARIOS
