"""The static source: DEM, slope, aspect, soil fractions and land mask, one task (``static``).

Each configured layer is a :class:`_Layer`: its setting, files (files, globs, folders; the soil
fractions also found under ``inputs.soil.soilgrids``) and reader (:mod:`dsm.ingest.static`,
:mod:`dsm.ingest.terrain`, :mod:`dsm.ingest.soilgrids`). The plan gives one group per layer,
its files tagged with the layer (``Group.kinds``); on a worker the layers are read (the soil
fractions checked to add up, :func:`~dsm.ingest.static.check_soil_sum`, before the land mask)
and written with the land mask (:func:`~dsm.ingest.static.write_static`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from dsm.config import Config, InputsConfig
from dsm.grid import Region
from dsm.ingest.base import ManyResult
from dsm.ingest.inputs import folder_patterns, source_entry
from dsm.ingest.rasters import ValueRule
from dsm.ingest.soil import FRACTIONS
from dsm.ingest.soilgrids import SETTING as SOILGRIDS_SETTING
from dsm.ingest.soilgrids import file_patterns as soilgrids_patterns
from dsm.ingest.soilgrids import read_in_place, soilgrids_files, soilgrids_layer
from dsm.ingest.source import Reads, Source, in_place
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
from dsm.ingest.work import Group, GroupResult, Plan, Task, expand_source, options, report
from dsm.inplace import InPlace, input_files

Reader = Callable[[Sequence[str], Region], tuple[dict[str, np.ndarray] | None, ManyResult]]


@dataclass(frozen=True)
class _Layer:
    """One static input: ``kind`` (its report name), setting, paths, fsspec options, folder
    patterns and reader; ``soilgrids``: the SoilGrids location its files are found under."""

    kind: str
    setting: str
    paths: tuple[str, ...]
    so: dict[str, Any]
    folder: tuple[str, ...]
    read: Reader
    soilgrids: str | None = None

    def find(self, out: Plan) -> list[str]:
        """Its files; records its entry in ``out.sources``."""
        if self.soilgrids is None:
            return expand_source(out, self.kind, self.setting, self.paths, self.so, self.folder)
        where = soilgrids_files(self.soilgrids, self.kind, self.so)
        out.sources[self.kind] = source_entry(SOILGRIDS_SETTING, [self.soilgrids], where, self.folder)
        return list(where[self.soilgrids])

    def load(self, urls: Sequence[str], region: Region, how: InPlace) -> GroupResult:
        """Read its files: remote ones in place where ``how`` says, else copied first; all given
        to the reader as they are for SoilGrids read in place (GDAL reads local files and web URLs)."""
        if self.soilgrids is not None and read_in_place(self.soilgrids):
            arrays, many = self.read(list(urls), region)
            return GroupResult(arrays, list(many.report))
        with input_files(urls, self.so, how) as got:
            arrays, many = self.read([got.paths[u] for u in urls if u in got.paths], region)
            reports = got.reports(many.report)
        return GroupResult(arrays, reports)


def _dem_reader(rule: ValueRule, keep: Sequence[str]) -> Reader:
    def read(paths: Sequence[str], region: Region) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
        return read_dem_layers(paths, region, rule, keep)
    return read


def _terrain_reader(kind: str, rule: ValueRule) -> Reader:
    def read(paths: Sequence[str], region: Region) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
        return terrain_layer(paths, kind, region, rule)
    return read


def _soil_reader(fraction: str, rule: ValueRule | None) -> Reader:
    """SoilGrids as published (``rule`` None) or given rasters of ``fraction``."""
    def read(paths: Sequence[str], region: Region) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
        if rule is None:
            return soilgrids_layer(paths, fraction, region)
        return read_soil_layer(paths, fraction, region, rule)
    return read


def _mask_reader(rule: ValueRule) -> Reader:
    def read(paths: Sequence[str], region: Region) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
        return read_mask_layer(paths, region, rule)
    return read


def _terrain(inputs: InputsConfig) -> list[_Layer]:
    """``dem`` (with the slope and aspect not given on their own), ``slope`` and ``aspect``."""
    out: list[_Layer] = []
    if inputs.dem is not None:
        rule = ValueRule.of(inputs.dem, "inputs.dem")
        keep = [v for v in ("dem", "slope", "aspect") if v == "dem" or getattr(inputs, v) is None]
        out.append(_Layer("dem", "inputs.dem", inputs.dem.paths, options(inputs, inputs.dem), folder_patterns("dem"),
                          _dem_reader(rule, keep)))
    for kind, src in (("slope", inputs.slope), ("aspect", inputs.aspect)):
        if src is not None:
            r = ValueRule.of(src, f"inputs.{kind}")
            out.append(_Layer(kind, f"inputs.{kind}", src.paths, options(inputs, src), folder_patterns(kind),
                              _terrain_reader(kind, r)))
    return out


def _soil(inputs: InputsConfig) -> list[_Layer]:
    """The soil fractions: given rasters, or found under ``inputs.soil.soilgrids``."""
    soil = inputs.soil
    if soil is None:
        return []
    so, grids, rule = options(inputs, soil), soil.soilgrids, soil_rule(soil)
    if grids:
        return [_Layer(f, f"inputs.soil.{f}", (grids,), so, soilgrids_patterns(f),
                       _soil_reader(f, None), soilgrids=grids) for f in FRACTIONS]
    return [_Layer(f, f"inputs.soil.{f}", (path,), so, folder_patterns("soil"),
                   _soil_reader(f, rule))
            for f, path in ((f, getattr(soil, f)) for f in FRACTIONS) if path]


def _mask(inputs: InputsConfig) -> list[_Layer]:
    """``land_mask``, if given."""
    if inputs.land_mask is None:
        return []
    rule = ValueRule.of(inputs.land_mask, "inputs.land_mask")
    return [_Layer("land_mask", "inputs.land_mask", inputs.land_mask.paths, options(inputs, inputs.land_mask),
                   folder_patterns("land_mask"), _mask_reader(rule))]


class StaticSource:
    """The static inputs (module docstring): one task for all layers."""

    name, variables, axis = "static", STATIC_VARS, "static"
    folder_patterns: tuple[str, ...] = ()
    settings: tuple[str, ...] = ("inputs.dem", "inputs.slope", "inputs.aspect", "inputs.soil", "inputs.land_mask")
    reads: Reads = "gdal"

    def __init__(self, inputs: InputsConfig) -> None:
        self.terrain, self.soil, self.mask = _terrain(inputs), _soil(inputs), _mask(inputs)
        self.dem_configured = inputs.dem is not None
        self.soil_configured = [layer.kind for layer in self.soil]

    @classmethod
    def configured(cls, inputs: InputsConfig) -> list[Source]:
        """The source of the static inputs, if any is given."""
        src = cls(inputs)
        return [src] if src.terrain or src.soil or src.mask else []

    def plan(self, cfg: Config, cube: xr.Dataset, out: Plan) -> None:
        """One group per layer, its files tagged with the layer; one task when any file is found."""
        groups: list[Group] = []
        for layer in (*self.terrain, *self.mask, *self.soil):
            urls = layer.find(out)
            if urls:
                groups.append(Group(None, tuple(urls), kinds=(layer.kind,) * len(urls)))
        if groups:
            out.tasks.append(Task(self.name, None, 0, 0, tuple(groups)))

    def run(self, task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
        """Read the layers and write the static variables and the land mask."""
        by_kind: dict[str, list[str]] = {}
        for g in task.groups:
            for url, kind in zip(g.urls, g.kinds, strict=True):
                by_kind.setdefault(kind, []).append(url)
        how = in_place(cfg, self.reads)
        results: dict[str, GroupResult] = {}
        for layer in (*self.terrain, *self.soil):
            if layer.kind in by_kind:
                results[layer.kind] = layer.load(by_kind[layer.kind], region, how)
        warnings = check_soil_sum(results)
        for layer in self.mask:
            if layer.kind in by_kind:
                results[layer.kind] = layer.load(by_kind[layer.kind], region, how)
        files: list[dict[str, Any]] = []
        groups: list[dict[str, Any]] = []
        for kind, r in results.items():
            files += report(r.files, kind, None)
            groups.append({"source": kind, "date": None, "status": r.status, "variables": sorted(r.arrays or ()),
                           "files": [x.path for x in r.files if x.status == "used"]})  # fmt: skip
        out = write_static(cfg.stores.ref("cube"), cube, results, self.soil_configured, self.dem_configured, warnings)
        prov = {v: {"static": g["files"]} for g in groups for v in g["variables"]}
        return {"task": task.key, "files": files, "groups": groups, "provenance": prov, **out}
