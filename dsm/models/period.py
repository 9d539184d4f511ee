"""Training one period: split, five tuned models, scores, selection and the model card.

:func:`fit_period` takes a period's sample table (already computed) and the client; the grid
searches run on the workers (:func:`dsm.models.search.search`), the cheap parts (split,
scores, selection) here. :func:`refit_and_score` runs on a worker for the spatial-block check.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client
from sklearn.base import BaseEstimator, clone

from dsm.config import TrainingConfig
from dsm.frozen import frozen
from dsm.models import estimators
from dsm.models.period_cards import Importance, ModelFit, TrainedPeriodCard
from dsm.models.search import SearchResult, search
from dsm.models.select import choose, scores
from dsm.models.split import Split, date_split, spatial_block_split
from dsm.samples import OUT_OF_RANGE_ATTR, TARGET

SearchFn = Callable[..., SearchResult]


def split_seed(seed: int, period: str) -> int:
    """The split seed of a period: the configured seed mixed with the period name."""
    return int(np.random.SeedSequence([int(seed), int(period) if period.isdigit() else 0]).generate_state(1)[0])


def features(table: pd.DataFrame, predictors: Sequence[str]) -> np.ndarray:
    """The predictor matrix of a sample table (float32, columns in ``predictors`` order)."""
    return table.loc[:, list(predictors)].to_numpy(dtype=np.float32)


def period_split(table: pd.DataFrame, period: str, cfg: TrainingConfig) -> Split:
    """The paper's date-stratified, KS-checked split of a period's table."""
    return date_split(table["date"].to_numpy(), table[TARGET].to_numpy(), split_seed(cfg.seed, period),
                      cfg.ks_alpha, cfg.ks_attempts)


def refit_and_score(estimator: BaseEstimator, X: np.ndarray, y: np.ndarray,
                    train: np.ndarray, test: np.ndarray) -> dict[str, dict[str, float]]:
    """Fit a clone of ``estimator`` on ``train`` rows and score it on both halves."""
    est = clone(estimator).fit(X[train], y[train])
    return {"train": scores(est.predict(X[train]), y[train]), "test": scores(est.predict(X[test]), y[test])}


@dataclass
class PeriodFit:
    """A trained period: its card (without the sample settings, cube, window and stored-model
    entry, which the caller adds) and chosen estimator."""

    card: TrainedPeriodCard
    estimator: BaseEstimator


def fit_period(client: Client, table: pd.DataFrame, period: str, predictors: Sequence[str],
               cfg: TrainingConfig, search_fn: SearchFn | None = None, device: str = "cpu") -> PeriodFit:
    """Split, tune the configured models, score them, choose one and write its card.

    Parameters
    ----------
    client
        Cluster client; the candidate x fold fits run on its workers.
    table
        The period's sample table (:mod:`dsm.samples`).
    period
        Period name ``YYYYDDD``.
    predictors
        Predictor columns, in order.
    cfg
        The ``training`` section of the configuration.
    search_fn
        Replaces :func:`dsm.models.search.search` (same signature); for the benchmark.
    device
        XGBoost's device (``cluster.device``).

    Raises
    ------
    ValueError
        When no model could be fitted (each model's error is in the message).
    """
    run_search = search_fn or search
    X = features(table, predictors)
    y = table[TARGET].to_numpy(dtype=np.float64)
    split = period_split(table, period, cfg)
    tr, te = split.train, split.test
    seed = split.seed
    per_model: dict[str, ModelFit] = {}
    fitted: dict[str, BaseEstimator] = {}
    errors: dict[str, str] = {}

    def tune(name: str) -> SearchResult | Exception:
        try:
            return run_search(client, name, X[tr], y[tr], cfg.grids[name], folds=cfg.cv_folds, seed=seed, device=device)
        except Exception as exc:  # noqa: BLE001 - one model failing does not sink the period
            return exc

    for name, res in _each_model(tune, cfg.models, concurrent=client is not None):
        if isinstance(res, Exception):
            errors[name] = f"{type(res).__name__}: {res}"
            continue
        est = res.estimator
        fitted[name] = est
        per_model[name] = ModelFit(train=frozen(scores(est.predict(X[tr]), y[tr])),
                                   test=frozen(scores(est.predict(X[te]), y[te])), cv_rmse=res.cv_rmse,
                                   best_params=frozen(estimators.plain_params(res.best_params)),
                                   n_candidates=res.n_candidates,
                                   importance=frozen(estimators.feature_importance(name, est, predictors)),
                                   convergence_warnings=tuple(estimators.convergence_warnings(est)))
    if not per_model:
        raise ValueError(f"period {period}: no model could be fitted: {errors}")
    chosen = choose({name: {"train": m.train, "test": m.test} for name, m in per_model.items()})
    card = TrainedPeriodCard(
        period=period,
        n_samples=int(len(table)),
        n_dates=int(table["date"].nunique()),
        # values masked as impossible while the samples were made (dsm.ranges): 1 km land
        # pixel-days per predictor, SMAP cell-days under smap_sm
        inputs_out_of_range=frozen(dict(table.attrs.get(OUT_OF_RANGE_ATTR, {}))),
        predictors=tuple(predictors),
        aggregation=None,  # filled by the caller, which knows the sample settings
        split=frozen({**split.record(), "config_seed": cfg.seed, "ks_alpha": cfg.ks_alpha,
                      "max_attempts": cfg.ks_attempts, "stratified_by": "date"}),
        grids=frozen({m: cfg.grids[m] for m in cfg.models}),
        cv_folds=cfg.cv_folds,
        models=frozen(per_model),
        model_errors=frozen(errors),
        chosen=chosen,
        selection_rule="lowest mean(train RMSE, test RMSE)",
        importance=Importance(rf_impurity=per_model["rf"].importance if "rf" in per_model else None,
                              xgb_gain=per_model["xgb"].importance if "xgb" in per_model else None),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        spatial_split=(frozen(spatial_check(client, X, y, table, fitted, seed, cfg.spatial_block))
                       if cfg.spatial_block else None),
    )
    return PeriodFit(card, fitted[chosen])


def _each_model(tune: Callable[[str], SearchResult | Exception], models: Sequence[str], concurrent: bool
                ) -> list[tuple[str, SearchResult | Exception]]:
    """``tune`` of every model, in the order of ``models``; with ``concurrent`` the searches are
    submitted together (each waits on its own tasks), so the workers hold every model of the
    period at once rather than one after another."""
    if not concurrent or len(models) < 2:
        return [(m, tune(m)) for m in models]
    with cf.ThreadPoolExecutor(max_workers=len(models), thread_name_prefix="dsm-search") as pool:
        return list(zip(models, pool.map(tune, models), strict=True))


def spatial_check(client: Client | None, X: np.ndarray, y: np.ndarray, table: pd.DataFrame,
                  fitted: dict[str, BaseEstimator], seed: int, block: int) -> dict[str, Any]:
    """Refit each tuned model on a spatial-block split and score it (fits on the workers)."""
    sp = spatial_block_split(table["row"].to_numpy(), table["col"].to_numpy(), y, seed, block)
    out: dict[str, Any] = {**sp.record(), "block_cells": block, "models": {}}
    if sp.train.size < 2 or sp.test.size < 2:
        out["note"] = "too few blocks for a spatial split"
        return out
    results: dict[str, Any] = {}
    if client is None:
        results = {n: refit_and_score(e, X, y, sp.train, sp.test) for n, e in fitted.items()}
    else:
        futs = {n: client.submit(refit_and_score, e, X, y, sp.train, sp.test, pure=False) for n, e in fitted.items()}
        for n, f in futs.items():
            try:
                results[n] = f.result()
            except Exception as exc:
                results[n] = {"error": f"{type(exc).__name__}: {exc}"}
    out["models"] = results
    return out
