"""The models of a block's days, one call per model per block (pure given the model loader).

:func:`model_days` chooses each pixel-day's variant for all the days of a block at once
(``(t, y, x)`` boolean masks), builds each variant's design matrix over all its pixel-days
(each row's day-of-year terms from the row's own day), calls every stored model once over all
the rows it predicts in the block (its variant's own rows, and those it predicts as the
disaggregation model or as another variant's anomaly partner) and scatters the values back.
:func:`model_day` is its one-day case. A model's prediction of a row does not depend on the
other rows of its batch (``Booster.inplace_predict`` predicts row by row), so a block gives,
bit for bit, what its days give one by one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost

from dsm import products
from dsm.cube import API_NAMES
from dsm.dayplans import DayPlan, VariantPlan
from dsm.features import doy_terms, feature_layer, source_of
from dsm.grid import repeat_to_fine
from dsm.models.variants import FULL
from dsm.ranges import SMAP, screen, screen_layers

ModelKey = tuple[str, str]  # (model-store key, SHA-256)


def apply_model(model: Any, X: np.ndarray) -> np.ndarray:
    """Predictions of a loaded model on float32 features (rows in any memory order):
    ``inplace_predict`` for XGBoost, ``predict`` on a C-ordered copy for the others."""
    if X.shape[0] == 0:
        return np.zeros((0,), np.float32)
    if isinstance(model, xgboost.Booster):
        return np.asarray(model.inplace_predict(X))
    return np.asarray(model.predict(np.ascontiguousarray(X)))


class _Calls:
    """The rows each model is asked for, gathered before any model runs, then one call per model."""

    def __init__(self) -> None:
        self.asked: dict[ModelKey, list[np.ndarray]] = {}
        self.answers: dict[ModelKey, list[np.ndarray]] = {}

    def ask(self, v: VariantPlan, X: np.ndarray, quantile: bool = False) -> tuple[ModelKey, int]:
        """Ask ``v``'s point (or quantile) model for the rows of ``X``; returns the handle of the answer."""
        key: ModelKey = (v.quantile_key, v.quantile_sha) if quantile else (v.point_key, v.point_sha)  # type: ignore[assignment]
        batches = self.asked.setdefault(key, [])
        batches.append(X)
        return key, len(batches) - 1

    def run(self, load: Callable[[str, str], Any]) -> None:
        """One call of each model over all the rows asked of it."""
        for key, batches in self.asked.items():
            X = batches[0] if len(batches) == 1 else np.concatenate(batches)
            y = apply_model(load(*key), X)
            y = y.reshape(X.shape[0], -1)  # rows (a quantile model: one column per quantile)
            self.answers[key] = np.split(y, np.cumsum([len(b) for b in batches])[:-1])
        self.asked.clear()

    def answer(self, handle: tuple[ModelKey, int]) -> np.ndarray:
        """The rows a handle asked for, ``(n, outputs)``."""
        return self.answers[handle[0]][handle[1]]


@dataclass
class _Part:
    """The pixel-days one variant of one day plan predicts in the block, and the calls it waits for."""

    plan: DayPlan
    variant: VariantPlan
    index: np.ndarray  # flat indices into (t, y, x) of the pixel-days, in C order
    origin: np.ndarray  # their origin bits
    point: tuple[ModelKey, int]
    disaggregation: tuple[ModelKey, int] | None
    partner: tuple[ModelKey, int] | None
    quantile: tuple[ModelKey, int] | None


@dataclass
class _Block:
    """The block's inputs every variant reads: feature layers and their finite masks ``(t, y, x)``,
    the screened-out values' masks, each day's day-of-year terms ``(t, 2)``, and flat ``(t*y*x,)``
    no-SMAP mask and precipitation-record ages."""

    layers: dict[str, np.ndarray]
    finite: dict[str, np.ndarray]
    masked: dict[str, np.ndarray]
    doy: np.ndarray
    no_smap: np.ndarray
    api_age: np.ndarray | None
    rain_spinup: int


def model_days(feats: Mapping[str, np.ndarray], land: np.ndarray, smaps: np.ndarray, plans: Sequence[DayPlan],
               load: Callable[[str, str], Any], rain_spinup: int = 0, *,
               out_of_range: Mapping[str, np.ndarray] | None = None, smap_out_of_range: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, int]], np.ndarray]:
    """The models' 1 km values (unclipped), uncertainty and origin of a block's days, one call per
    model (pure given ``load``), and the 1 km fields whose within-cell anomalies the fusion map uses.

    A value outside its variable's valid range (:mod:`dsm.ranges`) is missing, like a cloud:
    the pixel gets the first variant whose predictors are all valid. Where that changed what a
    predicted pixel got (another variant than the raw values would have chosen, or its cell's
    SMAP dropped), the pixel gets bit 256 (``input_out_of_range``).

    Parameters
    ----------
    feats
        Predictor name -> ``(t, y, x)`` float32 array over the days of ``plans``, as read
        (screened here), or already screened when ``out_of_range`` is given.
    land
        Boolean land mask of the block, ``(y, x)``.
    smaps
        ``(t, cy, cx)`` SMAP of the block's 36 km cells (NaN: no observation), as read (screened
        here), or already screened when ``smap_out_of_range`` is given.
    plans
        Each day's plan (variants in order of preference), none with an error.
    load
        ``load(key, sha)`` -> a model from :func:`dsm.blocks.load_model`; called once per model.
    rain_spinup
        Pixels whose model uses antecedent precipitation indices get bit 128 where
        ``feats["api_age"]`` (days since the record's last missing day) is below it.
    out_of_range, smap_out_of_range
        The masks of the values already screened out of ``feats`` (predictor -> ``(t, y, x)``
        bool; a predictor without one had none) and of ``smaps``.

    Returns
    -------
    model, unc (float32 ``(t, y, x)``, NaN where not predicted), origin (uint16), per-day lists
    of per-variant pixel counts and detail: ``model``, except on the days whose plan has anomaly
    partners (``plan.partners``): there, where a variant has one, the mean of the variant's and
    the partner's values (float32).
    """
    if out_of_range is None:
        feats, out_of_range = screen_layers(feats)
    if smap_out_of_range is None:
        smaps, smap_out_of_range = screen(SMAP, smaps)
    shape = (len(plans), *land.shape)
    sm = np.full(shape, np.nan, np.float32)
    unc = np.full(shape, np.nan, np.float32)
    detail = sm if not any(p.partners for p in plans) else np.full(shape, np.nan, np.float32)
    origin = np.zeros(shape, products.ORIGIN_DTYPE)
    counts: list[dict[str, int]] = [{} for _ in plans]
    f = shape[-2] // smaps.shape[-2]
    changed = repeat_to_fine(np.asarray(smap_out_of_range, bool), f)
    columns = dict.fromkeys(c for p in plans for v in (*p.variants, *(q for _, q in p.partners)) for c in v.columns)
    layers = {c: np.ascontiguousarray(feature_layer(c, feats[source_of(c)])) for c in columns}
    api_age = feats.get("api_age")
    block = _Block(
        layers, {c: np.isfinite(a) for c, a in layers.items()},
        {c: out_of_range[source_of(c)] for c in layers if source_of(c) in out_of_range},
        # each day's terms computed alone, as for one day (a vectorised sin may round a lane differently)
        np.stack([doy_terms(np.array([np.datetime64(p.day, "ns")]))[0] for p in plans]) if plans else np.empty((0, 2)),
        repeat_to_fine(~np.isfinite(smaps), f).reshape(-1),
        None if api_age is None else np.ascontiguousarray(api_age).reshape(-1), rain_spinup)
    calls, parts = _Calls(), []
    groups: dict[DayPlan, list[int]] = {}  # the days of each plan (the same models, the same flags)
    for i, p in enumerate(plans):
        groups.setdefault(p.on(dt.date.min), []).append(i)
    for plan, days in groups.items():
        parts += _select(plan, days, land, block, calls, counts, changed)
    calls.run(load)
    _scatter(parts, calls, sm, unc, detail, origin)
    origin[changed & (origin > 0)] |= products.INPUT_OUT_OF_RANGE
    return sm, unc, origin, counts, detail


def _select(plan: DayPlan, days: Sequence[int], land: np.ndarray, block: _Block, calls: _Calls,
            counts: list[dict[str, int]], changed: np.ndarray) -> list[_Part]:
    """Choose the variant of each land pixel on ``days`` (all of ``plan``) and ask its models for
    them; records the per-day counts and adds to ``changed`` the pixels that screened-out values
    moved to another variant."""
    active = np.zeros(len(counts), bool)
    active[list(days)] = True
    remaining = land[None] & active[:, None, None]
    raw_remaining = remaining.copy()  # the variant choice the raw values would have made
    parts = []
    for v in plan.variants:
        ok = remaining.copy()
        for c in v.columns:
            ok &= block.finite[c]
        remaining &= ~ok
        if block.masked:
            raw_ok, hit = _raw_choice(v, block.finite, block.masked, raw_remaining)
            raw_remaining &= ~raw_ok
            changed |= raw_ok & hit
        per_day = ok.sum(axis=(1, 2))
        for i in days:
            counts[i][v.name] = int(per_day[i])
        index = np.flatnonzero(ok)
        if index.size == 0:
            continue
        rows_doy = np.repeat(block.doy, per_day, axis=0)  # each row's own day's terms
        X = _design(v, block.layers, index, rows_doy)
        bits = _origin_bits(v, plan.reused, X, block.no_smap[index],
                            None if block.api_age is None else block.api_age[index], block.rain_spinup)
        disagg = plan.disaggregation if v.name == FULL else None
        partner = plan.partner_of(v.name) if plan.partners else None
        parts.append(_Part(
            plan, v, index, bits, calls.ask(v, X), None if disagg is None else calls.ask(disagg, X),
            None if partner is None else calls.ask(partner, _design(partner, block.layers, index, rows_doy)),
            calls.ask(v, X, quantile=True) if v.quantile_key and v.quantile_sha else None))
    return parts


def _scatter(parts: Sequence[_Part], calls: _Calls, sm: np.ndarray, unc: np.ndarray, detail: np.ndarray,
             origin: np.ndarray) -> None:
    """Write the models' answers of each part into the block's ``(t, y, x)`` arrays."""
    sm_, unc_, detail_, origin_ = sm.reshape(-1), unc.reshape(-1), detail.reshape(-1), origin.reshape(-1)
    for part in parts:
        n = part.index.size
        pred = calls.answer(part.point).astype(np.float32).reshape(n)
        if part.disaggregation is not None:
            pred = 0.5 * (pred + calls.answer(part.disaggregation).astype(np.float32).reshape(n))
        sm_[part.index] = pred
        if part.plan.partners:
            detail_[part.index] = pred if part.partner is None else 0.5 * (
                pred + calls.answer(part.partner).astype(np.float32).reshape(n))
        origin_[part.index] = part.origin
        if part.quantile is not None:
            q = calls.answer(part.quantile).reshape(n, -1).astype(np.float32)
            unc_[part.index] = np.maximum(np.abs(q.max(axis=1) - q.min(axis=1)) / 2 + part.variant.margin, 0.0)


def model_day(feats: Mapping[str, np.ndarray], land: np.ndarray, smap: np.ndarray, plan: DayPlan,
              load: Callable[[str, str], Any], rain_spinup: int = 0, *,
              out_of_range: Mapping[str, np.ndarray] | None = None, smap_out_of_range: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int], np.ndarray]:
    """:func:`model_days` of one day: ``feats`` and ``out_of_range`` ``(y, x)``, ``smap`` and
    ``smap_out_of_range`` ``(cy, cx)``; ``detail`` is ``model`` itself on a plan without partners."""
    if out_of_range is None:
        feats, out_of_range = screen_layers(feats)
    if smap_out_of_range is None:
        smap, smap_out_of_range = screen(SMAP, smap)
    sm, unc, origin, counts, detail = model_days(
        {k: v[None] for k, v in feats.items()}, land, smap[None], [plan], load, rain_spinup,
        out_of_range={k: m[None] for k, m in out_of_range.items()},
        smap_out_of_range=np.asarray(smap_out_of_range, bool)[None])
    model = sm[0]
    return model, unc[0], origin[0], counts[0], detail[0] if plan.partners else model


def _raw_choice(v: VariantPlan, finite: Mapping[str, np.ndarray], masked: Mapping[str, np.ndarray],
                raw_remaining: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels variant ``v`` would get from the raw values (those screened out counted as
    valid), and the pixels where a screened-out value is among its predictors."""
    raw_ok, hit = raw_remaining.copy(), np.zeros(raw_remaining.shape, bool)
    for c in v.columns:
        valid = finite[c]
        if c in masked:
            valid = valid | masked[c]
            hit |= masked[c]
        raw_ok &= valid
    return raw_ok, hit


def _design(v: VariantPlan, layers: Mapping[str, np.ndarray], index: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """The model input of variant ``v`` at the pixel-days ``index`` (flat, C order): its columns,
    then the day-of-year terms ``doy`` (``(n, 2)``, each row's day's). Built a column at a time,
    each gathered into contiguous memory, and returned as the transpose (Fortran order): twice as
    fast as filling the rows' strided columns once a block outgrows the CPU caches, and XGBoost
    predicts from it at the same speed and to the same bits (:func:`apply_model`)."""
    columns = np.empty((len(v.columns) + (2 if v.doy else 0), index.size), np.float32)
    for j, c in enumerate(v.columns):
        np.take(layers[c].reshape(-1), index, out=columns[j])
    if v.doy:
        columns[len(v.columns):] = doy.T
    return columns.T


def _origin_bits(v: VariantPlan, reused: bool, X: np.ndarray, no_smap: np.ndarray, api_age: np.ndarray | None,
                 rain_spinup: int) -> np.ndarray:
    """The origin flags of the pixel-days variant ``v`` predicted (rows of ``X``; ``no_smap``
    and ``api_age`` at the same rows)."""
    bits = np.full(X.shape[0], products.ALL_PREDICTORS if v.name == FULL else products.REDUCED, products.ORIGIN_DTYPE)
    if reused:
        bits |= products.REUSED
    if v.ranges is not None:
        lo = np.array([r[0] for r in v.ranges], np.float32)
        hi = np.array([r[1] for r in v.ranges], np.float32)
        outside = ((X[:, : len(lo)] < lo) | (X[:, : len(lo)] > hi)).any(axis=1)
        bits[outside] |= products.EXTRAPOLATION
    bits[no_smap] |= products.NO_SMAP
    if rain_spinup and api_age is not None and any(p in API_NAMES for p in v.predictors):
        bits[api_age < rain_spinup] |= products.RAIN_MEMORY_SHORT
    return bits


__all__ = ["apply_model", "model_day", "model_days"]
