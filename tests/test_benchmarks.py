"""The benchmark scripts still run: each on its smallest case, checking what it reports.

The scripts are not timed here (the numbers live in docs/performance.md and docs/training.md);
these runs catch a script that no longer matches the code it measures, as
`benchmarks/train_compare.py` did when the estimator's fitted model moved to `model_`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from conftest import ROOT


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_compare_runs_its_classifier_section(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    assert _script("train_compare.py").main(["--only", "cross_entropy", "--json", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    (row,) = rows
    assert row[0] == "cross_entropy.icon vs plain torch classifier"
    # digits' 10 classes: both classifiers far above chance (0.1), on the same 20% split
    assert row[2] > 0.9 and row[3] > 0.9


def test_blocks_benchmark_agrees_between_forms() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "blocks.py"), "--sizes", "96"]
        + ["--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [line for line in run.stdout.splitlines() if line.startswith("| 96 |")]
    forms = [row.split("|")[2].strip() for row in rows]
    assert forms == ["dense", "exact", "sampled", "exact / dense", "sampled / dense"]
    assert rows[3].rstrip().endswith("0.0e+00 apart |")  # exact gives dense's loss
