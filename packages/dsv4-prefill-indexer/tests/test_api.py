"""Bad input gets a clear error naming the argument; nothing is written."""

import pytest
import torch

from dsv4_core import TINY, shard_heads
from dsv4_prefill_indexer import prefill_indexer
from dsv4_prefill_indexer.cases import CASES, make_inputs


@pytest.fixture
def inp():
    return make_inputs(CASES["tiny-start77-T70"])


def call(inp, start=77, cfg=TINY, **kw):
    return prefill_indexer(inp["x"], inp["qr"], inp["wq_b"], inp["weights_proj"], start, inp["cache"],
                           inp["table"].reshape(-1), config=cfg, backend="torch", **kw)


@pytest.mark.parametrize("arg,bad,match", [
    ("x", lambda t: t.float(), "x must have dtype bfloat16"),
    ("qr", lambda t: t[:3], r"qr dim 0 \(T\) must be 70"),
    ("wq_b", lambda t: t[:8], r"wq_b must have shape \[1024, 256\]"),
    ("cache", lambda t: t[..., :64], r"idx_kv_cache must have shape \[\*, \*, 128\]"),
    ("table", lambda t: t.reshape(1, -1).float(), "idx_block_table must have dtype int32 or int64"),
])
def test_bad_tensor(inp, arg, bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(dict(inp, **{arg: bad(inp[arg])}))


def test_bad_start_and_pages(inp):
    with pytest.raises(TypeError, match="start_pos must be an int"):
        call(inp, start=77.0)
    with pytest.raises(ValueError, match="positions must be in"):
        call(inp, start=TINY.max_position_embeddings - 10)
    t = inp["table"].clone()
    t.view(-1)[0] = 10_000
    with pytest.raises(ValueError, match=r"idx_block_table\[0, 0\] = 10000 is outside idx_kv_cache"):
        call(dict(inp, table=t))
    with pytest.raises(ValueError, match="tensor-parallel shard"):
        call(inp, cfg=shard_heads(TINY, 2))


def test_nothing_written(inp):
    before = inp["cache"].clone()
    call(inp)
    assert torch.equal(before.view(torch.int16), inp["cache"].view(torch.int16))
