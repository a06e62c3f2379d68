"""The prefill key compressor (`prefill_indexer_compressor`, `make_caches`) and the stream
equivalences of keys and picks through this package's public functions: one prefill chunk ≡
uneven chunks ≡ prefill then decode steps of S = 1, 2, 8 (the decode steps through the
compressor family's key path and the indexer's golden)."""

import pytest
import torch

from dsv4_compressor_common import prefill_call
from dsv4_compressor_common.hadamard import hadamard
from dsv4_compressor_common.testing.indexer_streams import (
    INDEX_PLANS,
    exact_keys,
    index_stream_reports,
    key_slots,
    make_index_stream,
    public_prefill,
    run_index_stream,
)
from dsv4_core import TINY
from dsv4_prefill_indexer import make_caches, prefill_indexer, prefill_indexer_compressor

STEP = public_prefill(prefill_indexer_compressor, prefill_indexer)


def _args(st, start, n):
    w = [st.keys[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    state, state_pos, cache = st.state.clone(), st.state_pos.clone(), st.cache.clone()
    return [st.x[start:start + n], *w, start, state, state_pos, st.state_table, cache, key_slots(st, start, n)]


def test_keys_are_the_family_entries_rotated():
    st = make_index_stream(TINY, 24)
    a, b = _args(st, 0, 24), _args(st, 0, 24)
    out = prefill_indexer_compressor(*a, config=TINY, backend="torch")
    plain = prefill_call(4, *b, config=TINY, backend="torch", head_dim=128)
    assert out.kv.shape == (24, 128) and int(out.closes.sum()) == 6
    assert torch.equal(out.kv[out.closes].float(), hadamard(plain.kv[out.closes].float()))
    assert torch.equal(a[6], b[6]) and torch.equal(a[7], b[7])  # same state rows and tags


def test_make_caches():
    state, state_pos, cache = make_caches(TINY, state_blocks=2, state_page=8, cmp_blocks=3, cmp_block=4)
    assert state.shape == (2, 8, 512) and (state_pos == -1).all() and cache.shape == (3, 4, 128)


@pytest.mark.parametrize("idx,bad,match", [
    (9, lambda t: t[..., :64], r"idx_kv_cache must have shape \[\*, \*, 128\]"),
    (10, lambda t: t[:3], r"idx_slot_mapping dim 0 \(T\) must be 24"),
    (10, lambda t: t * 0 + 10 ** 6, r"idx_slot_mapping values must be in"),
    (5, lambda t: 3.0, "start_pos must be an int"),
    (1, lambda t: t[:, :64], r"wkv must have shape \[256, 512\]"),
])
def test_bad_input_names_the_argument_and_writes_nothing(idx, bad, match):
    st = make_index_stream(TINY, 24)
    args = _args(st, 0, 24)
    before = [t.clone() for t in args[6:8]] + [args[9].clone()]
    args[idx] = bad(args[idx])
    with pytest.raises((TypeError, ValueError), match=match):
        prefill_indexer_compressor(*args, config=TINY, backend="torch")
    for t, k in zip(before, (6, 7, 9)):
        if k != idx:
            assert torch.equal(t.view(torch.int16) if t.dtype == torch.bfloat16 else t,
                               args[k].view(torch.int16) if args[k].dtype == torch.bfloat16 else args[k])


@pytest.mark.parametrize("plan", list(INDEX_PLANS[1]))
def test_keys_and_picks_equal_one_prefill_chunk(plan):
    n, plans = INDEX_PLANS
    st = make_index_stream(TINY, n)
    single = run_index_stream(st, [("prefill", n)], prefill=STEP)
    got = run_index_stream(st, plans[plan], prefill=STEP)
    for r in index_stream_reports(st, got, single, exact_keys(st)):
        assert r.ok, str(r)
