"""Feature scaling: standardising the features, and the note that suggests it.

Distances between raw features are dominated by the features with the largest spread: on
scikit-learn's wine data (proline in the hundreds, hue below 2) a 10-NN classifier (5-fold
``metrics.knn_accuracy``) is right 0.673 of the time on the raw features and 0.972 after
standardising. ``standardize`` puts every
feature on zero mean and unit variance (the training data's); ``scale_note`` says so in one line
when the largest feature standard deviation is more than ``SCALE_RATIO`` times the median one
(digits' pixels: 1.5x, no note; wine: 388x).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from icon_dsl.train.data import Dataset

SCALE_RATIO = 10.0


@dataclass(frozen=True, eq=False)
class Scaling:
    """x -> (x - mean) / scale, per feature (float32 arrays of shape (D,))."""

    mean: np.ndarray
    scale: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.scale).astype(np.float32)


def fit_scaling(x: np.ndarray) -> Scaling:
    """The mean and standard deviation of each feature (a constant feature keeps scale 1), in
    float64 like scikit-learn's StandardScaler, stored as float32."""
    values = np.asarray(x, dtype=np.float64)
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    std[std == 0] = 1.0
    return Scaling(mean.astype(np.float32), std.astype(np.float32))


def standardize(dataset: Dataset) -> tuple[Dataset, Scaling]:
    """The data set with standardised features, and the scaling that did it."""
    scaling = fit_scaling(dataset.x)
    return replace(dataset, x=scaling.apply(dataset.x)), scaling


def scale_note(x: np.ndarray) -> str | None:
    """One line suggesting standardisation when the feature scales differ by more than
    SCALE_RATIO (largest standard deviation over the median of the non-constant ones)."""
    std = np.asarray(x, dtype=np.float64).std(axis=0)
    varying = std[std > 0]
    if varying.size < 2:
        return None
    median = float(np.median(varying))
    ratio = float(varying.max()) / median
    if ratio <= SCALE_RATIO:
        return None
    column = int(std.argmax())
    return (
        f"feature scales differ by {ratio:.0f}x (column {column} has standard deviation "
        f"{std[column]:.3g}, the median column {median:.3g}), so it dominates the distances; "
        "--standardize (standardize=True) puts every feature on unit variance"
    )
