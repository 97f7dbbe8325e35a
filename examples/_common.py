"""Shared by the recipes: digits as tensors, a 10-NN score, the repository's specs folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

SPECS = Path(__file__).resolve().parent.parent / "specs"


def digits(samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8 x 8 digits: pixels in [0, 1] as (N, 64) float32, labels (N,) int64."""
    bunch = load_digits()
    x = torch.tensor(bunch.data[:samples] / 16.0, dtype=torch.float32)
    return x, torch.tensor(bunch.target[:samples], dtype=torch.int64)


def knn_accuracy(embedding: np.ndarray, labels: np.ndarray) -> float:
    """5-fold cross-validated accuracy of a 10-nearest-neighbour classifier."""
    scores = cross_val_score(KNeighborsClassifier(10), embedding, labels, cv=5)
    return float(scores.mean())
