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

Checking the configuration: :func:`check_training_grids` builds every configured estimator
with each of its grid values (and XGBoost with each value of ``training.fusion.grid`` and
``training.pooled_params``) and asks the library whether it accepts it, so a value that
cannot fit fails ``dsm config check`` and the train stage at once, naming its setting,
instead of failing every period later.
"""

from __future__ import annotations

import numbers
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from dsm.config import MODEL_NAMES
from dsm.errors import ConfigError
from dsm.models.blockcv import make_regressor

if TYPE_CHECKING:
    from dsm.config import TrainingConfig

SCALED = frozenset({"svr", "ann"})
_TUPLE_PARAMS = frozenset({"hidden_layer_sizes"})
# scikit-learn models that check some parameters only when fitting, with checks that do not
# depend on the data's size (a random forest's max_features / max_samples do: not probed)
_FIT_PROBED = frozenset({"ann"})
_XGB_PREFIX = re.compile(r"^(\[\d\d:\d\d:\d\d\] \S+:\d+: )?(- )?(\[[^\]|]+\|[^\]]*\]:\s*)?")


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
            raise ConfigError(f"model '{name}' has no parameter '{key}' (training.grids.{name}): "
                              f"correct its name or remove it")
        out[full] = [_value(key, v) for v in values]
    return out


def library_reason(exc: BaseException, limit: int = 300) -> str:
    """One line from a library's error: XGBoost's C++ messages lose their time stamps, source
    locations and stack trace (the first and the last of their causes are kept)."""
    lines: list[str] = []
    for raw in str(exc).splitlines():
        if raw.strip().startswith("Stack trace:"):
            break
        line = _XGB_PREFIX.sub("", raw.strip()).strip().rstrip(".")
        if line and line not in lines:
            lines.append(line)
    text = "; ".join(lines[:1] + lines[-1:] if len(lines) > 1 else lines) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _probe_data() -> tuple[np.ndarray, np.ndarray]:
    """A few synthetic rows for the probe fits (targets in soil-moisture range)."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype(np.float32), rng.uniform(0.05, 0.45, 16).astype(np.float32)


def _probe_fit(est: BaseEstimator) -> list[str]:
    """Fit ``est`` on the probe rows; returns the names XGBoost reports it does not use.

    Other warnings go on as they came.
    """
    X, y = _probe_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    unused: list[str] = []
    for w in caught:
        found = re.search(r"Parameters:\s*\{([^}]*)\}\s*are not used", str(w.message))
        if found:
            unused += [n.strip().strip('"') for n in found.group(1).split(",")]
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return unused


def _xgb_problem(make: Callable[[], xgboost.XGBRegressor], key: str) -> str | None:
    """Why the XGBoost regressor ``make()`` (set with parameter ``key``) cannot train, else None."""
    try:
        est = make()
        rounds = est.get_params().get("n_estimators")
        if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1):
            return "n_estimators must be a whole number of boosting rounds >= 1 (XGBoost trains no trees with fewer)"
        est.set_params(n_estimators=1)  # the parameters are checked on the first round
        unused = _probe_fit(est)
    except (xgboost.core.XGBoostError, TypeError, ValueError) as exc:
        return library_reason(exc)
    if key in unused:
        return f"XGBoost reports the parameter '{key}' as not used: check its name"
    return None


def _sklearn_problem(name: str, key: str, value: Any) -> str | None:
    """Why model ``name`` (scikit-learn) does not accept ``key=value``, else None."""
    est = clone(make_estimator(name))
    try:
        est.set_params(**{("model__" if name in SCALED else "") + key: _value(key, value)})
        final_step(est)._validate_params()
        if name in _FIT_PROBED:
            final_step(est).set_params(max_iter=1)  # its own value was checked just above
            _probe_fit(est)
    except (TypeError, ValueError) as exc:
        return library_reason(exc)
    return None


def grid_value_problem(name: str, key: str, value: Any) -> str | None:
    """Why estimator ``name`` cannot be built and fitted with grid value ``key=value`` (None: it can).

    scikit-learn models are checked by their own parameter validation (``_validate_params``,
    plus a fit on a few synthetic rows for the MLP, which checks its layer sizes only then);
    XGBoost by a one-round fit on a few synthetic rows.
    """
    if name == "xgb":
        return _xgb_problem(lambda: clone(make_estimator("xgb")).set_params(**{key: value}), key)
    return _sklearn_problem(name, key, value)


def _bad_value(path: str, value: Any, reason: str) -> ConfigError:
    return ConfigError(f"{path}: the value {value!r} cannot be used ({reason}); "
                       "fix or remove it in the configuration file")


def check_training_grids(training: TrainingConfig) -> None:
    """Raise :class:`ConfigError` for the first grid or XGBoost value its estimator rejects.

    Checks every value of ``training.grids`` for the models of ``training.models``, of
    ``training.fusion.grid`` and of ``training.pooled_params``, built as training builds them
    (:func:`make_estimator`, :func:`dsm.models.blockcv.make_regressor`,
    :func:`dsm.models.pooled.fit_dask`). The message names the key path, the value, the
    library's reason and what to do.
    """
    for name in training.models:
        grid = training.grids[name]
        param_grid(name, grid)  # unknown parameter names
        for key, values in grid.items():
            for v in values:
                reason = grid_value_problem(name, key, v)
                if reason:
                    raise _bad_value(f"training.grids.{name}.{key}", v, reason)
    for key, values in training.fusion.grid.items():
        for v in values:
            reason = _xgb_problem(lambda: make_regressor({key: v}, 1, training.seed), key)  # noqa: B023
            if reason:
                raise _bad_value(f"training.fusion.grid.{key}", v, reason)
    for key, v in training.pooled_params.items():
        reason = _xgb_problem(lambda: xgboost.XGBRegressor(**{key: v}, tree_method="hist",  # noqa: B023
                                                           random_state=training.seed, n_jobs=1), key)
        if reason:
            raise _bad_value(f"training.pooled_params.{key}", v, reason)


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
    return {f: float(v) for f, v in zip(features, imp, strict=True)}


def convergence_warnings(estimator: BaseEstimator) -> list[str]:
    """Convergence messages recorded by a fitted :class:`RecordingMLP` (else empty)."""
    return list(getattr(final_step(estimator), "convergence_warnings_", []))
