"""The state of one training run, apart from the loop that advances it.

``RunState`` builds the mapper, the loss and the optimiser of each start from its seed, saves and
restores the checkpointed state, and evaluates on a fixed batch (p/q snapshots, the final
divergence, the metrics). ``loop.Run`` adds the epochs and steps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from icon_dsl.api import CompiledModule
from icon_dsl.train import checkpoint, cluster, sparse, sparse_p
from icon_dsl.train.batches import Batch, Batcher
from icon_dsl.train.data import Dataset
from icon_dsl.train.distributed import MapperAndLoss
from icon_dsl.train.errors import TrainError, TrainingFailed
from icon_dsl.train.helper import Helper
from icon_dsl.train.initialise import centroid_init, pca_init
from icon_dsl.train.plan import Plan, needs_adjacency
from icon_dsl.train.schedule import cosine_decay, derive_seed, factor_after

EVAL_BATCH = 1024  # rows of the fixed batch used for the final KL and the p/q pictures
N_ANCHORS = 3
METRICS = "icon_dsl.train.metrics"  # scikit-learn's scores (imported where they are computed)
RESTART_SALT = 0xA11  # start r > 0 trains from seed derive_seed(seed, RESTART_SALT + r)
WHOLE_SALT = 0xC1A55  # the views of epoch e on the whole-data clustering path


@dataclass
class OwnParts:
    """What the user brought to ``train``: a mapper and a view function (None: the spec's)."""

    mapper: nn.Module | None = None
    views: Callable[..., torch.Tensor] | None = None


class RunState:
    """A run's mapper, loss, optimiser, schedule and history, resumable and evaluated on a fixed
    batch."""

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
        self.own_initial = None if self.own.mapper is None else copy_state(self.own.mapper)
        self.rank, self.world = rank, world
        self.seed, self.device = seed, device
        self.use_compile = use_compile
        self.divergence = divergence_name(compiled)  # the metric's key: kl, reverse_kl or js
        self.loss_class = loss_class
        self.mapper, self.loss = self._fresh_model(0)
        self.mapper, self.loss = self.mapper.to(device), self.loss.to(device)
        self.batcher = Batcher(plan, dataset, device, self.own.views)
        self.objective = self._sparse_objective() if plan.sparse else None
        self.clustering = self._cluster_objective() if plan.cluster else None
        self._whole: Batch | None = None  # the last whole-data batch (cluster.py's path)
        self.optimizer, self.scheduler = self._fresh_optimiser()
        self.call_mapper: Callable[..., torch.Tensor] = self.mapper
        self.call_loss: Callable[..., torch.Tensor] = self.loss
        self.parallel: nn.Module | None = None
        if world > 1:
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
            pca_init(mapper, dataset.x, dataset.n_samples, plan.dim, seed)
        elif plan.softmax:
            centroid_init(mapper, dataset.x, plan.dim, seed)
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
            descent = sparse.TsneDescent(params, lr=self.plan.lr, momentum=sparse.MOMENTUM)
            factor = factor_after(self.plan.exaggeration_epochs, sparse.EARLY_EXAGGERATION)
            return descent, torch.optim.lr_scheduler.LambdaLR(descent, factor)
        optimizer = torch.optim.Adam(params, lr=self.plan.lr)
        steps = self.plan.epochs * self.steps_per_epoch()
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(steps))

    def _start_seed(self, start: int) -> int:
        return self.seed if start == 0 else derive_seed(self.seed, RESTART_SALT + start) % 2**32

    def _sparse_objective(self) -> Any:
        """p on the k nearest neighbours (computed once) and q's normaliser (sparse.py)."""
        ir = self.compiled.ir
        p = sparse_p.build_p(ir, self.plan.hyperparameters, self.dataset.x)
        # the generated module's own kernel of q
        kernel = cast(sparse.Kernel, self.loss._q_kernel)
        joint = ir.op(ir.roots["q"]) == "joint"
        negatives = self.plan.negatives or sparse.NEGATIVES
        return sparse.NeighbourObjective(p, kernel, joint, self.plan.normaliser, negatives)

    def _cluster_objective(self) -> Any:
        """The whole-data clustering objective (cluster.py); p is built from the first batch."""
        negatives = self.plan.negatives or cluster.NEGATIVES
        return cluster.ClusterObjective(
            self.compiled.ir, self.plan.hyperparameters, self.plan.normaliser, negatives
        )

    def whole_batch(self, epoch: int) -> Batch:
        """Every row of the data set for one epoch of the whole-data clustering path: with
        views, that epoch's views (drawn from the run's seed, the same for every start), so
        p, built on them, is shared by the starts; ``epoch`` -1: the fixed views of the score."""
        if not self.plan.views and self._whole is not None:
            return self._whole  # no views: the same rows every epoch
        generator = torch.Generator().manual_seed(derive_seed(self.seed, WHOLE_SALT + epoch))
        ids = torch.arange(self.dataset.n_samples, device=self.device)
        self._whole = self.batcher.make_batch(ids, generator)
        return self._whole

    def cluster_loss(
        self,
        mapper: Callable[..., torch.Tensor],
        batch: Batch,
        epoch: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x) of every row, the whole-data clustering loss of ``mapper``)."""
        assert self.clustering is not None
        self.clustering.prepare(batch.inputs, epoch)
        v = mapper(batch.mapper_input)
        if not self.validated:
            try:
                cluster.check_assignments(v.detach())
            except ValueError as error:
                raise TrainError(f"{self.plan.name}: {error}") from None
        return v, self.clustering.loss(v, generator)

    def start_score_of(self, mapper: nn.Module, loss: nn.Module) -> float:
        """What picks the kept start: the whole-data clustering loss (fixed draws and views,
        the same for every start) on that path, else the final divergence."""
        if self.clustering is None:
            return self.final_kl_of(mapper, loss)
        batch = self.whole_batch(-1)
        self.clustering.prepare(batch.inputs, "score")
        mapper.eval()
        with torch.no_grad():
            return self.clustering.score(mapper(batch.mapper_input))

    def steps_per_epoch(self) -> int:
        if self.plan.sparse or self.plan.cluster:
            return 1
        if self.plan.full_batch:
            return 1
        return max(1, self.dataset.n_samples // self.plan.batch_size)

    def _make_eval_batch(self) -> Batch:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, 0x5EED))
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

    def final_kl(self) -> float:
        """The spec's divergence (KL, reverse KL or JS) on the fixed evaluation batch."""
        return self.final_kl_of(self.mapper, self.loss)

    @torch.no_grad()
    def final_kl_of(self, mapper: nn.Module, loss: nn.Module) -> float:
        """The divergence of ``mapper`` under ``loss`` on the fixed evaluation batch."""
        mapper.eval()
        z = mapper(self.eval_batch.mapper_input)
        value = loss.divergence(z, **self.eval_batch.inputs)  # type: ignore[operator]
        return float(value)

    def metrics(
        self,
        embedding: np.ndarray,
        helper: Helper,
        skip: Collection[str] = (),
        evaluate: bool = True,
    ) -> dict[str, float]:
        """The run's metrics; those of scikit-learn (the train extra) computed by ``helper``."""
        y = self.dataset.y
        results: dict[str, float] = {}
        if not evaluate:
            pass
        elif self.plan.softmax:
            if y is not None:
                results.update(helper.call(f"{METRICS}:cluster_metrics", embedding, y))
        else:
            scores = helper.call(f"{METRICS}:embedding_metrics", self.dataset.x, embedding, y, skip)
            results.update(scores)
        results[self.divergence] = self.final_kl()
        results["wall_time_s"] = self.wall_time
        return results


def divergence_name(compiled: CompiledModule) -> str:
    """The spec's divergence as written in the spec: ``kl``, ``reverse_kl`` or ``js``."""
    return compiled.ir.op(compiled.ir.roots["loss"])


def copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def set_validate(loss: nn.Module, value: bool) -> None:
    """Switch the generated module's own input checks (its ``validate`` flag) on or off."""
    if "validate" in vars(loss):
        vars(loss)["validate"] = value


def named_parameters(mapper: nn.Module, loss: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every trained parameter, named as a message about a non-finite gradient names it."""
    return [(f"mapper's parameter {n!r}", p) for n, p in mapper.named_parameters()] + [
        (f"loss's parameter {n!r}", p) for n, p in loss.named_parameters()
    ]


def validated_loss(name: str, loss: nn.Module, z: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The loss of the first batch with the generated module's own input checks on: a batch
    it refuses is a TrainError naming the spec. The checks are off again afterwards."""
    set_validate(loss, True)
    try:
        value = loss(z, **batch.inputs)
    except ValueError as error:
        raise TrainError(
            f"{name}: the spec's loss rejected the first batch ({len(z)} rows): {error}"
        ) from None
    set_validate(loss, False)
    return cast(torch.Tensor, value)


def stopped(name: str, epoch: int, start: str, step: int, steps: int, why: str) -> TrainingFailed:
    """Where training stopped and why (start: " of start k", or "" for a single start)."""
    return TrainingFailed(
        f"{name}: training stopped at epoch {epoch + 1}{start}, step {step + 1} of {steps}: {why}"
    )
