"""The pypto kernels on the CPU simulator vs the golden for every small scenario, and
perturbed APE / swapped overlap halves that must fail: the family's decode kernel suite
bound to this package's scenarios. The public `sim` path (decode and prefill calls) is
exercised by the prefill packages' kernel equivalence test."""

from dsv4_compressor_common.testing.kernel_suites import DecodeKernelSuite
from dsv4_compressor_ratio4.cases import SCENARIOS


class TestKernel(DecodeKernelSuite):
    scenarios = SCENARIOS
