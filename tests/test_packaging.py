"""Packaging: the compiler's dependencies are its own; training is the optional `train` extra, and
`icon-dsl train` without it says which command installs it."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from icon_dsl.cli import main
from icon_dsl.train.extras import TRAIN_PACKAGES

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower() for req in requirements}


def test_compiler_depends_on_its_stages_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _names(project["dependencies"]) == {"lark", "torch", "sympy", "jinja2", "networkx"}
    train = _names(project["optional-dependencies"]["train"])
    assert set(TRAIN_PACKAGES.values()) <= train
    assert not train & _names(project["dependencies"])


@pytest.mark.parametrize("blocked", sorted(TRAIN_PACKAGES))
def test_train_without_the_extra_says_how_to_install_it(
    blocked: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # None in sys.modules makes `import <blocked>` fail as if the package were not installed
    monkeypatch.setitem(sys.modules, blocked, None)
    status = main(["train", str(ROOT / "specs/tsne.icon"), "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert f"missing: {TRAIN_PACKAGES[blocked]}." in err  # only the one that is missing
    assert "pip install 'icon-dsl[train]'" in err and "pip install -e '.[train]'" in err
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing was trained or written
