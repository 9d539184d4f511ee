"""In situ validation of the 1 km product, SMAP 36 km and other gridded products.

What :func:`validate` does
--------------------------
1. **Stations**: reads every configured in situ source (ISMN "header + values" / CEOP files,
   folders or zips; the plain CSV ``station, lon, lat, depth, time, value`` under any column
   names, ``validation.stations[*].columns``), keeps the surface layer (sensor bottom
   ``<= validation.max_depth``, default 0.05 m) and the accepted ISMN flags (default ``G``),
   makes UTC daily means per sensor and then per station (the mean of its surface sensors).
2. **Location**: each station's 1 km pixel (row, col in the region) and 36 km SMAP cell
   (``cy, cx``) on the EASE-Grid 2.0 grid.
3. **Sampling**: the daily 1 km product (``sm`` of the output store, only days recorded in
   ``days_done``) at the pixel, SMAP 36 km (``smap_sm`` of the cube) at the cell, and every other
   gridded product (NetCDF, GeoTIFF series or Zarr in any CRS) at the station lon/lat (nearest
   cell of that product's grid, after transforming lon/lat into its CRS; sub-daily values
   are averaged over UTC days).
4. **Scores** (:mod:`dsm.metrics`): R, RMSE, ubRMSE, bias and n with percentile bootstrap
   confidence intervals, per site, per network, pooled over all sites (``all``) and the mean of
   the per-site scores (``site_mean``, no interval). Every product is scored twice:
   ``days="common"`` on the station-days where the in situ mean and **every** product with any
   overlap are valid (the fair comparison: all on the same days) and ``days="own"`` on all
   station-days that product and the in situ mean share.

Sign of the bias: ``validation.bias_convention``; the default ``reference_minus_product`` is the
paper's (in situ mean minus product mean: positive = product too dry). The convention is
written in every score row.

Bad input never stops the run; each is named in :attr:`ValidationResult.problems` (columns
``kind, name, problem``) and the rest is scored: a station file in an unknown format, a station
outside the region, a station without a sensor in the surface layer, a station or product
without any day overlapping the in situ days, a gridded product without a CRS (or that
cannot be read).

Station-pixel time series are exported for pytesmo and QA4SM by :func:`export_timeseries`
(see its docstring for the columns).

Outputs of :func:`write_validation` (folder ``validation.out``): ``pairs.csv``,
``scores.csv``, ``scores.json``, ``stations.csv``, ``problems.csv`` and, on the twin,
``skill_periods.csv``.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr
import yaml
from distributed import Client
from pyproj import CRS, Transformer

from dsm import files, insitu, metrics, store
from dsm import skill as skill_mod
from dsm.config import BootstrapConfig, Config, GriddedProductConfig, ValidationConfig
from dsm.errors import ConfigError, InputError
from dsm.periods import period_of
from dsm.stations import INSITU, SITE_KEYS, Problems, locate, read_source, station_daily, stations_config

log = logging.getLogger(__name__)

PRODUCT_1KM = "sm_1km"
SMAP_36KM = "smap_36km"
SCORE_COLUMNS = ("product", "days", "level", "network", "station", "n", "r", "r_lo", "r_hi", "rmse", "rmse_lo",
                 "rmse_hi", "ubrmse", "ubrmse_lo", "ubrmse_hi", "bias", "bias_lo", "bias_hi", "bias_convention",
                 "confidence")


class ProductError(InputError):
    """A gridded product cannot be used (no CRS, no such variable, unreadable); names the product."""


@dataclass
class ValidationResult:
    """Everything :func:`validate` found.

    Attributes
    ----------
    stations : pandas.DataFrame
        One row per station: ``network, station, lon, lat, row, col, cy, cx, n_days, status``
        (row/col: 1 km pixel in the region; cy/cx: 36 km cell; -1 when outside).
    pairs : pandas.DataFrame
        One row per station-day: ``network, station, time, insitu`` and one column per product
        (``sm_1km``, ``smap_36km``, then the configured products), m3/m3, NaN where missing.
    scores : pandas.DataFrame
        Tidy scores (:data:`SCORE_COLUMNS`).
    problems : pandas.DataFrame
        ``kind, name, problem`` of every input that was left out, and why.
    products : list of str
        The product columns of ``pairs``, in order.
    period_skill : pandas.DataFrame or None
        Twin only: skill against the 1 km truth per 16-day period (:func:`period_skill`).
    """

    stations: pd.DataFrame
    pairs: pd.DataFrame
    scores: pd.DataFrame
    problems: pd.DataFrame
    products: list[str] = field(default_factory=list)
    period_skill: pd.DataFrame | None = None


# --------------------------------------------------------------------------- sampling the stores


def _compute(obj: Any, client: Client | None) -> Any:
    return client.compute(obj).result() if client is not None else obj.compute()


def _long(values: np.ndarray, times: np.ndarray, sites: pd.DataFrame, name: str) -> pd.DataFrame:
    """(time, site) values -> long frame ``network, station, time, name``."""
    nt, ns = values.shape
    return pd.DataFrame({
        "network": np.tile(sites["network"].to_numpy(), nt),
        "station": np.tile(sites["station"].to_numpy(), nt),
        "time": np.repeat(pd.DatetimeIndex(times).to_numpy(), ns),
        name: values.reshape(-1).astype(np.float64),
    })


def sample_store(sites: pd.DataFrame, output_url: str, cube_url: str | None, client: Client | None,
                 storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The 1 km product at each station's pixel and SMAP 36 km at its cell, every day.

    Parameters
    ----------
    sites : pandas.DataFrame
        Stations inside the region (:func:`locate`).
    output_url : str
        The products store (``dsm predict``); only days in its ``days_done`` are used.
    cube_url : str or None
        The predictor cube, for ``smap_sm``; None leaves ``smap_36km`` empty.
    client : distributed.Client or None
        Reads run on its workers (None: the local scheduler).
    storage_options : mapping, optional
        fsspec options of the stores.

    Returns
    -------
    pandas.DataFrame
        ``network, station, time, sm_1km, smap_36km``.
    """
    so = dict(storage_options or {})
    out = store.open_store(output_url, "products", so)
    done = pd.DatetimeIndex(pd.to_datetime(sorted(out.attrs.get("days_done", []))))
    times = out.indexes["time"]
    rows = xr.DataArray(sites["row"].to_numpy(), dims="site")
    cols = xr.DataArray(sites["col"].to_numpy(), dims="site")
    sm = out["sm"].isel(y=rows, x=cols).transpose("time", "site")
    parts = {PRODUCT_1KM: sm}
    if cube_url:
        cube = store.open_store(cube_url, "cube", so)
        cy = xr.DataArray(sites["cy"].to_numpy(), dims="site")
        cx = xr.DataArray(sites["cx"].to_numpy(), dims="site")
        smap = cube["smap_sm"].isel(cy=cy, cx=cx).transpose("time", "site").reindex(time=times)
        parts[SMAP_36KM] = smap
    computed = _compute(xr.Dataset({k: v.drop_vars([c for c in v.coords if c != "time"]) for k, v in parts.items()}),
                        client)
    values = computed[PRODUCT_1KM].values.astype(np.float64)
    values[~times.isin(done)] = np.nan
    frame = _long(values, times.values, sites, PRODUCT_1KM)
    smap_values = computed[SMAP_36KM].values if SMAP_36KM in computed else np.full(values.shape, np.nan)
    frame[SMAP_36KM] = smap_values.reshape(-1).astype(np.float64)
    return frame


def _is_zarr(path: str) -> bool:
    p = path.rstrip("/")
    return p.endswith(".zarr") or (os.path.isdir(p) and any(
        os.path.exists(os.path.join(p, f)) for f in ("zarr.json", ".zgroup", ".zattrs")))


def _time_dim(da: xr.DataArray, p: GriddedProductConfig) -> str:
    if p.time_dim:
        if p.time_dim not in da.dims:
            raise ProductError(f"product '{p.name}' ({p.path}): no dimension {p.time_dim!r} (dims {da.dims})")
        return p.time_dim
    for dim in da.dims:
        if dim in da.coords and np.issubdtype(da[dim].dtype, np.datetime64):
            return str(dim)
    raise ProductError(f"product '{p.name}' ({p.path}): no time dimension with datetime values "
                       f"(dims {da.dims}); set time_dim")


def open_gridded(p: GriddedProductConfig) -> xr.DataArray:
    """Open a gridded product lazily as a DataArray ``(time, y, x)`` that knows its CRS.

    NetCDF/HDF5 (``.nc``, ``.nc4``, ``.h5``, ``.cdf``) and Zarr are opened with xarray
    (``decode_coords="all"``, so CF ``grid_mapping`` variables give the CRS); GeoTIFFs (one file
    per day, a glob) with rioxarray, the day from each file name (``date_regex``).

    Raises
    ------
    ProductError
        The files cannot be read, the variable or time axis is missing, or no CRS is known
        (neither in the file nor ``crs`` in the configuration).
    """
    import rioxarray  # noqa: F401  (registers .rio)

    path = p.path
    low = path.lower().rstrip("/")
    try:
        if low.endswith((".tif", ".tiff")):
            da = _open_geotiff_series(p)
        else:
            if _is_zarr(path):
                ds = _open_user_zarr(path, p)
            elif low.endswith((".nc", ".nc4", ".h5", ".hdf5", ".cdf", ".netcdf")):
                if "://" in path:
                    ds = xr.open_dataset(fsspec.open(path, **p.storage_options).open(), engine="h5netcdf",
                                         decode_coords="all")
                else:
                    ds = xr.open_dataset(path, decode_coords="all", chunks={})
            else:
                raise ProductError(f"product '{p.name}' ({path}): unknown format (expected .nc/.nc4/.h5, "
                                   ".zarr or .tif/.tiff)")
            if p.variable is None or p.variable not in ds.data_vars:
                raise ProductError(f"product '{p.name}' ({path}): variable {p.variable!r} not found; "
                                   f"it has {sorted(map(str, ds.data_vars))}")
            da = ds[p.variable]
    except ProductError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProductError(f"product '{p.name}' ({path}) cannot be read: {exc}") from exc
    try:
        crs = da.rio.crs
    except Exception as exc:  # rioxarray raises its own errors for odd grid mappings
        raise ProductError(f"product '{p.name}' ({path}): its CRS cannot be read: {exc}") from exc
    if crs is None:
        if p.crs is None:
            raise ProductError(
                f"product '{p.name}' ({path}) has no CRS (no CF grid_mapping / spatial_ref, no GeoTIFF CRS); "
                f"set crs for it in validation.products (e.g. crs: EPSG:4326 for plain lon/lat grids)")
        da = da.rio.write_crs(p.crs)
    try:
        da.rio.x_dim, da.rio.y_dim  # noqa: B018 (raises when the spatial dimensions are unknown)
    except Exception as exc:
        xd, yd = _spatial_dim(da, "x"), _spatial_dim(da, "y")
        if xd is None or yd is None:
            raise ProductError(f"product '{p.name}' ({path}): no x/y (or lon/lat) dimensions: {exc}") from exc
        da = da.rio.set_spatial_dims(x_dim=xd, y_dim=yd)
    _time_dim(da, p)
    return da


_SPATIAL_NAMES = {"x": ("x", "lon", "longitude", "easting"), "y": ("y", "lat", "latitude", "northing")}
_SPATIAL_UNITS = {"x": ("degrees_east", "degree_east", "degrees_e", "degree_e"),
                  "y": ("degrees_north", "degree_north", "degrees_n", "degree_n")}


def _spatial_dim(da: xr.DataArray, axis: str) -> str | None:
    """The dimension of ``axis`` ("x" or "y") by name, CF ``axis`` or CF units."""
    for dim in map(str, da.dims):
        attrs = da[dim].attrs if dim in da.coords else {}
        if (dim.lower() in _SPATIAL_NAMES[axis] or str(attrs.get("axis", "")).lower() == axis
                or str(attrs.get("units", "")).lower() in _SPATIAL_UNITS[axis]):
            return dim
    return None


def _open_user_zarr(path: str, p: GriddedProductConfig) -> xr.Dataset:
    """A Zarr store with consolidated metadata when it has them, else without (no fallback warning)."""
    import zarr

    so = dict(p.storage_options) or None
    try:
        return xr.open_zarr(path, consolidated=True, decode_coords="all", storage_options=so)
    except (KeyError, ValueError, OSError, zarr.errors.BaseZarrError):
        return xr.open_zarr(path, consolidated=False, decode_coords="all", storage_options=so)


def _open_geotiff_series(p: GriddedProductConfig) -> xr.DataArray:
    import rioxarray

    from dsm.ingest.base import DEFAULT_DATE_REGEX, date_from_name

    files = sorted(glob.glob(p.path)) if glob.has_magic(p.path) else [p.path]
    if not files:
        raise ProductError(f"product '{p.name}' ({p.path}): no file matches")
    days, arrays = [], []
    for f in files:
        try:
            day = date_from_name(f, p.date_regex or DEFAULT_DATE_REGEX)
        except InputError as exc:
            raise ProductError(f"product '{p.name}': {exc}") from exc
        a = rioxarray.open_rasterio(f, masked=True, mask_and_scale=True).isel(band=0, drop=True)
        days.append(np.datetime64(day, "ns"))
        arrays.append(a)
    da = xr.concat(arrays, dim=xr.DataArray(days, dims="time", name="time"), coords="minimal",
                   compat="override", join="override")
    return da.sortby("time")


def sample_gridded(da: xr.DataArray, p: GriddedProductConfig, sites: pd.DataFrame,
                   problems: Problems | None = None) -> pd.DataFrame:
    """A gridded product at the station lon/lat: nearest cell, daily (UTC) means, scaled.

    Stations outside the product's grid get NaN (and a problem entry).

    Returns
    -------
    pandas.DataFrame
        ``network, station, time, <p.name>``.
    """
    crs = CRS.from_user_input(da.rio.crs)
    xdim, ydim, tdim = da.rio.x_dim, da.rio.y_dim, _time_dim(da, p)
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    sx, sy = tr.transform(sites["lon"].to_numpy(np.float64), sites["lat"].to_numpy(np.float64))
    sx, sy = np.asarray(sx, np.float64), np.asarray(sy, np.float64)
    xs, ys = da[xdim].to_numpy().astype(np.float64), da[ydim].to_numpy().astype(np.float64)
    if crs.is_geographic and xs.size and np.nanmax(xs) > 180.0:
        sx = np.mod(sx, 360.0)
    ix, okx = _nearest(xs, sx)
    iy, oky = _nearest(ys, sy)
    ok = okx & oky
    if problems is not None:
        for _, s in sites.loc[~ok].iterrows():
            problems.add("product", p.name, f"station {s.network}/{s.station} (lon {s.lon:.4f}, lat {s.lat:.4f}) "
                                            "is outside the product's grid")
    pts = da.isel({xdim: xr.DataArray(np.where(ok, ix, 0), dims="site"),
                   ydim: xr.DataArray(np.where(ok, iy, 0), dims="site")})
    pts = pts.transpose(tdim, "site").drop_vars([c for c in pts.coords if c != tdim])
    values = np.asarray(pts.values, dtype=np.float64) * p.scale + p.offset
    values[:, ~ok] = np.nan
    times = pd.DatetimeIndex(pts[tdim].values)
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    frame = _long(values, times.floor("D").values, sites, p.name)
    return frame.groupby(["network", "station", "time"], sort=True)[p.name].mean().reset_index()


def _nearest(coord: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest coordinate value and whether the point lies within half a cell of it."""
    if coord.size == 0:
        return np.zeros(points.size, np.int64), np.zeros(points.size, bool)
    order = np.argsort(coord)
    c = coord[order]
    pos = np.clip(np.searchsorted(c, points), 1, max(c.size - 1, 1))
    lo = np.clip(pos - 1, 0, c.size - 1)
    hi = np.clip(pos, 0, c.size - 1)
    pick = np.where(np.abs(points - c[lo]) <= np.abs(points - c[hi]), lo, hi)
    step = np.median(np.diff(c)) if c.size > 1 else np.inf
    ok = np.abs(points - c[pick]) <= 0.5 * step * (1 + 1e-6)
    return order[pick], ok & np.isfinite(points)


# --------------------------------------------------------------------------- scoring (pure)


def pair_table(daily: pd.DataFrame, samples: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Join the in situ daily means with each product's samples on (network, station, day).

    Returns
    -------
    pandas.DataFrame
        ``network, station, time, insitu`` and one column per product; only days with an in
        situ mean; sorted by station and day.
    """
    pairs = daily.loc[:, [*SITE_KEYS, "time", INSITU]].copy()
    for s in samples:
        pairs = pairs.merge(s, on=[*SITE_KEYS, "time"], how="left")
    return pairs.sort_values([*SITE_KEYS, "time"]).reset_index(drop=True)


def common_mask(pairs: pd.DataFrame, products: Sequence[str]) -> np.ndarray:
    """Station-days where the in situ mean and every product in ``products`` are valid."""
    cols = [INSITU, *products]
    return np.isfinite(pairs.loc[:, cols].to_numpy(np.float64)).all(axis=1)


def _ci_row(p: np.ndarray, q: np.ndarray, boot: BootstrapConfig, convention: str, min_n: int,
            block: bool) -> dict[str, float]:
    out = {f"{k}_{b}": np.nan for k in ("r", "rmse", "ubrmse", "bias") for b in ("lo", "hi")}
    if boot.n_resamples < 1 or np.isfinite(p + q).sum() < min_n:
        return out
    if block and boot.block_length is not None:
        length = min(boot.block_length, p.size)
        res = metrics.bootstrap_scores(p, q, n_resamples=boot.n_resamples, confidence=boot.confidence,
                                       seed=boot.seed, block_length=length, bias_convention=convention,
                                       min_n=min_n)
    else:
        keep = np.isfinite(p + q)
        res = metrics.bootstrap_scores(p[keep], q[keep], n_resamples=boot.n_resamples,
                                       confidence=boot.confidence, seed=boot.seed, bias_convention=convention,
                                       min_n=min_n)
    for k in ("r", "rmse", "ubrmse", "bias"):
        out[f"{k}_lo"], out[f"{k}_hi"] = getattr(res, k)
    return out


def _regular(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A station's product and in situ series on a regular daily axis (NaN gaps)."""
    s = frame.set_index("time")[[column, INSITU]]
    full = s.reindex(pd.date_range(s.index.min(), s.index.max(), freq="D"))
    return full[column].to_numpy(np.float64), full[INSITU].to_numpy(np.float64)


def score_pairs(pairs: pd.DataFrame, products: Sequence[str], *, boot: BootstrapConfig | None = None,
                bias_convention: metrics.BiasConvention = "reference_minus_product", min_n: int = 10,
                common_products: Sequence[str] | None = None) -> pd.DataFrame:
    """Score every product against the in situ means per site, per network and overall (pure).

    Parameters
    ----------
    pairs : pandas.DataFrame
        :func:`pair_table` output.
    products : sequence of str
        Product columns to score.
    boot : BootstrapConfig, optional
        Bootstrap settings (default: 1000 resamples, 95 %, seed 0). Sites use the moving-block
        bootstrap when ``block_length`` is set; the pooled levels always resample pairs.
    bias_convention : str
        Sign of the bias (:mod:`dsm.metrics`).
    min_n : int
        Fewest pairs for a score.
    common_products : sequence of str, optional
        Products that define the common days (default: ``products``).

    Returns
    -------
    pandas.DataFrame
        :data:`SCORE_COLUMNS`; ``level`` is ``site``, ``network``, ``all`` or ``site_mean``.
    """
    boot = boot or BootstrapConfig()
    common = common_mask(pairs, list(common_products if common_products is not None else products))
    rows: list[dict[str, Any]] = []
    for name in products:
        for days in ("common", "own"):
            mask = common if days == "common" else np.isfinite(pairs[[name, INSITU]].to_numpy(np.float64)).all(axis=1)
            frame = pairs.loc[:, [*SITE_KEYS, "time", INSITU, name]].copy()
            frame.loc[~mask, [INSITU, name]] = np.nan
            base = {"product": name, "days": days, "bias_convention": bias_convention, "confidence": boot.confidence}
            site_table = metrics.score_table(frame, name, INSITU, list(SITE_KEYS), bias_convention=bias_convention,
                                             min_n=min_n)
            for _, s in site_table.iterrows():
                sub = frame.loc[(frame["network"] == s["network"]) & (frame["station"] == s["station"])]
                if boot.block_length is not None and len(sub):
                    p, q = _regular(sub, name)
                else:
                    p, q = sub[name].to_numpy(np.float64), sub[INSITU].to_numpy(np.float64)
                rows.append({**base, "level": "site", "network": s["network"], "station": s["station"],
                             **{k: s[k] for k in metrics.METRIC_NAMES}, **_ci_row(p, q, boot, bias_convention,
                                                                                  min_n, block=True)})
            net_table = metrics.score_table(frame, name, INSITU, "network", bias_convention=bias_convention,
                                            min_n=min_n)
            for _, s in net_table.iterrows():
                sub = frame.loc[frame["network"] == s["network"]]
                rows.append({**base, "level": "network", "network": s["network"], "station": "",
                             **{k: s[k] for k in metrics.METRIC_NAMES},
                             **_ci_row(sub[name].to_numpy(np.float64), sub[INSITU].to_numpy(np.float64), boot,
                                       bias_convention, min_n, block=False)})
            overall = metrics.score(frame[name], frame[INSITU], bias_convention=bias_convention, min_n=min_n)
            rows.append({**base, "level": "all", "network": "", "station": "", **overall.as_dict(),
                         **_ci_row(frame[name].to_numpy(np.float64), frame[INSITU].to_numpy(np.float64), boot,
                                   bias_convention, min_n, block=False)})
            scored = site_table.loc[site_table["n"] >= min_n]
            mean = {k: float(scored[k].mean()) if len(scored) else np.nan for k in ("r", "rmse", "ubrmse", "bias")}
            rows.append({**base, "level": "site_mean", "network": "", "station": f"{len(scored)} sites",
                         "n": int(scored["n"].sum()), **mean})
    table = pd.DataFrame(rows)
    for c in SCORE_COLUMNS:
        if c not in table.columns:
            table[c] = np.nan
    return table.loc[:, list(SCORE_COLUMNS)]


def overlap_problems(pairs: pd.DataFrame, products: Sequence[str], problems: Problems, min_n: int) -> list[str]:
    """Name stations and products without overlapping days; return the products that overlap."""
    usable = []
    for name in products:
        ok = np.isfinite(pairs[[name, INSITU]].to_numpy(np.float64)).all(axis=1)
        if not ok.any():
            t = pairs["time"]
            span = f"{t.min():%Y-%m-%d}..{t.max():%Y-%m-%d}" if len(t) else "none"
            problems.add("product", name, f"no overlapping days with any station (in situ days {span}); "
                                          "left out of the common days")
            continue
        usable.append(name)
        n = pd.Series(ok).groupby([pairs["network"], pairs["station"]]).sum()
        for (net, sta), k in n.items():
            if k == 0:
                problems.add("station", f"{net}/{sta}", f"no overlapping days with {name}")
            elif k < min_n:
                problems.add("station", f"{net}/{sta}", f"only {int(k)} day(s) overlap {name} (min_n {min_n}): "
                                                        "not scored")
    return usable


# --------------------------------------------------------------------------- twin skill per period


def period_skill(output_url: str, truth_url: str, cube_url: str,
                 storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Skill against the twin's 1 km truth per 16-day period and overall.

    The same scores and maps as :func:`dsm.skill.skill` (``product``, ``smap_repeat``,
    ``smap_bilinear`` on the common pixel-days), grouped by period.

    Returns
    -------
    pandas.DataFrame
        ``period, map, n, rmse, r, ubrmse, bias, cell_r`` (``period`` ``all`` for the whole run).
    """
    so = dict(storage_options or {})
    out = store.open_store(output_url, "products", so)
    truth = store.open_store(truth_url, "truth", so)
    cube = store.open_store(cube_url, "cube", so)
    days = sorted(out.attrs.get("days_done", []))
    if not days:
        raise InputError(f"{output_url} has no predicted day to score")
    land = cube["land_mask"].values == 1
    names = ("product", "smap_repeat", "smap_bilinear")
    by_period: dict[str, list[np.datetime64]] = {}
    for d in days:
        by_period.setdefault(period_of(pd.Timestamp(d).date()).name, []).append(np.datetime64(d, "ns"))
    total = {k: skill_mod._Acc() for k in names}
    rows = []
    for period, times in sorted(by_period.items()):
        acc = {k: skill_mod._Acc() for k in names}
        t = np.array(times)
        sm = out["sm"].sel(time=t).values.astype(np.float32)
        tr = truth["sm_true"].sel(time=t).values.astype(np.float32)
        smap = cube["smap_sm"].sel(time=t).values.astype(np.float32)
        rep, bil = skill_mod.repeat(smap), skill_mod.bilinear(smap)
        common = land[None] & np.isfinite(tr) & np.isfinite(sm) & np.isfinite(rep) & np.isfinite(bil)
        for k, v in zip(names, (sm, rep, bil)):
            acc[k].add(v, tr, common)
            total[k].add(v, tr, common)
        rows += [{"period": period, "map": k, **acc[k].result()} for k in names]
    rows += [{"period": "all", "map": k, **total[k].result()} for k in names]
    frame = pd.DataFrame(rows)
    return frame.loc[:, ["period", "map", "n", "rmse", "r", "ubrmse", "bias", "cell_r"]]


# --------------------------------------------------------------------------- orchestration


def weather_table(v: ValidationConfig, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame | None:
    """The weather-station table of ``v`` (``weather`` read with ``weather_columns``), or None
    without one (or when its file does not exist).

    Raises
    ------
    InputError
        The file lacks a column (naming it and ``validation.weather_columns.<name>``) or is no CSV.
    """
    if not v.weather:
        return None
    try:
        return insitu.read_weather_csv(v.weather, columns=v.weather_columns, setting="validation.weather_columns",
                                       storage_options=storage_options)
    except FileNotFoundError:
        return None
    except insitu.InsituFormatError as exc:
        raise InputError(f"weather file {exc}") from None


def skill_maps(config: Config) -> dict[str, str]:
    """The products stores the twin skill scores: this run's (labelled by its method) and
    ``validation.compare``."""
    if not (config.stores.truth and config.stores.output):
        raise ConfigError("stores.truth and stores.output must be set to score the twin")
    compare = dict(config.validation.compare) if config.validation else {}
    return {config.training.method: config.stores.output, **compare}


def twin_skill_of(config: Config) -> dict[str, Any]:
    """The twin skill (:func:`dsm.skill.skill`) of the configured products, with the twin's
    in situ stations when ``stores.stations`` holds them."""
    so = config.stores.storage_options
    stations = None
    if config.stores.stations:
        url = f"{config.stores.stations.rstrip('/')}/insitu.csv"
        if store.exists(url, so):
            stations = skill_mod.read_twin_stations(url, so)
    return skill_mod.skill(skill_maps(config), str(config.stores.truth), config.stores.cube, so, stations=stations)


def validate(config: Config, client: Client | None) -> ValidationResult:
    """Validate the configured products against the configured stations (see the module doc).

    Parameters
    ----------
    config : Config
        ``stores.output`` (the products store), ``stores.cube`` (SMAP) and ``validation``.
    client : distributed.Client or None
        Store reads run on its workers.

    Returns
    -------
    ValidationResult

    Raises
    ------
    ConfigError
        Without ``stores.output`` or without any station source.
    """
    v = stations_config(config)
    if not config.stores.output:
        raise ConfigError("stores.output must be set to validate (the products store of dsm predict)")
    if not v.stations:
        raise ConfigError("no station source: set validation.stations (or stores.stations for the twin)")
    problems = Problems()
    frames = []
    for i, src in enumerate(v.stations):
        data, failures = read_source(src, config.stores.storage_options, f"validation.stations[{i}].columns")
        for path, why in failures.items():
            problems.add("station_file", path, why)
        frames.append(data)
    frames = [f for f in frames if len(f)]
    if not frames:
        why = "; ".join(f"{r['name']}: {r['problem']}" for r in problems.rows if r["kind"] == "station_file")
        raise InputError(f"no in situ record could be read ({why or 'the station sources hold no records'})")
    records = pd.concat(frames, ignore_index=True)
    records = records.assign(network=records["network"].fillna("-"))
    region = config.grid_region
    located = locate(records, region, problems)
    inside = located.loc[located["inside"], list(SITE_KEYS)]
    daily = station_daily(records, v, problems).merge(inside, on=list(SITE_KEYS))
    sites = located.loc[located["inside"]].merge(daily[list(SITE_KEYS)].drop_duplicates(), on=list(SITE_KEYS))
    sites = sites.reset_index(drop=True)
    samples = []
    product_names = [PRODUCT_1KM, SMAP_36KM]
    if len(sites):
        samples.append(sample_store(sites, config.stores.output, config.stores.cube, client,
                                    config.stores.storage_options))
    for p in v.products:
        try:
            da = open_gridded(p)
            if len(sites):
                samples.append(sample_gridded(da, p, sites, problems))
            product_names.append(p.name)
        except ProductError as exc:
            problems.add("product", p.name, str(exc))
    pairs = pair_table(daily, samples)
    for name in product_names:
        if name not in pairs.columns:
            pairs[name] = np.nan
    usable = overlap_problems(pairs, product_names, problems, v.min_n) if len(pairs) else []
    scores = score_pairs(pairs, usable, boot=v.bootstrap, bias_convention=v.bias_convention, min_n=v.min_n)
    n_days = pairs.groupby(list(SITE_KEYS)).size().rename("n_days").reset_index()
    stations = located.merge(n_days, on=list(SITE_KEYS), how="left").fillna({"n_days": 0})
    stations["status"] = np.where(~stations["inside"], "outside region",
                                  np.where(stations["n_days"] > 0, "scored", "no days"))
    ps = None
    if config.stores.truth:
        try:
            ps = period_skill(config.stores.output, config.stores.truth, config.stores.cube,
                              config.stores.storage_options)
        except InputError as exc:
            problems.add("twin", config.stores.truth, str(exc))
    return ValidationResult(stations.drop(columns=["inside"]), pairs, scores, problems.frame(), product_names, ps)


def _write_text(url: str, text: str, so: Mapping[str, Any] | None = None) -> str:
    return files.write_url(url, text, so)


def write_validation(result: ValidationResult, out: str, storage_options: Mapping[str, Any] | None = None
                     ) -> dict[str, str]:
    """Write the tables of a validation as CSV (and the scores also as JSON) under ``out``.

    Returns
    -------
    dict of str to str
        Table name -> URL written.
    """
    fs, root = fsspec.core.url_to_fs(out, **dict(storage_options or {}))
    files.make_folder(fs, root)
    base = out.rstrip("/")
    written = {}
    tables = {"pairs": result.pairs, "scores": result.scores, "stations": result.stations,
              "problems": result.problems}
    if result.period_skill is not None:
        tables["skill_periods"] = result.period_skill
    for name, table in tables.items():
        written[name] = _write_text(f"{base}/{name}.csv", table.to_csv(index=False, date_format="%Y-%m-%d"),
                                    storage_options)
    records = json.loads(result.scores.to_json(orient="records"))
    written["scores_json"] = _write_text(f"{base}/scores.json", json.dumps(
        {"bias_convention": result.scores["bias_convention"].iloc[0] if len(result.scores) else None,
         "products": result.products, "scores": records}, indent=1), storage_options)
    return written


def export_timeseries(pairs: pd.DataFrame, stations: pd.DataFrame, out: str, *, dataset: str = "dsm",
                      units: str = "m3 m-3", depth: float | None = None,
                      storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Station-pixel time series as CSV files that pytesmo and QA4SM read.

    Layout (QA4SM "user data upload: time series" convention)::

        OUT/<dataset>_gpi=<GPI>_lat=<LAT>_lon=<LON>.csv   one file per station
        OUT/metadata.yml                                  long_name and units of every column
        OUT/stations.csv                                  gpi -> network, station, lon, lat, pixel, cell
        OUT/<dataset>_timeseries.zip                      all of the above, ready to upload

    Each station CSV has a header row and the date as its first (index) column; read it with
    ``pandas.read_csv(path, index_col=0, parse_dates=True)`` (pytesmo's readers do the same).
    Columns: ``time`` (UTC day, ISO date), ``insitu`` (station daily mean of the surface
    sensors), ``sm_1km`` (the 1 km product at the station's pixel), ``smap_36km`` (SMAP at its
    36 km cell) and one column per other configured product; all m3/m3, empty where missing.
    ``GPI`` is the station's 0-based position in ``stations.csv``; LAT/LON the station's
    coordinates (degrees, WGS 84, 6 decimals).

    ``out`` is a local folder or an fsspec URL (``s3://...``, with ``storage_options``): remote
    files are written to a temporary folder, then uploaded.

    Returns
    -------
    dict
        ``{"files": [...], "zip": path, "metadata": path, "stations": path}`` (under ``out``).
    """
    if files.is_local(out):
        return _write_timeseries(pairs, stations, Path(out), dataset, units, depth)
    fs, base = fsspec.core.url_to_fs(out, **dict(storage_options or {}))
    with tempfile.TemporaryDirectory(prefix="dsm-timeseries-") as tmp:
        local = _write_timeseries(pairs, stations, Path(tmp), dataset, units, depth)
        files.make_folder(fs, base)
        for name in sorted(os.listdir(tmp)):
            files.put_file(fs, os.path.join(tmp, name), f"{base.rstrip('/')}/{name}")
    url = out.rstrip("/")
    return {"files": [f"{url}/{os.path.basename(f)}" for f in local["files"]],
            **{k: f"{url}/{os.path.basename(local[k])}" for k in ("zip", "metadata", "stations")}}


def _write_timeseries(pairs: pd.DataFrame, stations: pd.DataFrame, root: Path, dataset: str, units: str,
                      depth: float | None) -> dict[str, Any]:
    """:func:`export_timeseries` into the local folder ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    value_cols = [c for c in pairs.columns if c not in (*SITE_KEYS, "time")]
    sites = stations.loc[stations["status"] == "scored"].reset_index(drop=True) if "status" in stations else stations
    sites = sites.reset_index(drop=True)
    sites.insert(0, "gpi", np.arange(len(sites)))
    if depth is not None:
        sites["depth_max_m"] = depth
    files = []
    for _, s in sites.iterrows():
        sub = pairs.loc[(pairs["network"] == s["network"]) & (pairs["station"] == s["station"]),
                        ["time", *value_cols]]
        name = f"{dataset}_gpi={s.gpi}_lat={s.lat:.6f}_lon={s.lon:.6f}.csv"
        sub.to_csv(root / name, index=False, date_format="%Y-%m-%d", float_format="%.5f")
        files.append(str(root / name))
    long_names = {INSITU: "in situ daily mean, surface sensors", PRODUCT_1KM: "dsm 1 km soil moisture at the pixel",
                  SMAP_36KM: "SMAP L3 36 km soil moisture at the cell"}
    meta = {c: {"long_name": long_names.get(c, f"{c} at the station"), "units": units} for c in value_cols}
    (root / "metadata.yml").write_text(yaml.safe_dump(meta, sort_keys=False))
    sites.to_csv(root / "stations.csv", index=False)
    zpath = root / f"{dataset}_timeseries.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for f in [*files, str(root / "metadata.yml"), str(root / "stations.csv")]:
            z.write(f, os.path.basename(f))
    return {"files": files, "zip": str(zpath), "metadata": str(root / "metadata.yml"),
            "stations": str(root / "stations.csv")}


def run_validate(config: Config, client: Client | None) -> tuple[ValidationResult, dict[str, str]]:
    """:func:`validate`, then write its tables and the station time series under ``validation.out``."""
    v = stations_config(config)
    result = validate(config, client)
    written = write_validation(result, str(v.out), config.stores.storage_options)
    ts = export_timeseries(result.pairs, result.stations, f"{v.out}/timeseries", depth=v.max_depth,
                           storage_options=config.stores.storage_options)
    written["timeseries_zip"] = ts["zip"]
    return result, written


def format_scores(scores: pd.DataFrame, days: str = "common") -> str:
    """The ``all`` and ``site_mean`` rows of each product as a text table."""
    sub = scores.loc[(scores["days"] == days) & scores["level"].isin(["all", "site_mean"])]
    cols = ["product", "level", "n", "r", "r_lo", "r_hi", "rmse", "ubrmse", "bias", "bias_lo", "bias_hi"]
    buf = io.StringIO()
    sub.loc[:, cols].to_string(buf, index=False, float_format=lambda v: f"{v:.4f}")
    return buf.getvalue()


def problem_lines(problems: pd.DataFrame) -> Iterable[str]:
    """One line per problem: ``kind name: problem``."""
    for _, p in problems.iterrows():
        yield f"{p['kind']} {p['name']}: {p['problem']}"


__all__ = [
    "INSITU", "PRODUCT_1KM", "SMAP_36KM", "SCORE_COLUMNS", "ProductError", "ValidationResult",
    "read_source", "station_daily", "locate", "sample_store", "open_gridded", "sample_gridded",
    "pair_table", "common_mask", "score_pairs", "overlap_problems", "period_skill", "stations_config",
    "validate", "write_validation", "export_timeseries", "run_validate", "format_scores", "problem_lines",
]
