"""Embedding and cluster metrics (icon_dsl.train.metrics): hand-computed values and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import trustworthiness as sklearn_trustworthiness
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from icon_dsl.train.errors import DataError
from icon_dsl.train.metrics import (
    ari,
    cluster_accuracy,
    cluster_metrics,
    embedding_metrics,
    knn_accuracy,
    linear_probe_accuracy,
    nmi,
    trustworthiness,
)


def _blobs(n_per_class: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping gaussian blobs in 5-D: metrics strictly between 0 and 1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 5)) * 1.5
    y = np.repeat(np.arange(3), n_per_class)
    return centres[y] + rng.normal(size=(len(y), 5)), y


# --- cluster_accuracy -------------------------------------------------------------------------


def test_cluster_accuracy_of_a_permuted_labelling_is_one() -> None:
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    assert cluster_accuracy(y, np.array([5, 5, 9, 9, 1, 1, 1])) == 1.0


def test_cluster_accuracy_known_2x2_confusion() -> None:
    # clusters x classes = [[1, 0], [1, 2]]: best matching 0->0, 1->1 gets 1 + 2 of 4
    assert cluster_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == 0.75
    # the matching is by agreement, not by label value: [[0, 3], [2, 1]] -> 3 + 2 of 6
    y_true = np.array([1, 1, 1, 0, 0, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 6)


def test_cluster_accuracy_more_clusters_than_classes() -> None:
    # cluster 1 cannot be matched: it costs its one sample
    y_true = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_accuracy(y_true, np.array([0, 0, 1, 2, 2, 2])) == pytest.approx(5 / 6)


def test_cluster_accuracy_fewer_clusters_than_classes() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(y_true, np.zeros(6, dtype=int)) == pytest.approx(2 / 6)


def test_cluster_accuracy_checks_lengths() -> None:
    with pytest.raises(ValueError, match=r"same number of samples, got 3 .* and 2"):
        cluster_accuracy(np.zeros(3), np.zeros(2))


# --- nmi / ari ----------------------------------------------------------------------------------


def test_nmi_and_ari_hand_computed() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 0, 1, 2])
    # pred determines true: MI = H(true) = ln 2, H(pred) = 1.5 ln 2 -> NMI = 1 / 1.25
    assert nmi(y_true, y_pred) == pytest.approx(0.8)
    # index 1, expected 2 * 1 / 6, max (2 + 1) / 2 -> (1 - 1/3) / (3/2 - 1/3) = 4/7
    assert ari(y_true, y_pred) == pytest.approx(4 / 7)
    assert nmi(y_true, 1 - y_true) == pytest.approx(1.0)
    assert ari(y_true, 1 - y_true) == pytest.approx(1.0)


def test_nmi_and_ari_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 4, 60), rng.integers(0, 5, 60)
    assert nmi(y_true, y_pred) == normalized_mutual_info_score(y_true, y_pred)
    assert ari(y_true, y_pred) == adjusted_rand_score(y_true, y_pred)
    assert isinstance(nmi(y_true, y_pred), float) and isinstance(ari(y_true, y_pred), float)


# --- knn / linear probe -------------------------------------------------------------------------


def test_knn_accuracy_hand_computed() -> None:
    separated = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    assert knn_accuracy(separated, np.array([0, 0, 0, 1, 1, 1]), k=1, folds=3) == 1.0
    # alternating labels on a line: the nearest neighbour always has the other label
    alternating = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert knn_accuracy(alternating, np.array([0, 1, 0, 1]), k=1, folds=4) == 0.0


def test_knn_accuracy_matches_sklearn() -> None:
    emb, y = _blobs()
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=3)
    expected = cross_val_score(KNeighborsClassifier(n_neighbors=7), emb, y, cv=cv).mean()
    assert knn_accuracy(emb, y, k=7, folds=5, seed=3) == pytest.approx(expected, abs=1e-12)
    assert 0.3 < expected < 1.0


def test_knn_accuracy_caps_k_and_folds_for_tiny_data() -> None:
    emb = np.array([[0.0], [0.1], [5.0], [5.1]])
    assert knn_accuracy(emb, np.array([0, 0, 1, 1]), k=10, folds=10) == 0.0  # k capped at 3
    with pytest.raises(ValueError, match="at least 2 samples"):
        knn_accuracy(np.zeros((1, 2)), np.zeros(1))


def test_linear_probe_matches_sklearn() -> None:
    emb, y = _blobs()
    train_x, test_x, train_y, test_y = train_test_split(
        emb, y, test_size=0.2, stratify=y, random_state=4
    )
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    expected = probe.fit(train_x, train_y).score(test_x, test_y)
    assert linear_probe_accuracy(emb, y, seed=4) == pytest.approx(expected, abs=1e-12)


def test_linear_probe_separable_is_perfect_and_one_class_is_an_error() -> None:
    emb = np.concatenate([np.zeros((10, 2)), np.ones((10, 2))]) + np.linspace(0, 0.1, 20)[:, None]
    y = np.repeat([0, 1], 10)
    assert linear_probe_accuracy(emb, y) == 1.0
    with pytest.raises(DataError, match="at least 2 classes in y, found 1"):
        linear_probe_accuracy(emb, np.zeros(20, dtype=int))


def test_non_finite_embedding_names_the_first_bad_row() -> None:
    emb, y = _blobs()
    emb[7, 2] = np.nan
    with pytest.raises(ValueError, match="emb has non-finite values in 1 row.*first at row 7"):
        knn_accuracy(emb, y)


def test_length_mismatch_gives_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"got 5 \(emb shape \(5, 2\)\) and 4 \(y shape \(4,\)\)"):
        knn_accuracy(np.zeros((5, 2)), np.zeros(4))


# --- trustworthiness ----------------------------------------------------------------------------


def test_trustworthiness_of_the_identity_and_against_sklearn() -> None:
    x, _ = _blobs()
    assert trustworthiness(x, x) == pytest.approx(1.0)
    emb = x[:, :2]
    assert trustworthiness(x, emb, k=5) == sklearn_trustworthiness(x, emb, n_neighbors=5)
    # k is capped below N / 2: 7 points allow at most 3 neighbours
    small = x[:7]
    assert trustworthiness(small, small[:, :2], k=10) == sklearn_trustworthiness(
        small, small[:, :2], n_neighbors=3
    )


# --- the dictionaries ---------------------------------------------------------------------------


def test_embedding_metrics_keys_depend_on_labels_and_dimension() -> None:
    x, y = _blobs()
    two_d = embedding_metrics(x, x[:, :2], y)
    assert sorted(two_d) == ["knn_accuracy", "linear_probe_accuracy", "trustworthiness"]
    assert all(type(value) is float for value in two_d.values())
    assert two_d["knn_accuracy"] == knn_accuracy(x[:, :2], y)
    assert two_d["trustworthiness"] == trustworthiness(x, x[:, :2])
    assert sorted(embedding_metrics(x, x, y)) == ["knn_accuracy", "linear_probe_accuracy"]
    assert sorted(embedding_metrics(x, x[:, :2], None)) == ["trustworthiness"]


def test_cluster_metrics_hard_and_soft_assignments() -> None:
    y = np.array([0, 0, 1, 1])
    hard = np.array([0, 0, 1, 2])
    expected = {"cluster_accuracy": 0.75, "nmi": 0.8, "ari": 4 / 7}
    assert cluster_metrics(hard, y) == pytest.approx(expected)
    soft = np.eye(3)[hard] * 0.7 + 0.1
    assert cluster_metrics(soft, y) == pytest.approx(expected)
    assert all(type(value) is float for value in cluster_metrics(hard, y).values())
