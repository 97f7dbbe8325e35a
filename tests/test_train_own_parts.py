"""train(mapper=..., data=torch Dataset | DataLoader | arrays, views=...): a spec's loss on your
own encoder, data and views, with the runtime's checkpoints, resume, metrics and pictures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from icon_dsl.train import loop
from icon_dsl.train.errors import DataError, TrainError
from icon_dsl.train.metrics import knn_accuracy
from icon_dsl.train.runtime import train

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_cnn(dim: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, dim),
    )


def digit_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    images = torch.tensor(digits.images[:n] / 16.0, dtype=torch.float32).unsqueeze(1)
    return images, torch.tensor(digits.target[:n])


class ShiftAndNoise:
    """A view of a batch of images: each moved by up to one pixel, plus a little noise."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.shapes.append(tuple(batch.shape))
        shifts = torch.randint(-1, 2, (2,), generator=generator)
        moved = torch.roll(batch, (int(shifts[0]), int(shifts[1])), dims=(2, 3))
        return moved + 0.05 * torch.randn(batch.shape, generator=generator)


def test_a_cnn_trains_through_train_with_my_views(tmp_path: Path) -> None:
    images, labels = digit_images(400)
    cnn, views = small_cnn(), ShiftAndNoise()
    with torch.no_grad():
        before = cnn(images).numpy()
    result = train(SPECS / "simclr.icon", data=(images.numpy(), labels.numpy()), mapper=cnn,
                   views=views, epochs=15, batch_size=100, out=tmp_path / "run",
                   progress=False)  # fmt: skip
    assert result.model is not None and result.model.mapper is cnn  # trained in place
    # training batches of 100 images, and the fixed evaluation batch (all 400) for the pictures
    assert set(views.shapes) == {(100, 1, 8, 8), (400, 1, 8, 8)}
    assert result.embedding.shape == (400, 16)
    assert result.losses[-1] < result.losses[0]
    # the 10-NN accuracy of the trained CNN's embedding beats the same CNN untrained (measured:
    # 0.9225 against 0.8975; random convolutions already keep much of the pixel distances)
    trained = knn_accuracy(result.embedding, labels.numpy())
    assert result.metrics["knn_accuracy"] == trained
    assert trained > knn_accuracy(before, labels.numpy()) + 0.015
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"checkpoint.pt", "weights.pt", "embedding.png", "neighbours.png"} <= names
    new = result.model.embed(images[:5].numpy())  # new images, in their own shape
    assert np.allclose(new, result.embedding[:5], atol=1e-5)


def test_own_mapper_runs_resume_to_the_uninterrupted_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its second epoch's checkpoint and resumed (a fresh CNN, as a new process
    would build), the run ends where the uninterrupted one ends."""
    images, labels = digit_images(200)
    options: dict[str, Any] = {"data": (images.numpy(), labels.numpy()), "epochs": 3, "batch_size": 50,
               "progress": False, "views": ShiftAndNoise()}  # fmt: skip
    whole = train(SPECS / "simclr.icon", mapper=small_cnn(), out=tmp_path / "whole", **options)
    real_save = loop.save_checkpoint
    saves = []

    def save_then_die(out_dir: Path, state: dict) -> None:
        real_save(out_dir, state)
        saves.append(state["epoch"])
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(SPECS / "simclr.icon", mapper=small_cnn(), out=tmp_path / "cut", **options)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed = train(SPECS / "simclr.icon", mapper=small_cnn(), out=tmp_path / "cut",
                    resume=True, **options)  # fmt: skip
    assert saves == [1, 2]
    assert whole.losses == resumed.losses
    assert np.array_equal(whole.embedding, resumed.embedding)


def test_labels_come_from_a_data_loader_by_name() -> None:
    images, labels = digit_images(240)
    loader = DataLoader(TensorDataset(images, labels), batch_size=60, shuffle=True)
    result = train(SPECS / "supcon.icon", data=loader, mapper=small_cnn(), epochs=2,
                   out=False, progress=False)  # fmt: skip
    assert result.model is not None and result.model.plan.batch_size == 60  # the loader's
    assert result.embedding.shape == (240, 16)
    assert "knn_accuracy" in result.metrics  # labels were read from the batches


class DictDigits(Dataset):
    def __init__(self, n: int, extra: dict[str, object] | None = None) -> None:
        self.images, self.labels = digit_images(n)
        self.extra = extra or {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, object]:
        image = self.images[i]
        return {"x": image, "label": self.labels[i], "side": image.flatten()[::4], **self.extra}


def test_side_information_comes_from_dict_items() -> None:
    result = train(SPECS / "lgsimclr.icon", data=DictDigits(120), mapper=small_cnn(64),
                   epochs=1, batch_size=40, out=False, progress=False)  # fmt: skip
    assert result.embedding.shape == (120, 64)


def test_mistakes_are_named() -> None:
    images, labels = digit_images(60)
    data = (images.numpy(), labels.numpy())
    with pytest.raises(DataError, match=r"'index' is made by the runtime"):
        train(SPECS / "simclr.icon", data=DictDigits(10, {"index": 0}), out=False, progress=False)
    with pytest.raises(DataError, match=r"unknown key 'pixels'"):
        train(SPECS / "simclr.icon", data=DictDigits(10, {"pixels": 0}), out=False, progress=False)
    with pytest.raises(TrainError, match="mapper is a table"):
        train(SPECS / "tsne.icon", data=data, mapper=small_cnn(), out=False, progress=False)
    with pytest.raises(TrainError, match="does not use views"):
        train(SPECS / "supcon.icon", data=data, mapper=small_cnn(), views=ShiftAndNoise(),
              out=False, progress=False)  # fmt: skip
    with pytest.raises(TrainError, match=r"views= must return a tensor of the batch's shape"):
        train(SPECS / "simclr.icon", data=data, mapper=small_cnn(), views=lambda b: b[:, 0],
              epochs=1, out=False, progress=False)  # fmt: skip
