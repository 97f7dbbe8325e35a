"""The package's layering (pyproject.toml's [tool.importlinter] contracts) holds, and the check
has teeth: an import against the layers, a cycle, or a module placed in no layer breaks it."""

from __future__ import annotations

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
