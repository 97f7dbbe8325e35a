"""One evaluation run: the cells, their jobs, training one configuration and scoring it.

Takes: candidates (known and new) and a `Benchmark`. Guarantees: `cells` gives each candidate
its column (p, input, kind), metric and training category, or why it is not evaluated; `run_job`
trains one configuration (scale and learning-rate factors, seed, epochs) on the part its stage
uses and scores it on held-out rows (`score`); `baseline_rows` gives the reference rows on the
test part. Runs in screening and tuning use `SCREEN_ROWS` of the train part (minus validation)
and one start; confirmation runs use the whole train part and `CONFIRM_RESTARTS` starts for a
clustering head, the same for known and new cells.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icon_dsl.api import check
from icon_dsl.scaling import is_scale_free
from icon_dsl.train.data import Dataset
from icon_dsl.train.eval_data import N_NEIGHBOURS, Benchmark, concat, subset
from icon_dsl.train.runtime import train

KIND_METRIC = {"2-d map": "trustworthiness", "clustering": "nmi", "embedding": "linear_probe"}
REPORTED = {
    "2-d map": ("trustworthiness", "knn", "linear_probe"),
    "clustering": ("nmi", "cluster_accuracy", "ari"),
    "embedding": ("linear_probe", "knn"),
}
#: Epochs per stage, by training category (`Cell.category`): short screening runs, and
#: confirmation runs long enough to rank (documented in docs/discovery.md with timings).
SCREEN_EPOCHS = {"views": 10, "labels": 10, "table": 30, "cluster": 10, "network": 20}
CONFIRM_EPOCHS = {"views": 40, "labels": 30, "table": 60, "cluster": 30, "network": 60}
#: Starts of a clustering head in a confirmation run (the lowest final loss is kept); screening
#: and tuning runs use one. The runtime's default (10) made one digits run 36-41 s on an idle
#: core; 3 starts keep most of its protection against a poor partition at a third of the cost.
CONFIRM_RESTARTS = 3
#: Rows (fit, validation) of the screening and tuning runs: quadratic costs (full-batch tables,
#: N x N kernels) stay small; confirmation uses the whole train and test parts.
SCREEN_ROWS = (600, 300)
VALIDATION = 0.2


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

    @property
    def category(self) -> str:
        """How it trains, for epochs and costs: table, cluster, views, labels or network."""
        if self.table:
            return "table"
        if self.kind == "clustering":
            return "cluster"
        if "augmentation(" in self.spec or "cross_modal(" in self.spec:
            return "views"
        return "labels" if self.supervised else "network"


def cells(cands: Sequence[Any]) -> list[Cell]:
    """The known and new candidates, with their column; others are not evaluated."""
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


# -- scoring -----------------------------------------------------------------------------------


def score(kind: str, train_emb: np.ndarray, y_train: np.ndarray, test_x: np.ndarray,
          test_emb: np.ndarray, y_test: np.ndarray) -> dict[str, float]:  # fmt: skip
    """Held-out metrics: classifiers fit on the train embedding, scored on the test one."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # scikit-learn (the train extra) loads only when scores are computed
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


# -- jobs --------------------------------------------------------------------------------------


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

    torch.set_num_threads(1)
    start = time.perf_counter()
    spec, scale_name = scaled_spec(cell.spec, job.scale)
    fit, held = _parts(bench, job.held_out)
    data = concat(fit, held) if cell.table else fit
    if not cell.supervised:  # labels are for scoring only: the run never sees them
        data = dataclasses.replace(data, y=None)
    result = train(
        spec, data=data, epochs=job.epochs, seed=job.seed, device=device, out=False,
        progress=False, lr_factor=job.lr,
        restarts=CONFIRM_RESTARTS if job.stage == "confirm" and cell.category == "cluster" else 1,
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
    dim = min(dim, tr.x.shape[1], tr.n_samples)  # MNIST-1D has 40 features
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


def spec_dim(spec: str) -> int:
    """The mapper's output dimension (2 when the spec does not say)."""
    import re

    m = re.search(r"dim=(\d+)", spec.splitlines()[1] if len(spec.splitlines()) > 1 else spec)
    return int(m.group(1)) if m else 2


def epochs_for(c: Cell, table: dict[str, int], override: int | None) -> int:
    """The epochs of a run of `c` (`override` when given, else the table's by category)."""
    return override if override is not None else table[c.category]


def result_value(entry: dict[str, Any] | None, metric: str) -> float | None:
    """A result's metric, or None when the run failed, is missing or scored NaN."""
    if entry is None or "metrics" not in entry:
        return None
    v = entry["metrics"].get(metric)
    return None if v is None or not math.isfinite(v) else float(v)
