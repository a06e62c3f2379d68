"""`nox -s versions`: release hygiene of every package.

1. A package whose files changed since the commit that last set its version must have a
   bumped version (so every changed source ships under a new version number).
2. Its CHANGELOG.md has an entry for the current version.
3. Every sibling pin (`dsv4-core>=0.1,<1`) admits the in-repo version of that sibling.
4. A `__version__ = "…"` in the package's `src/*/__init__.py` equals its pyproject version.

Exit status 1 with one line per problem."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkgs as pkgmod  # noqa: E402


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def version_commit(root: Path, pyproject_rel: str, version: str) -> str | None:
    """The newest commit whose pyproject.toml carries `version` while its parent's does not
    (the commit that set the current version); None when the file is not committed."""
    log = _git(root, "log", "--format=%H", "--", pyproject_rel).split()
    set_at = None
    for commit in log:  # newest first
        try:
            text = _git(root, "show", f"{commit}:{pyproject_rel}")
        except subprocess.CalledProcessError:
            break
        m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
        if m and m.group(1) == version:
            set_at = commit
        else:
            break
    return set_at


def changed_since(root: Path, commit: str, rel_dir: str) -> list[str]:
    """Files under rel_dir that differ from `commit` (committed, staged, unstaged or new)."""
    diff = _git(root, "diff", "--name-only", commit, "--", rel_dir).split()
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", rel_dir).split()
    return sorted(set(diff) | set(untracked))


def changelog_has(path: Path, version: str) -> bool:
    if not path.exists():
        return False
    pat = re.compile(rf"^##\s*\[?{re.escape(version)}\]?(\s|$)", re.M)
    return bool(pat.search(path.read_text()))


def check(root: Path) -> list[str]:
    problems = []
    packages = pkgmod.all_packages(root)
    for p in packages.values():
        rel = p.path.relative_to(root).as_posix()
        if not changelog_has(p.path / "CHANGELOG.md", p.version):
            problems.append(f"{p.name}: CHANGELOG.md has no '## {p.version}' entry")
        commit = version_commit(root, f"{rel}/pyproject.toml", p.version)
        if commit is not None:
            changed = [f for f in changed_since(root, commit, rel) if not f.endswith("CHANGELOG.md")]
            if changed:
                problems.append(f"{p.name}: {len(changed)} file(s) changed since version {p.version} was set "
                                f"(commit {commit[:10]}), e.g. {changed[0]}: bump the version and add a CHANGELOG entry")
        for init in sorted(p.path.glob("src/*/__init__.py")):
            m = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', init.read_text(), re.M)
            if m and m.group(1) != p.version:
                problems.append(f"{p.name}: {init.relative_to(root).as_posix()} has __version__ {m.group(1)}, "
                                f"pyproject.toml has {p.version}")
        for sib, spec in p.sibling_specs.items():
            have = Version(packages[sib].version)
            if not SpecifierSet(spec).contains(have, prereleases=True):
                problems.append(f"{p.name}: requires {sib}{spec}, which excludes the in-repo {sib} {have}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=pkgmod.ROOT)
    a = ap.parse_args(argv)
    problems = check(a.root.resolve())
    for line in problems:
        print(f"versions: {line}")
    if not problems:
        print(f"versions: OK ({len(pkgmod.all_packages(a.root.resolve()))} packages)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
