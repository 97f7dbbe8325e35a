"""scikit-learn estimators over an icon-dsl spec, one class per kind of spec.

    Estimator("specs/kmeans.icon").fit_predict(X)                 # a Clusterer: cluster ids
    Estimator("specs/pca.icon").fit_transform(X)                  # an Embedding: (N, dim)
    Estimator("specs/cross_entropy.icon").fit(X, y).predict(X2)   # a Classifier: labels
    make_pipeline(StandardScaler(), Estimator("specs/supcon.icon", temperature=0.2))

``Estimator(spec, ...)`` returns the class that fits the spec's kind: a ``Clusterer`` for a
softmax (cluster) mapper, a ``Classifier`` for a spec whose q is over class prototypes and which
reads labels, an ``Embedding`` otherwise. Each follows scikit-learn's estimator contract:
``get_params`` / ``set_params`` cover the constructor's arguments *and the spec's
hyperparameters* (``temperature``, ``sigma``, ...; a GridSearchCV can search them), ``fit``
returns self, fitted attributes end in an underscore (``n_features_in_``, ``embedding_``,
``metrics_``, ``losses_``, ``model_``; ``labels_`` for clusterers, ``classes_`` for classifiers),
input is checked by scikit-learn's own ``validate_data`` (its messages), and methods called
before ``fit`` raise ``NotFittedError``. Training is ``train(spec, ...)`` with no output folder
and no progress bar (``verbose=True`` shows it). ``random_state`` is the training seed (an int
gives the same result as ``train(seed=...)``; None draws one).

An ``Embedding`` of a table mapper (t-SNE) has ``fit_transform`` only: its mapper is one free row
per training sample, so ``transform`` of new points raises TrainError. ``Clusterer`` takes
``n_clusters`` (None: the spec's ``dim``), which recompiles the spec with that many clusters.
Fitted estimators pickle: the generated module is rebuilt from the spec when loaded.
``mapper=`` (an ``nn.Module`` of your own, copied at each fit: it reads the rows of X, so a CNN
starts with ``nn.Unflatten``) and ``views=`` pass through to ``train``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from icon_dsl.api import CompiledModule
from icon_dsl.api import compile as compile_spec
from icon_dsl.codegen import generate
from icon_dsl.diagnostics import SpecError
from icon_dsl.train.errors import TrainError
from icon_dsl.train.plan import Plan
from icon_dsl.train.runtime import TrainedModel, dataset_from_arrays, set_validate, train
from icon_dsl.train.scaling import Scaling

SpecLike = str | Path | CompiledModule
FLOATS = (np.float32, np.float64)


class Estimator(BaseEstimator):  # type: ignore[misc]
    """A spec trained by ``fit``; ``Estimator(spec)`` gives the subclass for the spec's kind."""

    def __new__(cls, spec: SpecLike | None = None, **params: Any) -> Estimator:
        if cls is Estimator and spec is not None:
            cls = _class_for(spec)
        return super().__new__(cls)  # type: ignore[no-any-return]

    def __init__(
        self,
        spec: SpecLike,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        restarts: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
        standardize: bool = False,
        verbose: bool = False,
        mapper: nn.Module | None = None,
        views: Callable[..., torch.Tensor] | None = None,
        **hyperparameters: float,
    ) -> None:
        self.spec = spec
        self.epochs = epochs
        self.batch_size = batch_size
        self.restarts = restarts
        self.random_state = random_state
        self.device = device
        self.standardize = standardize
        self.verbose = verbose
        self.mapper = mapper
        self.views = views
        self._hyperparameters = dict(hyperparameters)

    # -- parameters: the constructor's and the spec's hyperparameters -------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params: dict[str, Any] = super().get_params(deep)
        for name, default in self._spec_defaults().items():
            params[name] = self._hyperparameters.get(name, default)
        params.update(self._hyperparameters)  # unknown names too: fit reports them
        return params

    def set_params(self, **params: Any) -> Estimator:
        own = set(super().get_params(deep=False))
        rest = {name: value for name, value in params.items() if name in own or "__" in name}
        super().set_params(**rest)  # first: a new spec brings its own hyperparameters
        hypers = {name: value for name, value in params.items() if name not in rest}
        known = set(self._spec_defaults()) | set(self._hyperparameters)
        unknown = sorted(set(hypers) - known)
        if unknown:
            raise ValueError(
                f"Invalid parameter(s) {', '.join(unknown)} for {type(self).__name__}: the "
                f"spec's hyperparameters are {', '.join(sorted(known)) or 'none'}"
            )
        self._hyperparameters.update(hypers)
        return self

    def _spec_defaults(self) -> dict[str, float | None]:
        """The spec's hyperparameters and their defaults; none for a spec that does not compile
        (parameters are only checked by fit, as scikit-learn asks: it reports the spec's
        errors)."""
        compiled = _compiled_or_none(self.spec)
        if compiled is None:
            return {}
        return {name: hyper.default for name, hyper in sorted(compiled.ir.hypers.items())}

    def _compiled(self) -> CompiledModule:
        return _compiled(self.spec)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> Estimator:
        """Train the spec on X (N, D) and, for specs that read labels, y (N,); returns self."""
        compiled = self._compiled()
        labels: np.ndarray | None
        if _reads_labels(compiled):
            X, y = validate_data(self, X, y, dtype=FLOATS, ensure_min_samples=2)
            labels = self._fit_labels(y)
        else:
            X = validate_data(self, X, dtype=FLOATS, ensure_min_samples=2)
            labels = None  # y is only for metrics here, which scikit-learn computes itself
        result = train(
            compiled,
            data=dataset_from_arrays(X, labels, name="X"),
            mapper=None if self.mapper is None else copy.deepcopy(self.mapper),  # params stay
            views=self.views,
            epochs=self.epochs,
            batch_size=self.batch_size,
            restarts=self.restarts,
            seed=_seed(self.random_state),
            device=self.device,
            standardize=self.standardize,
            hyperparameters={k: v for k, v in self._hyperparameters.items() if v is not None},
            out=False,
            progress=self.verbose,
            evaluate=False,
        )
        assert result.model is not None
        self.model_ = result.model
        self.embedding_ = result.embedding
        self.metrics_ = result.metrics
        self.losses_ = result.losses
        self._after_fit()
        return self

    def _fit_labels(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y)

    def _after_fit(self) -> None:
        """Set the kind's own fitted attributes."""

    def _mapped(self, X: Any) -> np.ndarray:
        """The trained mapper's output for new rows X, after scikit-learn's input checks."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=FLOATS, reset=False)
        return self.model_.embed(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        compiled = _compiled_or_none(self.spec)
        tags.target_tags.required = compiled is not None and _reads_labels(compiled)
        return tags

    # -- pickling: the generated classes live in no importable module -------------------------
    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        model = state.get("model_")
        if isinstance(model, TrainedModel):
            shape = (len(self.embedding_), self.n_features_in_)
            state = {**state, "model_": _PortableModel.of(model, *shape)}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        model = state.get("model_")
        if isinstance(model, _PortableModel):
            self.model_ = model.rebuild(self._compiled())


class Embedding(TransformerMixin, Estimator):  # type: ignore[misc]
    """An embedding: ``fit_transform(X)``, and ``transform(X_new)`` for parametric mappers."""

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Train on X (and y) and return the embedding of X, (N, dim)."""
        return self.fit(X, y, **fit_params).embedding_  # type: ignore[no-any-return]

    def transform(self, X: Any) -> np.ndarray:
        """Embed new rows with the trained mapper (TrainError for a table mapper)."""
        return self._mapped(X)


class Clusterer(ClusterMixin, Estimator):  # type: ignore[misc]
    """A clustering: ``labels_`` after ``fit``, ``predict`` / ``predict_proba`` for new rows."""

    def __init__(
        self,
        spec: SpecLike,
        *,
        n_clusters: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        restarts: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
        standardize: bool = False,
        verbose: bool = False,
        mapper: nn.Module | None = None,
        views: Callable[..., torch.Tensor] | None = None,
        **hyperparameters: float,
    ) -> None:
        super().__init__(
            spec,
            epochs=epochs,
            batch_size=batch_size,
            restarts=restarts,
            random_state=random_state,
            device=device,
            standardize=standardize,
            verbose=verbose,
            mapper=mapper,
            views=views,
            **hyperparameters,
        )
        self.n_clusters = n_clusters

    def _compiled(self) -> CompiledModule:
        return _compiled(self.spec, self.n_clusters)

    def _after_fit(self) -> None:
        self.labels_ = self.embedding_.argmax(axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """The most likely cluster of each row of X."""
        return self._mapped(X).argmax(axis=1)  # type: ignore[no-any-return]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Soft cluster assignments of the rows of X, (N, n_clusters), rows summing to 1."""
        return self._mapped(X)


class Classifier(ClassifierMixin, Estimator):  # type: ignore[misc]
    """A classifier for specs whose q is over class prototypes (cross-entropy-like): ``predict``
    gives the class of the most likely prototype, ``predict_proba`` q over the classes seen in
    ``fit`` (renormalised when the spec has more prototypes than classes)."""

    def _fit_labels(self, y: np.ndarray) -> np.ndarray:
        self.classes_, encoded = np.unique(y, return_inverse=True)
        return encoded.astype(np.int64)

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=FLOATS, reset=False)
        q = _column_probabilities(self.model_, X)[:, : len(self.classes_)]
        return q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]  # type: ignore[no-any-return]

    def transform(self, X: Any) -> np.ndarray:
        """The trained mapper's embedding of the rows of X (what q compares to prototypes)."""
        return self._mapped(X)


# -- helpers ----------------------------------------------------------------------------------
def _compiled(spec: SpecLike, n_clusters: int | None = None) -> CompiledModule:
    """The compiled spec (cached per file contents or text), with ``n_clusters`` clusters."""
    if not isinstance(spec, str | Path | CompiledModule):
        raise TrainError(
            "spec must be a path to a .icon file, spec text or an icon_dsl.compile result, "
            f"got {type(spec).__name__} {spec!r}"
        )
    if isinstance(spec, CompiledModule):
        base = spec
    elif isinstance(spec, Path) or (isinstance(spec, str) and spec.endswith(".icon")):
        path = Path(spec)
        stamp = path.stat().st_mtime_ns if path.is_file() else None
        base = _compile_cached(str(path), stamp)
    else:
        base = _compile_cached(str(spec), None)
    return base if n_clusters is None else _with_clusters(base, n_clusters)


def _compiled_or_none(spec: SpecLike) -> CompiledModule | None:
    try:
        return _compiled(spec)
    except (SpecError, OSError, TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=64)
def _compile_cached(spec: str, stamp: int | None) -> CompiledModule:
    return compile_spec(Path(spec) if spec.endswith(".icon") else spec)


def _with_clusters(compiled: CompiledModule, n_clusters: int) -> CompiledModule:
    """The spec with its softmax mapper's ``dim`` (its number of clusters) set to n_clusters."""
    ir = compiled.ir
    mapper = ir.roots["mapper"]
    if not ir.args(mapper).get("softmax", False):
        raise TrainError(f"{compiled.stem}: n_clusters needs a softmax (cluster) mapper")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
        raise TrainError(f"n_clusters must be an integer, got {n_clusters!r}")
    if n_clusters < 1:
        raise TrainError(f"n_clusters must be at least 1, got {n_clusters}")
    if int(ir.args(mapper)["dim"]) == n_clusters:
        return compiled
    return _recompiled(compiled, int(n_clusters))


_RECOMPILED: dict[tuple[int, int], CompiledModule] = {}


def _recompiled(compiled: CompiledModule, n_clusters: int) -> CompiledModule:
    key = (id(compiled), n_clusters)
    if key not in _RECOMPILED:
        ir = copy.deepcopy(compiled.ir)
        ir.args(ir.roots["mapper"])["dim"] = n_clusters
        source = generate(ir, compiled.known_as, compiled.class_name)
        _RECOMPILED[key] = CompiledModule(
            source, compiled.class_name, compiled.stem, ir, compiled.known_as, compiled.notes
        )
    return _RECOMPILED[key]


_LOADED: dict[int, tuple[CompiledModule, type]] = {}


def _loss_class(compiled: CompiledModule) -> type:
    """The generated loss class, loaded once per compiled module (kept alive with it)."""
    if id(compiled) not in _LOADED:
        _LOADED[id(compiled)] = (compiled, compiled.load())
    return _LOADED[id(compiled)][1]


def _kind(compiled: CompiledModule) -> str:
    ir = compiled.ir
    if ir.args(ir.roots["mapper"]).get("softmax", False):
        return "cluster"
    columns = getattr(ir.type(ir.roots["q"]), "support", "pairs") == "columns"
    return "classifier" if columns and _reads_labels(compiled) else "embedding"


def _reads_labels(compiled: CompiledModule) -> bool:
    return "y" in getattr(_loss_class(compiled), "INPUTS", ())


def _class_for(spec: SpecLike) -> type[Estimator]:
    kinds: dict[str, type[Estimator]] = {
        "cluster": Clusterer,
        "classifier": Classifier,
        "embedding": Embedding,
    }
    return kinds[_kind(_compiled(spec))]


def _seed(random_state: int | np.random.RandomState | None) -> int:
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _column_probabilities(model: TrainedModel, X: np.ndarray) -> np.ndarray:
    """q over the spec's prototype columns for the rows X (q does not depend on y)."""
    features = model.features(X)
    with torch.no_grad():
        model.mapper.eval()
        z = model.mapper(features)
        placeholder = torch.zeros(len(z), dtype=torch.long, device=z.device)
        available = {"x": features, "y": placeholder, "index": torch.arange(len(z))}
        inputs = {name: available[name] for name in model.plan.inputs}
        set_validate(model.loss, False)
        _, q = model.loss.distributions(z, **inputs)  # type: ignore[operator]
    return q.double().cpu().numpy()  # type: ignore[no-any-return]


@dataclass
class _PortableModel:
    """A TrainedModel without the generated classes: state dicts, rebuilt from the spec."""

    plan: Plan
    mapper: nn.Module | dict[str, torch.Tensor]  # a module of the user's, else a state dict
    loss: dict[str, torch.Tensor]
    device: str
    scaling: Scaling | None
    n_features: int
    n_samples: int

    @classmethod
    def of(cls, model: TrainedModel, n_samples: int, n_features: int) -> _PortableModel:
        generated = type(model.mapper).__module__.startswith("icon_dsl_generated")
        mapper = _cpu_state(model.mapper) if generated else model.mapper
        state = _cpu_state(model.loss)
        return cls(
            model.plan, mapper, state, str(model.device), model.scaling, n_features, n_samples
        )

    def rebuild(self, compiled: CompiledModule) -> TrainedModel:
        loss_class = _loss_class(compiled)
        device = torch.device(self.device)
        if isinstance(self.mapper, nn.Module):
            mapper = self.mapper
        else:
            samples = self.n_samples if self.plan.table else None
            mapper = loss_class.build_mapper(self.n_features, samples)  # type: ignore[attr-defined]
            mapper.load_state_dict(self.mapper)
        loss: nn.Module = loss_class(**self.plan.loss_kwargs)
        loss.load_state_dict(self.loss)
        return TrainedModel(self.plan, mapper.to(device), loss.to(device), device, self.scaling)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().cpu() for name, value in module.state_dict().items()}
