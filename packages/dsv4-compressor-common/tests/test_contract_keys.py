"""The memory contract of the lightning indexer's key compressor (ratio 4, index_head_dim
wide, the Hadamard after RoPE), decode and prefill: the family's contract suite bound to the
public functions `key_functions` builds for the indexer packages."""

import dataclasses

from dsv4_compressor_common.indexer.keys import key_functions
from dsv4_compressor_common.testing import Case
from dsv4_compressor_common.testing.contract_suites import ContractSuite
from dsv4_core import TINY

KEYS = dataclasses.replace(TINY, name="tiny-keys", head_dim=TINY.index_head_dim)
# module attributes under their own names: the simulator process imports them by name
indexer_compressor, _ = key_functions(__name__, "indexer_compressor", "decode")
prefill_indexer_compressor, _ = key_functions(__name__, "prefill_indexer_compressor", "prefill")


class TestDecodeKeys(ContractSuite):
    call, kind, rotate = staticmethod(indexer_compressor), "decode", True
    scenario = Case("tiny-keys-decode-S5", KEYS, 4, (0, 5, 130, 2), 5, rotate=True)


class TestPrefillKeys(ContractSuite):
    call, kind, rotate = staticmethod(prefill_indexer_compressor), "prefill", True
    scenario = Case("tiny-keys-prefill-straddling", KEYS, 4, (6,), 9, rotate=True)
