"""The package's layering (pyproject.toml's [tool.importlinter] contracts) holds, and the check
has teeth: an import against the layers, a cycle, or a module placed in no layer breaks it."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

_LINT = (
    "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
)


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the package and pyproject.toml under `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", _LINT], cwd=root, env=env, capture_output=True, text=True
    )


def test_the_layer_contracts_hold() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, (
        run.stdout[-3000:] + "\nA module imports against the layers in pyproject.toml "
        "([tool.importlinter]): move the import, or place a new module in a layer."
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package and its pyproject.toml, to break on purpose."""
    shutil.copytree(
        ROOT / "icon_dsl", tmp_path / "icon_dsl", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("path", "line", "broken"),
    [
        ("icon_dsl/ir.py", "from . import pipeline", "imports only the layers below"),
        ("icon_dsl/codegen/names.py", "from . import emit", "no import cycles"),
        ("icon_dsl/unplaced.py", "import math", "icon_dsl.unplaced"),
    ],
)
def test_a_broken_layering_is_reported(copy: Path, path: str, line: str, broken: str) -> None:
    target = copy / path
    text = target.read_text() if target.exists() else ""
    target.write_text(text + f"\n{line}\n")
    run = lint_imports(copy)
    assert run.returncode != 0
    assert broken in run.stdout + run.stderr


def deferred_imports_without_reason(root: Path) -> list[str]:
    """Imports of the package's own modules inside a function with no comment saying why: on
    the import's line, or on the line above its run of import lines."""
    found = []
    for path in sorted((root / "icon_dsl").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if not isinstance(inner, ast.ImportFrom):
                    continue
                own = inner.level > 0 or (inner.module or "").startswith("icon_dsl")
                if own and not _has_reason(lines, inner.lineno - 1):
                    found.append(f"{path.relative_to(root)}:{inner.lineno}")
    return sorted(set(found))


def _has_reason(lines: list[str], at: int) -> bool:
    if "#" in lines[at]:
        return True
    above = at - 1
    while above >= 0 and (
        lines[above].strip().startswith(("import ", "from ")) or not lines[above].strip()
    ):
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def test_deferred_imports_say_why() -> None:
    missing = deferred_imports_without_reason(ROOT)
    assert not missing, (
        "imports of icon_dsl modules inside functions need a comment saying why (a later "
        "layer, torch or a heavy optional package loaded on first use); move the others to the "
        "top of the module:\n" + "\n".join(missing)
    )


def test_a_deferred_import_without_reason_is_found(copy: Path) -> None:
    target = copy / "icon_dsl" / "ir.py"
    target.write_text(target.read_text() + "\n\ndef late():\n    from . import registry\n")
    assert deferred_imports_without_reason(copy) == [f"icon_dsl/ir.py:{_last_line(target)}"]


def _last_line(path: Path) -> int:
    return len(path.read_text().splitlines())
