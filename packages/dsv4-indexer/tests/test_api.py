"""Bad input gets a clear error naming the argument, before anything runs; nothing is written."""

import pytest
import torch

from dsv4_core import TINY, BackendUnavailable, shard_heads
from dsv4_indexer import index_scores, indexer, select_topk
from dsv4_indexer.cases import CASES, make_inputs

ARGS = ("x", "qr", "wq_b", "weights_proj", "positions", "cache", "table")


@pytest.fixture
def inp():
    return make_inputs(CASES["tiny-fewer-B2S2"])


def call(inp, cfg=TINY, backend="torch", **kw):
    return indexer(*(inp[a] for a in ARGS), config=cfg, backend=backend, **kw)


@pytest.mark.parametrize("arg,bad,match", [
    ("x", lambda t: t.float(), "x must have dtype bfloat16"),
    ("x", lambda t: t[:3], r"x must have shape \[4, 512\]"),
    ("qr", lambda t: t[:, :100], r"qr must have shape \[4, 256\]"),
    ("wq_b", lambda t: t.T.contiguous(), r"wq_b must have shape \[1024, 256\]"),
    ("weights_proj", lambda t: t.float(), "weights_proj must have dtype bfloat16"),
    ("positions", lambda t: t.reshape(-1), r"positions must be 2-D \[B, S\]"),
    ("positions", lambda t: t.float(), "positions must have dtype int32 or int64"),
    ("positions", lambda t: t.flip(1), "consecutive positions"),
    ("positions", lambda t: t - 1000, r"positions must be in \[0, 1048576\)"),
    ("positions", lambda t: t + TINY.max_position_embeddings, r"positions must be in \[0, 1048576\)"),
    ("cache", lambda t: t[..., :64], r"idx_kv_cache must have shape \[\*, \*, 128\]"),
    ("cache", lambda t: t.float(), "idx_kv_cache must have dtype bfloat16"),
    ("table", lambda t: t[:1], r"idx_block_table must have shape \[2, \*\]"),
    ("table", lambda t: t.float(), "idx_block_table must have dtype int32 or int64"),
])
def test_bad_tensor(inp, arg, bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(dict(inp, **{arg: bad(inp[arg])}))


def test_page_out_of_range(inp):
    t = inp["table"].clone()
    t[1, 0] = inp["cache"].shape[0]
    with pytest.raises(ValueError, match=r"idx_block_table\[1, 0\] = \d+ is outside idx_kv_cache"):
        call(dict(inp, table=t))


def test_pages_shared_between_requests(inp):
    t = inp["table"].clone()
    t[1, 0] = t[0, 0]
    with pytest.raises(ValueError, match="used by requests 0 and 1"):
        call(dict(inp, table=t))


def test_table_too_narrow(inp):
    with pytest.raises(ValueError, match="idx_block_table has 0 pages per request"):
        call(dict(inp, table=inp["table"][:, :0]))


def test_validate_false_reads_nothing_and_selects_nothing_from_bad_pages(inp):
    t = inp["table"].clone()
    t[1, 0] = 10_000  # out of range: no error without validation, and its entries are never picked
    t[0, 0] = -1
    picks = call(dict(inp, table=t), validate=False)
    assert ((picks[:2] < 0) | (picks[:2] >= 16)).all() and ((picks[2:] < 0) | (picks[2:] >= 16)).all()


def test_device_mismatch(inp):
    with pytest.raises(ValueError, match="one device"):
        call(dict(inp, weights_proj=inp["weights_proj"].to("meta")))


def test_config_backend_and_shard_errors(inp):
    with pytest.raises(TypeError, match="config must be a dsv4_core.AttentionConfig"):
        call(inp, cfg={"index_num_heads": 8})
    with pytest.raises(ValueError, match="backend must be one of"):
        call(inp, backend="cuda")
    with pytest.raises(ValueError, match="tensor-parallel shard"):
        call(inp, cfg=shard_heads(TINY, 2))
    with pytest.raises(TypeError, match="scores must have dtype float32"):
        select_topk(torch.zeros(2, 8, dtype=torch.float64), config=TINY, backend="torch")


def test_npu_backend_refuses_instead_of_falling_back(inp):
    from dsv4_core.backends import npu_unavailable_reasons

    if not npu_unavailable_reasons():
        pytest.skip("an NPU is present")
    with pytest.raises(BackendUnavailable, match="npu"):
        call(inp, backend="npu")


def test_shard_scores_then_select(inp):
    """Two TP ranks' scores summed equal the unsharded scores (up to fp32 summation order)."""
    cfg2 = shard_heads(TINY, 2)
    H2, D = cfg2.index_num_heads, cfg2.index_head_dim
    parts = []
    for r in range(2):
        wq_b = inp["wq_b"].reshape(2, H2 * D, -1)[r]
        wp = inp["weights_proj"].reshape(2, H2, -1)[r]
        parts.append(index_scores(inp["x"], inp["qr"], wq_b, wp, inp["positions"], inp["cache"], inp["table"],
                                  config=cfg2, backend="torch"))
    full = index_scores(*(inp[a] for a in ARGS), config=TINY, backend="torch")
    total = parts[0] + parts[1]
    fin = torch.isfinite(full)
    assert torch.equal(fin, torch.isfinite(total))
    assert (total[fin] - full[fin]).abs().max() <= 1e-5 * full[fin].abs().max()
    assert torch.equal(select_topk(total, config=TINY, backend="torch"), call(inp))


def test_nothing_written(inp):
    before = inp["cache"].clone()
    call(inp)
    with pytest.raises(ValueError):
        call(dict(inp, x=inp["x"][:1]))
    assert torch.equal(before.view(torch.int16), inp["cache"].view(torch.int16))
