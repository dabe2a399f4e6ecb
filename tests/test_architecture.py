"""The house rules, checked: one installed package, and imports that flow one way.

- Every folder installs under ``leadscore.*``; nothing generic lands at the top of site-packages.
- ``features <- models <- training | serving``; only ``leadscore.cli`` sees both training and serving.
- The API (``leadscore.serving`` and every project module it reaches) never imports scikit-learn,
  LightGBM or the training stack.

The import graph is read statically from every ``import`` statement, function bodies included, so a
lazy import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
LAYERS = {"leadscore.features": 0, "leadscore.models": 1, "leadscore.training": 2, "leadscore.serving": 2}
FORBIDDEN_FOR_SERVING = ("sklearn", "lightgbm", "leadscore.training")
# The one allowed exception: where the C trees kernel was not built, the serving form scores through
# LightGBM, and only in this module, which compiled_trees imports lazily on that path alone
# (tests/test_compiled_trees.py checks at run time that a built kernel keeps LightGBM out of the process).
ALLOWED_FOR_SERVING = {("leadscore.models.booster_fallback", "lightgbm")}


def _module_files() -> dict[str, Path]:
    """Dotted module name -> source file, as the install maps the folders."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found.setdefault(".".join(parts), path)
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` names in an import statement, anywhere in the file (absolute names)."""
    names = set()
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = _module_files()
    return {module: _imports(path, module) for module, path in files.items()}


def _layer(module: str) -> tuple[str, int] | None:
    for package, rank in LAYERS.items():
        if module == package or module.startswith(package + "."):
            return package, rank
    return None


def test_the_package_dirs_cover_every_folder_with_code() -> None:
    folders = {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("tests", "bench")}
    assert folders == set(PACKAGE_DIRS.values()), "a folder with code is not installed under leadscore.*"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a layer above, or of a sibling layer (training <-> serving)."""
    wrong = []
    for module, imported in graph.items():
        mine = _layer(module)
        if mine is None:  # leadscore.cli: the one module that wires training and serving
            continue
        for name in imported:
            theirs = _layer(name)
            if theirs is not None and theirs[0] != mine[0] and theirs[1] >= mine[1]:
                wrong.append(f"{module} imports {name}")
    return sorted(wrong)


def forbidden_chains(graph: dict[str, set[str]]) -> list[str]:
    """Import chains from the serving package to a forbidden module, through any project module."""
    paths: dict[str, list[str]] = {m: [m] for m in graph if m.startswith("leadscore.serving")}
    todo = list(paths)
    bad = []
    while todo:
        module = todo.pop()
        for name in sorted(graph.get(module, ())):
            chain = [*paths[module], name]
            if (module, name) in ALLOWED_FOR_SERVING:
                continue
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_FOR_SERVING):
                bad.append(" -> ".join(chain))
            elif name in graph and name not in paths:
                paths[name] = chain
                todo.append(name)
    return bad


def test_imports_flow_one_way(graph: dict[str, set[str]]) -> None:
    wrong = layer_violations(graph)
    assert not wrong, "imports must flow features <- models <- training | serving:\n" + "\n".join(wrong)


def test_the_api_never_reaches_scikit_learn_lightgbm_or_training(graph: dict[str, set[str]]) -> None:
    bad = forbidden_chains(graph)
    assert not bad, "the API process must not import these:\n" + "\n".join(bad)


def test_the_checks_catch_a_lazy_import_against_the_rules(tmp_path: Path, graph: dict[str, set[str]]) -> None:
    """A features module that imports models inside a function, and a serving path that reaches
    LightGBM through a models module, are both caught."""
    source = tmp_path / "sneaky.py"
    source.write_text(
        "def f():\n    from leadscore.models.scorer import Scorer\n    import lightgbm\n    return Scorer\n"
    )
    planted = {**graph, "leadscore.features.sneaky": _imports(source, "leadscore.features.sneaky")}
    planted["leadscore.models.scorer"] = {*planted["leadscore.models.scorer"], "leadscore.features.sneaky"}
    assert "leadscore.features.sneaky imports leadscore.models.scorer" in layer_violations(planted)
    assert any(chain.endswith("leadscore.features.sneaky -> lightgbm") for chain in forbidden_chains(planted))


@pytest.mark.slow
def test_a_wheel_installs_one_package_with_its_kernels(tmp_path: Path) -> None:
    """A regular (non-editable) install: the wheel holds ``leadscore/`` alone, and the API imports from it."""
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, tracked):
        target = source / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name.decode(), target)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("leadscore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"leadscore", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for module in ("features", "models", "training", "serving"):
        assert f"leadscore/{module}/__init__.py" in names
    for kernel in ("models/_trees", "models/_sandwich", "features/_engagement"):
        assert any(n.startswith(f"leadscore/{kernel}") and n.endswith(".so") for n in names), kernel
    for template in ("report.html.j2", "report.css"):  # the report's page is rendered from package data
        assert f"leadscore/training/report/templates/{template}" in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True
    )
    # -S: no site-packages .pth files, so the editable install of this checkout is not on the path; the
    # environment's other packages are, after the wheel's folder.
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = (
        "import leadscore, leadscore.serving.app, leadscore.models.compiled_trees as c, leadscore.cli;"
        "from leadscore.training.report import render;"
        "print(leadscore.__file__); print(c.CompiledTrees.__module__);"
        "print(render.environment().get_template(render.TEMPLATE).filename)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *site])}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.splitlines()[0].startswith(str(target))
    assert out.stdout.splitlines()[2].startswith(str(target))  # the template is found in the installed package


def test_the_score_log_writer_imports_neither_pydantic_nor_numpy() -> None:
    """The spool's writer process (serving.spool_writer) stays small: what it needs is SQLAlchemy; the
    API's resident memory counts the writer's."""
    code = (
        "import sys, leadscore.serving.spool_writer\n"
        "print(sorted(m for m in ('pydantic', 'pydantic_settings', 'numpy', 'pandas', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
