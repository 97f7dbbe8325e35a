"""Shared test helpers and the `slow` marker.

Test modules import from here (`from conftest import ROOT, load_generated, close`); the shared
batches of the whole-table tests live in whole_table.py, the outside reference losses in
references.py.

`slow` marks the whole-table tests: every test parametrized over the cases of whole_table.py
(one spec per distinct loss of the enumerated table) gets it. Plain `pytest` and `.ci/run` run
everything; `pytest -m "not slow"` is the quick loop while editing.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import whole_table

# the disk caches (known structures, compiled templates, probes) go to a fresh folder per
# session, never to the user's own; subprocesses inherit it
os.environ.setdefault("ICON_DSL_CACHE_DIR", tempfile.mkdtemp(prefix="icon-dsl-test-cache-"))

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.icon"))
GENERATED = ROOT / "generated"


def load_generated(module: str | Path, name: str | None = None) -> Any:
    """The one public nn.Module class of a generated module: `generated/<module>.py` for a
    stem, or the file at a path; imported by file path under `name` (default: from the stem).

    Typed Any: the class is made at run time, and its methods (`distributions`, `divergence`,
    `build_mapper`) depend on the spec."""
    path = module if isinstance(module, Path) else GENERATED / f"{module}.py"
    spec = importlib.util.spec_from_file_location(name or f"icon_generated_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    classes = [
        obj
        for key, obj in vars(loaded).items()
        if inspect.isclass(obj)
        and issubclass(obj, torch.nn.Module)
        and obj.__module__ == loaded.__name__
        and not key.startswith("_")
    ]
    assert len(classes) == 1, f"{path.name}: expected one public nn.Module, got {classes}"
    return classes[0]


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    """Assert two tensors equal within an absolute tolerance (no relative slack)."""
    assert torch.allclose(a, b, atol=tol, rtol=0), (a, b)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a whole-table test (deselect with -m 'not slow'; .ci/run runs it)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests parametrized over whole_table.py's cases as slow."""
    candidates = [
        item for item in items if "spec" in getattr(getattr(item, "callspec", None), "params", {})
    ]
    if not candidates:  # listing the table costs seconds: only when a test may use it
        return
    table = {spec for mapper in (True, False) for _, spec in whole_table.specs(mapper)}
    for item in candidates:
        if item.callspec.params.get("spec") in table:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.slow)
