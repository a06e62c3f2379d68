"""Bad input gets a clear error naming the argument, and the caches stay bit-identical."""

import pytest
import torch

from dsv4_compressor_ratio4 import StateMissingError, compressor_ratio4
from dsv4_compressor_ratio4.cases import CASES
from dsv4_compressor_ratio128 import casekit
from dsv4_core import TINY, BackendUnavailable

CACHES = ("state", "state_pos", "cmp_kv")


@pytest.fixture
def inp():
    return casekit.make_inputs(CASES["tiny-decode-S2"])


def _bits(t):
    return t.view(torch.int16) if t.dtype == torch.bfloat16 else t.view(torch.int32)


def _call(inp, **kw):
    args = {k: inp[k] for k in casekit.CALL_ARGS}
    args.update({k: v for k, v in kw.items() if k in args})
    opts = {"config": TINY, "backend": "torch"}
    opts.update({k: v for k, v in kw.items() if k not in args})
    return compressor_ratio4(*args.values(), **opts)


def _refused(inp, exc, match, **kw):
    before = {k: _bits(inp[k]).clone() for k in CACHES}
    with pytest.raises(exc, match=match):
        _call(inp, **kw)
    for k in CACHES:
        assert torch.equal(_bits(inp[k]), before[k]), f"{k} was modified by a refused call"


@pytest.mark.parametrize("arg,bad,match", [
    ("x", lambda t: t.float(), "x must have dtype bfloat16, got float32"),
    ("x", lambda t: t[..., :100], r"x must have shape \[B, S, 512\]"),
    ("wkv", lambda t: t[:512], r"wkv must have shape \[1024, 512\], got \[512, 512\].*ratio-128 compressor"),
    ("wgate", lambda t: t.float(), "wgate must have dtype bfloat16"),
    ("ape", lambda t: torch.zeros(128, 512), r"ape must have shape \[4, 1024\].*wrong compress ratio"),
    ("norm_weight", lambda t: t[:10], r"norm_weight must have shape \[512\]"),
    ("start_pos", lambda t: t[:3], r"start_pos dim 0 \(B\) must be 7"),
    ("state", lambda t: t[..., :1024], r"state must have shape \[\*, \*, 2048\]"),
    ("state_pos", lambda t: t.long(), "state_pos must have dtype int32"),
    ("cmp_kv", lambda t: t.float(), "cmp_kv must have dtype bfloat16"),
    ("cmp_slot_mapping", lambda t: t[:, :1], r"cmp_slot_mapping dim 1 \(S\) must be 2"),
    ("state_block_table", lambda t: t[:2], r"state_block_table dim 0 \(B\) must be 7"),
])
def test_bad_tensor(inp, arg, bad, match):
    _refused(inp, (TypeError, ValueError), match, **{arg: bad(inp[arg])})


def test_wrong_ratio_weights(inp):
    """Weights of a ratio-128 compressor handed to the ratio-4 one."""
    w = casekit.make_weights(TINY, 128, torch.Generator().manual_seed(1))
    _refused(inp, ValueError, "ratio-128 compressor", wkv=w["wkv"], wgate=w["wgate"])


def test_out_of_range_cmp_slot(inp):
    slot = inp["cmp_slot_mapping"].clone()
    b, s = torch.nonzero(slot >= 0)[0].tolist()
    slot[b, s] = inp["cmp_kv"].shape[0] * inp["cmp_kv"].shape[1]
    _refused(inp, ValueError, r"cmp_slot_mapping values must be in \[0, \d+\)", cmp_slot_mapping=slot)
    slot[b, s] = -2
    _refused(inp, ValueError, "got -2", cmp_slot_mapping=slot)


def test_out_of_range_state_block(inp):
    t = inp["state_block_table"].clone()
    t[0, 0] = inp["state"].shape[0]
    _refused(inp, ValueError, r"state_block_table values must be in \[0, \d+\) or -1", state_block_table=t)


def test_block_table_too_short(inp):
    _refused(inp, ValueError, "pages per request", state_block_table=inp["state_block_table"][:, :2].contiguous())


def test_missing_state_page(inp):
    """Request 4 starts at 6: its window closing at 7 needs position 5 (back half) and
    positions 0..3 (front halves) from the state cache."""
    t = inp["state_block_table"].clone()
    t[4, 1] = -1  # positions 4..7 of request 4
    _refused(inp, StateMissingError, r"state page missing: request 4 needs position 4", state_block_table=t)


def test_stale_state_row(inp):
    sp = inp["state_pos"].clone()
    row = int(inp["state_block_table"][4, 0]) * 4 + 2  # request 4, position 2
    sp.view(-1)[row] = -1
    _refused(inp, StateMissingError, r"holds no position, but request 4 needs position 2", state_pos=sp)
    sp.view(-1)[row] = 1002
    _refused(inp, StateMissingError, "holds position 1002", state_pos=sp)


def test_duplicate_rows(inp):
    slot = inp["cmp_slot_mapping"].clone()
    idx = torch.nonzero(slot >= 0)
    slot[tuple(idx[1])] = slot[tuple(idx[0])]
    _refused(inp, ValueError, "written by more than one token", cmp_slot_mapping=slot)
    t = inp["state_block_table"].clone()
    t[1] = t[0]
    _refused(inp, ValueError, "written by more than one token", state_block_table=t)


def test_positions_past_the_model(inp):
    sp = inp["start_pos"].clone()
    sp[0] = TINY.max_position_embeddings - 1
    _refused(inp, ValueError, "max_position_embeddings", start_pos=sp)


def test_minus_one_slot_is_not_written_but_state_is(inp):
    slot = torch.full_like(inp["cmp_slot_mapping"], -1)
    cmp_before = inp["cmp_kv"].clone()
    out = _call(inp, cmp_slot_mapping=slot)
    assert out.closes.any() and torch.equal(inp["cmp_kv"], cmp_before)
    assert int((inp["state_pos"] >= 0).sum()) > 0


def test_empty_config_backend_errors(inp):
    _refused(inp, ValueError, "at least one request", x=inp["x"][:, :0], cmp_slot_mapping=inp["cmp_slot_mapping"][:, :0])
    _refused(inp, TypeError, "config must be a dsv4_core.AttentionConfig", config={"hidden_size": 512})
    _refused(inp, ValueError, "backend must be one of", backend="cuda")
    _refused(inp, ValueError, "must be contiguous", state=inp["state"].transpose(0, 1).contiguous().transpose(0, 1))


def test_npu_backend_refuses_instead_of_falling_back(inp):
    from dsv4_core.backends import npu_unavailable_reasons

    if not npu_unavailable_reasons():
        pytest.skip("an NPU is present")
    _refused(inp, BackendUnavailable, "npu", backend="npu")
