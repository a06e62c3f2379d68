"""The memory-contract suite (DESIGN.md, "Memory contract"): the kernel path reads and writes
the caches in place, does O(step) host work, reads nothing back with `validate=False`, and
keeps a NaN in an unreferenced state row out of every entry. A module package binds it to
its public function, its kind and its scenarios:

    class TestContract(ContractSuite):
        call, kind, scenarios = staticmethod(compressor_ratio4), "decode", SCENARIOS

With `scenario` a rotate case and `rotate=True` it binds the indexer's key compressor."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pytest
import torch

from dsv4_core import contract, sim

from ..paging import StateMissingError
from ..step import compute_reference
from .golden import CaseSet
from .scenarios import CALL_ARGS, Case, clone_inputs, make_inputs, plan_of, prefill_inputs, straddling_case

CACHES = ("state", "state_pos", "cmp_kv")
SPREAD = 16  # the large caches: 16× the pages, the same reachable contents


def _args(kind: str, inp: dict[str, Any]) -> dict[str, Any]:
    return prefill_inputs(inp) if kind == "prefill" else {k: inp[k] for k in CALL_ARGS}


def spread_caches(inp: dict[str, Any], factor: int = SPREAD) -> dict[str, Any]:
    """The same call over caches `factor`× larger: state page j becomes page j·factor + 1 and
    cmp_kv block j block j·factor + 1 (tables and slot mappings remapped); every other page
    holds NaN (state) or garbage (tags, entries), which the call must neither read nor move."""
    out = clone_inputs(inp)
    st, sp, ck = inp["state"], inp["state_pos"], inp["cmp_kv"]
    big_st = torch.full((st.shape[0] * factor,) + tuple(st.shape[1:]), float("nan"), dtype=st.dtype)
    big_sp = torch.full((sp.shape[0] * factor,) + tuple(sp.shape[1:]), 7, dtype=sp.dtype)
    big_ck = torch.full((ck.shape[0] * factor,) + tuple(ck.shape[1:]), 3.0, dtype=ck.dtype)
    big_st[1::factor] = st
    big_sp[1::factor] = sp
    big_ck[1::factor] = ck
    t = inp["state_block_table"]
    out["state_block_table"] = torch.where(t >= 0, t * factor + 1, t)
    bs = ck.shape[1]
    m = inp["cmp_slot_mapping"]
    out["cmp_slot_mapping"] = torch.where(m >= 0, (m // bs * factor + 1) * bs + m % bs, m)
    out.update(state=big_st, state_pos=big_sp, cmp_kv=big_ck)
    return out


def _rows(cache: torch.Tensor) -> torch.Tensor:
    """A cache [blocks, page, width] as its flat rows [blocks·page, width] (a view)."""
    return cache.view(-1, cache.shape[-1])


def _watch(call: Callable, kind: str, inp: dict[str, Any], cfg, validate: bool):
    with contract.watch(run=False) as w:
        call(*_args(kind, inp).values(), config=cfg, backend="sim", validate=validate)
    return w


def _poison_unreferenced(case: Case, inp: dict[str, Any]) -> dict[str, Any]:
    """NaN in every state row the call neither reads (a window's slot) nor writes."""
    plan = plan_of(case, inp)
    out = clone_inputs(inp)
    flat = _rows(out["state"])
    keep = torch.zeros(flat.shape[0], dtype=torch.bool)
    for rows in (plan.slot_row, plan.state_rows):
        r = rows[rows >= 0]
        keep[r] = True
    flat[~keep] = float("nan")
    return out


def _stale_row(case: Case, inp: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The first state row a window reads, given a stale tag (−1: it holds no position) and
    NaN contents: (inputs, the row)."""
    plan = plan_of(case, inp)
    read = plan.slot_row[plan.slot_row >= 0]
    assert read.numel(), f"{case.name} reads no state row: the stale-tag check needs one"
    row = int(read[0])
    out = clone_inputs(inp)
    out["state_pos"].view(-1)[row] = -1
    _rows(out["state"])[row] = float("nan")
    return out, row


def _values(call: Callable, kind: str, case: Case, rotate: bool) -> dict[str, Any]:
    """In one simulator process: the call with validate=True, with validate=False under
    `no_readback`, with NaN in every unreferenced state row, and with one read row's tag
    stale (validate=False)."""
    cfg = case.config
    base = make_inputs(case)
    stale, stale_row = _stale_row(case, base)
    res = {"stale_row": stale_row}
    for name, inp, validate in (("checked", clone_inputs(base), True), ("unchecked", clone_inputs(base), False),
                                ("poisoned", _poison_unreferenced(case, base), False), ("stale", stale, False)):
        args = _args(kind, inp)
        if validate:
            out = call(*args.values(), config=cfg, backend="sim", validate=True)
        else:
            with contract.no_readback():
                out = call(*args.values(), config=cfg, backend="sim", validate=False)
        res[name] = {"kv": out.kv, "closes": out.closes, **{k: inp[k] for k in CACHES}}
    plan = plan_of(case, base)
    res["written"] = plan.cmp_rows[plan.cmp_rows >= 0]
    ref = clone_inputs(base)
    out = call(*_args(kind, ref).values(), config=cfg, backend="torch")
    res["torch"] = {"kv": out.kv, "closes": out.closes, **{k: ref[k] for k in CACHES}}
    return res


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The bits (NaN-safe equality)."""
    return t.view(torch.int16) if t.dtype == torch.bfloat16 else t.view(torch.int32) if t.dtype == torch.float32 else t


class ContractSuite:
    """Bind `call` (the public function), `kind` ("decode" / "prefill") and `scenarios` (the
    package's CaseSet, whose "tiny-decode-S2" (decode) or straddling (prefill) scenario runs),
    or `scenario` (a Case of its own)."""

    call: Callable
    kind: str
    scenarios: CaseSet | None = None
    scenario: Case | None = None  # a scenario of its own (the key compressor's)
    rotate: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A bound suite's tests share one xdist worker (`--dist loadgroup`), so its class-scoped
        `values` (four simulator calls) runs once, not once per worker."""
        super().__init_subclass__(**kwargs)
        cls.pytestmark = [*cls.__dict__.get("pytestmark", []),
                          pytest.mark.xdist_group(f"{cls.__module__}.{cls.__qualname__}")]

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls) -> Case:
        if cls.scenario is not None:
            return cls.scenario
        if cls.kind == "prefill":
            return straddling_case(list(cls.scenarios.small))
        return cls.scenarios.cases["tiny-decode-S2"]

    @pytest.mark.parametrize("validate", [True, False])
    def test_caches_stay_in_place(self, case, validate):
        """N and 16N pages, same reachable contents: the kernels receive state and cmp_kv as
        their own storage, and the bytes the host prepares do not grow."""
        small = make_inputs(case)
        big = spread_caches(small)
        prepared = []
        for inp in (small, big):
            w = _watch(self.call, self.kind, inp, case.config, validate)
            assert len(w.launches) == 2, [la.name for la in w.launches]
            assert w.launches[0].receives(inp["state"]), "the project kernel must write state in place"
            assert w.launches[1].receives(inp["state"]), "the pool kernel must read state in place"
            assert w.launches[1].receives(inp["cmp_kv"]), "the pool kernel must write cmp_kv in place"
            prepared.append(w.prepared_bytes(inp["state"], inp["state_pos"], inp["cmp_kv"]))
        assert prepared[1] == prepared[0], f"host-prepared bytes grew with the caches: {prepared}"

    def test_validate_false_reads_nothing_back(self, case):
        """validate=False under `no_readback` runs (no simulator: the host side alone)."""
        args = _args(self.kind, make_inputs(case))
        with contract.watch(run=False) as w, contract.no_readback():
            self.call(*args.values(), config=case.config, backend="sim", validate=False)
        assert len(w.launches) == 2

    def test_refused_call_launches_nothing_and_writes_nothing(self, case):
        """validate=True on the kernel path: stale tags (StateMissingError) and a state page
        shared by two requests are refused before any launch; the caches stay bit-identical."""
        inp = make_inputs(case)
        inp["state_pos"].fill_(-1)  # nothing stored: a window needing earlier positions cannot pool
        bad = [(inp, StateMissingError)]
        if case.batch > 1:
            shared = make_inputs(case)
            shared["state_block_table"][1, 0] = shared["state_block_table"][0, 0]
            bad.append((shared, ValueError))
        for b, exc in bad:
            before = {k: _bits(b[k]).clone() for k in CACHES}
            args = _args(self.kind, b)
            with contract.watch(run=False) as w, pytest.raises(exc):
                self.call(*args.values(), config=case.config, backend="sim", validate=True)
            assert not w.launches
            for k in CACHES:
                assert torch.equal(_bits(b[k]), before[k]), k

    @pytest.fixture(scope="class")
    @classmethod
    def values(cls, case):
        res, _ = sim.isolated(_values, cls.call, cls.kind, case, cls.rotate)
        return res

    def test_validate_false_gives_the_bits_of_validate_true(self, values):
        a, b = values["checked"], values["unchecked"]
        for k in ("kv", "closes", *CACHES):
            assert torch.equal(_bits(a[k]), _bits(b[k])), k

    def test_kernel_path_matches_the_torch_golden(self, values):
        """Same closes and tags as the golden; entries and state rows within a bf16 step."""
        a, t = values["checked"], values["torch"]
        assert torch.equal(a["closes"], t["closes"]) and torch.equal(a["state_pos"], t["state_pos"])
        rows = values["written"]
        got = _rows(a["cmp_kv"])[rows].float()
        want = _rows(t["cmp_kv"])[rows].float()
        assert torch.allclose(got, want, atol=0.1, rtol=0.05), (got - want).abs().max()
        assert torch.equal(a["kv"].float().abs().sum(-1) > 0, t["kv"].float().abs().sum(-1) > 0)

    def test_validate_false_drops_a_state_row_whose_tag_is_stale(self, values, case):
        """validate=False, one state row the windows read tagged -1 and filled with NaN: its
        slots are absent (as validate=True would refuse them, the kernel never pools them).
        The windows that read it match the golden pooled without those slots; every other
        entry and every state row written keep the bits of the clean call."""
        a, s, row = values["checked"], values["stale"], values["stale_row"]
        base = make_inputs(case)
        plan = plan_of(case, base)
        drop = plan.slot_row == row
        hit = drop.any(1)
        assert hit.any()
        dropped = dataclasses.replace(plan, slot_valid=plan.slot_valid & ~drop,
                                      slot_row=torch.where(drop, torch.full_like(plan.slot_row, -1), plan.slot_row))
        x2d = base["x"].reshape(case.batch * case.seq, -1)
        w = [base[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
        want = compute_reference(case.config, dropped, x2d, *w, base["state"], rotate=case.rotate).entries
        rows = plan.cmp_rows
        assert (rows[hit] >= 0).all(), "the windows reading the stale row must write an entry"
        got = _rows(s["cmp_kv"])[rows[hit]].float()
        assert not torch.isnan(got).any(), "a stale row's NaN reached an entry"
        assert torch.allclose(got, want[hit], atol=0.1, rtol=0.05), (got - want[hit]).abs().max()
        keep = rows[~hit & (rows >= 0)]
        assert torch.equal(_bits(_rows(s["cmp_kv"])[keep]), _bits(_rows(a["cmp_kv"])[keep]))
        written = plan.state_rows[plan.state_rows >= 0]
        assert torch.equal(_bits(_rows(s["state"])[written]), _bits(_rows(a["state"])[written]))
        assert torch.equal(s["state_pos"].view(-1)[written], a["state_pos"].view(-1)[written])

    def test_nan_in_an_unreferenced_state_row_never_reaches_an_entry(self, values):
        a, p = values["checked"], values["poisoned"]
        assert torch.equal(_bits(a["kv"]), _bits(p["kv"]))
        assert torch.equal(_bits(a["cmp_kv"]), _bits(p["cmp_kv"]))
        assert not torch.isnan(p["kv"].float()).any()
