"""``train``: from a spec to a trained mapper, metrics and pictures, with the spec's own loss.

Takes a spec (a path, spec text or an ``icon_dsl.compile`` result) and data (digits by default,
a file, a ``Dataset`` or arrays). It compiles the spec, builds the mapper with the generated
``build_mapper``, the loss with the generated class, and optimises ``loss(mapper(batch), **inputs)``
- nothing else: there is no hand-written loss for any named method. What the runtime adds around
the generated loss:

- batches that fit the spec (``batches.py``) and defaults per kind (``plan.py``);
- PCA initialisation of table mappers (scaled to a standard deviation of
  ``initialise.TABLE_INIT_STD`` in the first coordinate, like t-SNE implementations);
- Adam with a cosine learning-rate decay over all steps, seeded and resumable;
- the generated module's input validation on the first step only (it is repeated work after).

The loop is ``loop.py`` (over a run's state, ``state.py``), the starts ``initialise.py``, the
files and the printed table ``report.py``.

Guarantees: the same seed gives the same losses, embedding and metrics on CPU; a run resumed from
its per-epoch checkpoint ends exactly where the uninterrupted run ends. User mistakes raise
DataError, TrainError or SpecError with a message that names the culprit.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (the first optimiser step imports it; do it once, here)
from torch import nn

import icon_dsl.codegen  # noqa: F401  (compile() imports these lazily: keep one-time import
import icon_dsl.known  # noqa: F401   costs out of every run's wall time)
from icon_dsl.api import CompiledModule
from icon_dsl.api import compile as compile_spec
from icon_dsl.train import checkpoint, preflight
from icon_dsl.train import data as data_module
from icon_dsl.train.data import BUILTIN_DATASETS, Dataset, check_trainable, load_dataset
from icon_dsl.train.distributed import init_from_env
from icon_dsl.train.errors import DataError, TrainError, TrainNote
from icon_dsl.train.helper import Helper
from icon_dsl.train.loop import Run
from icon_dsl.train.plan import Plan, make_plan
from icon_dsl.train.report import format_metrics, hand_over_neighbours, write_outputs
from icon_dsl.train.scaling import Scaling, scale_note
from icon_dsl.train.scaling import standardize as standardize_features
from icon_dsl.train.state import OwnParts, divergence_name, set_validate
from icon_dsl.train.torchdata import from_torch, is_torch_data

# names that other modules and users import from here
__all__ = [
    "OwnParts",
    "TrainResult",
    "TrainedModel",
    "dataset_from_arrays",
    "divergence_name",
    "set_validate",
    "train",
]

EMBED_CHUNK = 4096


@dataclass
class TrainedModel:
    """The trained pieces behind a TrainResult (for the estimator and for inspection)."""

    plan: Plan
    mapper: nn.Module
    loss: nn.Module
    device: torch.device
    scaling: Scaling | None = None  # standardize=True: the training data's mean and scale
    sample_shape: tuple[int, ...] | None = None  # what a mapper of the user's reads per sample

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embed new feature rows (N, D) with a parametric mapper; TrainError for a table."""
        if self.plan.table:
            raise TrainError(
                f"{self.plan.name}: the mapper is a table (one free embedding per training "
                "sample), so it cannot embed new points; use fit_transform on all the data, or a "
                "spec with a parametric mapper (linear or mlp)"
            )
        features = self.features(x)
        if self.sample_shape is not None:
            features = features.reshape(len(features), *self.sample_shape)
        return _embed(self.mapper, features)

    def features(self, x: np.ndarray) -> torch.Tensor:
        """Feature rows (N, D) as the mapper saw them in training (standardised if it was)."""
        values = np.asarray(x, dtype=np.float32)
        if values.ndim > 2 and self.sample_shape is not None:
            values = values.reshape(len(values), -1)  # samples in their own shape
        if values.ndim != 2:
            raise DataError(f"expected features of shape (N, D), got {values.shape}")
        if self.scaling is not None:
            values = self.scaling.apply(values)
        return torch.as_tensor(values, device=self.device)


@dataclass
class TrainResult:
    """What ``train`` returns: metrics, the embedding of the whole data set, per-epoch losses and
    the output folder (None when nothing was written)."""

    metrics: dict[str, float]
    embedding: np.ndarray
    losses: list[float]
    out_dir: Path | None
    model: TrainedModel | None = field(default=None, repr=False)


def train(
    spec: str | Path | CompiledModule,
    *,
    data: str | Path | Dataset | np.ndarray | tuple[np.ndarray, np.ndarray | None] | Any = None,
    mapper: nn.Module | None = None,
    views: Callable[..., torch.Tensor] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None | bool = None,
    compile: bool = False,
    progress: bool = True,
    label_column: str | None = None,
    resume: bool = False,
    hyperparameters: Mapping[str, float] | None = None,
    restarts: int | None = None,
    standardize: bool = False,
    evaluate: bool = True,
    normaliser: str | None = None,
    negatives: int | None = None,
    lr_factor: float = 1.0,
    side_by_side: bool = True,
    halving: bool = True,
    helper: Helper | None = None,
) -> TrainResult:
    """Train ``spec`` on ``data`` and return metrics, the embedding and the losses.

    ``data``: None or "digits" (scikit-learn's bundled digits), a .npy / .npz / .csv path, a
    ``Dataset``, an array X (N, D) or (N, ...) for a mapper of your own, a tuple (X, y), or a
    torch ``Dataset`` / ``DataLoader`` (``torchdata.py``: items x, (x, y) or dicts with x, y,
    side). ``mapper``: an ``nn.Module`` of your own in place of the spec's mapper (a parametric
    spec; it reads each sample in its own shape and is trained in place). ``views``: a function
    of your own making one augmented view of a batch, ``views(batch)`` or ``views(batch,
    generator)``, for specs whose p uses views (``batches.py``). ``epochs`` / ``batch_size``: None picks the
    defaults of ``plan.py`` for the spec's kind. ``out``: the output folder; None means
    ``runs/<spec>-<timestamp>``, False writes nothing (and cannot resume). ``resume``: continue
    from ``out/checkpoint.pt`` (with ``out`` None, the newest ``runs/<spec>-*`` folder; a folder
    without a checkpoint starts a fresh run).
    ``hyperparameters``: values for the spec's hyperparameters (required for those without a
    default). ``restarts``: independent starts (other seeds); the run keeps the start with the
    lowest final KL on its fixed evaluation batch (None: 10 for clustering heads, 1 otherwise).
    ``side_by_side``: train the starts side by side, one optimiser step for all, where possible
    (``side_by_side.py`` says where not); False trains them one after another. ``halving``: on
    the whole-data clustering path, stop the weaker half of the starts side by side at 10% and
    30% of the epochs (``side_by_side.py``); False runs every start to the end. ``normaliser``: how a table neighbour spec (t-SNE, SNE)
    normalises q on large data (``sparse.py``): "auto" / None (sparse p above 4,096 rows,
    exact row blocks up to 8,192, sampled above), "exact", "sampled" (``negatives`` per row and
    epoch) or "dense" (the generated forward, mini-batches above 4,096 rows); a clustering head
    against ``cluster(f(x))`` (kmeans) takes the same choice for its whole-data path
    (``cluster.py``: one step an epoch on every row). ``compile``: wrap the mapper and the loss in
    ``torch.compile``. ``progress``: a tqdm bar and the final metrics table on stdout.
    A TrainNote says when feature scales differ by more than 10x and ``standardize`` is off.
    ``standardize``: train on features with zero mean and unit variance; the returned
    model applies the same scaling to new points. ``evaluate=False`` skips the metrics that
    need labels or neighbours (kNN, probe, cluster and trustworthiness; the estimators' choice):
    the metrics then hold the final divergence and the wall time.
    ``lr_factor``: multiplies the kind's default learning rate. ``helper``: the command line's,
    with a second process for scikit-learn and matplotlib (``helper.py``); None: all here.
    """
    seed, torch_device = preflight.seed(seed), preflight.device(device)
    inputs = _prepare(spec, data, label_column, standardize, helper or Helper(process=False))
    plan = make_plan(
        inputs.compiled,
        inputs.loss_class,
        inputs.dataset,
        epochs=epochs,
        batch_size=inputs.loader_batch if batch_size is None else batch_size,
        hyperparameters=hyperparameters,
        restarts=restarts,
        normaliser=normaliser,
        negatives=negatives,
        lr_factor=lr_factor,
    )
    own = OwnParts(mapper, views)
    run, out_dir, progress, skipped = _start(
        inputs, plan, seed, torch_device, compile, own, out, resume, progress, side_by_side, halving
    )
    run.fit(out_dir, inputs.started, run.elapsed_before, progress)
    return _finish(run, inputs, out_dir, skipped, evaluate, progress)


@dataclass
class _Inputs:
    """The compiled spec and the data of a run, and when its wall time started."""

    compiled: CompiledModule
    loss_class: type
    dataset: Dataset
    loader_batch: int | None  # a torch DataLoader's batch size: the default batch size then
    scaling: Scaling | None
    started: float  # wall time: compiling the spec and the training, not reading the data
    helper: Helper  # where the work with scikit-learn and matplotlib runs (helper.py)


def _prepare(
    spec: str | Path | CompiledModule,
    data: Any,
    label_column: str | None,
    standardize: bool,
    helper: Helper,
) -> _Inputs:
    """Compile the spec, then read the data (standardised when asked)."""
    compiling = time.perf_counter()
    compiled = _compile_spec(spec)  # first: a broken spec is reported before data is read
    compile_seconds = time.perf_counter() - compiling
    dataset, loader_batch = _as_dataset_and_batch(data, label_column, helper)
    dataset, scaling = _scaled(dataset, standardize)
    started = time.perf_counter() - compile_seconds
    return _Inputs(compiled, compiled.load(), dataset, loader_batch, scaling, started, helper)


def _start(
    inputs: _Inputs,
    plan: Plan,
    seed: int,
    device: torch.device,
    use_compile: bool,
    own: OwnParts,
    out: str | Path | None | bool,
    resume: bool,
    progress: bool,
    side_by_side: bool = True,
    halving: bool = True,
) -> tuple[Run, Path | None, bool, set[str]]:
    """The run, fresh or restored from its checkpoint, its output folder, whether it shows
    progress, and the metrics the data is too small for."""
    skipped = _unavailable_metrics(plan, inputs.dataset, inputs.helper)
    _check_own_parts(plan, own.mapper, own.views)
    rank, world = init_from_env(device)
    if rank != 0:  # one process writes the outputs and shows progress
        out, progress = False, False
    run = Run(
        plan,
        inputs.compiled,
        inputs.loss_class,
        inputs.dataset,
        seed,
        device,
        use_compile,
        rank,
        world,
        own=own,
    )
    out_dir = _output_folder(out, plan.name, resume)
    if out_dir is not None:
        preflight.output_folder(out_dir, resume)
    run.arrange(side_by_side, halving)
    state = _resume_state(out_dir, run) if resume else None
    if state is not None:
        run.restore(state)
    else:
        run.begin()
    return run, out_dir, progress, skipped


def _finish(
    run: Run,
    inputs: _Inputs,
    out_dir: Path | None,
    skipped: set[str],
    evaluate: bool,
    progress: bool,
) -> TrainResult:
    """Embed the whole data set, measure, write the outputs and print the metrics table (the
    helper draws neighbours.png meanwhile)."""
    embedding = _embed(run.mapper, run.batcher.all_inputs())
    run.wall_time = run.elapsed_before + (time.perf_counter() - inputs.started)
    metrics = run.metrics(embedding, inputs.helper, skipped, evaluate)
    painting = hand_over_neighbours(inputs.helper, out_dir, run)
    if out_dir is not None:
        write_outputs(out_dir, run, embedding, metrics, painting)
    plan = run.plan
    if progress:
        kept = (run.kept_start, plan.restarts) if plan.restarts > 1 else None
        chosen_by = "whole-data loss" if plan.cluster else run.divergence
        print(format_metrics(plan.name, metrics, out_dir, kept, chosen_by))
    model = TrainedModel(
        plan, run.mapper, run.loss, run.device, inputs.scaling, inputs.dataset.sample_shape
    )
    return TrainResult(metrics, embedding, list(run.losses), out_dir, model)


def _scaled(dataset: Dataset, standardize: bool) -> tuple[Dataset, Scaling | None]:
    """Standardise the features when asked; else note (a TrainNote) very uneven scales."""
    if standardize:
        return standardize_features(dataset)
    note = scale_note(dataset.x)
    if note is not None:
        # stacklevel 4: the line that called train (through train and _prepare)
        warnings.warn(note, TrainNote, stacklevel=4)
    return dataset, None


def _compile_spec(spec: str | Path | CompiledModule) -> CompiledModule:
    if isinstance(spec, CompiledModule):
        return spec
    if isinstance(spec, str) and "\n" not in spec and spec.strip() and Path(spec).exists():
        spec = Path(spec)  # a file of any name (spec.txt, X.ICON), as `icon-dsl check` reads it

    return compile_spec(spec)


def _check_own_parts(
    plan: Plan, mapper: nn.Module | None, views: Callable[..., torch.Tensor] | None
) -> None:
    if mapper is not None and not isinstance(mapper, nn.Module):
        raise TrainError(f"mapper= must be a torch.nn.Module, got {type(mapper).__name__}")
    if mapper is not None and plan.table:
        raise TrainError(
            f"{plan.name}: the spec's mapper is a table (one free row per sample), so there is "
            "no network to replace with mapper=; use a spec with a linear or mlp mapper"
        )
    if views is not None and not callable(views):
        raise TrainError(f"views= must be a function, got {type(views).__name__}")
    if views is not None and not plan.views:
        raise TrainError(
            f"{plan.name}: views= was given but the spec's p does not use views (no "
            "augmentation(index) or modality): nothing would call it"
        )


def _as_dataset_and_batch(
    data: Any, label_column: str | None, helper: Helper
) -> tuple[Dataset, int | None]:
    """The data set, and a torch DataLoader's batch size (the default batch size then)."""
    if is_torch_data(data):
        if label_column is not None:
            raise DataError("label_column only applies to a .csv file, not to torch data")
        return from_torch(data)
    return _as_dataset(data, label_column, helper), None


def _as_dataset(
    data: str | Path | Dataset | np.ndarray | tuple[np.ndarray, np.ndarray | None] | None,
    label_column: str | None,
    helper: Helper,
) -> Dataset:
    if isinstance(data, Dataset):
        dataset = data
    elif data is None or str(data) in BUILTIN_DATASETS:  # scikit-learn's: the helper reads it
        name = None if data is None else str(data)
        dataset = helper.call("icon_dsl.train.data:load_dataset", name, label_column)
    elif isinstance(data, (str, Path)):
        dataset = load_dataset(str(data), label_column)
    elif isinstance(data, tuple):
        dataset = dataset_from_arrays(*data)
    else:
        dataset = dataset_from_arrays(data)
    check_trainable(dataset)
    return dataset


def _unavailable_metrics(plan: Plan, dataset: Dataset, helper: Helper) -> set[str]:
    """The metrics this data is too small for, each announced with a note before training."""
    # scikit-learn (the train extra): the helper's
    skipped: dict[str, str] = helper.call(
        "icon_dsl.train.metrics:unavailable_metrics",
        dataset.n_samples,
        dataset.y,
        plan.softmax,
        plan.dim,
    )
    for name, why in skipped.items():
        # stacklevel 4: the line that called train (through train and _start)
        warnings.warn(f"{dataset.origin}: {name} is skipped: it {why}", TrainNote, stacklevel=4)
    return set(skipped)


def dataset_from_arrays(x: Any, y: Any = None, name: str = "array") -> Dataset:
    """A validated Dataset from in-memory arrays (the estimator's path); DataError if unusable."""
    values = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    sample_shape = None
    if values.ndim > 2:  # samples in their own shape (images for a CNN of the user's)
        sample_shape = tuple(int(d) for d in values.shape[1:])
        values = values.reshape(len(values), -1)
    features = data_module._as_features(values, name)
    labels = None
    if y is not None:
        label_values = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
        labels = data_module._as_labels(label_values, f"{name} labels", features.shape[0])
    return Dataset(name=name, x=features, y=labels, sample_shape=sample_shape)


def _output_folder(out: str | Path | None | bool, name: str, resume: bool) -> Path | None:
    if out is False:
        if resume:
            raise TrainError("resume needs an output folder holding a checkpoint (out=False)")
        return None
    if out is None or out is True:
        if resume:
            found = sorted(Path("runs").glob(f"{name}-*/{checkpoint.CHECKPOINT_NAME}"))
            if not found:
                raise TrainError(
                    f"nothing to resume: no runs/{name}-*/checkpoint.pt; pass --out DIR"
                )
            return found[-1].parent
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{name}-{stamp}"
    return Path(out)


def _resume_state(out_dir: Path | None, run: Run) -> dict[str, Any] | None:
    assert out_dir is not None
    state = checkpoint.load(out_dir, run.fingerprint())
    if state is not None:
        run.check(out_dir / checkpoint.CHECKPOINT_NAME, state)
    return state


@torch.no_grad()
def _embed(mapper: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    mapper.eval()
    parts = [mapper(inputs[i : i + EMBED_CHUNK]) for i in range(0, len(inputs), EMBED_CHUNK)]
    return torch.cat(parts).double().cpu().numpy()
