"""The STAC source: one cube variable from the assets of a STAC catalog's items (``inputs.stac``).

The catalog is searched once per plan for all the variables (:class:`_Catalog`, shared by the
variables' sources; :func:`dsm.ingest.stac_inputs.search_items`); each variable's items are
grouped by day and cut by time chunk; an item without the asset is failed, an item off the
cube's axis skipped, each named. On a worker each day's items are loaded
(:func:`dsm.ingest.stac_inputs.read_stac_group`), then merged and written as every other
dated source (:mod:`dsm.ingest.write`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import xarray as xr

from dsm.config import Config, InputsConfig
from dsm.config.inputs import StacInput
from dsm.cube import SPECS
from dsm.grid import Region
from dsm.ingest import stac_inputs
from dsm.ingest.source import Reads, Source, in_place
from dsm.ingest.work import (
    TIME_DIM,
    Group,
    GroupResult,
    Plan,
    Task,
    axis_index,
    chunk_tasks,
    entry,
    off_axis,
    options,
    report,
    time_chunk,
    time_indexes,
)
from dsm.ingest.write import group_entry, task_result
from dsm.periods import time_position

log = logging.getLogger(__name__)


class _Catalog:
    """The configured catalog, searched once (over the region and the cube's dates) for all variables."""

    def __init__(self, src: StacInput, so: dict[str, Any]) -> None:
        self.src, self.so = src, so
        self._found: tuple[str, list[Any]] | None = None

    def items(self, cfg: Config, indexes: dict[str, Any]) -> tuple[str, list[Any]]:
        """The kind of catalog and its items over the region and dates."""
        if self._found is None:
            self._found = stac_inputs.search_items(self.src, self.so, cfg.grid_region,
                                                   *stac_inputs.search_span(indexes))
        return self._found


class StacSource:
    """One variable of ``inputs.stac.assets`` (module docstring)."""

    folder_patterns: tuple[str, ...] = ()
    reads: Reads = "gdal"

    def __init__(self, inputs: InputsConfig, var: str, catalog: _Catalog) -> None:
        assert inputs.stac is not None
        self.src, self.catalog, self.var = inputs.stac, catalog, var
        self.asset = inputs.stac.assets[var]
        self.name, self.variables, self.axis = f"{stac_inputs.PREFIX}{var}", (var,), SPECS[var].axis
        self.setting = stac_inputs.setting_of(var)
        self.settings = (self.setting,)
        self.storage_options = options(inputs, inputs.stac)

    @classmethod
    def configured(cls, inputs: InputsConfig) -> list[Source]:
        """One source per asset of ``inputs.stac``, sharing one search of the catalog."""
        if inputs.stac is None:
            return []
        catalog = _Catalog(inputs.stac, options(inputs, inputs.stac))
        return [cls(inputs, var, catalog) for var in inputs.stac.assets]

    def plan(self, cfg: Config, cube: xr.Dataset, out: Plan) -> None:
        """The variable's items grouped by day, cut by time chunk."""
        indexes = time_indexes(cube)
        kind, items = self.catalog.items(cfg, indexes)
        src, a, dim = self.src, self.asset, TIME_DIM[self.axis]
        assert dim is not None
        mine = [it for it in items if a.collection is None or it.collection_id == a.collection]
        what = f"{src.catalog} ({kind}; collection {a.collection or ', '.join(src.collections) or 'any'}, " \
               f"asset {a.asset!r})"
        out.sources[self.name] = {"setting": self.setting, "patterns": [what], "folder_patterns": [],
                                  "matched": len(mine), "unmatched": [] if mine else [what]}
        if not mine:
            log.warning("%s: no item of %s over the region and dates", self.setting, what)
        by_date: dict[dt.date, list[Any]] = {}
        for it in mine:
            date, name = stac_inputs.item_date(it), stac_inputs.item_name(it)
            why = stac_inputs.missing_assets(it, a)
            if date is None or why is not None:
                out.files.append(entry(name, self.name, date, "failed", why or f"STAC item {it.id} has no datetime",
                                       "MissingVariableError" if why else "InputDateError"))
            elif axis_index(indexes, dim, date) is None:
                out.files.append(entry(it.assets[a.asset].href, self.name, date, "skipped", off_axis(dim, date)))
            else:
                by_date.setdefault(date, []).append(it)
        groups: list[tuple[int, Group]] = []
        for date in sorted(by_date):
            i = axis_index(indexes, dim, date)
            assert i is not None
            day = sorted(by_date[date], key=lambda it: it.assets[a.asset].href)
            groups.append((i, Group(date, tuple(it.assets[a.asset].href for it in day),
                                    items=tuple(stac_inputs.encode(it) for it in day))))
        out.tasks += chunk_tasks(self.name, dim, time_chunk(cube, self.var), cube.sizes[dim], groups)

    def run(self, task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
        """Each day's items loaded (:func:`dsm.ingest.stac_inputs.read_stac_group`), the block written."""
        assert task.dim is not None
        how = in_place(cfg, self.reads)
        index = cube.indexes[task.dim]
        results: dict[int, GroupResult] = {}
        files: list[dict[str, Any]] = []
        groups: list[dict[str, Any]] = []
        for g in task.groups:
            assert g.date is not None
            arrays, reports = stac_inputs.read_stac_group(self.var, self.src, g.items, region, self.storage_options,
                                                          how)
            gr = GroupResult(arrays, reports)
            results[time_position(index, g.date)] = gr
            files += report(reports, self.name, g.date)
            groups.append(group_entry(self.name, g.date.isoformat(), gr, reports))
        return task_result(task, cfg, cube, results, files, groups, [])
