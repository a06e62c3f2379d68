"""Bad input gets a clear error naming the argument; nothing is written: the decode contract
of dsv4-sparse-attn-common, with the compressed cache."""

from dsv4_sparse_attn_common.testing.suites import CompressedDecodeApiContract
from dsv4_sparse_attn_hca import cases


class TestApi(CompressedDecodeApiContract):
    cases = cases
    case = "tiny-wrap-B2S2"
