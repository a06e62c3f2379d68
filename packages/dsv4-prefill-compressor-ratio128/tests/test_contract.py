"""The memory contract of `prefill_compressor_ratio128`: caches read and written in place (N vs 16N pages), no
read-back with validate=False, the same bits either way, and a NaN in an unreferenced state
row kept out of every entry: the family's contract suite bound to this package."""

from dsv4_compressor_common.testing.contract_suites import ContractSuite
from dsv4_prefill_compressor_ratio128 import prefill_compressor_ratio128
from dsv4_prefill_compressor_ratio128.cases import SCENARIOS


class TestContract(ContractSuite):
    call, kind, scenarios = staticmethod(prefill_compressor_ratio128), "prefill", SCENARIOS
