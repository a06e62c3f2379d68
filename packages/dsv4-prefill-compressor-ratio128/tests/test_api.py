"""Bad input gets a clear error naming the argument, and the caches stay bit-identical."""

import pytest
import torch

from dsv4_compressor_ratio128 import casekit
from dsv4_core import TINY
from dsv4_prefill_compressor_ratio128 import StateMissingError, prefill_compressor_ratio128
from dsv4_prefill_compressor_ratio128.cases import CASES

CACHES = ("state", "state_pos", "cmp_kv")


@pytest.fixture
def inp():
    i = casekit.make_inputs(CASES["tiny-prefill-T100-start200"])
    return {"x": i["x"][0], "wkv": i["wkv"], "wgate": i["wgate"], "ape": i["ape"], "norm_weight": i["norm_weight"],
            "start_pos": int(i["start_pos"][0]), "state": i["state"], "state_pos": i["state_pos"],
            "state_block_table": i["state_block_table"][0], "cmp_kv": i["cmp_kv"],
            "cmp_slot_mapping": i["cmp_slot_mapping"][0]}


def _bits(t):
    return t.view(torch.int16) if t.dtype == torch.bfloat16 else t.view(torch.int32)


def _refused(inp, exc, match, **kw):
    before = {k: _bits(inp[k]).clone() for k in CACHES}
    args = dict(inp)
    args.update({k: v for k, v in kw.items() if k in args})
    opts = {"config": TINY, "backend": "torch"}
    opts.update({k: v for k, v in kw.items() if k not in args})
    with pytest.raises(exc, match=match):
        prefill_compressor_ratio128(*args.values(), **opts)
    for k in CACHES:
        assert torch.equal(_bits(inp[k]), before[k]), f"{k} was modified by a refused call"


@pytest.mark.parametrize("arg,bad,match", [
    ("x", lambda t: t[None], r"x must be 2-D"),
    ("state_block_table", lambda t: t[None], "state_block_table must be 1-D"),
    ("cmp_slot_mapping", lambda t: t[:-1], r"cmp_slot_mapping dim 0 \(T\) must be"),
    ("start_pos", lambda t: float(t), "start_pos must be an int"),
    ("wkv", lambda t: torch.zeros(1024, 512, dtype=torch.bfloat16), "ratio-4 compressor"),
])
def test_bad_input(inp, arg, bad, match):
    _refused(inp, (TypeError, ValueError), match, **{arg: bad(inp[arg])})


def test_missing_history_for_a_straddling_window(inp):
    sp = inp["state_pos"].clone()
    sp.fill_(-1)  # nothing stored: the window straddling the chunk start cannot be pooled
    _refused(inp, StateMissingError, "holds no position", state_pos=sp)
    t = inp["state_block_table"].clone()
    t[128 // inp["state"].shape[1]] = -1
    _refused(inp, StateMissingError, "state page missing", state_block_table=t)


def test_out_of_range_slot(inp):
    slot = inp["cmp_slot_mapping"].clone()
    slot[int(torch.nonzero(slot >= 0)[0])] = 10 ** 6
    _refused(inp, ValueError, "cmp_slot_mapping values must be in", cmp_slot_mapping=slot)
    t = inp["state_block_table"].clone()
    t[-1] = 10 ** 6
    _refused(inp, ValueError, "state_block_table values must be in", state_block_table=t)
