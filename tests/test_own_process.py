"""`icon-dsl train` in a process of its own (icon_dsl/train/own_process.py): the allocator keeps
freed memory, the collector leaves the loaded libraries alone, a second process draws
neighbours.png (icon_dsl/train/painter.py), and the run's results and files are those of the same
run called in-process.

The settings are process-wide, so each of their checks runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from conftest import ROOT

from icon_dsl.train.data import load_digits
from icon_dsl.train.painter import Painter, RemoteTraceback
from icon_dsl.train.plots import plot_loss, plot_neighbour_distributions


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


def _losses_drawn(painter: Painter | None, path: Path) -> None:
    """loss.png of a made-up run, drawn by ``painter``'s process (None: here)."""
    losses = list(np.linspace(5.0, 1.0, 30))
    if painter is None:
        plot_loss(losses, path, title="a run")
        return
    painter.start(plot_loss, losses, path, title="a run")
    painter.wait()


def test_the_painter_draws_the_picture_drawn_here(tmp_path: Path) -> None:
    with Painter() as painter:
        _losses_drawn(painter, tmp_path / "there.png")
        assert painter.sent
    _losses_drawn(None, tmp_path / "here.png")
    assert (tmp_path / "there.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_what_drawing_raises_there_is_raised_here(tmp_path: Path) -> None:
    snapshot = (0, np.full((1, 4), 0.25), np.full((1, 4), 0.25))
    with Painter() as painter, pytest.raises(ValueError, match="unknown divergence") as raised:
        painter.start(
            plot_neighbour_distributions,
            [snapshot],
            [0],
            tmp_path / "pq.png",
            divergence="hellinger",
        )
        painter.wait()
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "plot_neighbour_distributions" in str(raised.value.__cause__)  # where, there
    (tmp_path / "a-file").write_text("")
    with Painter() as painter, pytest.raises(OSError) as raised_os:
        _losses_drawn(painter, tmp_path / "a-file" / "loss.png")  # a folder under a file
    assert raised_os.value.filename == str(tmp_path / "a-file")  # the CLI names it (exit 3)


def test_a_picture_the_second_process_cannot_take_is_drawn_here(tmp_path: Path) -> None:
    with Painter() as painter:
        assert painter.process is not None
        painter.process.kill()
        painter.process.wait()
        _losses_drawn(painter, tmp_path / "loss.png")
        assert not painter.sent
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
