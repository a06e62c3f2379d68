"""The pypto kernel on the CPU simulator vs the golden, one process per kernel run
(dsv4-sparse-attn-common's `KernelGoldenSuite`).

pytest runs wrap-around with S = 2 and S = 3 (per-token paged rows), the TP shard and PRO group geometry, plus the checks
that a perturbed sink and a dropped inverse RoPE make the golden fail (the shared kernel's
checks, here once for all four packages); the partial-window case runs in `nox -s golden`
(and the partial window is in dsv4-sparse-attn-hca's and dsv4-prefill-sparse-attn's
pytest kernels)."""

import pytest

from dsv4_core import sim
from dsv4_sparse_attn_common.testing.suites import KernelGoldenSuite
from dsv4_sparse_attn_swa import cases


class TestKernel(KernelGoldenSuite):
    cases = cases
    names = ("tiny-wrap-B2S2", "tiny-wrap-B3S3", "tiny-tp2-B2S2", "pro-tp8-B1S2")


@pytest.mark.parametrize("perturb", ["sink", "rope"])
def test_perturbed_sink_or_dropped_inverse_rope_fails(perturb):
    out, _ = sim.isolated(cases.golden, "tiny-wrap-B2S2", perturb=perturb)
    assert not out.ok, [str(r) for r in out.reports]
