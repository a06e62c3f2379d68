"""Bad input gets a clear error naming the argument; nothing is written: the decode contract
of dsv4-sparse-attn-common (with the compressed cache), plus the indexer's top-k."""

import pytest

from dsv4_sparse_attn_common.testing.suites import CompressedDecodeApiContract
from dsv4_sparse_attn_csa import cases


class TestApi(CompressedDecodeApiContract):
    cases = cases
    case = "tiny-fewer-wrap-B2S2"

    def test_topk_args(self, inp):
        with pytest.raises(TypeError, match="topk_idxs must have dtype int32 or int64"):
            self.call(dict(inp, topk_idxs=inp["topk_idxs"].float()))
        tk = inp["topk_idxs"].clone()
        tk[0, 0] = -5
        with pytest.raises(ValueError, match="topk_idxs values must be >= -1"):
            self.call(dict(inp, topk_idxs=tk))
