"""The memory contract (dsv4-sparse-attn-common's `MemoryContractSuite`): NaN / Inf in
unreferenced cache rows never reach the output (torch and sim), the kernel receives the
cache itself and the host prepares the same bytes for N and 16N pages, validate=False
reads nothing back and matches validate=True on the simulator."""

from dsv4_sparse_attn_common.testing.suites import MemoryContractSuite, StepIsolationSuite
from dsv4_sparse_attn_swa import cases


class TestMemory(MemoryContractSuite):
    cases = cases
    case = "tiny-wrap-B2S2"


class TestStepIsolation(StepIsolationSuite):
    cases = cases
    case = "tiny-partial-B2S1"
