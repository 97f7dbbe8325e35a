"""Every recipe under examples/ runs, on small settings, and does what it says.

Each runs as a user would run it (a subprocess from examples/, torchrun for the DDP one) and
prints one JSON line of results, which is checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def run_example(*command: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(list(command), cwd=EXAMPLES, capture_output=True, text=True,
                          timeout=900, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_recipe_has_a_test() -> None:
    recipes = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    tested = {"plain_torch_loop.py", "lightning_module.py", "ddp_torchrun.py",
              "frozen_features_clustering.py"}  # fmt: skip
    assert recipes == tested


def test_plain_torch_loop() -> None:
    result = run_example(sys.executable, "plain_torch_loop.py", "--epochs", "3", "--samples", "600")
    assert result["last_loss"] < result["first_loss"]
    assert result["knn_accuracy"] > 0.9


def test_lightning_module() -> None:
    # lightning is in the test extra (pip install -e .[test]): no skip when it is missing
    result = run_example(sys.executable, "lightning_module.py", "--epochs", "4", "--samples", "800")
    assert result["last_loss"] < result["first_loss"]


def test_ddp_under_torchrun_with_two_processes() -> None:
    result = run_example(*TORCHRUN, "ddp_torchrun.py", "--epochs", "3", "--samples", "600")
    assert result["world"] == 2 and result["weights_equal"]
    assert result["last_loss"] < result["first_loss"]
    assert result["knn_accuracy"] > 0.9


def test_frozen_features_with_a_linear_clustering_head() -> None:
    result = run_example(sys.executable, "frozen_features_clustering.py", "--samples", "500",
                         "--backbone-epochs", "3", "--head-epochs", "5", "--restarts", "1")  # fmt: skip
    assert result["head_nmi"] == pytest.approx(result["metrics_nmi"])  # the runtime's NMI
    assert result["head_nmi"] > 0.4  # 10 digit classes: chance is about 0.02
    assert result["head_cluster_accuracy"] > 0.4
