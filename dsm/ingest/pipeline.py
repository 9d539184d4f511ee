"""``dsm ingest``: real input files -> the predictor cube, in parallel on the cluster.

Steps
-----
1. **Plan** (client): expand every configured file, glob and folder (local or fsspec, e.g.
   ``s3://bucket/MOD11A1/``; :mod:`dsm.ingest.inputs`), date every file from its name, drop
   files whose date is not on the cube's axis, order duplicate granules (same product, tile
   and date) newest first (:mod:`dsm.ingest.duplicates`: the newest intact one is used), and
   cut the work into :class:`Task` s.
2. **Run** (workers, ``client.map``): each task fetches its files through fsspec (remote
   files are downloaded to a worker-local temporary folder, since pyhdf and h5py need a local
   path), reads them with the :mod:`dsm.ingest` readers, mosaics and warps each *group*
   (all tiles of one product on one date) onto the region, and writes one chunk-aligned
   block with :func:`dsm.store.write_region`.
3. **Report** (client): every file with its status (used / skipped / failed) and reason,
   every group with what was written, the provenance (which files made which variable
   and date), duplicate fallbacks, ``land_mask_source`` and warnings are printed and written
   as JSON next to the cube (:func:`report_url`). A configured input that gave nothing (no
   file matched, or none was used) is an error (``task_errors``, exit status 1).

The write rule (why tasks are what they are)
--------------------------------------------
A Zarr chunk must have exactly one writer. Daily variables (``lst``, ``albedo``,
``smap_sm``) have a time chunk of ``chunks.time`` days, so **one task owns one time chunk of
one source**: it gathers every day of that chunk, reads the block already in the store,
replaces the days it has new data for and writes the whole block (all spatial chunks of
the region) at once. 8-day and 16-day variables have a time chunk of 1, so their tasks are
one composite each; static variables (dem, slope, aspect, sand, silt, clay, land_mask) are
one task. Different sources never write the same variable (the configuration refuses a
GeoTIFF series for a variable a MODIS source already makes), so no two tasks share a chunk.

What a group writes (nothing already in the cube is damaged)
------------------------------------------------------------
===========  ==================================================  =========================
group        files                                               effect on the store
===========  ==================================================  =========================
complete     at least one used, none failed                      the day is replaced
partial      some used, some failed (corrupt, wrong product...)  fills only pixels that
                                                                 are still empty (NaN)
failed       none used, some failed                              nothing written
empty        none used, none failed (all fill, no overlap)       nothing written
===========  ==================================================  =========================

A block is only written when it differs from what is stored, and encoding is deterministic,
so ingesting the same granules again leaves the store byte-identical. A task that dies
(a bug, storage down) writes nothing it has not finished: its block write is the last step.

Precipitation (``inputs.precip``): IMERG, CHIRPS or ERA5-Land files (:mod:`dsm.ingest.precip`)
fill ``precip`` on the cube's ``time_precip`` axis, which starts ``rain.spinup_days`` (rounded
up to whole time chunks) before the first day. Days come from the file names (IMERG, CHIRPS
GeoTIFF) or the files' time coordinates, read cheaply at plan time (netCDF files of many
days); one task per time chunk of ``time_precip`` reads, checks (:func:`check_covers`), remaps
(``inputs.precip.remap``) and writes its days; of several files of one day (IMERG Final, Late,
Early) the preferred one is read, and the next one when it fails (:mod:`dsm.ingest.duplicates`).
Days of the axis with no file or no usable data are not filled: the report lists them
(``precip.missing_days``). After the precipitation writes,
:func:`dsm.antecedent.write_antecedent` computes the antecedent indices (report
``antecedent``). A cube without ``time_precip``, or with another spin-up, is refused.

MOD09A1 reflectance bands (``inputs.reflectance``): the files of each band are dated and the
dates matched across bands at plan time (:func:`dsm.ingest.reflectance.match_band_dates`: a
date missing a band is skipped, its files named); a group is one 8-day date, its files tagged
with their band (``Group.kinds``), read by :func:`dsm.ingest.reflectance.reflectance_indices`.
Slope and aspect rasters (``inputs.slope``, ``inputs.aspect``) and SoilGrids
(``inputs.soil.soilgrids``, :mod:`dsm.ingest.soilgrids`; web URLs read by GDAL in place, not
copied) are static inputs; a given slope or aspect replaces the DEM's.

Land mask: from a ``land_mask`` raster when configured (land where its 1 km average is
>= 0.5), else land where the DEM has a value and is not sea-level zeros, and every configured
soil fraction has a value (:mod:`dsm.ingest.static`).

Impossible values: before a block is merged, every value outside its variable's valid range
(:mod:`dsm.ranges`; SMAP outside [0.02, 0.5]) becomes NaN, like a fill value. The report counts
them per variable and date (``out_of_range``, and ``summary["out_of_range"]``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import posixpath
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr

from dsm import store
from dsm.cluster import outcomes
from dsm.config import Config, InputsConfig, InputSource
from dsm.cube import SPECS, Layout, create_cube, layout_of, open_cube
from dsm.errors import ConfigError, InputError
from dsm.grid import Region
from dsm.ingest.base import (
    DEFAULT_DATE_REGEX,
    FileReport,
    IngestInputError,
    InputDateError,
    ManyResult,
    NoOverlapError,
    UnreadableFileError,
    date_from_name,
    read_many,
)
from dsm.ingest.modis import PRODUCTS, QCRule, read_modis_tile, tile_raster
from dsm.ingest.precip import (
    check_covers,
    hourly_to_local_days,
    imerg_date,
    local_utc_offset,
    netcdf_times,
    read_chirps,
    read_era5land_file,
    read_imerg,
    remap_to_region,
)
from dsm.ingest.blocks import merge as _merge
from dsm.ingest.blocks import screened as _screened
from dsm.ingest.duplicates import newest_first, read_newest_intact
from dsm.ingest.inputs import expand_each, folder_patterns, input_errors, source_entry
from dsm.ingest.rasters import ValueRule, geotiff_series_to_region
from dsm.ingest.reflectance import DATE_REGEX as REFLECTANCE_DATES
from dsm.ingest.reflectance import match_band_dates, reflectance_indices
from dsm.ingest.reproject import crop_to_region, warp_many_to_region
from dsm.ingest.smap import granule_date, read_spl3smp
from dsm.ingest.soil import FRACTIONS
from dsm.ingest.soilgrids import SETTING as SOILGRIDS_SETTING
from dsm.ingest.soilgrids import file_patterns as soilgrids_patterns
from dsm.ingest.soilgrids import read_in_place, soilgrids_files, soilgrids_layer
from dsm.ingest.static import (
    STATIC_VARS,
    check_soil_sum,
    read_dem_layers,
    read_mask_layer,
    read_soil_layer,
    soil_rule,
    write_static,
)
from dsm.ingest.terrain import terrain_layer
from dsm.runlock import Lease, LockLostError

log = logging.getLogger(__name__)

#: MODIS sources of ``inputs:``: product, axis and reader output -> cube variable.
MODIS_SOURCES: dict[str, tuple[str, str, dict[str, str]]] = {
    "mod11a1": ("MOD11A1", "daily", {"lst": "lst"}),
    "mcd43": ("MCD43A3", "daily", {"albedo": "albedo"}),
    "mod15a2h": ("MOD15A2H", "8day", {"lai": "lai", "fpar": "fapar"}),
    "mod09a1": ("MOD09A1", "8day", {"ndwi": "ndwi", "lswi": "lswi", "nsdsi": "nsdsi"}),
    "mod13a2": ("MOD13A2", "16day", {"ndvi": "ndvi", "evi": "evi"}),
}
TIME_DIM = {"daily": "time", "8day": "time_8d", "16day": "time_16d", "smap": "time"}
MODIS_DATE = r"\.A(?P<year>\d{4})(?P<doy>\d{3})\."
SMAP_DATE = r"SMAP_L3_SM_P_(?P<date>\d{8})_"
_TILE = re.compile(r"\.(h\d{2}v\d{2})\.")


# -- plan -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """All files of one source on one date (``date`` None for the static inputs); ``older``:
    the older duplicates of a file, newest first (read when it fails); ``kinds``: what each
    file of ``urls`` is, where a source has several kinds (the bands of ``reflectance``)."""

    date: dt.date | None
    urls: tuple[str, ...]
    older: tuple[tuple[str, tuple[str, ...]], ...] = ()
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """The unit of work: one source's groups inside one chunk ``[start, stop)`` of ``dim``."""

    source: str  #: ``smap``, a key of :data:`MODIS_SOURCES`, ``geotiff:VAR``, ``reflectance``, ``precip`` or ``static``
    dim: str | None
    start: int
    stop: int
    groups: tuple[Group, ...]

    @property
    def key(self) -> str:
        """A unique, readable name (used as the Dask key)."""
        return f"ingest-{self.source.replace(':', '-')}-{self.dim or 'static'}-{self.start}"


@dataclass
class Plan:
    """Tasks plus the files already decided on the client (failed or skipped by name)."""

    tasks: list[Task] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)


def _options(inputs: InputsConfig, src: InputSource | Any) -> dict[str, Any]:
    return {**inputs.storage_options, **getattr(src, "storage_options", {})}


def _expand_source(out: Plan, key: str, setting: str, patterns: Sequence[str], so: Mapping[str, Any],
                   folder: Sequence[str]) -> list[str]:
    """The files of one input (files, globs, folders); records its entry in ``out.sources``."""
    found = expand_each(patterns, so, folder)
    out.sources[key] = source_entry(setting, patterns, found, folder)
    return sorted({u for v in found.values() for u in v})


def _entry(path: str, source: str, date: dt.date | None, status: str, reason: str = "", error: str = "") -> dict[str, Any]:
    return {"path": path, "source": source, "date": date.isoformat() if date else None,
            "status": status, "reason": reason, "error": error}  # fmt: skip


def _axis_index(layout_index: Mapping[str, Any], dim: str, date: dt.date) -> int | None:
    idx = layout_index[dim]
    pos = idx.get_indexer([np.datetime64(date, "ns")])[0]
    return None if pos < 0 else int(pos)


def _dated_sources(cfg: Config) -> Iterator[tuple[str, InputSource, str, str, str, tuple[str, ...]]]:
    """(source key, its config, axis, file-name date regex, setting, folder patterns) of every
    time-varying source."""
    inputs = cfg.inputs
    assert inputs is not None
    if inputs.smap is not None:
        yield "smap", inputs.smap, "smap", SMAP_DATE, "inputs.smap", folder_patterns("smap")
    for key, (product, axis, _) in MODIS_SOURCES.items():
        src = getattr(inputs, key)
        if src is not None:
            yield key, src, axis, MODIS_DATE, f"inputs.{key}", folder_patterns(key, product)
    for var, src in inputs.geotiff.items():
        yield (f"geotiff:{var}", src, SPECS[var].axis, src.date_regex or DEFAULT_DATE_REGEX, f"inputs.geotiff.{var}",
               folder_patterns("geotiff"))


def plan(cfg: Config, cube: xr.Dataset) -> Plan:
    """Cut the configured inputs into tasks that each own whole chunks of the cube.

    Parameters
    ----------
    cfg
        Configuration with an ``inputs`` section.
    cube
        The (existing) cube, opened lazily: its axes and chunks decide the tasks.
    """
    inputs = cfg.inputs
    if inputs is None:
        raise ConfigError("the configuration has no 'inputs:' section: nothing to ingest")
    out = Plan()
    indexes = {d: cube.indexes[d] for d in ("time", "time_8d", "time_16d")}
    for key, src, axis, regex, setting, folder in _dated_sources(cfg):
        urls = _expand_source(out, key, setting, src.paths, _options(inputs, src), folder)
        dim = TIME_DIM[axis]
        var = _first_var(key)
        tchunk = int(cube[var].encoding["chunks"][0])
        by_date: dict[dt.date, dict[str, list[str]]] = {}
        for url in urls:
            try:
                date = date_from_name(url, regex)
            except InputDateError as exc:
                date, exc = _date_from_content(key, url, src, _options(inputs, src), exc)
                if date is None:
                    out.files.append(_entry(url, key, None, "failed", exc.reason, type(exc).__name__))
                    continue
            if _axis_index(indexes, dim, date) is None:
                out.files.append(_entry(url, key, date, "skipped", _off_axis(dim, date)))
                continue
            tile = _TILE.search(os.path.basename(url))
            slot = "smap" if key == "smap" else (tile.group(1) if tile and key in MODIS_SOURCES else url)
            by_date.setdefault(date, {}).setdefault(slot, []).append(url)  # duplicates: resolved on the worker
        groups: list[tuple[int, Group]] = []
        for date in sorted(by_date):
            i = _axis_index(indexes, dim, date)
            assert i is not None
            slots = sorted((newest_first(c) for c in by_date[date].values()), key=lambda c: c[0])
            older = tuple((c[0], c[1:]) for c in slots if len(c) > 1)
            groups.append((i, Group(date, tuple(c[0] for c in slots), older)))
        out.tasks += _chunk_tasks(key, dim, tchunk, cube.sizes[dim], groups)
    if inputs.reflectance is not None:
        _plan_reflectance(cfg, cube, out, indexes)
    if inputs.precip is not None:
        _plan_precip(cfg, cube, out)
    static = _static_urls(inputs, out)
    if static:
        out.tasks.append(Task("static", None, 0, 0, tuple(Group(None, (f"{k}={u}",)) for k, u in static)))
    return out


def _date_from_content(key: str, url: str, src: InputSource, so: Mapping[str, Any], exc: IngestInputError
                       ) -> tuple[dt.date | None, IngestInputError]:
    """The date of a file whose name has none, from its own content where the format has one
    (SMAP: metadata, granule names in its attributes, acquisition times; only the metadata
    of a remote file is read); ``(None, error)`` when it cannot be had."""
    if key != "smap":
        return None, exc
    try:
        with fsspec.open(url, "rb", **so) as f:
            return granule_date(url, f, overpass=getattr(src, "overpass", "AM")), exc
    except IngestInputError as err:
        return None, err
    except OSError as err:
        return None, UnreadableFileError(url, f"cannot be opened to find its date ({err})")


def _chunk_tasks(key: str, dim: str, tchunk: int, size: int, groups: Sequence[tuple[int, Group]]) -> list[Task]:
    """The tasks of one source: its groups (each with its index on ``dim``) cut by time chunk."""
    chunks: dict[int, list[Group]] = {}
    for i, g in groups:
        chunks.setdefault(i // tchunk, []).append(g)
    return [Task(key, dim, c * tchunk, min((c + 1) * tchunk, size), tuple(gs)) for c, gs in sorted(chunks.items())]


def _off_axis(dim: str, date: dt.date) -> str:
    what = "day" if dim == "time" else f"{'8' if dim == 'time_8d' else '16'}-day composite start"
    return f"{date} is not a {what} of the cube ({dim})"


def _plan_reflectance(cfg: Config, cube: xr.Dataset, out: Plan, indexes: Mapping[str, Any]) -> None:
    """Tasks of ``inputs.reflectance``: the band files of each date (:func:`match_band_dates`)."""
    inputs = cfg.inputs
    assert inputs is not None and inputs.reflectance is not None
    src, so, folder = inputs.reflectance, _options(inputs, inputs.reflectance), folder_patterns("geotiff")
    found = {b: expand_each(paths, so, folder) for b, paths in src.bands.items()}
    out.sources["reflectance"] = source_entry("inputs.reflectance", [p for ps in src.bands.values() for p in ps],
                                              {p: us for f in found.values() for p, us in f.items()}, folder)
    matched = match_band_dates({b: sorted({u for us in f.values() for u in us}) for b, f in found.items()},
                               src.date_regex or REFLECTANCE_DATES)
    out.files += [_entry(u, "reflectance", d, status, why, err) for u, d, status, why, err in matched.problems]
    groups: list[tuple[int, Group]] = []
    for date, pairs in matched.complete.items():
        i = _axis_index(indexes, "time_8d", date)
        if i is None:
            out.files += [_entry(u, "reflectance", date, "skipped", _off_axis("time_8d", date)) for _, u in pairs]
            continue
        groups.append((i, Group(date, tuple(u for _, u in pairs), kinds=tuple(b for b, _ in pairs))))
    out.tasks += _chunk_tasks("reflectance", "time_8d", int(cube["ndwi"].encoding["chunks"][0]), cube.sizes["time_8d"],
                              groups)


def _static_urls(inputs: InputsConfig, out: Plan) -> list[tuple[str, str]]:
    """(kind, url) of the static inputs: ``dem``, ``slope``, ``aspect``, ``land_mask`` and the
    soil fractions (files, globs or folders; or found under ``inputs.soil.soilgrids``)."""
    found: list[tuple[str, str]] = []
    for kind in ("dem", "slope", "aspect", "land_mask"):
        src = getattr(inputs, kind)
        if src is not None:
            urls = _expand_source(out, kind, f"inputs.{kind}", src.paths, _options(inputs, src), folder_patterns(kind))
            found += [(kind, u) for u in urls]
    soil = inputs.soil
    if soil is not None:
        for f in FRACTIONS:
            if soil.soilgrids:
                where = soilgrids_files(soil.soilgrids, f, _options(inputs, soil))
                out.sources[f] = source_entry(SOILGRIDS_SETTING, [soil.soilgrids], where, soilgrids_patterns(f))
                found += [(f, u) for u in where[soil.soilgrids]]
            elif getattr(soil, f):
                urls = _expand_source(out, f, f"inputs.soil.{f}", [getattr(soil, f)], _options(inputs, soil),
                                      folder_patterns("soil"))
                found += [(f, u) for u in urls]
    return found


def _first_var(source: str) -> str:
    if source == "smap":
        return "smap_sm"
    if source.startswith("geotiff:"):
        return source.split(":", 1)[1]
    if source == "reflectance":
        return "ndwi"
    return next(iter(MODIS_SOURCES[source][2].values()))


# -- precipitation (inputs.precip) ------------------------------------------------------
PRECIP_DIM = "time_precip"
_CHIRPS_TIF_NAME = re.compile(r"\.tiff?(\.gz)?$", re.IGNORECASE)
_IMERG_RUN = re.compile(r"3B-DAY(-[EL])?\..*\.V(\d{2}[A-Z]?)")


def precip_utc_offset(cfg: Config) -> int:
    """The local day of hourly precipitation: ``inputs.precip.utc_offset_hours``, else the region's solar time."""
    src = cfg.inputs.precip if cfg.inputs else None
    if src is not None and src.utc_offset_hours is not None:
        return int(src.utc_offset_hours)
    return local_utc_offset(cfg.grid_region)


def check_precip_cube(cfg: Config, cube: xr.Dataset) -> None:
    """Refuse a cube without a precipitation axis, or whose spin-up differs from the configuration.

    Raises
    ------
    ConfigError
        Naming ``inputs.precip``, the cube and what to do.
    """
    url = cfg.stores.cube
    if PRECIP_DIM not in cube.dims or "precip" not in cube:
        raise ConfigError(f"inputs.precip: the cube {url} has no precipitation axis ('{PRECIP_DIM}'): it was made "
                          "before the rain variables; use a new stores.cube (or delete this cube) and run dsm ingest")
    have = cube.sizes[PRECIP_DIM] - cube.sizes["time"]
    want = Layout.from_config(cfg).precip_spinup
    if have != want:
        raise ConfigError(f"inputs.precip: the cube {url} has {have} days of precipitation spin-up, the configuration "
                          f"{want} (rain.spinup_days {cfg.rain.spinup_days} rounded up to whole time chunks of "
                          f"{cfg.chunks.time}): set rain.spinup_days to match the cube or use another stores.cube")


def _nc_time_info(url: str, so: Mapping[str, Any]) -> tuple[pd.DatetimeIndex, str | None]:
    """Times of a netCDF file (read through fsspec, only the time coordinate) and ``tp``'s GRIB_stepType."""
    try:
        with fsspec.open(url, "rb", **dict(so)) as f:
            magic = f.read(4)
            f.seek(0)
            engine = "h5netcdf" if magic == b"\x89HDF" else "scipy" if magic[:3] == b"CDF" else None
            if engine is None:
                raise UnreadableFileError(url, "not a netCDF file (neither netCDF4/HDF5 nor classic netCDF)")
            with xr.open_dataset(f, engine=engine, decode_times=False, mask_and_scale=False) as ds:
                tname = next((t for t in ("valid_time", "time") if t in ds.variables), None)
                if tname is None:
                    raise InputDateError(url, "no time or valid_time coordinate")
                times = netcdf_times(url, ds[tname].values, dict(ds[tname].attrs))
                step = ds["tp"].attrs.get("GRIB_stepType") if "tp" in ds.variables else None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/scipy/fsspec raise many kinds
        raise UnreadableFileError(url, f"cannot read the time coordinate ({type(exc).__name__}: {exc})") from exc
    return times.sort_values(), (str(step) if step is not None else None)


def precip_file_days(url: str, product: str, utc_offset_hours: int, so: Mapping[str, Any]) -> list[dt.date]:
    """Days a precipitation file can contribute to (IMERG, CHIRPS GeoTIFF: the name; netCDF: its times).

    An hourly ERA5-Land file contributes to the local days of its hours and, through the
    accumulation at its last hour, to the day of the hour after it.
    """
    name = posixpath.basename(url)
    if product == "imerg":
        return [imerg_date(url)]
    if product == "chirps" and _CHIRPS_TIF_NAME.search(name):
        return [date_from_name(url, r"(?P<year>\d{4})\.(?P<month>\d{2})\.(?P<day>\d{2})\.tiff?")]
    times, step_type = _nc_time_info(url, so)
    hours = np.unique(np.diff(times.values).astype("timedelta64[h]").astype(np.int64))
    daily = set(hours) <= {24} if hours.size else (times[0] == times[0].normalize() and step_type != "accum")
    if product == "chirps" or daily:
        return sorted({t.date() for t in times})
    off = pd.Timedelta(hours=utc_offset_hours)
    ends = (times - pd.Timedelta(hours=1) + off).normalize().append((times + off).normalize())
    return sorted({t.date() for t in ends})


def _precip_rank(url: str) -> tuple[int, str, str]:
    """Preference among files of one day: IMERG Final > Late > Early, then newest version, then name."""
    name = posixpath.basename(url)
    m = _IMERG_RUN.search(name)
    run = {None: 2, "-L": 1, "-E": 0}.get(m.group(1) if m else None, 2)
    return run, m.group(2) if m else "", name


def _plan_precip(cfg: Config, cube: xr.Dataset, out: Plan) -> None:
    """Tasks of ``inputs.precip``: one per time chunk of the cube's precipitation axis."""
    inputs = cfg.inputs
    assert inputs is not None and inputs.precip is not None
    src = inputs.precip
    check_precip_cube(cfg, cube)
    so = _options(inputs, src)
    urls = _expand_source(out, "precip", "inputs.precip", src.paths, so, folder_patterns(src.product))
    offset = precip_utc_offset(cfg)
    index = cube.indexes[PRECIP_DIM]
    axis = [t.date() for t in index]
    on_axis = set(axis)
    by_day: dict[dt.date, list[str]] = {}
    for url in urls:
        try:
            days = precip_file_days(url, src.product, offset, so)
        except InputError as exc:
            out.files.append(_entry(url, "precip", None, "failed", getattr(exc, "reason", str(exc)), type(exc).__name__))
            continue
        mine = [d for d in days if d in on_axis]
        if not mine:
            first = days[0] if days else None
            out.files.append(_entry(url, "precip", first, "skipped",
                                    f"no day on the cube's precipitation axis ({axis[0]}..{axis[-1]})"))
            continue
        for d in mine:
            by_day.setdefault(d, []).append(url)
    older: dict[dt.date, tuple[str, ...]] = {}
    if src.product in ("imerg", "chirps"):  # one file per day: the preferred one; the others if it fails
        for d, us in by_day.items():
            ranked = sorted(us, key=_precip_rank, reverse=True)
            by_day[d], older[d] = ranked[:1], tuple(ranked[1:])
    groups = [(axis.index(d), Group(d, tuple(sorted(by_day[d])), ((by_day[d][0], older[d]),) if older.get(d) else ()))
              for d in sorted(by_day)]
    out.tasks += _chunk_tasks("precip", PRECIP_DIM, int(cube["precip"].encoding["chunks"][0]), len(axis), groups)
    day = "UTC" if src.product == "imerg" else (f"UTC{offset:+03d}:00 (hourly files)" if src.product == "era5land"
                                                 else "CHIRPS day as labelled")
    if src.product != "era5land" and src.utc_offset_hours not in (None, 0):
        log.warning("inputs.precip.utc_offset_hours applies to hourly ERA5-Land only: %s days are %s", src.product, day)
    out.sources["precip"] = {**out.sources["precip"], "product": src.product,
                             "day": day, "utc_offset_hours": offset if src.product == "era5land" else None,
                             "remap": src.remap,
                             "axis": [axis[0].isoformat(), axis[-1].isoformat()],
                             "days_without_file": [d.isoformat() for d in axis if d not in by_day]}


# -- fetching on the worker -------------------------------------------------------------
def is_local(url: str) -> bool:
    """Whether ``url`` is a plain path (or ``file://``) rather than a remote fsspec URL."""
    return "://" not in url or url.startswith("file://")


@contextlib.contextmanager
def local_copies(urls: Sequence[str], storage_options: Mapping[str, Any]) -> Iterator[tuple[dict[str, str], list[FileReport]]]:
    """Local paths of ``urls``: remote files are downloaded to a temporary folder (removed on exit).

    Yields
    ------
    (dict, list)
        ``{url: local path}`` of the files that could be had, and a ``failed`` report for
        the others. The local copy keeps the file's name (readers take dates from names).
    """
    paths: dict[str, str] = {}
    failed: list[FileReport] = []
    with tempfile.TemporaryDirectory(prefix="dsm-ingest-") as tmp:
        for i, url in enumerate(urls):
            if is_local(url):
                paths[url] = url.removeprefix("file://")
                continue
            target = os.path.join(tmp, str(i), posixpath.basename(url))
            os.makedirs(os.path.dirname(target))
            try:
                fs, path = fsspec.core.url_to_fs(url, **dict(storage_options))
                fs.get_file(path, target)
            except FileNotFoundError:
                failed.append(FileReport(url, "failed", "file does not exist", "UnreadableFileError"))
            except Exception as exc:  # noqa: BLE001 - s3fs/botocore/aiohttp raise many kinds
                failed.append(FileReport(url, "failed", f"download failed ({type(exc).__name__}: {exc})", "TransientIOError"))
            else:
                paths[url] = target
        yield paths, failed


# -- reading one group ------------------------------------------------------------------
@dataclass
class GroupResult:
    """New 2-D arrays of one group (None when nothing usable) and its per-file report."""

    arrays: dict[str, np.ndarray] | None
    files: list[FileReport]

    @property
    def status(self) -> str:
        """``complete``, ``partial``, ``failed`` or ``empty`` (module docstring)."""
        failed = any(f.status == "failed" for f in self.files)
        if not self.arrays:
            return "failed" if failed else "empty"
        return "partial" if failed else "complete"


def _modis_qc(src: Any) -> dict[str, tuple[QCRule, ...]] | None:
    qc = getattr(src, "qc", None)
    return None if qc is None else {k: tuple(QCRule(s, n, tuple(a)) for s, n, a in v) for k, v in qc.items()}


def _tile_for_region(path: str, region: Region, product: str, qc: Any) -> xr.Dataset:
    ds, _ = read_modis_tile(path, product, qc=qc)
    if crop_to_region(tile_raster(ds, next(iter(ds.data_vars))), region, margin=1) is None:
        raise NoOverlapError(path, f"tile {ds.attrs['tile']} does not cover region {region.to_dict()}")
    return ds


def read_group(source: str, paths: Sequence[str], cfg: Config, region: Region, kinds: Mapping[str, str] | None = None
               ) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
    """Read, mosaic and warp the local files of one group onto the region (``kinds``: the band
    of each file of a ``reflectance`` group).

    Returns
    -------
    (dict or None, ManyResult)
        Cube variable -> 2-D float32 array (1 km, or 36 km for ``smap_sm``), None when no
        file was usable; and the per-file report (paths as given).
    """
    inputs = cfg.inputs
    assert inputs is not None
    if source == "smap":
        smap = inputs.smap
        assert smap is not None
        many = read_many(paths, read_spl3smp, region=region, overpass=smap.overpass, qc_mask=smap.qc_mask)
        if not many.results:
            return None, many
        return {"smap_sm": next(iter(many.results.values()))[0].values}, many
    if source.startswith("geotiff:"):
        var = source.split(":", 1)[1]
        src = inputs.geotiff[var]
        da, many = geotiff_series_to_region(paths, region, var, date_regex=src.date_regex or DEFAULT_DATE_REGEX,
                                            resampling=src.resampling, band=src.band,
                                            rule=ValueRule.of(src, f"inputs.geotiff.{var}"))  # fmt: skip
        return ({var: da.values[0]} if da.sizes["time"] else None), many
    if source == "reflectance":
        bands = inputs.reflectance
        assert bands is not None and kinds is not None
        qc = None if bands.qc is None else tuple(QCRule(s, n, tuple(a)) for s, n, a in bands.qc)
        return reflectance_indices(kinds, region, ValueRule.of(bands, "inputs.reflectance"), qc)
    product, _, names = MODIS_SOURCES[source]
    src = getattr(inputs, source)
    many = read_many(paths, _tile_for_region, region=region, product=product, qc=_modis_qc(src))
    if not many.results:
        return None, many
    tiles = list(many.results.values())
    spec = PRODUCTS[product]
    warped = {
        str(v): warp_many_to_region([tile_raster(t, str(v)) for t in tiles], region, spec.outputs[str(v)].resampling)
        for v in tiles[0].data_vars
    }
    if source == "mcd43":
        kind = src.albedo
        if kind == "mean":
            with np.errstate(invalid="ignore"):
                return {"albedo": ((warped["albedo_wsa"] + warped["albedo_bsa"]) / 2).astype(np.float32)}, many
        return {"albedo": warped[f"albedo_{kind}"]}, many
    return {names[k]: a for k, a in warped.items()}, many


# -- one task on a worker ---------------------------------------------------------------
def run_task(task: Task, cfg: Config) -> dict[str, Any]:
    """Run one ingest task (on a worker): read its groups and write its block.

    Returns
    -------
    dict
        ``files`` (report entries), ``groups`` (what each group did), ``provenance``
        (variable -> date -> files used) and ``wrote`` (variable -> [start, stop] or
        ``"static"``), all JSON-ready.
    """
    t0 = time.perf_counter()
    url, so = cfg.stores.cube, cfg.stores.storage_options
    cube = store.open_store(url, "cube", so)
    region = cfg.grid_region
    if task.source == "static":
        result = _run_static(task, cfg, cube, region)
    elif task.source == "precip":
        result = _run_precip(task, cfg, cube, region)
    else:
        result = _run_dated(task, cfg, cube, region)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def _source_options(cfg: Config, source: str) -> dict[str, Any]:
    inputs = cfg.inputs
    assert inputs is not None
    if source.startswith("geotiff:"):
        return _options(inputs, inputs.geotiff[source.split(":", 1)[1]])
    return _options(inputs, getattr(inputs, source))


def _report(files: Sequence[FileReport], back: Mapping[str, str], source: str, date: dt.date | None) -> list[dict[str, Any]]:
    return [_entry(back.get(f.path, f.path), source, date, f.status, f.reason, f.error) for f in files]


def _run_dated(task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
    assert task.dim is not None
    so = _source_options(cfg, task.source)
    results: dict[int, GroupResult] = {}
    files: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    index = cube.indexes[task.dim]
    fallbacks: list[dict[str, Any]] = []
    for g in task.groups:

        def read(urls: list[str], g: Group = g) -> tuple[dict[str, np.ndarray] | None, list[FileReport]]:
            with local_copies(urls, so) as (local, fetch_failed):
                back = {v: k for k, v in local.items()}
                kinds = {local[u]: k for u, k in zip(g.urls, g.kinds) if u in local}
                arrays, many = read_group(task.source, [local[u] for u in urls if u in local], cfg, region, kinds)
                return arrays, [*fetch_failed, *[FileReport(back.get(r.path, r.path), r.status, r.reason, r.error)
                                                 for r in many.report]]

        older = dict(g.older)
        res = read_newest_intact([(u, *older.get(u, ())) for u in g.urls], read)
        gr = GroupResult(res.arrays, res.final)  # replaced and superseded files do not make a group partial
        i = int(index.get_loc(np.datetime64(g.date, "ns")))
        results[i] = gr
        files += _report([*res.final, *res.others], {}, task.source, g.date)
        fallbacks += [{"source": task.source, "date": g.date.isoformat(), **f} for f in res.fallbacks]
        groups.append({"source": task.source, "date": g.date.isoformat(), "status": gr.status,
                       "variables": sorted(gr.arrays or ()), "files": [r.path for r in res.final if r.status == "used"]})  # fmt: skip
    variables = sorted({v for r in results.values() for v in (r.arrays or {})})
    wrote, masked = _merge_and_write(cfg, cube, task.dim, task.start, task.stop, variables, results)
    prov = {v: {g["date"]: g["files"] for g in groups if v in g["variables"]} for v in variables}
    return {"task": task.key, "files": files, "groups": groups, "provenance": prov, "wrote": wrote,
            "out_of_range": masked, "fallbacks": fallbacks}


def _precip_part(path: str, product: str, region: Region, days: Sequence[dt.date]) -> xr.DataArray:
    """One precipitation file read around the region and checked to cover it (a ``read_many`` reader)."""
    bbox = region.lonlat_bounds
    if product == "imerg":
        da = read_imerg(path, bbox=bbox)
    elif product == "chirps":
        da = read_chirps(path, bbox=bbox, days=days)
    else:
        da = read_era5land_file(path, bbox=bbox)
    check_covers(da, region, path)
    return da


def read_precip_group(product: str, paths: Sequence[str], region: Region, days: Sequence[dt.date],
                      utc_offset_hours: int) -> tuple[list[xr.DataArray], ManyResult]:
    """Daily ``precip`` fields (time, lat, lon) of the local files of one task, and the file report.

    ERA5-Land hourly files are combined before summing local days (a day may need two files);
    an error found only then (grids that differ, values not accumulated since 00 UTC) fails
    every hourly file of the task.
    """
    many = read_many(paths, _precip_part, product=product, region=region, days=days)
    parts = list(many.results.values())
    if product == "era5land":
        hourly = [p for p in parts if p.attrs["kind"] == "hourly"]
        parts = [p.rename("precip") for p in parts if p.attrs["kind"] == "daily"]
        if hourly:
            try:
                parts.append(hourly_to_local_days(hourly, utc_offset_hours, days))
            except InputError as exc:
                bad = {p for p, v in many.results.items() if v.attrs["kind"] == "hourly"}
                reason = getattr(exc, "reason", str(exc))
                many.report = [FileReport(r.path, "failed", reason, type(exc).__name__) if r.path in bad else r
                               for r in many.report]
                for p in bad:
                    many.results.pop(p)
    want = set(days)
    return [p.isel(time=[t.date() in want for t in p.indexes["time"]]) for p in parts], many


def _run_precip(task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
    """Read, check and remap one time chunk of precipitation days; write it (one writer per chunk)."""
    inputs = cfg.inputs
    assert inputs is not None and inputs.precip is not None
    src = inputs.precip
    urls = sorted({u for g in task.groups for u in g.urls})
    days = [g.date for g in task.groups if g.date is not None]
    with local_copies(urls, _options(inputs, src)) as (local, fetch_failed):
        back = {v: k for k, v in local.items()}
        fields, many = read_precip_group(src.product, [local[u] for u in urls if u in local], region, days,
                                        precip_utc_offset(cfg))
        reports = {r.path: r for r in fetch_failed}
        reports.update({back.get(r.path, r.path): FileReport(back.get(r.path, r.path), r.status, r.reason, r.error)
                        for r in many.report})
    fine: dict[dt.date, np.ndarray] = {}
    for part in fields:  # in file order: a day given twice is taken from the later file
        if part.sizes["time"]:
            remapped = remap_to_region(part, region, src.remap)
            fine.update({t.date(): a for t, a in zip(part.indexes["time"], remapped) if np.isfinite(a).any()})
    final = {g.date: [reports[u] for u in g.urls] for g in task.groups}
    fallbacks = _precip_fallbacks(task, cfg, region, reports, final, fine)
    index = cube.indexes[PRECIP_DIM]
    results: dict[int, GroupResult] = {}
    groups: list[dict[str, Any]] = []
    for g in task.groups:
        assert g.date is not None
        gr = GroupResult({"precip": fine[g.date]} if g.date in fine else None, final[g.date])
        results[int(index.get_loc(np.datetime64(g.date, "ns")))] = gr
        groups.append({"source": "precip", "date": g.date.isoformat(), "status": gr.status,
                       "variables": sorted(gr.arrays or ()),
                       "files": [r.path for r in final[g.date] if r.status == "used"]})
    day_of: dict[str, dt.date | None] = {}
    for g in task.groups:
        for u in (*g.urls, *(a for _, alts in g.older for a in alts)):
            day_of.setdefault(u, g.date)
    files = [_entry(u, "precip", day_of[u], r.status, r.reason, r.error) for u, r in sorted(reports.items())]
    wrote, masked = _merge_and_write(cfg, cube, PRECIP_DIM, task.start, task.stop, ["precip"] if fine else [], results)
    prov = {"precip": {g["date"]: g["files"] for g in groups if g["variables"]}} if fine else {}
    return {"task": task.key, "files": files, "groups": groups, "provenance": prov, "wrote": wrote,
            "out_of_range": masked, "fallbacks": fallbacks}


def _precip_fallbacks(task: Task, cfg: Config, region: Region, reports: dict[str, FileReport],
                      final: dict[Any, list[FileReport]], fine: dict[dt.date, np.ndarray]) -> list[dict[str, Any]]:
    """Days whose preferred file failed: the next file of the day (:mod:`dsm.ingest.duplicates`);
    the others are superseded. Updates ``reports``, ``final`` and ``fine`` in place."""
    inputs = cfg.inputs
    assert inputs is not None and inputs.precip is not None
    src = inputs.precip
    out: list[dict[str, Any]] = []
    for g in task.groups:
        first, alts = g.urls[0], dict(g.older).get(g.urls[0], ())
        if not alts or g.date is None:
            continue
        if reports[first].status != "failed":
            reports.update({u: FileReport(u, "skipped", f"superseded by {posixpath.basename(first)}") for u in alts})
            continue

        def read(urls: list[str], day: dt.date = g.date) -> tuple[np.ndarray | None, list[FileReport]]:
            with local_copies(urls, _options(inputs, src)) as (local, fetch_failed):
                back = {v: k for k, v in local.items()}
                parts, many = read_precip_group(src.product, [local[u] for u in urls if u in local], region, [day],
                                                precip_utc_offset(cfg))
                got = [remap_to_region(p, region, src.remap)[0] for p in parts if p.sizes["time"]]
                back_reports = [FileReport(back.get(r.path, r.path), r.status, r.reason, r.error) for r in many.report]
                return (got[-1] if got and np.isfinite(got[-1]).any() else None), [*fetch_failed, *back_reports]

        res = read_newest_intact([(first, *alts)], read)
        reports.update({r.path: r for r in (*res.final, *res.others)})
        final[g.date] = res.final
        if res.arrays is not None:
            fine[g.date] = res.arrays
        out += [{"source": "precip", "date": g.date.isoformat(), **f} for f in res.fallbacks]
    return out


def _merge_and_write(cfg: Config, cube: xr.Dataset, dim: str, start: int, stop: int, variables: Sequence[str],
                     results: Mapping[int, GroupResult]
                     ) -> tuple[dict[str, list[int]], dict[str, dict[str, int]]]:  # fmt: skip
    """Read the stored block, merge the groups' arrays (values outside their valid range masked)
    and write it back if it changed; returns what was written and ``{variable: {date: masked}}``."""
    if not variables:
        return {}, {}
    old = cube[list(variables)].isel({dim: slice(start, stop)}).load()
    part = xr.Dataset(coords={d: old[d].values for d in old.dims})
    wrote: dict[str, list[int]] = {}
    masked: dict[str, dict[str, int]] = {}
    dates = [str(t)[:10] for t in old[dim].values]
    for v in variables:
        block = old[v].values.astype(np.float32, copy=True)
        for i, r in results.items():
            if r.arrays and v in r.arrays:
                new, n = _screened(v, r.arrays[v])
                if n:
                    masked.setdefault(v, {})[dates[i - start]] = n
                _merge(block[i - start], new, r.status)
        if not np.array_equal(block, old[v].values, equal_nan=True):
            part[v] = (old[v].dims, block)
            wrote[v] = [start, stop]
    if part.data_vars:
        store.write_region(cfg.stores.cube, part, cfg.stores.storage_options, cube)
    return wrote, masked


def _run_static(task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
    """Read the DEM, soil and land mask files (:mod:`dsm.ingest.static`) and write the static layers."""
    inputs = cfg.inputs
    assert inputs is not None
    by_kind: dict[str, list[str]] = {}
    for g in task.groups:
        kind, _, url = g.urls[0].partition("=")
        by_kind.setdefault(kind, []).append(url)
    results: dict[str, GroupResult] = {}
    files: list[dict[str, Any]] = []
    if "dem" in by_kind:
        rule = ValueRule.of(inputs.dem, "inputs.dem")
        keep = [v for v in ("dem", "slope", "aspect") if v == "dem" or getattr(inputs, v) is None]
        results["dem"] = _static_group(by_kind["dem"], _options(inputs, inputs.dem),
                                       lambda p: read_dem_layers(p, region, rule, keep))
    for kind in ("slope", "aspect"):
        if kind in by_kind:
            src = getattr(inputs, kind)
            rule = ValueRule.of(src, f"inputs.{kind}")
            results[kind] = _static_group(by_kind[kind], _options(inputs, src),
                                          lambda p, k=kind, r=rule: terrain_layer(p, k, region, r))
    grids = inputs.soil.soilgrids if inputs.soil else None
    for f in FRACTIONS:
        if f in by_kind:
            reader = (lambda p, f=f: soilgrids_layer(p, f, region)) if grids else \
                (lambda p, f=f: read_soil_layer(p, f, region, soil_rule(inputs.soil)))
            results[f] = _static_group(by_kind[f], _options(inputs, inputs.soil), reader,
                                       fetch=not (grids and read_in_place(grids)))
    warnings = check_soil_sum(results)
    if "land_mask" in by_kind:
        rule = ValueRule.of(inputs.land_mask, "inputs.land_mask")
        results["land_mask"] = _static_group(by_kind["land_mask"], _options(inputs, inputs.land_mask),
                                             lambda p: read_mask_layer(p, region, rule))
    groups = []
    for kind, r in results.items():
        files += _report(r.files, {}, kind, None)
        groups.append({"source": kind, "date": None, "status": r.status, "variables": sorted(r.arrays or ()),
                       "files": [x.path for x in r.files if x.status == "used"]})  # fmt: skip
    soil = [f for f in FRACTIONS if inputs.soil.soilgrids or getattr(inputs.soil, f, None)] if inputs.soil else []
    out = write_static(cfg.stores.cube, cfg.stores.storage_options, cube, results, soil, inputs.dem is not None, warnings)
    prov = {v: {"static": g["files"]} for g in groups for v in g["variables"]}
    return {"task": task.key, "files": files, "groups": groups, "provenance": prov, **out}


def _static_group(urls: Sequence[str], so: Mapping[str, Any], reader: Any, fetch: bool = True) -> GroupResult:
    """Read one static input's files (remote ones copied first unless ``fetch`` is False: GDAL reads them)."""
    if not fetch:
        arrays, many = reader(list(urls))
        return GroupResult(arrays, list(many.report))
    with local_copies(urls, so) as (local, fetch_failed):
        back = {v: k for k, v in local.items()}
        arrays, many = reader([local[u] for u in urls if u in local])
        reports = [*fetch_failed, *[FileReport(back.get(r.path, r.path), r.status, r.reason, r.error) for r in many.report]]
    return GroupResult(arrays, reports)


# -- the whole ingest on the client -----------------------------------------------------
def report_url(cube_url: str) -> str:
    """Where the ingest report of a cube lives: beside it, ``<cube stem>.ingest_report.json``.

    Not inside the store: a report of thousands of files in the store's attributes would be
    read on every open, and the store's bytes would change with every run.
    """
    base = cube_url.rstrip("/")
    parent, name = posixpath.split(base) if "://" in base else os.path.split(base)
    stem = name[: -len(".zarr")] if name.endswith(".zarr") else name
    return f"{parent}/{stem}.ingest_report.json"


def ensure_cube(cfg: Config) -> xr.Dataset:
    """Open the configured cube, creating it first when missing; check it fits the config.

    Raises
    ------
    ConfigError
        The existing cube was made for another region or other dates.
    """
    url, so = cfg.stores.cube, cfg.stores.storage_options
    layout = Layout.from_config(cfg)
    if not store._exists(url, so):
        log.info("creating the cube %s", url)
        create_cube(url, layout, so)
    ds = open_cube(url, so)
    have = layout_of(ds)
    if (have.region, have.start, have.end) != (layout.region, layout.start, layout.end):
        raise ConfigError(
            f"the cube at {url} covers region {have.region.to_dict()} {have.start}..{have.end}, the configuration "
            f"{layout.region.to_dict()} {layout.start}..{layout.end}: use another stores.cube"
        )
    return ds


def run_ingest(cfg: Config, client: Any, progress: bool = True, report_path: str | None = None,
               lease: Lease | None = None) -> dict[str, Any]:
    """Ingest every configured input into the cube on ``client``'s cluster; write the report.

    Parameters
    ----------
    cfg
        Configuration with ``inputs``, ``stores.cube`` and the region, dates and chunks.
    client
        A :class:`distributed.Client`.
    progress
        Show a progress bar over the tasks.
    report_path
        Where to write the JSON report (default :func:`report_url` of the cube).
    lease
        The run's lease (:class:`dsm.runlock.Lease`): checked before the cube is created,
        as each task lands (a lost lease cancels the rest), before the antecedent indices
        and before the report is written.

    Returns
    -------
    dict
        The report (see :func:`summarize` for its ``summary``).
    """
    from tqdm.auto import tqdm

    check = lease.check if lease is not None else (lambda: None)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    check()
    cube = ensure_cube(cfg)
    p = plan(cfg, cube)
    log.info("ingest: %d tasks, %d files decided by name", len(p.tasks), len(p.files))
    run_id = uuid.uuid4().hex[:8]  # fresh keys: a rerun on the same client must not reuse results
    futures = client.map(run_task, p.tasks, cfg=cfg, key=[f"{t.key}-{run_id}" for t in p.tasks], retries=0)
    results, errors = [], []
    done = outcomes(dict(zip(futures, p.tasks)))
    for task, result, exc in tqdm(done, total=len(futures), desc="ingest", unit="task", disable=not progress):
        try:
            check()
        except LockLostError:
            client.cancel(futures)
            raise
        if exc is None:
            results.append(result)
            continue
        # a bug or a storage failure in one task: report it, go on with the others
        log.error("task %s failed: %r", task.key, exc)
        errors.append({"task": task.key, "error": f"{type(exc).__name__}: {exc}",
                       "files": [u for g in task.groups for u in g.urls],
                       "dates": [g.date.isoformat() for g in task.groups if g.date is not None]})  # fmt: skip
    check()
    _record_written(cfg, cube, results)
    report = _assemble(cfg, p, results, errors, started, time.perf_counter() - t0)
    check()
    if cfg.inputs is not None and cfg.inputs.precip is not None:
        report["antecedent"] = _antecedent(cfg, client, report)
        report["summary"] = summarize(report)
    path = report_path or report_url(cfg.stores.cube)
    report["provenance"] = _merge_provenance(_previous(path, cfg.stores.storage_options), report["provenance"])
    check()
    with fsspec.open(path, "w", **dict(cfg.stores.storage_options)) as f:
        json.dump(report, f, indent=1, sort_keys=False)
    report["report"] = path
    return report


def _record_written(cfg: Config, cube: xr.Dataset, results: Sequence[Mapping[str, Any]]) -> None:
    """Add the rows the tasks wrote to the cube's record (:data:`dsm.store.WRITTEN_ATTR`), so a
    chunk lost from them later is an error, not a gap."""
    wrote = [{v: [0, cube[v].shape[0]] if w == "static" else w for v, w in r.get("wrote", {}).items()} for r in results]
    if any(wrote):
        recorded = cube.attrs.get(store.WRITTEN_ATTR, {})
        store.set_attrs(cfg.stores.cube, {store.WRITTEN_ATTR: store.merge_written(recorded, *wrote)},
                        cfg.stores.storage_options)


def _antecedent(cfg: Config, client: Any, report: dict[str, Any]) -> dict[str, Any]:
    """After the precipitation writes: the antecedent indices (:func:`dsm.antecedent.write_antecedent`).

    Skipped when a precipitation task failed. A cube without precipitation (InputError) is
    reported; any other failure is recorded as a task error.
    """
    if any(e["task"].startswith("ingest-precip-") for e in report["task_errors"]):
        return {"skipped": "a precipitation task failed: the indices were not recomputed"}
    try:
        from dsm.antecedent import write_antecedent

        summary = write_antecedent(cfg.stores.cube, cfg.stores.storage_options, cfg.rain, client)
    except InputError as exc:  # no precipitation in the cube yet: say so, nothing is broken
        log.warning("antecedent indices not written: %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # noqa: BLE001 - reported like a failed task; the report is still written
        log.error("antecedent indices failed: %r", exc)
        report["task_errors"].append({"task": "antecedent", "error": f"{type(exc).__name__}: {exc}", "files": []})
        return {"error": f"{type(exc).__name__}: {exc}"}
    return summary.to_dict()


def _precip_report(p: Plan, groups: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Days of the precipitation axis with data this run, and the missing days (not filled).

    ``days_without_file``: no file gives the day; ``days_without_data``: its files failed, hold
    no value over the region (or not all 24 hours, ERA5-Land), or their task failed.
    """
    src = dict(p.sources["precip"])
    no_file = src.pop("days_without_file")
    no_data = sorted({*(g["date"] for g in groups if g["source"] == "precip" and g["status"] in ("failed", "empty")),
                      *(d for e in errors if e["task"].startswith("ingest-precip-") for d in e.get("dates", []))})
    return {**src, "days_with_data": sum(1 for g in groups if g["source"] == "precip" and g["variables"]),
            "missing_days": sorted({*no_file, *no_data}), "days_without_file": no_file, "days_without_data": no_data}


def _assemble(cfg: Config, p: Plan, results: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]],
              started: dt.datetime, seconds: float) -> dict[str, Any]:  # fmt: skip
    files, seen = [], set()
    for f in sorted([*p.files, *(f for r in results for f in r["files"])], key=lambda e: (e["source"], e["date"] or "", e["path"])):
        key = (f["source"], f["path"], f["status"], f["reason"]) if f["source"] == "precip" else id(f)
        if key not in seen:  # a precipitation file of many days is listed once per outcome
            seen.add(key)
            files.append(f)
    groups = sorted((g for r in results for g in r["groups"]), key=lambda g: (g["source"], g["date"] or ""))
    prov: dict[str, dict[str, list[str]]] = {}
    for r in results:
        for v, d in r["provenance"].items():
            prov.setdefault(v, {}).update(d)
    wrote: dict[str, int] = {}
    for r in results:
        for v in r["wrote"]:
            wrote[v] = wrote.get(v, 0) + 1
    masked: dict[str, dict[str, int]] = {}
    for r in results:
        for v, by_date in r.get("out_of_range", {}).items():
            entry = masked.setdefault(v, {})
            for d, n in by_date.items():
                entry[d] = entry.get(d, 0) + n
    static = next((r for r in results if "land_mask_source" in r), None)
    errors = [*errors, *input_errors(p.sources, files, errors)]
    report = {
        "cube": cfg.stores.cube,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "summary": {},
        "sources": p.sources,
        "files": files,
        "groups": groups,
        "blocks_written": wrote,
        # values outside their variable's valid range, masked before writing: variable -> date -> count
        "out_of_range": {v: dict(sorted(d.items())) for v, d in sorted(masked.items())},
        # failed tasks, and configured inputs that gave nothing ({"task": "input", "input": setting, ...})
        "task_errors": list(errors),
        # duplicates: a newer file that failed to read, and the older one used instead
        "fallbacks": sorted((f for r in results for f in r.get("fallbacks", [])), key=lambda f: (f["source"], f["date"])),
        "land_mask_source": static["land_mask_source"] if static else (
            "unknown (the static task failed)" if any(k in p.sources for k in STATIC_VARS)
            else "unchanged (no land_mask, dem or soil input)"),
        "warnings": [w for r in results for w in r.get("warnings", [])],
        "task_seconds": {r["task"]: r["seconds"] for r in results},
        "provenance": {v: dict(sorted(d.items())) for v, d in sorted(prov.items())},
    }
    if "precip" in p.sources:
        report["precip"] = _precip_report(p, groups, errors)
    report["summary"] = summarize(report)
    return report


def summarize(report: Mapping[str, Any]) -> dict[str, int]:
    """Counts of files per status, groups per status, blocks written, task errors (of which
    ``input_errors`` are inputs that gave nothing), duplicate fallbacks and values masked as
    out of range."""
    out: dict[str, int] = {s: 0 for s in ("used", "skipped", "failed")}
    for f in report["files"]:
        out[f["status"]] = out.get(f["status"], 0) + 1
    for g in report["groups"]:
        key = f"groups_{g['status']}"
        out[key] = out.get(key, 0) + 1
    out["blocks_written"] = sum(report["blocks_written"].values())
    out["task_errors"] = len(report["task_errors"])
    out["input_errors"] = sum(1 for e in report["task_errors"] if e["task"] == "input")
    out["fallbacks"] = len(report.get("fallbacks", []))
    out["out_of_range"] = sum(n for d in report.get("out_of_range", {}).values() for n in d.values())
    return out


def _previous(path: str, so: Mapping[str, Any]) -> dict[str, Any]:
    try:
        with fsspec.open(path, "r", **dict(so)) as f:
            return json.load(f).get("provenance", {})
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("ignoring the unreadable previous report %s: %s", path, exc)
        return {}


def _merge_provenance(old: Mapping[str, Mapping[str, list[str]]], new: Mapping[str, Mapping[str, list[str]]]) -> dict[str, Any]:
    """Provenance over runs: a date written in this run replaces that date's earlier entry."""
    out = {v: dict(d) for v, d in old.items()}
    for v, d in new.items():
        out.setdefault(v, {}).update(d)
    return {v: dict(sorted(d.items())) for v, d in sorted(out.items())}


def format_report(report: Mapping[str, Any], max_lines: int = 40) -> list[str]:
    """Human-readable lines: the summary, then every failed and skipped file with its reason."""
    s = report["summary"]
    lines = [
        f"files: {s['used']} used, {s['skipped']} skipped, {s['failed']} failed; "
        + ", ".join(f"{k.removeprefix('groups_')} {v}" for k, v in s.items() if k.startswith("groups_"))
        + f" groups; {s['blocks_written']} blocks written; {s['task_errors']} task errors; {report['seconds']} s",
    ]
    bad = [f for f in report["files"] if f["status"] != "used"]
    for f in bad[:max_lines]:
        lines.append(f"  {f['status']:<7} {f['source']:<9} {f['date'] or '-':<10} {f['path']}: {f['reason']}")
    if len(bad) > max_lines:
        lines.append(f"  ... {len(bad) - max_lines} more in the JSON report")
    for e in report["task_errors"]:
        lines.append(f"  ERROR   {e['error']}" if e["task"] == "input" else f"  ERROR   task {e['task']}: {e['error']}")
    for f in report.get("fallbacks", []):
        lines.append(f"  fallback {f['source']} {f['date']}: {posixpath.basename(f['failed'])} failed "
                     f"({f['reason']}); used the older {posixpath.basename(f['used'])}")
    if "land_mask_source" in report:
        lines.append(f"land mask: {report['land_mask_source']}")
    for w in report.get("warnings", []):
        lines.append(f"  WARNING {w}")
    if report.get("out_of_range"):
        per_var = {v: sum(d.values()) for v, d in report["out_of_range"].items()}
        lines.append("values outside their valid range, masked (not written): "
                     + ", ".join(f"{v} {n} ({len(report['out_of_range'][v])} dates)" for v, n in per_var.items()))
    if "precip" in report:
        pr = report["precip"]
        miss = pr["missing_days"]
        shown = ", ".join(miss[:8]) + (f" ... ({len(miss) - 8} more)" if len(miss) > 8 else "")
        lines.append(f"precip ({pr['product']}, day {pr['day']}): {pr['days_with_data']} days with data this run, "
                     f"{len(miss)} missing{': ' + shown if miss else ''}")
    if "antecedent" in report:
        a = report["antecedent"]
        lines.append("antecedent indices: " + (a.get("error") or a.get("skipped") or
                                               f"{a['days']} days written, {a['missing_precip_days']} days without rain data"))
    return lines
