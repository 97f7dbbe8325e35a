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

ROOT = Path(__file__).resolve().parents[1]


def _train(tmp_path: Path, name: str, nproc: int) -> list[float]:
    out = tmp_path / name
    command = [sys.executable, "-m", "icon_dsl.cli", "train", str(ROOT / "specs" / "supcon.icon")]
    command += ["--epochs", "2", "--batch-size", "128", "--out", str(out), "--quiet"]
    command += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((out / "run.json").read_text())
    assert info["processes"] == nproc
    return [float(v) for v in info["losses"]]


def test_two_processes_follow_one(tmp_path: Path) -> None:
    one = _train(tmp_path, "one", 1)
    two = _train(tmp_path, "two", 2)
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), (one, two)
