"""Reading a torch ``Dataset`` or ``DataLoader`` into the runtime's ``Dataset``.

``train(spec, data=...)`` accepts a ``torch.utils.data.Dataset`` (map-style: ``len`` and
indexing) or a ``DataLoader``. Each item (or each batch of a loader) is one of:

- a tensor / array: the sample x;
- a tuple or list ``(x,)`` or ``(x, y)`` (what torchvision data sets yield);
- a dict with the sample under ``x`` and, optionally, labels under ``y`` (or ``label``,
  ``labels``, ``target``) and side information under ``side``.

The inputs of the spec's p are then taken by name: ``y`` for label specs, ``side`` for specs
with side information. ``index`` and ``modality`` are the runtime's own: the sample's position in
the data set (in the order read) and the number of its view; a dict naming them, or any other
key, is refused with a message that says so. The samples are read once, in order, into memory
(float32 features, flattened for the spec's p; the mapper reads each sample in its original
shape, ``sample_shape``), and the runtime batches them with its own seeded shuffling, so the
same seed gives the same run and ``resume`` ends where the uninterrupted run ends. A loader's
``batch_size`` becomes the default batch size; its sampler, shuffling and workers only serve
this one read (transforms run then, once: random augmentations belong in ``views=``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from icon_dsl.train.data import Dataset, _as_features, _as_labels
from icon_dsl.train.errors import DataError

LABEL_KEYS = ("y", "label", "labels", "target")
RUNTIME_KEYS = ("index", "modality")


def is_torch_data(data: object) -> bool:
    return isinstance(data, DataLoader | TorchDataset)


def from_torch(data: Any, name: str | None = None) -> tuple[Dataset, int | None]:
    """The data set read from a torch Dataset or DataLoader, and the loader's batch size."""
    if isinstance(data, DataLoader):
        source = name or f"DataLoader({type(data.dataset).__name__})"
        batches = [_fields(batch, f"{source} batch {i}", True) for i, batch in enumerate(data)]
        size = data.batch_size
    else:
        source = name or type(data).__name__
        try:
            count = len(data)
        except TypeError:
            raise DataError(
                f"{source}: a torch Dataset needs a length (a map-style data set); wrap an "
                "iterable data set in a DataLoader"
            ) from None
        batches = [_fields(data[i], f"{source}[{i}]", False) for i in range(count)]
        size = None
    if not batches:
        raise DataError(f"{source}: the data is empty")
    return _dataset(batches, source), size


def _fields(item: Any, where: str, batched: bool) -> dict[str, np.ndarray]:
    """x (and y, side) of one item or batch, as numpy arrays with a leading batch axis."""
    if isinstance(item, Mapping):
        fields = _named(item, where)
    elif isinstance(item, tuple | list):
        if len(item) not in (1, 2):
            raise DataError(
                f"{where}: a tuple item must be (x,) or (x, y), got {len(item)} parts; use a "
                "dict with keys x, y, side for more"
            )
        fields = {"x": item[0]} if len(item) == 1 else {"x": item[0], "y": item[1]}
    else:
        fields = {"x": item}
    arrays = {key: _numpy(value, f"{where} {key!r}") for key, value in fields.items()}
    if not batched:
        arrays = {key: value[None] for key, value in arrays.items()}
    return arrays


def _named(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in item.items():
        if key in ("x", "side"):
            fields[key] = value
        elif key in LABEL_KEYS:
            if "y" in fields:
                raise DataError(f"{where}: labels under two keys ({', '.join(LABEL_KEYS)})")
            fields["y"] = value
        elif key in RUNTIME_KEYS:
            raise DataError(
                f"{where}: {key!r} is made by the runtime (index: the sample's position in the "
                "data set; modality: the number of its view); leave it out of the items"
            )
        else:
            raise DataError(
                f"{where}: unknown key {key!r}; an item's keys are x (the sample), "
                f"{', '.join(LABEL_KEYS)} (labels) and side (side information)"
            )
    if "x" not in fields:
        raise DataError(f"{where}: no sample under 'x' (keys: {', '.join(map(str, item))})")
    return fields


def _numpy(value: Any, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, int | float | np.number):
        return np.asarray(value)
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise DataError(f"{where}: not an array or tensor ({error})") from None


def _dataset(batches: list[dict[str, np.ndarray]], source: str) -> Dataset:
    keys = set(batches[0])
    for i, batch in enumerate(batches):
        if set(batch) != keys:
            raise DataError(
                f"{source}: item or batch {i} has fields {sorted(batch)}, the first has "
                f"{sorted(keys)}"
            )
    x = _stack([b["x"] for b in batches], f"{source} x")
    shape = tuple(int(d) for d in x.shape[1:])
    features = _as_features(x.reshape(len(x), -1), source)
    labels = None
    if "y" in keys:
        labels = _as_labels(_stack([b["y"] for b in batches], f"{source} y"), source, len(x))
    side = None
    if "side" in keys:
        side_values = _stack([b["side"] for b in batches], f"{source} side")
        side = _as_features(side_values.reshape(len(x), -1), f"{source} side")
    sample_shape = shape if len(shape) != 1 else None
    return Dataset(name=source, x=features, y=labels, side=side, sample_shape=sample_shape)


def _stack(parts: Iterable[np.ndarray], where: str) -> np.ndarray:
    arrays = list(parts)
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{where}: samples of different shapes {sorted(shapes)[:3]}")
    return np.concatenate(arrays)
