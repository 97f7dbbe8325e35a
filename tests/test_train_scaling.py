"""Feature scaling: `standardize` and the one-line note about very uneven feature scales."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

from icon_dsl.cli import main
from icon_dsl.train.data import load_digits
from icon_dsl.train.errors import TrainNote
from icon_dsl.train.runtime import train
from icon_dsl.train.scaling import fit_scaling, scale_note

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_scaling_is_scikit_learns_standard_scaler() -> None:
    x = load_wine().data
    expected = StandardScaler().fit_transform(x)
    assert np.allclose(fit_scaling(x).apply(x), expected, atol=1e-5)
    constant = np.ones((5, 2))
    assert np.array_equal(fit_scaling(constant).apply(constant), np.zeros((5, 2)))


def test_the_note_speaks_for_wine_and_not_for_digits() -> None:
    note = scale_note(load_wine().data)
    assert note is not None and "\n" not in note
    assert note.startswith("feature scales differ by 388x (column 12")
    assert "--standardize" in note
    assert scale_note(load_digits().x) is None  # pixels: 1.5x
    assert scale_note(np.ones((4, 3))) is None


def test_standardize_trains_on_standardised_features() -> None:
    wine = load_wine()
    options: dict = {"epochs": 2, "out": False, "restarts": 1, "seed": 3}
    scaled = train(SPECS / "pca.icon", data=(wine.data, wine.target), standardize=True,
                   progress=False, **options)  # fmt: skip
    manual = fit_scaling(wine.data.astype(np.float32)).apply(wine.data)  # as train reads it
    direct = train(SPECS / "pca.icon", data=(manual, wine.target), progress=False, **options)
    assert np.array_equal(scaled.embedding, direct.embedding)
    assert scaled.model is not None
    assert np.array_equal(scaled.model.embed(wine.data), scaled.embedding)  # same scaling
    with pytest.warns(TrainNote, match="feature scales differ by 388x"):
        train(SPECS / "pca.icon", data=(wine.data, wine.target), progress=False, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainNote)  # no note once standardised
        train(SPECS / "pca.icon", data=(wine.data, wine.target), standardize=True,
              progress=False, **options)  # fmt: skip


def test_cli_standardize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wine = load_wine()
    data = tmp_path / "wine.npz"
    np.savez(data, x=wine.data, y=wine.target)
    out = tmp_path / "run"
    argv = ["train", str(SPECS / "tsne.icon"), "--data", str(data), "--epochs", "20"]
    assert main([*argv, "--out", str(out), "--standardize"]) == 0
    assert "note:" not in capsys.readouterr().err
    scaled = json.loads((out / "metrics.json").read_text())
    assert main([*argv, "--out", str(tmp_path / "raw")]) == 0
    assert "note: feature scales differ" in capsys.readouterr().err
    raw = json.loads((tmp_path / "raw" / "metrics.json").read_text())
    assert scaled["knn_accuracy"] > raw["knn_accuracy"] + 0.1  # proline no longer dominates
