"""The pypto kernel on the CPU simulator vs the golden, one process per kernel run
(dsv4-sparse-attn-common's `KernelGoldenSuite`).

pytest runs the scenarios this package adds (empty compressed set; fewer valid top-k than k
with ring wrap-around, S = 2 and a masked not-yet-causal pick); the remaining small-tier
golden cases (TP shard, PRO geometry) run the same shared kernel and are checked by
`nox -s golden` (tools/golden.py), as are the FLASH cases. The perturbed-sink and
dropped-inverse-RoPE checks of the shared kernel live in dsv4-sparse-attn-swa's tests."""

from dsv4_sparse_attn_common.testing.suites import KernelGoldenSuite
from dsv4_sparse_attn_csa import cases


class TestKernel(KernelGoldenSuite):
    cases = cases
    names = ("tiny-empty-cmp-B2S1", "tiny-fewer-wrap-B2S2")
