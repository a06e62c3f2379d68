"""Bad input gets a clear error naming the argument; nothing is written."""

import pytest
import torch

from dsv4_core import TINY, BackendUnavailable
from dsv4_sparse_attn_hca.cases import CASES, call, make_inputs


@pytest.fixture
def inp():
    return make_inputs(CASES["tiny-wrap-B2S2"])


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
def test_bad_tensor(inp, arg, bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(dict(inp, **{arg: bad(inp[arg])}), TINY, "torch")


def test_block_table_out_of_range_refused(inp):
    bt = inp["block_table"].clone()
    bt[1] = inp["kv_cache"].shape[0]
    with pytest.raises(ValueError, match=r"window block table entries must be in \[0, 3\)"):
        call(dict(inp, block_table=bt), TINY, "torch")


def test_position_past_max_refused(inp):
    p = inp["positions"] + TINY.max_position_embeddings
    with pytest.raises(ValueError, match="positions must be in"):
        call(dict(inp, positions=p), TINY, "torch")


def test_config_and_backend_errors(inp):
    with pytest.raises(TypeError, match="config must be a dsv4_core.AttentionConfig"):
        call(inp, {"num_heads": 8}, "torch")
    with pytest.raises(ValueError, match="backend must be one of"):
        call(inp, TINY, "cuda")


def test_npu_backend_refuses_instead_of_falling_back(inp):
    from dsv4_core.backends import npu_unavailable_reasons

    if not npu_unavailable_reasons():
        pytest.skip("an NPU is present")
    with pytest.raises(BackendUnavailable, match="npu"):
        call(inp, TINY, "npu")


def test_device_mismatch(inp):
    with pytest.raises(ValueError, match="one device"):
        call(dict(inp, wo_b=inp["wo_b"].to("meta")), TINY, "torch")


def test_nothing_written_on_error(inp):
    before = inp["kv_cache"].clone()
    with pytest.raises(ValueError):
        call(dict(inp, kv=inp["kv"][:1]), TINY, "torch")
    assert torch.equal(before, inp["kv_cache"])


def test_cmp_args(inp):
    with pytest.raises(TypeError, match="cmp_kv must have dtype bfloat16"):
        call(dict(inp, cmp_kv=inp["cmp_kv"].float()), TINY, "torch")
    with pytest.raises(ValueError, match=r"cmp_block_table must have shape \[2, \*\]"):
        call(dict(inp, cmp_block_table=inp["cmp_block_table"][:1]), TINY, "torch")
    bt = inp["cmp_block_table"].clone()
    bt[1, 0] = 99
    with pytest.raises(ValueError, match="outside the compressed cache"):
        call(dict(inp, cmp_block_table=bt), TINY, "torch")
    with pytest.raises(ValueError, match="capacity"):  # entries the table cannot address
        call(dict(inp, cmp_block_table=bt[:, :0]), TINY, "torch")
