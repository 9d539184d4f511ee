"""The disaggregation model: XGBoost on 1 km pixels, fitted to the 36 km SMAP cell means.

A model ``f`` of the 1 km features is trained so that, for each SMAP cell-day ``g`` with
target ``S_g`` and sampled valid pixels ``P_g`` (``n_g`` of them), the mean of its pixel
predictions matches SMAP::

    L(f) = 1/2 * sum_g (mean_{p in P_g} f(x_p) - S_g)^2

The gradient of ``L`` with respect to the prediction of pixel ``p`` of group ``g`` is
``(m_g - S_g) / n_g`` (``m_g`` the group mean of the predictions). The Hessian is block
diagonal, ``(1/n_g^2) 1 1^T`` per group: its diagonal is ``1 / n_g^2``
(``hessian="diagonal"``). That diagonal *underestimates* the curvature of a tree leaf that
holds many pixels of one group (up to ``n_g`` times), so boosting with it overshoots unless
the learning rate is below about ``2 / n_g``. ``hessian="bound"`` uses ``1 / n_g`` instead:
``diag(1/n_g)`` dominates the Hessian (the block's only non-zero eigenvalue is ``1/n_g``), so
every Newton step of a leaf is a majorise-minimise step that cannot overshoot, and the
hessian sum of a leaf counts "SMAP cells' worth of pixels" (``min_child_weight=1``: at least
one cell's worth). :func:`fit_disaggregation` uses ``"bound"`` unless told otherwise.

Training pixels come from :func:`pixel_sample_graph`: up to ``pixels_per_cell`` valid land
pixels of each cell-day, drawn with a counter-based hash of (seed, day, cell, pixel), so the
draw does not depend on the cube's chunking.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import xgboost
from dask.delayed import Delayed

from dsm.errors import InputError
from dsm.features import DOY_FEATURES, doy_terms, feature_layers, source_of
from dsm.grid import FINE_PER_COARSE, Region
from dsm.periods import Composite
from dsm.samples import TARGET, check_predictors, period_days, predictor_layer, smap_layer

Hessian = Literal["diagonal", "bound"]
Objective = Callable[[np.ndarray, xgboost.DMatrix], tuple[np.ndarray, np.ndarray]]
PIXEL_KEYS = ("date", "cell", "group", "fine_row", "fine_col")
DEFAULT_PARAMS: dict[str, Any] = {"tree_method": "hist", "max_depth": 6, "eta": 0.1, "subsample": 0.8,
                                  "min_child_weight": 1.0, "lambda": 1.0, "nthread": 1}


# ------------------------------------------------------------------------------- objective
def _group_counts(groups: np.ndarray, n_groups: int) -> np.ndarray:
    if groups.ndim != 1 or (groups.size and (groups.min() < 0 or groups.max() >= n_groups)):
        raise ValueError(f"groups must be a 1-D array of indices in 0..{n_groups - 1}")
    return np.bincount(groups, minlength=n_groups).astype(np.float64)


def group_means(pred: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean prediction of each group (NaN for a group without rows)."""
    counts = _group_counts(np.asarray(groups, np.int64), n_groups)
    sums = np.bincount(groups, weights=np.asarray(pred, np.float64).ravel(), minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def cell_mean_loss(pred: np.ndarray, groups: np.ndarray, target: np.ndarray) -> float:
    """``1/2 * sum_g (mean_{p in g} pred_p - target_g)^2`` over the groups that have rows.

    ``pred`` is the prediction per row (pixel), ``groups`` the group index (0..G-1) per row,
    ``target`` the target per group (length ``G``).
    """
    target = np.asarray(target, np.float64)
    means = group_means(pred, np.asarray(groups, np.int64), len(target))
    has = np.isfinite(means)
    return float(0.5 * np.sum((means[has] - target[has]) ** 2))


def cell_mean_objective(groups: np.ndarray, target: np.ndarray, hessian: Hessian = "diagonal") -> Objective:
    """XGBoost custom objective (``xgboost.train(..., obj=...)``) of :func:`cell_mean_loss`.

    Parameters
    ----------
    groups
        Group (cell-day) index 0..G-1 of each training row, in DMatrix row order.
    target
        SMAP value of each group, length ``G``.
    hessian
        ``"diagonal"``: the exact diagonal ``1 / n_g^2`` of the Hessian; ``"bound"``:
        ``1 / n_g``, a diagonal that dominates the Hessian (see the module docstring).

    Returns
    -------
    callable
        ``obj(predt, dtrain) -> (grad, hess)`` with ``grad_p = (m_g - S_g) / n_g``.
    """
    groups = np.asarray(groups, np.int64)
    target = np.asarray(target, np.float64)
    if hessian not in ("diagonal", "bound"):
        raise ValueError(f"unknown hessian {hessian!r}; use 'diagonal' or 'bound'")
    counts = _group_counts(groups, len(target))
    n_row = counts[groups]
    hess = 1.0 / n_row**2 if hessian == "diagonal" else 1.0 / n_row
    safe = np.maximum(counts, 1.0)

    def objective(predt: np.ndarray, dtrain: xgboost.DMatrix) -> tuple[np.ndarray, np.ndarray]:
        pred = np.asarray(predt, np.float64).ravel()
        means = np.bincount(groups, weights=pred, minlength=len(target)) / safe
        return (means - target)[groups] / n_row, hess.copy()

    return objective


# ------------------------------------------------------------------------------- pixel samples
def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 in, uint64 out; wraps around by design)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def pixel_keys(seed: int, days: np.ndarray, cells: np.ndarray, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """Random uint64 keys of shape ``(t, cy, cx, factor**2)``, a pure function of (seed, day, cell, pixel).

    ``days`` are datetime64 values (length ``t``), ``cells`` global cell ids ``(cy, cx)``;
    pixel ``i`` of a cell is row ``i // factor``, column ``i % factor`` of its block (``factor``
    1 km pixels per cell side: 36, or 9 on the 9 km grid).
    """
    day = np.asarray(days, "datetime64[D]").astype(np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(np.full(1, seed, np.int64).astype(np.uint64))
        h = _mix(h ^ day[:, None, None, None])
        h = _mix(h ^ np.asarray(cells, np.int64).astype(np.uint64)[None, :, :, None])
        return _mix(h ^ np.arange(factor * factor, dtype=np.uint64))


def sample_pixels(dates: np.ndarray, cells: np.ndarray, row0: int, col0: int, land: np.ndarray,
                  smap: np.ndarray, layers: Sequence[np.ndarray], names: Sequence[str], seed: int,
                  pixels_per_cell: int, min_valid_fraction: float) -> pd.DataFrame:
    """Sampled pixels of one block (pure; see :func:`pixel_sample_graph`).

    ``land`` is ``(y, x)`` boolean, ``smap`` ``(t, y/f, x/f)`` (``f`` pixels per cell side),
    each of ``layers`` ``(t, y, x)`` or ``(y, x)``; ``row0``, ``col0`` are the global 1 km row
    and column of the block's corner. Returns the columns ``date``, ``cell``, ``fine_row``,
    ``fine_col``, ``names`` and ``sm``.
    """
    nt, ncy, ncx = smap.shape
    f = np.shape(land)[-1] // ncx
    npix = f * f
    ok = np.broadcast_to(np.asarray(land, bool), (nt, ncy * f, ncx * f))
    for layer in layers:
        ok = ok & np.isfinite(layer)
    ok = ok.reshape(nt, ncy, f, ncx, f).transpose(0, 1, 3, 2, 4).reshape(nt, ncy, ncx, npix)
    count = ok.sum(axis=-1)
    cell_ok = np.isfinite(smap) & (count > 0) & (count >= min_valid_fraction * npix)
    keys = np.where(ok, pixel_keys(seed, dates, cells, f), np.iinfo(np.uint64).max)
    k = min(int(pixels_per_cell), npix)
    idx = np.argpartition(keys, k - 1, axis=-1)[..., :k] if k < npix else np.argsort(keys, axis=-1)
    take = np.take_along_axis(ok, idx, axis=-1) & cell_ok[..., None]
    t, i, j, s = np.nonzero(take)
    p = idx[t, i, j, s]
    rows, cols = i * f + p // f, j * f + p % f
    out: dict[str, np.ndarray] = {
        "date": np.asarray(dates, "datetime64[ns]")[t],
        "cell": np.asarray(cells, np.int64)[i, j],
        "fine_row": (row0 + rows).astype(np.int64),
        "fine_col": (col0 + cols).astype(np.int64),
    }
    for name, layer in zip(names, layers, strict=True):
        vals = layer[t, rows, cols] if layer.ndim == 3 else layer[rows, cols]
        out[name] = vals.astype(np.float32)
    out[TARGET] = smap[t, i, j].astype(np.float32)
    return pd.DataFrame(out)


def assemble_pixels(parts: Sequence[pd.DataFrame], features: Sequence[str]) -> pd.DataFrame:
    """Concatenate block tables, sort by date, cell and pixel, number the cell-days
    (``group``) and add the day-of-year features."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_pixel_table(features)
    table = pd.concat(parts, ignore_index=True)
    table = table.sort_values(["date", "cell", "fine_row", "fine_col"], kind="stable", ignore_index=True)
    key = table[["date", "cell"]]
    table["group"] = np.cumsum(np.r_[True, (key.iloc[1:].to_numpy() != key.iloc[:-1].to_numpy()).any(1)]) - 1
    if any(f in DOY_FEATURES for f in features):
        doy = doy_terms(table["date"].to_numpy())
        for i, name in enumerate(DOY_FEATURES):
            table[name] = doy[:, i]
    return table[[*PIXEL_KEYS, *features, TARGET]]


def empty_pixel_table(features: Sequence[str]) -> pd.DataFrame:
    """A pixel table with no rows and the right columns and dtypes."""
    cols: dict[str, Any] = {"date": np.zeros(0, "datetime64[ns]")}
    cols.update({k: np.zeros(0, np.int64) for k in PIXEL_KEYS[1:]})
    cols.update({f: np.zeros(0, np.float32) for f in (*features, TARGET)})
    return pd.DataFrame(cols)


def pixel_sample_graph(ds: xr.Dataset, days: Composite | Sequence[dt.date], features: Sequence[str],
                       pixels_per_cell: int = 64, seed: int = 0, min_valid_fraction: float = 0.5) -> Delayed:
    """A lazy graph whose result is the pixel table of ``days`` (a period or a list of days).

    A cell-day is kept when SMAP is valid and at least ``min_valid_fraction`` of its 1296
    pixels are *valid* (``land_mask == 1`` and every cube feature finite and within its valid
    range: :func:`dsm.samples.predictor_layer`, :func:`dsm.samples.smap_layer`); up to
    ``pixels_per_cell`` valid pixels are drawn from it at random (deterministic given ``seed``,
    day and cell, whatever the chunking). Each block (time chunk x space chunk) is sampled on
    a worker; only the sampled rows travel.

    Parameters
    ----------
    ds
        The predictor cube, opened lazily.
    days
        A 16-day period (the days the cube holds) or the days to sample.
    features
        Feature columns (:mod:`dsm.features`): predictors, ``aspect_sin``/``aspect_cos``,
        ``doy_sin``/``doy_cos`` (from the date, not the cube).
    Returns
    -------
    dask.delayed.Delayed
        A DataFrame with columns ``date``, ``cell`` (global 36 km cell id), ``group`` (cell-day
        index 0..G-1, by date then cell), ``fine_row`` and ``fine_col`` (global 1 km row and
        column of the pixel), one float32 column per feature and ``sm`` (SMAP of the cell-day).

    Raises
    ------
    InputError
        When the cube lacks a predictor, ``smap_sm`` or ``land_mask``, or its spatial chunks
        are not multiples of 36.
    """
    features = tuple(features)
    if pixels_per_cell < 1 or not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError("pixels_per_cell must be >= 1 and min_valid_fraction in [0, 1]")
    cube_features = [x for x in features if x not in DOY_FEATURES]
    check_predictors(ds, sorted({source_of(x) for x in cube_features}))
    days = period_days(ds, days) if isinstance(days, Composite) else list(days)
    if not days:
        return dask.delayed(empty_pixel_table)(list(features))
    times = np.array([np.datetime64(d, "ns") for d in days])
    region = Region.from_dict(ds.attrs["region"])
    f = region.fine_per_coarse
    land = ds["land_mask"].data == 1
    if not isinstance(land, da.Array):
        land = da.from_array(land)
    tch = min(max(ds["smap_sm"].chunks[0]) if ds["smap_sm"].chunks else len(times), len(times))
    yc, xc = land.chunks
    if any(c % f for c in (*yc, *xc)):
        raise InputError(f"cube chunks {land.chunksize} are not multiples of {f} in space")
    smap = smap_layer(ds, list(times)).rechunk(
        (tch, tuple(c // f for c in yc), tuple(c // f for c in xc)))
    layers = {name: predictor_layer(ds, name, days) for name in {source_of(x) for x in cube_features}}
    arrays = [a.rechunk((tch, yc, xc) if a.ndim == 3 else (yc, xc))
              for a in feature_layers(layers, cube_features).values()]
    land, smap, *arrays = dask.optimize(land, smap, *arrays)
    land_b, smap_b = land.to_delayed(optimize_graph=False), smap.to_delayed(optimize_graph=False)
    arr_b = [a.to_delayed(optimize_graph=False) for a in arrays]
    cells = region.cell_ids
    t_off, y_off, x_off = (np.r_[0, np.cumsum(c)] for c in (smap.chunks[0], yc, xc))
    parts = []
    sample = dask.delayed(sample_pixels, pure=True)
    for ti in range(len(smap.chunks[0])):
        dates = times[t_off[ti]:t_off[ti + 1]]
        for yi in range(len(yc)):
            for xi in range(len(xc)):
                y0, x0 = int(y_off[yi]), int(x_off[xi])
                cb = cells[y0 // f:int(y_off[yi + 1]) // f, x0 // f:int(x_off[xi + 1]) // f]
                blocks = [b[ti, yi, xi] if b.ndim == 3 else b[yi, xi] for b in arr_b]
                parts.append(sample(dates, cb, region.fine_row0 + y0, region.fine_col0 + x0, land_b[yi, xi],
                                    smap_b[ti, yi, xi], blocks, cube_features, seed, pixels_per_cell,
                                    min_valid_fraction))
    return dask.delayed(assemble_pixels, pure=True)(parts, list(features))


# ------------------------------------------------------------------------------- fitting
def table_groups(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Group index per row (by ``date`` and ``cell``, else the ``group`` column) and the
    target (``sm``) per group."""
    if {"date", "cell"} <= set(table.columns):
        groups = table.groupby(["date", "cell"], sort=True).ngroup().to_numpy(np.int64)
    else:
        groups = pd.factorize(table["group"], sort=True)[0].astype(np.int64)
    n = int(groups.max()) + 1 if len(groups) else 0
    counts = np.bincount(groups, minlength=n)
    target = np.bincount(groups, weights=table[TARGET].to_numpy(np.float64), minlength=n) / counts
    return groups, target


def fit_disaggregation(table: pd.DataFrame, features: Sequence[str], params: Mapping[str, Any], n_rounds: int,
                       seed: int = 0, base_score: float | None = None,
                       hessian: Hessian = "bound") -> tuple[xgboost.XGBRegressor, dict[str, Any]]:
    """Train the pixel model on a pixel table (:func:`pixel_sample_graph`).

    Parameters
    ----------
    table
        Pixel table: features, ``sm`` and ``date``/``cell`` (or ``group``) columns.
    features
        Feature columns, in model input order.
    params
        XGBoost booster parameters, over :data:`DEFAULT_PARAMS` (``objective`` is not allowed:
        the objective is :func:`cell_mean_objective`).
    n_rounds
        Boosting rounds.
    seed
        XGBoost seed (row subsampling).
    base_score
        Starting prediction; default the mean of the group targets.
    hessian
        See :func:`cell_mean_objective`; ``"bound"`` is stable at any learning rate <= 1.

    Returns
    -------
    (xgboost.XGBRegressor, dict)
        The model (raw-margin predictions, loadable by :mod:`dsm.models.store`) and a card:
        ``n_pixels``, ``n_groups``, ``loss_start``, ``loss_end``, ``loss_per_round``,
        ``cell_rmse_start``/``cell_rmse_end`` (RMSE of cell means against SMAP), ``base_score``,
        ``params``, ``n_rounds``, ``hessian``, ``features``.
    """
    if "objective" in params or len(table) == 0:
        raise ValueError("params may not set 'objective'" if len(table) else "the pixel table is empty")
    groups, target = table_groups(table)
    X = table[list(features)].to_numpy(np.float32)
    base = float(np.mean(target)) if base_score is None else float(base_score)
    full = {**DEFAULT_PARAMS, **dict(params), "seed": int(seed), "base_score": base}
    objective = cell_mean_objective(groups, target, hessian)
    losses: list[float] = []

    def recording(predt: np.ndarray, dtrain: xgboost.DMatrix) -> tuple[np.ndarray, np.ndarray]:
        losses.append(cell_mean_loss(predt, groups, target))
        return objective(predt, dtrain)

    dtrain = xgboost.DMatrix(X, missing=np.nan)
    booster = xgboost.train(full, dtrain, num_boost_round=int(n_rounds), obj=recording)
    loss_end = cell_mean_loss(booster.predict(dtrain), groups, target)
    if not np.isfinite(loss_end):
        raise FloatingPointError(f"training diverged (loss {loss_end}); lower eta or use hessian='bound'")
    model = xgboost.XGBRegressor()
    model.load_model(bytearray(booster.save_raw("json")))
    loss_start = cell_mean_loss(np.full(len(X), base), groups, target)
    g = len(target)
    return model, {
        "n_pixels": len(X), "n_groups": g, "loss_start": loss_start, "loss_end": loss_end,
        "loss_per_round": [*losses, loss_end], "cell_rmse_start": float(np.sqrt(2 * loss_start / g)),
        "cell_rmse_end": float(np.sqrt(2 * loss_end / g)), "base_score": base, "params": full,
        "n_rounds": int(n_rounds), "hessian": hessian, "features": list(features)}

