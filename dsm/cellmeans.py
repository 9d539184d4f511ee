"""The fused SMAP-cell (36 or 9 km) means of the default method, for every cell and day of a run.

Before the 1 km prediction, the fusion method needs, per SMAP cell and day:

1. ``m``: the pooled model's cell mean, the model applied to the cell's aggregated
   features, the very quantity it was trained and cross-validated on (so the error model's
   ``var_M``, estimated from held-out samples, applies to it exactly). The features of every
   cell-day are per-period tables (:func:`dsm.samples.sample_graph`, ``keep="all"``) computed
   on the workers, one task per (period, spatial block) (:mod:`dsm.sample_tables`); each cell-day uses the first model variant whose features are
   valid (full, then the reduced companions, then the static model);
2. the fusion of ``m`` with the day's SMAP and the increments carried over days without it
   (:func:`dsm.fusion.fuse`, with the error model of the model card).

A fused day depends on the ``max_carry_days`` before it and on no earlier day (an increment is
carried at most that far), so a run that predicts only some days (an extension by a day, a
resumed run) computes ``m`` over those days and that lead-in only (:func:`pass_day_sets`):
the same fused values on the days it predicts, at a cost that does not grow with the history.

Impossible inputs (:mod:`dsm.ranges`) are masked on the way: 1 km predictor values outside
their valid range enter no cell mean (:func:`dsm.samples.sample_graph`), SMAP outside [0.02,
0.5] is not fused. The cell-days where either happened are returned (``screened``): their
pixels get origin bit 256 (``input_out_of_range``) in :func:`fuse_block`.

The result is small (days x cells) and travels to the block tasks with their jobs. It is a
pure function of the cube and the stored models, so every run computes the same bytes. On
the block, :func:`fuse_block` (pure) turns one day of it and the 1 km model into the map.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client

from dsm import products, zarr_reads
from dsm.features import DOY_FEATURES, design_matrix
from dsm.fusion import STATE_CARRIED, STATE_FUSED, ErrorModel, FusedCells, fuse, pixel_interval, smooth_increments
from dsm.grid import FINE_PER_COARSE, block_reduce_mean, repeat_to_fine
from dsm.models.cards import FusionCard, ModelRecord
from dsm.periods import Composite, periods
from dsm.ranges import SMAP
from dsm.sample_tables import sample_tables
from dsm.samples import OUT_OF_RANGE, period_days, smap_grid, table_counts, table_to_grid


@dataclass(frozen=True)
class BlockCells:
    """The fused cell means of one block (its days x its cells), sent with its job.

    ``halo`` holds the field to smooth (the increments or the fused cell means) on the
    block's cells plus one ring of neighbours (NaN beyond the region), for smoothing across
    cell edges.
    """

    cell_mean: np.ndarray  # (t, cy, cx) C = m + increment
    increment: np.ndarray
    variance: np.ndarray  # error variance of C
    state: np.ndarray  # 0 model only, 1 fused with the day's SMAP, 2 increment carried
    halo: np.ndarray | None = None
    screened: np.ndarray | None = None  # (t, cy, cx) bool: an input of the cell-day was masked as impossible


def cell_model(table: pd.DataFrame, records: Sequence[ModelRecord], load: Callable[[ModelRecord], Any]) -> np.ndarray:
    """The model's cell mean of every row: the first variant whose features are all valid."""
    out = np.full(len(table), np.nan, np.float32)
    todo = np.ones(len(table), bool)
    for rec in records:
        X = design_matrix(table, [f for f in rec.features if f not in DOY_FEATURES])
        ok = todo & np.isfinite(X).all(axis=1)
        if ok.any():
            out[ok] = np.asarray(load(rec).predict(X[ok]), np.float32)
        todo &= ~ok
    return out


@dataclass(frozen=True)
class CellMeans:
    """The 36 km pass of a run: fused cell means, the model's cell means and what was masked."""

    fused: FusedCells
    model: np.ndarray  # (t, cy, cx) m, the models' cell means
    screened: np.ndarray  # (t, cy, cx) bool: a 1 km predictor value or SMAP was masked as impossible
    out_of_range: dict[str, int]  # masked values: 1 km land pixel-days per predictor, SMAP cell-days
    days: tuple[dt.date, dt.date] | None  # the first and last day given a model cell mean (None: no day)


def pass_day_sets(ds: xr.Dataset, start: dt.date, end: dt.date, card: FusionCard,
                  wanted: tuple[dt.date, dt.date] | None = None) -> list[Composite | list[dt.date]]:
    """The days whose model cell means the 36 km pass computes, as sample-table day sets: every
    period of ``start``..``end`` (the days of it the cube holds), or, for the fused values of the
    days ``wanted`` (first, last) only, those of their days from ``max_carry_days`` (the card's
    error model) before the first to the last (a period cut by that span: a list of its days).
    """
    sets = periods(start, end)
    if wanted is None:
        return list(sets)
    lo, hi = wanted[0] - dt.timedelta(days=ErrorModel.from_dict(card.error_model).max_carry_days), wanted[1]
    out: list[Composite | list[dt.date]] = []
    for p in sets:
        if p.end < lo or p.start > hi:  # the history before the lead-in: not looked at
            continue
        if lo <= p.start and p.end <= hi:
            out.append(p)
        elif (days := [d for d in period_days(ds, p) if lo <= d <= hi]):
            out.append(days)
    return out


def fused_cells(client: Client, ds: xr.Dataset, card: FusionCard, load: Callable[[ModelRecord], Any],
                start: dt.date, end: dt.date, aggregation: str = "mean", min_valid_fraction: float = 0.5,
                wanted: tuple[dt.date, dt.date] | None = None) -> CellMeans:
    """Fused cell means over the cube's time axis, the model cell means ``m`` and the masked inputs
    (``ds``: the cube opened by :func:`dsm.cube.open_cube`, whose workers open it again from its
    ``store_ref``).

    Days outside ``start``..``end`` have no model value (state 0, NaN). With ``wanted`` (first,
    last) the fused values are exact on those days only: ``m`` is computed on them and the
    ``max_carry_days`` before them (:func:`pass_day_sets`), NaN on the other days.
    """
    features = sorted({f for r in card.variants for f in r.features if f not in DOY_FEATURES})
    day_sets = pass_day_sets(ds, start, end, card, wanted)
    computed = sample_tables(client, ds, day_sets, card.predictors, how=aggregation,
                             min_valid_fraction=min_valid_fraction, features=features, keep="all", count_column=True)
    tables = [t for t in computed if len(t)]
    m = np.full((ds.sizes["time"], ds.sizes["cy"], ds.sizes["cx"]), np.nan, np.float32)
    screened = np.zeros(m.shape, bool)
    if tables:
        table = pd.concat(tables, ignore_index=True)
        m = table_to_grid(table, cell_model(table, card.variants, load), ds)
        screened = table_to_grid(table, table[OUT_OF_RANGE].to_numpy() > 0, ds) == 1
    smap, smap_bad = smap_grid(zarr_reads.read_variable(ds, SMAP))
    counts = table_counts(computed)
    counts.pop(SMAP, None)  # counted here over the whole time axis, once
    if smap_bad.any():
        counts[SMAP] = int(smap_bad.sum())
    held = set(pd.DatetimeIndex(ds["time"].values).date)  # once, for every period
    days = [d for s in day_sets for d in (s.days if isinstance(s, Composite) else s) if d in held]
    return CellMeans(fuse(m, smap, ErrorModel.from_dict(card.error_model)), m, screened | smap_bad, counts,
                     (min(days), max(days)) if days else None)


def block_cells(fused: FusedCells, t0: int, t1: int, cy0: int, cy1: int, cx0: int, cx1: int,
                smooth: str = "none", screened: np.ndarray | None = None) -> BlockCells:
    """The slice of one block (time indices of the cube, cell indices of the region), with the
    halo of the field that ``smooth`` names (``increments``, ``cell_means``; ``none``: no halo)
    and the slice of ``screened`` (:class:`CellMeans`)."""
    sl = (slice(t0, t1), slice(cy0, cy1), slice(cx0, cx1))
    ring = None
    if smooth != "none":
        field = fused.increment if smooth == "increments" else fused.cell_mean
        padded = np.pad(field[t0:t1].astype(np.float32), ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
        ring = padded[:, cy0:cy1 + 2, cx0:cx1 + 2].copy()  # padded index i is cell i - 1
    return BlockCells(fused.cell_mean[sl].astype(np.float32), fused.increment[sl].astype(np.float32),
                      fused.variance[sl].astype(np.float32), fused.state[sl].copy(), ring,
                      None if screened is None else screened[sl].copy())


@dataclass(frozen=True)
class DayCells:
    """One day of a block's fused cell means, and how to apply them (the fusion method)."""

    cell_mean: np.ndarray  # (cy, cx)
    increment: np.ndarray
    variance: np.ndarray
    state: np.ndarray
    var_anomaly: float
    anomaly_gain: float = 1.0
    interval: float | None = 0.9
    halo: np.ndarray | None = None  # (cy + 2, cx + 2): the field to smooth
    smooth: str = "none"  # "increments" or "cell_means"
    screened: np.ndarray | None = None  # (cy, cx) bool: the cell mean or its fusion lost an impossible input


def within_cell_anomaly(model: np.ndarray, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """``f - mean_cell f``: each pixel's departure from its SMAP cell's mean (cells of ``factor``
    pixels a side; NaN stays NaN)."""
    f = factor
    return model - repeat_to_fine(block_reduce_mean(model, factor=f), f)


def running_mean(stack: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` days (odd) of a (time, y, x) stack, ignoring NaN
    days; at the ends of the stack the window is cut short. NaN where a pixel is NaN that day."""
    half = window // 2
    ok = np.isfinite(stack)
    total = np.cumsum(np.concatenate([np.zeros((1, *stack.shape[1:])), np.where(ok, stack, 0.0)]), axis=0)
    count = np.cumsum(np.concatenate([np.zeros((1, *stack.shape[1:])), ok]), axis=0)
    n = stack.shape[0]
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total[hi] - total[lo]) / (count[hi] - count[lo])
    return np.where(ok, mean, np.nan).astype(np.float32)


def fusion_parts(model: np.ndarray, cells: DayCells, anomaly: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The two parts of the fusion method's map on a block (pure): ``sm = B + k a``.

    ``a = f - mean_cell f`` is the model's within-cell anomaly (``f`` the 1 km model, its cell
    mean over the cell's predicted pixels), or ``anomaly`` when given (for example its running
    mean over days, :func:`running_mean`). ``B`` is the fused cell mean ``C`` on every pixel of
    its cell; with ``smooth="increments"`` the increment is spread smoothly over the cell
    (:func:`dsm.fusion.smooth_increments`, cell means preserved): ``B = (C - increment) +
    smooth(increment)``; with ``"cell_means"`` the whole cell mean is: ``B = smooth(C)``. In
    both cases ``B``'s mean over the cell's predicted pixels is ``C``. NaN where ``C`` is
    undefined (no model cell mean). The cells' size is the ratio of the block's shape to theirs.
    """
    f = model.shape[-2] // cells.cell_mean.shape[-2]
    ok = np.isfinite(model)
    rep = functools.partial(repeat_to_fine, factor=f)
    anomaly = within_cell_anomaly(model, f) if anomaly is None else anomaly
    base = rep(cells.cell_mean)
    if cells.halo is not None and cells.smooth != "none":
        smooth = smooth_increments(cells.halo, f)[f:-f, f:-f]
        if cells.smooth == "increments":
            base = rep(cells.cell_mean - cells.increment) + np.where(np.isfinite(smooth), smooth, rep(cells.increment))
        else:
            base = np.where(np.isfinite(smooth), smooth, base)
        # the smoothing preserves the mean over all pixels of a cell; keep it over the predicted ones
        base = base + rep(cells.cell_mean - block_reduce_mean(np.where(ok, base, np.nan), factor=f))
    return base, anomaly


def fuse_block(model: np.ndarray, origin: np.ndarray, cells: DayCells, clip: tuple[float, float] = (0.0, 1.0),
               anomaly: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fusion method's map of one day on a block (pure).

    ``sm = B + k a`` (:func:`fusion_parts`, ``k`` = ``cells.anomaly_gain``); where ``B`` is
    undefined (no model cell mean) the map is ``f`` itself. ``sm_unc`` is the normal interval
    of the cell's error variance plus the anomaly's (:func:`dsm.fusion.pixel_interval`). Origin
    bits 32 and 64 mark cells fused with the day's SMAP and cells carrying an earlier
    increment, bit 256 the cells in ``cells.screened`` (an input of the cell mean or of its
    fusion was impossible and masked).
    """
    f = model.shape[-2] // cells.cell_mean.shape[-2]
    ok = np.isfinite(model)
    rep = functools.partial(repeat_to_fine, factor=f)
    base, anomaly = fusion_parts(model, cells, anomaly)
    sm = np.where(np.isfinite(base), base + cells.anomaly_gain * anomaly, model)
    sm = np.where(ok, np.clip(sm, *clip), np.nan).astype(np.float32)
    unc = np.full(model.shape, np.nan, np.float32)
    if cells.interval is not None:
        var_cell = np.where(np.isfinite(cells.variance), cells.variance, cells.var_anomaly)
        unc = np.where(ok, pixel_interval(rep(var_cell), cells.var_anomaly, cells.interval), np.nan).astype(np.float32)
    state = rep(cells.state)
    origin = origin.astype(products.ORIGIN_DTYPE)  # a copy
    origin[ok & (state == STATE_FUSED)] |= products.SMAP_FUSED
    origin[ok & (state == STATE_CARRIED)] |= products.SMAP_CARRIED
    if cells.screened is not None:
        origin[ok & rep(cells.screened)] |= products.INPUT_OUT_OF_RANGE
    return sm, unc, origin


__all__ = ["BlockCells", "CellMeans", "DayCells", "cell_model", "fused_cells", "pass_day_sets", "block_cells", "fuse_block",
           "within_cell_anomaly", "running_mean", "fusion_parts"]
