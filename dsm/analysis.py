"""Analysis of the daily 1 km maps and the models: means, importance, partial correlation, subsets.

Pure functions on arrays and tables, plus lazy xarray reductions that run on the cluster:

* :func:`monthly_means`, :func:`annual_means`, :func:`daily_climatology` (the multi-year mean
  of each day of the year) build lazy dask graphs from the ``sm`` of the output store;
  :func:`write_means` computes them on the client's workers straight into a Zarr store.
* :func:`importance_summary`: RF impurity and XGB gain importance of every predictor, mean and
  standard deviation over the trained periods' model cards.
* :func:`split_comparison`: each period's test scores under the paper's date split beside the
  spatial-block split (same tuned models refitted with 2 x 2 SMAP-cell blocks held out).
* :func:`partial_correlation` and :func:`station_partial_correlations`: partial correlation of
  (monthly) soil moisture with precipitation controlling for air temperature, and with
  temperature controlling for precipitation, at each weather station, with a two-sided
  t-test (``n - 3`` degrees of freedom) and significance classes.
* :func:`subset_box`: the regional subset view, a lon/lat box cut out of any (y, x) dataset
  on the region's 1 km grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr
from dask.delayed import Delayed
from distributed import Client
from numpy.typing import ArrayLike
from scipy import stats

from dsm import metrics
from dsm.config import MODEL_NAMES
from dsm.errors import GridError
from dsm.grid import lonlat_to_xy
from dsm.models.period_cards import PeriodCard, TrainedPeriodCard
from dsm.storeref import StoreRef

SIGNIFICANT_POSITIVE = "significantly positive"
SIGNIFICANT_NEGATIVE = "significantly negative"
NOT_SIGNIFICANT = "not significant"
INSUFFICIENT = "insufficient data"
CLASSES: tuple[str, ...] = (SIGNIFICANT_POSITIVE, SIGNIFICANT_NEGATIVE, NOT_SIGNIFICANT, INSUFFICIENT)
IMPORTANCE_KINDS: Mapping[str, str] = {"rf_impurity": "RF impurity", "xgb_gain": "XGB gain"}

XarrayT = TypeVar("XarrayT", xr.Dataset, xr.DataArray)


# --------------------------------------------------------------------------- mean maps (lazy)


def _check_time(sm: xr.DataArray) -> None:
    if "time" not in sm.dims:
        raise ValueError(f"expected a DataArray with a 'time' dimension, got dims {sm.dims}")


def monthly_means(sm: xr.DataArray, min_days: int = 1) -> xr.DataArray:
    """Mean map of each calendar month (lazy), ``(month, y, x)``; ``month`` is its first day.

    Parameters
    ----------
    sm : xarray.DataArray
        Daily maps ``(time, y, x)``, NaN where empty (dask-backed for a lazy result).
    min_days : int, default 1
        Fewest valid days a pixel needs in a month to get a mean (else NaN).
    """
    _check_time(sm)
    grouped = sm.resample(time="MS")
    mean = grouped.mean(skipna=True)
    count = sm.notnull().resample(time="MS").sum()
    return mean.where(count >= min_days).rename(time="month")


def annual_means(sm: xr.DataArray, min_days: int = 1) -> xr.DataArray:
    """Mean map of each year (lazy), ``(year, y, x)``; ``year`` is 1 January."""
    _check_time(sm)
    mean = sm.resample(time="YS").mean(skipna=True)
    count = sm.notnull().resample(time="YS").sum()
    return mean.where(count >= min_days).rename(time="year")


def daily_climatology(sm: xr.DataArray) -> xr.DataArray:
    """Multi-year daily mean (lazy): the mean map of each day of the year, ``(dayofyear, y, x)``.

    When no day of the year occurs twice (a run of up to a year), each mean is of one map: the
    maps themselves, relabelled by day of the year in its order (the same values as the group
    means, without a task per group).
    """
    _check_time(sm)
    doy = sm["time"].dt.dayofyear
    if doy.to_index().is_unique:
        return (sm.assign_coords(dayofyear=("time", doy.values)).swap_dims(time="dayofyear")
                .drop_vars("time").sortby("dayofyear"))
    return sm.groupby("time.dayofyear").mean(skipna=True)


def regional_means(maps: xr.DataArray) -> xr.DataArray:
    """The mean over its valid pixels of each map of ``maps`` (along the first dimension; NaN
    for a map without any), summed in float64 (lazy when ``maps`` is dask-backed)."""
    spatial = list(maps.dims[1:])
    total = maps.astype(np.float64).sum(spatial, skipna=True)
    n = maps.notnull().sum(spatial)
    return total / n.where(n > 0)


def write_means(sm: xr.DataArray, dest: StoreRef, client: Client | None) -> str:
    """Compute the monthly, annual and multi-year daily means on the cluster into one Zarr store
    at ``dest`` (:func:`means_job`; without ``client``, in this process).

    Returns
    -------
    str
        The URL of ``dest``.
    """
    job = means_job(sm, dest)
    if client is not None:
        client.compute(job).result()
    else:
        job.compute()
    return dest.url


def means_job(sm: xr.DataArray, dest: StoreRef) -> Delayed:
    """The lazy write of the mean maps of ``sm`` to a Zarr store at ``dest``, to compute.

    The store holds ``sm_monthly (month, y, x)``, ``sm_annual (year, y, x)`` and
    ``sm_daily_mean (dayofyear, y, x)`` (float32, m3/m3) with the coordinates of ``sm``, and
    ``sm_daily_mean_regional (dayofyear)``: the mean over its valid pixels of each daily mean
    map (float64, NaN for a map without any; :func:`regional_means`). The reductions are one
    dask graph whose tasks write their chunks directly (on the workers, when computed by a
    client).
    """
    keep = [c for c in ("x", "y", "spatial_ref") if c in sm.coords]
    sm = sm.drop_vars([c for c in sm.coords if c not in (*keep, "time")])
    daily = daily_climatology(sm).astype(np.float32)
    ds = xr.Dataset({"sm_monthly": monthly_means(sm).astype(np.float32),
                     "sm_annual": annual_means(sm).astype(np.float32),
                     "sm_daily_mean": daily, "sm_daily_mean_regional": regional_means(daily)})
    ds = ds.chunk({"month": 1, "year": 1, "dayofyear": 8})
    for name in ds.data_vars:
        what = "regional mean of the daily mean" if name == "sm_daily_mean_regional" else str(name).replace("_", " ")
        ds[name].attrs = {"units": "m3 m-3", "long_name": f"{what} of the 1 km soil moisture"}
        ds[name].encoding = {}
    return ds.to_zarr(dest.url, mode="w", compute=False, zarr_format=3, consolidated=False,
                      storage_options=dest.zarr_options)


# --------------------------------------------------------------------------- model cards (pure)


def trained_cards(cards: Sequence[PeriodCard]) -> list[TrainedPeriodCard]:
    """The cards of periods trained on their own samples (reused periods would count twice)."""
    return [c for c in cards if isinstance(c, TrainedPeriodCard) and c.models]


def importance_summary(cards: Sequence[PeriodCard]) -> pd.DataFrame:
    """Mean and standard deviation over periods of each predictor's importance.

    Parameters
    ----------
    cards : sequence of PeriodCard
        Model cards (:mod:`dsm.models.period_cards`); only trained cards count. Each card's
        ``importance.rf_impurity`` / ``importance.xgb_gain`` maps predictor -> share
        (normalised to sum 1 within the period).

    Returns
    -------
    pandas.DataFrame
        Index ``predictor``; columns ``<kind>_mean``, ``<kind>_std`` (sample standard
        deviation, ddof 1; NaN with one period) and ``<kind>_n`` for kind ``rf_impurity`` and
        ``xgb_gain``; sorted by the mean XGB gain (else RF impurity), largest first.
    """
    series: dict[str, dict[str, list[float]]] = {k: {} for k in IMPORTANCE_KINDS}
    order: list[str] = []
    for card in trained_cards(cards):
        for p in card.predictors or ():
            if p not in order:
                order.append(p)
        for kind in IMPORTANCE_KINDS:
            imp = card.importance.of(kind)
            if not imp:
                continue
            for p, v in imp.items():
                series[kind].setdefault(p, []).append(float(v))
    rows = []
    for p in order or sorted({p for s in series.values() for p in s}):
        row: dict[str, Any] = {"predictor": p}
        for kind in IMPORTANCE_KINDS:
            vals = np.asarray(series[kind].get(p, []), dtype=np.float64)
            row[f"{kind}_mean"] = float(vals.mean()) if vals.size else np.nan
            row[f"{kind}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else np.nan
            row[f"{kind}_n"] = int(vals.size)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.set_index("predictor")
    key = "xgb_gain_mean" if frame["xgb_gain_n"].sum() else "rf_impurity_mean"
    return frame.sort_values(key, ascending=False, na_position="last")


def split_comparison(cards: Sequence[PeriodCard]) -> pd.DataFrame:
    """Test R and RMSE of every model under the date split and the spatial-block split.

    Returns
    -------
    pandas.DataFrame
        One row per (period, model): ``period, model, chosen, date_test_r, date_test_rmse,
        spatial_test_r, spatial_test_rmse, rmse_increase`` (spatial minus date RMSE: how much
        the paper's date split flatters the test score), then rows ``period == "mean"`` with
        each model's mean over periods. Empty without spatial checks in the cards.
    """
    rows = []
    for card in trained_cards(cards):
        spatial = (card.spatial_split or {}).get("models") or {}
        for model in MODEL_NAMES:
            fit = card.models.get(model)
            if fit is None:
                continue
            m = {"test": fit.test}
            s = spatial.get(model) or {}
            date_rmse = _num(m, "test", "rmse")
            sp_rmse = _num(s, "test", "rmse")
            rows.append({"period": card.period, "model": model, "chosen": card.chosen == model,
                         "date_test_r": _num(m, "test", "r"), "date_test_rmse": date_rmse,
                         "spatial_test_r": _num(s, "test", "r"), "spatial_test_rmse": sp_rmse,
                         "rmse_increase": sp_rmse - date_rmse})
    frame = pd.DataFrame(rows)
    if frame.empty or frame["spatial_test_rmse"].isna().all():
        return frame.iloc[0:0] if len(frame) else frame
    num = ["date_test_r", "date_test_rmse", "spatial_test_r", "spatial_test_rmse", "rmse_increase"]
    means = frame.groupby("model", sort=False)[num].mean().reset_index()
    means.insert(0, "period", "mean")
    means.insert(2, "chosen", np.nan)
    return pd.concat([frame, means], ignore_index=True)


def _num(d: Any, *keys: str) -> float:
    for k in keys:
        if not isinstance(d, Mapping) or d.get(k) is None:
            return float("nan")
        d = d[k]
    try:
        return float(d)
    except (TypeError, ValueError):
        return float("nan")


# --------------------------------------------------------------------------- partial correlation (pure)


def partial_correlation(x: ArrayLike, y: ArrayLike, z: ArrayLike, min_n: int = 5) -> tuple[float, float, int]:
    """Partial correlation of ``x`` and ``y`` controlling for ``z``, with its p-value.

    ``r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))`` from the Pearson
    correlations of the triples where all three are valid; the two-sided p-value is that of
    ``t = r sqrt((n - 3) / (1 - r^2))`` with ``n - 3`` degrees of freedom (one control variable).

    Parameters
    ----------
    x, y, z : array_like
        Values paired by position (e.g. monthly SM, precipitation, temperature).
    min_n : int, default 5
        Fewest complete triples (at least 4); fewer gives NaN.

    Returns
    -------
    tuple of (float, float, int)
        ``(r, p, n)``; r and p are NaN with too few triples or a constant series.
    """
    if min_n < 4:
        raise ValueError(f"min_n must be at least 4 (n - 3 degrees of freedom), got {min_n}")
    a = np.column_stack([np.asarray(v, dtype=np.float64).ravel() for v in (x, y, z)])
    a = a[np.isfinite(a).all(axis=1)]
    n = int(a.shape[0])
    if n < min_n:
        return float("nan"), float("nan"), n
    r_xy = metrics.pearson_r(a[:, 0], a[:, 1])
    r_xz = metrics.pearson_r(a[:, 0], a[:, 2])
    r_yz = metrics.pearson_r(a[:, 1], a[:, 2])
    den = (1.0 - r_xz**2) * (1.0 - r_yz**2)
    if not np.isfinite([r_xy, r_xz, r_yz]).all() or den <= 0:
        return float("nan"), float("nan"), n
    r = float(np.clip((r_xy - r_xz * r_yz) / np.sqrt(den), -1.0, 1.0))
    df = n - 3
    if abs(r) >= 1.0:
        return r, 0.0, n
    t = r * np.sqrt(df / (1.0 - r * r))
    return r, float(2.0 * stats.t.sf(abs(t), df)), n


def significance_class(r: float, p: float, alpha: float = 0.05) -> str:
    """``significantly positive`` / ``significantly negative`` (p < alpha), ``not significant``,
    or ``insufficient data`` when r or p is NaN."""
    if not (np.isfinite(r) and np.isfinite(p)):
        return INSUFFICIENT
    if p < alpha:
        return SIGNIFICANT_POSITIVE if r > 0 else SIGNIFICANT_NEGATIVE
    return NOT_SIGNIFICANT


def aggregate_weather(weather: pd.DataFrame, freq: str = "MS", min_fraction: float = 0.8) -> pd.DataFrame:
    """Precipitation totals and mean air temperature per station and period (e.g. month).

    Parameters
    ----------
    weather : pandas.DataFrame
        Daily ``station, time, precip_mm, tair_c`` (``lon, lat`` kept when present).
    freq : str, default "MS"
        pandas frequency of the periods (``MS``: calendar months).
    min_fraction : float, default 0.8
        Fewest days with both values, as a fraction of the period's days; periods with fewer
        are dropped (a precipitation total over a half-missing month is not a total).

    Returns
    -------
    pandas.DataFrame
        ``station, period, precip_mm, tair_c, n_days``.
    """
    w = weather.loc[:, ["station", "time", "precip_mm", "tair_c"]].copy()
    w["time"] = pd.to_datetime(w["time"])
    w = w.dropna(subset=["precip_mm", "tair_c"])
    g = w.groupby(["station", pd.Grouper(key="time", freq=freq)])
    out = g.agg(precip_mm=("precip_mm", "sum"), tair_c=("tair_c", "mean"), n_days=("tair_c", "size")).reset_index()
    out = out.rename(columns={"time": "period"})
    return out.loc[out["n_days"] >= min_fraction * _period_days(out["period"], freq)].reset_index(drop=True)


def aggregate_sm(series: pd.DataFrame, value: str = "sm", freq: str = "MS", min_fraction: float = 0.5) -> pd.DataFrame:
    """Mean soil moisture per station and period from daily values (``station, time, value``).

    Periods with valid days fewer than ``min_fraction`` of the period's days are dropped.

    Returns
    -------
    pandas.DataFrame
        ``station, period, sm, n_days``.
    """
    s = series.loc[:, ["station", "time", value]].dropna()
    s["time"] = pd.to_datetime(s["time"])
    g = s.groupby(["station", pd.Grouper(key="time", freq=freq)])
    out = g.agg(sm=(value, "mean"), n_days=(value, "size")).reset_index().rename(columns={"time": "period"})
    return out.loc[out["n_days"] >= min_fraction * _period_days(out["period"], freq)].reset_index(drop=True)


def _period_days(starts: pd.Series, freq: str) -> np.ndarray:
    if starts.empty:
        return np.zeros(0)
    start = pd.DatetimeIndex(starts)
    end = start + pd.tseries.frequencies.to_offset(freq)
    return np.asarray((end - start).days, dtype=np.float64)


def station_partial_correlations(sm: pd.DataFrame, weather: pd.DataFrame, stations: pd.DataFrame | None = None,
                                 alpha: float = 0.05, min_n: int = 5) -> pd.DataFrame:
    """Partial correlations of periodic SM with precipitation and temperature per weather station.

    Parameters
    ----------
    sm : pandas.DataFrame
        :func:`aggregate_sm` output (``station, period, sm``): SM at each station's pixel.
    weather : pandas.DataFrame
        :func:`aggregate_weather` output (``station, period, precip_mm, tair_c``).
    stations : pandas.DataFrame, optional
        ``station, lon, lat`` (and anything else) merged into the result.
    alpha : float, default 0.05
        Significance level of the classes.
    min_n : int, default 5
        Fewest periods with all three values.

    Returns
    -------
    pandas.DataFrame
        One row per station: ``station, n, r_precip, p_precip, class_precip, r_tair, p_tair,
        class_tair`` (``r_precip``: SM with precipitation controlling temperature; ``r_tair``:
        SM with temperature controlling precipitation), plus the ``stations`` columns.
    """
    joined = sm.merge(weather, on=["station", "period"], how="inner")
    rows = []
    names = sorted(set(weather["station"]) | set(sm["station"]))
    for name in names:
        g = joined.loc[joined["station"] == name]
        r_p, p_p, n = partial_correlation(g["sm"], g["precip_mm"], g["tair_c"], min_n)
        r_t, p_t, _ = partial_correlation(g["sm"], g["tair_c"], g["precip_mm"], min_n)
        rows.append({"station": name, "n": n, "r_precip": r_p, "p_precip": p_p,
                     "class_precip": significance_class(r_p, p_p, alpha), "r_tair": r_t, "p_tair": p_t,
                     "class_tair": significance_class(r_t, p_t, alpha)})
    out = pd.DataFrame(rows, columns=["station", "n", "r_precip", "p_precip", "class_precip", "r_tair", "p_tair",
                                      "class_tair"])
    if stations is not None:
        out = stations.drop_duplicates("station").merge(out, on="station", how="right")
    return out


# --------------------------------------------------------------------------- regional subset


def subset_box(ds: XarrayT, box: tuple[float, float, float, float]) -> XarrayT:
    """Cut a lon/lat box out of data on the EASE-Grid 2.0 1 km grid (``y``, ``x`` in metres).

    The box is projected to EASE-Grid 2.0 (x depends on longitude only, y on latitude only) and
    every pixel whose centre lies inside is kept; other dimensions are untouched (lazy).

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        With ``x`` and ``y`` coordinates (y north to south).
    box : tuple of float
        ``(lon_min, lat_min, lon_max, lat_max)``, degrees.

    Raises
    ------
    GridError
        When the box is malformed or does not overlap the data.
    """
    lon0, lat0, lon1, lat1 = box
    if not (lon0 < lon1 and lat0 < lat1):
        raise GridError(f"box {box} must have lon_min < lon_max and lat_min < lat_max")
    (x0, x1), (y0, y1) = lonlat_to_xy([lon0, lon1], [lat0, lat1])
    out = ds.sel(x=slice(float(x0), float(x1)), y=slice(float(y1), float(y0)))
    if out.sizes.get("x", 0) == 0 or out.sizes.get("y", 0) == 0:
        xs, ys = ds["x"].values, ds["y"].values
        raise GridError(f"box {box} does not overlap the data (x {xs.min():.0f}..{xs.max():.0f} m, "
                        f"y {ys.min():.0f}..{ys.max():.0f} m on EASE-Grid 2.0)")
    return out


__all__ = [
    "CLASSES", "SIGNIFICANT_POSITIVE", "SIGNIFICANT_NEGATIVE", "NOT_SIGNIFICANT", "INSUFFICIENT",
    "monthly_means", "annual_means", "daily_climatology", "means_job", "regional_means",
    "write_means", "trained_cards", "importance_summary",
    "split_comparison", "partial_correlation", "significance_class", "aggregate_weather", "aggregate_sm",
    "station_partial_correlations", "subset_box",
]
