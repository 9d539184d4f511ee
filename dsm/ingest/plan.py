"""The ingest's plan, made on the client: what each task reads and which chunks it owns.

Every configured input is a source (:func:`dsm.ingest.sources.configured_sources`: one class
per product family behind :class:`dsm.ingest.source.Source`); each expands its files, globs
and folders (:mod:`dsm.ingest.inputs`), dates every file (from its name, or for a renamed
SMAP granule its content; precipitation files on the cube's ``time_precip`` axis), skips the
files whose date is not on the cube's axis, orders duplicate granules newest first
(:mod:`dsm.ingest.duplicates`) and cuts its groups by time chunk into
:class:`~dsm.ingest.work.Task` s (one writer per chunk). The steps of the ingest and the write
rule: :mod:`dsm.ingest.pipeline`.
"""

from __future__ import annotations

import xarray as xr

from dsm.config import Config
from dsm.errors import ConfigError
from dsm.ingest.sources import configured_sources
from dsm.ingest.work import Group, Plan, Task

__all__ = ["Group", "Plan", "Task", "plan"]


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
