"""Training the default method (``training.method: fusion``) on the cluster.

1. **Samples.** Every (36 km cell, day) of the run where SMAP observed the cell and the
   static features are valid, with the day's dynamic features where valid (NaN elsewhere):
   per-period tables (:func:`dsm.samples.sample_graph`, ``keep="smap"``) computed on the
   workers, one task per (period, spatial block) (:mod:`dsm.sample_tables`). Impossible values (outside a variable's valid range; SMAP outside
   [0.02, 0.5]) are masked there (:mod:`dsm.ranges`), counted, logged and recorded in the
   card (``inputs_out_of_range``). Features are the predictors with aspect as sine and cosine,
   computed at 1 km before averaging, plus day-of-year terms (:mod:`dsm.features`); each
   sample also carries the extremes of its cell's 1 km pixels (the ranges of bit 8).
2. **Search.** One pooled XGBoost over all periods. Every hyperparameter candidate
   (``training.fusion.grid``) is cross-validated on blocks of days and of cells
   (:mod:`dsm.models.blockcv`); the candidate x fold fits run on the workers; the number of
   rounds is chosen by the CV. The candidate with the lowest CV RMSE wins. Every model is
   constrained to be non-decreasing in the rain predictors (``training.fusion.monotone_rain``):
   soil wets up after rain, and the trees cannot fit the rain product's errors the other way.
3. **Companions.** Each reduced predictor set (``output.reduced_sets``, with the rain
   predictors: also without them, and without both; then the static predictors alone) gets
   the chosen hyperparameters, its own CV (for its rounds and its held-out predictions) on the
   samples where its features are valid. With ``training.fusion.rain_free_anomaly`` each rain
   model's rain-free companion is its *anomaly partner* (``FusionCard.anomaly_partners``): the
   map's 1 km within-cell anomaly is the mean of the two models'. The rain fields (0.1 degree)
   carry no 1 km detail; the trees that have them learn the static within-cell pattern less
   well (fewer rounds), while the cell mean, where the rain counts, stays the full model's.
4. **Refit.** Every variant is refitted on all its samples with ``xgboost.dask`` on the workers
   (on one worker when its rows fit one: :func:`dsm.models.pooled.fit_workers`; then the
   workers refit side by side, each a share of the variants of nearly equal cost).
5. **Error model.** The held-out (out-of-fold) cell means of the variant prediction would use
   for each sample, against SMAP, give SMAP's random error by triple collocation, the model's
   error variance, the fusion weight and the decay of carried increments
   (:func:`dsm.fusion.estimate_error_model`).
6. **Disaggregation** (``training.disaggregation``): a model on sampled 1 km pixels whose
   loss is on their cell mean against SMAP (:mod:`dsm.models.disaggregation`), fitted on a worker.
7. The card (:class:`dsm.models.cards.FusionCard`) is written last; a rerun with a card skips
   training unless forced.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr
import xgboost
from distributed import Client
from distributed import Future as DaskFuture

from dsm import zarr_reads
from dsm.cluster import worker_addresses
from dsm.config import Config
from dsm.cube import RAIN_PREDICTORS, has_rain
from dsm.errors import InputError
from dsm.features import (
    DOY_FEATURES,
    design_matrix,
    feature_names,
    monotone_constraints,
    rain_free_partners,
    rain_reduced_sets,
    with_rain,
)
from dsm.fusion import estimate_error_model
from dsm.models.blockcv import CvScore, block_folds, candidates, fit_fold, out_of_fold, score_curves
from dsm.models.cards import FUSION_KEY, FusionCard, ModelRecord, fusion_model_key, read_fusion_card, write_fusion_card
from dsm.models.disaggregation import fit_disaggregation, pixel_sample_graph
from dsm.models.pooled import fit_dask, fit_workers, memory_limits
from dsm.models.store import ModelStore
from dsm.models.variants import predictor_sets
from dsm.models.xgblog import route_worker_logs
from dsm.periods import periods
from dsm.progress import Steps
from dsm.ranges import SMAP, describe
from dsm.sample_tables import sample_tables
from dsm.samples import (
    OUT_OF_RANGE_ATTR,
    RANGE_SUFFIX,
    TARGET,
    empty_cube_cause,
    smap_grid,
    table_counts,
    table_to_grid,
)
from dsm.task_order import balanced_shares

log = logging.getLogger(__name__)
DISAGGREGATION = "disaggregation"


def pixel_ranges(table: pd.DataFrame, features: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``{feature: (min, max)}`` over the 1 km pixels of the table's cell-days."""
    return {f: (float(np.nanmin(table[f + RANGE_SUFFIX["min"]])), float(np.nanmax(table[f + RANGE_SUFFIX["max"]])))
            for f in features}


class Variant(NamedTuple):
    """A predictor set's samples: the rows of the table where its features are all valid, its
    monotone constraints (XGBoost parameters) and the range of each feature over the 1 km pixels
    of those rows (:func:`pixel_ranges`)."""

    name: str
    predictors: tuple[str, ...]
    features: tuple[str, ...]
    rows: np.ndarray
    shape: dict[str, Any]
    ranges: dict[str, tuple[float, float]]

    def design(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Its design matrix and targets, made when needed (every variant's at once would hold
        the table's features several times over)."""
        return design_matrix(table[self.rows], self.features), table[TARGET].to_numpy(np.float32)[self.rows]

    def design_bytes(self) -> int:
        """The bytes of :meth:`design`'s matrix (float32, the features and the day-of-year terms)."""
        return int(self.rows.sum()) * (len(self.features) + len(DOY_FEATURES)) * np.dtype(np.float32).itemsize


def submit_folds(client: Client, X: np.ndarray, y: np.ndarray, fold: np.ndarray, grid: Sequence[Mapping[str, Any]],
                 n_folds: int, max_rounds: int, seed: int, device: str) -> dict[tuple[int, int], DaskFuture]:
    """Submit every candidate x fold fit of a blocked CV of the rows ``X``, ``y`` (``fold``: each
    row's fold) to the workers; :func:`cross_validated` takes their results."""
    Xf, yf, ff = client.scatter([X, y, fold], broadcast=True, hash=False)
    return {(i, k): client.submit(fit_fold, Xf, yf, ff, k, dict(p), max_rounds, seed, device, pure=False)
            for i, p in enumerate(grid) for k in range(n_folds)}


def cross_validated(jobs: Mapping[tuple[int, int], DaskFuture], X: np.ndarray, fold: np.ndarray,
                    grid: Sequence[Mapping[str, Any]], n_folds: int) -> tuple[list[CvScore], np.ndarray]:
    """The scores of every candidate (best first) and the best one's out-of-fold predictions of
    the rows ``X``, from the fits :func:`submit_folds` submitted."""
    results = {key: fut.result() for key, fut in jobs.items()}
    scores = [score_curves(p, [results[i, k][0] for k in range(n_folds)], [results[i, k][2] for k in range(n_folds)])
              for i, p in enumerate(grid)]
    best = int(np.argmin([s.rmse for s in scores]))
    oof = out_of_fold(X, fold, [results[best, k][1] for k in range(n_folds)], scores[best].n_rounds)
    order = sorted(range(len(scores)), key=lambda i: scores[i].rmse)
    return [scores[i] for i in order], oof


def model_predictors(config: Config, ds: xr.Dataset) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The predictors of the fusion model and its reduced groups: the configured ones, plus
    the rain predictors when the cube has its antecedent indices and ``rain.predictors`` is
    ``auto`` (then one more companion drops them, for gaps in the precipitation record)."""
    use = config.rain.predictors == "auto" and has_rain(ds)
    preds = with_rain(config.predictors, RAIN_PREDICTORS, use)
    groups = rain_reduced_sets(config.output.reduced_sets, RAIN_PREDICTORS) if use else config.output.reduced_sets
    return preds, tuple(map(tuple, groups))


def sample_table(config: Config, client: Client, ds: xr.Dataset, predictors: Sequence[str],
                 features: Sequence[str]) -> pd.DataFrame:
    """Every SMAP cell-day of the run with its features (computed on the workers); its
    ``attrs["out_of_range"]`` sums the periods' counts of masked values (:mod:`dsm.samples`)."""
    tcfg = config.training
    computed = sample_tables(client, ds, periods(config.dates.start, config.dates.end), predictors,
                             how=tcfg.aggregation, min_valid_fraction=tcfg.min_valid_fraction, features=features,
                             keep="smap", ranges=True)
    counts = table_counts(computed)
    tables = [t for t in computed if len(t)]
    if not tables:
        cause = empty_cube_cause(ds) or "no day where SMAP and the static predictors are valid together"
        raise InputError(f"nothing to train on in the cube {config.stores.cube}: {cause}")
    table = pd.concat(tables, ignore_index=True)
    table.attrs[OUT_OF_RANGE_ATTR] = counts
    return table


def train_fusion(config: Config, client: Client, store: ModelStore, ds: xr.Dataset, *, force: bool = False,
                 progress: Callable[[str], None] | None = None) -> tuple[FusionCard, bool]:
    """Train the fusion method (module docstring); returns its card and whether it was trained
    in this call (False: an existing card was kept)."""
    say = progress or (lambda line: log.info(line))
    if not force and store.done(FUSION_KEY, FusionCard.from_dict):
        card = read_fusion_card(store)
        if card is not None:
            return card, False
    tcfg, fcfg = config.training, config.training.fusion
    predictors, groups = model_predictors(config, ds)
    sets = predictor_sets(predictors, groups, config.output.gap_free)
    all_features = feature_names(predictors)
    steps = Steps(say, "train", 1 + len(sets) + bool(tcfg.disaggregation), "model")
    steps.start()
    table = sample_table(config, client, ds, predictors, all_features)
    steps.step(f"fusion samples: {len(table)} SMAP cell-days")
    masked = dict(table.attrs.get(OUT_OF_RANGE_ATTR, {}))
    if masked:
        say("fusion samples: values outside their valid range, masked: "
            + describe({k: v for k, v in masked.items() if k != SMAP}, "1 km pixel-days")
            + f"; SMAP {masked.get(SMAP, 0)} cell-days")
    if len(table) < tcfg.min_samples:
        raise InputError(f"only {len(table)} SMAP cell-days have valid predictors in {config.stores.cube}: "
                         f"fewer than training.min_samples = {tcfg.min_samples}")
    per_36km = 36 // config.grid_region.coarse_km  # the blocks are block_cells 36 km cells a side on any SMAP grid
    fold = block_folds(table["date"].to_numpy(), table["row"].to_numpy(), table["col"].to_numpy(), fcfg.cv_folds,
                       fcfg.block_days, fcfg.block_cells * per_36km, tcfg.seed)
    monotone = tuple(RAIN_PREDICTORS) if fcfg.monotone_rain else ()
    variants = []
    for name, preds in sets.items():
        feats = feature_names(preds)
        rows = np.isfinite(table[list(feats)].to_numpy(np.float32)).all(axis=1)
        if rows.sum() < tcfg.min_samples or len(np.unique(fold[rows])) < fcfg.cv_folds:
            steps.step(f"fusion {name}: {int(rows.sum())} samples, too few: no {name} model")
            continue
        variants.append(Variant(name, tuple(preds), feats, rows, monotone_constraints((*feats, *DOY_FEATURES), monotone),
                                pixel_ranges(table[rows], feats)))
    if not variants or variants[0].name != "full":
        raise InputError("too few samples with every predictor valid to train the fusion method's full model "
                         f"({int(np.isfinite(table[list(all_features)]).all(axis=1).sum())} < training.min_samples)")
    records, search, params, oof_used, full_model = _fit_variants(config, client, store, table, variants, fold,
                                                                  steps)
    smap = smap_grid(zarr_reads.read_variable(ds, SMAP))[0]  # valid SMAP only
    em = estimate_error_model(smap, table_to_grid(table, oof_used, ds), default_var_smap=fcfg.smap_error_sd ** 2,
                              min_triplets=fcfg.min_triplets, max_carry_days=fcfg.max_carry_days,
                              decay_days=fcfg.decay_days)
    for w in em.warnings:
        say(f"fusion error model: {w}")
    disagg, disagg_card = (_disaggregation(config, client, store, ds, table, records[0],
                                           {**params, **monotone_constraints(records[0].features, monotone)})
                           if tcfg.disaggregation else (None, None))
    if tcfg.disaggregation:
        steps.step("fusion disaggregation model")
    gain = full_model.get_booster().get_score(importance_type="gain")
    feats = records[0].features
    imp = np.array([gain.get(f"f{i}", 0.0) for i in range(len(feats))], np.float64)
    card = FusionCard(
        predictors=predictors, params=params, search=tuple(s.record() for s in search),
        cv={"folds": fcfg.cv_folds, "block_days": fcfg.block_days, "block_cells": fcfg.block_cells,
            "block_smap_cells": fcfg.block_cells * per_36km, "n_samples": int(len(table)),
            "max_rounds": fcfg.max_rounds, "scheme": "blocks of days x cells"},
        variants=tuple(records), monotone_increasing=tuple(p for p in monotone if p in predictors),
        anomaly_partners=(rain_free_partners({r.name: r.predictors for r in records}, RAIN_PREDICTORS)
                          if fcfg.rain_free_anomaly else {}),
        error_model=em.to_dict(), var_anomaly=fcfg.anomaly_error_sd ** 2,
        anomaly_gain=fcfg.anomaly_gain,
        interval=config.output.interval if config.output.uncertainty != "none" else None,
        disaggregation=disagg, disaggregation_card=disagg_card,
        importance=dict(zip(feats, (imp / imp.sum() if imp.sum() > 0 else imp).round(6).tolist(), strict=True)),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), inputs_out_of_range=masked)
    write_fusion_card(store, card)
    say(f"fusion error model: SMAP error sd {em.var_smap ** 0.5:.4f} ({em.var_smap_method}, {em.n_triplets} "
        f"triplets), model error sd {em.var_model ** 0.5:.4f}, weight {em.weight:.2f}, decay {em.decay_days:.1f} d")
    return card, True


def _fit_variants(config: Config, client: Client, store: ModelStore, table: pd.DataFrame,
                  variants: Sequence[Variant], fold: np.ndarray, steps: Steps
                  ) -> tuple[list[ModelRecord], list[CvScore], dict[str, Any], np.ndarray, xgboost.XGBRegressor]:
    """Cross-validate and refit every variant (the full one first, whose search chooses the
    hyperparameters all share) and store the models; returns their records, the search, the
    chosen parameters, each table row's out-of-fold prediction (of the first variant that has
    the row) and the full model.

    The next companion's CV is submitted before the current one's results are taken, so the
    workers go from one CV to the next; the refits follow once every CV is done (:func:`_refit`).
    """
    tcfg, fcfg, device = config.training, config.training.fusion, config.cluster.device
    oof_used = np.full(len(fold), np.nan, np.float32)
    chosen: list[tuple[Variant, CvScore]] = []

    def cv(v: Variant, grid: list[dict[str, Any]]) -> tuple[np.ndarray, dict[tuple[int, int], DaskFuture]]:
        X, y = v.design(table)
        return X, submit_folds(client, X, y, fold[v.rows], grid, fcfg.cv_folds, fcfg.max_rounds, tcfg.seed, device)

    def choose(v: Variant, grid: list[dict[str, Any]], X: np.ndarray,
               jobs: Mapping[tuple[int, int], DaskFuture]) -> list[CvScore]:
        scores, oof = cross_validated(jobs, X, fold[v.rows], grid, fcfg.cv_folds)
        best = scores[0]
        chosen.append((v, best))
        fill = v.rows & ~np.isfinite(oof_used)
        oof_used[fill] = oof[fill[v.rows]]
        steps.step(f"fusion {v.name}: {int(v.rows.sum())} samples, CV RMSE {best.rmse:.4f} with {best.n_rounds} rounds")
        return scores

    full, companions = variants[0], variants[1:]
    grid = [{**g, **full.shape} for g in candidates(fcfg.grid)]
    search = choose(full, grid, *cv(full, grid))
    params = {k: v for k, v in search[0].params.items() if k not in full.shape}
    grids = [[{**params, **v.shape}] for v in companions]
    pending = deque(cv(v, g) for v, g in zip(companions[:1], grids[:1], strict=True))
    for i, v in enumerate(companions):
        if i + 1 < len(companions):  # queued behind this one's fits
            pending.append(cv(companions[i + 1], grids[i + 1]))
        choose(v, grids[i], *pending.popleft())  # its matrix and futures released once taken
    records, models = [], []
    for (v, best), (model, fit_on) in zip(chosen, _refit(client, table, chosen, tcfg.seed, device), strict=True):
        key = fusion_model_key(v.name)
        entry = store.save_model(key, model)
        n_train = int(v.rows.sum())
        store.write_card(key, {"variant": v.name, "model": entry, "cv": best.record(), "n_train": n_train,
                               "fit_workers": fit_on})
        records.append(ModelRecord(v.name, v.predictors, (*v.features, *DOY_FEATURES), key, entry["sha256"],
                                   n_train, best.n_rounds, round(best.rmse, 6), v.ranges, fit_on))
        models.append(model)
    return records, search, params, oof_used, models[0]


def _refit(client: Client, table: pd.DataFrame, chosen: Sequence[tuple[Variant, CvScore]], seed: int, device: str
           ) -> list[tuple[xgboost.XGBRegressor, int]]:
    """Each variant refitted on all its samples with its chosen parameters and rounds
    (:func:`dsm.models.pooled.fit_dask`): the model and the number of workers that held its rows.

    When every variant's rows fit one worker, the workers fit side by side, each its share of
    the variants one after another on a client thread of its own (shares of nearly equal cost,
    rows x features x rounds: :func:`dsm.task_order.balanced_shares`); else the fits run one
    after another. Nothing else runs on the workers meanwhile: ``xgboost.dask`` pins a fit's
    training task to the worker holding its rows but lets the scheduler move it
    (``allow_other_workers``), and one moved off a busy worker by work stealing fails XGBoost's
    own check of the worker.
    """
    def fit(v: Variant, best: CvScore, worker: str | None = None) -> tuple[xgboost.XGBRegressor, int]:
        X, y = v.design(table)
        return fit_dask(client, X, y, {**best.params, "n_estimators": best.n_rounds}, seed, device,
                        name=f"fusion {v.name} model", worker=worker)

    workers = worker_addresses(client)
    limits = memory_limits(client)
    if len(workers) < 2 or len(chosen) < 2 or any(fit_workers(v.design_bytes(), limits) > 1 for v, _ in chosen):
        return [fit(v, best) for v, best in chosen]
    route_worker_logs(client)  # once, before the threads: no routing task lands beside a fit
    shares = balanced_shares([v.design_bytes() * best.n_rounds for v, best in chosen],
                             min(len(workers), len(chosen)))

    def share(k: int) -> dict[int, tuple[xgboost.XGBRegressor, int]]:
        return {i: fit(*chosen[i], worker=workers[k]) for i in shares[k]}

    fitted: dict[int, tuple[xgboost.XGBRegressor, int]] = {}
    with ThreadPoolExecutor(len(shares), thread_name_prefix="dsm-fusion-refit") as pool:
        for part in [pool.submit(share, k) for k in range(len(shares))]:
            fitted.update(part.result())
    return [fitted[i] for i in range(len(chosen))]


def _disaggregation(config: Config, client: Client, store: ModelStore, ds: xr.Dataset, table: pd.DataFrame,
                    full: ModelRecord, params: Mapping[str, Any]) -> tuple[ModelRecord, dict[str, Any]]:
    """Fit and store the disaggregation model on 1 km pixels of the training days."""
    fcfg = config.training.fusion
    days = sorted(set(pd.DatetimeIndex(table["date"]).date))
    pixels = client.compute(pixel_sample_graph(ds, days, list(full.features), fcfg.pixels_per_cell,
                                               config.training.seed, config.training.min_valid_fraction)).result()
    model, card = client.submit(fit_disaggregation, pixels, list(full.features), dict(params), full.n_rounds,
                                config.training.seed, pure=False).result()
    key = fusion_model_key(DISAGGREGATION)
    entry = store.save_model(key, model)
    store.write_card(key, {"variant": DISAGGREGATION, "model": entry, **card})
    return ModelRecord(DISAGGREGATION, full.predictors, full.features, key, entry["sha256"], int(len(pixels)),
                       full.n_rounds, None, full.ranges), card


__all__ = ["train_fusion", "pixel_ranges", "Variant", "submit_folds", "cross_validated", "sample_table",
           "model_predictors"]
