"""The memory contract (dsv4-sparse-attn-common's `MemoryContractSuite`) for each layer
kind of a prefill chunk: NaN / Inf in unreferenced cache rows never reach the output (torch
and sim; CSA with a −1 top-k hole), the kernel receives the caches themselves and the host
prepares the same bytes for N and 16N pages, validate=False reads nothing back and matches
validate=True on the simulator."""

from dsv4_prefill_sparse_attn import cases
from dsv4_sparse_attn_common.testing.suites import MemoryContractSuite


class TestMemoryCSA(MemoryContractSuite):
    cases = cases
    case = "tiny-csa-fewer-T12"


class TestMemoryHCA(MemoryContractSuite):
    cases = cases
    case = "tiny-hca-T12"


class TestMemorySWA(MemoryContractSuite):
    cases = cases
    case = "tiny-swa-wrap-T12"


def test_unvalidated_hca_chunk_launches_the_validated_width():
    """validate=False takes HCA's compressed width from the chunk's last position (a host
    int), not from the block table's capacity: the launch has the validated call's shapes."""
    from dsv4_core import contract

    case = cases.CASES["tiny-hca-T12"]
    inp = cases.make_inputs(case)
    cap = inp["cmp_block_table"].shape[0] * inp["cmp_kv"].shape[1]
    assert cap > (case.start + case.tokens) // case.ratio  # capacity alone would be wider
    shapes = []
    for validate in (True, False):
        with contract.watch(run=False) as w:
            cases.call(inp, case.config, "sim", validate=validate)
        shapes.append([tuple(t.shape) for t in w.launches[0].tensors()])
    assert shapes[0] == shapes[1]


def test_cmp_columns_is_the_last_tokens_view_capped_by_the_table():
    import torch

    from dsv4_prefill_sparse_attn import cmp_columns

    kv, bt = torch.empty(9, 4, 8), torch.zeros(5, dtype=torch.int32)  # capacity 5 · 4 = 20
    assert cmp_columns(kv, bt, 250, 12, 128) == 2  # positions 250 … 261 see up to 262 // 128
    assert cmp_columns(kv, bt, 0, 100, 128) == 0
    assert cmp_columns(kv, bt, 10_000, 24, 128) == 20  # past the table: its capacity
