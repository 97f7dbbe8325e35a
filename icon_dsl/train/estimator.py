"""A scikit-learn style estimator around ``train``.

    Estimator("specs/tsne.icon").fit_transform(X)          # a 2-D t-SNE map of X
    est = Estimator("specs/simclr.icon", epochs=50).fit(X)
    est.transform(X_new)                                    # parametric mappers only

``Estimator(spec, **train_kwargs)`` keeps ``train``'s keyword arguments (epochs, batch_size,
seed, device, hyperparameters, ...); by default it writes no output folder and shows no progress
(pass ``out=...`` / ``progress=True`` for those). After ``fit`` it has ``embedding_``,
``metrics_``, ``losses_`` and ``result_``. ``transform`` embeds new points with the trained
mapper and raises TrainError for a table mapper, which has one free row per training sample and
nothing to apply to new points. ``predict`` gives the most likely prototype column (the class,
for cross-entropy-like specs) or the cluster (for softmax mappers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from icon_dsl.api import CompiledModule
from icon_dsl.train.errors import TrainError
from icon_dsl.train.runtime import (
    TrainedModel,
    TrainResult,
    dataset_from_arrays,
    set_validate,
    train,
)


class Estimator:
    """fit / fit_transform / transform / predict over an icon-dsl spec."""

    def __init__(self, spec: str | Path | CompiledModule, **train_kwargs: Any) -> None:
        if "data" in train_kwargs:
            raise TypeError("Estimator takes its data in fit(X, y), not as data=")
        self.spec = spec
        self.train_kwargs = {"out": False, "progress": False, **train_kwargs}
        self.result_: TrainResult | None = None

    def fit(self, X: Any, y: Any = None) -> Estimator:
        """Train on features X (N, D) and optional integer labels y (N,); returns self."""
        dataset = dataset_from_arrays(X, y, name="X")
        self.result_ = train(self.spec, data=dataset, **self.train_kwargs)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Train on X (and y) and return the embedding of X, (N, dim)."""
        return self.fit(X, y).embedding_

    def transform(self, X: Any) -> np.ndarray:
        """Embed new points with the trained (parametric) mapper."""
        return self._model().embed(np.asarray(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most likely column of q (prototype / class) or cluster for each row of X."""
        model = self._model()
        z = torch.as_tensor(model.embed(np.asarray(X)), dtype=torch.float32, device=model.device)
        if model.plan.softmax:
            return z.argmax(dim=1).cpu().numpy()
        if not model.plan.columns:
            raise TrainError(
                f"{model.plan.name}: predict needs q over prototype columns (classes) or a "
                "softmax (cluster) mapper; use transform for an embedding"
            )
        features = torch.as_tensor(np.asarray(X, dtype=np.float32), device=model.device)
        placeholder = torch.zeros(len(z), dtype=torch.long, device=z.device)
        available = {
            "x": features,
            "y": placeholder,  # q over columns does not depend on y; p is not used here
            "index": torch.arange(len(z), device=z.device),
            "modality": placeholder,
        }
        inputs = {name: available[name] for name in model.plan.inputs}
        set_validate(model.loss, False)
        with torch.no_grad():
            _, q = model.loss.distributions(z, **inputs)  # type: ignore[operator]
        return q.argmax(dim=1).cpu().numpy()

    @property
    def embedding_(self) -> np.ndarray:
        return self._result().embedding

    @property
    def metrics_(self) -> dict[str, float]:
        return self._result().metrics

    @property
    def losses_(self) -> list[float]:
        return self._result().losses

    def _result(self) -> TrainResult:
        if self.result_ is None:
            raise TrainError("this Estimator is not fitted yet; call fit(X) first")
        return self.result_

    def _model(self) -> TrainedModel:
        model = self._result().model
        assert model is not None
        return model
