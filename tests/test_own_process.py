"""`icon-dsl train` in a process of its own (icon_dsl/train/own_process.py): the allocator keeps
freed memory, the collector leaves the loaded libraries alone, a second process does the work
that needs scikit-learn and matplotlib (icon_dsl/train/helper.py), and the run's results and
files are those of the same run called in-process.

The settings are process-wide, so each of their checks runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from conftest import ROOT

from icon_dsl.train.data import load_digits
from icon_dsl.train.helper import Helper, RemoteTraceback
from icon_dsl.train.plots import plot_loss

PLOTS = "icon_dsl.train.plots"


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this checkout; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


# an epoch's pattern of a full-batch t-SNE on digits: a few 1,797 x 1,797 float32 temporaries
# made and freed together; prints whether the setting took and the page faults of 10 epochs
_EPOCHS_OF_TEMPORARIES = """
import resource
import numpy as np
from icon_dsl.train.own_process import keep_freed_memory

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

kept = keep_freed_memory()
for epoch in range(12):
    if epoch == 2:
        before = faults()
    blocks = [np.ones((1797, 1797), np.float32) for _ in range(3)]
    del blocks
print(kept, faults() - before)
"""


def test_freed_memory_is_reused_without_page_faults() -> None:
    if "CS_GNU_LIBC_VERSION" not in getattr(os, "confstr_names", {}):
        pytest.skip("glibc only: other C libraries keep their own ways")
    kept, faults = _python(_EPOCHS_OF_TEMPORARIES).split()
    assert kept == "True"
    # 10 epochs of 3 blocks of 3,156 pages; without the setting glibc 2.36 hands part of them
    # back each epoch and faults about 11,000 pages here
    assert int(faults) < 1000


def test_the_loaded_libraries_are_frozen_and_the_collector_is_back_on() -> None:
    code = """
import gc
from icon_dsl.train.own_process import libraries_frozen

with libraries_frozen():
    off = not gc.isenabled()
    import torch
print(off, gc.isenabled(), gc.get_freeze_count() > 10_000)
"""
    assert _python(code).split() == ["True", "True", "True"]


def test_a_run_in_its_own_process_writes_what_the_same_run_in_process_writes(
    tmp_path: Path,
) -> None:
    digits = load_digits()
    assert digits.y is not None
    data = tmp_path / "small.npz"
    np.savez(data, x=digits.x[:150], y=digits.y[:150])
    args = ["train", str(ROOT / "specs/tsne.icon"), "--data", str(data), "--epochs", "7"]
    own, here = tmp_path / "own", tmp_path / "here"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "icon_dsl.cli", *args, "--out", str(own), "--quiet"]
    ran = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    run_cli(*args, "--out", here, "--quiet", expect=0)
    for name in ("embedding.npy", "embedding.png", "loss.png", "neighbours.png", "spec.icon"):
        assert (own / name).read_bytes() == (here / name).read_bytes(), name
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (own, here)]
    for found in metrics:
        del found["wall_time_s"]
    assert metrics[0] == metrics[1]
    assert (own / "run.json").read_text() == (here / "run.json").read_text()


def test_the_runs_own_process_leaves_scikit_learn_to_its_helper(tmp_path: Path) -> None:
    code = f"""
import sys
from icon_dsl.cli import main
code = main(["train", "specs/tsne.icon", "--epochs", "3", "--quiet", "--out", {str(tmp_path)!r}],
            own_process=True)
print(code, "sklearn" in sys.modules)
"""
    assert _python(code).split() == ["0", "False"]
    assert json.loads((tmp_path / "metrics.json").read_text())["knn_accuracy"] > 0.5


def test_the_helper_returns_what_the_call_returns_here(tmp_path: Path) -> None:
    losses = list(np.linspace(5.0, 1.0, 30))
    with Helper(process=True) as helper:
        digits = helper.call("icon_dsl.train.data:load_dataset", None)
        helper.start(f"{PLOTS}:plot_loss", losses, tmp_path / "there.png", title="a run")
        assert helper.wait() == tmp_path / "there.png"
        assert helper.process is not None  # it answered both
    here = load_digits()
    assert digits.y is not None and here.y is not None
    assert np.array_equal(digits.x, here.x) and np.array_equal(digits.y, here.y)
    plot_loss(losses, tmp_path / "here.png", title="a run")
    assert (tmp_path / "there.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_what_a_call_raises_there_is_raised_here(tmp_path: Path) -> None:
    snapshot = (0, np.full((1, 4), 0.25), np.full((1, 4), 0.25))
    with Helper(process=True) as helper:
        with pytest.raises(ValueError, match="unknown divergence") as raised:
            helper.call(
                f"{PLOTS}:plot_neighbour_distributions",
                [snapshot],
                [0],
                tmp_path / "pq.png",
                divergence="hellinger",
            )
        assert isinstance(raised.value.__cause__, RemoteTraceback)
        assert "plot_neighbour_distributions" in str(raised.value.__cause__)  # where, there
        (tmp_path / "a-file").write_text("")
        with pytest.raises(OSError) as raised_os:  # a folder under a file
            helper.call(f"{PLOTS}:plot_loss", [1.0, 0.5], tmp_path / "a-file" / "loss.png")
        assert raised_os.value.filename == str(tmp_path / "a-file")  # the CLI names it (exit 3)
        assert helper.process is not None  # errors are answers: it still takes calls


def test_a_call_the_second_process_cannot_take_runs_here() -> None:
    with Helper(process=True) as helper:
        lock = threading.Lock()  # an argument that cannot be pickled
        assert helper.call("builtins:repr", lock) == repr(lock)
        assert helper.process is not None
        helper.process.kill()
        helper.process.wait()
        assert helper.call("math:hypot", 3.0, 4.0) == 5.0
        assert helper.process is None  # given up: every call from now on runs here


def test_without_a_second_process_calls_run_here_in_the_order_started() -> None:
    helper = Helper(process=False)
    helper.start("operator:add", 1, 2)
    helper.start("operator:mul", 3, 4)
    assert [helper.wait(), helper.wait()] == [3, 12]
    assert helper.call("math:hypot", 3.0, 4.0) == 5.0
