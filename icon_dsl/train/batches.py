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

A mapper of the user's reads each sample in its own shape (``Dataset.sample_shape``, e.g.
(1, 8, 8) for a CNN) while the loss reads the flattened rows. A view function of the user's
(``views=``) replaces ``make_views``: it gets a batch in the sample shape and returns one
augmented view of each sample, the same shape; it is called N_VIEWS times per batch, with the
batch's generator when it takes a second argument, else under torch's global generator seeded
from it (restored after), so views stay reproducible either way.

All randomness comes from the generator handed in, so the same generator state gives the same
batch (the runtime derives one generator per epoch from the seed, which makes resuming exact).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from icon_dsl.train.augment import IMAGE_MAX_SHIFT, make_views
from icon_dsl.train.data import Dataset
from icon_dsl.train.errors import TrainError
from icon_dsl.train.plan import N_VIEWS, Plan


@dataclass
class Batch:
    """One batch: ``mapper_input`` for the mapper, ``inputs`` for the loss (by keyword)."""

    mapper_input: torch.Tensor
    inputs: dict[str, torch.Tensor]


class Batcher:
    """Builds batches for ``plan`` from ``dataset`` on ``device``."""

    def __init__(
        self,
        plan: Plan,
        dataset: Dataset,
        device: torch.device,
        views: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        self.plan = plan
        self.sample_shape = dataset.sample_shape
        self.user_views = views
        self.views_take_generator = views is not None and _takes_two_arguments(views)
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
            views, position = self._views(self.x[ids], generator)
            sample = ids[position]
            modality = torch.arange(N_VIEWS, device=self.device).repeat_interleave(len(ids))
            available = {"x": views, "index": sample, "modality": modality}
            rows = sample
            mapper_input = self.shaped(views)
        else:
            available = {"x": self.x[ids], "index": ids}
            rows = ids
            mapper_input = ids if self.plan.table else self.shaped(self.x[ids])
        if self.y is not None:
            available["y"] = self.y[rows]
        if self.side is not None:
            available["side"] = self.side[rows]  # the sample's own, for each of its views
        return Batch(mapper_input, {name: available[name] for name in wanted})

    def all_inputs(self) -> torch.Tensor:
        """What the mapper reads to embed the whole data set (ids for tables, else x)."""
        if self.plan.table:
            return torch.arange(self.n, device=self.device)
        return self.shaped(self.x)

    def shaped(self, rows: torch.Tensor) -> torch.Tensor:
        """Flattened rows in the shape the mapper reads (the sample shape, when there is one)."""
        if self.sample_shape is None:
            return rows
        return rows.reshape(len(rows), *self.sample_shape)

    def _views(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """N_VIEWS views of each row of x, view-major, and the row each came from."""
        if self.user_views is None:
            return make_views(x, N_VIEWS, generator, self.image_shape, self.max_shift)
        samples = self.shaped(x)
        made = [self._user_view(samples, generator) for _ in range(N_VIEWS)]
        position = torch.arange(len(x), device=x.device).repeat(N_VIEWS)
        return torch.cat(made).reshape(N_VIEWS * len(x), -1), position

    def _user_view(self, samples: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        assert self.user_views is not None
        if self.views_take_generator:
            view = self.user_views(samples, generator)
        else:
            seed = int(torch.randint(2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                view = self.user_views(samples)
        if not isinstance(view, torch.Tensor) or view.shape != samples.shape:
            got = tuple(view.shape) if isinstance(view, torch.Tensor) else type(view).__name__
            raise TrainError(
                f"views= must return a tensor of the batch's shape {tuple(samples.shape)}, "
                f"got {got}"
            )
        return view.to(dtype=samples.dtype, device=samples.device)


def _takes_two_arguments(function: Callable[..., object]) -> bool:
    """Does ``function`` accept (batch, generator)?"""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)
