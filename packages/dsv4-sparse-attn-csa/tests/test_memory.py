"""The memory contract (dsv4-sparse-attn-common's `MemoryContractSuite`): NaN / Inf in
unreferenced cache rows never reach the output (torch and sim, with a −1 top-k hole), the
kernel receives the caches themselves and the host prepares the same bytes for N and 16N
pages, validate=False reads nothing back and matches validate=True on the simulator."""

from dsv4_sparse_attn_common.testing.suites import MemoryContractSuite, StepIsolationSuite
from dsv4_sparse_attn_csa import cases


class TestMemory(MemoryContractSuite):
    cases = cases
    case = "tiny-fewer-wrap-B2S2"


class TestStepIsolation(StepIsolationSuite):
    cases = cases
    case = "tiny-empty-cmp-B2S1"
