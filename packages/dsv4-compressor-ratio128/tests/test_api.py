"""Bad input gets a clear error naming the argument, and the caches stay bit-identical: the
family's decode API suite bound to `compressor_ratio128`."""

from dsv4_compressor_common.testing.api_suites import DecodeApiSuite
from dsv4_compressor_ratio128 import compressor_ratio128
from dsv4_compressor_ratio128.cases import SCENARIOS


class TestApi(DecodeApiSuite):
    call, scenarios = staticmethod(compressor_ratio128), SCENARIOS
