"""The five regressors of the method and their parameter grids.

=====  ==============================================  ==========================
name   estimator                                        scaling
=====  ==============================================  ==========================
mlr    ``LinearRegression``                             none (not needed)
svr    ``SVR`` (RBF kernel, epsilon 0.01 m3/m3)         ``StandardScaler`` on X
ann    :class:`RecordingMLP` (``MLPRegressor``, lbfgs)  ``StandardScaler`` on X
rf     ``RandomForestRegressor`` (``n_jobs=1``)         none
xgb    ``xgboost.XGBRegressor`` (``n_jobs=1``, hist)    none
=====  ==============================================  ==========================

Scaled models are ``Pipeline([("scale", StandardScaler()), ("model", est)])`` so the scaler
is fitted inside every cross-validation fold. Grids in the configuration use the plain
parameter names of the final estimator; :func:`param_grid` adds the pipeline prefix.

Convergence: the MLP uses ``solver="lbfgs"`` with ``max_iter=2000``, which converges on the
sample tables of a period; when it still does not, :class:`RecordingMLP` catches sklearn's
``ConvergenceWarning`` *for that fit only* and records it in ``convergence_warnings_``
(copied into the model card) instead of letting it vanish or escape from worker processes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xgboost
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from dsm.config import MODEL_NAMES
from dsm.errors import ConfigError

SCALED = frozenset({"svr", "ann"})
_TUPLE_PARAMS = frozenset({"hidden_layer_sizes"})


class RecordingMLP(MLPRegressor):
    """``MLPRegressor`` that records, rather than emits, its ``ConvergenceWarning``.

    After ``fit``, ``convergence_warnings_`` holds the messages (empty when it converged).
    """

    def fit(self, X: Any, y: Any) -> RecordingMLP:  # noqa: D102
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            super().fit(X, y)
        self.convergence_warnings_ = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        for w in caught:  # anything else goes on as it came
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return self


def make_estimator(name: str, seed: int = 0, device: str = "cpu") -> BaseEstimator:
    """A fresh, unfitted estimator ``name`` (one of :data:`dsm.config.MODEL_NAMES`).

    ``device`` is XGBoost's (``"cpu"`` or ``"cuda"``, from ``cluster.device``); the
    scikit-learn models always run on the CPU.
    """
    if name == "mlr":
        return LinearRegression()
    if name == "svr":
        return Pipeline([("scale", StandardScaler()), ("model", SVR(kernel="rbf", epsilon=0.01, cache_size=200))])
    if name == "ann":
        mlp = RecordingMLP(solver="lbfgs", max_iter=2000, random_state=seed)
        return Pipeline([("scale", StandardScaler()), ("model", mlp)])
    if name == "rf":
        return RandomForestRegressor(n_jobs=1, random_state=seed)
    if name == "xgb":
        return xgboost.XGBRegressor(n_jobs=1, tree_method="hist", random_state=seed, device=device)
    raise ConfigError(f"unknown model name {name!r}; known: {list(MODEL_NAMES)}")


def final_step(estimator: BaseEstimator) -> BaseEstimator:
    """The regressor itself (the last step of a pipeline)."""
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _value(key: str, v: Any) -> Any:
    return tuple(v) if key in _TUPLE_PARAMS and isinstance(v, list) else v


def param_grid(name: str, grid: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """The configured grid of ``name`` in the estimator's own parameter names.

    Raises
    ------
    ConfigError
        When the grid is empty, a parameter has no values, or the estimator has no such
        parameter.
    """
    if not grid:
        raise ConfigError(f"the grid of model '{name}' is empty")
    est = make_estimator(name)
    prefix = "model__" if name in SCALED else ""
    valid = set(est.get_params())
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"the grid of model '{name}' has no values for '{key}'")
        full = prefix + key
        if full not in valid:
            raise ConfigError(f"model '{name}' has no parameter '{key}' (training.grids.{name})")
        out[full] = [_value(key, v) for v in values]
    return out


def plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Best parameters without pipeline prefixes, JSON-ready (tuples as lists)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = k.split("__", 1)[1] if "__" in k else k
        out[key] = list(v) if isinstance(v, tuple) else (v.item() if isinstance(v, np.generic) else v)
    return out


def feature_importance(name: str, estimator: BaseEstimator, features: Sequence[str]) -> dict[str, float] | None:
    """RF impurity importance or XGB gain, each normalised to sum 1; None for other models.

    Features XGBoost never split on get 0.
    """
    est = final_step(estimator)
    if name == "rf":
        imp = np.asarray(est.feature_importances_, dtype=np.float64)
    elif name == "xgb":
        gain = est.get_booster().get_score(importance_type="gain")
        imp = np.array([gain.get(f"f{i}", gain.get(f, 0.0)) for i, f in enumerate(features)], dtype=np.float64)
    else:
        return None
    total = imp.sum()
    if total > 0:
        imp = imp / total
    return {f: float(v) for f, v in zip(features, imp)}


def convergence_warnings(estimator: BaseEstimator) -> list[str]:
    """Convergence messages recorded by a fitted :class:`RecordingMLP` (else empty)."""
    return list(getattr(final_step(estimator), "convergence_warnings_", []))
