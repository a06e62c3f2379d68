"""Repo-level checks run by `nox -s crosscheck` with every package installed from dist/."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import pkgs  # noqa: E402
import versions  # noqa: E402


@pytest.mark.parametrize("name", sorted(pkgs.all_packages()))
def test_installed_versions_match_the_repo(name):
    p = pkgs.all_packages()[name]
    mod = importlib.import_module(p.import_name)
    assert mod.__version__ == p.version
    assert "site-packages" in mod.__file__, "crosscheck must test the installed wheels"


def test_kernel_packages_speak_the_installed_rope_abi():
    from dsv4_rope_tables import ROPE_ABI

    for p in pkgs.all_packages().values():
        mod = importlib.import_module(p.import_name)
        wanted = getattr(mod, "ROPE_ABI_CONSUMED", None)
        if wanted is not None:
            assert wanted == ROPE_ABI, f"{p.name} consumes {wanted}, installed rope-tables speaks {ROPE_ABI}"


def test_every_module_has_the_golden_protocol():
    for m, p in pkgs.modules().items():
        cases = importlib.import_module(f"{p.import_name}.cases")
        assert cases.GOLDEN_CASES and callable(cases.golden), m
        assert any(t == "small" for _, t in cases.GOLDEN_CASES), f"{m} has no small-preset golden case"
        # the layer is timed through its modules' bench cases
        assert callable(cases.bench) and (cases.BENCH_CASES or p.floor == "layer"), m


def _git(cwd, *args):
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def _fake_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for name, deps in (("dsv4-a", []), ("dsv4-b", ['"dsv4-a>=0.1,<1"'])):
        d = root / "packages" / name
        (d / "src").mkdir(parents=True)
        (d / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = [{", ".join(deps)}]\n'
            '[tool.dsv4]\nfloor = "core"\n')
        (d / "CHANGELOG.md").write_text("# Changelog\n\n## 0.1.0\n\n- first\n")
        (d / "src" / "mod.py").write_text("x = 1\n")
    _git(root.parent, "init", "-q", str(root))
    _git(root, "-c", "user.email=ci@x", "-c", "user.name=ci", "add", ".")
    _git(root, "-c", "user.email=ci@x", "-c", "user.name=ci", "commit", "-qm", "init")
    return root


def test_versions_check_catches_an_unbumped_change(tmp_path):
    root = _fake_repo(tmp_path)
    assert versions.check(root) == []
    (root / "packages/dsv4-a/src/mod.py").write_text("x = 2\n")
    problems = versions.check(root)
    assert len(problems) == 1 and "dsv4-a" in problems[0] and "bump the version" in problems[0]
    # bumping alone is not enough: the CHANGELOG needs the entry
    pp = root / "packages/dsv4-a/pyproject.toml"
    pp.write_text(pp.read_text().replace('"0.1.0"', '"0.1.1"'))
    _git(root, "-c", "user.email=ci@x", "-c", "user.name=ci", "commit", "-qam", "bump")
    assert any("CHANGELOG.md has no '## 0.1.1'" in p for p in versions.check(root))
    cl = root / "packages/dsv4-a/CHANGELOG.md"
    cl.write_text(cl.read_text().replace("## 0.1.0", "## 0.1.1\n\n- x = 2\n\n## 0.1.0"))
    assert versions.check(root) == []


def test_versions_check_catches_a_pin_that_excludes_the_sibling(tmp_path):
    root = _fake_repo(tmp_path)
    pp = root / "packages/dsv4-b/pyproject.toml"
    pp.write_text(pp.read_text().replace("dsv4-a>=0.1,<1", "dsv4-a>=0.2,<1"))
    problems = versions.check(root)
    assert any("requires dsv4-a>=0.2,<1, which excludes the in-repo dsv4-a 0.1.0" in p for p in problems)


def test_versions_check_catches_a_stale_dunder_version(tmp_path):
    root = _fake_repo(tmp_path)
    init = root / "packages/dsv4-a/src/dsv4_a/__init__.py"
    init.parent.mkdir()
    init.write_text('__version__ = "0.1.0"\n')
    assert not any("__version__" in p for p in versions.check(root))
    init.write_text('__version__ = "0.0.9"\n')
    problems = versions.check(root)
    assert any("__version__ 0.0.9, pyproject.toml has 0.1.0" in p for p in problems), problems


def test_the_readme_lists_every_package_at_its_version():
    import re

    text = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| \[`(dsv4-[a-z0-9-]+)`\]\([^)]*\) \| [a-z]+ \| ([0-9.]+) \|", text, re.M))
    for name, p in pkgs.all_packages().items():
        assert rows.get(name) == p.version, f"README's package table: {name} {rows.get(name)}, in repo {p.version}"


def test_composition_tests_run_in_crosscheck():
    """The packages' composition tests skip where a sibling is missing; crosscheck, which
    installs every package, must collect them (noxfile passes them to pytest)."""
    found = sorted(ROOT.glob("packages/*/tests/test_composition.py"))
    assert found, "no composition tests"
    for name in ("dsv4_sparse_attn_csa", "dsv4_prefill_sparse_attn"):
        importlib.import_module(name)  # installed here, so the composition tests do not skip
