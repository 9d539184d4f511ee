"""The ingest's plan, made on the client: what each task reads and which chunks it owns.

Every configured input is a source (:func:`dsm.ingest.sources.configured_sources`: one class
per product family behind :class:`dsm.ingest.source.Source`); each expands its files, globs
and folders (:mod:`dsm.ingest.inputs`), dates every file (from its name, or for a renamed
SMAP granule its content; precipitation files on the cube's ``time_precip`` axis), skips the
files whose date is not on the cube's axis, orders duplicate granules newest first
(:mod:`dsm.ingest.duplicates`) and cuts its groups by time chunk into
:class:`~dsm.ingest.work.Task` s (one writer per chunk). The steps of the ingest and the write
rule: :mod:`dsm.stages.ingest`.

When the cube was just extended (``dsm run --until``), :func:`changing` keeps only the tasks
whose chunks the new days can change: the tasks of chunks complete before the old end and
recorded written (:data:`dsm.store.WRITTEN_ATTR`) are not run again, their files reported
``kept``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import pandas as pd
import xarray as xr

from dsm.config import Config
from dsm.errors import ConfigError
from dsm.ingest.sources import configured_sources
from dsm.ingest.static import LAND_MASK, STATIC_VARS
from dsm.ingest.work import Group, Plan, Task, entry
from dsm.store import WRITTEN_ATTR

__all__ = ["Group", "Plan", "Task", "changing", "plan"]

#: Days each value of a time dimension stands for (a composite's first day and the days after it).
SPAN_DAYS: dict[str, int] = {"time": 1, "time_precip": 1, "time_8d": 8, "time_16d": 16}

KEPT = "kept"
"""Status of a file of a task not run again (:func:`changing`): ingested by an earlier run."""


def plan(cfg: Config, cube: xr.Dataset) -> Plan:
    """Cut the configured inputs into tasks that each own whole chunks of the cube.

    Parameters
    ----------
    cfg
        Configuration with an ``inputs`` section.
    cube
        The (existing) cube, opened lazily: its axes and chunks decide the tasks.

    Raises
    ------
    ConfigError
        The configuration has no ``inputs`` section.
    """
    if cfg.inputs is None:
        raise ConfigError("the configuration has no 'inputs:' section: nothing to ingest")
    out = Plan()
    for source in configured_sources(cfg).values():
        source.plan(cfg, cube, out)
    return out


def changing(cfg: Config, cube: xr.Dataset, p: Plan, old_end: dt.date) -> tuple[Plan, list[str]]:
    """The plan of an extension of the cube from ``old_end``: only the tasks the new days can change.

    A task is kept (run) when its chunk holds a value whose days reach past ``old_end`` (daily and
    precipitation chunks with a day after it, the partial chunk of ``old_end`` included; 8-day and
    16-day composites whose days reach past it), or when not every variable its source writes is
    recorded written over its rows (an earlier task failed or wrote nothing: it is tried again).
    A static task is kept unless each of its layers, and the land mask, is recorded written.
    The files of the other tasks are reported with status :data:`KEPT` (not read by this run).

    Parameters
    ----------
    cfg
        The configuration the plan was made with.
    cube
        The extended cube (its axes and :data:`dsm.store.WRITTEN_ATTR`).
    p
        The full plan (:func:`plan`).
    old_end
        The cube's end before it was extended.

    Returns
    -------
    Plan, list of str
        The plan with the tasks to run (and the files of the others as ``kept``); the keys of the
        tasks not run.
    """
    written: Mapping[str, Sequence[Sequence[int]]] = cube.attrs.get(WRITTEN_ATTR, {})
    sources = configured_sources(cfg)
    out = Plan(files=list(p.files), sources=p.sources)
    kept: list[str] = []
    for task in p.tasks:
        if _done_before(task, cube, written, sources[task.source].variables, old_end):
            kept.append(task.key)
            out.files += _kept_files(task, old_end)
        else:
            out.tasks.append(task)
    return out, kept


def _recorded(written: Mapping[str, Sequence[Sequence[int]]], var: str, start: int, stop: int) -> bool:
    """Whether rows ``[start, stop)`` of ``var`` are recorded written (any rows for a static one)."""
    ranges = written.get(var) or []
    return bool(ranges) if stop <= start else any(int(a) <= start and stop <= int(b) for a, b in ranges)


def _done_before(task: Task, cube: xr.Dataset, written: Mapping[str, Sequence[Sequence[int]]],
                 variables: Sequence[str], old_end: dt.date) -> bool:
    """Whether ``task``'s chunk is complete before ``old_end`` and recorded written (:func:`changing`)."""
    if task.dim is None:
        layers = {k for g in task.groups for k in g.kinds if k in STATIC_VARS} | {LAND_MASK}
        return all(_recorded(written, v, 0, 0) for v in layers)
    last = pd.Timestamp(cube.indexes[task.dim][task.stop - 1]).date()
    if last + dt.timedelta(days=SPAN_DAYS[task.dim] - 1) > old_end:
        return False
    return all(_recorded(written, v, task.start, task.stop) for v in variables)


def _kept_files(task: Task, old_end: dt.date) -> list[dict[str, object]]:
    """The report entries of a task not run again: its files, ``kept``."""
    why = f"ingested by an earlier run: its time chunk ends before {old_end} (the cube's end before this " \
          "extension) and is recorded written; not read again"
    if task.dim is None:
        why = "ingested by an earlier run: the static layers are recorded written; not read again"
    out = []
    for g in task.groups:
        older = [u for _, us in g.older for u in us]
        for i, url in enumerate([*g.urls, *older]):
            source = g.kinds[i] if task.dim is None and i < len(g.kinds) else task.source
            out.append(entry(url, source, g.date, KEPT, why))
    return out
