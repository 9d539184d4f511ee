"""``dsm ingest``: real input files -> the predictor cube, in parallel on the cluster.

This module runs the ingest on the client (:func:`run_ingest`: the cube made or checked by
:func:`ensure_cube`, the tasks mapped onto the cluster, the rows written recorded, the
antecedent indices, the report written); each step lives in its own module:

=========================  ===========================================================
module                     step
=========================  ===========================================================
:mod:`dsm.ingest.plan`     1, on the client: files dated, the work cut into tasks
:mod:`dsm.ingest.tasks`    2, on a worker: one task's files fetched, read and written
:mod:`dsm.ingest.report`   3, on the client: the report assembled, counted, printed
=========================  ===========================================================

Each input product is a source (:mod:`dsm.ingest.sources`: one class per product family
behind :class:`dsm.ingest.source.Source`): the plan asks each configured source for its
tasks, and a worker finds a task's source again by its name.

Steps
-----
1. **Plan** (client): expand every configured file, glob and folder (local or fsspec, e.g.
   ``s3://bucket/MOD11A1/``; :mod:`dsm.ingest.inputs`), date every file from its name, drop
   files whose date is not on the cube's axis, order duplicate granules (same product, tile
   and date) newest first (:mod:`dsm.ingest.duplicates`: the newest intact one is used), and
   cut the work into :class:`~dsm.ingest.work.Task` s.
2. **Run** (workers, ``client.map``): each task fetches its files through fsspec (remote
   SMAP granules and GDAL rasters are read in place, byte ranges only, :mod:`dsm.inplace`;
   the others, e.g. MODIS HDF4 tiles for pyhdf, are downloaded to a worker-local temporary
   folder; ``inputs.read``), reads them with the :mod:`dsm.ingest` readers, mosaics and warps each *group*
   (all tiles of one product on one date) onto the region, and writes one chunk-aligned
   block with :func:`dsm.store.write_region`.
3. **Report** (client): every file with its status (used / skipped / failed) and reason,
   every group with what was written, the provenance (which files made which variable
   and date), duplicate fallbacks, ``land_mask_source`` and warnings are printed and written
   as JSON next to the cube (:func:`~dsm.ingest.report.report_ref`). After an extension
   (``dsm run --until``) the tasks of chunks complete before the old end and recorded written
   are not run (:func:`dsm.ingest.plan.changing`): their files are listed ``kept``, the tasks
   under ``not_run``, and their provenance comes from the earlier report. A configured input that gave nothing (no
   file matched, or none was used) is an error (``task_errors``, exit status 1).

The write rule (why tasks are what they are)
--------------------------------------------
A Zarr chunk must have exactly one writer. Daily variables (``lst``, ``albedo``,
``smap_sm``) have a time chunk of ``chunks.time`` days, so **one task owns one time chunk of
one source**: it gathers every day of that chunk, reads the block already in the store,
replaces the days it has new data for and writes the whole block (all spatial chunks of
the region) at once. 8-day and 16-day variables have a time chunk of 1, so their tasks are
one composite each; static variables (dem, slope, aspect, sand, silt, clay, land_mask) are
one task. Different sources never write the same variable (the configuration refuses a
GeoTIFF series for a variable a MODIS source already makes), so no two tasks share a chunk.

What a group writes (nothing already in the cube is damaged)
------------------------------------------------------------
===========  ==================================================  =========================
group        files                                               effect on the store
===========  ==================================================  =========================
complete     at least one used, none failed                      the day is replaced
partial      some used, some failed (corrupt, wrong product...)  fills only pixels that
                                                                 are still empty (NaN)
failed       none used, some failed                              nothing written
empty        none used, none failed (all fill, no overlap)       nothing written
===========  ==================================================  =========================

A block is only written when it differs from what is stored, and encoding is deterministic,
so ingesting the same granules again leaves the store byte-identical. A task that dies
(a bug, storage down) writes nothing it has not finished: its block write is the last step.

Precipitation (``inputs.precip``): IMERG, CHIRPS or ERA5-Land files (:mod:`dsm.ingest.precip`)
fill ``precip`` on the cube's ``time_precip`` axis, which starts ``rain.spinup_days`` (rounded
up to whole time chunks) before the first day. Days come from the file names (IMERG, CHIRPS
GeoTIFF) or the files' time coordinates, read cheaply at plan time (netCDF files of many
days); one task per time chunk of ``time_precip`` reads, checks (:func:`~dsm.ingest.precip.check_covers`), remaps
(``inputs.precip.remap``) and writes its days; of several files of one day (IMERG Final, Late,
Early) the preferred one is read, and the next one when it fails (:mod:`dsm.ingest.duplicates`).
Days of the axis with no file or no usable data are not filled: the report lists them
(``precip.missing_days``). After the precipitation writes,
:func:`dsm.antecedent.write_antecedent` computes the antecedent indices (report
``antecedent``). A cube without ``time_precip``, or with another spin-up, is refused.

MOD09A1 reflectance bands (``inputs.reflectance``): the files of each band are dated and the
dates matched across bands at plan time (:func:`dsm.ingest.reflectance.match_band_dates`: a
date missing a band is skipped, its files named); a group is one 8-day date, its files tagged
with their band (``Group.kinds``), read by :func:`dsm.ingest.reflectance.reflectance_indices`.
Slope and aspect rasters (``inputs.slope``, ``inputs.aspect``) and SoilGrids
(``inputs.soil.soilgrids``, :mod:`dsm.ingest.soilgrids`; web URLs read by GDAL in place, not
copied) are static inputs; a given slope or aspect replaces the DEM's.

Land mask: from a ``land_mask`` raster when configured (land where its 1 km average is
>= 0.5), else land where the DEM has a value and is not sea-level zeros, and every configured
soil fraction has a value (:mod:`dsm.ingest.static`).

Impossible values: before a block is merged, every value outside its variable's valid range
(:mod:`dsm.ranges`; SMAP outside [0.02, 0.5]) becomes NaN, like a fill value. The report counts
them per variable and date (``out_of_range``, and ``summary["out_of_range"]``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr
from tqdm.auto import tqdm

from dsm import files, fingerprint, store
from dsm.antecedent import write_antecedent
from dsm.cluster import leased_outcomes
from dsm.config import Config
from dsm.cube import Layout, create_cube, cube_template, layout_of, open_cube
from dsm.errors import ConfigError, InputError
from dsm.extend import recorded_end, resize_time
from dsm.ingest.plan import changing, plan
from dsm.ingest.report import _assemble, _merge_provenance, _previous, report_ref, summarize
from dsm.ingest.sources import configured_sources
from dsm.ingest.tasks import run_task
from dsm.progress import bar_disabled
from dsm.runlock import Lease
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)


def ensure_cube(cfg: Config, overwrite: bool = False) -> xr.Dataset:
    """Open the configured cube (:func:`_ensure_cube`, which see)."""
    return _ensure_cube(cfg, overwrite)[0]


def _ensure_cube(cfg: Config, overwrite: bool = False) -> tuple[xr.Dataset, dt.date | None]:
    """Open the configured cube, creating it first when missing (or when ``overwrite``); check
    it fits the configuration and record the settings its values are made with.

    A cube that ends before ``dates.end`` (``dsm run --until``) is first resized to it
    (:func:`dsm.extend.resize_time`: no chunk rewritten); the plan then finds the files of the
    new days, and only the tasks whose chunks the new days can change are run
    (:func:`dsm.ingest.plan.changing`, given the end before, returned with the cube).

    Raises
    ------
    ConfigError
        The existing cube was made for another region or other dates (an end after
        ``dates.end`` included).
    StoreError
        A source was ingested into the cube with other value settings
        (:func:`dsm.fingerprint.cube_update`): ingesting it again would mix them.
    """
    ref = cfg.stores.ref("cube")
    layout = Layout.from_config(cfg)
    if overwrite or not store.is_store(ref):
        log.info("creating the cube %s", ref)
        create_cube(ref, layout, overwrite=overwrite)
    have_end = recorded_end(ref)
    old_end = None
    if have_end is not None and have_end < layout.end:  # dsm run --until: the cube grows (dsm.extend)
        log.info("extending the cube %s from %s to %s", ref, have_end, layout.end)
        old_end = resize_time(ref, cube_template(layout))
    ds = open_cube(ref)
    have = layout_of(ds)
    if (have.region, have.start, have.end) != (layout.region, layout.start, layout.end):
        raise ConfigError(
            f"the cube at {ref} covers region {have.region.to_dict()} {have.start}..{have.end}, the configuration "
            f"{layout.region.to_dict()} {layout.start}..{layout.end}: use another stores.cube"
        )
    _settings_after(cfg, ds, ())  # refuses before any file is read
    return ds, old_end


def _settings_after(cfg: Config, cube: xr.Dataset, sources: Sequence[str]) -> dict[str, Any]:
    """The cube's settings record (:func:`dsm.fingerprint.cube_update`) once the tasks of
    ``sources`` (:attr:`~dsm.ingest.work.Task.source`) have written values (each source's
    :attr:`~dsm.ingest.source.Source.settings`)."""
    table = configured_sources(cfg)
    prefixes = {p for s in sources for p in table[s].settings}
    return fingerprint.cube_update(cube.attrs.get(fingerprint.CUBE_ATTR), cfg, cfg.stores.cube,
                                   "`dsm ingest CONFIG --overwrite` rebuilds the cube (then dsm train --force and "
                                   "dsm predict --overwrite), or choose another stores.cube", sorted(prefixes))


def run_ingest(cfg: Config, client: Any, progress: bool = True, report_at: StoreRef | None = None,
               lease: Lease | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Ingest every configured input into the cube on ``client``'s cluster; write the report.

    Parameters
    ----------
    cfg
        Configuration with ``inputs``, ``stores.cube`` and the region, dates and chunks.
    client
        A :class:`distributed.Client`.
    progress
        Show a progress bar over the tasks.
    report_at
        Where to write the JSON report (default :func:`~dsm.ingest.report.report_ref` of the cube).
    lease
        The run's lease (:class:`dsm.runlock.Lease`): checked before the cube is created,
        as each task lands (a lost lease cancels the rest), before the antecedent indices
        and before the report is written.
    overwrite
        Start a new, empty cube in place of an existing one (:func:`ensure_cube`).

    Returns
    -------
    dict
        The report (see :func:`~dsm.ingest.report.summarize` for its ``summary``).
    """
    check = lease.check if lease is not None else (lambda: None)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    check()
    cube, old_end = _ensure_cube(cfg, overwrite)
    p = plan(cfg, cube)
    not_run: list[str] = []
    if old_end is not None:  # extended: the chunks complete before the old end are not read again
        p, not_run = changing(cfg, cube, p, old_end)
        log.info("ingest: extended from %s: %d tasks of chunks complete before it not run", old_end, len(not_run))
    log.info("ingest: %d tasks, %d files decided by name", len(p.tasks), len(p.files))
    run_id = uuid.uuid4().hex[:8]  # fresh keys: a rerun on the same client must not reuse results
    futures = client.map(run_task, p.tasks, cfg=cfg, key=[f"{t.key}-{run_id}" for t in p.tasks], retries=0)
    results, errors = [], []
    done = leased_outcomes(client, dict(zip(futures, p.tasks, strict=True)), check)
    for task, result, exc in tqdm(done, total=len(futures), desc="ingest", unit="task", disable=bar_disabled(progress)):
        if exc is None:
            results.append((task, result))
            continue
        # a bug or a storage failure in one task: report it, go on with the others
        log.error("task %s failed: %r", task.key, exc)
        errors.append({"task": task.key, "error": f"{type(exc).__name__}: {exc}",
                       "files": [u for g in task.groups for u in g.urls],
                       "dates": [g.date.isoformat() for g in task.groups if g.date is not None]})  # fmt: skip
    check()
    _record_written(cfg, cube, results)
    report = _assemble(cfg, p, [r for _, r in results], errors, started, time.perf_counter() - t0)
    if old_end is not None:
        report["not_run"] = {"extended_from": old_end.isoformat(), "tasks": not_run}
    check()
    if cfg.inputs is not None and cfg.inputs.precip is not None:
        report["antecedent"] = _antecedent(cfg, client, report, _first_changed(cube, results))
        report["summary"] = summarize(report)
    dest = report_at or report_ref(cfg.stores.ref("cube"))
    earlier = {} if overwrite else _previous(dest)  # a new cube: its own files only
    report["provenance"] = _merge_provenance(earlier, report["provenance"])
    check()
    report["report"] = files.write_url(dest, json.dumps(report, indent=1, sort_keys=False))
    return report


def _record_written(cfg: Config, cube: xr.Dataset, results: Sequence[tuple[Any, Mapping[str, Any]]]) -> None:
    """Add the rows the tasks wrote to the cube's record (:func:`dsm.store.record_written`), so a
    chunk lost from them later is an error, not a gap, and days predicted empty are redone; and
    the settings of the sources that wrote to its settings record."""
    wrote = [{v: [0, cube[v].shape[0]] if w == "static" else w for v, w in r.get("wrote", {}).items()}
             for _, r in results]
    settings = _settings_after(cfg, cube, [t.source for (t, _), w in zip(results, wrote, strict=True) if w])
    store.record_written(cfg.stores.ref("cube"), cube.attrs, *wrote, also={fingerprint.CUBE_ATTR: settings})


def _first_changed(cube: xr.Dataset, results: Sequence[tuple[Any, Mapping[str, Any]]]) -> int:
    """The first day index whose antecedent indices may have changed: the first precipitation day
    this ingest wrote, or the first day without indices yet (rows of ``api_age`` recorded
    written); 0 when the cube has no indices or the land mask was written (every chunk is written)."""
    spin = cube.sizes.get("time_precip", cube.sizes["time"]) - cube.sizes["time"]
    rows = cube.attrs.get(store.WRITTEN_ATTR, {}).get("api_age") or []
    first = int(rows[0][1]) if rows and int(rows[0][0]) == 0 else 0
    for _, r in results:
        if "land_mask" in r.get("wrote", {}):  # water pixels get no indices: every day may change
            return 0
        wrote = r.get("wrote", {}).get("precip")
        if wrote and wrote != "static":
            first = min(first, max(0, int(wrote[0]) - spin))
    return first


def _antecedent(cfg: Config, client: Any, report: dict[str, Any], from_index: int = 0) -> dict[str, Any]:
    """After the precipitation writes: the antecedent indices (:func:`dsm.antecedent.write_antecedent`),
    written from the time chunk of day index ``from_index`` on (:func:`_first_changed`).

    Skipped when a precipitation task failed. A cube without precipitation (InputError) is
    reported; any other failure is recorded as a task error.
    """
    if any(e["task"].startswith("ingest-precip-") for e in report["task_errors"]):
        return {"skipped": "a precipitation task failed: the indices were not recomputed"}
    try:
        summary = write_antecedent(cfg.stores.ref("cube"), cfg.rain, client, from_index)
    except InputError as exc:  # no precipitation in the cube yet: say so, nothing is broken
        log.warning("antecedent indices not written: %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # noqa: BLE001 - reported like a failed task; the report is still written
        log.error("antecedent indices failed: %r", exc)
        report["task_errors"].append({"task": "antecedent", "error": f"{type(exc).__name__}: {exc}", "files": []})
        return {"error": f"{type(exc).__name__}: {exc}"}
    return summary.to_dict()
