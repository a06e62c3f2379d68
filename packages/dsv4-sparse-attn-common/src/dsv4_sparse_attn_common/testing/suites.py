"""pytest suites the sparse-attention packages share. A package runs one by subclassing it in
its own test module with a small adapter:

    from dsv4_sparse_attn_common.testing.suites import CompressedDecodeApiContract
    from dsv4_sparse_attn_hca import cases

    class TestApi(CompressedDecodeApiContract):
        cases = cases                  # the package's cases module: CASES, make_inputs, call
        case = "tiny-wrap-B2S2"        # the scenario the contract perturbs

- `ApiContract` (every package): config / backend errors, no silent npu fallback, devices,
  nothing written on error;
- `DecodeApiContract` (+ bad tensors, tables and positions of a decode step) and
  `CompressedDecodeApiContract` (+ the compressed cache's arguments, CSA / HCA);
- `KernelGoldenSuite`: the kernel on the CPU simulator vs the golden for the package's
  pytest subset `names` of its small-tier golden cases, one process per kernel run;
- `MemoryContractSuite` (every package): NaN / Inf in unreferenced cache rows never reach
  an output (torch and sim), the kernel receives the caches themselves and the host
  prepares as many bytes for N as for 16N pages, validate=False reads nothing back and
  gives validate=True's output. `cases.call` takes `validate=` as a keyword.
"""

from __future__ import annotations

import pytest
import torch

from dsv4_core import TINY, BackendUnavailable, contract, sim
from dsv4_core.backends import npu_unavailable_reasons


class ApiContract:
    """Bad input gets a clear error naming the argument; nothing is written."""

    cases = None  # the package's cases module
    case = ""  # the TINY scenario whose inputs the tests break

    @pytest.fixture
    def inp(self):
        return self.cases.make_inputs(self.cases.CASES[self.case])

    def call(self, inp, cfg=TINY, backend="torch"):
        return self.cases.call(inp, cfg, backend)

    def test_config_and_backend_errors(self, inp):
        with pytest.raises(TypeError, match="config must be a dsv4_core.AttentionConfig"):
            self.call(inp, {"num_heads": 8})
        with pytest.raises(ValueError, match="backend must be one of"):
            self.call(inp, TINY, "cuda")

    def test_npu_backend_refuses_instead_of_falling_back(self, inp):
        if not npu_unavailable_reasons():
            pytest.skip("an NPU is present")
        with pytest.raises(BackendUnavailable, match="npu"):
            self.call(inp, TINY, "npu")

    def test_device_mismatch(self, inp):
        with pytest.raises(ValueError, match="one device"):
            self.call(dict(inp, wo_b=inp["wo_b"].to("meta")))

    def test_nothing_written_on_error(self, inp):
        before = inp["kv_cache"].clone()
        with pytest.raises(ValueError):
            self.call(dict(inp, kv=inp["kv"][:1]))
        assert torch.equal(before, inp["kv_cache"])


class DecodeApiContract(ApiContract):
    """The decode step's arguments; `case` must be a TINY scenario of B = 2 requests × S = 2
    tokens (the expected shapes below)."""

    def test_contract_case_geometry(self, inp):
        assert self.cases.CASES[self.case].config == TINY
        assert tuple(inp["positions"].shape) == (2, 2) and tuple(inp["kv_cache"].shape[:2]) == (3, TINY.window)

    @pytest.mark.parametrize("arg,bad,match", [
        ("q", lambda t: t.float(), "q must have dtype bfloat16"),
        ("q", lambda t: t[:, :3], r"q must have shape \[4, 8, 512\]"),
        ("kv", lambda t: t[:3], r"kv must have shape \[4, 512\]"),
        ("kv_cache", lambda t: t[:, :64], r"kv_cache must have shape \[\*, 128, 512\]"),
        ("block_table", lambda t: t.float(), "block_table must have dtype int32 or int64"),
        ("block_table", lambda t: t[:1], r"block_table must have shape \[2\]"),
        ("attn_sink", lambda t: t.bfloat16(), "attn_sink must have dtype float32"),
        ("wo_a", lambda t: t[:1], r"wo_a must have shape \[2, 128, 2048\]"),
        ("wo_b", lambda t: t.T.contiguous(), r"wo_b must have shape \[512, 256\]"),
        ("positions", lambda t: t.reshape(-1), r"positions must be 2-D \[B, S\]"),
        ("positions", lambda t: t.flip(1), "consecutive positions"),
        ("positions", lambda t: t - 1000, "positions must be >= 0"),
    ])
    def test_bad_tensor(self, inp, arg, bad, match):
        with pytest.raises((TypeError, ValueError), match=match):
            self.call(dict(inp, **{arg: bad(inp[arg])}))

    def test_block_table_out_of_range_refused(self, inp):
        bt = inp["block_table"].clone()
        bt[1] = inp["kv_cache"].shape[0]
        with pytest.raises(ValueError, match=r"window block table entries must be in \[0, 3\)"):
            self.call(dict(inp, block_table=bt))

    def test_position_past_max_refused(self, inp):
        p = inp["positions"] + TINY.max_position_embeddings
        with pytest.raises(ValueError, match="positions must be in"):
            self.call(dict(inp, positions=p))


class CompressedDecodeApiContract(DecodeApiContract):
    """A decode step of a CSA / HCA layer: the compressed cache and its block table."""

    def test_cmp_args(self, inp):
        with pytest.raises(TypeError, match="cmp_kv must have dtype bfloat16"):
            self.call(dict(inp, cmp_kv=inp["cmp_kv"].float()))
        with pytest.raises(ValueError, match=r"cmp_block_table must have shape \[2, \*\]"):
            self.call(dict(inp, cmp_block_table=inp["cmp_block_table"][:1]))
        bt = inp["cmp_block_table"].clone()
        bt[1, 0] = 99
        with pytest.raises(ValueError, match="outside the compressed cache"):
            self.call(dict(inp, cmp_block_table=bt))
        with pytest.raises(ValueError, match="capacity"):  # entries the table cannot address
            self.call(dict(inp, cmp_block_table=bt[:, :0]))


class KernelGoldenSuite:
    """The pypto kernel on the CPU simulator vs the golden, one process per kernel run, for
    `names` (a subset of the package's small-tier golden cases; `nox -s golden` runs them
    all)."""

    cases = None  # the package's cases module
    names: tuple = ()

    def pytest_generate_tests(self, metafunc):
        if "name" in metafunc.fixturenames:
            metafunc.parametrize("name", self.names)

    def test_subset_is_in_the_golden_cases(self):
        assert self.names and set(self.names) <= {name for name, tier in self.cases.GOLDEN_CASES if tier == "small"}

    def test_kernel_matches_golden(self, name):
        out, _ = sim.isolated(self.cases.golden, name)
        assert out.ok, [str(r) for r in out.reports]
        assert out.run is not None and out.run.values and out.run.aicore_us > 0


class MemoryContractSuite:
    """The memory contract (DESIGN.md) of one public entry point on the scenario `case` (a
    small-tier case of the package's `cases`, whose `call(inputs, cfg, backend, **kw)`
    forwards keywords to the public function)."""

    cases = None  # the package's cases module
    case = ""

    @pytest.fixture
    def inp(self):
        from .contract import with_hole

        return with_hole(self.cases.make_inputs(self.cases.CASES[self.case]))

    @property
    def cfg(self):
        return self.cases.CASES[self.case].config

    def call(self, inp, backend="torch", **kw):
        return self.cases.call(inp, self.cfg, backend, **kw)

    def test_nan_in_unreferenced_rows_never_reaches_the_output_torch(self, inp):
        from .contract import golden_of, poisoned

        clean = self.call(inp)
        bad = poisoned(self.cfg, inp, golden_of(self.cases))
        assert not torch.isfinite(bad["kv_cache"].float()).all()  # the caches really are poisoned
        out = self.call(bad)
        assert torch.isfinite(out.float()).all() and torch.equal(out, clean)
        # … and the check can fail: a NaN in a referenced row does reach the output
        hit = self.call(poisoned(self.cfg, inp, golden_of(self.cases), referenced=True))
        assert not torch.isfinite(hit.float()).all()

    def test_nan_isolation_and_validate_false_on_simulator(self, inp):
        from .contract import sim_contract_run

        r, _ = sim.isolated(sim_contract_run, self.cases.__name__, self.case)
        ref = self.call(inp)
        assert torch.isfinite(r["clean"].float()).all()
        assert torch.isfinite(r["poisoned"].float()).all() and torch.equal(r["poisoned"], r["clean"])
        assert torch.equal(r["unvalidated"], r["clean"])
        # the kernel's output is the golden's within bf16 rounding, not some other finite array
        err = (r["clean"].float() - ref.float()).abs().max()
        assert err <= 2 ** -5 * ref.float().abs().max()

    def test_caches_stay_in_place(self, inp):
        from .contract import caches, spread

        big = spread(inp, 16)
        prepared = []
        for case_inp in (inp, big):
            with contract.watch(run=False) as w:
                self.call(case_inp, "sim")
            assert len(w.launches) == 1
            for cache in caches(case_inp):
                assert w.receives(cache)  # the cache's own storage, not a copy
                assert not w.receives(cache.clone())  # … which a copy would not pass
            prepared.append(w.prepared_bytes(*caches(case_inp)))
            assert w.prepared_bytes() >= prepared[-1] + sum(c.numel() * c.element_size() for c in caches(case_inp))
        assert prepared[0] == prepared[1], prepared  # host bytes do not grow with the caches
        # the spread caches hold the same reachable contents (the golden agrees) …
        assert torch.equal(self.call(big), self.call(inp))

    def test_validate_false_reads_nothing_back(self, inp):
        from .contract import spread

        for case_inp in (inp, spread(inp, 16)):
            with contract.no_readback(), contract.watch(run=False) as w:
                self.call(case_inp, "sim", validate=False)
            assert len(w.launches) == 1
        with pytest.raises(contract.ReadBackError):  # the guard sees validate=True's checks
            with contract.no_readback(), contract.watch(run=False):
                self.call(inp, "sim")


class StepIsolationSuite:
    """One request's fresh kv stays in that request (sim): a NaN in the first request's
    step rows leaves every other request's output bit-identical (a window column that
    reads nothing holds a row the token itself references, never another request's), and
    does reach the first request's own output. `case`: a decode step of B ≥ 2 requests in
    which a later request's windows have holes (early positions)."""

    cases = None
    case = ""

    def test_one_requests_fresh_kv_stays_in_that_request_on_simulator(self):
        from .contract import sim_step_isolation_run

        r, _ = sim.isolated(sim_step_isolation_run, self.cases.__name__, self.case)
        B, S = r["positions"].shape
        assert B >= 2 and bool((r["positions"][1:] < self.cases.CASES[self.case].config.window - 1).any())
        assert torch.isfinite(r["clean"].float()).all()
        assert torch.equal(r["poisoned"][S:], r["clean"][S:])
        assert not torch.isfinite(r["poisoned"][:S].float()).all()  # … where its own tokens read it
