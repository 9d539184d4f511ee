"""Writers of gridded daily precipitation files in the real product layouts, for tests and users.

Values are given as ``(lat, lon)`` or ``(time, lat, lon)`` arrays with NaN for missing; each
writer stores them the way the product does (dimension order, dtypes, fill values, units,
packing) so :mod:`dsm.ingest.precip` reads them exactly like downloaded files.

* :func:`write_imerg_day` — GES DISC GPM IMERG daily netCDF4 (``3B-DAY.MS.MRG.3IMERG...nc4``):
  ``precipitation`` (V07, "mm/day", long name "Daily mean precipitation rate (combined
  microwave-IR) estimate. Formerly precipitationCal.") or ``precipitationCal`` (V06, "mm",
  "Daily accumulated precipitation (combined microwave-IR) estimate"), float32, dims
  ``(time, lon, lat)`` (lon-major), ``_FillValue`` -9999.9, with the int16 ``*_cnt`` count;
  ``lon`` float32 and ``lat`` float64 cell centres; global ``BeginDate``/``BeginTime``/
  ``EndDate``/``EndTime``/``FileHeader``/``DOI``/``ProductionTime``. The ``time`` encoding
  (int32 seconds since 1970-01-01 UTC, as in IMERG's HDF5 files) could not be checked against a
  daily file; the reader does not use it (it dates a file by ``BeginDate`` and its name).
* :func:`write_chirps_tif` — CHIRPS v2.0 daily GeoTIFF ``chirps-v2.0.YYYY.MM.DD.tif``: one
  float32 band, nodata -9999, EPSG:4326, north-up (optionally gzipped, as on the CHC server).
* :func:`write_chirps_nc` — CHIRPS v2.0 yearly netCDF ``chirps-v2.0.YYYY.days_p05.nc``:
  ``precip(time, latitude, longitude)`` float32 "mm/day" with ``_FillValue`` and
  ``missing_value`` -9999, latitude ascending, ``time`` float32 "days since 1980-1-1 0:0:0"
  (gregorian) and the variable and global attributes of the CHC files.
* :func:`write_era5land_hourly` — ERA5-Land ``tp`` (accumulated since 00 UTC, "m") as the CDS
  delivers it: ``layout="new"`` (2024+: netCDF4, ``valid_time`` int64 seconds since 1970,
  float32 with NaN fill, ``number``/``expver`` coordinates, GRIB_* attributes) or
  ``layout="old"`` (netCDF3 64-bit offset, ``time`` int32 hours since 1900, int16 packed with
  ``scale_factor``/``add_offset`` and -32767 fill). :func:`accumulate_since_00utc` turns hourly
  amounts into such accumulations.
* :func:`write_era5land_daily` — one ``tp`` total per day (m), in the new CDS netCDF layout (the
  CDS daily-statistics ``daily_sum``; its exact attributes are not known, the common ones are
  written).
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

PathLike = str | os.PathLike

IMERG_FILL = np.float32(-9999.9)
CHIRPS_FILL = np.float32(-9999.0)
ERA5_OLD_FILL = np.int16(-32767)
_RUN = {"final": ("", "F"), "late": ("-L", "L"), "early": ("-E", "E")}


def imerg_filename(date: dt.date, version: str = "V07B", run: str = "final") -> str:
    """GES DISC name of an IMERG daily file, e.g. ``3B-DAY.MS.MRG.3IMERG.20160101-S000000-E235959.V07B.nc4``."""
    return f"3B-DAY{_RUN[run][0]}.MS.MRG.3IMERG.{date:%Y%m%d}-S000000-E235959.{version}.nc4"


def chirps_tif_name(date: dt.date) -> str:
    """``chirps-v2.0.YYYY.MM.DD.tif``."""
    return f"chirps-v2.0.{date:%Y.%m.%d}.tif"


def chirps_nc_name(year: int) -> str:
    """``chirps-v2.0.YYYY.days_p05.nc``."""
    return f"chirps-v2.0.{year}.days_p05.nc"


def _no_fill(*names: str) -> dict[str, dict[str, None]]:
    return {n: {"_FillValue": None} for n in names}


def write_imerg_day(path: PathLike, date: dt.date, lat: np.ndarray, lon: np.ndarray, values: np.ndarray,
                    version: str = "V07", run: str = "final", units: str | None = None) -> Path:
    """Write one IMERG daily file (see module docstring); ``values`` (lat, lon) in mm.

    ``units`` overrides the product's units attribute (to make mislabelled files).
    """
    path = Path(path)
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float32)
    v = np.asarray(values, np.float32)
    if v.shape != (lat.size, lon.size):
        raise ValueError(f"values shape {v.shape} is not (lat, lon) = {(lat.size, lon.size)}")
    v07 = version.upper().startswith("V07")
    name = "precipitation" if v07 else "precipitationCal"
    start = pd.Timestamp(date)
    seconds = np.array([int(start.timestamp())], np.int32)
    data = np.where(np.isnan(v), IMERG_FILL, v).T[None]  # (time, lon, lat)
    cnt = np.where(np.isnan(v), 0, 48).astype(np.int16).T[None]
    long = ("Daily mean precipitation rate (combined microwave-IR) estimate. Formerly precipitationCal." if v07
            else "Daily accumulated precipitation (combined microwave-IR) estimate")
    cnt_long = f"Count of all valid half-hourly {name} retrievals for the day"
    ds = xr.Dataset(
        {name: (("time", "lon", "lat"), data, {"units": units or ("mm/day" if v07 else "mm"), "long_name": long}),
         f"{name}_cnt": (("time", "lon", "lat"), cnt, {"units": "count", "long_name": cnt_long}),
         "time_bnds": (("time", "nv"), np.array([[seconds[0], seconds[0] + 86400]], np.int32),
                       {"coordinates": "time nv"})},
        coords={"time": ("time", seconds, {"standard_name": "time", "units": "seconds since 1970-01-01 00:00:00 UTC",
                                           "bounds": "time_bnds", "calendar": "standard"}),
                "lon": ("lon", lon, {"units": "degrees_east", "long_name": "Longitude"}),
                "lat": ("lat", lat, {"units": "degrees_north", "long_name": "Latitude"})},
        attrs={"BeginDate": f"{date:%Y-%m-%d}", "BeginTime": "00:00:00.000Z", "EndDate": f"{date:%Y-%m-%d}",
               "EndTime": "23:59:59.999Z",
               "FileHeader": f"StartGranuleDateTime={date:%Y-%m-%d}T00:00:00.000Z;\n"
                             f"StopGranuleDateTime={date:%Y-%m-%d}T23:59:59.999Z",
               "DOI": f"10.5067/GPM/IMERGD{_RUN[run][1]}/DAY/{'07' if v07 else '06'}",
               "ProductionTime": "2024-11-06T16:23:03.571Z"})
    enc: dict[str, dict[str, Any]] = {name: {"_FillValue": IMERG_FILL, "dtype": "float32"}, **_no_fill("time", "lon", "lat", "time_bnds",
                                                                            f"{name}_cnt")}
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    return path


def write_chirps_tif(path: PathLike, lat: np.ndarray, lon: np.ndarray, values: np.ndarray, gz: bool = False) -> Path:
    """Write a CHIRPS daily GeoTIFF (name it with :func:`chirps_tif_name`); ``gz`` adds ``.gz``."""
    import rasterio
    from rasterio.transform import from_origin

    path = Path(path)
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    res = abs(lon[1] - lon[0]) if lon.size > 1 else 0.05
    order = np.argsort(-lat)
    v = np.asarray(values, np.float32)[order]
    data = np.where(np.isnan(v), CHIRPS_FILL, v)
    transform = from_origin(lon.min() - res / 2, lat.max() + res / 2, res, res)
    with rasterio.open(path, "w", driver="GTiff", width=lon.size, height=lat.size, count=1, dtype="float32",
                       crs="EPSG:4326", transform=transform, nodata=float(CHIRPS_FILL)) as dst:
        dst.write(data, 1)
    if gz:
        target = path.with_name(path.name + ".gz")
        with open(path, "rb") as fin, gzip.open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        path.unlink()
        return target
    return path


def write_chirps_nc(path: PathLike, dates: Sequence[dt.date], lat: np.ndarray, lon: np.ndarray,
                    values: np.ndarray, units: str = "mm/day") -> Path:
    """Write a CHIRPS v2.0 daily netCDF; ``values`` (time, lat, lon) in mm, any latitude order."""
    path = Path(path)
    lat, lon = np.asarray(lat, np.float32), np.asarray(lon, np.float32)
    order = np.argsort(lat)  # CHC files run south to north
    v = np.asarray(values, np.float32)[:, order]
    days = np.array([(pd.Timestamp(d) - pd.Timestamp("1980-01-01")).days for d in dates], np.float32)
    geo = {"geostatial_lat_min": np.float32(-50.0), "geostatial_lat_max": np.float32(50.0),
           "geostatial_lon_min": np.float32(-180.0), "geostatial_lon_max": np.float32(180.0)}
    ds = xr.Dataset(
        {"precip": (("time", "latitude", "longitude"), np.where(np.isnan(v), CHIRPS_FILL, v),
                    {"units": units, "standard_name": "convective precipitation rate",
                     "long_name": "Climate Hazards group InfraRed Precipitation with Stations", "time_step": "day",
                     "missing_value": CHIRPS_FILL, **geo})},
        coords={"latitude": ("latitude", lat[order], {"units": "degrees_north", "standard_name": "latitude",
                                                      "long_name": "latitude", "axis": "Y"}),
                "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude",
                                                 "long_name": "longitude", "axis": "X"}),
                "time": ("time", days, {"units": "days since 1980-1-1 0:0:0", "standard_name": "time",
                                        "calendar": "gregorian", "axis": "T"})},
        attrs={"Conventions": "CF-1.6", "title": "CHIRPS Version 2.0", "history": "created by Climate Hazards Group",
               "version": "Version 2.0", "creator_name": "Pete Peterson", "creator_email": "pete@geog.ucsb.edu",
               "institution": "Climate Hazards Group.  University of California at Santa Barbara",
               "documentation": "http://pubs.usgs.gov/ds/832/",
               "comments": " time variable denotes the first day of the given day."})
    enc: dict[str, dict[str, Any]] = {"precip": {"_FillValue": CHIRPS_FILL, "dtype": "float32"}, **_no_fill("latitude", "longitude", "time")}
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    return path


def accumulate_since_00utc(times: Sequence[dt.datetime], amounts: np.ndarray) -> np.ndarray:
    """ERA5-Land style ``tp`` from hourly amounts: at each valid time, the sum since 00 UTC.

    ``amounts[k]`` is the precipitation of the hour ending at ``times[k]`` (consecutive hours);
    the value at 00 UTC is the whole previous day, the value at 01 UTC the first hour.
    """
    t = pd.DatetimeIndex(list(times))
    a = np.asarray(amounts, np.float64)
    out = np.empty_like(a)
    run = np.zeros(a.shape[1:])
    for k, v in enumerate(t):
        if v.hour == 1:  # the first hour of a UTC day: the accumulation restarts
            run = np.zeros(a.shape[1:])
        run = run + a[k]  # a series starting mid-day counts from its first hour
        out[k] = run
    return out


def _grib_attrs(lat: np.ndarray, lon: np.ndarray, step_type: str | None) -> dict[str, object]:
    d = lat[1] - lat[0] if lat.size > 1 else -0.1
    a = {"GRIB_paramId": np.int64(228), "GRIB_dataType": "fc", "GRIB_numberOfPoints": np.int64(lat.size * lon.size),
         "GRIB_typeOfLevel": "surface", "GRIB_stepUnits": np.int64(1)}
    if step_type:
        a["GRIB_stepType"] = step_type
    a |= {"GRIB_gridType": "regular_ll", "GRIB_Nx": np.int64(lon.size), "GRIB_Ny": np.int64(lat.size),
          "GRIB_cfName": "unknown", "GRIB_cfVarName": "tp", "GRIB_iDirectionIncrementInDegrees": 0.1,
          "GRIB_jDirectionIncrementInDegrees": abs(float(d)) if lat.size > 1 else 0.1,
          "GRIB_latitudeOfFirstGridPointInDegrees": float(lat[0]), "GRIB_longitudeOfFirstGridPointInDegrees": float(lon[0]),
          "GRIB_missingValue": 3.40282346638529e38, "GRIB_name": "Total precipitation", "GRIB_shortName": "tp",
          "GRIB_units": "m", "long_name": "Total precipitation", "units": "m", "standard_name": "unknown",
          "GRIB_surface": 0.0}
    return a


_NEW_GLOBAL = {"GRIB_centre": "ecmf", "GRIB_centreDescription": "European Centre for Medium-Range Weather Forecasts",
               "GRIB_subCentre": np.int64(0), "Conventions": "CF-1.7",
               "institution": "European Centre for Medium-Range Weather Forecasts",
               "history": "GRIB to CDM+CF via cfgrib-0.9.15.1/ecCodes-2.41.0"}


def _new_cds(path: Path, times: pd.DatetimeIndex, lat: np.ndarray, lon: np.ndarray, tp: np.ndarray,
             step_type: str | None, units: str) -> Path:
    order = np.argsort(-lat)  # "stored_direction": "decreasing"
    lat, v = lat[order], np.asarray(tp, np.float32)[:, order]
    secs = ((times - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)).to_numpy().astype(np.int64)
    attrs = _grib_attrs(lat, lon, step_type) | {"units": units}
    ds = xr.Dataset(
        {"tp": (("valid_time", "latitude", "longitude"), v, attrs)},
        coords={"number": ((), np.int64(0), {"long_name": "ensemble member numerical id", "units": "1",
                                             "standard_name": "realization"}),
                "valid_time": ("valid_time", secs, {"long_name": "time", "standard_name": "time",
                                                    "units": "seconds since 1970-01-01",
                                                    "calendar": "proleptic_gregorian"}),
                "latitude": ("latitude", lat.astype(np.float64), {"units": "degrees_north", "standard_name": "latitude",
                                                                  "long_name": "latitude", "stored_direction": "decreasing"}),
                "longitude": ("longitude", lon.astype(np.float64), {"units": "degrees_east", "standard_name": "longitude",
                                                                    "long_name": "longitude"}),
                "expver": ("valid_time", np.array(["0001"] * len(times), dtype=object))},
        attrs=_NEW_GLOBAL)
    enc: dict[str, dict[str, Any]] = {"tp": {"_FillValue": np.float32(np.nan)}, "latitude": {"_FillValue": np.nan},
           "longitude": {"_FillValue": np.nan}, **_no_fill("valid_time", "number")}
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    return path


def write_era5land_hourly(path: PathLike, times: Sequence[dt.datetime], lat: np.ndarray, lon: np.ndarray,
                          tp: np.ndarray, layout: str = "new", units: str = "m") -> Path:
    """Write ERA5-Land hourly ``tp`` (accumulated since 00 UTC, m) at UTC ``times``; ``tp`` (time, lat, lon).

    ``layout``: ``"new"`` (CDS 2024+) or ``"old"`` (CDS before 2024); see the module docstring.
    """
    path = Path(path)
    t = pd.DatetimeIndex(list(times))
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    if layout == "new":
        return _new_cds(path, t, lat, lon, tp, "accum", units)
    if layout != "old":
        raise ValueError(f"layout must be 'new' or 'old', not {layout!r}")
    order = np.argsort(-lat)
    v = np.asarray(tp, np.float64)[:, order]
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scale = (hi - lo) / 65532.0 if hi > lo else 1e-7
    offset = (hi + lo) / 2.0
    hours = ((t - pd.Timestamp("1900-01-01")) // pd.Timedelta(hours=1)).to_numpy().astype(np.int32)
    ds = xr.Dataset(
        {"tp": (("time", "latitude", "longitude"), v, {"units": units, "long_name": "Total precipitation"})},
        coords={"longitude": ("longitude", lon.astype(np.float32), {"units": "degrees_east", "long_name": "longitude"}),
                "latitude": ("latitude", lat[order].astype(np.float32), {"units": "degrees_north", "long_name": "latitude"}),
                "time": ("time", hours, {"units": "hours since 1900-01-01 00:00:00.0", "long_name": "time",
                                         "calendar": "gregorian"})},
        attrs={"Conventions": "CF-1.6", "history": "2023-05-04 10:11:12 GMT by grib_to_netcdf-2.25.1: "
                                                   "/opt/ecmwf/mars-client/bin/grib_to_netcdf.bin -S param -o "
                                                   "/cache/data0/adaptor.mars.internal.nc /cache/tmp/data.grib"})
    ds = ds.transpose("time", "latitude", "longitude")
    enc: dict[str, dict[str, Any]] = {"tp": {"dtype": "int16", "scale_factor": scale, "add_offset": offset, "_FillValue": ERA5_OLD_FILL,
                  "missing_value": ERA5_OLD_FILL}, **_no_fill("longitude", "latitude", "time")}
    ds.to_netcdf(path, engine="scipy", format="NETCDF3_64BIT", encoding=enc)
    return path


def write_era5land_daily(path: PathLike, dates: Sequence[dt.date], lat: np.ndarray, lon: np.ndarray,
                         tp: np.ndarray, units: str = "m") -> Path:
    """Write one ERA5-Land ``tp`` total (m) per day, new CDS netCDF layout; ``tp`` (time, lat, lon)."""
    t = pd.DatetimeIndex([pd.Timestamp(d) for d in dates])
    return _new_cds(Path(path), t, np.asarray(lat, np.float64), np.asarray(lon, np.float64), tp, None, units)
