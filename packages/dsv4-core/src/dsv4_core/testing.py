"""pytest plugin (registered through the `pytest11` entry point): every test's torch RNG is
seeded from a hash of its node id (plus `--dsv4-seed`), so a test is reproducible and
independent of order; a failing test's report carries the seed and how to rerun it."""

from __future__ import annotations

import hashlib
import random

import pytest


def seed_for(nodeid: str, base: int = 0) -> int:
    return int.from_bytes(hashlib.sha256(f"{base}:{nodeid}".encode()).digest()[:4], "little")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--dsv4-seed", type=int, default=0, help="base seed mixed into every test's seed")


@pytest.fixture(autouse=True)
def _dsv4_seed(request: pytest.FixtureRequest) -> int:
    import torch

    seed = seed_for(request.node.nodeid, request.config.getoption("--dsv4-seed"))
    torch.manual_seed(seed)
    random.seed(seed)
    request.node.user_properties.append(("dsv4_seed", seed))
    return seed


@pytest.fixture
def seed(_dsv4_seed: int) -> int:
    """The seed of the running test (already applied to torch and random)."""
    return _dsv4_seed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        seeds = [v for k, v in item.user_properties if k == "dsv4_seed"]
        if seeds:
            rep.sections.append(("dsv4 seed", f"seed={seeds[0]} (torch.manual_seed; rerun: pytest '{item.nodeid}' "
                                              f"--dsv4-seed={item.config.getoption('--dsv4-seed')})"))
