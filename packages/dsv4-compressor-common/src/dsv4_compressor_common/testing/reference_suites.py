"""The reference suites: semantics of the golden, for either ratio. A module package binds
one to its public function(s) and its scenarios:

    class TestReference(DecodeReferenceSuite):
        call, make_caches, scenarios = staticmethod(compressor_ratio4), staticmethod(make_caches), SCENARIOS

Decode: the golden vs an independent formulation (the official model's decode loop),
chunking equivalence, APE and the RoPE position fail the golden when perturbed, the state
rows hold tagged projections, outputs mark the closing tokens, the caches' layout. Prefill:
one prefill ≡ uneven chunks ≡ prefill then decode steps, the straddling window reads the
stored state, a one-element start_pos tensor."""

from __future__ import annotations

import dataclasses
from typing import Callable

import pytest
import torch

from dsv4_core import TINY
from dsv4_core.compare import compare

from ..pooling import coff
from ..step import compute_reference
from .golden import CaseSet
from .official import official_decode
from .scenarios import call_args, first_state_slots, make_inputs, plan_of, prefill_inputs, straddling_case
from .streams import PLANS, make_stream, run_stream, stream_reports


class _Streams:
    call: Callable
    scenarios: CaseSet
    kind: str  # "decode" or "prefill": which of the ratio's stream plans

    def pytest_generate_tests(self, metafunc):
        if "stream_plan" in metafunc.fixturenames:
            metafunc.parametrize("stream_plan", list(getattr(PLANS[self.scenarios.ratio], self.kind)[1]))

    def test_chunking_is_equivalent(self, stream_plan):
        n, plans = getattr(PLANS[self.scenarios.ratio], self.kind)
        for r in stream_reports(TINY, self.scenarios.ratio, n, plans[stream_plan]):
            assert r.ok, str(r)


def golden_values(case, inp, plan, *, dtype: torch.dtype = torch.float32, **weights):
    """The golden (float32; float64: the exact evaluation) of a case's inputs under `plan`,
    with any weight replaced."""
    w = [weights.get(k, inp[k]) for k in ("wkv", "wgate", "ape", "norm_weight")]
    x2d = inp["x"].reshape(case.tokens, -1)
    return compute_reference(case.config, plan, x2d, *w, inp["state"], dtype=dtype)


class DecodeReferenceSuite(_Streams):
    """Bind `call` (the decode function), `make_caches` and `scenarios` (with cases
    "tiny-decode-S1" and "tiny-decode-S2")."""

    make_caches: Callable
    kind = "decode"

    def test_matches_official_state_machine(self):
        R = self.scenarios.ratio
        n, steps = PLANS[R].official
        st = make_stream(TINY, R, n)
        _, _, cmp_kv = run_stream(st, steps)
        ref = official_decode(TINY, R, st.weights, st.x)
        assert sorted(ref) == [p for p in range(n) if (p + 1) % R == 0]
        for p, entry in ref.items():
            c = p // R
            row = int(st.cmp_table[c // st.cmp_block]) * st.cmp_block + c % st.cmp_block
            got = cmp_kv.view(-1, TINY.head_dim)[row].float()
            assert (got - entry).abs().max() <= 2 ** -6 * entry.abs().max(), p  # ≤ 1 bf16 ulp of the largest lane

    def test_perturbed_ape_and_rope_position_fail_the_golden(self):
        case = self.scenarios.cases["tiny-decode-S2"]
        inp = make_inputs(case)
        plan = plan_of(case, inp)
        exact = golden_values(case, inp, plan, dtype=torch.float64)
        ref = golden_values(case, inp, plan)
        assert compare(ref.entries, exact.entries, ref.entries).ok
        bad = golden_values(case, inp, plan, ape=torch.roll(inp["ape"], 1, dims=0))
        assert not compare(bad.entries, exact.entries, ref.entries).ok
        assert not compare(bad.score_rows, exact.score_rows, ref.score_rows).ok
        # a window rotated at the wrong RoPE position (the closing token instead of the window start)
        late = dataclasses.replace(plan, closing_pos=plan.closing_pos + case.ratio - 1)
        moved = golden_values(case, inp, late)
        assert not compare(moved.entries, exact.entries, ref.entries).ok

    def test_state_rows_hold_tagged_projections(self):
        case = self.scenarios.cases["tiny-decode-S1"]
        inp = make_inputs(case)
        out = self.call(*call_args(inp), config=TINY, backend="torch")
        pos, page, C = inp["start_pos"], case.page, coff(case.ratio) * TINY.head_dim
        assert torch.equal(out.closes[:, 0], (pos + 1) % case.ratio == 0)
        rows = inp["state_block_table"][torch.arange(len(pos)), pos // page].long() * page + pos % page
        assert torch.equal(inp["state_pos"].view(-1)[rows].long(), pos)
        x = inp["x"][:, 0].float()
        kv = inp["state"].view(-1, 2 * C)[rows]
        assert torch.allclose(kv[:, :C], x @ inp["wkv"].float().T, atol=1e-5)
        assert torch.allclose(kv[:, C:], x @ inp["wgate"].float().T + inp["ape"][pos % case.ratio], atol=1e-5)

    def test_output_marks_closing_tokens(self):
        case = self.scenarios.cases["tiny-decode-S2"]
        inp = make_inputs(case)
        out = self.call(*call_args(inp), config=TINY, backend="torch")
        pos = inp["start_pos"][:, None] + torch.arange(case.seq)
        assert torch.equal(out.closes, (pos + 1) % case.ratio == 0)
        assert (out.kv[~out.closes] == 0).all()
        e = out.kv[out.closes].float()  # the RoPE position is checked by test_matches_official_state_machine
        rms = e[:, :TINY.nope_dim].pow(2).mean(-1)
        assert torch.isfinite(rms).all() and (rms > 0).all()

    def test_make_caches_layout(self):
        page, C = self.scenarios.small[0].page, coff(self.scenarios.ratio) * TINY.head_dim
        state, state_pos, cmp_kv = self.make_caches(TINY, state_blocks=3, state_page=page, cmp_blocks=2, cmp_block=8)
        assert state.shape == (3, page, 2 * C) and state.dtype == torch.float32
        assert (state_pos == -1).all() and state_pos.dtype == torch.int32
        assert cmp_kv.shape == (2, 8, TINY.head_dim) and cmp_kv.dtype == torch.bfloat16


class PrefillReferenceSuite(_Streams):
    """Bind `call` (the prefill function) and `scenarios` (with a small case whose chunk
    starts inside a window and closes it)."""

    kind = "prefill"

    @pytest.fixture
    def case(self):
        return straddling_case(list(self.scenarios.small))

    def test_straddling_window_reads_the_state(self, case):
        """Changing the stored state of a position before the chunk changes the straddling
        window's entry (and only the windows that need it)."""
        inp = make_inputs(case)
        _, pos = first_state_slots(case, inp)
        args = prefill_inputs(inp)

        def call(state):
            a = dict(args, state=state.clone(), state_pos=args["state_pos"].clone(), cmp_kv=args["cmp_kv"].clone())
            return self.call(*a.values(), config=TINY, backend="torch")

        base = call(args["state"])
        st2 = args["state"].clone()
        p, page = int(pos[0]), st2.shape[1]
        row = int(args["state_block_table"][p // page]) * page + p % page
        st2.view(-1, st2.shape[-1])[row] += 1.0
        moved = call(st2)
        first = int(torch.nonzero(base.closes)[0])
        assert not torch.equal(base.kv[first], moved.kv[first])
        assert torch.equal(base.kv[first + 1:], moved.kv[first + 1:]) or case.ratio == 4

    def test_start_pos_accepts_one_element_tensor(self, case):
        a = prefill_inputs(make_inputs(case))
        a["start_pos"] = torch.tensor([a["start_pos"]])
        out = self.call(*a.values(), config=TINY, backend="torch")
        assert out.kv.shape == (a["x"].shape[0], TINY.head_dim) and out.closes.any()
