"""The evaluation's data: a benchmark's train and test parts, with the inputs columns need.

Takes: `digits`, `mnist1d` or a labelled file. Guarantees: digits and files are split 70/30
(stratified, seed 0); MNIST-1D keeps its own 4000 / 1000 split and is generated offline
(`mnist1d.data.make_dataset`, never `get_dataset`, which downloads), cached as `mnist1d.npz` in
the output folder; each part carries side information (a second, differently augmented view of
every sample) and the symmetric kNN graph of its features, built from the data and documented
in the benchmark's notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icon_dsl.train.data import Dataset, load_dataset
from icon_dsl.train.errors import DataError

N_NEIGHBOURS = 10


@dataclass(frozen=True)
class Benchmark:
    """Train and test parts, each with side information and a kNN graph built from its data."""

    name: str
    train: Dataset
    test: Dataset
    notes: tuple[str, ...] = ()


# -- data ----------------------------------------------------------------------------------------


def load_benchmark(data: str, cache: Path | None = None) -> Benchmark:
    """digits, mnist1d (generated offline, its own split) or a labelled file, split 70/30."""
    if data == "mnist1d":
        x, y, x_test, y_test = _mnist1d(cache)
        name = "mnist1d"
    else:
        full = load_dataset(None if data == "digits" else data)
        if full.y is None:
            raise DataError(f"{data}: evaluation needs labels (y) to score the candidates")
        x, x_test, y, y_test = _split(full.x, full.y)
        name = "digits" if data == "digits" else Path(data).stem
    notes = (
        "side information: the features of a second, differently augmented view of each sample "
        "(one fixed draw of the runtime's augmentations), so side-input columns compare views",
        f"graph: the symmetric {N_NEIGHBOURS}-nearest-neighbour graph of the features (0/1)",
    )
    image = (8, 8) if name == "digits" else None
    return Benchmark(
        name, _dataset(name, x, y, image, 1), _dataset(name + "-test", x_test, y_test, image, 2),
        notes,
    )  # fmt: skip


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    parts = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    return tuple(parts)


def _mnist1d(cache: Path | None) -> tuple[np.ndarray, ...]:
    path = None if cache is None else cache / "mnist1d.npz"
    if path is not None and path.is_file():
        z = np.load(path)
        return z["x"], z["y"], z["x_test"], z["y_test"]
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())  # generated from templates: no download
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=arrays[0], y=arrays[1], x_test=arrays[2], y_test=arrays[3])
    return arrays


def _dataset(
    name: str, x: np.ndarray, y: np.ndarray, image: tuple[int, int] | None, salt: int
) -> Dataset:
    import torch

    from icon_dsl.train.augment import make_views

    x = np.asarray(x, dtype=np.float32)
    gen = torch.Generator().manual_seed(1000 + salt)
    view, _ = make_views(torch.from_numpy(x), 1, gen, image)
    return Dataset(
        name, x, np.asarray(y, dtype=np.int64), image, side=view.numpy().astype(np.float32),
        adjacency=knn_graph(x),
    )  # fmt: skip


def knn_graph(x: np.ndarray, k: int = N_NEIGHBOURS) -> np.ndarray:
    from sklearn.neighbors import kneighbors_graph

    a = kneighbors_graph(x, k, include_self=False).toarray()
    return np.maximum(a, a.T).astype(np.float32)


def subset(d: Dataset, rows: np.ndarray, name: str) -> Dataset:
    adjacency = None if d.adjacency is None else d.adjacency[np.ix_(rows, rows)]
    side = None if d.side is None else d.side[rows]
    y = None if d.y is None else d.y[rows]
    return Dataset(name, d.x[rows], y, d.image_shape, side=side, adjacency=adjacency)


def concat(a: Dataset, b: Dataset) -> Dataset:
    """Train and test rows in one data set (table mappers embed only the rows they train on)."""
    assert a.y is not None and b.y is not None and a.side is not None and b.side is not None
    x = np.concatenate([a.x, b.x])
    return Dataset(
        a.name + "+test", x, np.concatenate([a.y, b.y]), a.image_shape,
        side=np.concatenate([a.side, b.side]), adjacency=knn_graph(x),
    )  # fmt: skip
