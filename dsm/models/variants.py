"""Companion models of each trained period, for prediction: reduced models and quantile models.

Trained by :func:`dsm.stages.train.train` after the per-period models:

* **reduced models** (gap-free mode): for each group of predictors that may be missing on a
  day (``output.reduced_sets``, default ``[[lst]]``, the cloud gap), the period's chosen
  regressor with its tuned hyperparameters, refitted on the period's samples *without* those
  predictors. Those samples include the (cell, day) pairs where the dropped predictors are
  missing, so a cloudy day still teaches the reduced model.
* **quantile models** (``output.uncertainty: quantile``): one XGBoost model per predictor set
  with the ``reg:quantileerror`` objective at the two quantiles ``(1 - interval) / 2`` and
  ``(1 + interval) / 2``; the prediction uncertainty ``sm_unc`` is half the distance between
  them, widened by a conformal margin from the period's test half (conformalised quantile
  regression); coverage on the test half, before and after, is in the card.

Every variant card also records the range (min, max) of each predictor in the training
samples, which prediction uses to flag extrapolation.

Model store layout (beside the period's own ``<YYYYDDD>/``)::

    variants/full/<YYYYDDD>/card.json              ranges of the full predictor set (no model)
    variants/full/<YYYYDDD>/quantile/model.json     quantile model on the full set
    variants/no-lst/<YYYYDDD>/card.json + model.*    reduced point model
    variants/no-lst/<YYYYDDD>/quantile/model.json    reduced quantile model

Periods that reuse another period's model use that period's variants.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import xgboost
from distributed import Client, Future
from sklearn.base import BaseEstimator

from dsm.config import Config, TrainingConfig
from dsm.cube import RAIN_PREDICTORS, SPECS
from dsm.frozen import frozen
from dsm.models.estimators import make_estimator, param_grid
from dsm.models.period import features, period_split
from dsm.models.period_cards import TOO_FEW, TRAINED, StoredModel, TrainedPeriodCard, read_period_card
from dsm.models.select import scores
from dsm.models.store import ModelStore
from dsm.models.variant_cards import (
    QuantileCard,
    QuantileFit,
    VariantCard,
    read_variant_card,
    write_quantile_card,
    write_variant_card,
)
from dsm.periods import periods
from dsm.sample_tables import table_futures
from dsm.samples import TARGET

FULL = "full"
STATIC = "static"
QUANTILE = "quantile"
QUANTILE_PARAMS: dict[str, Any] = {"n_estimators": 200, "max_depth": 4, "learning_rate": 0.05}


def variant_name(dropped: Sequence[str]) -> str:
    """``"full"`` for no dropped predictor, else ``"no-" + "-".join(dropped)``, the rain
    predictors (all of them) written ``rain``: ``no-lst-rain``."""
    if not dropped:
        return FULL
    names = list(dropped)
    if set(RAIN_PREDICTORS) <= set(names):
        names = [p for p in names if p not in RAIN_PREDICTORS] + ["rain"]
    return "no-" + "-".join(names)


def variant_key(variant: str, period: str) -> str:
    """Model-store key of a period's variant card."""
    return f"variants/{variant}/{period}"


def quantile_key(variant: str, period: str) -> str:
    """Model-store key of a period's quantile model for a variant."""
    return f"variants/{variant}/{period}/{QUANTILE}"


def predictor_sets(predictors: Sequence[str], reduced_sets: Sequence[Sequence[str]], gap_free: bool = True
                   ) -> dict[str, tuple[str, ...]]:
    """Variant name -> predictors it uses: the full set first, then (gap-free mode) each reduced
    set, then ``static``: the static predictors alone, so that every land pixel with its static
    layers gets a value whatever daily or composite layer is missing."""
    out = {FULL: tuple(predictors)}
    if gap_free:
        for group in reduced_sets:
            kept = tuple(p for p in predictors if p not in group)
            dropped = tuple(p for p in predictors if p in group)
            if dropped and kept:
                out[variant_name(dropped)] = kept
        static = tuple(p for p in predictors if SPECS[p].axis == "static")
        if static and static not in out.values():
            out[STATIC] = static
    return out


def variants_of(config: Config) -> dict[str, tuple[str, ...]]:
    """:func:`predictor_sets` of a configuration."""
    return predictor_sets(config.predictors, config.output.reduced_sets, config.output.gap_free)


def quantiles(interval: float) -> tuple[float, float]:
    """Lower and upper quantile levels of a central interval."""
    return (round((1.0 - interval) / 2.0, 6), round((1.0 + interval) / 2.0, 6))


def feature_ranges(table: pd.DataFrame, predictors: Sequence[str]) -> dict[str, list[float]]:
    """``{predictor: [min, max]}`` over the training samples."""
    return {p: [float(table[p].min()), float(table[p].max())] for p in predictors} if len(table) else {}


def refit_chosen(chosen: str, best_params: Mapping[str, Any], seed: int, device: str = "cpu") -> BaseEstimator:
    """A fresh estimator of kind ``chosen`` with the period's tuned hyperparameters."""
    est = make_estimator(chosen, seed, device)
    grid = param_grid(chosen, {k: [v] for k, v in best_params.items()}) if best_params else {}
    return est.set_params(**{k: v[0] for k, v in grid.items()})


def quantile_model(levels: tuple[float, float], seed: int, device: str = "cpu") -> xgboost.XGBRegressor:
    """The XGBoost multi-quantile regressor."""
    return xgboost.XGBRegressor(objective="reg:quantileerror", quantile_alpha=np.array(levels),
                                tree_method="hist", n_jobs=1, random_state=seed, device=device, **QUANTILE_PARAMS)


def fit_variant(table: pd.DataFrame, period: str, variant: str, predictors: Sequence[str],
                main_card: TrainedPeriodCard, tcfg: TrainingConfig, interval: float | None, device: str = "cpu"
                ) -> tuple[BaseEstimator | None, BaseEstimator | None, VariantCard]:
    """Fit one variant of a period (runs on a worker; XGBoost on ``device``).

    Returns the reduced point model (None for ``full``), the quantile model (None when
    ``interval`` is None or there are too few samples) and the variant card (without the
    stored-model entries, which the caller adds).
    """
    base = VariantCard(period=period, variant=variant, predictors=tuple(predictors),
                       dropped=tuple(p for p in main_card.predictors or () if p not in predictors),
                       n_samples=int(len(table)), feature_ranges=frozen(feature_ranges(table, predictors)),
                       device=device, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       status=TOO_FEW)
    if len(table) < max(tcfg.min_samples, 4):
        return None, None, base
    X = features(table, predictors)
    y = table[TARGET].to_numpy(dtype=np.float64)
    split = period_split(table, period, tcfg)
    tr, te = split.train, split.test
    point = None
    card = replace(base, split=frozen(split.record()), status=TRAINED)
    if variant != FULL:
        chosen = main_card.chosen
        best = main_card.models[chosen].best_params
        point = refit_chosen(chosen, best, split.seed, device).fit(X[tr], y[tr])
        card = replace(card, chosen=chosen, best_params=best, train=frozen(scores(point.predict(X[tr]), y[tr])),
                       test=frozen(scores(point.predict(X[te]), y[te])))
    q = None
    if interval is not None:
        levels = quantiles(interval)
        q = quantile_model(levels, split.seed, device).fit(X[tr], y[tr])
        pred = q.predict(X[te]).reshape(len(te), -1)
        lo, hi = pred.min(axis=1), pred.max(axis=1)
        # conformalised quantile regression (Romano et al. 2019): widen (or narrow) the interval by
        # the interval-quantile of the test half's conformity scores, so it covers held-out samples
        margin = 0.0
        if len(te):
            e = np.maximum(lo - y[te], y[te] - hi)
            margin = float(np.quantile(e, min(1.0, interval * (1 + 1 / len(te)))))
        card = replace(card, quantile=QuantileFit(
            levels=levels, params=frozen(QUANTILE_PARAMS), conformal_margin=margin,
            test_coverage_raw=float(np.mean((y[te] >= lo) & (y[te] <= hi))) if len(te) else None,
            test_coverage=float(np.mean((y[te] >= lo - margin) & (y[te] <= hi + margin))) if len(te) else None,
            test_mean_half_width=float(np.mean(np.maximum((hi - lo) / 2 + margin, 0))) if len(te) else None))
    return point, q, card


def _too_few(store: ModelStore, key: str) -> bool:
    """Whether the variant card at ``key`` records too few samples for a model."""
    card = read_variant_card(store, key)
    return card is not None and card.status == TOO_FEW


def train_variants(client: Client, config: Config, store: ModelStore, ds: Any, period_names: Sequence[str],
                   force: bool = False, fresh: Sequence[str] = (),
                   tables: Mapping[str, pd.DataFrame] | None = None,
                   variant_tables: Mapping[tuple[str, str], Future] | None = None) -> tuple[list[str], dict[str, str]]:
    """Train the missing variants of the given periods (those with a trained card).

    ``fresh`` names periods whose model was (re)trained in this run: their variants are
    retrained too, so they never belong to an older model. ``tables`` holds sample tables of
    the full predictor set already computed by the caller, ``variant_tables`` futures of the
    reduced sets' tables by (period, variant) (:func:`dsm.sample_tables.table_set_futures`):
    reused, not recomputed.

    Returns the variant keys trained and ``{key: cause}`` of those that failed.
    """
    interval = config.output.interval if config.output.uncertainty == "quantile" else None
    tcfg = config.training
    by_name = {p.name: p for p in periods(config.dates.start, config.dates.end)}
    wanted: list[tuple[str, str, tuple[str, ...], TrainedPeriodCard]] = []
    for name in period_names:
        card = read_period_card(store, name)
        if not isinstance(card, TrainedPeriodCard):
            continue
        for variant, preds in variants_of(config).items():
            key = variant_key(variant, name)
            done = store.done(key, VariantCard.from_dict) and (
                interval is None or store.done(quantile_key(variant, name), QuantileCard.from_dict)
                or _too_few(store, key))
            if force or name in fresh or not done:
                wanted.append((name, variant, preds, card))
    if not wanted:
        return [], {}
    have = dict(tables or {})
    ready = variant_tables or {}
    todo = [i for i, (n, v, _, _) in enumerate(wanted) if not (v == FULL and n in have)]
    computed: dict[int, Future] = {}
    for i in todo:
        name, variant, preds, _ = wanted[i]
        computed[i] = ready[name, variant] if (name, variant) in ready else table_futures(
            client, ds, [by_name[name]], preds, how=tcfg.aggregation, min_valid_fraction=tcfg.min_valid_fraction)[0]
    sent = {n: client.scatter(have[n], hash=False) for n in {wanted[i][0] for i in range(len(wanted)) if i not in computed}}
    inputs = [computed[i] if i in computed else sent[wanted[i][0]] for i in range(len(wanted))]  # data sent once
    fits = [client.submit(fit_variant, t, n, v, preds, card, tcfg, interval, config.cluster.device, pure=False)
            for t, (n, v, preds, card) in zip(inputs, wanted, strict=True)]
    trained: list[str] = []
    failed: dict[str, str] = {}
    for fut, (name, variant, _, _) in zip(fits, wanted, strict=True):
        key = variant_key(variant, name)
        try:
            point, q, vcard = fut.result()
            if q is not None and vcard.quantile is not None:
                qkey = quantile_key(variant, name)
                qmodel = StoredModel.from_dict(store.save_model(qkey, q))
                write_quantile_card(store, qkey, QuantileCard(period=name, variant=variant, fit=vcard.quantile,
                                                              model=qmodel))
            if point is not None:
                vcard = replace(vcard, model=StoredModel.from_dict(store.save_model(key, point)))
            write_variant_card(store, key, vcard)
            trained.append(key)
        except Exception as exc:  # one variant failing does not sink the others
            failed[key] = f"{type(exc).__name__}: {exc}"
    return trained, failed
