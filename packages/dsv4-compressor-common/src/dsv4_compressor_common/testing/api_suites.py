"""The API-contract suites: bad input gets a clear error naming the argument, and the caches
stay bit-identical. A module package binds one to its public function and its scenarios:

    class TestApi(DecodeApiSuite):
        call, scenarios = staticmethod(compressor_ratio4), SCENARIOS

The expected messages are derived from the ratio (the other ratio's weights, the widths) and
from the package's scenarios (which request reads which position from the state)."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from dsv4_core import TINY, BackendUnavailable
from dsv4_core.backends import npu_unavailable_reasons

from ..paging import StateMissingError
from ..pooling import coff
from .golden import CaseSet
from .scenarios import CALL_ARGS, first_state_slots, make_inputs, make_weights, prefill_inputs, straddling_case

CACHES = ("state", "state_pos", "cmp_kv")


def _bits(t):
    return t.view(torch.int16) if t.dtype == torch.bfloat16 else t.view(torch.int32)


def geometry(ratio: int, cfg=TINY) -> dict[str, int]:
    """Widths for the messages: R, the other ratio, C (projection width), its and the other
    ratio's, D (hidden size)."""
    other = 4 if ratio == 128 else 128
    return {"R": ratio, "other": other, "C": coff(ratio) * cfg.head_dim, "C2": 2 * coff(ratio) * cfg.head_dim,
            "Co": coff(other) * cfg.head_dim, "D": cfg.hidden_size}


class _Refusals:
    call: Callable
    scenarios: CaseSet

    def _call(self, inp, **kw):
        args = {k: inp[k] for k in CALL_ARGS}
        args.update({k: v for k, v in kw.items() if k in args})
        opts = {"config": TINY, "backend": "torch"}
        opts.update({k: v for k, v in kw.items() if k not in args})
        return self.call(*args.values(), **opts)

    def _refused(self, inp, exc, match, **kw):
        before = {k: _bits(inp[k]).clone() for k in CACHES}
        with pytest.raises(exc, match=match):
            self._call(inp, **kw)
        for k in CACHES:
            assert torch.equal(_bits(inp[k]), before[k]), f"{k} was modified by a refused call"


DECODE_BAD = [
    ("x", lambda t, g: t.float(), "x must have dtype bfloat16, got float32"),
    ("x", lambda t, g: t[..., :100], r"x must have shape \[B, S, {D}\]"),
    ("wkv", lambda t, g: t.repeat(2, 1)[:g["Co"]],
     r"wkv must have shape \[{C}, {D}\], got \[{Co}, {D}\].*ratio-{other} compressor"),
    ("wgate", lambda t, g: t.float(), "wgate must have dtype bfloat16"),
    ("ape", lambda t, g: torch.zeros(g["other"], g["Co"]), r"ape must have shape \[{R}, {C}\].*wrong compress ratio"),
    ("norm_weight", lambda t, g: t[:10], r"norm_weight must have shape \[512\]"),
    ("start_pos", lambda t, g: t[:3], r"start_pos dim 0 \(B\) must be {B}"),
    ("state", lambda t, g: t[..., :g["C"]], r"state must have shape \[\*, \*, {C2}\]"),
    ("state_pos", lambda t, g: t.long(), "state_pos must have dtype int32"),
    ("cmp_kv", lambda t, g: t.float(), "cmp_kv must have dtype bfloat16"),
    ("cmp_slot_mapping", lambda t, g: t[:, :1], r"cmp_slot_mapping dim 1 \(S\) must be 2"),
    ("state_block_table", lambda t, g: t[:2], r"state_block_table dim 0 \(B\) must be {B}"),
]


class DecodeApiSuite(_Refusals):
    """Bind `call` (the decode function) and `scenarios` (the package's CaseSet, with a
    "tiny-decode-S2" case of S = 2 whose requests overlap and close windows)."""

    @pytest.fixture
    def case(self):
        return self.scenarios.cases["tiny-decode-S2"]

    @pytest.fixture
    def inp(self, case):
        return make_inputs(case)

    @pytest.mark.parametrize("arg,bad,match", DECODE_BAD)
    def test_bad_tensor(self, case, inp, arg, bad, match):
        g = dict(geometry(case.ratio), B=case.batch)
        self._refused(inp, (TypeError, ValueError), match.format(**g), **{arg: bad(inp[arg], g)})

    def test_wrong_ratio_weights(self, case, inp):
        """Weights of the other ratio's compressor."""
        g = geometry(case.ratio)
        w = make_weights(TINY, g["other"], torch.Generator().manual_seed(1))
        self._refused(inp, ValueError, f"ratio-{g['other']} compressor", wkv=w["wkv"], wgate=w["wgate"])
        self._refused(inp, ValueError, r"ape must have shape \[{R}, {C}\]".format(**g), ape=w["ape"])

    def test_out_of_range_cmp_slot(self, inp):
        slot = inp["cmp_slot_mapping"].clone()
        b, s = torch.nonzero(slot >= 0)[0].tolist()
        slot[b, s] = inp["cmp_kv"].shape[0] * inp["cmp_kv"].shape[1]
        self._refused(inp, ValueError, r"cmp_slot_mapping values must be in \[0, \d+\)", cmp_slot_mapping=slot)
        slot[b, s] = -2
        self._refused(inp, ValueError, "got -2", cmp_slot_mapping=slot)

    def test_out_of_range_state_block(self, inp):
        t = inp["state_block_table"].clone()
        t[0, 0] = inp["state"].shape[0]
        self._refused(inp, ValueError, r"state_block_table values must be in \[0, \d+\) or -1", state_block_table=t)

    def test_block_table_too_short(self, inp):
        self._refused(inp, ValueError, "pages per request",
                      state_block_table=inp["state_block_table"][:, :2].contiguous())

    def test_missing_state_page(self, case, inp):
        """The first window that reads the state: unmap the page of the last position it
        reads; the first position it needs on that page is reported."""
        b, pos = first_state_slots(case, inp)
        page = case.page
        lost = int(pos[-1]) // page
        first = int(pos[pos // page == lost][0])
        t = inp["state_block_table"].clone()
        t[b, lost] = -1
        self._refused(inp, StateMissingError, rf"state page missing: request {b} needs position {first}\b",
                      state_block_table=t)

    def test_stale_state_row(self, case, inp):
        b, pos = first_state_slots(case, inp)
        p, page = int(pos[0]), case.page
        sp = inp["state_pos"].clone()
        row = int(inp["state_block_table"][b, p // page]) * page + p % page
        sp.view(-1)[row] = -1
        self._refused(inp, StateMissingError, rf"holds no position, but request {b} needs position {p}\b", state_pos=sp)
        sp.view(-1)[row] = 1002
        self._refused(inp, StateMissingError, "holds position 1002", state_pos=sp)

    def test_duplicate_rows(self, case, inp):
        slot = inp["cmp_slot_mapping"].clone()
        idx = torch.nonzero(slot >= 0)
        slot[tuple(idx[1])] = slot[tuple(idx[0])]
        self._refused(inp, ValueError, "written by more than one token", cmp_slot_mapping=slot)
        s, S = case.starts, case.seq  # two requests whose new positions overlap write one state row
        i, j = next((i, j) for i in range(len(s)) for j in range(i + 1, len(s)) if abs(s[i] - s[j]) < S)
        t = inp["state_block_table"].clone()
        t[j] = t[i]
        self._refused(inp, ValueError, "is listed more than once", state_block_table=t)

    def test_requests_sharing_a_state_page(self, inp):
        """Two requests on one state page at different offsets would each pass the other's
        rows off as their own (the tags hold positions, not requests): refused."""
        t = inp["state_block_table"].clone()
        if t.shape[0] < 2:
            pytest.skip("one request")
        page = int(t[0][t[0] >= 0][0])
        t[1, -1] = page
        self._refused(inp, ValueError, rf"state page {page} is listed more than once", state_block_table=t)

    def test_positions_past_the_model(self, inp):
        sp = inp["start_pos"].clone()
        sp[0] = TINY.max_position_embeddings - 1
        self._refused(inp, ValueError, "max_position_embeddings", start_pos=sp)

    def test_minus_one_slot_is_not_written_but_state_is(self, inp):
        slot = torch.full_like(inp["cmp_slot_mapping"], -1)
        cmp_before = inp["cmp_kv"].clone()
        out = self._call(inp, cmp_slot_mapping=slot)
        assert out.closes.any() and torch.equal(inp["cmp_kv"], cmp_before)
        assert int((inp["state_pos"] >= 0).sum()) > 0

    def test_empty_config_backend_errors(self, inp):
        self._refused(inp, ValueError, "at least one request", x=inp["x"][:, :0],
                      cmp_slot_mapping=inp["cmp_slot_mapping"][:, :0])
        self._refused(inp, TypeError, "config must be a dsv4_core.AttentionConfig", config={"hidden_size": 512})
        self._refused(inp, ValueError, "backend must be one of", backend="cuda")
        self._refused(inp, ValueError, "must be contiguous",
                      state=inp["state"].transpose(0, 1).contiguous().transpose(0, 1))

    def test_npu_backend_refuses_instead_of_falling_back(self, inp):
        if not npu_unavailable_reasons():
            pytest.skip("an NPU is present")
        self._refused(inp, BackendUnavailable, "npu", backend="npu")


PREFILL_BAD = [
    ("x", lambda t, g: t[None], r"x must be 2-D"),
    ("state_block_table", lambda t, g: t[None], "state_block_table must be 1-D"),
    ("cmp_slot_mapping", lambda t, g: t[:-1], r"cmp_slot_mapping dim 0 \(T\) must be"),
    ("start_pos", lambda t, g: float(t), "start_pos must be an int"),
    ("wkv", lambda t, g: torch.zeros(g["Co"], g["D"], dtype=torch.bfloat16), "ratio-{other} compressor"),
]


class PrefillApiSuite(_Refusals):
    """Bind `call` (the prefill function) and `scenarios` (the package's CaseSet, with a
    small case whose chunk starts inside a window and closes it)."""

    @pytest.fixture
    def case(self):
        return straddling_case(list(self.scenarios.small))

    @pytest.fixture
    def inp(self, case):
        return prefill_inputs(make_inputs(case))

    @pytest.mark.parametrize("arg,bad,match", PREFILL_BAD)
    def test_bad_input(self, case, inp, arg, bad, match):
        g = geometry(case.ratio)
        self._refused(inp, (TypeError, ValueError), match.format(**g), **{arg: bad(inp[arg], g)})

    def test_missing_history_for_a_straddling_window(self, case, inp):
        sp = inp["state_pos"].clone()
        sp.fill_(-1)  # nothing stored: the window straddling the chunk start cannot be pooled
        self._refused(inp, StateMissingError, "holds no position", state_pos=sp)
        _, pos = first_state_slots(case, make_inputs(case))
        t = inp["state_block_table"].clone()
        t[int(pos[0]) // inp["state"].shape[1]] = -1
        self._refused(inp, StateMissingError, "state page missing", state_block_table=t)

    def test_out_of_range_slot(self, inp):
        slot = inp["cmp_slot_mapping"].clone()
        slot[int(torch.nonzero(slot >= 0)[0])] = 10 ** 6
        self._refused(inp, ValueError, "cmp_slot_mapping values must be in", cmp_slot_mapping=slot)
        t = inp["state_block_table"].clone()
        t[-1] = 10 ** 6
        self._refused(inp, ValueError, "state_block_table values must be in", state_block_table=t)
