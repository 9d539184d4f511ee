"""The ingest's plan, made on the client: what each task reads and which chunks it owns.

Every configured file, glob and folder is expanded (:mod:`dsm.ingest.inputs`) and every file
dated, from its name or, for a renamed SMAP granule, its content; a file whose date is not on
the cube's axis is skipped, duplicate granules are ordered newest first
(:mod:`dsm.ingest.duplicates`) and the groups of one source are cut by time chunk into
:class:`Task` s (one writer per chunk). Precipitation files are dated here too, on the cube's
``time_precip`` axis. The steps of the ingest and the write rule: :mod:`dsm.ingest.pipeline`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr

from dsm.config import Config, InputsConfig, InputSource
from dsm.cube import SPECS, Layout
from dsm.errors import ConfigError, InputError
from dsm.files import expand_each
from dsm.ingest import stac_inputs
from dsm.ingest.base import (
    DEFAULT_DATE_REGEX,
    IngestInputError,
    InputDateError,
    UnreadableFileError,
    date_from_name,
)
from dsm.ingest.duplicates import newest_first
from dsm.ingest.inputs import folder_patterns, source_entry
from dsm.ingest.precip import imerg_date, local_utc_offset, netcdf_times
from dsm.ingest.reflectance import DATE_REGEX as REFLECTANCE_DATES
from dsm.ingest.reflectance import match_band_dates
from dsm.ingest.smap import granule_date, product_of
from dsm.ingest.soil import FRACTIONS
from dsm.ingest.soilgrids import SETTING as SOILGRIDS_SETTING
from dsm.ingest.soilgrids import file_patterns as soilgrids_patterns
from dsm.ingest.soilgrids import soilgrids_files

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
SMAP_DATE = r"SMAP_L3_SM_P_(?:E_)?(?P<date>\d{8})_"  # SPL3SMP and SPL3SMP_E granule names
_TILE = re.compile(r"\.(h\d{2}v\d{2})\.")


# -- plan -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """All files of one source on one date (``date`` None for the static inputs); ``older``:
    the older duplicates of a file, newest first (read when it fails); ``kinds``: what each
    file of ``urls`` is, where a source has several kinds (the bands of ``reflectance``);
    ``items``: the STAC items of a ``stac:<variable>`` source (:mod:`dsm.ingest.stac_inputs`)."""

    date: dt.date | None
    urls: tuple[str, ...]
    older: tuple[tuple[str, tuple[str, ...]], ...] = ()
    kinds: tuple[str, ...] = ()
    items: tuple[str, ...] = ()  #: ``stac:`` sources: the STAC items (JSON) whose assets ``urls`` are


@dataclass(frozen=True)
class Task:
    """The unit of work: one source's groups inside one chunk ``[start, stop)`` of ``dim``."""

    source: str  #: ``smap``, a key of :data:`MODIS_SOURCES`, ``geotiff:VAR``, ``stac:VAR``, ``reflectance``, ``precip`` or ``static``
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
                date, exc = _date_from_content(key, url, src, _options(inputs, src), exc,
                                               product_of(cfg.grid_region).short_name)
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
    if inputs.stac is not None:
        _plan_stac(cfg, cube, out, indexes)
    if inputs.precip is not None:
        _plan_precip(cfg, cube, out)
    static = _static_urls(inputs, out)
    if static:
        out.tasks.append(Task("static", None, 0, 0, tuple(Group(None, (f"{k}={u}",)) for k, u in static)))
    return out


def _date_from_content(key: str, url: str, src: InputSource, so: Mapping[str, Any], exc: IngestInputError,
                       smap_product: str) -> tuple[dt.date | None, IngestInputError]:
    """The date of a file whose name has none, from its own content where the format has one
    (SMAP, of product ``smap_product``: metadata, granule names in its attributes, acquisition
    times; only the metadata of a remote file is read); ``(None, error)`` when it cannot be had."""
    if key != "smap":
        return None, exc
    try:
        with fsspec.open(url, "rb", **so) as f:
            return granule_date(url, f, overpass=getattr(src, "overpass", "AM"), product=smap_product), exc
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


def _plan_stac(cfg: Config, cube: xr.Dataset, out: Plan, indexes: Mapping[str, Any]) -> None:
    """Tasks of ``inputs.stac``: the catalog searched once (:func:`dsm.ingest.stac_inputs.search_items`),
    its items grouped by variable and day, cut by time chunk; items without the asset are failed,
    items off the cube's axis skipped, each named."""
    inputs = cfg.inputs
    assert inputs is not None and inputs.stac is not None
    src = inputs.stac
    kind, items = stac_inputs.search_items(src, _options(inputs, src), cfg.grid_region,
                                           *stac_inputs.search_span(indexes))
    for var, a in src.assets.items():
        key, dim = f"{stac_inputs.PREFIX}{var}", TIME_DIM[SPECS[var].axis]
        mine = [it for it in items if a.collection is None or it.collection_id == a.collection]
        what = f"{src.catalog} ({kind}; collection {a.collection or ', '.join(src.collections) or 'any'}, " \
               f"asset {a.asset!r})"
        out.sources[key] = {"setting": stac_inputs.setting_of(var), "patterns": [what], "folder_patterns": [],
                            "matched": len(mine), "unmatched": [] if mine else [what]}
        if not mine:
            log.warning("%s: no item of %s over the region and dates", stac_inputs.setting_of(var), what)
        by_date: dict[dt.date, list[Any]] = {}
        for it in mine:
            date, name = stac_inputs.item_date(it), stac_inputs.item_name(it)
            why = stac_inputs.missing_assets(it, a)
            if date is None or why is not None:
                out.files.append(_entry(name, key, date, "failed", why or f"STAC item {it.id} has no datetime",
                                        "MissingVariableError" if why else "InputDateError"))
            elif _axis_index(indexes, dim, date) is None:
                out.files.append(_entry(it.assets[a.asset].href, key, date, "skipped", _off_axis(dim, date)))
            else:
                by_date.setdefault(date, []).append(it)
        groups: list[tuple[int, Group]] = []
        for date in sorted(by_date):
            i = _axis_index(indexes, dim, date)
            assert i is not None
            day = sorted(by_date[date], key=lambda it, a=a: it.assets[a.asset].href)
            groups.append((i, Group(date, tuple(it.assets[a.asset].href for it in day),
                                    items=tuple(stac_inputs.encode(it) for it in day))))
        out.tasks += _chunk_tasks(key, dim, int(cube[var].encoding["chunks"][0]), cube.sizes[dim], groups)


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
