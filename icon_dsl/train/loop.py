"""The training loop: every start, every epoch, every step, with checkpoints after each epoch.

Steps are Adam on the generated loss (the first step runs the generated module's own input checks),
or for a sparse-p run one step on every row (``sparse.py``), or data-parallel (``distributed.py``).
A non-finite loss or gradient stops the run with TrainingFailed, naming the epoch and step.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from icon_dsl.train import checkpoint
from icon_dsl.train.batches import Batch
from icon_dsl.train.distributed import mean_over_processes, shard
from icon_dsl.train.errors import TrainError, TrainingFailed
from icon_dsl.train.nonfinite import NonFinite, check_gradients, check_loss
from icon_dsl.train.schedule import derive_seed
from icon_dsl.train.side_by_side import KEY, SideBySide, reason
from icon_dsl.train.sparse import EARLY_EXAGGERATION
from icon_dsl.train.state import (
    RunState,
    copy_state,
    named_parameters,
    stopped,
    validated_loss,
)

__all__ = ["Run", "save_checkpoint", "snapshot_epochs"]

#: p/q snapshots taken at evenly spaced epochs, the first at the initial state: the 4 epochs that
#: neighbours.png draws (plots.plot_neighbour_distributions picks 4 evenly, the same epochs, from
#: more); each snapshot is a dense q of the evaluation batch and a part of every checkpoint
N_SNAPSHOTS = 4


class Run(RunState):
    """A run that trains: every start, side by side (``side_by_side.py``) or from the current one
    on, one after another, keeping the one with the lowest final divergence."""

    side: SideBySide | None = None  # every start at once; None: one after another
    sequential_reason: str | None = None  # why the starts train one after another

    def arrange(self, side_by_side: bool = True, halving: bool = True) -> None:
        """Train the starts side by side where that is possible and asked for (halving them on
        the whole-data clustering path, ``side_by_side.py``)."""
        why = reason(self.plan, self.world, self.use_compile, self.own.mapper is not None)
        if not side_by_side and why is None:
            why = "asked for (side_by_side=False)"
        self.sequential_reason = why
        self.side = SideBySide(self, halving) if why is None else None

    def begin(self) -> None:
        """A fresh run: record the initial state (the p/q snapshot at epoch 0)."""
        if self.side is not None:
            self.side.remember(0)
        else:
            self.snapshot(0)

    def check(self, path: Path, state: dict[str, Any]) -> None:
        """The checkpoint fits this run; one written one after another continues so."""
        if KEY in state:
            if self.side is None:
                raise TrainError(
                    f"{path}: the checkpoint trained its {self.plan.restarts} starts side by "
                    f"side; this run would train them one after another "
                    f"({self.sequential_reason}); resume with the settings that wrote it, or "
                    "pass another --out"
                )
            self.side.check(path, state)
            return
        if self.side is not None:
            self.side, self.sequential_reason = None, "the checkpoint trained them so"
        checkpoint.check_against(path, state, self.mapper, self.loss, self.optimizer)

    def restore(self, state: dict[str, Any]) -> float:
        if self.side is None or KEY not in state:
            return super().restore(state)
        self.side.restore(state)
        self.start_epoch, self.validated = int(state["epoch"]), True
        self.elapsed_before = float(state["elapsed"])
        return self.elapsed_before

    def fit(self, out_dir: Path | None, started: float, elapsed: float, progress: bool) -> None:
        """Train every start (from the current one, epoch ``start_epoch``) and keep the best."""
        plan, side = self.plan, self.side
        done = self.start * plan.epochs + self.start_epoch
        bar = tqdm(
            total=plan.restarts * plan.epochs if side is None else side.start_epochs(plan.epochs),
            initial=done if side is None else side.start_epochs(self.start_epoch),
            desc=plan.name,
            unit="epoch",
            disable=not progress,
            leave=True,
        )
        if side is not None:
            wanted = snapshot_epochs(plan.epochs)
            side.fit(bar, wanted, out_dir, (started, elapsed), save_checkpoint)
            bar.close()
            return
        for start in range(self.start, plan.restarts):
            if start != self.start:
                self._begin_start(start)
            self._fit_start(bar, out_dir, started, elapsed)
            self._finish_start()
        bar.close()
        self._keep_best()

    def _fit_start(self, bar: tqdm, out_dir: Path | None, started: float, elapsed: float) -> None:
        wanted = snapshot_epochs(self.plan.epochs)
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
        kl = self.start_score_of(self.mapper, self.loss)
        self.start_kls.append(kl)
        if not math.isfinite(kl):
            return
        if self.best is None or kl < self.best["kl"]:
            self.best = {
                "start": self.start,
                "kl": kl,
                "mapper": copy_state(self.mapper),
                "loss": copy_state(self.loss),
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
        generator = torch.Generator().manual_seed(derive_seed(self._start_seed(self.start), epoch))
        if self.objective is not None:
            return self._sparse_epoch(epoch, generator)
        if self.clustering is not None:
            return self._cluster_epoch(epoch, generator)
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
        assert self.objective is not None
        self.optimizer.zero_grad(set_to_none=True)
        z = self.call_mapper(self.batcher.all_inputs())
        attraction, normaliser = self.objective.terms(z, generator)
        boost = EARLY_EXAGGERATION if epoch < self.plan.exaggeration_epochs else 1.0
        value = float((attraction + normaliser).detach())
        if not math.isfinite(value):
            raise self._stopped(epoch, 0, f"the loss was {value}")
        (attraction * boost + normaliser).backward()
        return self._whole_data_step(epoch, value)

    def _cluster_epoch(self, epoch: int, generator: torch.Generator) -> float:
        """One Adam step on the whole-data clustering loss of every row (``cluster.py``)."""
        self.optimizer.zero_grad(set_to_none=True)
        batch = self.whole_batch(epoch)
        z, loss = self.cluster_loss(self.call_mapper, batch, epoch, generator)
        self.validated = True
        value = float(loss.detach())
        try:
            check_loss(value, z)
        except NonFinite as found:
            raise self._stopped(epoch, 0, str(found)) from None
        loss.backward()
        return self._whole_data_step(epoch, value)

    def _whole_data_step(self, epoch: int, value: float) -> float:
        """After the backward pass of a whole-data epoch: gradients checked, one step."""
        try:
            check_gradients(value, self._named_parameters())
        except NonFinite as found:
            raise self._stopped(epoch, 0, str(found)) from None
        self.optimizer.step()
        self.scheduler.step()
        return value

    def _stopped(self, epoch: int, step: int, why: str) -> TrainingFailed:
        start = f" of start {self.start + 1}" if self.plan.restarts > 1 else ""
        return stopped(self.plan.name, epoch, start, step, self.steps_per_epoch(), why)

    def _named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return named_parameters(self.mapper, self.loss)

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
        loss = validated_loss(self.plan.name, self.loss, z, batch)
        self.validated = True
        return loss


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> None:
    """Write the per-epoch checkpoint (a module-level hook, so tests can interrupt a run)."""
    checkpoint.save(out_dir, state)


def snapshot_epochs(epochs: int) -> set[int]:
    return {int(round(v)) for v in np.linspace(0, epochs, N_SNAPSHOTS)} | {epochs}
