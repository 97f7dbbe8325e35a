"""Restarts side by side: the R starts of a run trained in lockstep, one optimiser step for all.

Each start keeps its own mapper and loss module (built from its seed exactly as the sequential
path builds it) and its own batches (its own generator per epoch), so start r follows the
sequential run's start r step for step. What is shared is the step: the R losses are summed
(each start's parameters get exactly its own loss's gradient), one backward pass runs over the
sum and one Adam step, with one cosine schedule, updates every start's parameters (Adam is
elementwise, so this equals R optimisers on R schedules of the same length). The p/q snapshots
are taken only for the kept start, at the end, from parameters remembered at the snapshot epochs;
the checkpoint after each epoch holds every start.

On the whole-data clustering path (``cluster.py``) each epoch is one step on every row: the
epoch's rows (its views and p with them) are shared by the starts, each start computes its loss
and its backward in turn (so only one start's temporaries are alive), and one Adam step follows.
There the starts are also halved (successive halving): at each fraction ``HALVING_AT`` (in
``large_data.py``) of the epochs every running start is scored as the kept one is chosen (the
whole-data loss, fixed draws) and the weaker half stops, so 10 starts cost 10 x 10% + 5 x 20% +
3 x 70% = 4.1 starts' epochs instead of 10. A start stopped early might have overtaken the others later; ``halving=False``
runs every start to the end. The kept start follows its sequential run step for step either way.

Not batched further: the generated loss is called once per start because torch.func.vmap cannot
run it (its mean over kept rows reads a count with ``int()``); on CPU a vmap of the loss with that
count patched out measured no faster than the calls one by one (the B x B terms dominate).

``reason`` says when the starts train one after another instead (the sequential path of
``loop.py``): one start, a sparse-p run, data-parallel processes (DDP wraps one mapper and one
loss), torch.compile (one compiled graph per module), a mapper of the user's (R copies of it and
R sets of activations at once), or R batches whose B x B terms exceed ``MAX_ELEMENTS``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from icon_dsl.large_data import halving_epochs, start_epochs
from icon_dsl.train import checkpoint
from icon_dsl.train.batches import Batch
from icon_dsl.train.errors import TrainError, TrainingFailed
from icon_dsl.train.nonfinite import NonFinite, check_gradients, check_loss
from icon_dsl.train.plan import N_VIEWS, Plan
from icon_dsl.train.schedule import cosine_decay, derive_seed
from icon_dsl.train.state import (
    RunState,
    copy_state,
    named_parameters,
    stopped,
    validated_loss,
)

#: Side by side only while R batches of B x B float32 terms stay below this many entries
#: (about 32 MiB a term; the generated losses keep a few tens of such terms for backward).
MAX_ELEMENTS = 2**23
KEY = "side_by_side"  # the checkpoint's entry with every start's state

Saver = Callable[[Path, dict[str, Any]], None]


def reason(plan: Plan, world: int, use_compile: bool, own_mapper: bool) -> str | None:
    """Why this run's starts train one after another (None: they can train side by side)."""
    if plan.restarts == 1:
        return "one start"
    if plan.sparse:
        return "a sparse-p table run (one step on every row)"
    if world > 1:
        return "data-parallel processes (DDP wraps one mapper and one loss)"
    if use_compile:
        return "torch.compile (one compiled graph per module)"
    if own_mapper:
        return "a mapper of your own (R copies and their activations would be held at once)"
    if plan.cluster:  # R x N x C assignments; the sums over pairs run one start at a time
        return None
    rows = plan.batch_size * (N_VIEWS if plan.views else 1)
    if plan.restarts * rows * rows > MAX_ELEMENTS:
        return f"memory ({plan.restarts} batches of {rows} x {rows} terms at once)"
    return None


class SideBySide:
    """Every start of ``run``: their mappers, losses, one optimiser and their histories."""

    def __init__(self, run: RunState, halving: bool = True) -> None:
        self.run = run
        count = run.plan.restarts
        models = [(run.mapper, run.loss)]
        for start in range(1, count):
            mapper, loss = run._fresh_model(start)
            models.append((mapper.to(run.device), loss.to(run.device)))
        self.mappers: list[nn.Module] = [m for m, _ in models]
        self.losses: list[nn.Module] = [loss for _, loss in models]
        params = [
            p
            for mapper, loss in models
            for p in (*mapper.parameters(), *loss.parameters())
            if p.requires_grad
        ]
        self.optimizer = torch.optim.Adam(params, lr=run.plan.lr)
        steps = run.plan.epochs * run.steps_per_epoch()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_decay(steps))
        self.histories: list[list[float]] = [[] for _ in range(count)]
        # (epoch, mapper state, loss state) of every start at each snapshot epoch
        self.remembered: list[list[tuple[int, dict, dict]]] = [[] for _ in range(count)]
        self.validated = False
        self.running = list(range(count))  # the starts still training
        self.stopped: dict[int, tuple[int, float]] = {}  # start -> (epoch, score) when stopped
        self.halving = halving_epochs(run.plan.epochs) if halving and run.clustering else set()

    def start_epochs(self, until: int) -> int:
        """The epochs of all starts together in epochs 0..until (the progress bar's count)."""
        return start_epochs(len(self.mappers), until, self.halving)

    def remember(self, epoch: int) -> None:
        """Keep every start's parameters at ``epoch`` (the kept start's snapshots, later)."""
        for start in self.running:
            mapper, loss = self.mappers[start], self.losses[start]
            self.remembered[start].append((epoch, copy_state(mapper), copy_state(loss)))

    def fit(
        self,
        bar: tqdm,
        wanted: set[int],
        out_dir: Path | None,
        clock: tuple[float, float],
        save: Saver,
    ) -> None:
        """Train every start from epoch ``run.start_epoch`` to the end, then keep the best."""
        run = self.run
        started, elapsed = clock
        for epoch in range(run.start_epoch, run.plan.epochs):
            count = len(self.running)
            values = self.epoch(epoch)
            for start, value in zip(self.running, values, strict=True):
                self.histories[start].append(value)
            bar.set_postfix({"loss": f"{min(values):.4f}", "starts": f"{count} side by side"})
            bar.update(count)
            if epoch + 1 in self.halving:
                self._halve(epoch + 1)
            if epoch + 1 in wanted:
                self.remember(epoch + 1)
            if out_dir is not None:
                save(out_dir, self.state(epoch + 1, elapsed + (time.perf_counter() - started)))
        run.start_epoch = run.plan.epochs
        self._keep_best()

    def _halve(self, epoch: int) -> None:
        """Stop the weaker half of the running starts (the lower score first, then the lower
        start; a score that is not finite counts as the worst)."""
        run = self.run
        scores = {s: run.start_score_of(self.mappers[s], self.losses[s]) for s in self.running}
        finite = {s: math.isfinite(score) for s, score in scores.items()}
        order = sorted(
            self.running, key=lambda s: (not finite[s], scores[s] if finite[s] else 0, s)
        )
        keep = sorted(order[: math.ceil(len(order) / 2)])
        for start in order[len(keep) :]:
            self.stopped[start] = (epoch, scores[start])
        self.running = keep  # the others get no gradient from now on, and Adam skips them

    def epoch(self, epoch: int) -> list[float]:
        """One epoch of every running start (each on its own batches); the mean loss of each."""
        run = self.run
        for mapper in self.mappers:
            mapper.train()
        generators = {
            start: torch.Generator().manual_seed(derive_seed(run._start_seed(start), epoch))
            for start in self.running
        }
        if run.clustering is not None:
            return self._whole_data_step(epoch, generators)
        iterators = [run.batcher.epoch_batches(g) for g in generators.values()]
        totals, count = [0.0] * len(self.mappers), 0
        for ids in zip(*iterators, strict=True):
            pairs = zip(ids, generators.values(), strict=True)
            batches = [run.batcher.make_batch(i, g) for i, g in pairs]
            values = self.step(batches, epoch, count)
            totals = [total + value for total, value in zip(totals, values, strict=True)]
            count += 1
        return [total / max(count, 1) for total in totals]

    def step(self, batches: list[Batch], epoch: int, step: int) -> list[float]:
        """One Adam step of every start on its own batch; the loss of each."""
        self.optimizer.zero_grad(set_to_none=True)
        outputs, terms = [], []
        for start, batch in enumerate(batches):
            z = self.mappers[start](batch.mapper_input)
            terms.append(self._loss(start, z, batch))
            outputs.append(z)
        values = torch.stack([term.detach() for term in terms]).tolist()
        for start, value in enumerate(values):
            try:
                check_loss(value, outputs[start])
            except NonFinite as found:
                raise self._stopped(epoch, start, step, str(found)) from None
        torch.stack(terms).sum().backward()  # each start's parameters: its own loss's gradient
        for start, value in enumerate(values):
            try:
                check_gradients(value, named_parameters(self.mappers[start], self.losses[start]))
            except NonFinite as found:
                raise self._stopped(epoch, start, step, str(found)) from None
        self.optimizer.step()
        self.scheduler.step()
        self.validated = True
        return values

    def _whole_data_step(self, epoch: int, generators: dict[int, torch.Generator]) -> list[float]:
        """One Adam step of every running start on the whole-data clustering loss
        (``cluster.py``): the epoch's rows (and p) are shared, each start draws its own columns."""
        run = self.run
        batch = run.whole_batch(epoch)
        self.optimizer.zero_grad(set_to_none=True)
        values = []
        for start in self.running:
            z, loss = run.cluster_loss(self.mappers[start], batch, epoch, generators[start])
            value = float(loss.detach())
            try:
                check_loss(value, z)
            except NonFinite as found:
                raise self._stopped(epoch, start, 0, str(found)) from None
            loss.backward()  # this start's parameters only; the graph is freed at once
            values.append(value)
        for start, value in zip(self.running, values, strict=True):
            try:
                check_gradients(value, named_parameters(self.mappers[start], self.losses[start]))
            except NonFinite as found:
                raise self._stopped(epoch, start, 0, str(found)) from None
        run.validated = True
        self.optimizer.step()
        self.scheduler.step()
        self.validated = True
        return values

    def _loss(self, start: int, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The start's loss; the first step runs the generated module's own input checks."""
        loss = self.losses[start]
        if self.validated:
            return loss(z, **batch.inputs)  # type: ignore[no-any-return]
        return validated_loss(self.run.plan.name, loss, z, batch)

    def _stopped(self, epoch: int, start: int, step: int, why: str) -> TrainingFailed:
        name, steps = self.run.plan.name, self.run.steps_per_epoch()
        return stopped(name, epoch, f" of start {start + 1}", step, steps, why)

    def _keep_best(self) -> None:
        """Every running start's final divergence (a stopped start's: its score when it
        stopped); the run's mapper and loss become the lowest running start's (the first lowest,
        as the sequential path keeps it), with its losses and snapshots."""
        run = self.run
        kls = [
            self.stopped[start][1]
            if start in self.stopped
            else run.start_score_of(self.mappers[start], self.losses[start])
            for start in range(len(self.mappers))
        ]
        finite = [(kls[start], start) for start in self.running if math.isfinite(kls[start])]
        kept = min(finite)[1] if finite else self.running[-1]
        final = (copy_state(self.mappers[kept]), copy_state(self.losses[kept]))
        run.snapshots = []
        for epoch, mapper_state, loss_state in self.remembered[kept]:
            run.mapper.load_state_dict(mapper_state)
            run.loss.load_state_dict(loss_state)
            run.snapshot(epoch)
        run.mapper.load_state_dict(final[0])
        run.loss.load_state_dict(final[1])
        run.start_kls, run.start, run.best = kls, kept, None
        run.losses = list(self.histories[kept])

    def state(self, epoch: int, elapsed: float) -> dict[str, Any]:
        """The checkpoint: the usual fields (start 1's weights, the shared optimiser) and every
        start's weights, losses and remembered parameters under ``KEY``."""
        run = self.run
        return {
            "fingerprint": run.fingerprint(),
            "epoch": epoch,
            "mapper": self.mappers[0].state_dict(),
            "loss": self.losses[0].state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "losses": [],
            "snapshots": [],
            "start": 0,
            "start_kls": [],
            "best": None,
            "elapsed": elapsed,
            KEY: {
                "mappers": [m.state_dict() for m in self.mappers],
                "losses": [loss.state_dict() for loss in self.losses],
                "histories": [list(h) for h in self.histories],
                "remembered": [list(r) for r in self.remembered],
                "running": list(self.running),
                "stopped": [
                    [start, epoch, score] for start, (epoch, score) in self.stopped.items()
                ],
            },
        }

    def check(self, path: Path, state: dict[str, Any]) -> None:
        """TrainError unless the checkpoint holds every start's state for this run's model."""
        saved = state[KEY]
        parts = ("mappers", "losses", "histories", "remembered")
        starts = range(len(self.mappers))
        if (
            not isinstance(saved, dict)
            or any(
                not isinstance(saved.get(k), list) or len(saved[k]) != len(starts) for k in parts
            )
            or not set(saved.get("running", starts)) <= set(starts)
        ):
            raise TrainError(
                f"{path}: the checkpoint's {KEY!r} entry does not hold {len(self.mappers)} "
                "starts' mappers, losses and histories; start afresh without --resume, or pass "
                "another --out"
            )
        checkpoint.check_against(path, state, self.mappers[0], self.losses[0], self.optimizer)
        for start in range(len(self.mappers)):
            what = f"start {start + 1}'s"
            mapper, loss = self.mappers[start].state_dict(), self.losses[start].state_dict()
            checkpoint.check_weights(
                path, f"{what} mapper weights", saved["mappers"][start], mapper
            )
            checkpoint.check_weights(path, f"{what} loss parameters", saved["losses"][start], loss)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by ``state``."""
        saved = state[KEY]
        for start, (mapper, loss) in enumerate(zip(self.mappers, self.losses, strict=True)):
            mapper.load_state_dict(saved["mappers"][start])
            loss.load_state_dict(saved["losses"][start])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.histories = [[float(v) for v in h] for h in saved["histories"]]
        self.remembered = [
            [(int(epoch), dict(m), dict(lo)) for epoch, m, lo in r] for r in saved["remembered"]
        ]
        self.running = [int(s) for s in saved.get("running", range(len(self.mappers)))]
        self.stopped = {int(s): (int(e), float(sc)) for s, e, sc in saved.get("stopped", [])}
        self.validated = True
