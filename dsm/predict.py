"""Daily 1 km prediction into the output store (the ``dsm predict`` stage).

How a run goes
--------------
1. The client checks the stores against the configuration (the cube's grid and dates, an
   existing output store's grid, dates and chunks: another configuration's store is refused
   with the differences named), creates the output store's template when it is missing, and
   makes a **plan** for every day: the period's model (following ``reused_from``), its
   reduced (gap-free) and quantile variants, and the predictor ranges seen in training.
2. Every (time chunk, space chunk) block of the output store whose days are not all complete
   becomes one task (:func:`run_block`) on the workers. A task reads its block of the cube
   (through fsspec, no shared disk), builds float32 features of the valid land pixels only,
   applies the models (``Booster.inplace_predict`` for XGBoost), sets the origin bits, writes
   ``sm``, ``sm_unc``, ``sm_origin`` and ``sm_36km`` by chunk-aligned region writes, and
   returns small per-day summaries (counts, 36 km pairs for the consistency check).
3. When every block of a time chunk has landed the client records its days in the store's
   attributes (``days_done``, ``days_empty``, ``day_models``, ``consistency``); a block that
   failed leaves its days in ``days_failed`` and they are retried by the next run.

A rerun skips time chunks whose days are all done (or empty). A killed run leaves at most
some blocks written but unrecorded; the rerun writes them again with the same bytes, since
every block is a pure function of the cube and the models. Nothing in the store depends on
the order tasks finish (records are kept sorted; the 36 km statistics are computed from pairs
sorted by cell).

Choice of model per pixel (``output.gap_free``): the full predictor set when all of a pixel's
predictors are valid, else the first reduced variant whose predictors are (default: without
LST, then the static predictors alone); with ``gap_free: false`` such pixels stay empty, as in
the paper.

Method ``fusion`` (the default): before step 2 the client computes the fused 36 km cell means
of every day (:func:`dsm.cellmeans.fused_cells`: the pooled models on every cell-day's
aggregated predictors, fused with SMAP) and gives each block its slice; the block's map is the
fused cell mean plus the 1 km model's departure from its own cell mean
(:func:`dsm.cellmeans.fuse_block`). Method ``rao2022``: each period's model, as the paper.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import xgboost
import zarr
from distributed import Client

from dsm import fingerprint, products, store
from dsm.cellmeans import BlockCells, DayCells, block_cells, fuse_block, fused_cells, running_mean, within_cell_anomaly
from dsm.cluster import outcomes
from dsm.config import Config
from dsm.cube import API_NAMES, SPECS, Layout, open_cube
from dsm.errors import ConfigError, InputError, StoreError
from dsm.grid import FINE_PER_COARSE, Region, block_reduce_mean
from dsm.metrics import score
from dsm.features import DOY_FEATURES, doy_terms, feature_layer, source_of
from dsm.models.cards import FUSION_KEY, FusionCard, ModelRecord
from dsm.models.store import ModelStore
from dsm.models.variants import FULL, quantile_key, variant_key, variants_of
from dsm.periods import composite_8day_of, days as day_range, period_of
from dsm.ranges import SMAP, describe, merge_counts, screen, screen_layers
from dsm.runlock import Lease

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ plans
@dataclass(frozen=True)
class VariantPlan:
    """One model of a day: its predictors, model-store keys and training ranges."""

    name: str
    predictors: tuple[str, ...]
    point_key: str
    point_sha: str
    quantile_key: str | None = None
    quantile_sha: str | None = None
    ranges: tuple[tuple[float, float], ...] | None = None  # per feature, None: no range check
    doy: bool = False  # pooled model: day-of-year terms appended
    margin: float = 0.0  # conformal margin added to the quantile half width
    features: tuple[str, ...] | None = None  # model columns from the predictors (None: the predictors)

    @property
    def columns(self) -> tuple[str, ...]:
        """The model's feature columns before the day-of-year terms."""
        return self.features if self.features is not None else self.predictors

    def record(self) -> dict[str, Any]:
        """JSON-ready description, stored in ``day_models``."""
        return {"predictors": list(self.predictors), "model": self.point_key, "sha256": self.point_sha,
                "quantile": self.quantile_key}


@dataclass(frozen=True)
class DayPlan:
    """Which models make one day (or why none can)."""

    day: dt.date
    period: str
    model_period: str | None = None
    chosen: str | None = None
    reused: bool = False
    variants: tuple[VariantPlan, ...] = ()
    error: str | None = None
    disaggregation: VariantPlan | None = None  # fusion: averaged with the full variant

    def record(self) -> dict[str, Any]:
        """JSON-ready description, stored in ``day_models``."""
        rec = {"period": self.period, "model_period": self.model_period, "model": self.chosen,
               "reused": self.reused, "variants": {v.name: v.record() for v in self.variants}}
        if self.disaggregation is not None:
            rec["disaggregation"] = self.disaggregation.record()
        return rec

    def on(self, day: dt.date) -> DayPlan:
        """The same plan for another day."""
        return replace(self, day=day)


def _resolve(models: ModelStore, period: str) -> tuple[str | None, dict[str, Any] | None, bool, str | None]:
    card = models.read_card(period)
    if card is None:
        return None, None, False, f"period {period} has no model in {models.url} (run dsm train)"
    key, reused, seen = period, False, set()
    while card is not None and card.get("model") is None and card.get("reused_from"):
        seen.add(key)
        key, reused = card["reused_from"], True
        if key in seen:
            return None, None, True, f"period {period}: model cards form a cycle through {key}"
        card = models.read_card(key)
    if card is None or card.get("model") is None:
        return None, None, reused, f"period {period}: no stored model (reused_from {key} has none)"
    return key, card, reused, None


def make_plans(config: Config, models: ModelStore, day_list: Sequence[dt.date],
               card: FusionCard | None = None) -> list[DayPlan]:
    """The plan of every day (pure apart from reading model cards); ``card``: the fusion method's."""
    want_q = config.output.uncertainty == "quantile"
    by_period: dict[str, DayPlan] = {}
    plans = []
    for day in day_list:
        name = period_of(day).name
        if name not in by_period:
            by_period[name] = (_fusion_plan(card, name) if card is not None
                               else _period_plan(config, models, name, want_q))
        plans.append(by_period[name].on(day))
    return plans


def _record_plan(rec: ModelRecord) -> VariantPlan:
    features = tuple(f for f in rec.features if f not in DOY_FEATURES)
    return VariantPlan(rec.name, rec.predictors, rec.key, rec.sha256, doy=True, features=features,
                       ranges=tuple(tuple(rec.ranges[f]) for f in features) if rec.ranges else None)  # type: ignore[misc]


def _fusion_plan(card: FusionCard, name: str) -> DayPlan:
    disagg = _record_plan(card.disaggregation) if card.disaggregation is not None else None
    return DayPlan(dt.date.min, name, FUSION_KEY, "xgb (pooled, fused with SMAP)", False,
                   tuple(_record_plan(r) for r in card.variants), disaggregation=disagg)


def _period_plan(config: Config, models: ModelStore, name: str, want_q: bool) -> DayPlan:
    key, card, reused, error = _resolve(models, name)
    if error or key is None or card is None:
        return DayPlan(dt.date.min, name, error=error, reused=reused)
    if list(card.get("predictors", config.predictors)) != list(config.predictors):
        return DayPlan(dt.date.min, name, error=f"period {key}'s model uses predictors {card.get('predictors')}, "
                       f"the configuration has {list(config.predictors)}")
    variants = []
    for vname, preds in variants_of(config).items():
        vcard = models.read_card(variant_key(vname, key))
        if vname == FULL:
            point_key, sha = key, card["model"]["sha256"]
        elif vcard is None or vcard.get("model") is None:
            continue  # no reduced model (too few samples or trained before issue 4): pixels stay empty
        else:
            point_key, sha = variant_key(vname, key), vcard["model"]["sha256"]
        ranges = None
        if vcard and vcard.get("feature_ranges"):
            ranges = tuple(tuple(vcard["feature_ranges"][p]) for p in preds)
        qkey = qsha = None
        margin = 0.0
        if want_q:
            qcard = models.read_card(quantile_key(vname, key))
            if qcard is not None and qcard.get("model"):
                qkey, qsha = quantile_key(vname, key), qcard["model"]["sha256"]
                margin = float(qcard.get("conformal_margin") or 0.0)
        variants.append(VariantPlan(vname, preds, point_key, sha, qkey, qsha, ranges,  # type: ignore[arg-type]
                                    margin=margin))
    return DayPlan(dt.date.min, name, key, card.get("chosen"), reused, tuple(variants))


def fusion_card(models: ModelStore) -> FusionCard:
    """The fusion method's card, or a :class:`ConfigError` saying to train first."""
    raw = models.read_card(FUSION_KEY)
    if raw is None:
        raise ConfigError(f"no fusion model in {models.url}: run `dsm train` first (training.method: fusion)")
    return FusionCard.from_dict(raw)


# ------------------------------------------------------------------------------ worker side
@dataclass(frozen=True)
class BlockJob:
    """One (time chunk, space chunk) block of the output store: everything a worker needs."""

    cube: str
    output: str
    models: str
    storage_options: str  # JSON, hashable
    token: str  # run id: invalidates worker caches between runs
    t0: int
    t1: int
    y0: int
    y1: int
    x0: int
    x1: int
    plans: tuple[DayPlan, ...]
    clip: tuple[float, float] = (0.0, 1.0)
    residual_correction: bool = False
    threads: int = 1
    device: str = "cpu"  # XGBoost's device for prediction (cluster.device)
    cells: BlockCells | None = None  # fusion method: the block's fused cell means
    var_anomaly: float = 0.0
    anomaly_gain: float = 1.0
    interval: float | None = None
    smooth: str = "none"
    rain_spinup: int = 0  # rain.spinup_days: flag pixel-days with a shorter precipitation record
    window: int = 1  # fusion: days of the centred running mean of the within-cell anomaly
    before: tuple[DayPlan, ...] = ()  # the plans of the window's days before and after the block
    after: tuple[DayPlan, ...] = ()


@functools.lru_cache(maxsize=8)
def _open(url: str, so: str, token: str, kind: str) -> xr.Dataset:
    opts = json.loads(so)
    if kind == "raw":
        return xr.open_zarr(url, chunks=None, consolidated=False, storage_options=opts or None,
                            mask_and_scale=True)
    return store.open_store(url, kind, opts)


@functools.lru_cache(maxsize=64)
def load_model(models_url: str, so: str, key: str, sha: str, threads: int = 1, device: str = "cpu") -> Any:
    """A stored model, cached per worker process (keyed by its SHA-256); XGBoost models come
    back as a Booster set to ``threads`` and ``device``."""
    model = ModelStore(models_url, json.loads(so)).load_model(key)
    if isinstance(model, xgboost.XGBModel):
        booster = model.get_booster()
        booster.set_param({"nthread": threads, "device": device})
        return booster
    return model


def apply_model(model: Any, X: np.ndarray) -> np.ndarray:
    """Predictions of a loaded model on float32 features: ``inplace_predict`` for XGBoost."""
    if X.shape[0] == 0:
        return np.zeros((0,), np.float32)
    if isinstance(model, xgboost.Booster):
        return np.asarray(model.inplace_predict(X))
    return np.asarray(model.predict(X))


def _read(ds: xr.Dataset, name: str, **index: Any) -> np.ndarray:
    return np.asarray(ds[name].isel(index).values)


def block_features(cube: xr.Dataset, day: dt.date, names: Sequence[str], ys: slice, xs: slice,
                   cache: dict[Any, np.ndarray]) -> dict[str, np.ndarray]:
    """Each predictor of ``day`` on a block: the day's daily layers, the 8-day and 16-day
    composites covering it, the static layers (float32, NaN where missing)."""
    out = {}
    times = cube.indexes
    for name in names:
        axis = SPECS[name].axis if name in SPECS else "static"
        if axis == "daily":
            key = (name, "d", day)
            index = {"time": int(times["time"].get_loc(pd.Timestamp(day)))}
        elif axis == "precip":
            key = (name, "d", day)
            index = {"time_precip": int(times["time_precip"].get_loc(pd.Timestamp(day)))}
        elif axis == "8day":
            start = composite_8day_of(day).start
            key, index = (name, "8", start), {"time_8d": int(times["time_8d"].get_loc(pd.Timestamp(start)))}
        elif axis == "16day":
            start = period_of(day).start
            key, index = (name, "16", start), {"time_16d": int(times["time_16d"].get_loc(pd.Timestamp(start)))}
        else:
            key, index = (name, "s", None), {}
        if key not in cache:
            cache[key] = _read(cube, name, **index, y=ys, x=xs).astype(np.float32, copy=False)
        out[name] = cache[key]
    return out


def model_day(feats: Mapping[str, np.ndarray], land: np.ndarray, smap: np.ndarray, plan: DayPlan,
              load: Callable[[str, str], Any], rain_spinup: int = 0, *,
              out_of_range: Mapping[str, np.ndarray] | None = None, smap_out_of_range: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """The models' 1 km values (unclipped), uncertainty and origin of one day on one block
    (pure given ``load``).

    A value outside its variable's valid range (:mod:`dsm.ranges`) is missing, like a cloud:
    the pixel gets the first variant whose predictors are all valid. Where that changed what a
    predicted pixel got (another variant than the raw values would have chosen, or its cell's
    SMAP dropped), the pixel gets bit 256 (``input_out_of_range``).

    Parameters
    ----------
    feats
        Predictor name -> 2-D float32 array of the block, as read (screened here), or already
        screened when ``out_of_range`` is given.
    land
        Boolean land mask of the block.
    smap
        SMAP of the block's 36 km cells (NaN: no observation), as read (screened here), or
        already screened when ``smap_out_of_range`` is given.
    plan
        The day's plan (variants in order of preference).
    load
        ``load(key, sha)`` -> a model from :func:`load_model`.
    rain_spinup
        Pixels whose model uses antecedent precipitation indices get bit 128 where
        ``feats["api_age"]`` (days since the record's last missing day) is below it.
    out_of_range, smap_out_of_range
        The masks of the values already screened out of ``feats`` (predictor -> 2-D bool; a
        predictor without one had none) and of ``smap`` (:func:`dsm.ranges.screen_layers`,
        :func:`dsm.ranges.screen`).

    Returns
    -------
    model, unc (float32, NaN where not predicted), origin (uint16) and per-variant pixel counts.
    """
    if out_of_range is None:
        feats, out_of_range = screen_layers(feats)
    if smap_out_of_range is None:
        smap, smap_out_of_range = screen(SMAP, smap)
    shape = land.shape
    sm = np.full(shape, np.nan, np.float32)
    unc = np.full(shape, np.nan, np.float32)
    origin = np.zeros(shape, products.ORIGIN_DTYPE)
    counts: dict[str, int] = {}
    remaining = land.copy()
    no_smap = _to_pixels(~np.isfinite(smap))
    doy = doy_terms(np.array([np.datetime64(plan.day, "ns")]))[0]
    layers = {c: feature_layer(c, feats[source_of(c)]) for v in plan.variants for c in v.columns}
    masked = {c: out_of_range[source_of(c)] for c in layers if source_of(c) in out_of_range}
    raw_remaining = land.copy()  # the variant choice the raw values would have made
    changed = _to_pixels(np.asarray(smap_out_of_range, bool))
    for v in plan.variants:
        ok = remaining.copy()
        for c in v.columns:
            ok &= np.isfinite(layers[c])
        remaining &= ~ok
        if masked:
            raw_ok, hit = raw_remaining.copy(), np.zeros(shape, bool)
            for c in v.columns:
                valid = np.isfinite(layers[c])
                if c in masked:
                    valid |= masked[c]
                    hit |= masked[c]
                raw_ok &= valid
            raw_remaining &= ~raw_ok
            changed |= raw_ok & hit
        n = int(ok.sum())
        counts[v.name] = n
        if n == 0:
            continue
        X = np.empty((n, len(v.columns) + (2 if v.doy else 0)), np.float32)
        for j, c in enumerate(v.columns):
            X[:, j] = layers[c][ok]
        if v.doy:
            X[:, len(v.columns):] = doy
        pred = apply_model(load(v.point_key, v.point_sha), X).astype(np.float32).reshape(n)
        if v.name == FULL and plan.disaggregation is not None:
            d = plan.disaggregation
            pred = 0.5 * (pred + apply_model(load(d.point_key, d.point_sha), X).astype(np.float32).reshape(n))
        sm[ok] = pred
        bits = np.full(n, products.ALL_PREDICTORS if v.name == FULL else products.REDUCED, products.ORIGIN_DTYPE)
        if plan.reused:
            bits |= products.REUSED
        if v.ranges is not None:
            lo = np.array([r[0] for r in v.ranges], np.float32)
            hi = np.array([r[1] for r in v.ranges], np.float32)
            outside = ((X[:, : len(lo)] < lo) | (X[:, : len(lo)] > hi)).any(axis=1)
            bits[outside] |= products.EXTRAPOLATION
        bits[no_smap[ok]] |= products.NO_SMAP
        if rain_spinup and "api_age" in feats and any(p in API_NAMES for p in v.predictors):
            bits[feats["api_age"][ok] < rain_spinup] |= products.RAIN_MEMORY_SHORT
        origin[ok] = bits
        if v.quantile_key and v.quantile_sha:
            q = apply_model(load(v.quantile_key, v.quantile_sha), X).reshape(n, -1).astype(np.float32)
            unc[ok] = np.maximum(np.abs(q.max(axis=1) - q.min(axis=1)) / 2 + v.margin, 0.0)
    origin[changed & (origin > 0)] |= products.INPUT_OUT_OF_RANGE
    return sm, unc, origin, counts


def _to_pixels(cells: np.ndarray) -> np.ndarray:
    """A (cy, cx) array repeated onto the 1 km pixels of its cells."""
    return np.repeat(np.repeat(cells, FINE_PER_COARSE, 0), FINE_PER_COARSE, 1)


def finish_day(model: np.ndarray, unc: np.ndarray, origin: np.ndarray, smap: np.ndarray,
               clip: tuple[float, float] = (0.0, 1.0), residual_correction: bool = False,
               cells: DayCells | None = None, anomaly: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The day's map from the model's (:func:`model_day`): fused with the cell means (fusion
    method; ``anomaly`` replaces the model's own within-cell anomaly, e.g. its running mean),
    else clipped and optionally shifted to SMAP's cell means (``residual_correction``)."""
    if cells is not None:
        return fuse_block(model, origin, cells, clip, anomaly)
    sm = np.where(np.isfinite(model), np.clip(model, *clip), np.nan).astype(np.float32)
    if residual_correction:
        sm = residual_correct(sm, smap, clip)
    return sm, unc, origin


def predict_day(feats: Mapping[str, np.ndarray], land: np.ndarray, smap: np.ndarray, plan: DayPlan,
                load: Callable[[str, str], Any], clip: tuple[float, float] = (0.0, 1.0),
                residual_correction: bool = False, cells: DayCells | None = None, rain_spinup: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Soil moisture, uncertainty, origin and per-variant pixel counts of one day on one block:
    :func:`model_day` then :func:`finish_day` (pure given ``load``; inputs as read, screened
    here, :mod:`dsm.ranges`)."""
    smap, smap_bad = screen(SMAP, smap)
    model, unc, origin, counts = model_day(feats, land, smap, plan, load, rain_spinup, smap_out_of_range=smap_bad)
    return (*finish_day(model, unc, origin, smap, clip, residual_correction, cells), counts)


def residual_correct(sm: np.ndarray, smap: np.ndarray, clip: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Shift each cell's pixels so the cell mean equals SMAP where SMAP observed it (``smap``
    screened: :func:`run_block` and :func:`predict_day` pass only valid values, :mod:`dsm.ranges`)."""
    means = block_reduce_mean(sm)
    shift = np.where(np.isfinite(smap) & np.isfinite(means), smap - means, 0.0).astype(np.float32)
    full = np.repeat(np.repeat(shift, FINE_PER_COARSE, 0), FINE_PER_COARSE, 1)
    return np.where(np.isfinite(sm), np.clip(sm + full, *clip), np.nan).astype(np.float32)


def run_block(job: BlockJob) -> dict[str, Any]:
    """Predict and write one block of the output store (runs on a worker).

    Returns per-day summaries: pixel counts per variant, origin bit counts, predictors with no
    valid land pixel in the block, the (cell, 36 km mean, SMAP) pairs and the values masked as
    impossible (``out_of_range``: land pixels per predictor, SMAP cells under ``smap_sm``).
    """
    so = job.storage_options
    cube = _open(job.cube, so, job.token, "raw")
    out = _open(job.output, so, job.token, products.KIND)
    ys, xs = slice(job.y0, job.y1), slice(job.x0, job.x1)
    cys, cxs = slice(job.y0 // FINE_PER_COARSE, job.y1 // FINE_PER_COARSE), slice(job.x0 // FINE_PER_COARSE, job.x1 // FINE_PER_COARSE)
    land = _read(cube, "land_mask", y=ys, x=xs) == 1
    r = cube.attrs["region"]
    cell_ids = Region(r["row0"], r["col0"], r["nrows"], r["ncols"]).cell_ids[cys, cxs]
    nt = job.t1 - job.t0
    shape = (nt, job.y1 - job.y0, job.x1 - job.x0)
    sm = np.full(shape, np.nan, np.float32)
    unc = np.full(shape, np.nan, np.float32)
    origin = np.zeros(shape, products.ORIGIN_DTYPE)
    sm36 = np.full((nt, cell_ids.shape[0], cell_ids.shape[1]), np.nan, np.float32)
    cache: dict[Any, np.ndarray] = {}
    summaries = []
    all_names = sorted({p for plan in job.plans for v in plan.variants for p in v.predictors})
    if job.rain_spinup and any(p in API_NAMES for p in all_names):
        all_names.append("api_age")
    bc = job.cells

    def load(key: str, sha: str) -> Any:
        return load_model(job.models, so, key, sha, job.threads, job.device)

    # the block's days (and the halo days of a running-mean anomaly) are consecutive: read each
    # daily layer (and SMAP) for all of them at once, rather than decoding a time chunk per day
    seq = (*job.before, *job.plans, *job.after)
    day_index = [int(cube.indexes["time"].get_loc(pd.Timestamp(plan.day))) for plan in seq]
    ct0, ct1 = min(day_index), max(day_index) + 1
    spinup = int(cube.sizes.get("time_precip", cube.sizes["time"])) - int(cube.sizes["time"])
    for name in all_names:
        if name in SPECS and SPECS[name].axis in ("daily", "precip"):
            shift = spinup if SPECS[name].axis == "precip" else 0
            dim = "time_precip" if SPECS[name].axis == "precip" else "time"
            layers = _read(cube, name, **{dim: slice(ct0 + shift, ct1 + shift)}, y=ys, x=xs).astype(np.float32, copy=False)
            cache.update({(name, "d", plan.day): layers[ct - ct0] for plan, ct in zip(seq, day_index)})
    smaps, smaps_bad = screen(SMAP, _read(cube, SMAP, time=slice(ct0, ct1), cy=cys, cx=cxs).astype(np.float32))

    modelled: dict[dt.date, tuple[Any, ...]] = {}
    missing: dict[dt.date, list[str]] = {}
    masked: dict[dt.date, dict[str, int]] = {}
    for plan, ct in zip(seq, day_index):
        if plan.error:
            continue
        feats, bad = screen_layers(block_features(cube, plan.day, all_names, ys, xs, cache))
        modelled[plan.day] = model_day(feats, land, smaps[ct - ct0], plan, load, job.rain_spinup,
                                       out_of_range=bad, smap_out_of_range=smaps_bad[ct - ct0])
        masked[plan.day] = merge_counts([{p: int((m & land).sum()) for p, m in bad.items()},
                                         {SMAP: int(smaps_bad[ct - ct0].sum())}])
        missing[plan.day] = [p for p in all_names if p != "api_age" and not np.isfinite(feats[p][land]).any()]
        for key in [k for k in cache if k[1] == "d" and k[2] == plan.day]:  # not needed again
            del cache[key]
    anomalies = None
    if job.window > 1 and bc is not None:
        nan = np.full(land.shape, np.nan, np.float32)
        stack = np.stack([within_cell_anomaly(modelled[p.day][0]) if p.day in modelled else nan for p in seq])
        anomalies = running_mean(stack, job.window)[len(job.before):len(job.before) + nt]

    for i, plan in enumerate(job.plans):
        info: dict[str, Any] = {"day": plan.day.isoformat(), "land": int(land.sum())}
        if plan.error:
            info["error"] = plan.error
            summaries.append(info)
            continue
        smap = smaps[day_index[len(job.before) + i] - ct0]
        cells = None if bc is None else DayCells(
            bc.cell_mean[i], bc.increment[i], bc.variance[i], bc.state[i], job.var_anomaly, job.anomaly_gain,
            job.interval, None if bc.halo is None else bc.halo[i], job.smooth,
            None if bc.screened is None else bc.screened[i])
        model, u, o, counts = modelled[plan.day]
        s, u, o = finish_day(model, u, o, smap, job.clip, job.residual_correction, cells,
                             None if anomalies is None else anomalies[i])
        sm[i], unc[i], origin[i] = s, u, o
        sm36[i] = block_reduce_mean(s)
        info["counts"] = counts
        info["origin"] = {str(b): n for b, n in products.origin_counts(o).items()}
        info["missing"] = missing[plan.day]
        info["out_of_range"] = masked[plan.day]
        ok = np.isfinite(sm36[i]) & np.isfinite(smap)
        info["pairs"] = [[int(c), float(a), float(b)] for c, a, b in zip(cell_ids[ok], sm36[i][ok], smap[ok])]
        summaries.append(info)
    coords = {"time": out["time"].values[job.t0:job.t1], "y": out["y"].values[ys], "x": out["x"].values[xs]}
    part = xr.Dataset({"sm": (("time", "y", "x"), sm), "sm_unc": (("time", "y", "x"), unc),
                       "sm_origin": (("time", "y", "x"), origin)}, coords=coords)
    store.write_region(job.output, part, json.loads(so) or None, out)
    part36 = xr.Dataset({"sm_36km": (("time", "cy", "cx"), sm36)},
                        coords={"time": coords["time"], "cy": out["cy"].values[cys], "cx": out["cx"].values[cxs]})
    store.write_region(job.output, part36, json.loads(so) or None, out)
    return {"t0": job.t0, "y0": job.y0, "x0": job.x0, "days": summaries}


# ------------------------------------------------------------------------------ client side
@dataclass
class PredictReport:
    """What a prediction run did."""

    days: list[str]
    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    empty: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    pixels: int = 0  # valid pixel-days predicted in this run
    seconds: float = 0.0
    #: day -> values masked as impossible (dsm.ranges) on the day's blocks: 1 km land pixels per
    #: predictor, SMAP cells under ``smap_sm`` (days predicted in this run, only where any)
    out_of_range: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the same over the fusion method's 36 km pass, every day of the cube (SMAP: cell-days)
    out_of_range_cells: dict[str, int] = field(default_factory=dict)


def check_inputs(config: Config, cube: xr.Dataset) -> None:
    """The cube must be on the configured grid and cover the configured dates."""
    want = config.grid_region.to_dict()
    if cube.attrs.get("region") != want:
        raise StoreError(f"the cube {config.stores.cube} covers region {cube.attrs.get('region')}, "
                         f"the configuration has {want}: it was written by another configuration")
    start, end = dt.date.fromisoformat(cube.attrs["start"]), dt.date.fromisoformat(cube.attrs["end"])
    if config.dates.start < start or config.dates.end > end:
        raise StoreError(f"the cube {config.stores.cube} holds {start}..{end}, the configuration asks for "
                         f"{config.dates.start}..{config.dates.end}")
    missing = [p for p in (*config.predictors, "land_mask", "smap_sm") if p not in cube.data_vars]
    if missing:
        raise InputError(f"the cube {config.stores.cube} lacks {missing}")


def open_or_create_output(config: Config, overwrite: bool = False) -> xr.Dataset:
    """The output store, created from its template when missing (or when ``overwrite``)."""
    url, so = config.stores.output, config.stores.storage_options
    if url is None:
        raise ConfigError("stores.output must be set to predict (where the daily maps go)")
    layout = Layout.from_config(config)
    interval = config.output.interval if config.output.uncertainty == "quantile" else None
    exists = True
    try:
        ds = products.open_products(url, so)
    except StoreError as exc:
        if "no Zarr store" not in str(exc):
            raise
        exists = False
    if overwrite or not exists:
        attrs = {"method": config.training.method, "predictors": list(config.predictors), "gap_free": config.output.gap_free,
                 "residual_correction": config.output.residual_correction,
                 "reduced_sets": [list(g) for g in config.output.reduced_sets], "models": config.stores.models,
                 "settings": fingerprint.record(config, "products")}
        products.create_products(url, layout, interval, attrs, so, overwrite=True)
        ds = products.open_products(url, so)
    fingerprint.check_settings(ds.attrs.get("settings"), config, "products", url,
                               "`dsm predict CONFIG --overwrite` replaces the store")
    products.check_layout(ds, layout, url)
    products.check_origin(ds, url)
    return ds


def record_attrs(url: str, attrs: Mapping[str, Any], storage_options: Mapping[str, Any] | None = None) -> None:
    """Update store attributes in ONE metadata write (zarr's ``attrs.update`` writes once per key,
    so a run killed between keys would leave ``days_done`` ahead of ``day_models``)."""
    group = zarr.open_group(url, mode="r+", storage_options=dict(storage_options or {}) or None)
    group.update_attributes(json.loads(json.dumps(dict(attrs))))


def _sorted(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in sorted(d)}


def consistency(pairs: Sequence[Sequence[float]]) -> dict[str, float | int | None]:
    """R, RMSE and bias (map minus SMAP) of the 36 km block means against SMAP for one day."""
    if not pairs:
        return {"r": None, "rmse": None, "bias": None, "n": 0}
    arr = np.array(sorted(pairs), dtype=np.float64)
    s = score(arr[:, 1], arr[:, 2], bias_convention="product_minus_reference", min_n=2) if len(arr) >= 2 else None

    def f(v: float) -> float | None:
        return None if v is None or not np.isfinite(v) else round(float(v), 6)

    if s is None:
        return {"r": None, "rmse": f(abs(arr[0, 1] - arr[0, 2])), "bias": f(arr[0, 1] - arr[0, 2]), "n": 1}
    return {"r": f(s.r), "rmse": f(s.rmse), "bias": f(s.bias), "n": int(s.n)}


def predict(config: Config, client: Client, *, overwrite: bool = False, only_days: Sequence[dt.date] | None = None,
            progress: Callable[[str], None] | None = None, lease: Lease | None = None) -> PredictReport:
    """Predict every day of ``config`` into ``stores.output`` on ``client``'s workers.

    Parameters
    ----------
    config
        The run configuration (``stores.cube``, ``stores.models``, ``stores.output``, ``output``).
    client
        The cluster's client.
    overwrite
        Replace the output store (else an existing one is resumed).
    only_days
        Restrict the run to the time chunks holding these days.
    progress
        Called with one line per finished time chunk.
    lease
        The run's lease on the output store (:class:`dsm.runlock.Lease`), checked before the
        store is created and before each record of finished days.

    Raises
    ------
    ConfigError
        ``stores.output`` or ``stores.models`` unset.
    LockLostError
        The lease was taken over: nothing more is recorded.
    StoreError
        The cube or an existing output store does not match the configuration.
    """
    import time

    t_start = time.perf_counter()
    say = progress or (lambda line: log.info(line))
    if not config.stores.models:
        raise ConfigError("stores.models must be set to predict (where dsm train stored the models)")
    so = config.stores.storage_options
    cube = open_cube(config.stores.cube, so)
    check_inputs(config, cube)
    if lease is not None:
        lease.check()
    out = open_or_create_output(config, overwrite)
    models = ModelStore(config.stores.models, so)
    fingerprint.check_settings(models.read_settings(), config, "models", config.stores.models,
                               "`dsm train CONFIG --force` retrains them, or point stores.models at models "
                               "trained with these settings")
    all_days = list(day_range(config.dates.start, config.dates.end))
    card = fusion_card(models) if config.training.method == "fusion" else None
    plans = make_plans(config, models, all_days, card)
    report = PredictReport([d.isoformat() for d in all_days])
    attrs = dict(out.attrs)
    done = set(attrs.get("days_done", []))
    empty = dict(attrs.get("days_empty", {}))
    failed = dict(attrs.get("days_failed", {}))
    day_models = dict(attrs.get("day_models", {}))
    cons = dict(attrs.get("consistency", {}))
    oor = dict(attrs.get("inputs_out_of_range", {}))
    layout = Layout.from_config(config)
    tchunk, schunk = layout.time_chunk, layout.space_chunk
    ny, nx = config.grid_region.fine_shape
    token = uuid.uuid4().hex
    so_json = json.dumps(so, sort_keys=True)
    wanted = {d for d in only_days} if only_days else None
    jobs: dict[int, list[BlockJob]] = {}
    pending = []
    for t0 in range(0, len(all_days), tchunk):
        names = [d.isoformat() for d in all_days[t0:t0 + tchunk]]
        if wanted is not None and not wanted & set(all_days[t0:t0 + tchunk]):
            continue
        if all(n in done or n in empty for n in names):
            report.skipped += names
            continue
        pending.append(t0)
    fused = screened = None
    if card is not None and pending:  # a rerun with nothing left to do skips the 36 km pass too
        say("fusing the model's cell means with SMAP")
        cm = fused_cells(client, cube, card, lambda rec: models.load_model(rec.key), config.dates.start,
                         config.dates.end, config.training.aggregation, config.training.min_valid_fraction)
        fused, screened, report.out_of_range_cells = cm.fused, cm.screened, cm.out_of_range
        if cm.out_of_range:
            say("36 km cell means: values outside their valid range, masked: "
                + describe({k: v for k, v in cm.out_of_range.items() if k != SMAP}, "1 km pixel-days")
                + f"; SMAP {cm.out_of_range.get(SMAP, 0)} cell-days")
    cube_t0 = int(cube.indexes["time"].get_loc(pd.Timestamp(all_days[0])))
    f = FINE_PER_COARSE

    def cells_of(t0: int, t1: int, y0: int, y1: int, x0: int, x1: int) -> BlockCells | None:
        if fused is None:
            return None
        return block_cells(fused, cube_t0 + t0, cube_t0 + t1, y0 // f, -(-y1 // f), x0 // f, -(-x1 // f),
                           smooth=config.training.fusion.smooth, screened=screened)

    fusion_args: dict[str, Any] = {}
    half = 0
    if card is not None:
        fusion_args = {"var_anomaly": card.var_anomaly, "anomaly_gain": card.anomaly_gain,
                       "smooth": config.training.fusion.smooth,
                       "interval": config.output.interval if config.output.uncertainty != "none" else None,
                       "window": config.training.fusion.anomaly_window_days}
        half = config.training.fusion.anomaly_window_days // 2
    for t0 in pending:
        t1 = min(t0 + tchunk, len(all_days))
        if half:
            fusion_args.update(before=tuple(plans[max(0, t0 - half):t0]), after=tuple(plans[t1:t1 + half]))
        jobs[t0] = [BlockJob(config.stores.cube, config.stores.output, config.stores.models, so_json, token,  # type: ignore[arg-type]
                             t0, t1, y0, min(y0 + schunk, ny), x0, min(x0 + schunk, nx), tuple(plans[t0:t1]),
                             tuple(config.output.clip), config.output.residual_correction, config.output.predict_threads,
                             config.cluster.device,
                             cells_of(t0, t1, y0, min(y0 + schunk, ny), x0, min(x0 + schunk, nx)),
                             rain_spinup=config.rain.spinup_days, **fusion_args)
                    for y0 in range(0, ny, schunk) for x0 in range(0, nx, schunk)]
    futures = {client.submit(run_block, job, pure=False): job for js in jobs.values() for job in js}
    results: dict[int, list[dict[str, Any]]] = {t0: [] for t0 in jobs}
    errors: dict[int, str] = {}
    remaining = {t0: len(js) for t0, js in jobs.items()}
    for job, result, exc in outcomes(futures):
        if exc is None:
            results[job.t0].append(result)
        else:  # the block's days are retried by the next run
            errors.setdefault(job.t0, f"block y {job.y0}:{job.y1}, x {job.x0}:{job.x1}: {type(exc).__name__}: {exc}")
        remaining[job.t0] -= 1
        if remaining[job.t0]:
            continue
        t0 = job.t0
        for i, plan in enumerate(plans[t0:t0 + len(jobs[t0][0].plans)]):
            name = plan.day.isoformat()
            if t0 in errors or plan.error:
                failed[name] = plan.error or errors[t0]
                done.discard(name)
                report.failed[name] = failed[name]
                continue
            infos = [r["days"][i] for r in results[t0]]
            n = sum(sum(info["counts"].values()) for info in infos)
            land = sum(info["land"] for info in infos)
            failed.pop(name, None)
            if n == 0 and land > 0:
                missing = sorted(set.intersection(*(set(info["missing"]) for info in infos)))
                empty[name] = ("no land pixel has the predictors of any model"
                               + (f"; missing all day: {', '.join(missing)}" if missing else ""))
                report.empty[name] = empty[name]
            else:
                done.add(name)
                empty.pop(name, None)
                report.predicted.append(name)
            report.pixels += n
            day_models[name] = plan.record()
            cons[name] = consistency([p for info in infos for p in info["pairs"]])
            counts = merge_counts(info.get("out_of_range", {}) for info in infos)
            if counts:
                oor[name] = report.out_of_range[name] = counts
            else:
                oor.pop(name, None)
        if lease is not None:
            lease.check()
        record_attrs(config.stores.output, {  # type: ignore[arg-type]
            "days_done": sorted(done), "days_empty": _sorted(empty), "days_failed": _sorted(failed),
            "day_models": _sorted(day_models), "consistency": _sorted(cons),
            "inputs_out_of_range": _sorted(oor)}, so)
        names = [p.day.isoformat() for p in plans[t0:t0 + len(jobs[t0][0].plans)]]
        say(f"{names[0]}..{names[-1]}: " + ("FAILED " + errors[t0] if t0 in errors else "written"))
    report.predicted.sort()
    report.out_of_range = _sorted(report.out_of_range)
    report.seconds = time.perf_counter() - t_start
    return report


def status(config: Config) -> dict[str, Any]:
    """Periods trained, days predicted/empty/failed and exported (for ``dsm status``)."""
    so = config.stores.storage_options
    out: dict[str, Any] = {"periods": {}, "days": len(list(day_range(config.dates.start, config.dates.end)))}
    if config.stores.models:
        models = ModelStore(config.stores.models, so)
        from dsm.periods import periods

        if config.training.method == "fusion":
            raw = models.read_card(FUSION_KEY)
            out["periods"][FUSION_KEY] = ("missing" if raw is None else "trained (pooled xgb: "
                                          + ", ".join(v["name"] for v in raw["variants"]) + ")")
        for p in periods(config.dates.start, config.dates.end) if config.training.method == "rao2022" else ():
            card = models.read_card(p.name)
            out["periods"][p.name] = ("missing" if card is None else
                                      f"{card.get('status')} ({card.get('chosen') or 'from ' + str(card.get('reused_from'))})")
    if config.stores.output:
        try:
            ds = products.open_products(config.stores.output, so)
        except StoreError as exc:
            out["output"] = str(exc)
        else:
            a = ds.attrs
            out.update(predicted=len(a.get("days_done", [])), empty=a.get("days_empty", {}),
                       failed=a.get("days_failed", {}), exported=len(a.get("days_exported", {})))
    return out
