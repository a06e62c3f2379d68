"""The memory contract of `compressor_ratio128`: caches read and written in place (N vs 16N pages), no
read-back with validate=False, the same bits either way, and a NaN in an unreferenced state
row kept out of every entry: the family's contract suite bound to this package, on both pool
paths (8-row state pages: the slots gathered; whole-window pages: each window one view of the
state cache)."""

from dsv4_compressor_common.testing.contract_suites import ContractSuite
from dsv4_compressor_ratio128 import compressor_ratio128
from dsv4_compressor_ratio128.cases import SCENARIOS


class TestContract(ContractSuite):
    call, kind, scenarios = staticmethod(compressor_ratio128), "decode", SCENARIOS


class TestContractStateViews(ContractSuite):
    call, kind = staticmethod(compressor_ratio128), "decode"
    scenario = SCENARIOS.cases["tiny-decode-S2-page128"]
