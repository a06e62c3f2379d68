"""The house rule on imports (tools/imports.py): it holds for the repo, and it catches each
kind of bad import when one is injected into a small fake repo."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import imports  # noqa: E402
import pkgs  # noqa: E402


def test_the_repo_keeps_the_rule():
    assert imports.check(ROOT) == []


def test_every_package_stands_on_a_floor():
    floors = {p.name: p.floor for p in pkgs.all_packages().values()}
    assert floors["dsv4-core"] == "core" and floors["dsv4-rope-tables"] == "rope"
    assert all(f in pkgs.FLOORS for f in floors.values())


def _pkg(root: Path, name: str, floor: str, deps: list[str], code: str = "x = 1\n") -> Path:
    d = root / "packages" / name
    src = d / "src" / name.replace("-", "_")
    src.mkdir(parents=True)
    dep_list = ", ".join(f'"{x}>=0.1"' for x in deps)
    (d / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0.1.0"\n'
                                      f'dependencies = [{dep_list}]\n[tool.dsv4]\nfloor = "{floor}"\n')
    (src / "__init__.py").write_text(code)
    return src


@pytest.fixture
def fake(tmp_path):
    root = tmp_path / "repo"
    _pkg(root, "dsv4-core", "core", [])
    _pkg(root, "dsv4-rope-tables", "rope", ["dsv4-core"], "from dsv4_core import config\n")
    _pkg(root, "dsv4-fam", "family", ["dsv4-core", "dsv4-rope-tables"], "import dsv4_rope_tables\n")
    _pkg(root, "dsv4-mod-a", "module", ["dsv4-fam"], "from dsv4_fam import x\n")
    _pkg(root, "dsv4-mod-b", "module", ["dsv4-fam"], "from dsv4_fam import x\n")
    assert imports.check(root) == []
    return root


def test_an_undeclared_import_inside_a_function_fails(fake):
    f = fake / "packages/dsv4-core/src/dsv4_core/late.py"
    f.write_text("def f():\n    from dsv4_rope_tables import rotate\n    return rotate\n")
    problems = imports.check(fake)
    assert any("late.py:2: imports dsv4_rope_tables but dsv4-core does not declare dsv4-rope-tables" in p
               for p in problems), problems
    assert any("dsv4-core (core) imports dsv4-rope-tables (rope)" in p for p in problems), problems
    assert any(p.startswith("import cycle: dsv4-core -> dsv4-rope-tables -> dsv4-core") for p in problems), problems


def test_a_module_package_importing_another_fails_even_when_declared(fake):
    pp = fake / "packages/dsv4-mod-b/pyproject.toml"
    pp.write_text(pp.read_text().replace('"dsv4-fam>=0.1"', '"dsv4-fam>=0.1", "dsv4-mod-a>=0.1"'))
    (fake / "packages/dsv4-mod-b/src/dsv4_mod_b/use.py").write_text("import dsv4_mod_a.kernel\n")
    problems = imports.check(fake)
    assert any("use.py:1: dsv4-mod-b (module) imports dsv4-mod-a (module)" in p for p in problems), problems
    assert any("dsv4-mod-b (module) declares dsv4-mod-a (module)" in p for p in problems), problems
    assert not any("does not declare" in p for p in problems)


def test_a_cycle_between_family_packages_fails(fake):
    _pkg(fake, "dsv4-fam2", "family", ["dsv4-fam"], "import dsv4_fam\n")
    assert imports.check(fake) == []  # a family may build on another family
    (fake / "packages/dsv4-fam/src/dsv4_fam/back.py").write_text("import dsv4_fam2\n")
    problems = imports.check(fake)
    assert any("does not declare dsv4-fam2" in p for p in problems)
    assert any(p.startswith("import cycle:") and "dsv4-fam2" in p for p in problems), problems


def test_relative_and_third_party_imports_are_ignored(fake):
    (fake / "packages/dsv4-mod-a/src/dsv4_mod_a/rel.py").write_text("from . import x\nimport torch\nimport os\n")
    assert imports.check(fake) == []
