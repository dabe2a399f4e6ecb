"""The install the README's first command makes is enough: every import of the project's code is declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "training", "serving", "leadscore")
# The modules of `--engine dask`: they may import the `dask` extra too (the CLI imports them only for that engine).
DASK_MODULES = ("features/distributed.py", "training/distributed.py", "training/distributed_scoring.py")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """The declared distributions and everything they require (extras they ask for included)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            found = requires(name) or []
        except PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in found if "extra ==" not in r)
    return seen


def test_runtime_code_imports_only_declared_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"]
    allowed = _closure({_name(r) for r in declared} | {"uvicorn", "uvloop", "httptools", "websockets", "watchfiles"})
    with_dask = allowed | _closure({_name(r) for r in project["optional-dependencies"]["dask"]})
    providers = {
        module: {d.lower().replace("_", "-") for d in dists} for module, dists in packages_distributions().items()
    }
    missing = {}
    for path in (p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            )
            for module in modules:
                top = module.split(".")[0]
                if top in PACKAGES or top in sys.stdlib_module_names or top not in providers:
                    continue
                if not providers[top] & (with_dask if str(path.relative_to(ROOT)) in DASK_MODULES else allowed):
                    missing.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not among pyproject's dependencies (or theirs): {missing}"
