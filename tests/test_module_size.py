"""Module and function size: no module of icon_dsl/ over MAX_MODULE_LINES lines and no function
(or method) over MAX_FUNCTION_LINES, so that each module holds one concern and each function can
be read at once. A function's lines count from its `def` to its last line, docstring included."""

from __future__ import annotations

import ast

import pytest
from conftest import ROOT

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

PACKAGE = ROOT / "icon_dsl"

#: Modules not held to the limits yet, each with why. Take a module off once it is split.
ALLOWED: set[str] = set()  # every module is within the limits now


def _modules() -> list[str]:
    return sorted(path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py"))


def _problems(name: str, text: str) -> list[str]:
    """What in module `name` (its source `text`) is over the limits: its length, then each
    function that is too long."""
    problems = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        problems.append(f"{name} has {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text, filename=name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                problems.append(
                    f"{name}:{node.lineno} {node.name} has {length} lines "
                    f"(at most {MAX_FUNCTION_LINES})"
                )
    return problems


def _read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def test_the_package_is_found() -> None:
    assert len(_modules()) > 20


@pytest.mark.parametrize("name", [m for m in _modules() if m not in ALLOWED])
def test_modules_and_functions_are_small(name: str) -> None:
    problems = _problems(name, _read(name))
    assert not problems, "\n".join(problems) + "\nsplit it by concern"


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_each_allowed_module_still_needs_it(name: str) -> None:
    assert (ROOT / name).is_file(), f"{name} is gone: take it off ALLOWED"
    assert _problems(name, _read(name)), f"{name} is within the limits now: take it off ALLOWED"


def _function(name: str, lines: int) -> str:
    """A function of `lines` lines."""
    return f"def {name}():\n" + "".join(f"    x{i} = {i}\n" for i in range(lines - 1))


def test_a_long_module_and_a_long_function_are_reported() -> None:
    text = _function("long", MAX_FUNCTION_LINES + 1) + "\n" * MAX_MODULE_LINES
    assert _problems("big.py", text) == [
        f"big.py has {MAX_FUNCTION_LINES + 1 + MAX_MODULE_LINES} lines (at most 500)",
        f"big.py:1 long has {MAX_FUNCTION_LINES + 1} lines (at most 80)",
    ]
    assert _problems("small.py", _function("short", MAX_FUNCTION_LINES)) == []
