"""What a spec needs from the training loop, and the defaults chosen for it.

``make_plan`` reads a compiled spec (the generated class's ``INPUTS`` and ``MAPPER_INPUT``, the
mapper's options in the IR, the hyperparameters) and the data set, and returns a ``Plan``: how
batches are built (views, labels, sample indices, full batch or mini-batches), the optimiser and
its learning rate, the number of epochs, and the keyword arguments of the loss constructor.
Every choice a user did not make is a documented default below; every request that cannot be
honoured raises TrainError (or DataError for missing labels) before anything is trained.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from icon_dsl import large_data
from icon_dsl.api import CompiledModule
from icon_dsl.codegen.emit import has_neighbour_path
from icon_dsl.large_data import FULL_BATCH_LIMIT
from icon_dsl.memory import memory_estimate, physical_memory
from icon_dsl.train import cluster, sparse
from icon_dsl.train.data import Dataset, require_adjacency, require_labels, require_side
from icon_dsl.train.errors import TrainError, TrainNote

#: Table-mapper specs whose p is a fixed function of x (no views, no labels) on data of at most
#: this many rows train full-batch: p over the whole data set, one step per epoch (t-SNE on
#: digits is one batch of 1797). Above it, and for parametric mappers (which generalise from
#: batches), they use mini-batches of ``LARGE_BATCH`` (tables) or ``CLUSTER_BATCH`` (networks).
LARGE_BATCH = 1024
#: Mini-batch sizes (samples, before views) for label-based and view-based specs.
CLUSTER_BATCH = 256
LABEL_BATCH = 256
VIEW_BATCH = 256
N_VIEWS = 2

#: Defaults per kind: (epochs, learning rate). A table mapper is a free embedding per sample
#: optimised by Adam with a large step (see docs/training.md: it stands in for t-SNE's early
#: exaggeration and gains); networks use Adam at 1e-3, clustering heads a larger step.
TABLE_FULL_BATCH = (60, 1.0)
TABLE_MINI_BATCH = (50, 0.1)
CLUSTER_FULL_BATCH = (100, 0.05)
CLUSTER_MINI_BATCH = (30, 0.05)
#: Clustering heads on the whole data each epoch (``cluster.py``, above FULL_BATCH_LIMIT rows):
#: one Adam step an epoch. On digits redrawn to 20,000 (one start) lr 0.1 reached loss 20.11 in
#: 100 epochs, lr 0.05 20.30, lr 0.2 20.35; 200 epochs at 0.1: 20.04 (docs/training.md).
CLUSTER_WHOLE_DATA = (100, 0.1)
NETWORK_FULL_BATCH = (300, 1e-3)
NETWORK_MINI_BATCH = (100, 1e-3)
#: View-based (contrastive) networks learn from one positive per sample per epoch and need
#: longer: simclr.icon's 10-NN accuracy on digits went 0.987 -> 0.989 from 100 to 250 epochs.
VIEW_MINI_BATCH = (250, 1e-3)
LABEL_MINI_BATCH = (50, 1e-3)
#: Clustering heads (linear / mlp with softmax) train this many starts by default, from
#: different seeds (k-means++ seeds for a linear head), and keep the one whose spec loss is
#: lowest (scikit-learn's KMeans n_init=10 does the same with its inertia): the objectives are
#: non-convex and one start lands in a poor partition often enough to matter (docs/training.md
#: has the numbers).
CLUSTER_RESTARTS = 10


@dataclass(frozen=True)
class Plan:
    """How one spec is trained on one data set (all fields are plain values)."""

    name: str  # the spec's stem: runs/<name>-<timestamp>
    class_name: str
    inputs: tuple[str, ...]  # the loss's keyword inputs, among x, y, index, modality
    table: bool  # the mapper is a table of free embeddings, indexed by sample
    views: bool  # batches hold N_VIEWS augmented views of each sample
    labels: bool  # the loss needs y
    mapper_kind: str  # table, linear, mlp
    dim: int
    softmax: bool  # the mapper outputs cluster assignments
    columns: bool  # q is over prototype columns (N x n), e.g. cross-entropy
    full_batch: bool
    batch_size: int  # samples per batch (before views)
    epochs: int
    lr: float
    restarts: int = 1  # independent starts; the one with the lowest final KL is kept
    # large neighbour embeddings (sparse.py): p on k nearest neighbours, whole data each epoch
    sparse: bool = False
    # clustering heads on large data (cluster.py): the whole data each epoch, one step
    cluster: bool = False
    normaliser: str = "dense"  # dense (the generated forward), exact (row blocks) or sampled
    negatives: int = 0  # per row per epoch, for the sampled normaliser (or estimate)
    exaggeration_epochs: int = 0  # early exaggeration of the attraction (sparse only)
    hyperparameters: dict[str, float] = field(default_factory=dict)
    loss_kwargs: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must agree on to be resumed."""
        return {
            "class_name": self.class_name,
            "full_batch": self.full_batch,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "lr": self.lr,
            "restarts": self.restarts,
            "normaliser": self.normaliser,
            "negatives": self.negatives,
            "hyperparameters": dict(sorted(self.hyperparameters.items())),
        }


def make_plan(
    module: CompiledModule,
    loss_class: type,
    dataset: Dataset,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    hyperparameters: Mapping[str, float] | None = None,
    restarts: int | None = None,
    normaliser: str | None = None,
    negatives: int | None = None,
    lr_factor: float = 1.0,
) -> Plan:
    """Decide how to train ``module`` on ``dataset``; raise TrainError / DataError early.

    ``lr_factor`` multiplies the kind's default learning rate (the evaluation's tuning grid)."""
    ir = module.ir
    mapper_node = ir.roots["mapper"]
    mapper_kind = ir.op(mapper_node)
    options = ir.args(mapper_node)
    inputs = tuple(getattr(loss_class, "INPUTS", ()))
    table = getattr(loss_class, "MAPPER_INPUT", "x") == "index"
    views = not table and ("index" in inputs or "modality" in inputs)
    _check_table_mapper(module, table, inputs)
    labels = "y" in inputs
    _require_data(loss_class, dataset, inputs)
    q_type = ir.type(ir.roots["q"])
    columns = getattr(q_type, "support", "pairs") == "columns"
    softmax = bool(options.get("softmax", False))
    n = dataset.n_samples
    full_batch, size = _batching(table, views, labels, n, batch_size)
    default_epochs, lr = _defaults(table, softmax, full_batch, labels, views)
    _check_counts(lr_factor, epochs, restarts)
    lr *= lr_factor
    if restarts is None:
        restarts = CLUSTER_RESTARTS if softmax and not table else 1
    hypers = resolve_hyperparameters(module, hyperparameters)
    large = large_data_plan(module, table, views or labels, n, normaliser)
    if large is not None and batch_size is None:
        path, chosen = large
        if path == "sparse":
            return _sparse_plan(module, inputs, options, n, chosen, epochs, negatives, hypers)
        _check_negatives(negatives, n)
        shared = {"inputs": inputs, "views": views, "labels": labels, "columns": columns}
        return _cluster_plan(
            module, options, n, chosen, epochs, negatives, lr_factor, shared, restarts, hypers
        )
    if full_batch:
        check_dense_fits(module, n)
    loss_kwargs: dict[str, Any] = dict(hypers)
    if "embedding_dim" in inspect.signature(loss_class).parameters:
        loss_kwargs["embedding_dim"] = int(options.get("dim", 2))
    return Plan(
        name=module.stem,
        class_name=module.class_name,
        inputs=inputs,
        table=table,
        views=views,
        labels=labels,
        mapper_kind=mapper_kind,
        dim=int(options.get("dim", 2)),
        softmax=softmax,
        columns=columns,
        full_batch=full_batch,
        batch_size=size,
        epochs=epochs if epochs is not None else default_epochs,
        lr=lr,
        restarts=restarts,
        hyperparameters=hypers,
        loss_kwargs=loss_kwargs,
    )


def _check_table_mapper(module: CompiledModule, table: bool, inputs: tuple[str, ...]) -> None:
    """TrainError for a spec that needs several views of a sample but has a table mapper."""
    if table and "modality" in inputs:
        raise TrainError(
            f"{module.stem}: a cross-modal spec needs a parametric mapper (linear or mlp) to "
            "embed two views as two modalities; a table mapper has one row per sample"
        )
    if table and any(module.ir.op(node) == "augmentation" for node in module.ir.graph.nodes):
        raise TrainError(
            f"{module.stem}: augmentation(index) needs several views of each sample, but a "
            "table mapper has one free row per sample (no views to make); use a parametric "
            "mapper (linear or mlp)"
        )


def _require_data(loss_class: type, dataset: Dataset, inputs: tuple[str, ...]) -> None:
    """DataError when the data set lacks the labels, side information or graph the loss reads."""
    if "y" in inputs:
        require_labels(dataset, "its p or q uses y")
    if "side" in inputs:
        require_side(dataset, "its p uses side")
    if needs_adjacency(loss_class):
        require_adjacency(dataset, "its p uses graph(index)")


def _batching(
    table: bool, views: bool, labels: bool, n: int, batch_size: int | None
) -> tuple[bool, int]:
    """Full batch or not, and the samples per batch: the user's size, else the kind's default."""
    full_batch = table and not views and not labels
    if batch_size is not None:
        if batch_size < 2:
            raise TrainError(f"batch size must be at least 2, got {batch_size}")
        full_batch = batch_size >= n
    elif full_batch and n > FULL_BATCH_LIMIT:
        full_batch = False
    size = n if full_batch else min(n, batch_size or _default_batch(table, views, labels))
    return full_batch, size


def _check_counts(lr_factor: float, epochs: int | None, restarts: int | None) -> None:
    """TrainError for a learning-rate factor, epochs or restarts out of range."""
    if not lr_factor > 0:
        raise TrainError(f"lr_factor must be positive, got {lr_factor}")
    if epochs is not None and epochs < 1:
        raise TrainError(f"epochs must be at least 1, got {epochs}")
    if restarts is not None and restarts < 1:
        raise TrainError(f"restarts must be at least 1, got {restarts}")


def large_data_plan(
    module: CompiledModule, table: bool, views_or_labels: bool, n: int, normaliser: str | None
) -> tuple[str, str] | None:
    """(path, normaliser) of a whole-data run, or None for the other paths. The paths:
    "sparse" (a table neighbour spec, ``sparse.py``) and "cluster" (a clustering head against
    cluster(f(x)), ``cluster.py``); the normaliser: exact, sampled or (neighbour embeddings in 1 or 2 dimensions)
    interpolated.

    "auto" (or None) takes them on more than FULL_BATCH_LIMIT rows; "exact" or "sampled" ask
    for them at any size (TrainError when the spec has neither); "dense" keeps the generated
    forward.
    """
    choice = "auto" if normaliser is None else normaliser
    if choice not in ("auto", "dense", *sparse.NORMALISERS):
        raise TrainError(
            f"unknown normaliser {normaliser!r}; choose auto, dense, {', '.join(sparse.NORMALISERS)}"
        )
    if choice == "dense":
        return None
    ir = module.ir
    whole_table = table and not views_or_labels
    reason = None if whole_table else "its mapper is not a table of the whole data set"
    if reason is None and not has_neighbour_path(ir):
        reason = "its loss is not a fixed p against a kernel of f(x) (the neighbour family)"
    reason = reason or large_data.sparse_p_reason(ir)
    if reason is None:
        if choice == "auto":
            chosen = large_data.choose_normaliser(n, large_data.interpolates(ir))
            return None if n <= FULL_BATCH_LIMIT else ("sparse", chosen)
        if choice == "interpolated" and not large_data.interpolates(ir):
            raise TrainError(
                f"{module.stem}: normaliser interpolated sums the kernel on a grid of the "
                "embedding, for 1 or 2 dimensions; this mapper has "
                f"dim={large_data.embedding_dim(ir)} (use exact or sampled)"
            )
        return "sparse", choice
    clustering = large_data.cluster_reason(ir)
    if clustering is None and choice == "interpolated":
        raise TrainError(
            f"{module.stem}: normaliser interpolated is for neighbour embeddings (t-SNE, SNE); "
            "a clustering head sums over pairs exactly or sampled (exact, sampled)"
        )
    if clustering is None:
        if choice == "auto":
            return None if n <= FULL_BATCH_LIMIT else ("cluster", large_data.choose_normaliser(n))
        return "cluster", choice
    if choice == "auto":
        return None
    raise TrainError(
        f"{module.stem}: normaliser {choice} needs a sparse p (neighbour specs) or a cluster "
        f"kernel q (clustering heads), but {reason}, and {clustering}"
    )


def _check_negatives(negatives: int | None, n: int) -> None:
    if negatives is not None and not 1 <= negatives < n:
        raise TrainError(f"negatives must be between 1 and N - 1 = {n - 1}, got {negatives}")


#: The sampled normaliser of a joint q weighs each sampled pair by one global sum, so a point
#: whose few negatives all lie far away is barely pushed from its near neighbours; per-row
#: normalisers renormalise each row's sample. Measured in docs/performance.md ("Large data").
JOINT_SAMPLED_NOTE = (
    "q is normalised over the whole matrix (joint) and its normaliser is estimated from sampled "
    "negatives: such embeddings came out markedly worse than with the exact normaliser "
    "(docs/performance.md, 'Large data'); the per-row (conditional) form of the spec samples "
    "well, or pass --normaliser exact where N^2 work per epoch is affordable"
)


def _sparse_plan(
    module: CompiledModule,
    inputs: tuple[str, ...],
    options: Mapping[str, Any],
    n: int,
    normaliser: str,
    epochs: int | None,
    negatives: int | None,
    hypers: dict[str, float],
) -> Plan:
    if epochs is not None and epochs < 1:
        raise TrainError(f"epochs must be at least 1, got {epochs}")
    _check_negatives(negatives, n)
    if normaliser == "sampled" and module.ir.op(module.ir.roots["q"]) == "joint":
        warnings.warn(JOINT_SAMPLED_NOTE, TrainNote, stacklevel=3)
    total = epochs if epochs is not None else sparse.EPOCHS
    return Plan(
        name=module.stem,
        class_name=module.class_name,
        inputs=inputs,
        table=True,
        views=False,
        labels=False,
        mapper_kind="table",
        dim=int(options.get("dim", 2)),
        softmax=False,
        columns=False,
        full_batch=False,
        batch_size=n,
        epochs=total,
        lr=sparse.learning_rate(n),
        hyperparameters=hypers,
        loss_kwargs=dict(hypers),
        sparse=True,
        normaliser=normaliser,
        negatives=(negatives or sparse.NEGATIVES) if normaliser == "sampled" else 0,
        exaggeration_epochs=round(total * sparse.EXAGGERATION_SHARE),
    )


def _cluster_plan(
    module: CompiledModule,
    options: Mapping[str, Any],
    n: int,
    normaliser: str,
    epochs: int | None,
    negatives: int | None,
    lr_factor: float,
    shared: dict[str, Any],
    restarts: int,
    hypers: dict[str, float],
) -> Plan:
    """A clustering head on the whole data each epoch (``cluster.py``), one Adam step an epoch."""
    return Plan(
        name=module.stem,
        class_name=module.class_name,
        mapper_kind=module.ir.op(module.ir.roots["mapper"]),
        table=False,
        dim=int(options.get("dim", 2)),
        softmax=True,
        full_batch=False,
        batch_size=n,
        epochs=epochs if epochs is not None else CLUSTER_WHOLE_DATA[0],
        lr=CLUSTER_WHOLE_DATA[1] * lr_factor,
        restarts=restarts,
        hyperparameters=hypers,
        loss_kwargs=dict(hypers),
        cluster=True,
        normaliser=normaliser,
        negatives=(negatives or cluster.NEGATIVES) if normaliser == "sampled" else 0,
        **shared,
    )


def check_dense_fits(module: CompiledModule, n: int) -> None:
    """TrainError before a whole-data dense loss is built that cannot fit in this machine."""
    needed, total = memory_estimate(module.ir, n)["dense"], physical_memory()
    if needed is not None and total is not None and needed > 0.8 * total:
        raise TrainError(
            f"{module.stem}: the dense loss on all {n} rows needs about {needed / 2**30:.0f} GiB "
            f"(this machine has {total / 2**30:.0f} GiB); pass a batch size, or a normaliser "
            "(exact or sampled) where the spec allows a sparse p"
        )


def needs_adjacency(loss_class: type) -> bool:
    """Does the generated constructor require the graph (`adjacency=`) of a graph(index) p?"""
    parameter = inspect.signature(loss_class).parameters.get("adjacency")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def resolve_hyperparameters(
    module: CompiledModule, given: Mapping[str, float] | None
) -> dict[str, float]:
    """The values passed to the loss constructor: the user's, checked against the spec.

    Unknown names and required hyperparameters without a value raise TrainError naming them,
    where they are declared in the spec, and how to pass them. Defaults stay the spec's own
    (they are not passed, so the generated constructor applies them).
    """
    hypers = module.ir.hypers
    given = dict(given or {})
    unknown = sorted(set(given) - set(hypers))
    if unknown:
        known = ", ".join(sorted(hypers)) or "none"
        raise TrainError(
            f"{module.stem}: unknown hyperparameter(s) {', '.join(unknown)}; "
            f"the spec's hyperparameters are: {known}"
        )
    missing = [h for name, h in sorted(hypers.items()) if h.default is None and name not in given]
    if missing:
        where = []
        for hyper in missing:
            if hyper.span is not None:
                line, col = module.ir.source.line_col(hyper.span.start)
                where.append(f"{hyper.name} ({module.ir.source.name}:{line}:{col})")
            else:
                where.append(hyper.name)
        example = ", ".join(f'"{h.name}": 1.0' for h in missing)
        flags = " ".join(f"--param {h.name}=1.0" for h in missing)
        raise TrainError(
            f"{module.stem}: the spec has hyperparameter(s) without a default: {', '.join(where)}. "
            f"Pass a value: hyperparameters={{{example}}} in Python, or {flags} on the command "
            "line (1.0 is only an example), or declare a default in the spec with `param NAME = "
            "VALUE`"
        )
    resolved: dict[str, float] = {}
    for name, value in sorted(given.items()):
        hyper = hypers[name]
        number = float(value)
        if not math.isfinite(number):
            raise TrainError(
                f"{module.stem}: hyperparameter {name} must be a finite number, got {value}"
            )
        if hyper.integer:
            if number != int(number):
                raise TrainError(f"{module.stem}: hyperparameter {name} must be an integer")
            resolved[name] = int(number)
        else:
            resolved[name] = number
    return resolved


def _default_batch(table: bool, views: bool, labels: bool) -> int:
    if views:
        return VIEW_BATCH
    if labels:
        return LABEL_BATCH
    return LARGE_BATCH if table else CLUSTER_BATCH


def _defaults(
    table: bool, softmax: bool, full_batch: bool, labels: bool, views: bool
) -> tuple[int, float]:
    if table:
        return TABLE_FULL_BATCH if full_batch else TABLE_MINI_BATCH
    if full_batch:
        return CLUSTER_FULL_BATCH if softmax else NETWORK_FULL_BATCH
    if softmax:
        return CLUSTER_MINI_BATCH
    if labels:
        return LABEL_MINI_BATCH
    return VIEW_MINI_BATCH if views else NETWORK_MINI_BATCH
