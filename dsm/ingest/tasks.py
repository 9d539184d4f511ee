"""One ingest task on a worker: fetch its files, read its groups, write its block once.

:func:`run_task` runs one :class:`~dsm.ingest.plan.Task`: remote files are read in place
(SMAP HDF5 granules, GDAL rasters: :mod:`dsm.inplace`) or copied to a worker-local temporary
folder (MODIS HDF4 tiles, SRTM ``.hgt`` tiles, VRTs, precipitation files, and every file with
``inputs.read: copy``: :func:`dsm.files.local_copies`), each group is read, mosaicked
and warped onto the region (:func:`read_group`, :func:`read_precip_group` for precipitation,
the :mod:`dsm.ingest.static` readers for the static layers; of duplicate files the newest
intact one, :mod:`dsm.ingest.duplicates`), and the stored block is read, merged with the new
arrays (values outside their valid range masked) and written back only if it changed
(:func:`_merge_and_write`). What a group writes: :mod:`dsm.ingest.pipeline`.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from dsm import store
from dsm.config import Config
from dsm.errors import InputError
from dsm.files import FileReport
from dsm.grid import Region
from dsm.ingest import stac_inputs
from dsm.ingest.base import DEFAULT_DATE_REGEX, ManyResult, NoOverlapError, read_many
from dsm.ingest.blocks import merge as _merge
from dsm.ingest.blocks import screened as _screened
from dsm.ingest.duplicates import read_newest_intact
from dsm.ingest.modis import read_modis_tile, tile_raster
from dsm.ingest.modis_products import PRODUCTS, QCRule
from dsm.ingest.plan import MODIS_SOURCES, PRECIP_DIM, Group, Task, _entry, _options, precip_utc_offset
from dsm.ingest.precip import (
    check_covers,
    hourly_to_local_days,
    read_chirps,
    read_era5land_file,
    read_imerg,
    remap_to_region,
)
from dsm.ingest.rasters import ValueRule, geotiff_series_to_region
from dsm.ingest.reflectance import reflectance_indices
from dsm.ingest.reproject import crop_to_region, warp_many_to_region
from dsm.ingest.smap import read_smap
from dsm.ingest.soil import FRACTIONS
from dsm.ingest.soilgrids import read_in_place, soilgrids_layer
from dsm.ingest.static import (
    check_soil_sum,
    read_dem_layers,
    read_mask_layer,
    read_soil_layer,
    soil_rule,
    write_static,
)
from dsm.ingest.terrain import terrain_layer
from dsm.inplace import InPlace, input_files


# -- reading one group ------------------------------------------------------------------
@dataclass
class GroupResult:
    """New 2-D arrays of one group (None when nothing usable) and its per-file report."""

    arrays: dict[str, np.ndarray] | None
    files: list[FileReport]

    @property
    def status(self) -> str:
        """``complete``, ``partial``, ``failed`` or ``empty`` (:mod:`dsm.ingest.pipeline`)."""
        failed = any(f.status == "failed" for f in self.files)
        if not self.arrays:
            return "failed" if failed else "empty"
        return "partial" if failed else "complete"


def _modis_qc(src: Any) -> dict[str, tuple[QCRule, ...]] | None:
    qc = getattr(src, "qc", None)
    return None if qc is None else {k: tuple(QCRule(s, n, tuple(a)) for s, n, a in v) for k, v in qc.items()}


def _tile_for_region(path: str, region: Region, product: str, qc: Any) -> xr.Dataset:
    ds, _ = read_modis_tile(path, product, qc=qc)
    if crop_to_region(tile_raster(ds, next(iter(ds.data_vars))), region, margin=1) is None:
        raise NoOverlapError(path, f"tile {ds.attrs['tile']} does not cover region {region.to_dict()}")
    return ds


def read_group(source: str, paths: Sequence[str], cfg: Config, region: Region, kinds: Mapping[str, str] | None = None
               ) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
    """Read, mosaic and warp the local files of one group onto the region (``kinds``: the band
    of each file of a ``reflectance`` group).

    Returns
    -------
    (dict or None, ManyResult)
        Cube variable -> 2-D float32 array (1 km, or the coarse grid for ``smap_sm``), None when no
        file was usable; and the per-file report (paths as given).
    """
    inputs = cfg.inputs
    assert inputs is not None
    if source == "smap":
        smap = inputs.smap
        assert smap is not None
        many = read_many(paths, read_smap, region=region, overpass=smap.overpass, qc_mask=smap.qc_mask)
        if not many.results:
            return None, many
        return {"smap_sm": next(iter(many.results.values()))[0].values}, many
    if source.startswith("geotiff:"):
        var = source.split(":", 1)[1]
        src = inputs.geotiff[var]
        da, many = geotiff_series_to_region(paths, region, var, date_regex=src.date_regex or DEFAULT_DATE_REGEX,
                                            resampling=src.resampling, band=src.band,
                                            rule=ValueRule.of(src, f"inputs.geotiff.{var}"))  # fmt: skip
        return ({var: da.values[0]} if da.sizes["time"] else None), many
    if source == "reflectance":
        bands = inputs.reflectance
        assert bands is not None and kinds is not None
        qc = None if bands.qc is None else tuple(QCRule(s, n, tuple(a)) for s, n, a in bands.qc)
        return reflectance_indices(kinds, region, ValueRule.of(bands, "inputs.reflectance"), qc)
    product, _, names = MODIS_SOURCES[source]
    src = getattr(inputs, source)
    many = read_many(paths, _tile_for_region, region=region, product=product, qc=_modis_qc(src))
    if not many.results:
        return None, many
    tiles = list(many.results.values())
    spec = PRODUCTS[product]
    warped = {
        str(v): warp_many_to_region([tile_raster(t, str(v)) for t in tiles], region, spec.outputs[str(v)].resampling)
        for v in tiles[0].data_vars
    }
    if source == "mcd43":
        kind = src.albedo
        if kind == "mean":
            with np.errstate(invalid="ignore"):
                return {"albedo": ((warped["albedo_wsa"] + warped["albedo_bsa"]) / 2).astype(np.float32)}, many
        return {"albedo": warped[f"albedo_{kind}"]}, many
    return {names[k]: a for k, a in warped.items()}, many


# -- one task on a worker ---------------------------------------------------------------
def run_task(task: Task, cfg: Config) -> dict[str, Any]:
    """Run one ingest task (on a worker): read its groups and write its block.

    Returns
    -------
    dict
        ``files`` (report entries), ``groups`` (what each group did), ``provenance``
        (variable -> date -> files used) and ``wrote`` (variable -> [start, stop] or
        ``"static"``), all JSON-ready.
    """
    t0 = time.perf_counter()
    url, so = cfg.stores.cube, cfg.stores.storage_options
    cube = store.open_store(url, "cube", so)
    region = cfg.grid_region
    if task.source == "static":
        result = _run_static(task, cfg, cube, region)
    elif task.source == "precip":
        result = _run_precip(task, cfg, cube, region)
    elif task.source.startswith(stac_inputs.PREFIX):
        result = _run_stac(task, cfg, cube, region)
    else:
        result = _run_dated(task, cfg, cube, region)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def _source_options(cfg: Config, source: str) -> dict[str, Any]:
    inputs = cfg.inputs
    assert inputs is not None
    if source.startswith("geotiff:"):
        return _options(inputs, inputs.geotiff[source.split(":", 1)[1]])
    if source.startswith(stac_inputs.PREFIX):
        return _options(inputs, inputs.stac)
    return _options(inputs, getattr(inputs, source))


def _report(files: Sequence[FileReport], back: Mapping[str, str], source: str, date: dt.date | None) -> list[dict[str, Any]]:
    return [_entry(back.get(f.path, f.path), source, date, f.status, f.reason, f.error) for f in files]


def _run_dated(task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
    assert task.dim is not None
    so = _source_options(cfg, task.source)
    results: dict[int, GroupResult] = {}
    files: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    index = cube.indexes[task.dim]
    fallbacks: list[dict[str, Any]] = []
    for g in task.groups:

        def read(urls: list[str], g: Group = g) -> tuple[dict[str, np.ndarray] | None, list[FileReport]]:
            with input_files(urls, so, in_place(cfg, task.source)) as got:
                local = got.paths
                kinds = {local[u]: k for u, k in zip(g.urls, g.kinds, strict=False) if u in local}
                arrays, many = read_group(task.source, [local[u] for u in urls if u in local], cfg, region, kinds)
                return arrays, got.reports(many.report)

        older = dict(g.older)
        res = read_newest_intact([(u, *older.get(u, ())) for u in g.urls], read)
        gr = GroupResult(res.arrays, res.final)  # replaced and superseded files do not make a group partial
        i = int(index.get_loc(np.datetime64(g.date, "ns")))
        results[i] = gr
        files += _report([*res.final, *res.others], {}, task.source, g.date)
        fallbacks += [{"source": task.source, "date": g.date.isoformat(), **f} for f in res.fallbacks]
        groups.append({"source": task.source, "date": g.date.isoformat(), "status": gr.status,
                       "variables": sorted(gr.arrays or ()), "files": [r.path for r in res.final if r.status == "used"]})  # fmt: skip
    variables = sorted({v for r in results.values() for v in (r.arrays or {})})
    wrote, masked = _merge_and_write(cfg, cube, task.dim, task.start, task.stop, variables, results)
    prov = {v: {g["date"]: g["files"] for g in groups if v in g["variables"]} for v in variables}
    return {"task": task.key, "files": files, "groups": groups, "provenance": prov, "wrote": wrote,
            "out_of_range": masked, "fallbacks": fallbacks}


def _run_stac(task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
    """One time chunk of a STAC variable: each day's items loaded (:func:`dsm.ingest.stac_inputs.read_stac_group`),
    then merged and written as every other dated source."""
    assert task.dim is not None and cfg.inputs is not None and cfg.inputs.stac is not None
    var = task.source.removeprefix(stac_inputs.PREFIX)
    so, how = _source_options(cfg, task.source), in_place(cfg, task.source)
    index = cube.indexes[task.dim]
    results: dict[int, GroupResult] = {}
    files: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    for g in task.groups:
        assert g.date is not None
        arrays, reports = stac_inputs.read_stac_group(var, cfg.inputs.stac, g.items, region, so, how)
        gr = GroupResult(arrays, reports)
        results[int(index.get_loc(np.datetime64(g.date, "ns")))] = gr
        files += _report(reports, {}, task.source, g.date)
        groups.append({"source": task.source, "date": g.date.isoformat(), "status": gr.status,
                       "variables": sorted(gr.arrays or ()), "files": [r.path for r in reports if r.status == "used"]})
    variables = sorted({v for r in results.values() for v in (r.arrays or {})})
    wrote, masked = _merge_and_write(cfg, cube, task.dim, task.start, task.stop, variables, results)
    prov = {v: {g["date"]: g["files"] for g in groups if v in g["variables"]} for v in variables}
    return {"task": task.key, "files": files, "groups": groups, "provenance": prov, "wrote": wrote,
            "out_of_range": masked, "fallbacks": []}


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


def _run_precip(task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
    """Read, check and remap one time chunk of precipitation days; write it (one writer per chunk)."""
    inputs = cfg.inputs
    assert inputs is not None and inputs.precip is not None
    src = inputs.precip
    urls = sorted({u for g in task.groups for u in g.urls})
    days = [g.date for g in task.groups if g.date is not None]
    with input_files(urls, _options(inputs, src), in_place(cfg, "precip")) as got:
        fields, many = read_precip_group(src.product, [got.paths[u] for u in urls if u in got.paths], region, days,
                                        precip_utc_offset(cfg))
        reports = {r.path: r for r in got.reports(many.report)}
    fine: dict[dt.date, np.ndarray] = {}
    for part in fields:  # in file order: a day given twice is taken from the later file
        if part.sizes["time"]:
            remapped = remap_to_region(part, region, src.remap)
            fine.update({t.date(): a for t, a in zip(part.indexes["time"], remapped, strict=True)
                         if np.isfinite(a).any()})
    final = {g.date: [reports[u] for u in g.urls] for g in task.groups}
    fallbacks = _precip_fallbacks(task, cfg, region, reports, final, fine)
    index = cube.indexes[PRECIP_DIM]
    results: dict[int, GroupResult] = {}
    groups: list[dict[str, Any]] = []
    for g in task.groups:
        assert g.date is not None
        gr = GroupResult({"precip": fine[g.date]} if g.date in fine else None, final[g.date])
        results[int(index.get_loc(np.datetime64(g.date, "ns")))] = gr
        groups.append({"source": "precip", "date": g.date.isoformat(), "status": gr.status,
                       "variables": sorted(gr.arrays or ()),
                       "files": [r.path for r in final[g.date] if r.status == "used"]})
    day_of: dict[str, dt.date | None] = {}
    for g in task.groups:
        for u in (*g.urls, *(a for _, alts in g.older for a in alts)):
            day_of.setdefault(u, g.date)
    files = [_entry(u, "precip", day_of[u], r.status, r.reason, r.error) for u, r in sorted(reports.items())]
    wrote, masked = _merge_and_write(cfg, cube, PRECIP_DIM, task.start, task.stop, ["precip"] if fine else [], results)
    prov = {"precip": {g["date"]: g["files"] for g in groups if g["variables"]}} if fine else {}
    return {"task": task.key, "files": files, "groups": groups, "provenance": prov, "wrote": wrote,
            "out_of_range": masked, "fallbacks": fallbacks}


def _precip_fallbacks(task: Task, cfg: Config, region: Region, reports: dict[str, FileReport],
                      final: dict[Any, list[FileReport]], fine: dict[dt.date, np.ndarray]) -> list[dict[str, Any]]:
    """Days whose preferred file failed: the next file of the day (:mod:`dsm.ingest.duplicates`);
    the others are superseded. Updates ``reports``, ``final`` and ``fine`` in place."""
    inputs = cfg.inputs
    assert inputs is not None and inputs.precip is not None
    src = inputs.precip
    out: list[dict[str, Any]] = []
    for g in task.groups:
        first, alts = g.urls[0], dict(g.older).get(g.urls[0], ())
        if not alts or g.date is None:
            continue
        if reports[first].status != "failed":
            reports.update({u: FileReport(u, "skipped", f"superseded by {posixpath.basename(first)}") for u in alts})
            continue

        def read(urls: list[str], day: dt.date = g.date) -> tuple[np.ndarray | None, list[FileReport]]:
            with input_files(urls, _options(inputs, src), in_place(cfg, "precip")) as files:
                parts, many = read_precip_group(src.product, [files.paths[u] for u in urls if u in files.paths], region,
                                                [day], precip_utc_offset(cfg))
                got = [remap_to_region(p, region, src.remap)[0] for p in parts if p.sizes["time"]]
                return (got[-1] if got and np.isfinite(got[-1]).any() else None), files.reports(many.report)

        res = read_newest_intact([(first, *alts)], read)
        reports.update({r.path: r for r in (*res.final, *res.others)})
        final[g.date] = res.final
        if res.arrays is not None:
            fine[g.date] = res.arrays
        out += [{"source": "precip", "date": g.date.isoformat(), **f} for f in res.fallbacks]
    return out


def _merge_and_write(cfg: Config, cube: xr.Dataset, dim: str, start: int, stop: int, variables: Sequence[str],
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
                new, n = _screened(v, r.arrays[v])
                if n:
                    masked.setdefault(v, {})[dates[i - start]] = n
                _merge(block[i - start], new, r.status)
        if not np.array_equal(block, old[v].values, equal_nan=True):
            part[v] = (old[v].dims, block)
            wrote[v] = [start, stop]
    if part.data_vars:
        store.write_region(cfg.stores.cube, part, cfg.stores.storage_options, cube)
    return wrote, masked


def _run_static(task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict[str, Any]:
    """Read the DEM, soil and land mask files (:mod:`dsm.ingest.static`) and write the static layers."""
    inputs = cfg.inputs
    assert inputs is not None
    by_kind: dict[str, list[str]] = {}
    for g in task.groups:
        kind, _, url = g.urls[0].partition("=")
        by_kind.setdefault(kind, []).append(url)
    results: dict[str, GroupResult] = {}
    files: list[dict[str, Any]] = []
    if "dem" in by_kind:
        rule = ValueRule.of(inputs.dem, "inputs.dem")
        keep = [v for v in ("dem", "slope", "aspect") if v == "dem" or getattr(inputs, v) is None]
        results["dem"] = _static_group(by_kind["dem"], _options(inputs, inputs.dem),
                                       lambda p: read_dem_layers(p, region, rule, keep), in_place(cfg, "dem"))
    for kind in ("slope", "aspect"):
        if kind in by_kind:
            src = getattr(inputs, kind)
            rule = ValueRule.of(src, f"inputs.{kind}")
            results[kind] = _static_group(by_kind[kind], _options(inputs, src),
                                          lambda p, k=kind, r=rule: terrain_layer(p, k, region, r), in_place(cfg, kind))
    grids = inputs.soil.soilgrids if inputs.soil else None
    for f in FRACTIONS:
        if f in by_kind:
            reader = (lambda p, f=f: soilgrids_layer(p, f, region)) if grids else \
                (lambda p, f=f: read_soil_layer(p, f, region, soil_rule(inputs.soil)))
            results[f] = _static_group(by_kind[f], _options(inputs, inputs.soil), reader, in_place(cfg, f),
                                       fetch=not (grids and read_in_place(grids)))
    warnings = check_soil_sum(results)
    if "land_mask" in by_kind:
        rule = ValueRule.of(inputs.land_mask, "inputs.land_mask")
        results["land_mask"] = _static_group(by_kind["land_mask"], _options(inputs, inputs.land_mask),
                                             lambda p: read_mask_layer(p, region, rule), in_place(cfg, "land_mask"))
    groups = []
    for kind, r in results.items():
        files += _report(r.files, {}, kind, None)
        groups.append({"source": kind, "date": None, "status": r.status, "variables": sorted(r.arrays or ()),
                       "files": [x.path for x in r.files if x.status == "used"]})  # fmt: skip
    soil = [f for f in FRACTIONS if inputs.soil.soilgrids or getattr(inputs.soil, f, None)] if inputs.soil else []
    out = write_static(cfg.stores.cube, cfg.stores.storage_options, cube, results, soil, inputs.dem is not None, warnings)
    prov = {v: {"static": g["files"]} for g in groups for v in g["variables"]}
    return {"task": task.key, "files": files, "groups": groups, "provenance": prov, **out}


def _static_group(urls: Sequence[str], so: Mapping[str, Any], reader: Any, how: InPlace, fetch: bool = True
                  ) -> GroupResult:
    """Read one static input's files: remote ones in place where ``how`` says (:func:`in_place`),
    else copied first; all given to the reader as they are when ``fetch`` is False (GDAL reads
    local files and web URLs itself)."""
    if not fetch:
        arrays, many = reader(list(urls))
        return GroupResult(arrays, list(many.report))
    with input_files(urls, so, how) as got:
        arrays, many = reader([got.paths[u] for u in urls if u in got.paths])
        reports = got.reports(many.report)
    return GroupResult(arrays, reports)


#: Sources whose readers read file objects: SMAP through h5py, the rest through GDAL.
_IN_PLACE = frozenset({"smap", "reflectance", "dem", "slope", "aspect", "land_mask", *FRACTIONS})
#: Files GDAL could read in place but dsm reads otherwise: SRTM tiles (dsm's own reader needs a
#: path) and VRTs (their tiles are other files, which a copy of the VRT alone would not reach).
_COPIED_SUFFIXES = (".hgt", ".vrt")


def _gdal_in_place(url: str) -> bool:
    return not url.lower().endswith(_COPIED_SUFFIXES)


def in_place(cfg: Config, source: str) -> InPlace:
    """Whether the remote files of ``source`` (a task source, ``geotiff:<var>``, or a static
    kind: ``dem``, ``sand``...) are read in place (:mod:`dsm.inplace`) under ``inputs.read``:
    with ``auto`` SMAP granules and GDAL rasters are, other than SRTM ``.hgt`` tiles and VRTs;
    MODIS HDF4 tiles (pyhdf needs a path) and precipitation files are copied."""
    inputs = cfg.inputs
    if inputs is None or inputs.read == "copy":
        return False
    if source == "smap":
        return True
    if source in _IN_PLACE or source.startswith(("geotiff:", stac_inputs.PREFIX)):
        return _gdal_in_place
    return False
