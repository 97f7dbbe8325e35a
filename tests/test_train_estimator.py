"""The scikit-learn estimators: scikit-learn's own conformance suite, clone, Pipeline and
GridSearchCV over a spec hyperparameter, pickling, and standardisation.

Torch runs on one thread here: the checks fit hundreds of tiny models, and on a busy machine a
second thread makes every small op wait for it (27 ms for exp of a 50 x 50 tensor, against 3 us
on one thread).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits, load_wine, make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from icon_dsl.train.errors import TrainError
from icon_dsl.train.estimator import Classifier, Clusterer, Embedding, Estimator
from icon_dsl.train.runtime import train

SPECS = Path(__file__).resolve().parent.parent / "specs"
KMEANS = str(SPECS / "kmeans.icon")
#: A parametric embedding with a hyperparameter: a linear map trained with SNE's p and t-SNE's q.
PARAMETRIC_SNE = (
    "mapper = linear(dim=2); param sigma = 1.0; "
    "p = gaussian(x, sigma=sigma); q = student_t(f(x), dof=1); loss = kl(p, q)"
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: Checks skipped, and why (docs/training.md lists the same). None: every check applies.
SKIPPED: dict[str, str] = {}


@parametrize_with_checks(
    [
        Embedding(PARAMETRIC_SNE, epochs=3, random_state=0),
        Embedding(str(SPECS / "pca.icon"), epochs=2, random_state=0),
        Clusterer(KMEANS, n_clusters=3, epochs=5, restarts=1, random_state=0),
    ],
    expected_failed_checks=lambda estimator: SKIPPED,
)
def test_scikit_learn_conformance(estimator: Estimator, check: object) -> None:
    check(estimator)  # type: ignore[operator]


def test_estimator_picks_the_class_of_the_spec_kind() -> None:
    assert type(Estimator(KMEANS)) is Clusterer
    assert type(Estimator(PARAMETRIC_SNE)) is Embedding
    assert type(Estimator(str(SPECS / "tsne.icon"))) is Embedding
    assert type(Estimator(str(SPECS / "cross_entropy.icon"))) is Classifier


def test_spec_hyperparameters_are_parameters_and_clone_keeps_them() -> None:
    estimator = Estimator(KMEANS, epochs=4, sigma=0.5)
    params = estimator.get_params()
    assert params["sigma"] == 0.5 and params["epochs"] == 4 and params["n_clusters"] is None
    assert Estimator(KMEANS).get_params()["sigma"] == 0.3  # the spec's default
    copy = clone(estimator)
    assert type(copy) is Clusterer and copy is not estimator
    assert copy.get_params() == params
    assert copy.set_params(sigma=2.0) is copy and copy.get_params()["sigma"] == 2.0
    assert estimator.get_params()["sigma"] == 0.5  # the original is untouched
    with pytest.raises(ValueError, match=r"bogus.*spec's hyperparameters are sigma"):
        estimator.set_params(bogus=1.0)


def test_hyperparameters_reach_the_generated_loss() -> None:
    x, _ = make_blobs(n_samples=60, centers=3, random_state=0)
    fitted = Clusterer(KMEANS, sigma=0.7, n_clusters=3, epochs=2, restarts=1, random_state=0)
    assert fitted.fit(x).model_.loss.sigma == 0.7
    assert fitted.predict_proba(x).shape == (60, 3)
    with pytest.raises(TrainError, match="unknown hyperparameter.*bogus"):
        Clusterer(KMEANS, bogus=1.0, epochs=1, restarts=1).fit(x)


def test_pipeline_with_standard_scaler_is_standardize() -> None:
    """StandardScaler in front, standardize=True, and train on scaled data agree."""
    wine = load_wine()
    x, y = wine.data, wine.target
    options: dict[str, Any] = {
        "n_clusters": 3,
        "epochs": 10,
        "restarts": 1,
        "random_state": 0,
        "sigma": 1.0,
    }
    pipeline = make_pipeline(StandardScaler(), Clusterer(KMEANS, **options)).fit(x)
    inside = Clusterer(KMEANS, standardize=True, **options).fit(x)
    labels = pipeline[-1].labels_
    assert adjusted_rand_score(labels, inside.labels_) > 0.95  # float32 scaling vs float64
    assert adjusted_rand_score(y, labels) > 0.7  # on raw wine, proline (std 314) dominates
    assert np.array_equal(pipeline.predict(x), labels)
    assert np.array_equal(inside.predict(x), inside.labels_)  # new rows are scaled the same


def test_grid_search_over_a_spec_hyperparameter() -> None:
    """GridSearchCV tunes supcon.icon's temperature inside a scaler + kNN pipeline."""
    digits = load_digits()
    x, y = digits.data[:240], digits.target[:240]
    pipeline = make_pipeline(
        StandardScaler(),
        Embedding(str(SPECS / "supcon.icon"), epochs=2, batch_size=60, random_state=0),
        KNeighborsClassifier(5),
    )
    search = GridSearchCV(pipeline, {"embedding__temperature": [0.1, 1.0]}, cv=2).fit(x, y)
    assert search.best_params_["embedding__temperature"] in (0.1, 1.0)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and scores[0] != scores[1]  # the value reached the loss
    best = search.best_estimator_[1]
    assert best.model_.loss.temperature == search.best_params_["embedding__temperature"]
    assert search.score(digits.data[240:400], digits.target[240:400]) > 0.5


def test_classifier_keeps_the_label_values_and_pickles() -> None:
    digits = load_digits()
    x, y = digits.data[:200] / 16, np.array([f"digit {d}" for d in digits.target[:200]])
    model = Classifier(str(SPECS / "cross_entropy.icon"), epochs=20, batch_size=50, random_state=0)
    model.fit(x, y)
    assert list(model.classes_) == sorted(set(y))
    proba = model.predict_proba(x)
    assert proba.shape == (200, 10) and np.allclose(proba.sum(axis=1), 1.0)
    assert model.score(x, y) > 0.8
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict(x), model.predict(x))


def test_fitting_matches_train_with_the_same_seed() -> None:
    x, _ = make_blobs(n_samples=80, centers=4, random_state=1)
    fitted = Embedding(PARAMETRIC_SNE, epochs=3, random_state=7).fit(x)
    direct = train(PARAMETRIC_SNE, data=x, epochs=3, seed=7, out=False, progress=False)
    assert np.array_equal(fitted.embedding_, direct.embedding)
    assert np.array_equal(fitted.transform(x), fitted.embedding_)


def test_an_own_mapper_is_copied_at_fit_and_kept_by_clone() -> None:
    digits = load_digits()
    x, y = digits.data[:120] / 16, digits.target[:120]
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)), torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 8),
    )  # fmt: skip
    initial = {k: v.clone() for k, v in cnn.state_dict().items()}
    model = Embedding(str(SPECS / "supcon.icon"), mapper=cnn, epochs=2, batch_size=40,
                      random_state=0).fit(x, y)  # fmt: skip
    assert model.transform(x).shape == (120, 8)
    assert all(torch.equal(v, initial[k]) for k, v in cnn.state_dict().items())  # untouched
    assert model.model_.mapper is not cnn
    assert isinstance(clone(model).mapper, torch.nn.Sequential)
    again = pickle.loads(pickle.dumps(model))
    assert np.allclose(again.transform(x), model.transform(x))
