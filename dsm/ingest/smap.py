"""SMAP L3 radiometer daily soil moisture: SPL3SMP (36 km) and SPL3SMP_E (9 km), HDF5/netCDF-4.

Variables (version 9 schema, ``SC_SPL3SMP_009.dmr``; versions 6-8 and SPL3SMP_E use the same
names): ``/Soil_Moisture_Retrieval_Data_AM/soil_moisture`` (float32, ``_FillValue`` -9999,
``valid_min`` 0.02, ``valid_max`` 0.5, units cm**3/cm**3 = m3/m3) with its
``retrieval_qual_flag`` (uint16, fill 65534), ``latitude``/``longitude`` (-9999 where no
retrieval) and ``EASE_row_index``/``EASE_column_index``; the PM pass lives in
``Soil_Moisture_Retrieval_Data_PM`` with a ``_pm`` suffix on every name. SPL3SMP_E's north
polar groups (``..._Polar_AM``/``_PM``) are not read.

Masking: a cell is NaN when soil moisture equals ``_FillValue``, lies outside
[``valid_min``, ``valid_max``] (from the file's attributes), or fails quality control:
``retrieval_qual_flag & qc_mask != 0`` (default ``qc_mask=0b1``: bit 0 "retrieval
recommended" must be clear, i.e. recommended quality; ``qc_mask=0`` keeps every retrieval;
``0b101`` also requires bit 2 "retrieval success" to be clear) or the flag is fill.

Coverage: a file is either a whole granule (406 x 964 cells at 36 km, 1624 x 3856 at 9 km)
or a Harmony/OPeNDAP spatial subset, a window of the global grid with 1-D ``x``/``y``
projected coordinates in each group, a grid-mapping variable ``EASE2_global_projection_36km``
(``_9km``), latitude/longitude with fill -9999 and often no row/column indices. The arrays are
placed on the grid by :func:`dsm.ingest.easegrid.locate` (``x``/``y``, else the global shape,
else ``EASE_row_index``/``EASE_column_index``, else latitude/longitude); the latitude/longitude
and indices of the region's cells are then checked against the grid's cell centres (a
disagreement over ``tolerance_deg``, default 1e-3 degree, raises :class:`GeolocationError`).
Cells of the region outside a subset are NaN; a subset that misses the region altogether
raises :class:`NoOverlapError` (``read_many`` skips it).

Product: every product name the file carries must be the one read, else
:class:`WrongProductError` naming it: ``/Metadata/DatasetIdentification`` ``shortName``,
SMAP granule names (``SMAP_L3_SM_P_...``, ``SMAP_L4_SM_aup_...``) and collection ids
(``SPL3SMP.009``) in the file name and in the root attributes (``history``, which Harmony
writes, ``build_dmrpp_metadata``), and the grid of the ``EASE2_global_projection_<N>km``
variable. Arrays of the other product's global shape are refused the same way.

Date, in order:

1. ``/Metadata/Extent`` attribute ``rangeBeginningDateTime`` (the UTC day the daily composite
   covers);
2. the granule name ``SMAP_L3_SM_P_YYYYMMDD_...`` (``SMAP_L3_SM_P_E_YYYYMMDD_...``) in the
   file name, or, for a file renamed by a download tool, in its root attributes (all of 1 and
   2 that exist must agree, else :class:`InputDateError`);
3. failing both, the UTC date of the median valid ``tb_time_seconds`` (seconds since the
   J2000 epoch 2000-01-01T11:58:55.816Z), else of the median valid ``tb_time_utc``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

import h5py
import numpy as np
import xarray as xr

from dsm.cube import COARSE_GRID_MAPPING
from dsm.grid import EASE2_9KM, EASE2_36KM, Grid, Region
from dsm.ingest.base import (
    EmptyGranuleError,
    InputDateError,
    MissingVariableError,
    NoOverlapError,
    PathLike,
    UnreadableFileError,
    WrongProductError,
    parse_day,
)
from dsm.ingest.easegrid import (
    INDEX_FILL,
    Geolocation,
    check_cells,
    grid_dataarray,
    grid_label,
    locate,
    paste,
    region_window,
)
from dsm.inplace import HDF5_CACHE, RemoteFile

log = logging.getLogger(__name__)

GROUPS = {"AM": ("Soil_Moisture_Retrieval_Data_AM", ""), "PM": ("Soil_Moisture_Retrieval_Data_PM", "_pm")}
J2000_UTC = dt.datetime(2000, 1, 1, 11, 58, 55, 816000, tzinfo=dt.timezone.utc)
#: Dimensions and grid-mapping name of :func:`read_spl3smp_e`'s 9 km arrays.
DIMS_9KM = ("y9", "x9")
GRID_MAPPING_9KM = "spatial_ref_9km"


def _wrap_9km(values: np.ndarray, region: Region, name: str, attrs: dict) -> xr.DataArray:
    return grid_dataarray(values, region, EASE2_9KM, name, attrs, DIMS_9KM, GRID_MAPPING_9KM)


def _wrap_36km(values: np.ndarray, region: Region, name: str, attrs: dict) -> xr.DataArray:
    return grid_dataarray(values, region, EASE2_36KM, name, attrs, ("cy", "cx"), COARSE_GRID_MAPPING)


@dataclass(frozen=True)
class Product:
    """An SMAP L3 soil moisture product this module reads."""

    short_name: str
    grid: Grid
    granule: str  #: granule name prefix, followed by ``YYYYMMDD_``
    reader: str
    wrap: Callable[[np.ndarray, Region, str, dict], xr.DataArray]

    @property
    def date_pattern(self) -> re.Pattern[str]:
        """The granule name's date (group 1)."""
        return re.compile(re.escape(self.granule) + r"(\d{8})_")


SPL3SMP = Product("SPL3SMP", EASE2_36KM, "SMAP_L3_SM_P_", "read_spl3smp", _wrap_36km)
SPL3SMP_E = Product("SPL3SMP_E", EASE2_9KM, "SMAP_L3_SM_P_E_", "read_spl3smp_e", _wrap_9km)
PRODUCTS = {p.short_name: p for p in (SPL3SMP, SPL3SMP_E)}


def read_spl3smp(
    path: PathLike,
    region: Region,
    *,
    overpass: Literal["AM", "PM"] = "AM",
    qc_mask: int = 0b1,
    tolerance_deg: float = 1e-3,
) -> tuple[xr.DataArray, dt.date]:
    """Soil moisture of one SPL3SMP granule or spatial subset on a region's 36 km grid.

    Parameters
    ----------
    path
        SPL3SMP HDF5 granule, or a Harmony/OPeNDAP subset of one (netCDF-4): a local file, or a
        remote one read in place (:class:`dsm.inplace.RemoteFile`).
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
        ``smap_sm`` (cy, cx) float32 in m3/m3, NaN where missing, rejected or outside a
        subset, with a scalar ``time`` coordinate; and the granule's date.

    Raises
    ------
    UnreadableFileError, WrongProductError, MissingVariableError, GeolocationError,
    InputDateError, EmptyGranuleError, NoOverlapError
    """
    return _read_l3(SPL3SMP, path, region, overpass, qc_mask, tolerance_deg)


def read_spl3smp_e(
    path: PathLike,
    region: Region,
    *,
    overpass: Literal["AM", "PM"] = "AM",
    qc_mask: int = 0b1,
    tolerance_deg: float = 1e-3,
) -> tuple[xr.DataArray, dt.date]:
    """Soil moisture of one SPL3SMP_E (Enhanced, 9 km) granule or subset on the region's 9 km cells.

    The region's 36 km cells are cut 4 x 4 into cells of the global EASE-Grid 2.0 9 km grid
    (:data:`dsm.grid.EASE2_9KM`, 1624 x 3856); 9 x 9 one-km pixels nest in each.

    Parameters
    ----------
    path
        SPL3SMP_E HDF5 granule, or a Harmony/OPeNDAP subset of one (netCDF-4).
    region, overpass, qc_mask, tolerance_deg
        As :func:`read_spl3smp`.

    Returns
    -------
    (xarray.DataArray, datetime.date)
        ``smap_sm`` (``y9``, ``x9``) float32 in m3/m3 on the region's 9 km cells (grid mapping
        ``spatial_ref_9km``), NaN where missing, rejected or outside a subset, with a scalar
        ``time`` coordinate; and the granule's date.

    Raises
    ------
    UnreadableFileError, WrongProductError, MissingVariableError, GeolocationError,
    InputDateError, EmptyGranuleError, NoOverlapError
    """
    return _read_l3(SPL3SMP_E, path, region, overpass, qc_mask, tolerance_deg)


def product_of(region: Region) -> Product:
    """The SMAP product on ``region``'s coarse grid (:attr:`dsm.grid.Region.coarse_km`):
    SPL3SMP at 36 km, SPL3SMP_E at 9 km."""
    return SPL3SMP_E if region.coarse_km == 9 else SPL3SMP


def read_smap(path: PathLike, region: Region, *, overpass: Literal["AM", "PM"] = "AM", qc_mask: int = 0b1,
              tolerance_deg: float = 1e-3) -> tuple[xr.DataArray, dt.date]:
    """:func:`read_spl3smp` or :func:`read_spl3smp_e`: the product of ``region``'s coarse grid
    (:func:`product_of`), on its coarse cells."""
    return _read_l3(product_of(region), path, region, overpass, qc_mask, tolerance_deg)


def granule_date(path: PathLike, opened: Any = None, *, overpass: Literal["AM", "PM"] = "AM",
                 product: str = "SPL3SMP") -> dt.date:
    """The date of an SMAP L3 granule or subset from its own content, as its reader finds it
    (metadata, the granule name in the file name or its history attributes, acquisition times).

    ``opened`` is an open binary file object of ``path`` (e.g. fsspec's, for a remote file:
    only the metadata is read); None opens ``path`` itself.

    Raises
    ------
    UnreadableFileError, WrongProductError, MissingVariableError, InputDateError
    """
    path = os.fspath(path)
    spec = PRODUCTS[product]
    try:
        with h5py.File(opened if opened is not None else path, "r") as f:
            _check_product(f, path, spec)
            g, sfx = _group(f, path, spec, overpass)
            return _granule_date(f, path, g, sfx, spec)
    except (OSError, KeyError) as exc:
        raise UnreadableFileError(path, f"not a readable HDF5 file ({exc})") from exc


def _read_l3(
    product: Product, path: PathLike, region: Region, overpass: str, qc_mask: int, tolerance_deg: float
) -> tuple[xr.DataArray, dt.date]:
    """The reader of both products (:func:`read_spl3smp`); ``path`` may be a remote
    :class:`~dsm.inplace.RemoteFile`, read in place."""
    path = os.fspath(path)  # a RemoteFile stays one
    if overpass not in GROUPS:
        raise ValueError(f"overpass must be 'AM' or 'PM', got {overpass!r}")
    remote = isinstance(path, RemoteFile)
    if not remote and not os.path.isfile(path):
        raise UnreadableFileError(path, "file does not exist")
    label = grid_label(product.grid)
    try:
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(h5py.File(_opened(stack, path), "r"))
            _check_product(f, path, product)
            g, sfx = _group(f, path, product, overpass)
            sm_ds = _dataset(g, f"soil_moisture{sfx}", path, None, required=True)
            shape = sm_ds.shape
            x, y = _dataset(g, "x", path, None), _dataset(g, "y", path, None)
            _refuse_sibling_shape(path, product, shape, x is not None and y is not None)
            flag_ds = _dataset(g, f"retrieval_qual_flag{sfx}", path, shape, required=qc_mask != 0)
            geo = Geolocation(
                x=x,
                y=y,
                rows=_dataset(g, f"EASE_row_index{sfx}", path, shape),
                cols=_dataset(g, f"EASE_column_index{sfx}", path, shape),
                lat=_dataset(g, f"latitude{sfx}", path, shape),
                lon=_dataset(g, f"longitude{sfx}", path, shape),
            )
            date = _granule_date(f, path, g, sfx, product)
            where, how = locate(path, product.grid, shape, geo)
            target = region_window(region, product.grid)
            cut = where.intersection(target)
            if cut is None:
                raise NoOverlapError(
                    path,
                    f"the file covers {where} of the EASE-Grid 2.0 {label} grid (placed by {how}) and the region "
                    f"needs {target}: they do not overlap; use a subset or granule that covers the region",
                )
            sm = sm_ds[()]
            valid = _valid(sm, dict(sm_ds.attrs))
            if qc_mask:
                assert flag_ds is not None  # required (read above) whenever qc_mask is set
                flag = flag_ds[()]
                flag_fill = _attr_number(dict(flag_ds.attrs), "_FillValue", INDEX_FILL)
                valid &= (flag != flag_fill) & ((flag.astype(np.int64) & qc_mask) == 0)
            if not valid.any():
                raise EmptyGranuleError(path, f"no valid {overpass} soil moisture anywhere in the file (fill or QC mask {qc_mask:#b})")
            check_cells(path, product.grid, where, cut, geo, tolerance_deg)
    except (OSError, KeyError) as exc:  # h5py: KeyError when a corrupt object header cannot be opened
        raise UnreadableFileError(path, f"not a readable HDF5 file ({exc})") from exc

    rs, cs = where.slices(cut)
    values = paste(np.where(valid[rs, cs], sm[rs, cs], np.nan), cut, target)
    n = int(np.count_nonzero(~np.isnan(values)))
    if cut != target:
        log.info("%s: covers %d of the region's %d %s cells (%s)", path, cut.nrows * cut.ncols,
                 target.nrows * target.ncols, label, cut)
    log.debug("%s: %s %s, %d valid cells in region", path, overpass, date, n)
    da = product.wrap(
        values,
        region,
        "smap_sm",
        {
            "units": "m3 m-3",
            "long_name": f"SMAP L3 radiometer surface soil moisture, {overpass} overpass ({product.short_name}, {label})",
            "source": os.path.basename(path),
            "overpass": overpass,
            "qc_mask": int(qc_mask),
            "valid_cells": n,
            "placement": how,
            "file_window": str(where),
        },
    )
    return da.assign_coords(time=np.datetime64(date, "ns")), date


def _opened(stack: contextlib.ExitStack, path: str) -> Any:
    """What h5py opens: ``path``, or a handle on a remote file read in place (closed with ``stack``)."""
    return stack.enter_context(path.open(HDF5_CACHE)) if isinstance(path, RemoteFile) else path


# -- product, groups, datasets -----------------------------------------------------------
_GRANULE_NAME = re.compile(r"SMAP_(L[1-4][A-C]?)_([A-Z]{2})_([A-Za-z]{1,3})(_E)?_")
_COLLECTION = re.compile(r"(?<![A-Za-z0-9])(SPL[1-4][A-Z]+(?:_E)?)\.\d{3}(?!\d)")
_L4_SUB = {"aup": "AU", "gph": "GP", "lmc": "LM", "mdl": "MDL"}
_PROJECTION = re.compile(r"^EASE2_global_projection_(\d+)km$")


def _products_named(text: str) -> set[str]:
    """Short names of the SMAP granule names and collection ids in ``text``."""
    found = {m.group(1) for m in _COLLECTION.finditer(text)}
    for m in _GRANULE_NAME.finditer(text):
        level, kind, sub, e = m.groups()
        found.add(f"SP{level}{kind}{_L4_SUB.get(sub, sub.upper())}{e or ''}")
    return found


def _root_texts(f: h5py.File) -> dict[str, str]:
    """String-valued root attributes (``history``, ``build_dmrpp_metadata.invocation``...)."""
    out: dict[str, str] = {}
    for key, v in f.attrs.items():
        v = np.asarray(v).ravel()[0] if np.ndim(v) else v
        if isinstance(v, (bytes, np.bytes_)):
            v = v.decode(errors="replace")
        if isinstance(v, str):
            out[key] = v
    return out


def _check_product(f: h5py.File, path: str, product: Product) -> None:
    """Refuse the file when anything in it names another product or grid."""
    evidence: list[tuple[str, str]] = []
    short = _attr_str(f, "Metadata/DatasetIdentification", "shortName")
    if short is not None:
        evidence.append(("/Metadata/DatasetIdentification shortName", short))
    evidence += [("the file name", p) for p in sorted(_products_named(os.path.basename(path)))]
    for key, text in _root_texts(f).items():
        evidence += [(f"the root attribute {key!r}", p) for p in sorted(_products_named(text))]
    for where, found in evidence:
        if found != product.short_name:
            raise WrongProductError(path, f"{where} names the product {found!r}; {_accepts(product)}")
    for name in f:
        m = _PROJECTION.match(name)
        if m and f"{m.group(1)} km" != grid_label(product.grid):
            raise WrongProductError(
                path, f"the grid-mapping variable {name} puts the file on the {m.group(1)} km grid, not the "
                f"{grid_label(product.grid)} grid; {_accepts(product)}",
            )


def _accepts(product: Product) -> str:
    others = "; ".join(f"{p.reader} reads {p.short_name} ({grid_label(p.grid)})" for p in PRODUCTS.values() if p is not product)
    return f"{product.reader} reads {product.short_name} ({grid_label(product.grid)}) only ({others})"


def _refuse_sibling_shape(path: str, product: Product, shape: tuple[int, ...], has_xy: bool) -> None:
    """Arrays of the other product's global shape, without x/y to say otherwise, are that product."""
    if has_xy:
        return
    for p in PRODUCTS.values():
        if p is not product and shape == (p.grid.nrows, p.grid.ncols):
            raise WrongProductError(
                path, f"soil moisture of shape {shape} is the global {grid_label(p.grid)} grid of {p.short_name}, "
                f"not the {grid_label(product.grid)} grid ({product.grid.nrows}, {product.grid.ncols}); {_accepts(product)}",
            )


def _group(f: h5py.File, path: str, product: Product, overpass: str) -> tuple[h5py.Group, str]:
    group, sfx = GROUPS[overpass]
    if group in f:
        return f[group], sfx
    present = sorted(k for k in f if hasattr(f[k], "keys")) or ["none"]
    others = [o for o, (gr, _) in GROUPS.items() if gr in f]
    if not others:
        raise WrongProductError(
            path, f"no group {group} nor any other SMAP L3 soil moisture group (groups present: {', '.join(present)}): "
            f"not an {product.short_name} granule or subset",
        )
    raise MissingVariableError(
        path, f"no group {group} (the {overpass} overpass); groups present: {', '.join(present)}. The file has the "
        f"{others[0]} overpass: read it with overpass: {others[0]} (inputs.smap.overpass), or fetch a file with {group}",
    )


@overload
def _dataset(g: h5py.Group, name: str, path: str, shape: tuple[int, ...] | None,
             required: Literal[True]) -> h5py.Dataset: ...


@overload
def _dataset(g: h5py.Group, name: str, path: str, shape: tuple[int, ...] | None,
             required: bool = False) -> h5py.Dataset | None: ...


def _dataset(g: h5py.Group, name: str, path: str, shape: tuple[int, ...] | None,
             required: bool = False) -> h5py.Dataset | None:
    """The h5py dataset ``g/name`` (not read), None when absent and not required."""
    if name not in g:
        if required:
            raise MissingVariableError(path, f"dataset {g.name}/{name} is missing")
        return None
    ds = g[name]
    if shape is not None and ds.shape != shape:
        raise WrongProductError(path, f"{g.name}/{name} has shape {ds.shape}, not that of the soil moisture {shape}")
    return ds


def _attr_number(attrs: dict, key: str, default: float | None) -> float | None:
    v = attrs.get(key, default)
    if v is None:
        return None
    return float(np.asarray(v).ravel()[0])


def _attr_str(f: h5py.File, group: str, key: str) -> str | None:
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


# -- date --------------------------------------------------------------------------------
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}T")


def _granule_date(f: h5py.File, path: str, g: h5py.Group, sfx: str, product: Product) -> dt.date:
    named: list[tuple[str, dt.date]] = []
    meta = _attr_str(f, "Metadata/Extent", "rangeBeginningDateTime")
    if meta:
        named.append(("/Metadata/Extent rangeBeginningDateTime", parse_day(meta, path, "rangeBeginningDateTime")))
    m = product.date_pattern.search(os.path.basename(path))
    if m:
        named.append(("the file name", parse_day(m.group(1), path, "the file name's date", "%Y%m%d")))
    for key, text in _root_texts(f).items():
        for d in sorted(set(product.date_pattern.findall(text))):
            named.append((f"the granule name in the root attribute {key!r}", parse_day(d, path, f"the date in {key!r}", "%Y%m%d")))
    if named:
        first, day = named[0]
        for where, other in named[1:]:
            if other != day:
                raise InputDateError(path, f"the date {other} of {where} disagrees with the date {day} of {first}")
        return day
    timed = _time_date(g, sfx)
    if timed is not None:
        log.info("%s: date %s from the acquisition times (no metadata, no granule name)", path, timed)
        return timed
    raise InputDateError(
        path,
        f"no /Metadata/Extent rangeBeginningDateTime, no {product.granule}YYYYMMDD_ granule name in the file name "
        f"or its history attributes, and no valid tb_time_seconds{sfx} or tb_time_utc{sfx}: keep the granule's "
        "original name, or include /Metadata or tb_time_seconds in the subset request",
    )


def _time_date(g: h5py.Group, sfx: str) -> dt.date | None:
    """UTC date of the median valid acquisition time of the group, None when there is none."""
    secs = g.get(f"tb_time_seconds{sfx}")
    if secs is not None:
        s = np.asarray(secs[()], dtype=np.float64)
        ok = np.isfinite(s) & (s != _attr_number(dict(secs.attrs), "_FillValue", -9999.0)) & (s > 0)
        if ok.any():
            return (J2000_UTC + dt.timedelta(seconds=float(np.median(s[ok])))).date()
    utc = g.get(f"tb_time_utc{sfx}")
    if utc is not None:
        stamps = sorted(
            t for t in (v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in np.asarray(utc[()]).ravel())
            if _ISO_DAY.match(t)
        )
        if stamps:
            return dt.date.fromisoformat(stamps[len(stamps) // 2][:10])
    return None
