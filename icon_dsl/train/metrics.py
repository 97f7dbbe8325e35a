"""Evaluation metrics for learned embeddings and cluster assignments (numpy / scikit-learn).

Every metric returns a python float. Inputs are array-likes; lengths are checked and a mismatch
or a non-finite embedding raises ValueError naming the shapes or the first bad row. Too few
labelled samples for a metric's defaults (k, folds) shrink those defaults rather than fail;
labels with a single class make ``linear_probe_accuracy`` raise DataError. ``unavailable_metrics``
says, before training, which metrics a data set is too small for; the runtime skips them with a
note.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import trustworthiness as sklearn_trustworthiness
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from icon_dsl.train.errors import DataError


def knn_accuracy(
    emb: np.ndarray, y: np.ndarray, k: int = 10, folds: int = 5, seed: int = 0
) -> float:
    """Mean test accuracy of a k-nearest-neighbour classifier over ``folds``-fold CV.

    Takes ``emb`` (N, D) and ``y`` (N,). Folds are shuffled with ``seed`` and stratified when
    every class has at least ``folds`` members (plain KFold otherwise). ``folds`` is capped at N
    and ``k`` at the smallest training-fold size. Needs N >= 2.
    """
    emb, y = _embedding_and_labels(emb, y)
    n_splits = min(folds, len(y))
    if n_splits < 2:
        raise ValueError(f"knn_accuracy needs at least 2 samples and folds >= 2, got N={len(y)}")
    cv = _folds(y, n_splits, seed)
    smallest_train = min(len(train) for train, _ in cv.split(emb, y))
    classifier = KNeighborsClassifier(n_neighbors=min(k, smallest_train))
    scores = cross_val_score(classifier, emb, y, cv=cv)
    return float(np.mean(scores))


def linear_probe_accuracy(emb: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Test accuracy of standardise + LogisticRegression(max_iter=1000) on an 80/20 split.

    The split is stratified by ``y`` (unless some class has a single member) and shuffled with
    ``seed``. Raises DataError when ``y`` has fewer than 2 classes or the training part does.
    """
    emb, y = _embedding_and_labels(emb, y)
    problem = _probe_problem(y, seed)
    if problem is not None:
        raise DataError(f"linear_probe_accuracy {problem}")
    emb_train, emb_test, y_train, y_test = train_test_split(
        emb, y, test_size=PROBE_TEST_SIZE, stratify=_probe_stratify(y), random_state=seed
    )
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(emb_train, y_train)
    return float(probe.score(emb_test, y_test))


PROBE_TEST_SIZE = 0.2


def _probe_stratify(y: np.ndarray) -> np.ndarray | None:
    """Stratify the probe's split when scikit-learn can: every class twice, and both parts at
    least as large as the number of classes."""
    _, counts = np.unique(y, return_counts=True)
    test = math.ceil(PROBE_TEST_SIZE * len(y))
    if counts.min() >= 2 and min(test, len(y) - test) >= counts.size:
        return y
    return None


def _probe_problem(y: np.ndarray, seed: int) -> str | None:
    """Why the linear probe cannot be computed on labels ``y`` (None when it can)."""
    classes = np.unique(y).size
    if classes < 2:
        return f"needs at least 2 classes in y, found {classes}"
    if len(y) < 2:
        return f"needs at least 2 labelled samples, got {len(y)}"
    y_train, _ = train_test_split(
        y, test_size=PROBE_TEST_SIZE, stratify=_probe_stratify(y), random_state=seed
    )
    if np.unique(y_train).size < 2:
        return "needs 2 classes in its training split (80% of the rows), found 1"
    return None


def unavailable_metrics(
    n_samples: int, y: np.ndarray | None, clusters: bool, dim: int
) -> dict[str, str]:
    """The metrics ``train`` would report that this data cannot support, each with the reason.

    ``clusters``: the run reports cluster metrics (a softmax head) rather than embedding ones;
    ``dim``: the embedding's width (trustworthiness is reported for 2-D embeddings).
    """
    skipped: dict[str, str] = {}
    if clusters or y is None:
        return skipped
    if n_samples < 2:
        skipped["knn_accuracy"] = f"needs at least 2 labelled rows, the data has {n_samples}"
    problem = _probe_problem(np.asarray(y), 0)
    if problem is not None:
        skipped["linear_probe_accuracy"] = problem
    if dim == 2 and n_samples < 3:
        skipped["trustworthiness"] = f"needs at least 3 rows, the data has {n_samples}"
    return skipped


def cluster_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy of ``y_pred`` under the best one-to-one matching of clusters to classes.

    The matching maximises agreement (Hungarian algorithm on the contingency table). With more
    clusters than classes the unmatched clusters count as errors; with fewer, the unmatched
    classes do. Label values are arbitrary integers (or any hashable, sortable values).
    """
    true = np.asarray(y_true).ravel()
    pred = np.asarray(y_pred).ravel()
    _check_same_length(true, pred, "y_true", "y_pred")
    if true.size == 0:
        raise ValueError("cluster_accuracy needs at least one sample")
    classes, true_ids = np.unique(true, return_inverse=True)
    clusters, pred_ids = np.unique(pred, return_inverse=True)
    table = np.zeros((clusters.size, classes.size), dtype=np.int64)
    np.add.at(table, (pred_ids, true_ids), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / true.size)


def nmi(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Normalised mutual information (scikit-learn, arithmetic normalisation), in [0, 1]."""
    true, pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    _check_same_length(true, pred, "y_true", "y_pred")
    return float(normalized_mutual_info_score(true, pred))


def ari(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Adjusted Rand index (scikit-learn): 1 for identical partitions, about 0 for random."""
    true, pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    _check_same_length(true, pred, "y_true", "y_pred")
    return float(adjusted_rand_score(true, pred))


def trustworthiness(x: np.ndarray, emb: np.ndarray, k: int = 10) -> float:
    """How well ``emb`` (N, d) keeps the ``k`` nearest neighbours of ``x`` (N, D), in [0, 1].

    scikit-learn's trustworthiness with Euclidean distances; ``k`` is capped below N / 2 as
    scikit-learn requires. Needs N >= 3.
    """
    x = _finite_2d(x, "x")
    emb = _finite_2d(emb, "emb")
    _check_same_length(x, emb, "x", "emb")
    n_neighbors = min(k, (len(x) - 1) // 2)
    if n_neighbors < 1:
        raise ValueError(f"trustworthiness needs at least 3 samples, got {len(x)}")
    return float(sklearn_trustworthiness(x, emb, n_neighbors=n_neighbors))


TRUSTWORTHINESS_MAX_SAMPLES = 5000


def embedding_metrics(
    x: np.ndarray,
    emb: np.ndarray,
    y: np.ndarray | None,
    skip: Collection[str] = (),
) -> dict[str, float]:
    """The metrics ``icon-dsl train`` reports for an embedding ``emb`` (N, d) of ``x`` (N, D).

    Keys: ``knn_accuracy`` and ``linear_probe_accuracy`` when ``y`` is given, and
    ``trustworthiness`` (against the inputs ``x``) when ``emb`` has exactly 2 columns, less the
    names in ``skip``. Above 5000 samples trustworthiness (quadratic memory) is computed on a
    fixed random subset of 5000.
    """
    metrics: dict[str, float] = {}
    if y is not None:
        if "knn_accuracy" not in skip:
            metrics["knn_accuracy"] = knn_accuracy(emb, y)
        if "linear_probe_accuracy" not in skip:
            metrics["linear_probe_accuracy"] = linear_probe_accuracy(emb, y)
    emb_array = np.asarray(emb)
    if emb_array.ndim == 2 and emb_array.shape[1] == 2 and "trustworthiness" not in skip:
        x_array = np.asarray(x)
        _check_same_length(x_array, emb_array, "x", "emb")
        if len(x_array) > TRUSTWORTHINESS_MAX_SAMPLES:
            rng = np.random.default_rng(0)
            subset = rng.choice(len(x_array), TRUSTWORTHINESS_MAX_SAMPLES, replace=False)
            x_array, emb_array = x_array[subset], emb_array[subset]
        metrics["trustworthiness"] = trustworthiness(x_array, emb_array)
    return metrics


def cluster_metrics(assignments: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """``cluster_accuracy``, ``nmi`` and ``ari`` of cluster ``assignments`` against labels ``y``.

    ``assignments`` is either hard cluster ids (N,) or soft assignments (N, C), which are reduced
    to their argmax over the C clusters.
    """
    hard = np.asarray(assignments)
    if hard.ndim == 2:
        hard = hard.argmax(axis=1)
    return {
        "cluster_accuracy": cluster_accuracy(y, hard),
        "nmi": nmi(y, hard),
        "ari": ari(y, hard),
    }


def _embedding_and_labels(emb: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    emb = _finite_2d(emb, "emb")
    labels = np.asarray(y).ravel()
    _check_same_length(emb, labels, "emb", "y")
    return emb, labels


def _finite_2d(array: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {values.shape}")
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad_rows.size:
        raise ValueError(
            f"{name} has non-finite values in {bad_rows.size} row(s), first at row {bad_rows[0]}"
        )
    return values


def _check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of samples, "
            f"got {len(a)} ({name_a} shape {a.shape}) and {len(b)} ({name_b} shape {b.shape})"
        )


def _folds(y: np.ndarray, n_splits: int, seed: int) -> KFold | StratifiedKFold:
    _, counts = np.unique(y, return_counts=True)
    if counts.min() >= n_splits:
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)
