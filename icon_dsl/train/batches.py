"""Batches that fit a spec: what the mapper reads and the keyword inputs the loss takes.

``Batcher`` holds the data set on the training device. ``epoch_batches`` yields the sample ids of
each batch of an epoch (the whole data set in full-batch mode, else a seeded permutation cut into
batches, the last short batch dropped so that label and view rows are never all empty).
``make_batch`` turns sample ids into a ``Batch``:

- table mappers read the sample ids; the loss gets x / y / index of those samples;
- view-based specs (p over ``index`` or ``modality`` with a parametric mapper) read N_VIEWS
  augmented views per sample (``augment.make_views``: rotation, zoom and shift / noise / pixel
  dropout for images, noise / feature dropout for vectors; none of the geometric part for a
  linear mapper: a single linear layer on raw pixels cannot be invariant to translations, and
  shifted views only taught a linear clustering head to merge clusters), ``index`` is the
  sample id of each view and ``modality`` its view number (view 0 and view 1 play the two
  modalities); ``y`` and ``side`` follow the sample of each row;
- other parametric specs read the features.

All randomness comes from the generator handed in, so the same generator state gives the same
batch (the runtime derives one generator per epoch from the seed, which makes resuming exact).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from icon_dsl.train.augment import IMAGE_MAX_SHIFT, make_views
from icon_dsl.train.data import Dataset
from icon_dsl.train.plan import N_VIEWS, Plan


@dataclass
class Batch:
    """One batch: ``mapper_input`` for the mapper, ``inputs`` for the loss (by keyword)."""

    mapper_input: torch.Tensor
    inputs: dict[str, torch.Tensor]


class Batcher:
    """Builds batches for ``plan`` from ``dataset`` on ``device``."""

    def __init__(self, plan: Plan, dataset: Dataset, device: torch.device) -> None:
        self.plan = plan
        self.device = device
        self.x = torch.from_numpy(np.ascontiguousarray(dataset.x)).to(device)
        self.y = None if dataset.y is None else torch.from_numpy(dataset.y).to(device)
        self.side = None if dataset.side is None else torch.from_numpy(dataset.side).to(device)
        self.image_shape = dataset.image_shape
        self.n = dataset.n_samples
        self.max_shift = 0 if plan.mapper_kind == "linear" else IMAGE_MAX_SHIFT

    def epoch_batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Sample ids (int64, on the device) of every batch of one epoch."""
        if self.plan.full_batch:
            yield torch.arange(self.n, device=self.device)
            return
        order = torch.randperm(self.n, generator=generator).to(self.device)
        size = self.plan.batch_size
        count = max(1, self.n // size)
        for start in range(0, count * size, size):
            yield order[start : start + size]

    def make_batch(self, ids: torch.Tensor, generator: torch.Generator) -> Batch:
        """The mapper input and the loss inputs for the samples ``ids``."""
        wanted = self.plan.inputs
        if self.plan.views:
            views, position = make_views(
                self.x[ids], N_VIEWS, generator, self.image_shape, self.max_shift
            )
            sample = ids[position]
            modality = torch.arange(N_VIEWS, device=self.device).repeat_interleave(len(ids))
            available = {"x": views, "index": sample, "modality": modality}
            rows = sample
            mapper_input = views
        else:
            available = {"x": self.x[ids], "index": ids}
            rows = ids
            mapper_input = ids if self.plan.table else self.x[ids]
        if self.y is not None:
            available["y"] = self.y[rows]
        if self.side is not None:
            available["side"] = self.side[rows]  # the sample's own, for each of its views
        return Batch(mapper_input, {name: available[name] for name in wanted})

    def all_inputs(self) -> torch.Tensor:
        """What the mapper reads to embed the whole data set (ids for tables, else x)."""
        if self.plan.table:
            return torch.arange(self.n, device=self.device)
        return self.x
