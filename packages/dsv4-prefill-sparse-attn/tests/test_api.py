"""Bad input gets a clear error naming the argument; nothing is written."""

import pytest
import torch

from dsv4_core import TINY, BackendUnavailable
from dsv4_prefill_sparse_attn.cases import CASES, call, make_inputs


@pytest.fixture
def inp():
    return make_inputs(CASES["tiny-csa-fewer-T12"])


@pytest.mark.parametrize("arg,bad,match", [
    ("q", lambda t: t.float(), "q must have dtype bfloat16"),
    ("kv", lambda t: t[:3], r"kv must have shape \[12, 512\]"),
    ("kv_cache", lambda t: t[:, :64], r"kv_cache must have shape \[\*, 128, 512\]"),
    ("block_table", lambda t: torch.cat([t, t]), r"block_table must have shape \[1\]"),
    ("attn_sink", lambda t: t[:3], r"attn_sink must have shape \[8\]"),
    ("wo_a", lambda t: t.float(), "wo_a must have dtype bfloat16"),
    ("wo_b", lambda t: t[:7], r"wo_b must have shape \[512, 256\]"),
    ("cmp_kv", lambda t: t.float(), "cmp_kv must have dtype bfloat16"),
    ("cmp_block_table", lambda t: t.reshape(1, -1), r"cmp_block_table must be 1-D"),
    ("topk_idxs", lambda t: t[:3], r"topk_idxs must have shape \[12, \*\]"),
    ("topk_idxs", lambda t: t - 5, "topk_idxs values must be >= -1"),
    ("start_pos", lambda v: -3, "start_pos must be an int >= 0"),
    ("start_pos", lambda v: float(v), "start_pos must be an int >= 0"),
    ("start_pos", lambda v: TINY.max_position_embeddings - 3, "positions must be in"),
])
def test_bad_argument(inp, arg, bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(dict(inp, **{arg: bad(inp[arg])}), TINY, "torch")


def test_kind_arguments(inp):
    with pytest.raises(ValueError, match="only taken by CSA and HCA"):
        call(dict(inp, compress_ratio=0), TINY, "torch")
    with pytest.raises(ValueError, match="required for a CSA layer"):
        call({k: v for k, v in inp.items() if k != "cmp_kv"}, TINY, "torch")
    with pytest.raises(ValueError, match="only taken by CSA layers"):
        call(dict(inp, compress_ratio=128), TINY, "torch")
    with pytest.raises(ValueError, match="compress_ratio must be 0, 4 or 128"):
        call(dict(inp, compress_ratio=8), TINY, "torch")


def test_cmp_table_refused(inp):
    bt = inp["cmp_block_table"].clone()
    bt[0] = 50
    with pytest.raises(ValueError, match="outside the compressed cache"):
        call(dict(inp, cmp_block_table=bt), TINY, "torch")


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


def test_nothing_written_on_error(inp):
    before = inp["kv_cache"].clone()
    with pytest.raises(ValueError):
        call(dict(inp, kv=inp["kv"][:1]), TINY, "torch")
    assert torch.equal(before, inp["kv_cache"])
