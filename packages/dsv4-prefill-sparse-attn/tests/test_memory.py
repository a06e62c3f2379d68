"""The memory contract (dsv4-sparse-attn-common's `MemoryContractSuite`) for each layer
kind of a prefill chunk: NaN / Inf in unreferenced cache rows never reach the output (torch
and sim; CSA with a −1 top-k hole), the kernel receives the caches themselves and the host
prepares the same bytes for N and 16N pages, validate=False reads nothing back and matches
validate=True on the simulator."""

from dsv4_prefill_sparse_attn import cases
from dsv4_sparse_attn_common.testing.suites import MemoryContractSuite


class TestMemoryCSA(MemoryContractSuite):
    cases = cases
    case = "tiny-csa-fewer-T12"


class TestMemoryHCA(MemoryContractSuite):
    cases = cases
    case = "tiny-hca-T12"


class TestMemorySWA(MemoryContractSuite):
    cases = cases
    case = "tiny-swa-wrap-T12"
