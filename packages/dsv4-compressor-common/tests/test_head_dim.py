"""The family at another head dim than the config's (the indexer's key compressor: ratio 4,
head dim 128): the `head_dim=` argument of the calls gives what a config with that head dim
gives, and the kernels built at that head dim match the golden on the simulator."""

import dataclasses

import torch

from dsv4_compressor_common import decode_call, make_caches
from dsv4_compressor_common.testing import Case, call_args, golden, make_inputs
from dsv4_core import TINY, sim

TINY_128 = dataclasses.replace(TINY, name="tiny-hd128", head_dim=128)
CASE = Case("tiny-hd128-decode-S5", TINY_128, 4, (0, 5, 130, 2), 5)


def test_head_dim_argument_equals_a_config_with_that_head_dim():
    inp = make_inputs(CASE)
    want = decode_call(4, *call_args(inp), config=TINY_128, backend="torch")
    inp2 = make_inputs(CASE)
    got = decode_call(4, *call_args(inp2), config=TINY, backend="torch", head_dim=128)
    assert got.closes.any() and want.kv.shape[-1] == 128
    assert torch.equal(got.kv, want.kv) and torch.equal(got.closes, want.closes)
    for k in ("state", "state_pos", "cmp_kv"):
        assert torch.equal(inp2[k], inp[k]), k
    state, state_pos, cmp_kv = make_caches(TINY, ratio=4, state_blocks=2, state_page=4, cmp_blocks=1, cmp_block=8,
                                           head_dim=128)
    assert state.shape == (2, 4, 512) and state_pos.shape == (2, 4) and cmp_kv.shape == (1, 8, 128)


def test_kernels_at_head_dim_128_match_the_golden():
    out, _ = sim.isolated(golden, "head_dim_128", CASE)
    assert out.ok, [str(r) for r in out.reports if not r.ok]
    assert {r.name for r in out.reports} == {"state_kv", "state_score", "state_pos", "cmp_kv"}
    assert out.run is not None and out.run.values and out.run.aicore_us > 0
