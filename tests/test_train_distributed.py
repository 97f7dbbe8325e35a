"""`icon-dsl train --nproc 2` (torchrun, gloo on CPU) follows the one-process run.

Both runs build the same global batches from the same seed; with two processes each holds half
of every batch, the generated loss gathers the columns and DDP averages the gradients, so the
per-epoch losses must agree up to float32 reduction order (tolerance 1e-4 relative).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def _train(tmp_path: Path, name: str, nproc: int, *extra: str) -> dict:
    out = tmp_path / name
    spec, *rest = extra or ("supcon",)
    command = [sys.executable, "-m", "icon_dsl.cli", "train", str(ROOT / "specs" / f"{spec}.icon")]
    command += ["--epochs", "2", "--batch-size", "128", "--out", str(out), "--quiet"]
    command += ["--nproc", str(nproc), *rest]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]  # no worker ended in one either
    info = json.loads((out / "run.json").read_text())
    assert info["processes"] == nproc
    return info


def test_two_processes_follow_one(tmp_path: Path) -> None:
    one = _train(tmp_path, "one", 1)["losses"]
    two = _train(tmp_path, "two", 2)["losses"]
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), (one, two)


def test_two_processes_restart_and_keep_the_same_start(tmp_path: Path) -> None:
    """Every process reinitialises each start from the same seed and picks the same best."""
    one = _train(tmp_path, "one", 1, "kmeans", "--restarts", "3")["starts"]
    two = _train(tmp_path, "two", 2, "kmeans", "--restarts", "3")["starts"]
    assert one["kept"] == two["kept"] and len(one["final_divergence"]) == 3
    for a, b in zip(one["final_divergence"], two["final_divergence"], strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), (one, two)
