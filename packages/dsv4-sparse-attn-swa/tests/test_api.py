"""Bad input gets a clear error naming the argument; nothing is written: the decode contract
of dsv4-sparse-attn-common."""

from dsv4_sparse_attn_common.testing.suites import DecodeApiContract
from dsv4_sparse_attn_swa import cases


class TestApi(DecodeApiContract):
    cases = cases
    case = "tiny-wrap-B2S2"
