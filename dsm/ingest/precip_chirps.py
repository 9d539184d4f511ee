"""CHIRPS v2.0 daily precipitation: daily GeoTIFFs (``chirps-v2.0.YYYY.MM.DD.tif[.gz]``) and
yearly netCDF files (``chirps-v2.0.YYYY.days_p05.nc``) as daily ``precip`` in mm on the CHIRPS
day as labelled (see :mod:`dsm.ingest.precip`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from rasterio.errors import RasterioIOError

from dsm.ingest.base import (
    GeolocationError,
    InputDateError,
    PathLike,
    UnreadableFileError,
    WrongProductError,
)
from dsm.ingest.precip_common import (
    DAILY_MM_UNITS,
    check_units,
    existing_file,
    latlon_names,
    netcdf_times,
    open_netcdf,
    precip_array,
    require_variable,
)
from dsm.remap import BBox, gather_block, lat_window, load_block, lon_window

__all__ = ["chirps_dates", "read_chirps"]

_CHIRPS_TIF = re.compile(r"(?P<year>\d{4})\.(?P<month>\d{2})\.(?P<day>\d{2})\.tiff?(?:\.gz)?$", re.IGNORECASE)


def _is_tif(path: str) -> bool:
    with open(path, "rb") as f:
        magic = f.read(4)
    return magic[:2] in (b"II", b"MM") or magic[:2] == b"\x1f\x8b"


def chirps_dates(path: str) -> list[dt.date]:
    """The days of a CHIRPS file: from the name (GeoTIFF) or the time coordinate (netCDF)."""
    if _is_tif(path):
        m = _CHIRPS_TIF.search(os.path.basename(path))
        if m is None:
            raise InputDateError(path, "no YYYY.MM.DD date in the GeoTIFF's name (chirps-v2.0.YYYY.MM.DD.tif)")
        try:
            return [dt.date(int(m["year"]), int(m["month"]), int(m["day"]))]
        except ValueError as exc:
            raise InputDateError(path, f"'{m.group(0)}' in the file name is not a date") from exc
    with open_netcdf(path) as ds:
        return _nc_days(ds, path)


def _nc_days(ds: xr.Dataset, path: str) -> list[dt.date]:
    tname = next((t for t in ("time", "valid_time") if t in ds.variables), None)
    if tname is None:
        raise InputDateError(path, "no time or valid_time coordinate")
    times = netcdf_times(path, ds[tname].values, dict(ds[tname].attrs))
    return [t.date() for t in times]


def read_chirps(path: PathLike, *, bbox: BBox | None = None, days: Iterable[dt.date] | None = None) -> xr.DataArray:
    """CHIRPS v2.0 daily precipitation (GeoTIFF of one day, or a netCDF of many) in mm.

    Parameters
    ----------
    path
        ``chirps-v2.0.YYYY.MM.DD.tif`` (also ``.tif.gz``) or ``chirps-v2.0.YYYY.days_p05.nc``.
    bbox
        Read only the cells around ``(lon_min, lat_min, lon_max, lat_max)``.
    days
        netCDF: read only these days (those absent from the file are left out).
    """
    path = existing_file(path)
    attrs = {"product": "chirps", "day": "CHIRPS day as labelled (no time zone stated)"}
    if _is_tif(path):
        return _read_chirps_tif(path, bbox, attrs)
    with open_netcdf(path) as ds:
        require_variable(ds, path, "precip", "CHIRPS", "variable 'precip' is missing")
        check_units(path, ds["precip"].attrs.get("units", ""), DAILY_MM_UNITS, "CHIRPS")
        lat_n, lon_n = latlon_names(ds, path, "precip")
        tdim = next((str(d) for d in ds["precip"].dims if d not in (lat_n, lon_n)), None)
        all_days = _nc_days(ds, path)
        want = set(days) if days is not None else None
        tidx = np.array([i for i, d in enumerate(all_days) if want is None or d in want], dtype=np.int64)
        lat, lon = ds[lat_n].values.astype(np.float64), ds[lon_n].values.astype(np.float64)
        xidx, lon_out = lon_window(lon, bbox, 0.05)
        yidx = lat_window(lat, bbox, 0.05)
        values = load_block(ds["precip"], tdim, tidx, lat_n, lon_n, yidx, xidx)
    return precip_array(values, lat[yidx], lon_out, [all_days[i] for i in tidx], path, 0.05, attrs)


def _read_chirps_tif(path: str, bbox: BBox | None, attrs: dict[str, Any]) -> xr.DataArray:
    date = chirps_dates(path)[0]
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    try:
        src = rasterio.open(f"/vsigzip/{os.path.abspath(path)}" if gz else path)
    except RasterioIOError as exc:
        raise UnreadableFileError(path, f"not a readable GeoTIFF ({exc})") from exc
    with src:
        if src.count != 1:
            raise WrongProductError(path, f"{src.count} bands: a CHIRPS daily GeoTIFF has one")
        if src.crs is None or not src.crs.is_geographic:
            raise GeolocationError(path, f"CRS {src.crs} is not geographic longitude/latitude (CHIRPS: EPSG:4326)")
        t = src.transform
        if t.b or t.d or t.e >= 0:
            raise GeolocationError(path, "the raster is rotated or not north-up")
        lon = t.c + (np.arange(src.width) + 0.5) * t.a
        lat = t.f + (np.arange(src.height) + 0.5) * t.e
        xidx, lon_out = lon_window(lon, bbox, abs(t.a))
        yidx = lat_window(lat, bbox, abs(t.e))
        nodata = src.nodata

        def read(r: slice, c: slice) -> np.ndarray:
            win = rasterio.windows.Window(c.start, r.start, c.stop - c.start, r.stop - r.start)
            part = src.read(1, window=win).astype(np.float64)
            return np.where(part == nodata, np.nan, part) if nodata is not None else part

        block = gather_block(read, yidx, xidx, 1)
    return precip_array(block, lat[yidx], lon_out, [date], path, abs(t.a), attrs)

