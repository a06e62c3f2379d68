import torch

from dsv4_core.testing import seed_for


def test_seed_depends_on_node_id_only(request, seed):
    assert seed == seed_for(request.node.nodeid, request.config.getoption("--dsv4-seed"))
    assert seed_for("a::b") == seed_for("a::b") != seed_for("a::c")


def test_torch_is_seeded(seed):
    x = torch.rand(3)
    torch.manual_seed(seed)
    assert torch.equal(x, torch.rand(3))
