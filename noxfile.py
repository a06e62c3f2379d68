"""nox sessions for the dsv4-kernels monorepo, parametrized from packages/*/pyproject.toml
(a new package joins every session by adding its directory).

    nox                     what CI runs: lint, build, versions, tests (every package; they run every
                            kernel's small-preset golden cases on the simulator), crosscheck
    nox -s golden           the main job: every kernel on the CPU simulator vs its golden (small presets), one table
    nox -s golden_full      the same plus the whole FLASH / PRO tier
    nox -s "tests(package='dsv4-core')"   one package in a fresh env with only its dependencies
    nox -s bench            cost-model µs vs the modelled ceiling, FLASH / PRO shapes

Environments are pip-based venvs (uv would pull a CUDA torch) with torch / pypto pinned by
constraints.txt; sibling packages are installed from dist/ as wheel files with exact versions,
so a same-named package from an index can never stand in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
import pkgs  # noqa: E402

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "build", "versions", "tests", "crosscheck"]

PYTHON = os.environ.get("DSV4_NOX_PYTHON") or f"{sys.version_info.major}.{sys.version_info.minor}"
CONSTRAINTS = str(ROOT / "constraints.txt")
DIST = ROOT / "dist"
PACKAGES = pkgs.all_packages()
MODULES = sorted(p.module for p in PACKAGES.values() if p.module)
# one simulator helper library for every session (pypto builds it once, ~25 s); bytecode written
# on first import even where the environment says PYTHONDONTWRITEBYTECODE: the shared third-party
# env is installed --no-compile, and every simulator child process would otherwise compile
# torch's and pypto's sources again on import (None removes the variable for the command)
SIM_ENV = {"DSV4_PTO_CACHE": os.environ.get("DSV4_PTO_CACHE", str(Path.home() / ".cache" / "dsv4-kernels")),
           "PYTHONDONTWRITEBYTECODE": None}


def _wheel(name: str) -> str:
    p = PACKAGES[name]
    whl = DIST / p.wheel_glob()
    if not whl.exists():
        raise FileNotFoundError(f"{whl} missing: run `nox -s build` first")
    return str(whl)


# the tests run on every core (most of them are simulator runs in child processes); tests that
# share an expensive class-scoped fixture carry one `xdist_group` and run on one worker
PYTEST = ("pytest==9.0.3", "pytest-xdist==3.8.0")
PYTEST_ARGS = ("-q", "-p", "no:cacheprovider", "-n", os.environ.get("DSV4_TEST_WORKERS", "auto"),
               "--dist", "loadgroup")
# dsv4-core's `sim` extra: what pypto's simulator tooling needs (every session runs the simulator)
EXTRAS = {"dsv4-core": "[sim]"}


def _closure(names: list[str]) -> list[str]:
    order: list[str] = []
    for n in names:
        order += [s for s in pkgs.closure(n, PACKAGES) if s not in order]
    return order


# The third-party stack every test session needs (≈ 1 GB, most of it torch) is installed once
# into one shared environment; each session's own venv sees it through a .pth file and
# installs only the project's packages (with their dependency resolution: pip finds torch,
# pypto, numpy there and checks them against the packages' ranges). Saves a torch install
# per session. The golden / bench jobs install everything into their own venv.
THIRD_PARTY = ("torch==2.13.0", "pypto==0.2.0", "numpy>=1.24", "matplotlib>=3.5", "pandas>=1.5", *PYTEST)
BASE = ROOT / ".nox" / "_thirdparty"


def _site(session: nox.Session, python: str = "python") -> str:
    out = session.run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", silent=True,
                      external=True)
    return out.strip().splitlines()[-1]


def _third_party(session: nox.Session) -> None:
    py = BASE / "bin" / "python"
    stamp = BASE / "installed.txt"
    want = "\n".join(THIRD_PARTY)
    if not (py.exists() and stamp.exists() and stamp.read_text() == want):
        session.run(sys.executable, "-m", "venv", "--clear", str(BASE), external=True)
        session.run(str(py), "-m", "pip", "install", "-q", "--no-compile", "-c", CONSTRAINTS, *THIRD_PARTY,
                    external=True)
        stamp.write_text(want)
    Path(_site(session), "_dsv4_thirdparty.pth").write_text(_site(session, str(py)) + "\n")


def _install_from_dist(session: nox.Session, names: list[str], *extra: str) -> None:
    """The packages as the wheels `nox -s build` made: proves each installs alone (its sibling
    dependencies from dist/, nothing else of the project)."""
    _third_party(session)
    wheels = [_wheel(s) + EXTRAS.get(s, "") for s in _closure(names)]
    # --no-compile: a session imports a fraction of torch; byte-compiling all of it at install is skipped
    session.install("--no-compile", "-c", CONSTRAINTS, *wheels, *extra)


def _install_from_source(session: nox.Session, names: list[str], *extra: str) -> None:
    """The packages built from the working tree in this session (no `nox -s build` needed,
    never a stale wheel): for the golden and bench jobs."""
    session.install("hatchling==1.33.0")
    paths = [str(PACKAGES[s].path) + EXTRAS.get(s, "") for s in _closure(names)]
    session.install("--no-compile", "-c", CONSTRAINTS, "--no-build-isolation", *paths, *extra)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.5")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Wheel + sdist of every package into dist/."""
    session.install("build==1.6.1", "hatchling==1.33.0")
    DIST.mkdir(exist_ok=True)
    for p in PACKAGES.values():
        for old in DIST.glob(f"{p.name.replace('-', '_')}-*"):
            old.unlink()
        session.run("python", "-m", "build", "--no-isolation", "--outdir", str(DIST), str(p.path))


@nox.session(python=PYTHON)
@nox.parametrize("package", sorted(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """One package's tests in a fresh env with only it and its declared dependencies."""
    _install_from_dist(session, [package])
    p = PACKAGES[package]
    session.chdir(p.path)  # tests import the installed wheel, not src/
    session.run("python", "-c", f"import {p.import_name} as m; print(m.__name__, m.__version__, m.__file__)")
    session.run("python", "-m", "pytest", *PYTEST_ARGS, "tests", *session.posargs, env=SIM_ENV)


@nox.session(python=PYTHON)
def versions(session: nox.Session) -> None:
    """Changed packages carry a bumped version and a CHANGELOG entry; sibling pins admit the
    in-repo versions."""
    session.install("packaging>=23")
    session.run("python", "tools/versions.py")


@nox.session(python=PYTHON)
def crosscheck(session: nox.Session) -> None:
    """Every package in one env: pip check, ABI/version compatibility, cross-package tests."""
    _install_from_dist(session, sorted(PACKAGES), "packaging>=23")
    session.run("python", "-m", "pip", "check")
    # the packages' composition tests need siblings a package does not depend on: they run here
    composition = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("packages/*/tests/test_composition.py"))
    session.run("python", "-m", "pytest", *PYTEST_ARGS, "--import-mode=importlib", "tests", *composition,
                *session.posargs, env=SIM_ENV)


def _golden(session: nox.Session, module: str | None, tier: str) -> None:
    _install_from_source(session, sorted(PACKAGES))
    args = ["--tier", tier] + (["--module", module] if module else [])
    session.run("python", "tools/golden.py", *args, *session.posargs, env=SIM_ENV)


@nox.session(python=PYTHON)
def golden(session: nox.Session) -> None:
    """The main job: every kernel on the CPU simulator vs its golden at the small presets,
    one line per case as it goes and one table (minutes; no step before it)."""
    _golden(session, None, "small")


@nox.session(python=PYTHON)
def golden_full(session: nox.Session) -> None:
    """`golden` plus the whole FLASH / PRO tier (about half an hour, up to ≈ 15 GB for one case)."""
    _golden(session, None, "all")


def _selected_sessions() -> list[str]:
    names, take = [], False
    for a in sys.argv[1:]:
        if a in ("-s", "--session", "--sessions", "-e"):
            take = True
        elif a.startswith("-"):
            take = False
        elif take:
            names.append(a)
    return names


def _register_per_module(kind: str, fn) -> None:
    # `nox -s golden` matches these too (nox selects by the name before the parentheses);
    # they step aside so the one-table session runs every module once.
    for m in MODULES:
        def session_fn(session: nox.Session, _m: str = m) -> None:
            if kind in _selected_sessions():
                session.skip(f"`nox -s {kind}` covers every module in one table")
            fn(session, _m)
        session_fn.__doc__ = f"{kind} for module {m!r} only"
        nox.session(python=PYTHON, name=f"{kind}(module='{m}')", default=False)(session_fn)


_register_per_module("golden", lambda session, m: _golden(session, m, "all"))


def _bench(session: nox.Session, module: str | None) -> None:
    _install_from_source(session, sorted(PACKAGES))
    session.run("python", "tools/bench.py", *(["--module", module] if module else []), *session.posargs,
                env=SIM_ENV)
    session.run("python", "tools/bench_report.py")  # the READMEs' bench blocks, from build/bench


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Cost-model µs at FLASH / PRO shapes vs the stored modelled ceilings (every module)."""
    _bench(session, None)


_register_per_module("bench", _bench)
