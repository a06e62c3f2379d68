"""The key compressor (`indexer_compressor`, `make_caches`): the family's ratio-4 compressor at
index_head_dim followed by the Hadamard, RoPE at each window's first position (one position
off fails the golden), errors naming the argument with nothing written, and the stream
equivalences of keys and picks: one prefill chunk ≡ uneven chunks ≡ prefill then decode steps
of S = 1, 2, 8 (this package's public functions for the decode steps)."""

import dataclasses

import pytest
import torch

from dsv4_compressor_common import decode_call
from dsv4_compressor_common.hadamard import hadamard
from dsv4_compressor_common.step import compute_reference
from dsv4_compressor_common.testing import call_args, make_inputs, plan_of
from dsv4_compressor_common.testing.indexer_streams import (
    INDEX_PLANS,
    exact_keys,
    index_stream_reports,
    make_index_stream,
    public_decode,
    run_index_stream,
)
from dsv4_core import TINY
from dsv4_core.compare import compare
from dsv4_indexer import indexer, indexer_compressor, make_caches
from dsv4_indexer.cases import KEY_CASES

CASE = KEY_CASES["keys-tiny-decode-S5"]


def _call(inp, **kw):
    args = call_args(inp)
    return indexer_compressor(*args, config=TINY, backend="torch", **kw)


def test_keys_are_the_family_ratio4_entries_at_128_rotated():
    a, b = make_inputs(CASE), make_inputs(CASE)
    out = _call(a)
    plain = decode_call(4, *call_args(b), config=TINY, backend="torch", head_dim=128)
    c = out.closes.reshape(-1)
    assert out.kv.shape == (4, 5, 128) and int(c.sum()) >= 4 and torch.equal(out.closes, plain.closes)
    assert torch.equal(out.kv.reshape(-1, 128)[c].float(), hadamard(plain.kv.reshape(-1, 128)[c].float()))
    assert torch.equal(a["state"], b["state"]) and torch.equal(a["state_pos"], b["state_pos"])


def test_rope_position_off_by_one_fails_the_golden():
    inp = make_inputs(CASE)
    plan = plan_of(CASE, inp)
    x2d = inp["x"].reshape(CASE.tokens, -1)
    w = [inp[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    cfg = CASE.config
    ref = compute_reference(cfg, plan, x2d, *w, inp["state"], rotate=True)
    exact = compute_reference(cfg, plan, x2d, *w, inp["state"], dtype=torch.float64, rotate=True)
    assert compare(ref.entries, exact.entries, ref.entries).ok
    for shift in (plan.closing_pos * 0 + 1, -(plan.rope_pos > 0).long()):  # one late; one early (window 0 stays)
        off = compute_reference(cfg, dataclasses.replace(plan, closing_pos=plan.closing_pos + shift), x2d, *w,
                                inp["state"], rotate=True)
        assert not compare(off.entries, exact.entries, ref.entries).ok


def test_make_caches():
    state, state_pos, cache = make_caches(TINY, state_blocks=3, state_page=4, cmp_blocks=2, cmp_block=8)
    assert state.shape == (3, 4, 512) and state.dtype == torch.float32
    assert (state_pos == -1).all() and state_pos.dtype == torch.int32
    assert cache.shape == (2, 8, 128) and cache.dtype == torch.bfloat16 and not cache.any()


@pytest.mark.parametrize("arg,bad,match", [
    ("wkv", lambda t: t[:128], r"wkv must have shape \[256, 512\]"),
    ("ape", lambda t: t[:, :128], r"ape must have shape \[4, 256\]"),
    ("norm_weight", lambda t: t[:64], r"norm_weight must have shape \[128\]"),
    ("cmp_kv", lambda t: t[..., :64], r"idx_kv_cache must have shape \[\*, \*, 128\]"),
    ("cmp_slot_mapping", lambda t: t[:, :2], r"idx_slot_mapping dim 1 \(S\) must be 5"),
    ("cmp_slot_mapping", lambda t: t.clamp(max=10 ** 6) + 10 ** 6, r"idx_slot_mapping values must be in \[0, \d+\) "
                                                                  r"\(rows of idx_kv_cache\)"),
    ("state_block_table", lambda t: t + 1000, "state_block_table values must be in"),
])
def test_bad_input_names_the_argument_and_writes_nothing(arg, bad, match):
    inp = make_inputs(CASE)
    before = {k: inp[k].clone() for k in ("state", "state_pos", "cmp_kv")}
    inp[arg] = bad(inp[arg])
    with pytest.raises((TypeError, ValueError), match=match):
        _call(inp)
    for k, v in before.items():
        if k != arg:
            assert torch.equal(v.view(torch.uint8) if v.is_floating_point() else v,
                               inp[k].view(torch.uint8) if inp[k].is_floating_point() else inp[k]), k


@pytest.mark.parametrize("plan", list(INDEX_PLANS[1]))
def test_keys_and_picks_equal_one_prefill_chunk(plan):
    n, plans = INDEX_PLANS
    st = make_index_stream(TINY, n)
    single = run_index_stream(st, [("prefill", n)])
    got = run_index_stream(st, plans[plan], decode=public_decode(indexer_compressor, indexer))
    assert (single[2][-1] >= 0).sum() == TINY.index_topk  # the late tokens have more candidates than top-k
    for r in index_stream_reports(st, got, single, exact_keys(st)):
        assert r.ok, str(r)


def test_stream_reports_fail_on_perturbed_keys_and_picks():
    n, plans = INDEX_PLANS
    st = make_index_stream(TINY, n)
    single = run_index_stream(st, [("prefill", n)])
    exact = exact_keys(st)
    cache, tags, picks = run_index_stream(st, plans["prefill-then-decode-S1-S2-S8"],
                                          decode=public_decode(indexer_compressor, indexer))
    bad_picks = picks.clone()
    bad_picks[-1, 0] = -1
    bad_cache = cache.clone()
    row = int(st.table[0]) * st.block
    bad_cache.view(-1, 128)[row] *= 1.1
    bad = {r.name: r.ok for r in index_stream_reports(st, (bad_cache, tags, bad_picks), single, exact)}
    assert bad == {"state_pos": True, "idx_kv_cache": False, "picks": False}
