"""What an input product is to the ingest: the :class:`Source` protocol, and the files dated by name.

Every configured input is one :class:`Source` object (the table of them:
:func:`dsm.ingest.sources.configured_sources`). A source knows its name (the tasks' and the
report's), the cube variables it writes, its time axis, the file-name patterns a folder is
searched for, the settings its values depend on, how its remote files are read
(:data:`Reads`), how it cuts its files into tasks on the client (:meth:`Source.plan`) and how
one task is read and written on a worker (:meth:`Source.run`).

:class:`DatedSource` is the family whose files carry their date in their name (SMAP granules,
MODIS tiles, GeoTIFF series, reflectance bands): a subclass gives its date regex and
:meth:`DatedSource.read`, and inherits the plan (files dated, off-axis ones skipped,
duplicates ordered newest first, groups cut by time chunk) and the run (the newest intact
duplicate read, :mod:`dsm.ingest.duplicates`; the block merged and written once,
:mod:`dsm.ingest.write`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import xarray as xr

from dsm.config import Config
from dsm.files import FileReport
from dsm.grid import Region
from dsm.ingest.base import IngestInputError, InputDateError, date_from_name
from dsm.ingest.duplicates import newest_first, read_newest_intact
from dsm.ingest.work import (
    TIME_DIM,
    Group,
    GroupResult,
    Plan,
    Task,
    axis_index,
    chunk_tasks,
    entry,
    expand_source,
    off_axis,
    options,
    report,
    time_chunk,
    time_indexes,
)
from dsm.ingest.write import group_entry, task_result
from dsm.inplace import InPlace, input_files
from dsm.periods import time_position

#: How a source's remote files are read under ``inputs.read: auto``: ``h5py`` in place (SMAP
#: HDF5), ``gdal`` in place but for SRTM ``.hgt`` tiles and VRTs, ``copy`` copied first
#: (MODIS HDF4 tiles: pyhdf needs a path; precipitation files).
Reads = Literal["h5py", "gdal", "copy"]
#: Files GDAL could read in place but dsm reads otherwise: SRTM tiles (dsm's own reader needs a
#: path) and VRTs (their tiles are other files, which a copy of the VRT alone would not reach).
_COPIED_SUFFIXES = (".hgt", ".vrt")


def _gdal_in_place(url: str) -> bool:
    return not url.lower().endswith(_COPIED_SUFFIXES)


def in_place(cfg: Config, reads: Reads) -> InPlace:
    """Whether remote files read as ``reads`` are read in place (:mod:`dsm.inplace`) under
    ``inputs.read``: with ``auto`` SMAP granules and GDAL rasters are, other than SRTM ``.hgt``
    tiles and VRTs; MODIS HDF4 tiles and precipitation files are copied; with ``copy`` none is."""
    if cfg.inputs is None or cfg.inputs.read == "copy" or reads == "copy":
        return False
    return True if reads == "h5py" else _gdal_in_place


class Source(Protocol):
    """One configured input product (module docstring)."""

    @property
    def name(self) -> str:
        """The tasks' and the report's name: ``smap``, ``mod11a1``, ``geotiff:ndvi``, ``static``..."""
        ...

    @property
    def variables(self) -> tuple[str, ...]:
        """The cube variables it writes."""
        ...

    @property
    def axis(self) -> str:
        """``daily``, ``8day``, ``16day``, ``precip`` or ``static`` (:data:`~dsm.ingest.work.TIME_DIM`)."""
        ...

    @property
    def folder_patterns(self) -> tuple[str, ...]:
        """The file names a folder of its ``paths`` is searched for."""
        ...

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings its values are made with (:func:`dsm.fingerprint.cube_update`)."""
        ...

    @property
    def reads(self) -> Reads:
        """How its remote files are read."""
        ...

    def plan(self, cfg: Config, cube: xr.Dataset, out: Plan) -> None:
        """Expand and date its files; add its tasks, decided files and report entries to ``out``."""
        ...

    def run(self, task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
        """Read one of its tasks and write its block (on a worker); the JSON-ready result."""
        ...


class DatedSource:
    """A source whose files are dated by their name (module docstring); subclasses set the
    class attributes and :meth:`read`, and may override :meth:`slot` and :meth:`date_from_content`."""

    name: str
    variables: tuple[str, ...]
    axis: str
    folder_patterns: tuple[str, ...]
    settings: tuple[str, ...]
    reads: Reads = "gdal"
    date_regex: str

    def __init__(self, inputs: Any, conf: Any, setting: str) -> None:
        self.inputs, self.conf, self.setting = inputs, conf, setting
        self.settings = (setting,)

    @property
    def dim(self) -> str:
        """The cube's time dimension of the source."""
        dim = TIME_DIM[self.axis]
        assert dim is not None
        return dim

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options of its files (``inputs.storage_options`` under its own)."""
        return options(self.inputs, self.conf)

    def slot(self, url: str) -> str:
        """Files of one date in one slot are duplicates of each other (default: none are)."""
        return url

    def date_from_content(self, cfg: Config, url: str, exc: IngestInputError
                          ) -> tuple[dt.date | None, IngestInputError]:
        """The date of a file whose name has none, where the format has one (default: none)."""
        return None, exc

    def read(self, paths: Sequence[str], cfg: Config, region: Region, kinds: Mapping[str, str]
             ) -> tuple[dict[str, np.ndarray] | None, list[FileReport]]:
        """Read, mosaic and warp the local files of one group onto the region (``kinds``: what
        each file is, where the source has several kinds); cube variable -> 2-D float32 array
        (None when no file was usable) and the per-file report."""
        raise NotImplementedError

    # -- on the client ------------------------------------------------------------------
    def plan(self, cfg: Config, cube: xr.Dataset, out: Plan) -> None:
        """Date every file from its name (or content), skip those off the cube's axis, order
        duplicates newest first and cut the groups by time chunk."""
        urls = expand_source(out, self.name, self.setting, self.conf.paths, self.storage_options, self.folder_patterns)
        indexes, dim = time_indexes(cube), self.dim
        by_date: dict[dt.date, dict[str, list[str]]] = {}
        for url in urls:
            try:
                date: dt.date | None = date_from_name(url, self.date_regex)
            except InputDateError as exc:
                date, err = self.date_from_content(cfg, url, exc)
                if date is None:
                    out.files.append(entry(url, self.name, None, "failed", err.reason, type(err).__name__))
                    continue
            assert date is not None
            if axis_index(indexes, dim, date) is None:
                out.files.append(entry(url, self.name, date, "skipped", off_axis(dim, date)))
                continue
            by_date.setdefault(date, {}).setdefault(self.slot(url), []).append(url)  # duplicates: on the worker
        groups: list[tuple[int, Group]] = []
        for date in sorted(by_date):
            i = axis_index(indexes, dim, date)
            assert i is not None
            slots = sorted((newest_first(c) for c in by_date[date].values()), key=lambda c: c[0])
            older = tuple((c[0], c[1:]) for c in slots if len(c) > 1)
            groups.append((i, Group(date, tuple(c[0] for c in slots), older)))
        out.tasks += chunk_tasks(self.name, dim, time_chunk(cube, self.variables[0]), cube.sizes[dim], groups)

    # -- on a worker --------------------------------------------------------------------
    def run(self, task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
        """Read each group (the newest intact of duplicate files) and write the task's block."""
        assert task.dim is not None
        so, how = self.storage_options, in_place(cfg, self.reads)
        results: dict[int, GroupResult] = {}
        files: list[dict[str, Any]] = []
        groups: list[dict[str, Any]] = []
        index = cube.indexes[task.dim]
        fallbacks: list[dict[str, Any]] = []
        for g in task.groups:
            assert g.date is not None

            def read(urls: list[str], g: Group = g) -> tuple[dict[str, np.ndarray] | None, list[FileReport]]:
                with input_files(urls, so, how) as got:
                    local = got.paths
                    kinds = {local[u]: k for u, k in zip(g.urls, g.kinds, strict=False) if u in local}
                    arrays, reports = self.read([local[u] for u in urls if u in local], cfg, region, kinds)
                    return arrays, got.reports(reports)

            older = dict(g.older)
            res = read_newest_intact([(u, *older.get(u, ())) for u in g.urls], read)
            gr = GroupResult(res.arrays, res.final)  # replaced and superseded files do not make a group partial
            results[time_position(index, g.date)] = gr
            files += report([*res.final, *res.others], self.name, g.date)
            fallbacks += [{"source": self.name, "date": g.date.isoformat(), **f} for f in res.fallbacks]
            groups.append(group_entry(self.name, g.date.isoformat(), gr, res.final))
        return task_result(task, cfg, cube, results, files, groups, fallbacks)
