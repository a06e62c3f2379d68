"""The indexer's select kernel on the simulator: one top-k, and the two-stage top-k of rows
wider than SELECT_PART (here made small), against torch.topk — same entries, same order —
with −inf columns (not candidates) in the row."""

import pytest
import torch

from dsv4_core import sim


def _select(width: int, k: int, part: int) -> tuple[torch.Tensor, torch.Tensor]:
    from dsv4_compressor_common.indexer import kernel

    kernel.SELECT_PART = part
    g = torch.Generator().manual_seed(width + k)
    scores = torch.randn(4, width, generator=g)
    scores[:, width // 3:width // 3 + 5] = float("-inf")
    picks = torch.full((4, k), -7, dtype=torch.int32)
    sim.run(kernel.build_select_kernel(width, k), [scores, picks], name="select")
    return picks, torch.topk(scores, k, -1).indices.to(torch.int32)


@pytest.mark.parametrize("width,part", [(3000, 1 << 20), (3000, 1024), (4096, 1024)])
def test_select_matches_torch_topk(width, part):
    picks, ref = sim.isolated(_select, width, 64, part)[0]
    assert torch.equal(picks, ref)


def test_two_stage_select_would_be_caught_dropping_a_part():
    picks, ref = sim.isolated(_select, 3000, 64, 1024)[0]
    broken = torch.where(ref >= 2048, torch.full_like(ref, -1), ref)  # the last part lost
    assert torch.equal(picks, ref) and not torch.equal(broken, ref)
