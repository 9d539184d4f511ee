"""The precipitation source (``inputs.precip``): IMERG, CHIRPS or ERA5-Land days on ``time_precip``.

On the client every file is dated (IMERG, CHIRPS GeoTIFF: the name; netCDF: its time
coordinate, read cheaply; :func:`precip_file_days`) on the cube's precipitation axis, which
starts ``rain.spinup_days`` before the first day (:func:`check_precip_cube`); of several files
of one day (IMERG Final, Late, Early) the preferred one is read and the next one when it fails.
On a worker a task reads one time chunk of days (:func:`read_precip_group`: hourly ERA5-Land
summed to local days, :func:`precip_utc_offset`), remaps them onto the region and writes its
block (:mod:`dsm.ingest.write`).
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr

from dsm.config import Config, InputsConfig
from dsm.cube import Layout
from dsm.errors import ConfigError, InputError
from dsm.files import FileReport
from dsm.grid import Region
from dsm.ingest.base import InputDateError, ManyResult, UnreadableFileError, date_from_name, read_many
from dsm.ingest.duplicates import read_newest_intact
from dsm.ingest.inputs import folder_patterns
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
from dsm.ingest.source import Reads, Source, in_place
from dsm.ingest.work import (
    Group,
    GroupResult,
    Plan,
    Task,
    chunk_tasks,
    entry,
    expand_source,
    options,
    time_chunk,
)
from dsm.ingest.write import group_entry, task_result
from dsm.inplace import input_files
from dsm.periods import time_position

log = logging.getLogger(__name__)

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


class PrecipSource:
    """``inputs.precip`` (module docstring)."""

    name, variables, axis, setting = "precip", ("precip",), "precip", "inputs.precip"
    settings: tuple[str, ...] = ("inputs.precip", "rain")
    reads: Reads = "copy"

    def __init__(self, inputs: InputsConfig) -> None:
        assert inputs.precip is not None
        self.src = inputs.precip
        self.storage_options = options(inputs, inputs.precip)
        self.folder_patterns = folder_patterns(self.src.product)

    @classmethod
    def configured(cls, inputs: InputsConfig) -> list[Source]:
        """The source of ``inputs.precip``, if given."""
        return [cls(inputs)] if inputs.precip is not None else []

    # -- on the client ------------------------------------------------------------------
    def plan(self, cfg: Config, cube: xr.Dataset, out: Plan) -> None:
        """One task per time chunk of the cube's precipitation axis."""
        src, so = self.src, self.storage_options
        check_precip_cube(cfg, cube)
        urls = expand_source(out, self.name, self.setting, src.paths, so, self.folder_patterns)
        offset = precip_utc_offset(cfg)
        axis = [t.date() for t in cube.indexes[PRECIP_DIM]]
        by_day = self._days(urls, axis, offset, out)
        older: dict[dt.date, tuple[str, ...]] = {}
        if src.product in ("imerg", "chirps"):  # one file per day: the preferred one; the others if it fails
            for d, us in by_day.items():
                ranked = sorted(us, key=_precip_rank, reverse=True)
                by_day[d], older[d] = ranked[:1], tuple(ranked[1:])
        groups = [(axis.index(d), Group(d, tuple(sorted(by_day[d])),
                                        ((by_day[d][0], older[d]),) if older.get(d) else ()))
                  for d in sorted(by_day)]  # fmt: skip
        out.tasks += chunk_tasks(self.name, PRECIP_DIM, time_chunk(cube, "precip"), len(axis), groups)
        day = "UTC" if src.product == "imerg" else (f"UTC{offset:+03d}:00 (hourly files)" if src.product == "era5land"
                                                     else "CHIRPS day as labelled")
        if src.product != "era5land" and src.utc_offset_hours not in (None, 0):
            log.warning("inputs.precip.utc_offset_hours applies to hourly ERA5-Land only: %s days are %s",
                        src.product, day)
        out.sources[self.name] = {**out.sources[self.name], "product": src.product,
                                  "day": day, "utc_offset_hours": offset if src.product == "era5land" else None,
                                  "remap": src.remap,
                                  "axis": [axis[0].isoformat(), axis[-1].isoformat()],
                                  "days_without_file": [d.isoformat() for d in axis if d not in by_day]}

    def _days(self, urls: Sequence[str], axis: Sequence[dt.date], offset: int, out: Plan
              ) -> dict[dt.date, list[str]]:
        """Day of the axis -> its files; files that cannot be dated failed, those of no day of the axis skipped."""
        on_axis = set(axis)
        by_day: dict[dt.date, list[str]] = {}
        for url in urls:
            try:
                days = precip_file_days(url, self.src.product, offset, self.storage_options)
            except InputError as exc:
                out.files.append(entry(url, self.name, None, "failed", getattr(exc, "reason", str(exc)),
                                       type(exc).__name__))
                continue
            mine = [d for d in days if d in on_axis]
            if not mine:
                first = days[0] if days else None
                out.files.append(entry(url, self.name, first, "skipped",
                                       f"no day on the cube's precipitation axis ({axis[0]}..{axis[-1]})"))
                continue
            for d in mine:
                by_day.setdefault(d, []).append(url)
        return by_day

    # -- on a worker --------------------------------------------------------------------
    def run(self, task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
        """Read, check and remap one time chunk of precipitation days; write it (one writer per chunk)."""
        src = self.src
        urls = sorted({u for g in task.groups for u in g.urls})
        days = [g.date for g in task.groups if g.date is not None]
        with input_files(urls, self.storage_options, in_place(cfg, self.reads)) as got:
            fields, many = read_precip_group(src.product, [got.paths[u] for u in urls if u in got.paths], region, days,
                                             precip_utc_offset(cfg))
            reports = {r.path: r for r in got.reports(many.report)}
        fine: dict[dt.date, np.ndarray] = {}
        for part in fields:  # in file order: a day given twice is taken from the later file
            if part.sizes["time"]:
                remapped = remap_to_region(part, region, src.remap)
                fine.update({t.date(): a for t, a in zip(part.indexes["time"], remapped, strict=True)
                             if np.isfinite(a).any()})
        final: dict[dt.date, list[FileReport]] = {g.date: [reports[u] for u in g.urls]
                                                  for g in task.groups if g.date is not None}
        fallbacks = self._fallbacks(task, cfg, region, reports, final, fine)
        index = cube.indexes[PRECIP_DIM]
        results: dict[int, GroupResult] = {}
        groups: list[dict[str, Any]] = []
        for g in task.groups:
            assert g.date is not None
            gr = GroupResult({"precip": fine[g.date]} if g.date in fine else None, final[g.date])
            results[time_position(index, g.date)] = gr
            groups.append(group_entry(self.name, g.date.isoformat(), gr, final[g.date]))
        day_of: dict[str, dt.date | None] = {}
        for g in task.groups:
            for u in (*g.urls, *(a for _, alts in g.older for a in alts)):
                day_of.setdefault(u, g.date)
        files = [entry(u, self.name, day_of[u], r.status, r.reason, r.error) for u, r in sorted(reports.items())]
        return task_result(task, cfg, cube, results, files, groups, fallbacks)

    def _fallbacks(self, task: Task, cfg: Config, region: Region, reports: dict[str, FileReport],
                   final: dict[dt.date, list[FileReport]], fine: dict[dt.date, np.ndarray]) -> list[dict[str, Any]]:
        """Days whose preferred file failed: the next file of the day (:mod:`dsm.ingest.duplicates`);
        the others are superseded. Updates ``reports``, ``final`` and ``fine`` in place."""
        src, how = self.src, in_place(cfg, self.reads)
        out: list[dict[str, Any]] = []
        for g in task.groups:
            first, alts = g.urls[0], dict(g.older).get(g.urls[0], ())
            if not alts or g.date is None:
                continue
            if reports[first].status != "failed":
                reports.update({u: FileReport(u, "skipped", f"superseded by {posixpath.basename(first)}") for u in alts})
                continue

            def read(urls: list[str], day: dt.date = g.date) -> tuple[np.ndarray | None, list[FileReport]]:
                with input_files(urls, self.storage_options, how) as files:
                    parts, many = read_precip_group(src.product, [files.paths[u] for u in urls if u in files.paths],
                                                    region, [day], precip_utc_offset(cfg))
                    got = [remap_to_region(p, region, src.remap)[0] for p in parts if p.sizes["time"]]
                    return (got[-1] if got and np.isfinite(got[-1]).any() else None), files.reports(many.report)

            res = read_newest_intact([(first, *alts)], read)
            reports.update({r.path: r for r in (*res.final, *res.others)})
            final[g.date] = res.final
            if res.arrays is not None:
                fine[g.date] = res.arrays
            out += [{"source": self.name, "date": g.date.isoformat(), **f} for f in res.fallbacks]
        return out
