"""Every Python example in the READMEs runs verbatim (each block in a fresh interpreter,
against the installed packages)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md"] + sorted(ROOT.glob("packages/*/README.md"))
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _examples():
    for readme in READMES:
        text = readme.read_text()
        for m in _BLOCK.finditer(text):
            line = text[:m.start()].count("\n") + 1
            yield pytest.param(m.group(1), id=f"{readme.relative_to(ROOT).as_posix()}:{line}")


def test_every_package_readme_has_an_example():
    missing = [r.parent.name for r in READMES[1:] if not _BLOCK.search(r.read_text())]
    assert not missing, f"README without a Python example: {missing}"


@pytest.mark.parametrize("code", list(_examples()))
def test_readme_example_runs(code, tmp_path):
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the example failed:\n{code}\n--- stderr ---\n{r.stderr[-3000:]}"
