"""``train``: from a spec to a trained mapper, metrics and pictures, with the spec's own loss.

Takes a spec (a path, spec text or an ``icon_dsl.compile`` result) and data (digits by default,
a file, a ``Dataset`` or arrays). It compiles the spec, builds the mapper with the generated
``build_mapper``, the loss with the generated class, and optimises ``loss(mapper(batch), **inputs)``
- nothing else: there is no hand-written loss for any named method. What the runtime adds around
the generated loss:

- batches that fit the spec (``batches.py``) and defaults per kind (``plan.py``);
- PCA initialisation of table mappers (scaled to a standard deviation of ``TABLE_INIT_STD`` in
  the first coordinate, like t-SNE implementations);
- Adam with a cosine learning-rate decay over all steps, seeded and resumable;
- the generated module's input validation on the first step only (it is repeated work after).

Guarantees: the same seed gives the same losses, embedding and metrics on CPU; a run resumed from
its per-epoch checkpoint ends exactly where the uninterrupted run ends. User mistakes raise
DataError, TrainError or SpecError with a message that names the culprit.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (the first optimiser step imports it; do it once, here)
from torch import nn
from tqdm.auto import tqdm

import icon_dsl.codegen  # noqa: F401  (compile() imports these lazily: keep one-time import
import icon_dsl.known  # noqa: F401   costs out of every run's wall time)
from icon_dsl.api import CompiledModule
from icon_dsl.train import checkpoint, preflight
from icon_dsl.train.batches import Batch, Batcher
from icon_dsl.train.data import Dataset, check_trainable, load_dataset
from icon_dsl.train.errors import DataError, TrainError, TrainingFailed, TrainNote
from icon_dsl.train.nonfinite import NonFinite, check_gradients, check_loss
from icon_dsl.train.plan import Plan, make_plan, needs_adjacency
from icon_dsl.train.scaling import Scaling, scale_note
from icon_dsl.train.scaling import standardize as standardize_features

TABLE_INIT_STD = 1e-4
EVAL_BATCH = 1024  # rows of the fixed batch used for the final KL and the p/q pictures
N_SNAPSHOTS = 7  # p/q snapshots taken at evenly spaced epochs (plus the initial state)
N_ANCHORS = 3
EMBED_CHUNK = 4096
#: The k-means++ start of a clustering head is a softmax over squared distances to the seeds at
#: a temperature of (mean squared distance to the nearest seed) / 4. Softer starts (1) average
#: NMI 0.715 over 12 seeds of kmeans.icon on digits, this one 0.736 (scikit-learn KMeans with one
#: start: 0.736); sharper (10) gave 0.729 (docs/training.md).
CENTROID_INIT_SHARPNESS = 4.0
RESTART_SALT = 0xA11  # start r > 0 trains from seed _mix(seed, RESTART_SALT + r)


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
    default). ``restarts``: independent starts (other seeds) trained one after another; the run
    keeps the start with the lowest final KL on its fixed evaluation batch (None: 10 for
    clustering heads, 1 otherwise). ``normaliser``: how a table neighbour spec (t-SNE, SNE)
    normalises q on large data (``sparse.py``): "auto" / None (sparse p above 4,096 rows,
    exact row blocks up to 8,192, sampled above), "exact", "sampled" (``negatives`` per row and
    epoch) or "dense" (the generated forward, mini-batches above 4,096 rows). ``compile``: wrap the mapper and the loss in
    ``torch.compile``. ``progress``: a tqdm bar and the final metrics table on stdout.
    A TrainNote says when feature scales differ by more than 10x and ``standardize`` is off.
    ``standardize``: train on features with zero mean and unit variance; the returned
    model applies the same scaling to new points. ``evaluate=False`` skips the metrics that
    need labels or neighbours (kNN, probe, cluster and trustworthiness; the estimators' choice):
    the metrics then hold the final divergence and the wall time.
    ``lr_factor``: multiplies the kind's default learning rate.
    """
    seed, torch_device = preflight.seed(seed), preflight.device(device)
    compiling = time.perf_counter()
    compiled = _compile_spec(spec)  # first: a broken spec is reported before data is read
    compile_seconds = time.perf_counter() - compiling
    dataset, loader_batch = _as_dataset_and_batch(data, label_column)
    batch_size = batch_size if batch_size is not None else loader_batch
    dataset, scaling = _scaled(dataset, standardize)
    # wall time: compiling the spec and the training, not reading the data
    started = time.perf_counter() - compile_seconds
    loss_class = compiled.load()
    plan = make_plan(
        compiled,
        loss_class,
        dataset,
        epochs=epochs,
        batch_size=batch_size,
        hyperparameters=hyperparameters,
        restarts=restarts,
        normaliser=normaliser,
        negatives=negatives,
        lr_factor=lr_factor,
    )
    from icon_dsl.train.distributed import init_from_env

    skipped = _unavailable_metrics(plan, dataset)
    _check_own_parts(plan, mapper, views)
    rank, world = init_from_env(torch_device)
    if rank != 0:  # one process writes the outputs and shows progress
        out, progress = False, False
    run = _Run(plan, compiled, loss_class, dataset, seed, torch_device, compile, rank, world,
               own=OwnParts(mapper, views))  # fmt: skip
    out_dir = _output_folder(out, plan.name, resume)
    if out_dir is not None:
        preflight.output_folder(out_dir, resume)
    state = _resume_state(out_dir, run) if resume else None
    elapsed = run.restore(state) if state is not None else 0.0
    if state is None:
        run.snapshot(0)
    run.fit(out_dir, started, elapsed, progress)
    embedding = _embed(run.mapper, run.batcher.all_inputs())
    run.wall_time = run.elapsed_before + (time.perf_counter() - started)
    metrics = run.metrics(embedding, skipped, evaluate)
    if out_dir is not None:
        from icon_dsl.train.report import write_outputs

        write_outputs(out_dir, run, embedding, metrics)
    if progress:
        from icon_dsl.train.report import format_metrics

        kept = (run.kept_start, plan.restarts) if plan.restarts > 1 else None
        print(format_metrics(plan.name, metrics, out_dir, kept, run.divergence))
    model = TrainedModel(plan, run.mapper, run.loss, run.device, scaling, dataset.sample_shape)
    return TrainResult(metrics, embedding, list(run.losses), out_dir, model)


class _Run:
    """The state of one training run: mapper, loss, optimiser, schedule, history."""

    def __init__(
        self,
        plan: Plan,
        compiled: CompiledModule,
        loss_class: type,
        dataset: Dataset,
        seed: int,
        device: torch.device,
        use_compile: bool,
        rank: int = 0,
        world: int = 1,
        own: OwnParts | None = None,
    ) -> None:
        self.plan, self.compiled, self.dataset = plan, compiled, dataset
        self.own = own or OwnParts()
        # the user's mapper as handed in: every start begins from it (start r > 0 re-drawn)
        self.own_initial = None if self.own.mapper is None else _copy_state(self.own.mapper)
        self.rank, self.world = rank, world
        self.seed, self.device = seed, device
        self.divergence = divergence_name(compiled)  # the metric's key: kl, reverse_kl or js
        self.loss_class = loss_class
        self.mapper, self.loss = self._fresh_model(0)
        self.mapper, self.loss = self.mapper.to(device), self.loss.to(device)
        self.batcher = Batcher(plan, dataset, device, self.own.views)
        self.objective = self._sparse_objective() if plan.sparse else None
        self.optimizer, self.scheduler = self._fresh_optimiser()
        self.call_mapper: Callable[..., torch.Tensor] = self.mapper
        self.call_loss: Callable[..., torch.Tensor] = self.loss
        self.parallel: nn.Module | None = None
        if world > 1:
            from icon_dsl.train.distributed import MapperAndLoss

            self.parallel = nn.parallel.DistributedDataParallel(
                MapperAndLoss(self.mapper, self.loss)
            )
        if use_compile:
            self.call_mapper = torch.compile(self.mapper)
            self.call_loss = torch.compile(self.loss)
        self.losses: list[float] = []
        self.snapshots: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.start = 0  # which of plan.restarts starts is training
        self.start_kls: list[float] = []  # the final KL of each finished start
        self.best: dict[str, Any] | None = None  # the finished start with the lowest KL
        self.start_epoch = 0
        self.elapsed_before = 0.0
        self.wall_time = 0.0
        self.validated = False
        self.eval_batch = self._make_eval_batch()
        rows = len(self.eval_batch.mapper_input)
        self.anchor_rows = sorted({(rows * k) // N_ANCHORS for k in range(N_ANCHORS)})

    # -- setup --------------------------------------------------------------------------------
    def _fresh_model(self, start: int) -> tuple[nn.Module, nn.Module]:
        """The mapper and the loss of ``start``, initialised from its seed (start 0: the run's)."""
        plan, dataset = self.plan, self.dataset
        seed = self._start_seed(start)
        torch.manual_seed(seed)
        mapper = self._own_mapper(start) if self.own.mapper is not None else None
        if mapper is None:
            num_samples = dataset.n_samples if plan.table else None
            mapper = self.loss_class.build_mapper(  # type: ignore[attr-defined]
                dataset.n_features, num_samples
            )
        try:
            graph = {}
            if needs_adjacency(self.loss_class):  # make_plan checked the data set has one
                graph["adjacency"] = torch.from_numpy(np.asarray(dataset.adjacency))
            loss: nn.Module = self.loss_class(**plan.loss_kwargs, **graph)
        except ValueError as error:
            raise TrainError(f"{plan.name}: {error}") from None
        if plan.table:
            _pca_init(mapper, dataset.x, dataset.n_samples, plan.dim, seed)
        elif plan.softmax:
            _centroid_init(mapper, dataset.x, plan.dim, seed)
        return mapper, loss

    def _own_mapper(self, start: int) -> nn.Module:
        """The user's mapper for ``start``: start 0 is the module itself as handed in (trained in
        place); a later start is a copy re-drawn by its layers' ``reset_parameters`` from the
        start's seed (torch's default initialisation)."""
        assert self.own.mapper is not None and self.own_initial is not None
        if start == 0:
            self.own.mapper.load_state_dict(self.own_initial)
            return self.own.mapper
        mapper = copy.deepcopy(self.own.mapper)
        for module in mapper.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and any(p.requires_grad for p in module.parameters(False)):
                reset()  # frozen layers (a pretrained backbone) keep their weights
        return mapper

    def _fresh_optimiser(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        params = [
            p for p in (*self.mapper.parameters(), *self.loss.parameters()) if p.requires_grad
        ]
        if self.plan.sparse:
            from icon_dsl.train import sparse

            descent = sparse.TsneDescent(params, lr=self.plan.lr, momentum=sparse.MOMENTUM)
            factor = _after(self.plan.exaggeration_epochs, sparse.EARLY_EXAGGERATION)
            return descent, torch.optim.lr_scheduler.LambdaLR(descent, factor)
        optimizer = torch.optim.Adam(params, lr=self.plan.lr)
        steps = self.plan.epochs * self.steps_per_epoch()
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(steps))

    def _start_seed(self, start: int) -> int:
        return self.seed if start == 0 else _mix(self.seed, RESTART_SALT + start) % 2**32

    def _sparse_objective(self) -> Any:
        """p on the k nearest neighbours (computed once) and q's normaliser (sparse.py)."""
        from icon_dsl.train import sparse

        ir = self.compiled.ir
        p = sparse.build_p(ir, self.plan.hyperparameters, self.dataset.x)
        # the generated module's own kernel of q
        kernel = cast(sparse.Kernel, self.loss._q_kernel)
        joint = ir.op(ir.roots["q"]) == "joint"
        negatives = self.plan.negatives or sparse.NEGATIVES
        return sparse.NeighbourObjective(p, kernel, joint, self.plan.normaliser, negatives)

    def steps_per_epoch(self) -> int:
        if self.plan.sparse:
            return 1
        if self.plan.full_batch:
            return 1
        return max(1, self.dataset.n_samples // self.plan.batch_size)

    def _make_eval_batch(self) -> Batch:
        generator = torch.Generator().manual_seed(_mix(self.seed, 0x5EED))
        n = self.dataset.n_samples
        if self.plan.full_batch:
            ids = torch.arange(n)
        else:
            ids = torch.randperm(n, generator=generator)[: min(n, EVAL_BATCH)]
        return self.batcher.make_batch(ids.to(self.device), generator)

    def restore(self, state: dict[str, Any]) -> float:
        self.mapper.load_state_dict(state["mapper"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.losses = list(state["losses"])
        self.snapshots = checkpoint.snapshots(state["snapshots"])
        self.start = int(state["start"])
        self.start_kls = list(state["start_kls"])
        self.best = state["best"]
        if self.best is not None:
            self.best["snapshots"] = checkpoint.snapshots(self.best["snapshots"])
        self.start_epoch = int(state["epoch"])
        self.validated = True
        self.elapsed_before = float(state["elapsed"])
        return self.elapsed_before

    def state(self, epoch: int, elapsed: float) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint(),
            "epoch": epoch,
            "mapper": self.mapper.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "losses": list(self.losses),
            "snapshots": list(self.snapshots),
            "start": self.start,
            "start_kls": list(self.start_kls),
            "best": self.best,
            "elapsed": elapsed,
        }

    def fingerprint(self) -> dict[str, Any]:
        x = self.dataset.x
        return {
            **self.plan.fingerprint(),
            "spec": self.compiled.ir.canonical_hash(),
            "seed": self.seed,
            "data": (self.dataset.name, x.shape, float(np.float64(x.sum(dtype=np.float64)))),
            "mapper": None if self.own.mapper is None else type(self.own.mapper).__name__,
        }

    # -- training -----------------------------------------------------------------------------
    def fit(self, out_dir: Path | None, started: float, elapsed: float, progress: bool) -> None:
        """Train every start (from the current one, epoch ``start_epoch``) and keep the best."""
        plan = self.plan
        bar = tqdm(
            total=plan.restarts * plan.epochs,
            initial=self.start * plan.epochs + self.start_epoch,
            desc=plan.name,
            unit="epoch",
            disable=not progress,
            leave=True,
        )
        for start in range(self.start, plan.restarts):
            if start != self.start:
                self._begin_start(start)
            self._fit_start(bar, out_dir, started, elapsed)
            self._finish_start()
        bar.close()
        self._keep_best()

    def _fit_start(self, bar: tqdm, out_dir: Path | None, started: float, elapsed: float) -> None:
        wanted = _snapshot_epochs(self.plan.epochs)
        label = f"{self.start + 1}/{self.plan.restarts}"
        for epoch in range(self.start_epoch, self.plan.epochs):
            self.losses.append(self.epoch(epoch))
            postfix = {"loss": f"{self.losses[-1]:.4f}"}
            bar.set_postfix(postfix if self.plan.restarts == 1 else {**postfix, "start": label})
            bar.update(1)
            if epoch + 1 in wanted:
                self.snapshot(epoch + 1)
            if out_dir is not None:
                now = elapsed + (time.perf_counter() - started)
                save_checkpoint(out_dir, self.state(epoch + 1, now))
        self.start_epoch = self.plan.epochs

    def _begin_start(self, start: int) -> None:
        """Reinitialise mapper, loss and optimiser in place from ``start``'s seed."""
        mapper, loss = self._fresh_model(start)
        self.mapper.load_state_dict(mapper.state_dict())  # in place: DDP / compile keep them
        self.loss.load_state_dict(loss.state_dict())
        self.optimizer, self.scheduler = self._fresh_optimiser()
        self.start, self.start_epoch = start, 0
        self.losses, self.snapshots = [], []
        self.snapshot(0)

    def _finish_start(self) -> None:
        """Record the start's final KL (on the fixed evaluation batch); keep it if the lowest."""
        if self.plan.restarts == 1:
            return
        kl = self.final_kl()
        self.start_kls.append(kl)
        if not math.isfinite(kl):
            return
        if self.best is None or kl < self.best["kl"]:
            self.best = {
                "start": self.start,
                "kl": kl,
                "mapper": _copy_state(self.mapper),
                "loss": _copy_state(self.loss),
                "losses": list(self.losses),
                "snapshots": list(self.snapshots),
            }

    def _keep_best(self) -> None:
        if self.best is None or self.best["start"] == self.start:
            return
        self.mapper.load_state_dict(self.best["mapper"])
        self.loss.load_state_dict(self.best["loss"])
        self.losses, self.snapshots = list(self.best["losses"]), list(self.best["snapshots"])

    @property
    def kept_start(self) -> int:
        """The start whose mapper the run returns."""
        return self.start if self.best is None else int(self.best["start"])

    def epoch(self, epoch: int) -> float:
        self.mapper.train()
        generator = torch.Generator().manual_seed(_mix(self._start_seed(self.start), epoch))
        if self.objective is not None:
            return self._sparse_epoch(epoch, generator)
        total, count = 0.0, 0
        for ids in self.batcher.epoch_batches(generator):
            batch = self.batcher.make_batch(ids, generator)
            try:
                value = self.step(batch)
            except NonFinite as found:
                raise self._stopped(epoch, count, str(found)) from None
            if not math.isfinite(value):  # the data-parallel path checks the mean loss only
                raise self._stopped(epoch, count, f"the loss was {value}")
            total += value
            count += 1
        return total / max(count, 1)

    def _sparse_epoch(self, epoch: int, generator: torch.Generator) -> float:
        """One step on every row: the attraction from each row's sparse p (exaggerated early
        on) and q's normaliser; returns the un-exaggerated cross-entropy."""
        from icon_dsl.train.sparse import EARLY_EXAGGERATION

        assert self.objective is not None
        self.optimizer.zero_grad(set_to_none=True)
        z = self.call_mapper(self.batcher.all_inputs())
        attraction, normaliser = self.objective.terms(z, generator)
        boost = EARLY_EXAGGERATION if epoch < self.plan.exaggeration_epochs else 1.0
        value = float((attraction + normaliser).detach())
        if not math.isfinite(value):
            raise self._stopped(epoch, 0, f"the loss was {value}")
        (attraction * boost + normaliser).backward()
        try:
            check_gradients(value, self._named_parameters())
        except NonFinite as found:
            raise self._stopped(epoch, 0, str(found)) from None
        self.optimizer.step()
        self.scheduler.step()
        return value

    def _stopped(self, epoch: int, step: int, why: str) -> TrainingFailed:
        start = f" of start {self.start + 1}" if self.plan.restarts > 1 else ""
        return TrainingFailed(
            f"{self.plan.name}: training stopped at epoch {epoch + 1}{start}, step {step + 1} of "
            f"{self.steps_per_epoch()}: {why}"
        )

    def _named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"mapper's parameter {n!r}", p) for n, p in self.mapper.named_parameters()] + [
            (f"loss's parameter {n!r}", p) for n, p in self.loss.named_parameters()
        ]

    def step(self, batch: Batch) -> float:
        if self.parallel is not None:
            return self._parallel_step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        z = self.call_mapper(batch.mapper_input)
        if not self.validated:
            loss = self._first_loss(z, batch)
        else:
            loss = self.call_loss(z, **batch.inputs)
        value = float(loss.detach())
        check_loss(value, z)
        loss.backward()
        check_gradients(value, self._named_parameters())
        self.optimizer.step()
        self.scheduler.step()
        return value

    def _parallel_step(self, batch: Batch) -> float:
        """One step on this process's share of the batch; DDP averages the gradients."""
        from icon_dsl.train.distributed import mean_over_processes, shard

        assert self.parallel is not None
        self.optimizer.zero_grad(set_to_none=True)
        local = shard(batch, self.rank, self.world)
        loss = self.parallel(local.mapper_input, local.inputs)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return mean_over_processes(loss, self.world)

    def _first_loss(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The first step runs the generated module's own input checks and reports failures."""
        set_validate(self.loss, True)
        try:
            loss = self.loss(z, **batch.inputs)
        except ValueError as error:
            raise TrainError(
                f"{self.plan.name}: the spec's loss rejected the first batch "
                f"({len(z)} rows): {error}"
            ) from None
        set_validate(self.loss, False)
        self.validated = True
        return loss

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def snapshot(self, epoch: int) -> None:
        """Record p and q rows of a few anchors of the fixed evaluation batch."""
        self.mapper.eval()
        z = self.mapper(self.eval_batch.mapper_input)
        try:
            p, q = self.loss.distributions(z, **self.eval_batch.inputs)  # type: ignore[operator]
        except ValueError:
            return  # a batch the loss rejects; the first training step reports it clearly
        rows = self.anchor_rows
        self.snapshots.append(
            (epoch, p[rows].double().cpu().numpy(), q[rows].double().cpu().numpy())
        )

    def anchor_ids(self) -> list[int]:
        """The sample ids of the snapshot anchors."""
        source = self.eval_batch.inputs.get("index")
        if self.plan.table:
            source = self.eval_batch.mapper_input
        if source is None:
            return list(self.anchor_rows)
        return [int(source[row]) for row in self.anchor_rows]

    @torch.no_grad()
    def final_kl(self) -> float:
        """The spec's divergence (KL, reverse KL or JS) on the fixed evaluation batch."""
        self.mapper.eval()
        z = self.mapper(self.eval_batch.mapper_input)
        value = self.loss.divergence(z, **self.eval_batch.inputs)  # type: ignore[operator]
        return float(value)

    def metrics(
        self, embedding: np.ndarray, skip: Collection[str] = (), evaluate: bool = True
    ) -> dict[str, float]:
        from icon_dsl.train.metrics import cluster_metrics, embedding_metrics

        y = self.dataset.y
        results: dict[str, float] = {}
        if not evaluate:
            pass
        elif self.plan.softmax:
            if y is not None:
                results.update(cluster_metrics(embedding, y))
        else:
            results.update(embedding_metrics(self.dataset.x, embedding, y, skip))
        results[self.divergence] = self.final_kl()
        results["wall_time_s"] = self.wall_time
        return results


def divergence_name(compiled: CompiledModule) -> str:
    """The spec's divergence as written in the spec: ``kl``, ``reverse_kl`` or ``js``."""
    return compiled.ir.op(compiled.ir.roots["loss"])


def _scaled(dataset: Dataset, standardize: bool) -> tuple[Dataset, Scaling | None]:
    """Standardise the features when asked; else note (a TrainNote) very uneven scales."""
    if standardize:
        return standardize_features(dataset)
    note = scale_note(dataset.x)
    if note is not None:
        warnings.warn(note, TrainNote, stacklevel=3)
    return dataset, None


def set_validate(loss: nn.Module, value: bool) -> None:
    """Switch the generated module's own input checks (its ``validate`` flag) on or off."""
    if "validate" in vars(loss):
        vars(loss)["validate"] = value


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> None:
    """Write the per-epoch checkpoint (a module-level hook, so tests can interrupt a run)."""
    checkpoint.save(out_dir, state)


# -- helpers ----------------------------------------------------------------------------------
def _compile_spec(spec: str | Path | CompiledModule) -> CompiledModule:
    if isinstance(spec, CompiledModule):
        return spec
    if isinstance(spec, str) and "\n" not in spec and spec.strip() and Path(spec).exists():
        spec = Path(spec)  # a file of any name (spec.txt, X.ICON), as `icon-dsl check` reads it
    from icon_dsl.api import compile as compile_spec

    return compile_spec(spec)


@dataclass
class OwnParts:
    """What the user brought to ``train``: a mapper and a view function (None: the spec's)."""

    mapper: nn.Module | None = None
    views: Callable[..., torch.Tensor] | None = None


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


def _as_dataset_and_batch(data: Any, label_column: str | None) -> tuple[Dataset, int | None]:
    """The data set, and a torch DataLoader's batch size (the default batch size then)."""
    from icon_dsl.train.torchdata import from_torch, is_torch_data

    if is_torch_data(data):
        if label_column is not None:
            raise DataError("label_column only applies to a .csv file, not to torch data")
        return from_torch(data)
    return _as_dataset(data, label_column), None


def _as_dataset(
    data: str | Path | Dataset | np.ndarray | tuple[np.ndarray, np.ndarray | None] | None,
    label_column: str | None,
) -> Dataset:
    if isinstance(data, Dataset):
        dataset = data
    elif data is None or isinstance(data, (str, Path)):
        dataset = load_dataset(None if data is None else str(data), label_column)
    elif isinstance(data, tuple):
        dataset = dataset_from_arrays(*data)
    else:
        dataset = dataset_from_arrays(data)
    check_trainable(dataset)
    return dataset


def _unavailable_metrics(plan: Plan, dataset: Dataset) -> set[str]:
    """The metrics this data is too small for, each announced with a note before training."""
    from icon_dsl.train.metrics import unavailable_metrics

    skipped = unavailable_metrics(dataset.n_samples, dataset.y, plan.softmax, plan.dim)
    for name, why in skipped.items():
        warnings.warn(f"{dataset.origin}: {name} is skipped: it {why}", TrainNote, stacklevel=3)
    return set(skipped)


def dataset_from_arrays(x: Any, y: Any = None, name: str = "array") -> Dataset:
    """A validated Dataset from in-memory arrays (the estimator's path); DataError if unusable."""
    from icon_dsl.train import data as data_module

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


def _resume_state(out_dir: Path | None, run: _Run) -> dict[str, Any] | None:
    assert out_dir is not None
    state = checkpoint.load(out_dir, run.fingerprint())
    if state is not None:
        path = out_dir / checkpoint.CHECKPOINT_NAME
        checkpoint.check_against(path, state, run.mapper, run.loss, run.optimizer)
    return state


def _pca_init(mapper: nn.Module, x: np.ndarray, n: int, dim: int, seed: int) -> None:
    """Set a table mapper's (n, dim) weight to the data's leading principal components, scaled
    so the first has standard deviation TABLE_INIT_STD (as scikit-learn's TSNE init="pca")."""
    weights = [p for p in mapper.parameters() if tuple(p.shape) == (n, dim)]
    if len(weights) != 1:
        return
    centred = np.asarray(x, dtype=np.float64) - x.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:dim]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    coords = centred @ (vt * signs[:, None]).T
    if coords.shape[1] < dim:
        rng = np.random.default_rng(seed)
        extra = rng.standard_normal((n, dim - coords.shape[1])) * 1e-3
        coords = np.concatenate([coords, extra * (coords.std() or 1.0)], axis=1)
    scale = coords[:, 0].std() or 1.0
    init = torch.as_tensor(coords / scale * TABLE_INIT_STD, dtype=weights[0].dtype)
    with torch.no_grad():
        weights[0].copy_(init.to(weights[0].device))


def _centroid_init(mapper: nn.Module, x: np.ndarray, k: int, seed: int) -> None:
    """Start a linear softmax (cluster) head at k seeds chosen by scikit-learn's greedy
    k-means++ (``kmeans_plusplus``, the seeding of its KMeans), with ``seed``.

    softmax(W x + b) with W = 2 mu / s, b = -|mu|^2 / s equals softmax(-|x - mu|^2 / s), soft
    assignments to the seeds mu. s is the mean squared distance of the points to their nearest
    seed divided by CENTROID_INIT_SHARPNESS. Only a mapper whose sole linear layer maps the
    features to the k clusters is touched; the loss then moves the seeds and the assignments.
    """
    from sklearn.cluster import kmeans_plusplus
    from sklearn.metrics.pairwise import euclidean_distances

    linears = [m for m in mapper.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1 or linears[0].out_features != k or linears[0].bias is None:
        return
    if linears[0].in_features != x.shape[1]:
        return  # a layer over something else than the features (a mapper of the user's)
    layer = linears[0]
    points = np.asarray(x, dtype=np.float64)
    if len(points) < k:
        return  # fewer points than clusters: keep the default initialisation
    centres, _ = kmeans_plusplus(points, k, random_state=seed % 2**32)
    nearest = euclidean_distances(points, centres, squared=True).min(axis=1)
    scale = float(nearest.mean()) / CENTROID_INIT_SHARPNESS or 1.0
    weight = torch.as_tensor(2 * centres / scale, dtype=layer.weight.dtype)
    bias = torch.as_tensor(-(centres**2).sum(axis=1) / scale, dtype=layer.bias.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight.device))
        layer.bias.copy_(bias.to(layer.bias.device))


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


@torch.no_grad()
def _embed(mapper: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    mapper.eval()
    parts = [mapper(inputs[i : i + EMBED_CHUNK]) for i in range(0, len(inputs), EMBED_CHUNK)]
    return torch.cat(parts).double().cpu().numpy()


def _after(steps: int, factor: float) -> Callable[[int], float]:
    """A learning-rate factor of 1 for the first ``steps`` steps, ``factor`` after."""

    def value(step: int) -> float:
        return 1.0 if step < steps else factor

    return value


def _cosine(total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        progress = min(step, total_steps) / max(total_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _mix(seed: int, salt: int) -> int:
    """A per-epoch (or per-purpose) generator seed derived from the run's seed."""
    return (seed * 1_000_003 + salt * 7_919 + 12_345) % (2**63 - 1)


def _snapshot_epochs(epochs: int) -> set[int]:
    return {int(round(v)) for v in np.linspace(0, epochs, N_SNAPSHOTS)} | {epochs}
