"""The pypto kernels on the CPU simulator vs the golden (one process for the small
scenarios), a perturbed APE that must fail, and the kernel path's equivalence: a prefill of
k tokens then decode steps S = 1, 2, 5, all on the simulator, leave the caches of one torch
prefill of N tokens. The family's prefill kernel suite bound to this package's scenarios."""

from dsv4_compressor_common.testing.kernel_suites import PrefillKernelSuite
from dsv4_prefill_compressor_ratio128.cases import SCENARIOS


class TestKernel(PrefillKernelSuite):
    scenarios = SCENARIOS
