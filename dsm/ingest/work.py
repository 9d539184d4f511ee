"""The units of the ingest's work, shared by the plan, the sources and the writer.

A :class:`Plan` (made on the client) holds :class:`Task` s, each one source's
:class:`Group` s inside one time chunk (one writer per chunk, :mod:`dsm.stages.ingest`),
plus the report entries of the files already decided on the client. Tasks are small and
picklable: they name their source (:attr:`Task.source`), which the worker looks up in the
table of :mod:`dsm.ingest.sources`. The helpers below are the steps every source's plan
shares: expanding a setting's files, report entries, positions on a time axis and cutting
groups by time chunk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from dsm.files import FileReport, expand_each
from dsm.ingest.inputs import source_entry

#: The cube's time dimension of each time axis of a source (None: static).
TIME_DIM: dict[str, str | None] = {"daily": "time", "8day": "time_8d", "16day": "time_16d",
                                   "precip": "time_precip", "static": None}


@dataclass(frozen=True)
class Group:
    """All files of one source on one date (``date`` None for the static inputs); ``older``:
    the older duplicates of a file, newest first (read when it fails); ``kinds``: what each
    file of ``urls`` is, where a source has several kinds (the bands of ``reflectance``, the
    layers of the static inputs); ``items``: the STAC items (JSON) whose assets ``urls`` are."""

    date: dt.date | None
    urls: tuple[str, ...]
    older: tuple[tuple[str, tuple[str, ...]], ...] = ()
    kinds: tuple[str, ...] = ()
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """The unit of work: one source's groups inside one chunk ``[start, stop)`` of ``dim``."""

    source: str  #: the :attr:`~dsm.ingest.source.Source.name` of its source
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


@dataclass
class GroupResult:
    """New 2-D arrays of one group (None when nothing usable) and its per-file report."""

    arrays: dict[str, np.ndarray] | None
    files: list[FileReport]

    @property
    def status(self) -> str:
        """``complete``, ``partial``, ``failed`` or ``empty`` (:mod:`dsm.stages.ingest`)."""
        failed = any(f.status == "failed" for f in self.files)
        if not self.arrays:
            return "failed" if failed else "empty"
        return "partial" if failed else "complete"


def options(inputs: Any, src: Any) -> dict[str, Any]:
    """The fsspec options of one input: ``inputs.storage_options`` under the input's own."""
    return {**inputs.storage_options, **getattr(src, "storage_options", {})}


def expand_source(out: Plan, key: str, setting: str, patterns: Sequence[str], so: Mapping[str, Any],
                  folder: Sequence[str]) -> list[str]:
    """The files of one input (files, globs, folders); records its entry in ``out.sources``."""
    found = expand_each(patterns, so, folder)
    out.sources[key] = source_entry(setting, patterns, found, folder)
    return sorted({u for v in found.values() for u in v})


def entry(path: str, source: str, date: dt.date | None, status: str, reason: str = "", error: str = ""
          ) -> dict[str, Any]:
    """One file's entry in the report."""
    return {"path": path, "source": source, "date": date.isoformat() if date else None,
            "status": status, "reason": reason, "error": error}  # fmt: skip


def report(files: Sequence[FileReport], source: str, date: dt.date | None) -> list[dict[str, Any]]:
    """The report entries of a group's file reports."""
    return [entry(f.path, source, date, f.status, f.reason, f.error) for f in files]


def time_indexes(cube: xr.Dataset) -> dict[str, Any]:
    """The cube's daily, 8-day and 16-day time indexes."""
    return {d: cube.indexes[d] for d in ("time", "time_8d", "time_16d")}


def axis_index(indexes: Mapping[str, Any], dim: str, date: dt.date) -> int | None:
    """The position of ``date`` on the cube's ``dim``, None when it is not on it."""
    pos = indexes[dim].get_indexer([np.datetime64(date, "ns")])[0]
    return None if pos < 0 else int(pos)


def off_axis(dim: str, date: dt.date) -> str:
    """Why a file of ``date`` is skipped: not on the cube's ``dim``."""
    what = "day" if dim == "time" else f"{'8' if dim == 'time_8d' else '16'}-day composite start"
    return f"{date} is not a {what} of the cube ({dim})"


def chunk_tasks(source: str, dim: str, tchunk: int, size: int, groups: Sequence[tuple[int, Group]]) -> list[Task]:
    """The tasks of one source: its groups (each with its index on ``dim``) cut by time chunk."""
    chunks: dict[int, list[Group]] = {}
    for i, g in groups:
        chunks.setdefault(i // tchunk, []).append(g)
    return [Task(source, dim, c * tchunk, min((c + 1) * tchunk, size), tuple(gs)) for c, gs in sorted(chunks.items())]


def time_chunk(cube: xr.Dataset, var: str) -> int:
    """The time chunk of ``var`` in the cube."""
    return int(cube[var].encoding["chunks"][0])
