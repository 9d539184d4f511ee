"""The ingest's writes, on a worker: one task's groups merged into the stored block, written once.

:func:`merge_and_write` reads the stored block of a time chunk, merges each group's arrays
into it (values outside their valid range masked first, :mod:`dsm.ranges`; a partial group
only fills empty pixels, :mod:`dsm.ingest.blocks`) and writes it back only if it changed;
:func:`task_result` gives a dated task's JSON-ready result. The write rule:
:mod:`dsm.stages.ingest`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from dsm import store
from dsm.config import Config
from dsm.files import FileReport
from dsm.ingest.blocks import merge, screened
from dsm.ingest.work import GroupResult, Task


def group_entry(source: str, date: str | None, result: GroupResult, used: Sequence[FileReport]) -> dict[str, Any]:
    """The report entry of one group: its status, the variables it gave and the files used."""
    return {"source": source, "date": date, "status": result.status, "variables": sorted(result.arrays or ()),
            "files": [r.path for r in used if r.status == "used"]}


def merge_and_write(cfg: Config, cube: xr.Dataset, dim: str, start: int, stop: int, variables: Sequence[str],
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
                new, n = screened(v, r.arrays[v])
                if n:
                    masked.setdefault(v, {})[dates[i - start]] = n
                merge(block[i - start], new, r.status)
        if not np.array_equal(block, old[v].values, equal_nan=True):
            part[v] = (old[v].dims, block)
            wrote[v] = [start, stop]
    if part.data_vars:
        store.write_region(cfg.stores.ref("cube"), part, cube)
    return wrote, masked


def task_result(task: Task, cfg: Config, cube: xr.Dataset, results: Mapping[int, GroupResult],
                files: list[dict[str, Any]], groups: list[dict[str, Any]], fallbacks: list[dict[str, Any]]
                ) -> dict[str, Any]:
    """Write a dated task's block (:func:`merge_and_write`) and give its result: ``files``
    (report entries), ``groups``, ``provenance`` (variable -> date -> files used), ``wrote``
    (variable -> [start, stop]), ``out_of_range`` and ``fallbacks``, all JSON-ready."""
    assert task.dim is not None
    variables = sorted({v for r in results.values() for v in (r.arrays or {})})
    wrote, masked = merge_and_write(cfg, cube, task.dim, task.start, task.stop, variables, results)
    prov = {v: {g["date"]: g["files"] for g in groups if v in g["variables"]} for v in variables}
    return {"task": task.key, "files": files, "groups": groups, "provenance": prov, "wrote": wrote,
            "out_of_range": masked, "fallbacks": fallbacks}
