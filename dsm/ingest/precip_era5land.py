"""ERA5-Land total precipitation (``tp``) as the CDS delivers it, as daily ``precip`` in mm.

Old CDS files (``time``, int16 packed, fill -32767) and new ones (``valid_time``, float32 with
NaN, ``number``/``expver`` coordinates); hourly, or one total per day (the CDS
daily-statistics ``daily_sum``). Daily files keep the day they were delivered with.

ERA5-Land hourly ``tp`` is accumulated since 00 UTC: the value at 01 UTC is the first hour,
the value at 00 UTC is the whole previous day. It is de-accumulated to the amount of each
hour ending at its valid time (``tp(t) - tp(t - 1 h)``, except at 01 UTC), each hour is put in
the local day that contains it (``floor(t - 1 h + offset)``) and a day is summed only when all
24 of its hours are present; other days are NaN. Differences below zero by less than the
packing step (at least 1e-6 m) are rounding and set to zero; larger ones refuse the file (its
``tp`` is not accumulated since 00 UTC, e.g. ERA5 rather than ERA5-Land).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from dsm.ingest.base import (
    GeolocationError,
    InputDateError,
    PathLike,
    WrongProductError,
)
from dsm.ingest.precip_common import (
    attr_text,
    check_units,
    existing_file,
    latlon_names,
    netcdf_times,
    open_netcdf,
    precip_array,
    require_variable,
)
from dsm.remap import BBox, lat_window, load_block, lon_window

__all__ = ["hourly_to_local_days", "read_era5land", "read_era5land_file"]


def read_era5land_file(path: PathLike, *, bbox: BBox | None = None) -> xr.DataArray:
    """``tp`` of one ERA5-Land netCDF in mm, undecoded in time: hourly accumulations or daily sums.

    Returns
    -------
    xarray.DataArray
        ``tp`` (time, lat, lon) float64 in mm with UTC-naive ``time``; attrs ``kind``
        (``"hourly"``: accumulated since 00 UTC at each valid time; ``"daily"``: one total per
        day) and ``tol_mm`` (the packing step: de-accumulation noise below it is rounding).
        Files with one time step are hourly unless it is midnight and not marked
        ``GRIB_stepType="accum"`` (then a daily value).
    """
    path = existing_file(path)
    with open_netcdf(path) as ds:
        require_variable(ds, path, "tp", "ERA5-Land", "variable 'tp' (total precipitation) is missing", "an")
        tp = ds["tp"]
        factor = check_units(path, tp.attrs.get("units", ""), {"m": 1000.0, "mm": 1.0}, "ERA5-Land")
        tname = next((t for t in ("valid_time", "time") if t in tp.dims), None)
        if tname is None:
            raise InputDateError(path, f"'tp' has dims {tp.dims}: no time or valid_time dimension")
        times = netcdf_times(path, ds[tname].values, dict(ds[tname].attrs))
        for d in [d for d in tp.dims if d not in (tname, "latitude", "longitude", "lat", "lon", "expver")]:
            if tp.sizes[d] != 1:
                raise WrongProductError(path, f"'tp' has {tp.sizes[d]} values along '{d}' (an ensemble?): "
                                              "download the reanalysis (one member)")
            tp = tp.isel({d: 0})
        lat_n, lon_n = latlon_names(tp, path, "tp")
        lat, lon = ds[lat_n].values.astype(np.float64), ds[lon_n].values.astype(np.float64)
        xidx, lon_out = lon_window(lon, bbox, 0.1)
        yidx = lat_window(lat, bbox, 0.1)
        tidx = np.arange(times.size)
        if "expver" in tp.dims:  # old CDS mix of ERA5-Land and ERA5-Land-T: one of them per time step
            parts = [load_block(tp.isel(expver=i), tname, tidx, lat_n, lon_n, yidx, xidx) for i in range(tp.sizes["expver"])]
            values = parts[0]
            for p in parts[1:]:
                values = np.where(np.isnan(values), p, values)
        else:
            values = load_block(tp, tname, tidx, lat_n, lon_n, yidx, xidx)
        step = float(tp.encoding.get("scale_factor", 0.0) or 0.0)
        step_type = attr_text(dict(tp.attrs), "GRIB_stepType")
    order = np.argsort(times.values, kind="stable")
    times, values = times[order], values[order]
    diffs = np.unique(np.diff(times.values).astype("timedelta64[h]").astype(np.int64))
    if diffs.size == 0:
        midnight = times[0] == times[0].normalize()
        kind = "daily" if midnight and step_type != "accum" else "hourly"
    elif set(diffs) <= {1}:
        kind = "hourly"
    elif set(diffs) <= {24}:
        kind = "daily"
    else:
        raise WrongProductError(path, f"time steps of {sorted(set(diffs))} h: neither hourly nor daily ERA5-Land")
    values = np.where(values <= -9999.0, np.nan, values) * factor
    tol = max(1e-3, step * factor)  # mm: the packing step of old CDS files
    da = precip_array(values, lat[yidx], lon_out, times, path, 0.1,
                      {"product": "era5land", "kind": kind, "tol_mm": tol}, neg_tol=tol)
    if kind == "hourly":
        da.attrs.update(units="mm", long_name="precipitation accumulated since 00 UTC")
    return da.rename("tp")


def hourly_to_local_days(parts: Sequence[xr.DataArray], utc_offset_hours: int,
                         days: Iterable[dt.date] | None = None) -> xr.DataArray:
    """Sum de-accumulated ERA5-Land hours into local days (module docstring).

    Parameters
    ----------
    parts
        Hourly accumulations from :func:`read_era5land_file` on one grid (several files: a
        time step present twice is taken from the later part).
    utc_offset_hours
        Local day = UTC + offset (``8``: the day runs 16:00 UTC to 16:00 UTC).
    days
        Days to return (default: every local day touched); days without all 24 hours are NaN.
    """
    first = parts[0]
    for p in parts[1:]:
        if p.shape[1:] != first.shape[1:] or not (np.allclose(p.lat, first.lat) and np.allclose(p.lon, first.lon)):
            raise GeolocationError(p.attrs["source"], f"its grid differs from {first.attrs['source']}'s: "
                                                      "download every file over the same area")
    acc = xr.concat(parts, dim="time")
    keep = ~acc.indexes["time"].duplicated(keep="last")
    acc = acc.isel(time=keep).sortby("time")
    t = acc.indexes["time"]
    a = acc.values.astype(np.float64)
    pos = {v: i for i, v in enumerate(t.values)}
    prev = np.array([pos.get(v - np.timedelta64(1, "h"), -1) for v in t.values])
    first_hour = t.hour == 1
    amount = np.where(first_hour[:, None, None], a, a - np.where(prev[:, None, None] >= 0, a[prev], np.nan))
    amount[(~first_hour) & (prev < 0)] = np.nan
    tol = max(float(p.attrs.get("tol_mm", 1e-3)) for p in parts)
    low = np.nanmin(amount) if np.isfinite(amount).any() else 0.0
    if low < -tol:
        raise WrongProductError(first.attrs["source"], f"de-accumulating 'tp' gives {low:.4g} mm in an hour: the "
                                "values are not accumulated since 00 UTC (hourly ERA5 rather than ERA5-Land?)")
    amount = np.clip(amount, 0.0, None)
    day_of = (t - pd.Timedelta(hours=1) + pd.Timedelta(hours=utc_offset_hours)).normalize()
    wanted = sorted(set(days)) if days is not None else sorted({d.date() for d in day_of})
    out = np.full((len(wanted), *a.shape[1:]), np.nan)
    for k, d in enumerate(wanted):
        sel = np.flatnonzero((day_of == pd.Timestamp(d)) & np.isfinite(amount).any(axis=(1, 2)))
        if sel.size == 24:  # a pixel missing any hour stays NaN (plain sum)
            out[k] = amount[sel].sum(axis=0)
    label = "UTC" if utc_offset_hours == 0 else f"UTC{utc_offset_hours:+03d}:00"
    return precip_array(out, first["lat"].values, first["lon"].values, wanted, first.attrs["source"], 0.1,
                        {"product": "era5land", "day": label, "utc_offset_hours": int(utc_offset_hours),
                         "source": ",".join(p.attrs["source"] for p in parts)})


def read_era5land(path: PathLike | Sequence[PathLike], utc_offset_hours: int = 0, *, bbox: BBox | None = None,
                  days: Iterable[dt.date] | None = None) -> xr.DataArray:
    """ERA5-Land daily precipitation in mm: hourly ``tp`` summed into local days, or daily sums.

    Parameters
    ----------
    path
        One netCDF file or several (hourly files of consecutive periods: a local day may need
        hours from two of them).
    utc_offset_hours
        The local day of hourly files (UTC + offset); daily files keep their own day.
    bbox, days
        Read only around this box; return only these days.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    parts = [read_era5land_file(p, bbox=bbox) for p in paths]
    kinds = {p.attrs["kind"] for p in parts}
    if kinds == {"hourly"}:
        return hourly_to_local_days(parts, utc_offset_hours, days)
    if kinds != {"daily"}:
        raise WrongProductError(os.fspath(paths[0]), "hourly and daily ERA5-Land files mixed in one read")
    da = xr.concat(parts, dim="time")
    da = da.isel(time=~da.indexes["time"].duplicated(keep="last")).sortby("time")
    if days is not None:
        da = da.sel(time=[t for t in da.indexes["time"] if t.date() in set(days)])
    da.attrs.update({"day": "as delivered (the CDS request's time zone)", "source": ",".join(p.attrs["source"] for p in parts)})
    da.attrs.pop("kind", None)
    return da.rename("precip").astype(np.float32)

