"""Evaluating the periodic table: every candidate trained and scored on held-out data.

Takes: candidates from `icon_dsl.enumeration` and a `Protocol` (data, seeds, budget, jobs).
Guarantees, as a reviewer would ask of a leaderboard:

- held-out data (`eval_data`): digits is split 70/30 (stratified, seed 0), MNIST-1D keeps its
  own train/test split (generated offline); a validation part (20 % of train) picks
  hyperparameters; the test part is only used by the confirmation runs and the baselines;
- one metric per column kind, on the test part (`eval_runs.score`): trustworthiness (2-D maps),
  NMI (clustering), linear-probe accuracy (other embeddings), with kNN accuracy, Hungarian
  accuracy and ARI reported beside them;
- the same treatment for known and new candidates: the same screening run, the same tuning grid
  (the scale hyperparameter x 3, the learning rate x 2, chosen on the validation part), the same
  confirmation length and starts;
- successive halving in three stages: every candidate gets a short screening run; per column the
  best known method and the best new one are tuned; the tuned finalists train `seeds` times at
  full length and give mean, std and a 95 % t-interval (`leaderboard`);
- baseline rows in every column (raw features, PCA to the same dimension, scikit-learn's TSNE,
  KMeans, LogisticRegression);
- a time budget the scheduler honours (`eval_schedule`): each stage starts a run only when the
  run, and what later stages are predicted to need, fit in what is left, with costs measured on
  this machine as the runs arrive; runs in flight are never cut; whatever was not evaluated in
  time is listed in `not_evaluated.json` and `leaderboard.md` with why;
- `jobs` worker processes of one thread each; every result is appended to `results.jsonl` as it
  arrives, so the same command resumes.

A new candidate "beats" its column only when its 95 % interval lies entirely above the interval
of the column's best known method (non-overlapping t-intervals: a conservative test).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icon_dsl.train.eval_data import (
    N_NEIGHBOURS,
    Benchmark,
    concat,
    knn_graph,
    load_benchmark,
    subset,
)
from icon_dsl.train.eval_runs import (
    CONFIRM_EPOCHS,
    CONFIRM_RESTARTS,
    KIND_METRIC,
    REPORTED,
    SCREEN_EPOCHS,
    SCREEN_ROWS,
    VALIDATION,
    Cell,
    Job,
    baseline_rows,
    cells,
    epochs_for,
    result_value,
    run_job,
    scaled_spec,
    score,
    spec_dim,
)
from icon_dsl.train.eval_schedule import RESULTS_FILE, Costs, Results, Runner, pool
from icon_dsl.train.leaderboard import (
    _mark_beats,
    _row,
    interval,
    leaderboard,
    render_leaderboard,
    summary_markdown,
    write_leaderboard,
)

__all__ = [
    "CONFIRM_EPOCHS", "CONFIRM_RESTARTS", "KIND_METRIC", "N_NEIGHBOURS", "REPORTED",
    "RESULTS_FILE", "SCREEN_EPOCHS", "SCREEN_ROWS", "VALIDATION", "Benchmark", "Cell", "Job",
    "Protocol", "_mark_beats", "_row", "baseline_rows", "cells", "concat", "evaluate",
    "interval", "knn_graph", "leaderboard", "load_benchmark", "render_leaderboard", "report",
    "run_job", "scaled_spec", "score", "subset", "summary_markdown",
]  # fmt: skip

SCALE_FACTORS = (0.5, 1.0, 2.0)  # the scale hyperparameter: x the candidate's own value
LR_FACTORS = (1.0, 3.0)  # x the runtime's default learning rate for the spec's kind
TUNE_TOP_NEW = 1  # new candidates per column that are tuned and confirmed
#: Screening may always use this share of the budget, even where the later stages are
#: predicted to need more than is left (a slow machine still screens the table).
MIN_SCREEN_SHARE = 0.25
#: Kept free at the end of the budget for the leaderboard and the scored table.
END_MARGIN_SECONDS = 20.0


@dataclass(frozen=True)
class Protocol:
    """How to evaluate: the data, seeds, the budget in minutes and the worker processes."""

    data: str = "digits"
    seeds: int = 3
    budget_minutes: float = 30.0
    jobs: int = 2
    epochs: int | None = None  # every run's epochs (None: SCREEN_EPOCHS / CONFIRM_EPOCHS)
    first_seed: int = 0
    device: str = "cpu"


@dataclass
class _Run:
    """One evaluation in progress: the cells, the seeds, the clock and the runner."""

    protocol: Protocol
    live: list[Cell]
    seeds: list[int]
    start: float
    costs: Costs
    runner: Runner

    @property
    def end(self) -> float:
        budget = self.protocol.budget_minutes * 60
        return self.start + budget - min(END_MARGIN_SECONDS, 0.05 * budget)

    def screen_jobs(self) -> list[Job]:
        return [Job("screen", c.name, self.seeds[0], epochs=self.epochs(c, SCREEN_EPOCHS))
                for c in _round_robin(self.live)]  # fmt: skip

    def epochs(self, c: Cell, table: dict[str, int]) -> int:
        return epochs_for(c, table, self.protocol.epochs)

    def later_work(self, finalists: Sequence[Cell] | None, tuning: bool) -> float:
        """Worker-seconds the tuning (when `tuning`) and confirmation stages are predicted to
        need: for the given finalists, or for the expected ones (a known and a new cell per
        column, at the column's mean predicted cost) before screening has chosen them."""
        groups = [[c] for c in finalists] if finalists is not None else _expected(self.live)
        total = 0.0
        for group in groups:
            screen = _mean(self.costs.predict("screen", c.category) for c in group)
            confirm = _mean(self.costs.predict("confirm", c.category) for c in group)
            grid = len(_grid(group[0])) - 1  # the screening run is the grid's (1, 1) point
            total += (grid * screen if tuning else 0.0) + len(self.seeds) * confirm
        return total

    def deadline_after(
        self, reserve: Callable[[], float], floor: float = 0.0
    ) -> Callable[[], float]:
        """A stage's deadline: the end, less the later stages' predicted work over the workers;
        never before `floor` of the budget."""
        budget = self.protocol.budget_minutes * 60
        workers = self.protocol.jobs
        return lambda: max(self.end - reserve() / workers, self.start + floor * budget)


def _mean(values: Any) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def evaluate(
    cands: Sequence[Any],
    protocol: Protocol,
    *,
    out: str | Path = "runs/enumerate",
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the protocol over the known and new candidates; write the leaderboard; return its rows
    (`enumeration.board.write_table` draws the scored table from them)."""
    say = log or (lambda _m: None)
    start = time.monotonic()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = load_benchmark(protocol.data, out_dir)
    results = Results(out_dir)
    results.load()
    all_cells = cells(cands)
    live = [c for c in all_cells if c.skip is None]
    by_name = {c.name: c for c in live}
    seeds = [protocol.first_seed + s for s in range(protocol.seeds)]
    kinds = sorted({c.kind for c in live})
    dims = {c.kind: spec_dim(c.spec) for c in live}
    costs = Costs(bench.train.n_samples)
    with pool(protocol.jobs, protocol.data, out_dir) as executor:
        runner = Runner(
            executor, protocol.jobs, results, by_name, dims, protocol.device, costs, say
        )
        run = _Run(protocol, live, seeds, start, costs, runner)
        runner.run([[Job("baseline", f"baseline|{k}", s)] for k in kinds for s in seeds],
                   lambda: run.end)  # fmt: skip
        _stages(run, results, say)
    rows = leaderboard(all_cells, results.results, kinds, seeds)
    _write(out_dir, rows, all_cells, results, bench, protocol)
    say(f"evaluation: {(time.monotonic() - start) / 60:.1f} of {protocol.budget_minutes:g} min")
    return rows


def _stages(run: _Run, results: Results, say: Callable[[str], None]) -> None:
    """Screening, tuning and confirmation, each within what the budget leaves it."""
    screen = run.screen_jobs()
    run.runner.run([[j] for j in screen],
                   run.deadline_after(lambda: run.later_work(None, True), MIN_SCREEN_SHARE))  # fmt: skip
    finalists = _finalists(run.live, results, run.seeds[0])
    say(f"finalists: {len(finalists)} ({', '.join(c.name for c in finalists)})")
    tune = [Job("tune", c.name, run.seeds[0], s, lr, run.epochs(c, SCREEN_EPOCHS))
            for s, lr in _grid_order() for c in finalists if (s, lr) in _grid(c)]  # fmt: skip
    run.runner.run([[j] for j in tune],
                   run.deadline_after(lambda: run.later_work(finalists, False)))  # fmt: skip
    groups = []
    for column_cells in _confirm_order(finalists, run.costs):
        configs = {c.name: _best_config(c, results, run.seeds[0]) for c in column_cells}
        groups.append([
            Job("confirm", c.name, s, *configs[c.name], run.epochs(c, CONFIRM_EPOCHS), "test")
            for s in run.seeds for c in column_cells
        ])  # fmt: skip
    run.runner.run(groups, lambda: run.end)


def report(cands: Sequence[Any], protocol: Protocol, out: str | Path) -> list[dict[str, Any]]:
    """Rewrite the leaderboard from `results.jsonl` alone (no training): what an interrupted run
    had finished (`enumeration.board.write_table` draws the scored table from the rows)."""
    out_dir = Path(out)
    bench = load_benchmark(protocol.data, out_dir)
    results = Results(out_dir)
    results.load()
    all_cells = cells(cands)
    kinds = sorted({c.kind for c in all_cells if c.skip is None})
    seeds = [protocol.first_seed + s for s in range(protocol.seeds)]
    rows = leaderboard(all_cells, results.results, kinds, seeds)
    _write(out_dir, rows, all_cells, results, bench, protocol)
    return rows


def _write(out: Path, rows: list[dict[str, Any]], all_cells: list[Cell], results: Results,
           bench: Benchmark, protocol: Protocol) -> None:  # fmt: skip
    seeds = [protocol.first_seed + s for s in range(protocol.seeds)]
    skipped, screened = _coverage(all_cells, results, seeds)
    write_leaderboard(out, rows, skipped, screened, bench, protocol)


# -- stages --------------------------------------------------------------------------------------


def _grid(c: Cell) -> list[tuple[float, float]]:
    """The tuning grid of a cell: scale x learning rate, or the learning rate alone where the
    spec has no scale hyperparameter to vary."""
    scales = SCALE_FACTORS if scaled_spec(c.spec, 2.0)[1] is not None else (1.0,)
    return [(s, lr) for s in scales for lr in LR_FACTORS]


def _grid_order() -> list[tuple[float, float]]:
    """The grid's points other than (1, 1) (the screening run), in the order tuning runs them:
    every finalist gets the same points first, so a budget cut short treats them alike."""
    order = [(1.0, 3.0), (0.5, 1.0), (2.0, 1.0), (0.5, 3.0), (2.0, 3.0)]
    assert set(order) | {(1.0, 1.0)} == {(s, lr) for s in SCALE_FACTORS for lr in LR_FACTORS}
    return order


def _round_robin(live: Sequence[Cell]) -> list[Cell]:
    """One cell per column in turn, known methods first within a column: a budget cut short
    still screens every column, and each column's reference first."""
    columns: dict[str, list[Cell]] = {}
    for c in sorted(live, key=lambda c: c.status != "known"):
        columns.setdefault(c.column, []).append(c)
    out: list[Cell] = []
    while any(columns.values()):
        for queue in columns.values():
            if queue:
                out.append(queue.pop(0))
    return out


def _expected(live: Sequence[Cell]) -> list[list[Cell]]:
    """Before screening: the finalists each column will have, as the group of its candidates
    (one group for its known cells, one for its new ones)."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in live:
        groups.setdefault((c.column, c.status), []).append(c)
    return list(groups.values())


def _screen_scores(live: Sequence[Cell], results: Results, seed: int) -> dict[str, float | None]:
    keys = {c.name: Job("screen", c.name, seed).key for c in live}
    return {c.name: result_value(results.results.get(keys[c.name]), c.metric) for c in live}


def _finalists(live: Sequence[Cell], results: Results, seed: int) -> list[Cell]:
    """Per column: the best screened known method and the best `TUNE_TOP_NEW` new ones."""
    scores = _screen_scores(live, results, seed)
    out: list[Cell] = []
    for column in sorted({c.column for c in live}):
        members = [c for c in live if c.column == column and scores.get(c.name) is not None]
        members.sort(key=lambda c: -(scores[c.name] or 0.0))
        known = [c for c in members if c.status == "known"][:1]
        new = [c for c in members if c.status == "new"][:TUNE_TOP_NEW]
        out += known + new
    return out


def _confirm_order(finalists: Sequence[Cell], costs: Costs) -> list[list[Cell]]:
    """Finalists by column: columns with a known and a new finalist (a verdict is possible)
    first, then the others; within each, the cheapest column first."""
    columns: dict[str, list[Cell]] = {}
    for c in finalists:
        columns.setdefault(c.column, []).append(c)

    def key(group: list[Cell]) -> tuple[bool, float]:
        both = {c.status for c in group} == {"known", "new"}
        return (not both, sum(costs.predict("confirm", c.category) for c in group))

    return sorted(columns.values(), key=key)


def _best_config(c: Cell, results: Results, seed: int) -> tuple[float, float]:
    """The grid point with the best validation score (the screening run is the (1, 1) point)."""
    best, config = -math.inf, (1.0, 1.0)
    for scale, lr in _grid(c):
        stage = "screen" if (scale, lr) == (1.0, 1.0) else "tune"
        entry = next((e for e in results.results.values()
                      if e["job"]["stage"] == stage and e["job"]["name"] == c.name
                      and e["job"]["seed"] == seed and e["job"]["scale"] == scale
                      and e["job"]["lr"] == lr), None)  # fmt: skip
        v = result_value(entry, c.metric)
        if v is not None and v > best:
            best, config = v, (scale, lr)
    return config


def _coverage(all_cells: Sequence[Cell], results: Results,
              seeds: Sequence[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """What was not evaluated and why; and every screened cell with its validation score."""
    live = [c for c in all_cells if c.skip is None]
    scores = _screen_scores(live, results, seeds[0])
    finalists = {c.name for c in _finalists(live, results, seeds[0])}
    confirmed: dict[str, int] = {}
    tuned: dict[str, int] = {}
    failed: dict[str, str] = {}
    for e in results.results.values():
        stage, name = e["job"]["stage"], e["job"]["name"]
        if stage in ("confirm", "tune") and "error" in e:
            failed.setdefault(f"{stage}|{name}", e["error"])
        elif stage == "confirm" and "metrics" in e:
            confirmed[name] = confirmed.get(name, 0) + 1
        elif stage == "tune" and "metrics" in e:
            tuned[name] = tuned.get(name, 0) + 1
    skipped: list[dict[str, Any]] = []
    screened: list[dict[str, Any]] = []
    for c in all_cells:
        why = c.skip or _why_not(c, results, seeds, scores, finalists, (confirmed, tuned, failed))
        if why:
            skipped.append({"name": c.name, "column": c.column, "why": why})
        entry = results.results.get(Job("screen", c.name, seeds[0]).key)
        if entry is not None:
            screened.append({"name": c.name, "column": c.column, "status": c.status,
                             "known_as": c.known_as, "score": scores.get(c.name),
                             "finalist": c.name in finalists})  # fmt: skip
    screened.sort(key=lambda r: (r["column"], -(r["score"] if r["score"] is not None else -9)))
    return skipped, screened


def _why_not(c: Cell, results: Results, seeds: Sequence[int], scores: dict[str, float | None],
             finalists: set[str],
             counts: tuple[dict[str, int], dict[str, int], dict[str, str]]) -> str | None:  # fmt: skip
    """Why a live cell has no confirmed row with every seed (None when it is not owed one)."""
    confirmed, tuned, failed = counts
    entry = results.results.get(Job("screen", c.name, seeds[0]).key)
    if entry is None:
        return "not screened: the budget ran out before its screening run could start"
    if "error" in entry:
        return f"screening run failed: {entry['error']}"
    if scores.get(c.name) is None:
        return "screening run scored NaN (a non-finite embedding)"
    if c.name not in finalists:
        return None  # screened out: listed in the screening table
    n = confirmed.get(c.name, 0)
    grid = len(_grid(c))
    tuning = f"tuned on {1 + tuned.get(c.name, 0)} of {grid} grid points"
    if f"tune|{c.name}" in failed:
        tuning += f"; a tuning run failed: {failed[f'tune|{c.name}'][:160]}"
    if f"confirm|{c.name}" in failed and n < len(seeds):
        error = failed[f"confirm|{c.name}"][:200]
        return f"finalist confirmed on {n} of {len(seeds)} seeds: the others failed: {error} ({tuning})"
    if n == 0:
        return f"finalist not confirmed: the budget ran out before its column's runs ({tuning})"
    if n < len(seeds):
        return f"finalist confirmed on {n} of {len(seeds)} seeds within the budget ({tuning})"
    if tuned.get(c.name, 0) + 1 < grid:
        return f"confirmed, but {tuning}"
    return None
