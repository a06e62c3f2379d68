"""The pypto kernel on the CPU simulator vs the golden, one process per kernel run
(dsv4-sparse-attn-common's `KernelGoldenSuite`).

pytest runs one chunk per layer kind (SWA from position 0, HCA across an entry boundary,
CSA with fewer valid top-k than k); the remaining small-tier golden cases (wrap-around,
near 1M, TP shard, PRO geometry) run the same shared kernel and are checked by
`nox -s golden` (tools/golden.py), as are the FLASH cases. The perturbed-sink and
dropped-inverse-RoPE checks of the shared kernel live in dsv4-sparse-attn-swa's tests."""

from dsv4_prefill_sparse_attn import cases
from dsv4_sparse_attn_common.testing.suites import KernelGoldenSuite


class TestKernel(KernelGoldenSuite):
    cases = cases
    names = ("tiny-swa-start0-T20", "tiny-hca-T12", "tiny-csa-fewer-T12")
