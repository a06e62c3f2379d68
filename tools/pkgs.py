"""The package graph of the monorepo, read from packages/*/pyproject.toml.

Every session in noxfile.py is parametrized from here, so a new package joins every
session by adding its directory."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES_DIR = ROOT / "packages"
# The floors, bottom first: a package imports only packages on lower floors, except that a
# family package may build on another family package.
FLOORS = ("core", "rope", "family", "module", "layer")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class Package:
    name: str  # distribution name, e.g. dsv4-rope-tables
    version: str
    path: Path
    import_name: str
    module: str | None  # golden/bench module key ([tool.dsv4] module), None: no kernel
    floor: str  # [tool.dsv4] floor: where it stands in the one-way dependency order (FLOORS)
    requires: tuple[str, ...]  # raw requirement strings
    sibling_specs: dict  # sibling name -> specifier string

    @property
    def siblings(self) -> tuple[str, ...]:
        return tuple(self.sibling_specs)

    def wheel_glob(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"


def load(path: Path) -> Package:
    data = tomllib.loads((path / "pyproject.toml").read_text())
    proj = data["project"]
    name = normalize(proj["name"])
    reqs = tuple(proj.get("dependencies", []))
    tool = data.get("tool", {}).get("dsv4", {})
    floor = tool.get("floor", "")
    if floor not in FLOORS:
        raise ValueError(f"{path / 'pyproject.toml'}: [tool.dsv4] floor must be one of {FLOORS}, got {floor!r}")
    return Package(name=name, version=proj["version"], path=path, import_name=name.replace("-", "_"),
                   module=tool.get("module"), floor=floor, requires=reqs, sibling_specs={})


def all_packages(root: Path | None = None) -> dict[str, Package]:
    pkgs = {}
    for pp in sorted(((root / "packages") if root else PACKAGES_DIR).glob("*/pyproject.toml")):
        p = load(pp.parent)
        pkgs[p.name] = p
    out = {}
    for name, p in pkgs.items():
        specs = {}
        for r in p.requires:
            m = _REQ_NAME.match(r.split(";")[0])
            if m and normalize(m.group(1)) in pkgs:
                specs[normalize(m.group(1))] = m.group(2).strip()
        out[name] = dataclasses.replace(p, sibling_specs=specs)
    return out


def closure(name: str, pkgs: dict[str, Package] | None = None) -> list[str]:
    """The package and every sibling it needs, dependencies first."""
    pkgs = pkgs or all_packages()
    order: list[str] = []

    def visit(n: str, stack: tuple[str, ...]) -> None:
        if n in stack:
            raise ValueError(f"dependency cycle: {' -> '.join(stack + (n,))}")
        for s in pkgs[n].siblings:
            visit(s, stack + (n,))
        if n not in order:
            order.append(n)

    visit(name, ())
    return order


def modules() -> dict[str, Package]:
    """module key -> package, for packages with a golden/bench module."""
    return {p.module: p for p in all_packages().values() if p.module}


if __name__ == "__main__":
    for p in all_packages().values():
        print(f"{p.name:32s} {p.version:8s} {p.floor:7s} module={p.module} siblings={p.sibling_specs}")
