"""Grid-search cross-validation on RMSE, on the cluster (dask-ml) or in one process (sklearn).

:func:`search` runs on the cluster in one of two ways, with the same result:

* a table of at most :data:`ONE_TASK_MAX_VALUES` predictor values (every period table of a
  36 km region of a few hundred cells): the whole search is **one task** on a worker
  (:func:`search_local`), the table scattered once. Each
  candidate x fold fit of such a table takes milliseconds, so as tasks of their own the
  scheduler's round trips would cost more than the fits; the cluster's parallelism comes
  from the periods and models searched at once (``training.concurrent_periods``);
* a larger table: dask-ml's ``GridSearchCV`` from the client with ``scheduler=client``, every
  candidate x fold fit a task spread over the workers, and the best candidate refitted in a
  task. Its candidates are ranked by the plain mean of their fold scores, as scikit-learn's
  (dask-ml's own ``mean_test_score`` weighs the folds by their sizes, so its CV RMSE, and
  rarely its choice, would differ from the one-task search on the same table).

Either way each fit is an in-memory scikit-learn / ``xgboost.XGBRegressor(n_jobs=1)``
estimator. Never put a ``DaskXGBRegressor`` in here: nested in a dask-ml search it hangs.

dask-ml retries a failed fit task forever, so fits run with ``error_score=nan``: a fit that
raises scores NaN, and a model whose every candidate failed raises :class:`SearchError`.

:func:`search_local` runs the same search in the calling process (the benchmark's sequential
baseline), candidate by candidate on the same folds, scored and chosen as scikit-learn's
``GridSearchCV(error_score=nan)``. It does not call ``GridSearchCV`` itself: when every fit fails,
that raises a ``ValueError`` which only its message tells apart from other errors; here, as on
the cluster, a fit that raises scores NaN and all-NaN scores raise :class:`SearchError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, ParameterGrid

from dsm.errors import DsmError
from dsm.models.estimators import make_estimator, param_grid

SCORING = "neg_root_mean_squared_error"
ONE_TASK_MAX_VALUES = 1_000_000
"""Largest table (rows x predictors) whose search runs as one task (module docstring)."""


class SearchError(DsmError):
    """Every candidate of a model's grid search failed."""


@dataclass
class SearchResult:
    """The outcome of one model's grid search.

    Attributes
    ----------
    name
        Model name.
    estimator
        The best candidate refitted on all of the training data.
    best_params
        Its parameters (estimator names, pipeline prefixes included).
    cv_rmse
        Mean cross-validated RMSE of the best candidate.
    n_candidates
        Size of the grid.
    """

    name: str
    estimator: BaseEstimator
    best_params: dict[str, Any]
    cv_rmse: float
    n_candidates: int


def _folds(n: int, folds: int, seed: int) -> KFold:
    if n < folds:
        raise SearchError(f"{n} training samples cannot make {folds} cross-validation folds")
    return KFold(n_splits=folds, shuffle=True, random_state=seed)


def _every_candidate_failed(name: str, estimator: BaseEstimator, params: Any, X: np.ndarray,
                            y: np.ndarray) -> SearchError:
    """The error for a search whose candidates all failed, naming what the first one raises (refit
    here on the data: the fits that failed raised on the workers, where their messages stay)."""
    first = params[0] if isinstance(params, list) else params
    why = ""
    try:
        clone(estimator).set_params(**{k: v[0] for k, v in first.items()}).fit(X, y)
    except Exception as exc:  # noqa: BLE001 - the cause is what we report
        why = f"; the first candidate raises {type(exc).__name__}: {exc}"
    return SearchError(f"every candidate of model '{name}' failed to fit{why}")


def _best(name: str, scores: np.ndarray, estimator: BaseEstimator, params: Any, X: np.ndarray,
          y: np.ndarray) -> int:
    """The index of the best of the candidates' mean ``scores`` (the first of equals, as
    scikit-learn's rank; NaN: a fit failed); :class:`SearchError` when every one is NaN."""
    if not np.isfinite(scores).any():
        raise _every_candidate_failed(name, estimator, params, X, y)
    return int(np.nanargmax(scores))


def fold_mean_scores(cv_results: Mapping[str, Any], n_splits: int) -> np.ndarray:
    """Each candidate's plain mean of its ``n_splits`` fold test scores (NaN where a fold failed),
    as scikit-learn's ``mean_test_score``."""
    return np.mean([np.asarray(cv_results[f"split{k}_test_score"], dtype=np.float64) for k in range(n_splits)], axis=0)


def _refit(estimator: BaseEstimator, params: Mapping[str, Any], X: np.ndarray, y: np.ndarray) -> BaseEstimator:
    return clone(estimator).set_params(**params).fit(X, y)


def search(client: Client, name: str, X: np.ndarray, y: np.ndarray, grid: Mapping[str, Sequence[Any]],
           folds: int = 3, seed: int = 0, device: str = "cpu",
           one_task_max: int = ONE_TASK_MAX_VALUES) -> SearchResult:
    """Tune model ``name`` on ``(X, y)`` by grid-search CV on RMSE, on the workers: as one
    task when ``X.size <= one_task_max``, else one task per candidate x fold (module docstring).

    Parameters
    ----------
    client
        The cluster's client; the fits run on its workers.
    name
        Model name (:data:`dsm.config.MODEL_NAMES`).
    X, y
        Training predictors and target (numpy, in memory).
    grid
        ``{parameter: [values]}`` with plain parameter names (configuration form).
    folds, seed
        Shuffled K-fold cross-validation.
    device
        XGBoost's device (``cluster.device``).
    one_task_max
        Largest ``X.size`` searched in one task (0: always one task per fit).
    """
    if X.size <= one_task_max:
        Xf, yf = client.scatter([X, y], hash=False)  # unique keys: a hashed key released by the previous search can be lost
        return client.submit(search_local, name, Xf, yf, grid, folds, seed, device, pure=False).result()
    from dask_ml.model_selection import GridSearchCV  # noqa: PLC0415 - dask_ml (~0.5 s) only when a search runs

    params = param_grid(name, grid)
    estimator = make_estimator(name, seed, device)
    gs = GridSearchCV(estimator, params, scoring=SCORING, cv=_folds(len(y), folds, seed),
                      refit=False, error_score=np.nan, scheduler=client, return_train_score=False)
    with warnings.catch_warnings():
        # a failing candidate is reported through its NaN score (checked below)
        warnings.simplefilter("ignore", FitFailedWarning)
        gs.fit(X, y)
    scores = fold_mean_scores(gs.cv_results_, folds)
    best = _best(name, scores, estimator, params, X, y)
    chosen = dict(gs.cv_results_["params"][best])
    Xf, yf = client.scatter([X, y], hash=False)
    fitted = client.submit(_refit, estimator, chosen, Xf, yf, pure=False).result()
    return SearchResult(name, fitted, chosen, float(-scores[best]), len(scores))


def _fold_score(estimator: BaseEstimator, params: Mapping[str, Any], scorer: Any, X: np.ndarray, y: np.ndarray,
                train: np.ndarray, test: np.ndarray) -> float:
    """One candidate's test score on one fold; NaN when its fit or scoring raises (scikit-learn's
    ``error_score=nan``)."""
    try:
        return float(scorer(_refit(estimator, params, X[train], y[train]), X[test], y[test]))
    except Exception:  # noqa: BLE001 - a failed candidate scores NaN; all of them failing raises SearchError
        return np.nan


def search_local(name: str, X: np.ndarray, y: np.ndarray, grid: Mapping[str, Sequence[Any]],
                 folds: int = 3, seed: int = 0, device: str = "cpu") -> SearchResult:
    """The same search sequentially in this process: every candidate fitted and scored on every fold
    as scikit-learn's ``GridSearchCV(error_score=nan)`` does, the best plain mean of the fold scores
    chosen and refitted on all of ``(X, y)`` (module docstring).

    Raises
    ------
    SearchError
        When every candidate failed, naming the model and what its first candidate raises.
    """
    params = param_grid(name, grid)
    estimator = make_estimator(name, seed, device)
    splits = list(_folds(len(y), folds, seed).split(X))
    scorer = get_scorer(SCORING)
    candidates = list(ParameterGrid(params))
    scores = np.array([[_fold_score(estimator, c, scorer, X, y, train, test) for train, test in splits]
                       for c in candidates], dtype=np.float64).mean(axis=1)  # fmt: skip
    best = _best(name, scores, estimator, params, X, y)
    fitted = _refit(estimator, candidates[best], X, y)
    return SearchResult(name, fitted, dict(candidates[best]), float(-scores[best]), len(candidates))
