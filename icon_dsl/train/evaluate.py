"""Evaluating the periodic table: every candidate trained and scored on held-out data.

Takes: candidates from `icon_dsl.enumeration` and a `Protocol` (data, seeds, budget, jobs).
Guarantees, as a reviewer would ask of a leaderboard:

- held-out data: digits is split 70/30 (stratified, seed 0), MNIST-1D keeps its own train/test
  split (`mnist1d.data.make_dataset`, generated offline); a validation part (20 % of train) picks
  hyperparameters; the test part is only used by the confirmation runs;
- one metric per column kind, on the test part: trustworthiness (2-D maps), NMI (clustering),
  linear-probe accuracy (other embeddings; a logistic regression fitted on the train part's
  embedding), with kNN accuracy, Hungarian accuracy and ARI reported beside them;
- the same tuning for known and new candidates: the scale hyperparameter (3 values) x the
  learning rate (2 values), chosen on the validation part;
- screening then confirmation (successive halving): every candidate gets a short run; the best of
  each column (the best known method and the best new ones) are tuned; the tuned winners train
  `seeds` times at full length and give mean, std and a 95 % t-interval;
- baseline rows in every column (raw features, PCA to the same dimension, scikit-learn's TSNE,
  KMeans, LogisticRegression);
- `jobs` worker processes of one thread each; every result is appended to `results.jsonl` as it
  arrives, so the same command resumes; a stage stops starting jobs when the budget is spent.

A new candidate "beats" its column only when its 95 % interval lies entirely above the interval
of the column's best known method (non-overlapping t-intervals: a conservative test).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icon_dsl.train.data import Dataset, load_dataset
from icon_dsl.train.errors import DataError

RESULTS_FILE = "results.jsonl"
KIND_METRIC = {"2-d map": "trustworthiness", "clustering": "nmi", "embedding": "linear_probe"}
REPORTED = {
    "2-d map": ("trustworthiness", "knn", "linear_probe"),
    "clustering": ("nmi", "cluster_accuracy", "ari"),
    "embedding": ("linear_probe", "knn"),
}
SCALE_FACTORS = (0.5, 1.0, 2.0)  # the scale hyperparameter: x the candidate's own value
LR_FACTORS = (1.0, 3.0)  # x the runtime's default learning rate for the spec's kind
#: Epochs per stage, by kind of training (the runtime's kinds): short screening runs, and
#: confirmation runs long enough to rank (documented in docs/discovery.md with timings).
SCREEN_EPOCHS = {"views": 10, "labels": 10, "table": 30, "cluster": 10, "network": 20}
CONFIRM_EPOCHS = {"views": 40, "labels": 30, "table": 60, "cluster": 30, "network": 60}
TUNE_TOP_NEW = 1  # new candidates per column that are tuned and confirmed
#: Rows (fit, validation) of the screening and tuning runs: quadratic costs (full-batch tables,
#: N x N kernels) stay small; confirmation uses the whole train and test parts.
SCREEN_ROWS = (600, 300)
#: The fraction of the budget by which baselines + screening, then tuning must have started
#: their runs; confirmation may use the rest.
STAGE_SHARES = (0.4, 0.65)
VALIDATION = 0.2
N_NEIGHBOURS = 10


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


@dataclass(frozen=True)
class Benchmark:
    """Train and test parts, each with side information and a kNN graph built from its data."""

    name: str
    train: Dataset
    test: Dataset
    notes: tuple[str, ...] = ()


# -- data ----------------------------------------------------------------------------------------


def load_benchmark(data: str, cache: Path | None = None) -> Benchmark:
    """digits, mnist1d (generated offline, its own split) or a labelled file, split 70/30."""
    if data == "mnist1d":
        x, y, x_test, y_test = _mnist1d(cache)
        name = "mnist1d"
    else:
        full = load_dataset(None if data == "digits" else data)
        if full.y is None:
            raise DataError(f"{data}: evaluation needs labels (y) to score the candidates")
        x, x_test, y, y_test = _split(full.x, full.y)
        name = "digits" if data == "digits" else Path(data).stem
    notes = (
        "side information: the features of a second, differently augmented view of each sample "
        "(one fixed draw of the runtime's augmentations), so side-input columns compare views",
        f"graph: the symmetric {N_NEIGHBOURS}-nearest-neighbour graph of the features (0/1)",
    )
    image = (8, 8) if name == "digits" else None
    return Benchmark(
        name, _dataset(name, x, y, image, 1), _dataset(name + "-test", x_test, y_test, image, 2),
        notes,
    )  # fmt: skip


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    parts = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    return tuple(parts)


def _mnist1d(cache: Path | None) -> tuple[np.ndarray, ...]:
    path = None if cache is None else cache / "mnist1d.npz"
    if path is not None and path.is_file():
        z = np.load(path)
        return z["x"], z["y"], z["x_test"], z["y_test"]
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())  # generated from templates: no download
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=arrays[0], y=arrays[1], x_test=arrays[2], y_test=arrays[3])
    return arrays


def _dataset(
    name: str, x: np.ndarray, y: np.ndarray, image: tuple[int, int] | None, salt: int
) -> Dataset:
    import torch

    from icon_dsl.train.augment import make_views

    x = np.asarray(x, dtype=np.float32)
    gen = torch.Generator().manual_seed(1000 + salt)
    view, _ = make_views(torch.from_numpy(x), 1, gen, image)
    return Dataset(
        name, x, np.asarray(y, dtype=np.int64), image, side=view.numpy().astype(np.float32),
        adjacency=knn_graph(x),
    )  # fmt: skip


def knn_graph(x: np.ndarray, k: int = N_NEIGHBOURS) -> np.ndarray:
    from sklearn.neighbors import kneighbors_graph

    a = kneighbors_graph(x, k, include_self=False).toarray()
    return np.maximum(a, a.T).astype(np.float32)


def subset(d: Dataset, rows: np.ndarray, name: str) -> Dataset:
    adjacency = None if d.adjacency is None else d.adjacency[np.ix_(rows, rows)]
    side = None if d.side is None else d.side[rows]
    y = None if d.y is None else d.y[rows]
    return Dataset(name, d.x[rows], y, d.image_shape, side=side, adjacency=adjacency)


def concat(a: Dataset, b: Dataset) -> Dataset:
    """Train and test rows in one data set (table mappers embed only the rows they train on)."""
    assert a.y is not None and b.y is not None and a.side is not None and b.side is not None
    x = np.concatenate([a.x, b.x])
    return Dataset(
        a.name + "+test", x, np.concatenate([a.y, b.y]), a.image_shape,
        side=np.concatenate([a.side, b.side]), adjacency=knn_graph(x),
    )  # fmt: skip


# -- cells ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A candidate as the evaluation sees it: its column, kind, metric and how it trains."""

    name: str
    spec: str
    status: str  # known / new
    known_as: str | None
    column: str
    kind: str
    metric: str
    table: bool
    supervised: bool
    skip: str | None = None  # why it is not evaluated


def cells(cands: Sequence[Any]) -> list[Cell]:
    """The known and new candidates, with their column; others are not evaluated."""
    from icon_dsl.api import check

    out = []
    for c in cands:
        if c.status not in ("known", "new"):
            continue
        ir = check(c.spec).ir
        mapper = ir.args(ir.roots["mapper"])
        kind = "clustering" if mapper.get("softmax") else (
            "2-d map" if int(mapper.get("dim", 2)) == 2 else "embedding"
        )  # fmt: skip
        names = {ir.args(n).get("name") for n in ir.graph.nodes if ir.op(n) == "input"}
        table = ir.op(ir.roots["mapper"]) == "table"
        supervised = "y" in names
        column = c.p if c.input in (None, "x") else f"{c.p} ({c.input})"
        skip = None
        if table and supervised:
            skip = (
                "a table mapper embeds only rows it trains on, and this p needs their labels: "
                "scoring held-out rows would train on the test labels"
            )
        out.append(Cell(c.name, c.spec, c.status, c.known_as, f"{column}, {kind}", kind,
                        KIND_METRIC[kind], table, supervised, skip))  # fmt: skip
    return out


# -- scoring -------------------------------------------------------------------------------------


def score(kind: str, train_emb: np.ndarray, y_train: np.ndarray, test_x: np.ndarray,
          test_emb: np.ndarray, y_test: np.ndarray) -> dict[str, float]:  # fmt: skip
    """Held-out metrics: classifiers fit on the train embedding, scored on the test one."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from icon_dsl.train.metrics import cluster_accuracy

    if not (np.isfinite(train_emb).all() and np.isfinite(test_emb).all()):
        return {KIND_METRIC[kind]: float("nan"), "error": 1.0}
    if kind == "clustering":
        pred = test_emb.argmax(1)
        return {
            "nmi": float(normalized_mutual_info_score(y_test, pred)),
            "cluster_accuracy": float(cluster_accuracy(y_test, pred)),
            "ari": float(adjusted_rand_score(y_test, pred)),
        }
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    probe.fit(train_emb, y_train)
    knn = KNeighborsClassifier(N_NEIGHBOURS).fit(train_emb, y_train)
    out = {
        "linear_probe": float(probe.score(test_emb, y_test)),
        "knn": float(knn.score(test_emb, y_test)),
    }
    if kind == "2-d map":
        out["trustworthiness"] = float(trustworthiness(test_x, test_emb, n_neighbors=N_NEIGHBOURS))
    return out


# -- jobs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One training run: a cell, a configuration, a seed, a stage and the part it is scored on."""

    stage: str  # screen, tune, confirm, baseline
    name: str
    seed: int
    scale: float = 1.0
    lr: float = 1.0
    epochs: int | None = None
    held_out: str = "validation"  # validation or test

    @property
    def key(self) -> str:
        return f"{self.stage}|{self.name}|{self.seed}|{self.scale:g}|{self.lr:g}|{self.held_out}"


def scaled_spec(spec: str, factor: float) -> tuple[str, str | None]:
    """The spec with its scale hyperparameter times `factor`, and which one it is.

    The scale is q's temperature or sigma where a rescaling of f(x) cannot absorb it (cosine),
    else p's perplexity, else p's k (kNN): the number that sets the neighbourhood's width.
    """
    import re

    from icon_dsl.api import check
    from icon_dsl.scaling import is_scale_free

    if factor == 1.0:
        return spec, None
    ir = check(spec).ir
    lines = spec.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("q = ") and not is_scale_free(ir, ir.roots["q"]):
            for arg in ("temperature", "sigma"):
                m = re.search(rf"\b{arg}=([0-9.]+)", line)
                if m:
                    value = float(m.group(1)) * factor
                    lines[i] = line[: m.start(1)] + f"{value:g}" + line[m.end(1) :]
                    return "\n".join(lines) + "\n", arg
    for i, line in enumerate(lines):
        if line.startswith("p = "):
            m = re.search(r"\bperplexity=([0-9.]+)", line)
            if m:
                value = max(2.0, float(m.group(1)) * factor)
                lines[i] = line[: m.start(1)] + f"{value:g}" + line[m.end(1) :]
                return "\n".join(lines) + "\n", "perplexity"
            m = re.search(r"knn\((x|side), (\d+)", line)
            if m:
                value = max(2, round(int(m.group(2)) * factor))
                lines[i] = line[: m.start(2)] + str(value) + line[m.end(2) :]
                return "\n".join(lines) + "\n", "k"
    return spec, None


def run_job(job: Job, cell: Cell, bench: Benchmark, device: str = "cpu") -> dict[str, Any]:
    """Train one configuration and score it on the validation or test part."""
    import torch

    from icon_dsl.train.runtime import train

    torch.set_num_threads(1)
    start = time.perf_counter()
    spec, scale_name = scaled_spec(cell.spec, job.scale)
    fit, held = _parts(bench, job.held_out)
    data = concat(fit, held) if cell.table else fit
    if not cell.supervised:  # labels are for scoring only: the run never sees them
        data = dataclasses.replace(data, y=None)
    result = train(
        spec, data=data, epochs=job.epochs, seed=job.seed, device=device, out=False,
        progress=False, lr_factor=job.lr, restarts=None if job.stage == "confirm" else 1,
    )  # fmt: skip
    assert fit.y is not None and held.y is not None
    n_fit = fit.n_samples
    if cell.table:
        train_emb, test_emb = result.embedding[:n_fit], result.embedding[n_fit:]
    else:
        assert result.model is not None
        train_emb, test_emb = result.embedding, result.model.embed(held.x)
    metrics = score(cell.kind, train_emb, fit.y, held.x, test_emb, held.y)
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    return {"scale_arg": scale_name, "metrics": metrics}


def _parts(bench: Benchmark, held_out: str) -> tuple[Dataset, Dataset]:
    """test: (train, test); validation: (train minus validation, validation); screening and
    tuning use the first SCREEN_ROWS of each of those (the cheap step of successive halving)."""
    if held_out == "test":
        return bench.train, bench.test
    n = bench.train.n_samples
    order = np.random.default_rng(0).permutation(n)
    cut = int(round(n * (1 - VALIDATION)))
    fit, val = order[:cut], order[cut:]
    fit, val = fit[: SCREEN_ROWS[0]], val[: SCREEN_ROWS[1]]
    return subset(bench.train, fit, "fit"), subset(bench.train, val, "validation")


def baseline_rows(bench: Benchmark, kind: str, dim: int, seed: int) -> dict[str, dict[str, float]]:
    """Reference rows on the test part: raw features, PCA to `dim`, and scikit-learn's method."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    tr, te = bench.train, bench.test
    assert tr.y is not None and te.y is not None
    n_classes = int(np.unique(tr.y).size)
    out: dict[str, dict[str, float]] = {}
    pca = PCA(dim, random_state=seed).fit(tr.x)
    if kind == "clustering":
        for label, (a, b) in {"raw features": (tr.x, te.x),
                              f"PCA-{n_classes}": (pca.transform(tr.x), pca.transform(te.x))}.items():  # fmt: skip
            km = KMeans(n_classes, n_init=10, random_state=seed).fit(a)
            onehot = np.eye(n_classes)[km.predict(b)]
            out[f"KMeans on {label}"] = score(kind, onehot, tr.y, te.x, onehot, te.y)
        return out
    out[f"PCA-{dim}"] = score(kind, pca.transform(tr.x), tr.y, te.x, pca.transform(te.x), te.y)
    if kind == "embedding":
        out["raw features (LogisticRegression)"] = score(kind, tr.x, tr.y, te.x, te.x, te.y)
    else:
        both = np.concatenate([tr.x, te.x])
        emb = TSNE(2, random_state=seed, init="pca").fit_transform(both)
        n = tr.n_samples
        out["scikit-learn TSNE"] = score(kind, emb[:n], tr.y, te.x, emb[n:], te.y)
    return out


# -- the run -------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(data: str, cache: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    _WORKER["bench"] = load_benchmark(data, Path(cache))


def _work(job: Job, cell: Cell | None, dim: int, device: str) -> dict[str, Any]:
    bench: Benchmark = _WORKER["bench"]
    try:
        if job.stage == "baseline":
            kind = job.name.split("|", 1)[1]
            return {"rows": baseline_rows(bench, kind, dim, job.seed)}
        assert cell is not None
        return run_job(job, cell, bench, device)
    except Exception as err:  # noqa: BLE001 - one failing run must not stop the board
        return {"error": f"{type(err).__name__}: {err}".splitlines()[0]}


@dataclass
class _State:
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


def evaluate(
    cands: Sequence[Any],
    protocol: Protocol,
    *,
    out: str | Path = "runs/enumerate",
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the protocol over the known and new candidates; write the leaderboard; return its rows."""
    say = log or (lambda _m: None)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = load_benchmark(protocol.data, out_dir)
    start = time.monotonic()
    budget = protocol.budget_minutes * 60
    state = _State(out_dir)
    state.load()
    all_cells = cells(cands)
    live = [c for c in all_cells if c.skip is None]
    by_name = {c.name: c for c in live}
    seeds = [protocol.first_seed + s for s in range(protocol.seeds)]
    kinds = sorted({c.kind for c in live})
    dims = {c.kind: _dim(c.spec) for c in live}
    with ProcessPoolExecutor(protocol.jobs, initializer=_init_worker,
                             initargs=(protocol.data, str(out_dir))) as pool:  # fmt: skip
        runner = _Runner(pool, protocol.jobs, state, by_name, dims, protocol.device, start, say)
        # each stage may start runs until its share of the budget is spent
        runner.deadline = start + STAGE_SHARES[0] * budget
        runner.run([Job("baseline", f"baseline|{k}", s) for k in kinds for s in seeds])
        screen = [Job("screen", c.name, seeds[0], epochs=_epochs(c, SCREEN_EPOCHS, protocol.epochs))
                  for c in _round_robin(live)]  # fmt: skip
        runner.run(screen)
        runner.deadline = start + STAGE_SHARES[1] * budget
        finalists = _finalists(live, state, screen)
        tune = [Job("tune", c.name, seeds[0], s, lr, _epochs(c, SCREEN_EPOCHS, protocol.epochs))
                for c in finalists for s in _scales(c) for lr in LR_FACTORS]  # fmt: skip
        runner.run(tune)
        runner.deadline = start + budget
        confirm = []
        for c in finalists:
            scale, lr = _best_config(c, state)
            confirm += [Job("confirm", c.name, s, scale, lr,
                            _epochs(c, CONFIRM_EPOCHS, protocol.epochs), "test") for s in seeds]  # fmt: skip
        runner.run(confirm)
    rows = leaderboard(all_cells, state, kinds, seeds)
    write_leaderboard(out_dir, rows, all_cells, bench, protocol, state)
    write_table(out_dir, cands, rows, bench.name)
    return rows


def report(cands: Sequence[Any], protocol: Protocol, out: str | Path) -> list[dict[str, Any]]:
    """Rewrite the leaderboard and the scored table from `results.jsonl` alone (no training):
    what an interrupted run had finished."""
    out_dir = Path(out)
    bench = load_benchmark(protocol.data, out_dir)
    state = _State(out_dir)
    state.load()
    all_cells = cells(cands)
    kinds = sorted({c.kind for c in all_cells if c.skip is None})
    seeds = [protocol.first_seed + s for s in range(protocol.seeds)]
    rows = leaderboard(all_cells, state, kinds, seeds)
    write_leaderboard(out_dir, rows, all_cells, bench, protocol, state)
    write_table(out_dir, cands, rows, bench.name)
    return rows


def write_table(out: Path, cands: Sequence[Any], rows: Sequence[dict[str, Any]], name: str) -> None:
    """periodic-table.html and .png: the table coloured by the measured scores."""
    from icon_dsl.train.board import render_scored_html, render_scored_png

    title = f"The periodic table on {name}: cells against their column's best known method"
    (out / "periodic-table.html").write_text(render_scored_html(cands, rows, title), "utf-8")
    render_scored_png(cands, rows, title, out / "periodic-table.png")


def _scales(c: Cell) -> tuple[float, ...]:
    """The scale grid, or just 1 where the spec has no scale hyperparameter to vary."""
    return SCALE_FACTORS if scaled_spec(c.spec, 2.0)[1] is not None else (1.0,)


def _round_robin(live: Sequence[Cell]) -> list[Cell]:
    """Known methods first, then one candidate per column in turn: a budget cut short still
    screens every column."""
    columns: dict[str, list[Cell]] = {}
    for c in sorted(live, key=lambda c: c.status != "known"):
        columns.setdefault(c.column, []).append(c)
    out: list[Cell] = []
    while any(columns.values()):
        for queue in columns.values():
            if queue:
                out.append(queue.pop(0))
    return out


def _dim(spec: str) -> int:
    import re

    m = re.search(r"dim=(\d+)", spec.splitlines()[1] if len(spec.splitlines()) > 1 else spec)
    return int(m.group(1)) if m else 2


def _epochs(c: Cell, table: dict[str, int], override: int | None) -> int:
    if override is not None:
        return override
    if c.table:
        return table["table"]
    if c.kind == "clustering":
        return table["cluster"]
    if "augmentation(" in c.spec or "cross_modal(" in c.spec:
        return table["views"]
    return table["labels"] if c.supervised else table["network"]


class _Runner:
    def __init__(self, pool: ProcessPoolExecutor, workers: int, state: _State, cells: dict[str, Cell],
                 dims: dict[str, int], device: str, deadline: float,
                 say: Callable[[str], None]) -> None:  # fmt: skip
        self.pool, self.state, self.cells, self.dims = pool, state, cells, dims
        self.workers = workers
        self.device, self.deadline, self.say = device, deadline, say

    def run(self, jobs: Sequence[Job]) -> None:
        todo = [j for j in jobs if j.key not in self.state.results]
        done = len(jobs) - len(todo)
        if jobs:
            self.say(f"{jobs[0].stage}: {len(jobs)} runs, {done} already done")
        pending: dict[Future[dict[str, Any]], Job] = {}
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < self.workers and not self._late():
                job = queue.pop(0)
                cell = self.cells.get(job.name)
                dim = self.dims.get(job.name.split("|")[-1], 2)
                pending[self.pool.submit(_work, job, cell, dim, self.device)] = job
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                result = fut.result()
                self.state.add(job, result)
                self.say(f"  {job.stage} {job.name} seed {job.seed} x{job.scale:g} lr x{job.lr:g}: "
                         + _brief(result))  # fmt: skip
        if queue:
            self.say(f"{jobs[0].stage}: budget spent, {len(queue)} runs not started")

    def _late(self) -> bool:
        return time.monotonic() > self.deadline


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    if "rows" in result:
        return ", ".join(result["rows"])
    m = result["metrics"]
    return (
        ", ".join(f"{k}={v:.3f}" for k, v in m.items() if k != "seconds") + f" ({m['seconds']} s)"
    )


def _value(entry: dict[str, Any] | None, metric: str) -> float | None:
    if entry is None or "metrics" not in entry:
        return None
    v = entry["metrics"].get(metric)
    return None if v is None or not math.isfinite(v) else float(v)


def _finalists(live: Sequence[Cell], state: _State, screen: Sequence[Job]) -> list[Cell]:
    """Per column: the best screened known method and the best `TUNE_TOP_NEW` new ones."""
    scores = {j.name: _value(state.results.get(j.key), by.metric)
              for j, by in ((j, next(c for c in live if c.name == j.name)) for j in screen)}  # fmt: skip
    out: list[Cell] = []
    for column in sorted({c.column for c in live}):
        members = [c for c in live if c.column == column and scores.get(c.name) is not None]
        members.sort(key=lambda c: -(scores[c.name] or 0.0))
        known = [c for c in members if c.status == "known"][:1]
        new = [c for c in members if c.status == "new"][:TUNE_TOP_NEW]
        out += known + new
    return out


def _best_config(c: Cell, state: _State) -> tuple[float, float]:
    best, config = -math.inf, (1.0, 1.0)
    for scale in SCALE_FACTORS:
        for lr in LR_FACTORS:
            entry = next((e for k, e in state.results.items()
                          if k.startswith("tune|") and e["job"]["name"] == c.name
                          and e["job"]["scale"] == scale and e["job"]["lr"] == lr), None)  # fmt: skip
            v = _value(entry, c.metric)
            if v is not None and v > best:
                best, config = v, (scale, lr)
    return config


# -- the leaderboard -----------------------------------------------------------------------------


def interval(values: Sequence[float]) -> tuple[float, float, float, float]:
    """mean, std (ddof 1), and the 95 % Student-t interval of the mean."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.975, arr.size - 1)) * std / math.sqrt(arr.size)
    return mean, std, mean - half, mean + half


def leaderboard(all_cells: Sequence[Cell], state: _State, kinds: Sequence[str],
                seeds: Sequence[int]) -> list[dict[str, Any]]:  # fmt: skip
    """Confirmed candidates and baselines, by column, best first, with intervals."""
    rows: list[dict[str, Any]] = []
    columns = sorted({c.column for c in all_cells if c.skip is None})
    baseline: dict[str, dict[str, list[float]]] = {}
    for e in state.results.values():
        if e["job"]["stage"] == "baseline" and "rows" in e:
            kind = e["job"]["name"].split("|", 1)[1]
            for label, metrics in e["rows"].items():
                baseline.setdefault(f"{label}|{kind}", {}).setdefault(
                    KIND_METRIC[kind], []).append(metrics.get(KIND_METRIC[kind], float("nan")))  # fmt: skip
    for column in columns:
        kind = column.rsplit(", ", 1)[1]
        metric = KIND_METRIC[kind]
        for c in [c for c in all_cells if c.column == column and c.skip is None]:
            values = [
                v for e in state.results.values()
                if e["job"]["stage"] == "confirm" and e["job"]["name"] == c.name
                and (v := _value(e, metric)) is not None
            ]  # fmt: skip
            if not values:
                continue
            rows.append(_row(c.name, c.status, c.known_as, column, metric, values))
        for key, metrics in baseline.items():
            label, bkind = key.split("|")
            if bkind == kind:
                rows.append(_row(label, "baseline", None, column, metric, metrics[metric]))
    _mark_beats(rows)
    rows.sort(key=lambda r: (r["column"], -(r["mean"] if math.isfinite(r["mean"]) else -9)))
    return rows


def _row(name: str, status: str, known_as: str | None, column: str, metric: str,
         values: Sequence[float]) -> dict[str, Any]:  # fmt: skip
    mean, std, lo, hi = interval(values)
    return {"name": name, "status": status, "known_as": known_as, "column": column,
            "metric": metric, "mean": mean, "std": std, "ci_low": lo, "ci_high": hi,
            "n_seeds": len(values), "beats_best_known": None}  # fmt: skip


def _mark_beats(rows: list[dict[str, Any]]) -> None:
    for column in {r["column"] for r in rows}:
        group = [r for r in rows if r["column"] == column]
        known = [r for r in group if r["status"] == "known"]
        if not known:
            continue
        best = max(known, key=lambda r: r["mean"])
        for r in group:
            if r["status"] == "new":
                r["beats_best_known"] = bool(
                    math.isfinite(r["ci_low"]) and math.isfinite(best["ci_high"])
                    and r["ci_low"] > best["ci_high"]
                )  # fmt: skip


def write_leaderboard(out: Path, rows: Sequence[dict[str, Any]], all_cells: Sequence[Cell],
                      bench: Benchmark, protocol: Protocol, state: _State) -> None:  # fmt: skip
    skipped = [{"name": c.name, "column": c.column, "why": c.skip} for c in all_cells if c.skip]
    (out / "leaderboard.json").write_text(json.dumps(list(rows), indent=2) + "\n", encoding="utf-8")
    (out / "not_evaluated.json").write_text(json.dumps(skipped, indent=2) + "\n", encoding="utf-8")
    (out / "leaderboard.md").write_text(
        render_leaderboard(rows, skipped, bench, protocol), encoding="utf-8"
    )


def _fmt(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.3f}"


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per column: its best known method, best new candidate, best baseline, verdict."""
    out = [
        "| column | metric | best known | best new | best baseline | a new cell beats the best known |",
        "|---|---|---|---|---|---|",
    ]

    def cell(r: dict[str, Any] | None) -> str:
        if r is None:
            return "-"
        name = r["known_as"] or r["name"]
        return f"{name}: {_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] ({r['n_seeds']})"

    for column in sorted({r["column"] for r in rows}):
        group = [r for r in rows if r["column"] == column]

        def best(status: str, group: list[dict[str, Any]] = group) -> dict[str, Any] | None:
            members = [r for r in group if r["status"] == status and math.isfinite(r["mean"])]
            return max(members, key=lambda r: r["mean"]) if members else None

        known, new = best("known"), best("new")
        if known is None or new is None:
            verdict = "not decided (no confirmed known or new row)"
        elif any(r["beats_best_known"] for r in group):
            verdict = "**yes**: " + ", ".join(
                f"`{r['name']}`" for r in group if r["beats_best_known"]
            )
        else:
            verdict = "no"
        out.append(
            f"| {column} | {group[0]['metric']} | {cell(known)} | {cell(new)} | "
            f"{cell(best('baseline'))} | {verdict} |"
        )
    return "\n".join(out) + "\n"


def render_leaderboard(rows: Sequence[dict[str, Any]], skipped: Sequence[dict[str, Any]],
                       bench: Benchmark, protocol: Protocol) -> str:  # fmt: skip
    out = [
        f"# Leaderboard: {bench.name}",
        "",
        f"Train {bench.train.n_samples} rows, test {bench.test.n_samples} rows; {protocol.seeds} "
        f"seeds; budget {protocol.budget_minutes:g} min over {protocol.jobs} jobs. Mean, std and "
        "95 % t-interval over seeds, on the test part. A new row beats its column only when its "
        "interval lies above the best known method's.",
        "",
        *[f"- {n}" for n in bench.notes],
        "",
        "## Summary",
        "",
        summary_markdown(rows).rstrip(),
    ]
    for column in sorted({r["column"] for r in rows}):
        group = [r for r in rows if r["column"] == column]
        out += ["", f"## {column} ({group[0]['metric']})", "",
                "| method | status | mean | std | 95 % interval | seeds | beats best known |",
                "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in group:
            status = f"known: {r['known_as']}" if r["status"] == "known" else r["status"]
            beats = {True: "**yes**", False: "no", None: ""}[r["beats_best_known"]]
            out.append(
                f"| `{r['name']}` | {status} | {_fmt(r['mean'])} | {_fmt(r['std'])} | "
                f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {r['n_seeds']} | {beats} |"
            )
    if skipped:
        out += ["", "## Not evaluated", ""]
        out += [f"- `{s['name']}` ({s['column']}): {s['why']}" for s in skipped]
    return "\n".join(out) + "\n"
