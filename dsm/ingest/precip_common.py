"""What the precipitation readers share: opening a netCDF file, decoding CF times, checking
units and variables, and the checked ``precip`` DataArray every reader returns
(:func:`precip_array`; the conventions are in :mod:`dsm.ingest.precip`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from dsm.ingest.base import (
    GeolocationError,
    InputDateError,
    MissingVariableError,
    PathLike,
    UnreadableFileError,
    WrongProductError,
)
from dsm.remap import grid_spacing

__all__ = ["DAILY_MM_UNITS", "MAX_DAILY_MM", "NEG_TOL_MM", "attr_text", "check_units", "existing_file",
           "latlon_names", "netcdf_times", "open_netcdf", "precip_array", "require_variable"]

MAX_DAILY_MM = 2000.0  #: above the world record (1825 mm in 24 h): units must be mislabelled
NEG_TOL_MM = 1e-6  #: negative values down to this are rounding noise (set to 0)

DAILY_MM_UNITS = {"mm": 1.0, "mm/day": 1.0, "mm/d": 1.0, "mmday-1": 1.0, "mmd-1": 1.0}  #: a daily file's amount
_RATE = {"mm/hr", "mm/h", "mmh-1", "mmhr-1", "mm/s", "mms-1", "kgm-2s-1", "kg/m2/s", "m/s", "ms-1", "mm/3hr"}
_PRECIP_VARIABLES = ("precip", "precipitation", "precipitationCal", "tp")
_CF_TIME_UNITS: dict[str, Literal["s", "min", "h", "D"]] = {"seconds": "s", "minutes": "min", "hours": "h", "days": "D"}


def _unit_key(units: Any) -> str:
    return re.sub(r"[\s*^]", "", str(units)).lower()


def check_units(path: str, units: Any, allowed: dict[str, float], product: str) -> float:
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


def open_netcdf(path: str) -> xr.Dataset:
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
    step = _CF_TIME_UNITS[m.group(1)]
    return pd.DatetimeIndex(origin + pd.to_timedelta(np.asarray(values, dtype=np.float64), unit=step)).as_unit("ns")


def latlon_names(ds: xr.Dataset | xr.DataArray, path: str, var: str) -> tuple[str, str]:
    """Names of the latitude and longitude coordinates of ``var``."""
    dims = ds[var].dims if isinstance(ds, xr.Dataset) else ds.dims
    lat = next((d for d in ("lat", "latitude") if d in dims), None)
    lon = next((d for d in ("lon", "longitude") if d in dims), None)
    if lat is None or lon is None or lat not in ds.coords or lon not in ds.coords:
        raise MissingVariableError(path, f"'{var}' has dims {tuple(dims)}: no lat/latitude and lon/longitude coordinates")
    return lat, lon


def precip_array(values: np.ndarray, lat: np.ndarray, lon: np.ndarray, times: Iterable[Any], path: str,
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


def existing_file(path: PathLike) -> str:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise UnreadableFileError(p, "file does not exist")
    return p


def attr_text(attrs: dict[str, Any], key: str) -> str | None:
    v = attrs.get(key)
    if v is None:
        return None
    v = np.asarray(v).ravel()[0] if np.ndim(v) else v
    return (v.decode() if isinstance(v, bytes) else str(v)).strip()


def require_variable(ds: xr.Dataset, path: str, name: str, product: str, missing: str, article: str = "a") -> None:
    """Refuse a file without the product's variable: another product's (WrongProductError) or none."""
    if name in ds.data_vars:
        return
    other = [v for v in _PRECIP_VARIABLES if v != name and v in ds.data_vars]
    if other:
        raise WrongProductError(path, f"no {product} {name!r} variable but {other[0]!r}: not {article} {product} file; "
                                      "set inputs.precip.product")
    raise MissingVariableError(path, missing)

