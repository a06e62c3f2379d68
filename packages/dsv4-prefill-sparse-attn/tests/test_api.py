"""Bad input gets a clear error naming the argument; nothing is written: the contract every
sparse-attention package shares (dsv4-sparse-attn-common), plus the chunk's arguments and the
layer kind's."""

import pytest
import torch

from dsv4_core import TINY
from dsv4_prefill_sparse_attn import cases
from dsv4_sparse_attn_common.testing.suites import ApiContract


class TestApi(ApiContract):
    cases = cases
    case = "tiny-csa-fewer-T12"

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
    def test_bad_argument(self, inp, arg, bad, match):
        with pytest.raises((TypeError, ValueError), match=match):
            self.call(dict(inp, **{arg: bad(inp[arg])}))

    def test_kind_arguments(self, inp):
        with pytest.raises(ValueError, match="only taken by CSA and HCA"):
            self.call(dict(inp, compress_ratio=0))
        with pytest.raises(ValueError, match="required for a CSA layer"):
            self.call({k: v for k, v in inp.items() if k != "cmp_kv"})
        with pytest.raises(ValueError, match="only taken by CSA layers"):
            self.call(dict(inp, compress_ratio=128))
        with pytest.raises(ValueError, match="compress_ratio must be 0, 4 or 128"):
            self.call(dict(inp, compress_ratio=8))

    def test_cmp_table_refused(self, inp):
        bt = inp["cmp_block_table"].clone()
        bt[0] = 50
        with pytest.raises(ValueError, match="outside the compressed cache"):
            self.call(dict(inp, cmp_block_table=bt))
