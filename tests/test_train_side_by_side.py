"""Restarts side by side (icon_dsl/train/side_by_side.py) against the same starts one after
another: every start's parameters and final divergence, the kept start, the checkpoints, the
fallbacks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_train_runtime import _killed_and_resumed, quick, subset

from icon_dsl.train import loop, side_by_side
from icon_dsl.train.data import Dataset, load_digits
from icon_dsl.train.errors import TrainError
from icon_dsl.train.side_by_side import SideBySide
from icon_dsl.train.state import copy_state

OPTIONS: dict[str, object] = {"epochs": 3, "batch_size": 40, "restarts": 3}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return subset(load_digits(), 160)


@pytest.fixture
def no_pictures(monkeypatch: pytest.MonkeyPatch) -> None:
    from icon_dsl.train import report

    monkeypatch.setattr(report, "write_outputs", lambda *args, **kwargs: None)


def _starts_one_after_another(
    monkeypatch: pytest.MonkeyPatch, spec: str, data: Dataset
) -> tuple[list[dict[str, torch.Tensor]], Any]:
    """Every start's final mapper weights, one after another, and the result."""
    states: list[dict[str, torch.Tensor]] = []
    real = loop.Run._finish_start

    def record(run: loop.Run) -> None:
        states.append(copy_state(run.mapper))
        real(run)

    monkeypatch.setattr(loop.Run, "_finish_start", record)
    result = quick(spec, data, side_by_side=False, **OPTIONS)
    monkeypatch.setattr(loop.Run, "_finish_start", real)
    return states, result


def _starts_side_by_side(
    monkeypatch: pytest.MonkeyPatch, spec: str, data: Dataset, **options: object
) -> tuple[list[dict[str, torch.Tensor]], Any]:
    """Every start's final mapper weights, side by side, and the result."""
    states: list[dict[str, torch.Tensor]] = []
    real = SideBySide._keep_best

    def record(side: SideBySide) -> None:
        states.extend(copy_state(mapper) for mapper in side.mappers)
        real(side)

    monkeypatch.setattr(SideBySide, "_keep_best", record)
    result = quick(spec, data, **OPTIONS, **options)
    monkeypatch.setattr(SideBySide, "_keep_best", real)
    return states, result


@pytest.mark.parametrize("spec", ["kmeans", "debiased_infonce_clustering"])
def test_side_by_side_follows_the_starts_one_after_another(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    """Start r side by side is start r one after another: weights, final KL, kept start."""
    one_by_one, sequential = _starts_one_after_another(monkeypatch, spec, data)
    together, batched = _starts_side_by_side(monkeypatch, spec, data, out=tmp_path / "run")
    assert len(one_by_one) == len(together) == 3
    for first, second in zip(one_by_one, together, strict=True):
        for key, value in first.items():
            assert torch.allclose(value, second[key], rtol=1e-5, atol=1e-6), key
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    starts = info["starts"]
    assert starts["side_by_side"] is True and len(starts["final_divergence"]) == 3
    divergence = next(k for k in sequential.metrics if k in ("kl", "reverse_kl", "js"))
    assert batched.metrics[divergence] == pytest.approx(sequential.metrics[divergence], rel=1e-5)
    assert starts["kept"] - 1 == int(np.argmin(starts["final_divergence"]))
    assert np.allclose(batched.embedding, sequential.embedding, rtol=1e-5, atol=1e-6)
    assert batched.losses == pytest.approx(sequential.losses, rel=1e-5)


def test_every_start_final_kl_and_the_kept_start_match(
    data: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options: dict[str, object] = {**OPTIONS, "progress": True}
    sequential = quick("kmeans", data, out=tmp_path / "seq", side_by_side=False, **options)
    batched = quick("kmeans", data, out=tmp_path / "side", **options)
    seq = json.loads((tmp_path / "seq" / "run.json").read_text())["starts"]
    side = json.loads((tmp_path / "side" / "run.json").read_text())["starts"]
    assert seq["side_by_side"] is False and side["side_by_side"] is True
    assert seq["kept"] == side["kept"]
    for a, b in zip(seq["final_divergence"], side["final_divergence"], strict=True):
        assert abs(a - b) <= 1e-5 * abs(a)
    table = capsys.readouterr().out
    assert table.count(f"kept start {side['kept']} of 3 (the lowest final reverse_kl)") == 2
    assert batched.metrics["reverse_kl"] == pytest.approx(sequential.metrics["reverse_kl"])


@pytest.mark.usefixtures("no_pictures")
def test_a_killed_side_by_side_run_resumes_to_the_uninterrupted_result(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = quick("kmeans", data, out=tmp_path / "whole", **OPTIONS)
    # killed right after the epoch-2 checkpoint (every start's epoch 2), then resumed
    resumed = _killed_and_resumed(monkeypatch, 2, "kmeans", data, out=tmp_path / "cut", **OPTIONS)
    assert resumed.losses == whole.losses
    assert np.array_equal(resumed.embedding, whole.embedding)
    for key, value in whole.metrics.items():
        if key != "wall_time_s":
            assert resumed.metrics[key] == value, key


@pytest.mark.usefixtures("no_pictures")
def test_a_checkpoint_of_starts_one_after_another_resumes_so(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint written one start after another continues that way under the default."""
    options: dict[str, object] = {**OPTIONS, "side_by_side": False}
    whole = quick("kmeans", data, out=tmp_path / "whole", **options)
    real_save = loop.save_checkpoint
    saves = {"count": 0}

    def save_then_die(out_dir: Path, state: dict) -> None:
        real_save(out_dir, state)
        saves["count"] += 1
        if saves["count"] == 4:  # epoch 1 of the second start
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        quick("kmeans", data, out=tmp_path / "cut", **options)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed = quick("kmeans", data, out=tmp_path / "cut", resume=True, **OPTIONS)
    assert resumed.losses == whole.losses
    assert np.array_equal(resumed.embedding, whole.embedding)


@pytest.mark.usefixtures("no_pictures")
def test_a_side_by_side_checkpoint_is_not_resumed_one_after_another(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = loop.save_checkpoint

    def save_then_die(out_dir: Path, state: dict) -> None:
        real_save(out_dir, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        quick("kmeans", data, out=tmp_path / "cut", **OPTIONS)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    with pytest.raises(TrainError, match="trained its 3 starts side by side"):
        quick("kmeans", data, out=tmp_path / "cut", resume=True, side_by_side=False, **OPTIONS)


def test_where_the_starts_train_one_after_another(data: Dataset) -> None:
    result = quick("kmeans", data, epochs=1, restarts=2)
    assert result.model is not None
    plan = result.model.plan
    assert side_by_side.reason(plan, 1, False, False) is None
    single = dataclasses.replace(plan, restarts=1)
    assert "one start" in str(side_by_side.reason(single, 1, False, False))
    assert "DDP" in str(side_by_side.reason(plan, 2, False, False))
    assert "torch.compile" in str(side_by_side.reason(plan, 1, True, False))
    assert "of your own" in str(side_by_side.reason(plan, 1, False, True))
    big = dataclasses.replace(plan, restarts=10, batch_size=1024)
    assert "memory" in str(side_by_side.reason(big, 1, False, False))


@pytest.mark.usefixtures("no_pictures")
def test_a_killed_run_with_halved_starts_resumes_to_the_uninterrupted_result(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole-data clustering path, 4 starts over 12 epochs: 2 stop after epoch 1 and 1
    after epoch 4; killed after epoch 6 (both halvings in the checkpoint), resumed."""
    options: dict[str, object] = {
        "epochs": 12,
        "restarts": 4,
        "normaliser": "sampled",
        "hyperparameters": {"sigma": 1.0},
    }
    whole = quick("kmeans", data, out=tmp_path / "whole", **options)
    resumed = _killed_and_resumed(monkeypatch, 6, "kmeans", data, out=tmp_path / "cut", **options)
    assert resumed.losses == whole.losses
    assert np.array_equal(resumed.embedding, whole.embedding)
    starts = [
        json.loads((tmp_path / d / "run.json").read_text())["starts"] for d in ("whole", "cut")
    ]
    assert sorted(starts[0]["stopped_early"].values()) == [1, 1, 4]
    assert starts[0] == starts[1]
