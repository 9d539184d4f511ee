"""GPM IMERG daily files (GES DISC ``3B-DAY[-E|-L].MS.MRG.3IMERG.YYYYMMDD-S000000-E235959.V0x.nc4``)
as daily ``precip`` in mm on the UTC day (see :mod:`dsm.ingest.precip`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any

import numpy as np
import xarray as xr

from dsm.ingest.base import (
    InputDateError,
    MissingVariableError,
    PathLike,
    WrongProductError,
    parse_day,
)
from dsm.ingest.precip_common import (
    DAILY_MM_UNITS,
    attr_text,
    check_units,
    existing_file,
    latlon_names,
    open_netcdf,
    precip_array,
)
from dsm.remap import BBox, lat_window, load_block, lon_window

__all__ = ["imerg_date", "read_imerg"]

_IMERG_NAME = re.compile(r"3B-(?P<kind>DAY|HHR|MO)(?P<run>-[EL])?\.MS\.MRG\.3IMERG\.(?P<date>\d{8})-S\d{6}-E\d{6}"
                         r"(?:\.\d{4})?\.V(?P<version>\d{2}[A-Z]?)")


def imerg_date(path: str, attrs: dict[str, Any] | None = None) -> dt.date:
    """The UTC day of an IMERG daily file: its ``BeginDate`` attribute and/or its name (they must agree)."""
    m = _IMERG_NAME.search(os.path.basename(path))
    name_date = None
    if m:
        name_date = parse_day(m.group("date"), path, "the file name's date", "%Y%m%d")
    begin = attr_text(attrs or {}, "BeginDate")
    meta_date = None
    if begin:
        meta_date = parse_day(begin, path, "BeginDate")
        end = attr_text(attrs or {}, "EndDate")
        if end and end[:10] != begin[:10]:
            raise WrongProductError(path, f"BeginDate {begin} and EndDate {end} differ: not a daily IMERG file "
                                          "(use the 3B-DAY product)")
    if meta_date and name_date and meta_date != name_date:
        raise InputDateError(path, f"BeginDate {meta_date} disagrees with the file name date {name_date}")
    date = meta_date or name_date
    if date is None:
        raise InputDateError(path, "no BeginDate attribute and no 3IMERG.YYYYMMDD date in the file name")
    return date


def read_imerg(path: PathLike, *, bbox: BBox | None = None) -> xr.DataArray:
    """One GPM IMERG daily file (Final/Late/Early, V06 or V07) as ``precip`` (1, lat, lon) in mm.

    Parameters
    ----------
    path
        A GES DISC ``3B-DAY*.nc4`` file (or a subset of one with the same variables).
    bbox
        ``(lon_min, lat_min, lon_max, lat_max)``: read only the cells around it (two cells of
        margin); None reads the whole grid.

    Returns
    -------
    xarray.DataArray
        attrs ``day="UTC"``: IMERG's day is 00:00-23:59:59 UTC and cannot be shifted to a
        local day from a daily file.
    """
    path = existing_file(path)
    name = os.path.basename(path)
    m = _IMERG_NAME.search(name)
    if m and m.group("kind") != "DAY":
        kind = {"HHR": "half-hourly", "MO": "monthly"}[m.group("kind")]
        raise WrongProductError(path, f"a {kind} IMERG file: use the daily product (3B-DAY, GPM_3IMERGD[FLE])")
    with open_netcdf(path) as ds:
        var = next((v for v in ("precipitation", "precipitationCal") if v in ds.data_vars), None)
        if var is None:
            other = [v for v in ("precip", "tp") if v in ds.data_vars]
            if other:
                raise WrongProductError(path, f"no IMERG variable but {other[0]!r}: this is not an IMERG file "
                                              "(CHIRPS? ERA5-Land?); set inputs.precip.product")
            raise MissingVariableError(path, "neither 'precipitation' (V07) nor 'precipitationCal' (V06) is in the file")
        check_units(path, ds[var].attrs.get("units", ""), DAILY_MM_UNITS, "IMERG")
        date = imerg_date(path, dict(ds.attrs))
        lat_n, lon_n = latlon_names(ds, path, var)
        tdim = next((str(d) for d in ds[var].dims if d not in (lat_n, lon_n)), None)
        if tdim is not None and ds.sizes[tdim] != 1:
            raise WrongProductError(path, f"'{var}' has {ds.sizes[tdim]} time steps: not a daily IMERG file")
        lat, lon = ds[lat_n].values.astype(np.float64), ds[lon_n].values.astype(np.float64)
        xidx, lon_out = lon_window(lon, bbox, 0.1)
        yidx = lat_window(lat, bbox, 0.1)
        values = load_block(ds[var], tdim, np.array([0]) if tdim else None, lat_n, lon_n, yidx, xidx)
    version = f"V{m.group('version')}" if m else ("V07" if var == "precipitation" else "V06")
    run = {"-E": "early", "-L": "late"}.get(m.group("run") or "", "final") if m else "unknown"
    return precip_array(values, lat[yidx], lon_out, [date], path, 0.1,
                        {"product": "imerg", "day": "UTC", "version": version, "run": run, "variable": var})

