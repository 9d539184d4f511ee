"""Fixtures for validation tests: a products store made from a twin's truth, gridded product files.

:func:`make_products_store` writes an output store with the schema of :mod:`dsm.products`
whose ``sm`` is the twin's 1 km truth plus seeded Gaussian noise, so that scores against the
stations and the truth can be computed independently. :func:`write_gridded_netcdf` and
:func:`write_gridded_geotiffs` write "other products" on a lon/lat grid (with or without a CRS).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from dsm import ledger, products, store
from dsm.cube import Layout
from dsm.grid import Region, block_reduce_mean
from dsm.storeref import StoreRef


def make_products_store(dest: StoreRef, truth: StoreRef, *, noise: float = 0.02, seed: int = 0,
                        space_chunk: int = 72, time_chunk: int = 8, days_done: Sequence[str] | None = None,
                        overwrite: bool = True) -> StoreRef:
    """Write a products store: ``sm = truth + N(0, noise)`` over land, clipped to [0, 1].

    Parameters
    ----------
    dest : StoreRef
        Where to write the store.
    truth : StoreRef
        The twin's truth store (``sm_true``, ``land_mask``; its attributes give region and dates).
    noise : float
        Standard deviation of the added noise, m3/m3.
    seed : int
        Seed of the noise.
    space_chunk, time_chunk : int
        Chunks of the store (must match the truth's layout for a clean region write).
    days_done : sequence of str, optional
        ISO days recorded as done (default: every day).
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    StoreRef
        ``dest``.
    """
    truth_ds = store.open_store(truth, "truth")
    r = truth_ds.attrs["region"]
    region = Region.from_dict(r)
    start, end = dt.date.fromisoformat(truth_ds.attrs["start"]), dt.date.fromisoformat(truth_ds.attrs["end"])
    layout = Layout(region, start, end, space_chunk, time_chunk)
    products.create_products(dest, layout, 0.9, overwrite=overwrite)
    tr = truth_ds["sm_true"].values.astype(np.float32)
    land = truth_ds["land_mask"].values == 1
    rng = np.random.default_rng(seed)
    sm = np.clip(tr + rng.normal(0.0, noise, tr.shape).astype(np.float32), 0.0, 1.0)
    sm[:, ~land] = np.nan
    origin = np.where(np.isfinite(sm), products.ALL_PREDICTORS, 0).astype(products.ORIGIN_DTYPE)
    coords = {"time": truth_ds["time"].values, "y": truth_ds["y"].values, "x": truth_ds["x"].values}
    out = products.open_products(dest)
    coarse = {"time": truth_ds["time"].values, "cy": out["cy"].values, "cx": out["cx"].values}
    ds = xr.Dataset({"sm": (("time", "y", "x"), sm),
                     "sm_unc": (("time", "y", "x"), np.where(np.isfinite(sm), 1.645 * noise, np.nan).astype(np.float32)),
                     "sm_origin": (("time", "y", "x"), origin)}, coords=coords)
    store.write_region(dest, ds, store=out)
    c36 = xr.Dataset({"sm_36km": (("time", "cy", "cx"), block_reduce_mean(sm))}, coords=coarse)
    store.write_region(dest, c36, store=out)
    done = list(days_done) if days_done is not None else [str(pd.Timestamp(t).date()) for t in truth_ds["time"].values]
    record_days_done(dest, done)
    return dest


def record_days_done(ref: StoreRef, days: Sequence[str]) -> None:
    """Record the ISO ``days`` of the products store ``ref`` done, each with the digest of the
    ``sm`` the store holds for it (:func:`dsm.products.day_digest`), as predict records them."""
    sm = zarr.open_array(ref.join("sm").url, mode="r", storage_options=ref.zarr_options)
    times = products.open_products(ref)["time"].values
    index = {str(pd.Timestamp(t).date()): i for i, t in enumerate(times)}
    chunks = (int(sm.chunks[1]), int(sm.chunks[2]))
    ledger.write_days(ref, {d: ledger.DayRecord(done=True, model={
        products.SM_DIGEST: products.day_digest(np.asarray(sm[index[d]]), chunks)}) for d in sorted(days)})


def _lonlat_grid(bounds: tuple[float, float, float, float], step: float) -> tuple[np.ndarray, np.ndarray]:
    lo0, la0, lo1, la1 = bounds
    lon = np.arange(lo0 + step / 2, lo1, step)
    lat = np.arange(la1 - step / 2, la0, -step)
    return lon, lat


def gridded_field(truth: StoreRef, bounds: tuple[float, float, float, float], step: float) -> xr.DataArray:
    """The twin's truth averaged onto a regular lon/lat grid (``time, lat, lon``), m3/m3.

    Each lon/lat cell takes the mean of the 1 km truth pixels whose centres fall in it.
    """
    from dsm.grid import xy_to_lonlat

    truth_ds = store.open_store(truth, "truth")
    tr = truth_ds["sm_true"].values.astype(np.float64)
    lon, lat = _lonlat_grid(bounds, step)
    plon = xy_to_lonlat(truth_ds["x"].values, np.zeros(truth_ds.sizes["x"]))[0]
    plat = xy_to_lonlat(np.zeros(truth_ds.sizes["y"]), truth_ds["y"].values)[1]
    ix = np.floor((plon - bounds[0]) / step).astype(int)
    iy = np.floor((bounds[3] - plat) / step).astype(int)
    out = np.full((tr.shape[0], lat.size, lon.size), np.nan)
    for j in range(lat.size):
        for i in range(lon.size):
            rows, cols = np.flatnonzero(iy == j), np.flatnonzero(ix == i)
            if rows.size and cols.size:
                block = tr[:, rows[:, None], cols[None, :]].reshape(tr.shape[0], -1)
                valid = np.isfinite(block).sum(axis=1) > 0
                out[valid, j, i] = np.nanmean(block[valid], axis=1)
    return xr.DataArray(out.astype(np.float32), dims=("time", "lat", "lon"),
                        coords={"time": truth_ds["time"].values, "lat": lat, "lon": lon}, name="sm")


def write_gridded_netcdf(path: str | Path, field: xr.DataArray, *, with_crs: bool = True,
                         variable: str = "soil_moisture", scale: float = 1.0) -> str:
    """Write ``field / scale`` as NetCDF4 (h5netcdf) with CF lat/lon and, optionally, a CRS."""
    da = (field / scale).astype(np.float32).rename(variable)
    da["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    da["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    ds = da.to_dataset()
    if with_crs:
        import rioxarray  # noqa: F401

        ds = ds.rio.write_crs("EPSG:4326")
    ds.to_netcdf(path, engine="h5netcdf")
    return str(path)


def write_gridded_geotiffs(folder: str | Path, field: xr.DataArray, *, prefix: str = "other") -> list[str]:
    """Write one EPSG:4326 GeoTIFF per day (``<prefix>_YYYYMMDD.tif``); returns the paths."""
    import rioxarray  # noqa: F401

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in field["time"].values:
        day = pd.Timestamp(t)
        da = field.sel(time=t).rename({"lon": "x", "lat": "y"}).rio.write_crs("EPSG:4326")
        da = da.rio.write_nodata(np.nan)
        path = folder / f"{prefix}_{day:%Y%m%d}.tif"
        da.rio.to_raster(path)
        paths.append(str(path))
    return paths


__all__ = ["make_products_store", "gridded_field", "write_gridded_netcdf", "write_gridded_geotiffs"]
