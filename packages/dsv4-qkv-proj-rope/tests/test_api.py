"""Bad input gets a clear error naming the argument."""

import pytest

from dsv4_core import TINY, BackendUnavailable
from dsv4_qkv_proj_rope import qkv_proj_rope
from dsv4_qkv_proj_rope.cases import CASES, WEIGHT_ARGS, make_inputs


@pytest.fixture
def inp():
    return make_inputs(CASES["tiny-decode-B64S2"])


def _call(inp, **kw):
    args = {k: inp[k] for k in ("x", *WEIGHT_ARGS, "positions")}
    args.update({k: v for k, v in kw.items() if k in args})
    opts = {"config": TINY, "compress_ratio": 4, "backend": "torch"}
    opts.update({k: v for k, v in kw.items() if k not in args})
    return qkv_proj_rope(*args.values(), **opts)


@pytest.mark.parametrize("arg,bad,match", [
    ("x", lambda t: t.float(), "x must have dtype bfloat16, got float32"),
    ("x", lambda t: t[:, :100], r"x must have shape \[T, 512\]"),
    ("wq_a", lambda t: t.T.contiguous(), r"wq_a must have shape \[256, 512\], got \[512, 256\]"),
    ("wq_b", lambda t: t[:-512], r"wq_b must have shape \[4096, 256\]"),
    ("wkv", lambda t: t.float(), "wkv must have dtype bfloat16"),
    ("q_norm_weight", lambda t: t.reshape(1, -1), "q_norm_weight must be 1-D"),
    ("kv_norm_weight", lambda t: t[:10], r"kv_norm_weight must have shape \[512\]"),
    ("positions", lambda t: t.float(), "positions must have dtype int32 or int64"),
    ("positions", lambda t: t[:5], r"positions dim 0 \(T\) must be 128"),
])
def test_bad_tensor(inp, arg, bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        _call(inp, **{arg: bad(inp[arg])})


def test_positions_out_of_range(inp):
    p = inp["positions"].clone()
    p[3] = TINY.max_position_embeddings
    with pytest.raises(ValueError, match=r"positions must be in \[0, 1048576\).*got 1048576"):
        _call(inp, positions=p)
    p[3] = -2
    with pytest.raises(ValueError, match="got -2"):
        _call(inp, positions=p)


def test_empty_and_config_errors(inp):
    with pytest.raises(ValueError, match="at least one token"):
        _call(inp, x=inp["x"][:0], positions=inp["positions"][:0])
    with pytest.raises(ValueError, match="compress_ratio must be 0, 4 or 128"):
        _call(inp, compress_ratio=2)
    with pytest.raises(TypeError, match="config must be a dsv4_core.AttentionConfig"):
        _call(inp, config={"hidden_size": 512})
    with pytest.raises(ValueError, match="backend must be one of"):
        _call(inp, backend="cuda")


def test_npu_backend_refuses_instead_of_falling_back(inp):
    from dsv4_core.backends import npu_unavailable_reasons

    if not npu_unavailable_reasons():
        pytest.skip("an NPU is present")
    with pytest.raises(BackendUnavailable, match="npu"):
        _call(inp, backend="npu")


def test_device_mismatch(inp):
    with pytest.raises(ValueError, match="must be on device meta"):
        from dsv4_core.checks import check_tensor

        check_tensor("x", inp["x"], device="meta")
    with pytest.raises(ValueError, match="one device"):
        _call(inp, wkv=inp["wkv"].to("meta"))
