"""The scenario kits: plumbing of the decode scenario record and the golden check; the
runtime modules never import `testing`."""

import ast
import dataclasses
from pathlib import Path

import pytest

import dsv4_sparse_attn_common
from dsv4_core import TINY
from dsv4_sparse_attn_common.testing import DecodeCase, check_golden, decode_inputs, seeded_starts


def test_scenario_plumbing():
    st = seeded_starts(4, 100, 200, 7)
    assert st == seeded_starts(4, 100, 200, 7) and all(100 <= s < 200 for s in st)
    case = DecodeCase("c", TINY, (5, 60), 3)
    assert case.batch == 2
    assert case.positions().tolist() == [[5, 6, 7], [60, 61, 62]]
    assert case.positions(1).tolist() == [[5, 6, 7]]
    with pytest.raises(ValueError, match="perturb must be"):
        check_golden("m", "c", TINY, {}, golden=None, call=None, perturb="scale")


def test_causal_probe_hands_the_first_token_an_entry_only_its_sibling_sees():
    case = DecodeCase("c", TINY, (302, 20), 2, causal_probe=True)  # 302 sees 75, 303 sees 76; 20, 21 see 5
    probe = decode_inputs(case, 4)["topk_idxs"]
    plain = decode_inputs(dataclasses.replace(case, causal_probe=False), 4)["topk_idxs"]
    assert probe[0, -1] == 75  # entry 75 closes at 303: only the second token may see it
    assert all(d == [0, TINY.index_topk - 1] for d in (probe != plain).nonzero().tolist())  # nothing else changed


def test_runtime_modules_do_not_import_testing():
    root = Path(dsv4_sparse_attn_common.__file__).parent
    for f in root.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "testing" not in (node.module or ""), f"{f.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any("testing" in a.name for a in node.names), f.name
