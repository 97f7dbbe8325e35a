"""Checkpoints hold only tensors and plain data and load with ``weights_only=True``.

A checkpoint carrying any other pickled object is refused before anything in it runs; one that
lacks a part of the training state, or whose tensors do not fit the run's model, is refused with
a message naming what is missing or which shape differs. (Bit-identical resume is tested in
test_train_runtime.py.)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from icon_dsl.train import checkpoint
from icon_dsl.train.data import load_digits
from icon_dsl.train.errors import TrainError
from icon_dsl.train.runtime import train

try:
    from tests.cli_run import run_cli
except ImportError:  # pytest run from tests/
    from cli_run import run_cli  # type: ignore[no-redef]

SPECS = Path(__file__).resolve().parent.parent / "specs"
TSNE = SPECS / "tsne.icon"
N = 40


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    digits = load_digits()
    assert digits.y is not None
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, x=digits.x[:N], y=digits.y[:N])
    return path


@pytest.fixture(scope="module")
def finished(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a finished 2-epoch t-SNE run (its checkpoint is after epoch 2)."""
    out = tmp_path_factory.mktemp("finished")
    train(TSNE, data=str(data), epochs=2, out=out, progress=False)
    return out


@pytest.fixture
def run_dir(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished run, to tamper with."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _edit(run_dir: Path, change: Any) -> None:
    path = run_dir / checkpoint.CHECKPOINT_NAME
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _resume(data: Path, run_dir: Path) -> Any:
    return train(TSNE, data=str(data), epochs=2, out=run_dir, resume=True, progress=False)


class WritesAFile:
    """Unpickling this calls Path.touch on a marker file: what a hostile checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def test_saved_checkpoints_load_with_weights_only(finished: Path) -> None:
    state = torch.load(finished / checkpoint.CHECKPOINT_NAME, weights_only=True)
    assert set(state) == set(checkpoint.FIELDS)
    epoch, p, q = state["snapshots"][0]
    assert epoch == 0 and isinstance(p, torch.Tensor) and p.dtype == torch.float64


def test_a_checkpoint_carrying_a_pickled_object_is_refused(
    data: Path, run_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    _edit(run_dir, lambda state: state.update(extra=WritesAFile(marker)))
    with pytest.raises(TrainError) as caught:
        _resume(data, run_dir)
    message = str(caught.value)
    assert message.startswith(f"{run_dir / 'checkpoint.pt'}: refused: the file holds a Python")
    # torch names the first global it refuses: getattr, to fetch Path.touch
    assert "a Python object (getattr)" in message and "loading it could run code" in message
    assert not marker.exists()  # nothing in the file ran
    ran = run_cli("train", TSNE, "--data", data, "--epochs", "2", "--out", run_dir, "--resume")
    assert ran.code == 1 and "refused" in ran.err and not marker.exists()


def test_a_checkpoint_without_its_optimiser_state_names_what_is_missing(
    data: Path, run_dir: Path
) -> None:
    _edit(run_dir, lambda state: state.pop("optimizer"))
    ran = run_cli(
        "train", TSNE, "--data", data, "--epochs", "2", "--out", run_dir, "--resume", expect=1
    )
    assert (
        f"error: {run_dir / 'checkpoint.pt'}: the checkpoint is incomplete: it has no "
        "'optimizer' (the optimiser's state); start afresh without --resume" in ran.err
    )


def test_a_checkpoint_of_the_wrong_type_is_named(data: Path, run_dir: Path) -> None:
    _edit(run_dir, lambda state: state.update(epoch="two"))
    with pytest.raises(TrainError, match="the checkpoint's 'epoch' .* is a str, not a int"):
        _resume(data, run_dir)


def test_weights_of_the_wrong_shape_are_named(data: Path, run_dir: Path) -> None:
    def wrong_shape(state: dict[str, Any]) -> None:
        state["mapper"]["net.weight"] = torch.zeros(N, 3)

    _edit(run_dir, wrong_shape)
    with pytest.raises(TrainError) as caught:
        _resume(data, run_dir)
    assert (
        "the checkpoint's mapper weights do not fit this run's model: net.weight has shape "
        f"({N}, 3) in the checkpoint, ({N}, 2) in this run's model" in str(caught.value)
    )


def test_missing_and_unexpected_weights_are_named(data: Path, run_dir: Path) -> None:
    def renamed(state: dict[str, Any]) -> None:
        state["mapper"]["table.weight"] = state["mapper"].pop("net.weight")

    _edit(run_dir, renamed)
    with pytest.raises(TrainError, match="missing net.weight; unexpected table.weight"):
        _resume(data, run_dir)


def test_optimiser_moments_of_the_wrong_shape_are_named(data: Path, run_dir: Path) -> None:
    def wrong_moments(state: dict[str, Any]) -> None:
        state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)

    _edit(run_dir, wrong_moments)
    with pytest.raises(TrainError, match=r"the optimiser's exp_avg of parameter 0 is \(3,\)"):
        _resume(data, run_dir)


def test_a_torn_checkpoint_cannot_be_read(data: Path, run_dir: Path) -> None:
    path = run_dir / checkpoint.CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(TrainError, match="cannot read the checkpoint"):
        _resume(data, run_dir)


def test_a_directory_named_checkpoint_pt_is_named(tmp_path: Path) -> None:
    (tmp_path / checkpoint.CHECKPOINT_NAME).mkdir()
    with pytest.raises(TrainError, match="is a directory, not a checkpoint file"):
        checkpoint.load(tmp_path, {})


def test_resume_of_an_intact_checkpoint_ends_as_the_run(data: Path, run_dir: Path) -> None:
    whole = np.load(run_dir / "embedding.npy")
    resumed = _resume(data, run_dir)  # already at its last epoch: nothing left to train
    assert np.array_equal(resumed.embedding, whole)
