"""Running an evaluation's jobs within a time budget: workers, predicted costs, results.

Takes: jobs, the cells they train, deadlines. Guarantees: `Results` appends every result to
`results.jsonl` as it arrives and reads it back, so the same command resumes; `Costs` predicts a
run's seconds from the runs this evaluation has measured (by stage and training category; before
any, from `PRIOR_SECONDS`, measured on one idle core, scaled by how much slower than that prior
this machine's runs have been so far); `Runner.run` starts a group of jobs only when the group is
predicted to finish before its deadline, never cuts a run in flight, and returns the jobs it did
not start.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from icon_dsl.train.eval_data import Benchmark, load_benchmark
from icon_dsl.train.eval_runs import Cell, Job, baseline_rows, run_job

RESULTS_FILE = "results.jsonl"
#: Seconds per run on one idle core (digits; screening: 600 rows, one start; confirmation: the
#: whole train part, `CONFIRM_RESTARTS` starts for a clustering head; baselines: one seed of a
#: kind), measured 2026-11-30. Tuning runs cost what screening runs do.
PRIOR_SECONDS: dict[str, dict[str, float]] = {
    "screen": {"table": 1.2, "network": 1.5, "cluster": 1.6, "labels": 0.6, "views": 0.8},
    "confirm": {"table": 9.0, "network": 5.0, "cluster": 12.0, "labels": 1.1, "views": 2.1},
    "baseline": {"2-d map": 13.0, "embedding": 1.0, "clustering": 1.0},
}
PRIOR_TRAIN_ROWS = 1257  # digits' train part, on which the confirmation prior was measured


@dataclass
class Results:
    """Every run's result by job key, mirrored in `out/results.jsonl`."""

    out: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def load(self) -> None:
        path = self.out / RESULTS_FILE
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.results[entry["key"]] = entry

    def add(self, job: Job, result: dict[str, Any]) -> None:
        entry = {"key": job.key, "job": asdict(job), **result}
        self.results[job.key] = entry
        with (self.out / RESULTS_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


def _cost_stage(stage: str) -> str:
    return "screen" if stage == "tune" else stage


class Costs:
    """Predicted seconds per run, from the runs measured so far (see the module's docstring)."""

    def __init__(self, train_rows: int = PRIOR_TRAIN_ROWS) -> None:
        self.seen: dict[tuple[str, str], list[float]] = {}
        self.ratios: list[float] = []
        self.growth = train_rows / PRIOR_TRAIN_ROWS  # confirmation trains on the whole train part

    def observe(self, stage: str, category: str, seconds: float) -> None:
        key = (_cost_stage(stage), category)
        self.seen.setdefault(key, []).append(seconds)
        prior = PRIOR_SECONDS.get(key[0], {}).get(category)
        if prior:
            self.ratios.append(seconds / prior)

    def slowdown(self) -> float:
        """How many times slower than the prior this machine's runs have been (1 before any)."""
        return max(1.0, statistics.median(self.ratios)) if self.ratios else 1.0

    def predict(self, stage: str, category: str) -> float:
        key = (_cost_stage(stage), category)
        seen = self.seen.get(key)
        if seen:
            return statistics.fmean(seen)
        prior = PRIOR_SECONDS.get(key[0], {}).get(category, 10.0) * self.slowdown()
        if key[0] == "confirm":  # tables are full-batch N x N: quadratic in the rows
            prior *= self.growth ** (2 if category == "table" else 1)
        return prior


def job_category(job: Job, cells: dict[str, Cell]) -> str:
    """A job's cost category: the baseline's kind, or the cell's training category."""
    if job.stage == "baseline":
        return job.name.split("|", 1)[1]
    cell = cells.get(job.name)
    return cell.category if cell is not None else "network"


# -- the workers ---------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(data: str, cache: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    _WORKER["bench"] = load_benchmark(data, Path(cache))


def _work(job: Job, cell: Cell | None, dim: int, device: str) -> dict[str, Any]:
    bench: Benchmark = _WORKER["bench"]
    start = time.perf_counter()
    try:
        if job.stage == "baseline":
            kind = job.name.split("|", 1)[1]
            rows = baseline_rows(bench, kind, dim, job.seed)
            return {"rows": rows, "seconds": round(time.perf_counter() - start, 2)}
        assert cell is not None
        return run_job(job, cell, bench, device)
    except Exception as err:  # noqa: BLE001 - one failing run must not stop the board
        return {"error": f"{type(err).__name__}: {err}".splitlines()[0]}


def pool(jobs: int, data: str, out: Path) -> ProcessPoolExecutor:
    """`jobs` worker processes of one thread each, every one holding the benchmark. They are
    spawned, not forked: a fork of a process whose torch / OpenMP thread pools are running can
    leave the child waiting forever on a lock (seen here: idle workers, a parent waiting)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker, initargs=(data, str(out))
    )


def result_seconds(result: dict[str, Any]) -> float | None:
    """The seconds a finished run took (None for a failed one)."""
    if "metrics" in result:
        return float(result["metrics"].get("seconds", 0.0))
    if "seconds" in result:
        return float(result["seconds"])
    return None


class Runner:
    """Starts jobs on the workers while they are predicted to fit; records every result."""

    def __init__(self, executor: ProcessPoolExecutor, workers: int, results: Results,
                 cells: dict[str, Cell], dims: dict[str, int], device: str, costs: Costs,
                 say: Callable[[str], None]) -> None:  # fmt: skip
        self.executor, self.workers, self.results = executor, workers, results
        self.cells, self.dims, self.device, self.costs, self.say = cells, dims, device, costs, say

    def predict(self, job: Job) -> float:
        return self.costs.predict(job.stage, job_category(job, self.cells))

    def run(self, groups: Sequence[Sequence[Job]], deadline: Callable[[], float]) -> list[Job]:
        """Run the groups in order; a group starts only when its remaining runs are predicted to
        finish (spread over the workers) by `deadline()`, and each of its runs only when that run
        is predicted to. Returns the jobs not started (done ones are skipped: resuming)."""
        todo = [[j for j in g if j.key not in self.results.results] for g in groups]
        total = sum(len(g) for g in groups)
        left = sum(len(g) for g in todo)
        if total:
            stage = next(j for g in groups for j in g).stage
            self.say(f"{stage}: {total} runs, {total - left} already done")
        pending: dict[Future[dict[str, Any]], tuple[Job, float]] = {}
        queue: list[Job] = []
        skipped: list[Job] = []
        groups_left = [g for g in todo if g]
        while groups_left or queue or pending:
            self._admit(groups_left, queue, skipped, deadline, len(pending))
            while queue and len(pending) < self.workers:
                job = queue.pop(0)
                if time.monotonic() + self.predict(job) > deadline():
                    skipped.append(job)
                    continue
                cell = self.cells.get(job.name)
                dim = self.dims.get(job.name.split("|")[-1], 2)
                fut = self.executor.submit(_work, job, cell, dim, self.device)
                pending[fut] = (job, time.monotonic())
            if not pending:
                if not queue and not groups_left:
                    break
                continue
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                job, started = pending.pop(fut)
                self._record(job, fut.result(), time.monotonic() - started)
        if skipped:
            self.say(f"{skipped[0].stage}: budget: {len(skipped)} runs not started")
        return skipped

    def _admit(self, groups: list[list[Job]], queue: list[Job], skipped: list[Job],
               deadline: Callable[[], float], running: int) -> None:  # fmt: skip
        """Move groups into the queue while the queue is short and the next group fits."""
        while groups and len(queue) < self.workers:
            group = groups.pop(0)
            work = sum(self.predict(j) for j in group) + sum(self.predict(j) for j in queue)
            spread = max(work / self.workers, max(self.predict(j) for j in group))
            if time.monotonic() + spread > deadline():
                skipped.extend(group)
                continue
            queue.extend(group)

    def _record(self, job: Job, result: dict[str, Any], wall: float) -> None:
        self.results.add(job, result)
        if result_seconds(result) is not None:
            self.costs.observe(job.stage, job_category(job, self.cells), wall)
        self.say(f"  {job.stage} {job.name} seed {job.seed} x{job.scale:g} lr x{job.lr:g}: "
                 + brief(result))  # fmt: skip


def brief(result: dict[str, Any]) -> str:
    """One line for the log."""
    if "error" in result:
        return f"failed: {result['error']}"
    if "rows" in result:
        return ", ".join(result["rows"])
    m = result["metrics"]
    return (
        ", ".join(f"{k}={v:.3f}" for k, v in m.items() if k != "seconds") + f" ({m['seconds']} s)"
    )
