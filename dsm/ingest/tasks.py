"""One ingest task on a worker: its source found again, its files read, its block written once.

:func:`run_task` runs one :class:`~dsm.ingest.work.Task`: the task names its source, looked up
in the configuration's table (:func:`dsm.ingest.sources.source_named`), whose
:meth:`~dsm.ingest.source.Source.run` reads the task's groups (remote files read in place or
copied first, :func:`dsm.ingest.source.in_place`; of duplicate files the newest intact one,
:mod:`dsm.ingest.duplicates`) and writes the block (:mod:`dsm.ingest.write`). What a group
writes: :mod:`dsm.stages.ingest`.
"""

from __future__ import annotations

import time
from typing import Any

from dsm.config import Config
from dsm.cube import open_cube
from dsm.ingest.sources import source_named
from dsm.ingest.work import Task

__all__ = ["run_task"]


def run_task(task: Task, cfg: Config) -> dict[str, Any]:
    """Run one ingest task (on a worker): read its groups and write its block.

    Returns
    -------
    dict
        ``files`` (report entries), ``groups`` (what each group did), ``provenance``
        (variable -> date -> files used), ``wrote`` (variable -> [start, stop] or
        ``"static"``) and ``seconds``, all JSON-ready.
    """
    t0 = time.perf_counter()
    cube = open_cube(cfg.stores.ref("cube"))
    result = source_named(cfg, task.source).run(task, cfg, cube, cfg.grid_region)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result
