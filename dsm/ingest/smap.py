"""SMAP L3 radiometer global daily 36 km soil moisture (SPL3SMP, HDF5, versions 6-9).

Variables (version 9 schema, ``SC_SPL3SMP_009.dmr``; versions 6-8 use the same names):
``/Soil_Moisture_Retrieval_Data_AM/soil_moisture`` (float32, ``_FillValue`` -9999,
``valid_min`` 0.02, ``valid_max`` 0.5, units cm**3/cm**3 = m3/m3) with its
``retrieval_qual_flag`` (uint16, fill 65534), ``latitude``/``longitude`` (-9999 where no
retrieval, no fill attribute) and ``EASE_row_index``/``EASE_column_index``; the PM pass lives
in ``Soil_Moisture_Retrieval_Data_PM`` with a ``_pm`` suffix on every name.

Masking: a cell is NaN when soil moisture equals ``_FillValue``, lies outside
[``valid_min``, ``valid_max``] (from the file's attributes), or fails quality control:
``retrieval_qual_flag & qc_mask != 0`` (default ``qc_mask=0b1``: bit 0 "retrieval
recommended" must be clear, i.e. recommended quality; ``qc_mask=0`` keeps every retrieval;
``0b101`` also requires bit 2 "retrieval success" to be clear) or the flag is fill.

Placement: the arrays are the global 406 x 964 EASE-Grid 2.0 36 km grid, so a region is a
row/column slice. Where the file gives latitude/longitude (and row/column indices) they are
checked against the grid's cell centres; a disagreement over ``tolerance_deg`` (default 1e-3
degree) raises :class:`GeolocationError`.

Date, in order:

1. ``/Metadata/Extent`` attribute ``rangeBeginningDateTime`` (the UTC day the daily composite
   covers);
2. the file name ``SMAP_L3_SM_P_YYYYMMDD_...`` (if both exist they must agree, else
   :class:`InputDateError`);
3. failing both, the UTC date of the median valid ``tb_time_seconds`` (seconds since the
   J2000 epoch 2000-01-01T11:58:55.816Z).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from typing import Literal

import numpy as np
import xarray as xr

from dsm.grid import NCOLS_36KM, NROWS_36KM, Region
from dsm.ingest.base import (
    EmptyGranuleError,
    GeolocationError,
    InputDateError,
    parse_day,
    MissingVariableError,
    PathLike,
    UnreadableFileError,
    WrongProductError,
)
from dsm.ingest.reproject import coarse_dataarray

log = logging.getLogger(__name__)

GROUPS = {"AM": ("Soil_Moisture_Retrieval_Data_AM", ""), "PM": ("Soil_Moisture_Retrieval_Data_PM", "_pm")}
J2000_UTC = dt.datetime(2000, 1, 1, 11, 58, 55, 816000, tzinfo=dt.timezone.utc)
LATLON_FILL = -9999.0
INDEX_FILL = 65534


def read_spl3smp(
    path: PathLike,
    region: Region,
    *,
    overpass: Literal["AM", "PM"] = "AM",
    qc_mask: int = 0b1,
    tolerance_deg: float = 1e-3,
) -> tuple[xr.DataArray, dt.date]:
    """Soil moisture of one SPL3SMP granule on a region's 36 km grid.

    Parameters
    ----------
    path
        SPL3SMP HDF5 file.
    region
        Region whose 36 km cells are returned.
    overpass
        ``"AM"`` (descending, 6 am, the method's default) or ``"PM"`` (``_pm`` variables).
    qc_mask
        Bits of ``retrieval_qual_flag`` that must be clear (module docstring).
    tolerance_deg
        Largest accepted difference between the file's and the grid's cell centres.

    Returns
    -------
    (xarray.DataArray, datetime.date)
        ``smap_sm`` (cy, cx) float32 in m3/m3, NaN where missing or rejected, with a scalar
        ``time`` coordinate; and the granule's date.

    Raises
    ------
    UnreadableFileError, WrongProductError, MissingVariableError, GeolocationError,
    InputDateError, EmptyGranuleError
    """
    import h5py

    path = os.fspath(path)
    if overpass not in GROUPS:
        raise ValueError(f"overpass must be 'AM' or 'PM', got {overpass!r}")
    if not os.path.isfile(path):
        raise UnreadableFileError(path, "file does not exist")
    group, sfx = GROUPS[overpass]
    try:
        with h5py.File(path, "r") as f:
            _check_product(f, path, group)
            g = f[group]
            sm, sm_attrs = _read(g, f"soil_moisture{sfx}", path, required=True)
            flag, flag_attrs = _read(g, f"retrieval_qual_flag{sfx}", path, required=qc_mask != 0)
            lat, _ = _read(g, f"latitude{sfx}", path)
            lon, _ = _read(g, f"longitude{sfx}", path)
            rows, _ = _read(g, f"EASE_row_index{sfx}", path)
            cols, _ = _read(g, f"EASE_column_index{sfx}", path)
            date = _granule_date(f, path, g, sfx)
    except OSError as exc:
        raise UnreadableFileError(path, f"not a readable HDF5 file ({exc})") from exc

    valid = _valid(sm, sm_attrs)
    if qc_mask:
        flag_fill = _attr_number(flag_attrs, "_FillValue", INDEX_FILL)
        valid &= (flag != flag_fill) & ((flag.astype(np.int64) & qc_mask) == 0)
    if not valid.any():
        raise EmptyGranuleError(path, f"no valid {overpass} soil moisture anywhere in the granule (fill or QC mask {qc_mask:#b})")

    rs = slice(region.row0, region.row0 + region.nrows)
    cs = slice(region.col0, region.col0 + region.ncols)
    _check_geolocation(path, region, lat, lon, rows, cols, rs, cs, tolerance_deg)
    values = np.where(valid[rs, cs], sm[rs, cs], np.nan).astype(np.float32)
    n = int(np.count_nonzero(~np.isnan(values)))
    log.debug("%s: %s %s, %d valid cells in region", path, overpass, date, n)
    da = coarse_dataarray(
        values,
        region,
        "smap_sm",
        {
            "units": "m3 m-3",
            "long_name": f"SMAP L3 radiometer surface soil moisture, {overpass} overpass (SPL3SMP)",
            "source": os.path.basename(path),
            "overpass": overpass,
            "qc_mask": int(qc_mask),
            "valid_cells": n,
        },
    )
    return da.assign_coords(time=np.datetime64(date, "ns")), date


def _check_product(f, path: str, group: str) -> None:
    short = _attr_str(f, "Metadata/DatasetIdentification", "shortName")
    if short is not None and short != "SPL3SMP":
        raise WrongProductError(path, f"product {short!r} is not SPL3SMP")
    if group not in f:
        raise WrongProductError(path, f"no group {group!r}: not an SPL3SMP granule")


def _read(g, name: str, path: str, required: bool = False) -> tuple[np.ndarray | None, dict]:
    if name not in g:
        if required:
            raise MissingVariableError(path, f"dataset {g.name}/{name} is missing")
        return None, {}
    ds = g[name]
    if ds.shape != (NROWS_36KM, NCOLS_36KM):
        raise WrongProductError(path, f"{g.name}/{name} has shape {ds.shape}, not the 36 km grid {(NROWS_36KM, NCOLS_36KM)}")
    return ds[()], dict(ds.attrs)


def _attr_number(attrs: dict, key: str, default: float | None) -> float | None:
    v = attrs.get(key, default)
    if v is None:
        return None
    return float(np.asarray(v).ravel()[0])


def _attr_str(f, group: str, key: str) -> str | None:
    if group not in f or key not in f[group].attrs:
        return None
    v = f[group].attrs[key]
    v = np.asarray(v).ravel()[0] if np.ndim(v) else v
    return v.decode() if isinstance(v, bytes) else str(v)


def _valid(sm: np.ndarray, attrs: dict) -> np.ndarray:
    valid = np.isfinite(sm)
    fill = _attr_number(attrs, "_FillValue", -9999.0)
    valid &= sm != fill
    lo, hi = _attr_number(attrs, "valid_min", None), _attr_number(attrs, "valid_max", None)
    if lo is not None:
        valid &= sm >= lo
    if hi is not None:
        valid &= sm <= hi
    return valid


def _check_geolocation(path, region, lat, lon, rows, cols, rs, cs, tol) -> None:
    if lat is not None and lon is not None:
        la, lo = lat[rs, cs].astype(np.float64), lon[rs, cs].astype(np.float64)
        have = (la != LATLON_FILL) & (lo != LATLON_FILL) & np.isfinite(la) & np.isfinite(lo)
        if have.any():
            dlat = np.abs(la - region.coarse_lat[:, None])
            dlon = np.abs((lo - region.coarse_lon[None, :] + 180.0) % 360.0 - 180.0)
            worst = float(np.max(np.where(have, np.maximum(dlat, dlon), 0.0)))
            if worst > tol:
                i, j = np.unravel_index(np.argmax(np.where(have, np.maximum(dlat, dlon), 0.0)), have.shape)
                raise GeolocationError(
                    path,
                    f"latitude/longitude of cell (row {region.row0 + i}, col {region.col0 + j}) "
                    f"({la[i, j]:.5f}, {lo[i, j]:.5f}) differ from the EASE-Grid 2.0 36 km centre "
                    f"({region.coarse_lat[i]:.5f}, {region.coarse_lon[j]:.5f}) by {worst:.5f} deg > {tol}",
                )
    for idx, expect, what in ((rows, np.arange(rs.start, rs.stop)[:, None], "row"), (cols, np.arange(cs.start, cs.stop)[None, :], "column")):
        if idx is None:
            continue
        sub = idx[rs, cs].astype(np.int64)
        bad = (sub != INDEX_FILL) & (sub != expect)
        if bad.any():
            raise GeolocationError(path, f"EASE_{what}_index disagrees with the cell's position in {int(bad.sum())} cells")


_NAME_DATE = re.compile(r"SMAP_L3_SM_P_(\d{8})_")


def _granule_date(f, path: str, g, sfx: str) -> dt.date:
    meta = _attr_str(f, "Metadata/Extent", "rangeBeginningDateTime")
    meta_date = None
    if meta:
        meta_date = parse_day(meta, path, "rangeBeginningDateTime")
    name_date = None
    m = _NAME_DATE.search(os.path.basename(path))
    if m:
        name_date = parse_day(m.group(1), path, "the file name's date", "%Y%m%d")
    if meta_date and name_date and meta_date != name_date:
        raise InputDateError(path, f"metadata date {meta_date} disagrees with the file name date {name_date}")
    if meta_date or name_date:
        return meta_date or name_date
    secs, attrs = _read(g, f"tb_time_seconds{sfx}", path)
    if secs is not None:
        fill = _attr_number(attrs, "_FillValue", -9999.0)
        ok = np.isfinite(secs) & (secs != fill) & (secs > 0)
        if ok.any():
            t = J2000_UTC + dt.timedelta(seconds=float(np.median(secs[ok])))
            log.info("%s: date %s from tb_time_seconds (no metadata, no dated file name)", path, t.date())
            return t.date()
    raise InputDateError(path, "no /Metadata/Extent rangeBeginningDateTime, no date in the file name and no valid tb_time_seconds")
