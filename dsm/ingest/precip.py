"""Readers of gridded daily precipitation: GPM IMERG, CHIRPS and ERA5-Land.

Every reader returns an :class:`xarray.DataArray` named ``precip``, dims ``(time, lat, lon)``,
float32 in mm per day, NaN where missing, with 1-D cell-centre coordinates (latitude north to
south, longitude west to east; -180..180 unless the grid runs across the antimeridian), ``time``
the day at midnight (datetime64[ns]) and attributes ``product``, ``day`` (the day convention),
``res_deg`` ``(dlat, dlon)`` and ``source``. :func:`remap_to_region` (:mod:`dsm.ingest.remap`)
puts such a field on a Region's 1 km grid.

* **IMERG** (GES DISC daily netCDF4 ``3B-DAY[-E|-L].MS.MRG.3IMERG.YYYYMMDD-S000000-E235959.V0x.nc4``,
  Final/Late/Early run): ``precipitation`` (V07, "mm/day": mean rate x 24) or
  ``precipitationCal`` (V06, "mm": sum of the half hours), dims ``(time, lon, lat)``
  (lon-major), 0.1 degree, ``_FillValue`` -9999.9. Day: the **UTC day** (00:00-23:59:59 UTC);
  a daily file cannot be shifted to a local day.
* **CHIRPS** v2.0, 0.05 degree: daily GeoTIFF ``chirps-v2.0.YYYY.MM.DD.tif`` (or ``.tif.gz``;
  one float32 band, nodata -9999, EPSG:4326, date from the name) or yearly netCDF
  ``chirps-v2.0.YYYY.days_p05.nc`` (``precip (time, latitude, longitude)`` "mm/day", fill
  -9999). Day: the CHIRPS day as labelled (CHC states no time zone).
* **ERA5-Land** ``tp`` ("m", converted to mm) as the CDS delivers it: old CDS (``time``, int16
  packed, fill -32767) or new CDS (``valid_time``, float32 with NaN, ``number``/``expver``
  coordinates); hourly, or one total per day (the CDS daily-statistics ``daily_sum``). Day:
  hourly files are summed into the **local day** UTC + ``utc_offset_hours``; daily files keep
  the day they were delivered with (the CDS request's time zone).

ERA5-Land hourly ``tp`` is accumulated since 00 UTC: the value at 01 UTC is the first hour,
the value at 00 UTC is the whole previous day. It is de-accumulated to the amount of each
hour ending at its valid time (``tp(t) - tp(t - 1 h)``, except at 01 UTC), each hour is put in
the local day that contains it (``floor(t - 1 h + offset)``) and a day is summed only when all
24 of its hours are present; other days are NaN. Differences below zero by less than the
packing step (at least 1e-6 m) are rounding and set to zero; larger ones refuse the file (its
``tp`` is not accumulated since 00 UTC, e.g. ERA5 rather than ERA5-Land).

Checks (each raises an :mod:`dsm.ingest.base` error naming the file and what to do): a missing
variable, no date, the wrong product, units that are not a depth per day (IMERG "mm" or
"mm/day", CHIRPS "mm/day", ERA5-Land "m" converted to mm; rates such as "mm/hr" or
"kg m-2 s-1" are refused), negative values beyond rounding noise, values above
:data:`MAX_DAILY_MM` (units mislabelled), and with :func:`check_covers` a grid that does not
cover the region.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dsm.grid import Region
from dsm.ingest.base import (
    GeolocationError,
    InputDateError,
    parse_day,
    MissingVariableError,
    NoOverlapError,
    PathLike,
    UnreadableFileError,
    WrongProductError,
)
from dsm.ingest.remap import (
    BBox,
    RemapMethod,
    gather_block,
    grid_spacing,
    lat_window,
    load_block,
    lon_window,
    remap_to_region,
)

__all__ = ["MAX_DAILY_MM", "RemapMethod", "check_covers", "chirps_dates", "hourly_to_local_days", "imerg_date",
           "local_utc_offset", "netcdf_times", "read_chirps", "read_era5land", "read_era5land_file", "read_imerg",
           "read_precip", "remap_to_region"]

MAX_DAILY_MM = 2000.0  #: above the world record (1825 mm in 24 h): units must be mislabelled
NEG_TOL_MM = 1e-6  #: negative values down to this are rounding noise (set to 0)

_MM_DAY = {"mm": 1.0, "mm/day": 1.0, "mm/d": 1.0, "mmday-1": 1.0, "mmd-1": 1.0}  #: a daily file's amount
_RATE = {"mm/hr", "mm/h", "mmh-1", "mmhr-1", "mm/s", "mms-1", "kgm-2s-1", "kg/m2/s", "m/s", "ms-1", "mm/3hr"}
_IMERG_NAME = re.compile(r"3B-(?P<kind>DAY|HHR|MO)(?P<run>-[EL])?\.MS\.MRG\.3IMERG\.(?P<date>\d{8})-S\d{6}-E\d{6}"
                         r"(?:\.\d{4})?\.V(?P<version>\d{2}[A-Z]?)")
_CHIRPS_TIF = re.compile(r"(?P<year>\d{4})\.(?P<month>\d{2})\.(?P<day>\d{2})\.tiff?(?:\.gz)?$", re.IGNORECASE)


# -- small helpers ----------------------------------------------------------------------
def _unit_key(units: Any) -> str:
    return re.sub(r"[\s*^]", "", str(units)).lower()


def _check_units(path: str, units: Any, allowed: dict[str, float], product: str) -> float:
    """Factor to mm/day for ``units``, or raise WrongProductError explaining the refusal."""
    key = _unit_key(units)
    if key in allowed:
        return allowed[key]
    if key in _RATE:
        raise WrongProductError(path, f"units {units!r} are a precipitation rate, not a daily amount: use the "
                                      f"daily {product} product (or convert the file to mm per day)")
    if key in ("m", "metre", "meter", "m/day") and product != "ERA5-Land":
        raise WrongProductError(path, f"units {units!r} are not {product}'s (mm per day): the file is "
                                      "mislabelled or converted; fix its units attribute")
    want = " or ".join(repr(k) for k in allowed)
    raise WrongProductError(path, f"units {units!r} are not a precipitation depth per day ({product}: {want})")


def _open_nc(path: str) -> xr.Dataset:
    """A netCDF4/HDF5 (h5netcdf) or classic netCDF (scipy) file, undecoded times, fills masked."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read the file ({exc})") from exc
    engine = "h5netcdf" if magic == b"\x89HDF" else "scipy" if magic[:3] == b"CDF" else None
    if engine is None:
        hint = {b"PK\x03\x04": ": a zip archive (the CDS zips some downloads): unzip it",
                b"GRIB": ": a GRIB file: download netCDF"}.get(magic, "")
        raise UnreadableFileError(path, f"not a netCDF file (neither netCDF4/HDF5 nor classic netCDF){hint}")
    try:
        return xr.open_dataset(path, engine=engine, decode_times=False, mask_and_scale=True, cache=False)
    except Exception as exc:  # noqa: BLE001 - h5py/scipy raise many kinds for a corrupt file
        raise UnreadableFileError(path, f"not a readable netCDF file ({type(exc).__name__}: {exc})") from exc


def netcdf_times(path: str, values: np.ndarray, attrs: dict[str, Any]) -> pd.DatetimeIndex:
    """Decode a CF time coordinate ``"<unit> since <date>"`` (standard calendars) to UTC-naive times."""
    units = str(attrs.get("units", ""))
    m = re.match(r"\s*(seconds|minutes|hours|days)\s+since\s+(.+?)\s*$", units)
    if m is None:
        raise InputDateError(path, f"time units {units!r} are not '<unit> since <date>'")
    cal = str(attrs.get("calendar", "standard")).lower()
    if cal not in ("standard", "gregorian", "proleptic_gregorian"):
        raise InputDateError(path, f"time calendar {cal!r} is not supported (standard/gregorian only)")
    ref = re.sub(r"(\s*UTC|Z)$", "", m.group(2).strip())
    try:
        origin = pd.Timestamp(ref)
    except ValueError as exc:
        raise InputDateError(path, f"time reference {m.group(2)!r} is not a date") from exc
    if origin.tzinfo is not None:
        origin = origin.tz_convert("UTC").tz_localize(None)
    step = {"seconds": "s", "minutes": "min", "hours": "h", "days": "D"}[m.group(1)]
    return pd.DatetimeIndex(origin + pd.to_timedelta(np.asarray(values, dtype=np.float64), unit=step)).as_unit("ns")


def _names(ds: xr.Dataset | xr.DataArray, path: str, var: str) -> tuple[str, str]:
    """Names of the latitude and longitude coordinates of ``var``."""
    dims = ds[var].dims if isinstance(ds, xr.Dataset) else ds.dims
    lat = next((d for d in ("lat", "latitude") if d in dims), None)
    lon = next((d for d in ("lon", "longitude") if d in dims), None)
    if lat is None or lon is None or lat not in ds.coords or lon not in ds.coords:
        raise MissingVariableError(path, f"'{var}' has dims {tuple(dims)}: no lat/latitude and lon/longitude coordinates")
    return lat, lon


def _finish(values: np.ndarray, lat: np.ndarray, lon: np.ndarray, times: Sequence[Any], path: str,
            nominal: float, attrs: dict[str, Any], neg_tol: float = NEG_TOL_MM) -> xr.DataArray:
    """Check the grid and values, and wrap them as the readers' ``precip`` DataArray."""
    lat, lon = np.round(lat, 4), np.round(lon, 4)  # the products' centres have <= 3 decimals (float32 noise)
    try:
        dlat = grid_spacing(lat, nominal, "latitude")
        dlon = grid_spacing(lon, nominal, "longitude")
    except ValueError as exc:
        raise GeolocationError(path, str(exc)) from exc
    v = np.where(values <= -9999.0, np.nan, values)
    finite = v[np.isfinite(v)]
    if finite.size and finite.min() < -neg_tol:
        n = int(np.count_nonzero(finite < -neg_tol))
        raise WrongProductError(path, f"{n} negative precipitation values (down to {finite.min():.4g} mm): not a "
                                      "precipitation amount; check the variable and its units")
    if finite.size and finite.max() > MAX_DAILY_MM:
        raise WrongProductError(path, f"values up to {finite.max():.4g} mm per day exceed any observed daily "
                                      "precipitation: the units are mislabelled (mm stored in a file saying m?)")
    v = np.where(v < 0, 0.0, v)
    if lon.size and (lon.max() >= 180.0 or lon.min() < -180.0):  # back to -180..180 when it stays monotonic
        wrapped = (lon + 180.0) % 360.0 - 180.0
        if np.all(np.diff(wrapped) > 0):
            lon = wrapped
    return xr.DataArray(
        v.astype(np.float32), dims=("time", "lat", "lon"), name="precip",
        coords={"time": pd.DatetimeIndex([pd.Timestamp(t) for t in times]).as_unit("ns"),
                "lat": ("lat", np.asarray(lat, np.float64), {"units": "degrees_north"}),
                "lon": ("lon", np.asarray(lon, np.float64), {"units": "degrees_east"})},
        attrs={"units": "mm/day", "long_name": "daily precipitation", "res_deg": (dlat, dlon),
               "source": os.path.basename(path), **attrs})


def _exists(path: PathLike) -> str:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise UnreadableFileError(p, "file does not exist")
    return p


def _attr(attrs: dict[str, Any], key: str) -> str | None:
    v = attrs.get(key)
    if v is None:
        return None
    v = np.asarray(v).ravel()[0] if np.ndim(v) else v
    return (v.decode() if isinstance(v, bytes) else str(v)).strip()


# -- IMERG ------------------------------------------------------------------------------
def imerg_date(path: str, attrs: dict[str, Any] | None = None) -> dt.date:
    """The UTC day of an IMERG daily file: its ``BeginDate`` attribute and/or its name (they must agree)."""
    m = _IMERG_NAME.search(os.path.basename(path))
    name_date = None
    if m:
        name_date = parse_day(m.group("date"), path, "the file name's date", "%Y%m%d")
    begin = _attr(attrs or {}, "BeginDate")
    meta_date = None
    if begin:
        meta_date = parse_day(begin, path, "BeginDate")
        end = _attr(attrs or {}, "EndDate")
        if end and end[:10] != begin[:10]:
            raise WrongProductError(path, f"BeginDate {begin} and EndDate {end} differ: not a daily IMERG file "
                                          "(use the 3B-DAY product)")
    if meta_date and name_date and meta_date != name_date:
        raise InputDateError(path, f"BeginDate {meta_date} disagrees with the file name date {name_date}")
    if meta_date or name_date:
        return meta_date or name_date  # type: ignore[return-value]
    raise InputDateError(path, "no BeginDate attribute and no 3IMERG.YYYYMMDD date in the file name")


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
    path = _exists(path)
    name = os.path.basename(path)
    m = _IMERG_NAME.search(name)
    if m and m.group("kind") != "DAY":
        kind = {"HHR": "half-hourly", "MO": "monthly"}[m.group("kind")]
        raise WrongProductError(path, f"a {kind} IMERG file: use the daily product (3B-DAY, GPM_3IMERGD[FLE])")
    with _open_nc(path) as ds:
        var = next((v for v in ("precipitation", "precipitationCal") if v in ds.data_vars), None)
        if var is None:
            other = [v for v in ("precip", "tp") if v in ds.data_vars]
            if other:
                raise WrongProductError(path, f"no IMERG variable but {other[0]!r}: this is not an IMERG file "
                                              "(CHIRPS? ERA5-Land?); set inputs.precip.product")
            raise MissingVariableError(path, "neither 'precipitation' (V07) nor 'precipitationCal' (V06) is in the file")
        _check_units(path, ds[var].attrs.get("units", ""), _MM_DAY, "IMERG")
        date = imerg_date(path, dict(ds.attrs))
        lat_n, lon_n = _names(ds, path, var)
        tdim = next((d for d in ds[var].dims if d not in (lat_n, lon_n)), None)
        if tdim is not None and ds.sizes[tdim] != 1:
            raise WrongProductError(path, f"'{var}' has {ds.sizes[tdim]} time steps: not a daily IMERG file")
        lat, lon = ds[lat_n].values.astype(np.float64), ds[lon_n].values.astype(np.float64)
        xidx, lon_out = lon_window(lon, bbox, 0.1)
        yidx = lat_window(lat, bbox, 0.1)
        values = load_block(ds[var], tdim, np.array([0]) if tdim else None, lat_n, lon_n, yidx, xidx)
    version = f"V{m.group('version')}" if m else ("V07" if var == "precipitation" else "V06")
    run = {"-E": "early", "-L": "late"}.get(m.group("run") or "", "final") if m else "unknown"
    return _finish(values, lat[yidx], lon_out, [date], path, 0.1,
                   {"product": "imerg", "day": "UTC", "version": version, "run": run, "variable": var})


# -- CHIRPS -----------------------------------------------------------------------------
_PRECIP_VARIABLES = ("precip", "precipitation", "precipitationCal", "tp")


def _require(ds: xr.Dataset, path: str, name: str, product: str, missing: str, article: str = "a") -> None:
    """Refuse a file without the product's variable: another product's (WrongProductError) or none."""
    if name in ds.data_vars:
        return
    other = [v for v in _PRECIP_VARIABLES if v != name and v in ds.data_vars]
    if other:
        raise WrongProductError(path, f"no {product} {name!r} variable but {other[0]!r}: not {article} {product} file; "
                                      "set inputs.precip.product")
    raise MissingVariableError(path, missing)


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
    with _open_nc(path) as ds:
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
    path = _exists(path)
    attrs = {"product": "chirps", "day": "CHIRPS day as labelled (no time zone stated)"}
    if _is_tif(path):
        return _read_chirps_tif(path, bbox, attrs)
    with _open_nc(path) as ds:
        _require(ds, path, "precip", "CHIRPS", "variable 'precip' is missing")
        _check_units(path, ds["precip"].attrs.get("units", ""), _MM_DAY, "CHIRPS")
        lat_n, lon_n = _names(ds, path, "precip")
        tdim = next((d for d in ds["precip"].dims if d not in (lat_n, lon_n)), None)
        all_days = _nc_days(ds, path)
        want = set(days) if days is not None else None
        tidx = np.array([i for i, d in enumerate(all_days) if want is None or d in want], dtype=np.int64)
        lat, lon = ds[lat_n].values.astype(np.float64), ds[lon_n].values.astype(np.float64)
        xidx, lon_out = lon_window(lon, bbox, 0.05)
        yidx = lat_window(lat, bbox, 0.05)
        values = load_block(ds["precip"], tdim, tidx, lat_n, lon_n, yidx, xidx)
    return _finish(values, lat[yidx], lon_out, [all_days[i] for i in tidx], path, 0.05, attrs)


def _read_chirps_tif(path: str, bbox: BBox | None, attrs: dict[str, Any]) -> xr.DataArray:
    import rasterio
    from rasterio.errors import RasterioIOError

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
    return _finish(block, lat[yidx], lon_out, [date], path, abs(t.a), attrs)


# -- ERA5-Land --------------------------------------------------------------------------
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
    path = _exists(path)
    with _open_nc(path) as ds:
        _require(ds, path, "tp", "ERA5-Land", "variable 'tp' (total precipitation) is missing", "an")
        tp = ds["tp"]
        factor = _check_units(path, tp.attrs.get("units", ""), {"m": 1000.0, "mm": 1.0}, "ERA5-Land")
        tname = next((t for t in ("valid_time", "time") if t in tp.dims), None)
        if tname is None:
            raise InputDateError(path, f"'tp' has dims {tp.dims}: no time or valid_time dimension")
        times = netcdf_times(path, ds[tname].values, dict(ds[tname].attrs))
        for d in [d for d in tp.dims if d not in (tname, "latitude", "longitude", "lat", "lon", "expver")]:
            if tp.sizes[d] != 1:
                raise WrongProductError(path, f"'tp' has {tp.sizes[d]} values along '{d}' (an ensemble?): "
                                              "download the reanalysis (one member)")
            tp = tp.isel({d: 0})
        lat_n, lon_n = _names(tp, path, "tp")
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
        step_type = _attr(dict(tp.attrs), "GRIB_stepType")
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
    da = _finish(values, lat[yidx], lon_out, times, path, 0.1, {"product": "era5land", "kind": kind, "tol_mm": tol},
                 neg_tol=tol)
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
    return _finish(out, first["lat"].values, first["lon"].values, wanted, first.attrs["source"], 0.1,
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


# -- any product, coverage ----------------------------------------------------------------
def read_precip(product: str, paths: Sequence[PathLike], *, utc_offset_hours: int = 0, bbox: BBox | None = None,
                days: Iterable[dt.date] | None = None) -> xr.DataArray:
    """Daily ``precip`` of a configured product from its files (see the readers)."""
    if product == "era5land":
        return read_era5land(paths, utc_offset_hours, bbox=bbox, days=days)
    reader = {"imerg": lambda p: read_imerg(p, bbox=bbox), "chirps": lambda p: read_chirps(p, bbox=bbox, days=days)}
    if product not in reader:
        raise ValueError(f"unknown precipitation product {product!r} (imerg, chirps, era5land)")
    out = xr.concat([reader[product](p) for p in paths], dim="time")
    return out.isel(time=~out.indexes["time"].duplicated(keep="last")).sortby("time")


def local_utc_offset(region: Region) -> int:
    """The region's mean solar time: round(centre longitude / 15) hours east of UTC."""
    lon0, _, lon1, _ = region.lonlat_bounds
    return int(round((lon0 + lon1) / 2 / 15.0))


def check_covers(da: xr.DataArray, region: Region, path: str) -> None:
    """Refuse a grid that misses the region (NoOverlapError) or covers only part of it (GeolocationError)."""
    dlat, dlon = da.attrs.get("res_deg") or (grid_spacing(da.lat.values), grid_spacing(da.lon.values))
    lat, lon = da["lat"].values, da["lon"].values
    if lat.size == 0 or lon.size == 0:
        raise NoOverlapError(path, f"no grid cell near region {region.to_dict()}")
    s, n = lat.min() - dlat / 2, lat.max() + dlat / 2
    w, e = lon.min() - dlon / 2, lon.max() + dlon / 2
    r_w, r_s, r_e, r_n = region.lonlat_bounds
    shift = min((-360.0, 0.0, 360.0), key=lambda k: -(min(r_e + k, e) - max(r_w + k, w)))
    full_lon = e - w >= 360.0 - 1e-6
    if n <= r_s or s >= r_n or (not full_lon and (e <= r_w + shift or w >= r_e + shift)):
        raise NoOverlapError(path, f"the grid (lon {w:.3f}..{e:.3f}, lat {s:.3f}..{n:.3f}) does not touch region "
                                   f"{region.to_dict()} (lon {r_w:.3f}..{r_e:.3f}, lat {r_s:.3f}..{r_n:.3f})")
    eps = 1e-6
    if s > r_s + eps or n < r_n - eps or (not full_lon and (w > r_w + shift + eps or e < r_e + shift - eps)):
        raise GeolocationError(path, f"the grid (lon {w:.3f}..{e:.3f}, lat {s:.3f}..{n:.3f}) covers only part of "
                                     f"the region (lon {r_w:.3f}..{r_e:.3f}, lat {r_s:.3f}..{r_n:.3f}): download "
                                     "an area that contains the whole region")
