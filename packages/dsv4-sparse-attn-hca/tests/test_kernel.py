"""The pypto kernel on the CPU simulator vs the golden, one process per kernel run
(dsv4-sparse-attn-common's `KernelGoldenSuite`).

pytest runs the scenarios this package adds (partial window with an empty compressed set;
wrap-around with S = 2 and an entry closed by the step itself; 8191+ entries near 1M); the
remaining small-tier golden cases (TP shard, PRO geometry) run the same shared kernel and
are checked by `nox -s golden` (tools/golden.py), as are the FLASH cases. The perturbed-sink
and dropped-inverse-RoPE checks of the shared kernel live in dsv4-sparse-attn-swa's tests."""

from dsv4_sparse_attn_common.testing.suites import KernelGoldenSuite
from dsv4_sparse_attn_hca import cases


class TestKernel(KernelGoldenSuite):
    cases = cases
    names = ("tiny-partial-empty-B2S1", "tiny-wrap-B2S2", "tiny-near1M-B1S2")
