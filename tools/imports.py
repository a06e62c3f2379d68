"""The house rule on imports, read from the source: dependencies run one way.

    python tools/imports.py [--root DIR]

Every `import` / `from … import` under `packages/*/src` is parsed (also those inside
functions: an import inside a function is an import all the same). A problem is

- an import of a sibling package that the importing package does not declare;
- a cycle among the packages (declared dependencies plus the imports found);
- an import that goes up or sideways: a package imports only packages on lower floors
  (`[tool.dsv4] floor`: core ← rope ← family ← module ← layer), except that a family
  package may build on another family package; so no module package imports another.

Exit status 1 with one line per problem."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkgs as pkgmod  # noqa: E402


def imported_roots(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module name) of every absolute import in a Python file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _allowed(importer: pkgmod.Package, imported: pkgmod.Package) -> bool:
    lo, hi = pkgmod.FLOORS.index(imported.floor), pkgmod.FLOORS.index(importer.floor)
    return lo < hi or (lo == hi and importer.floor == "family")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = "open"
        for m in sorted(edges.get(n, ())):
            if state.get(m) == "open":
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = "done"

    for n in sorted(edges):
        if n not in state:
            visit(n, [n])
    return found


def check(root: Path) -> list[str]:
    packages = pkgmod.all_packages(root)
    by_import = {p.import_name: p for p in packages.values()}
    problems: list[str] = []
    edges = {n: set(p.siblings) for n, p in packages.items()}
    for p in packages.values():
        for f in sorted((p.path / "src").rglob("*.py")):
            rel = f.relative_to(root).as_posix()
            for line, mod in imported_roots(f):
                other = by_import.get(mod)
                if other is None or other.name == p.name:
                    continue
                edges[p.name].add(other.name)
                if other.name not in p.siblings:
                    problems.append(f"{rel}:{line}: imports {mod} but {p.name} does not declare {other.name}")
                if not _allowed(p, other):
                    problems.append(f"{rel}:{line}: {p.name} ({p.floor}) imports {other.name} ({other.floor}): "
                                    f"imports go down the floors {' <- '.join(pkgmod.FLOORS)}")
        for sib in p.siblings:
            if not _allowed(p, packages[sib]):
                problems.append(f"{p.name} ({p.floor}) declares {sib} ({packages[sib].floor}): "
                                f"dependencies go down the floors {' <- '.join(pkgmod.FLOORS)}")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(edges)]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=pkgmod.ROOT)
    problems = check(ap.parse_args(argv).root)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
