"""The worker side of the predict stage: one block of the output store, read, modelled and written.

A :class:`BlockJob` carries everything a worker needs (the stores' handles, the days' plans, the
block's fused cell means). :func:`run_block` reads its block of the cube through fsspec,
builds float32 features of the valid land pixels only, applies the models once each over
all the block's days (:func:`dsm.block_models.model_days`; ``Booster.inplace_predict`` for
XGBoost), sets the origin bits, writes ``sm``, ``sm_unc``,
``sm_origin`` and ``sm_36km`` by chunk-aligned region writes and returns small per-day
summaries. :func:`station_parts` computes the same maps' parts at a few pixels without writing
(the anomaly gain's calibration at stations).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
import xgboost

from dsm import products, store, zarr_reads
from dsm.block_models import model_day, model_days
from dsm.cellmeans import BlockCells, DayCells, fuse_block, fusion_parts, running_mean, within_cell_anomaly
from dsm.cube import API_NAMES, SPECS, layer_time
from dsm.dayplans import DayPlan
from dsm.grid import Region, block_reduce_mean, repeat_to_fine
from dsm.models.store import ModelStore
from dsm.periods import time_position
from dsm.ranges import SMAP, merge_counts, screen, screen_layers
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockJob:
    """One (time chunk, space chunk) block of the output store: everything a worker needs."""

    cube: StoreRef
    output: StoreRef
    models: StoreRef
    token: str  # run id: invalidates worker caches between runs
    t0: int
    t1: int
    y0: int
    y1: int
    x0: int
    x1: int
    plans: tuple[DayPlan, ...]
    clip: tuple[float, float] = (0.0, 1.0)
    residual_correction: bool = False
    threads: int = 1
    device: str = "cpu"  # XGBoost's device for prediction (cluster.device)
    cells: BlockCells | None = None  # fusion method: the block's fused cell means
    var_anomaly: float = 0.0
    anomaly_gain: float = 1.0
    interval: float | None = None
    smooth: str = "none"
    rain_spinup: int = 0  # rain.spinup_days: flag pixel-days with a shorter precipitation record
    window: int = 1  # fusion: days of the centred running mean of the within-cell anomaly
    before: tuple[DayPlan, ...] = ()  # the plans of the window's days before and after the block
    after: tuple[DayPlan, ...] = ()
    ahead: BlockJob | None = None  # the block this worker is expected to take next: read ahead (read_ahead)


_open = store.open_cached  # the cube and the output store, once per worker and run


@functools.lru_cache(maxsize=64)
def load_model(models: StoreRef, key: str, sha: str, threads: int = 1, device: str = "cpu") -> Any:
    """A stored model, cached per worker process (keyed by its SHA-256); XGBoost models come
    back as a Booster set to ``threads`` and ``device``."""
    model = ModelStore(models).load_model(key)
    if isinstance(model, xgboost.XGBModel):
        booster = model.get_booster()
        booster.set_param({"nthread": threads, "device": device})
        return booster
    return model


def read_all(cube: xr.Dataset, reads: Mapping[Any, tuple[str, Mapping[str, Any]]],
             started: Future[dict[Any, np.ndarray]] | None = None) -> dict[Any, np.ndarray]:
    """Every read ``key -> (variable, isel index)`` of a block at once, in one call of zarr's
    async API (:func:`dsm.zarr_reads.read_selections`, whose errors name the store, variable and
    chunk); ``started``: the same reads already under way (:func:`read_ahead`)."""
    return started.result() if started is not None else zarr_reads.read_selections(cube, reads)


#: Blocks whose reads a worker process keeps under way ahead of their task (:func:`read_ahead`).
AHEAD_BLOCKS = 2
_ahead: OrderedDict[tuple[Any, ...], Future[dict[Any, np.ndarray]]] = OrderedDict()
_ahead_lock = threading.Lock()


@functools.cache
def _ahead_threads() -> ThreadPoolExecutor:
    """The threads that read blocks ahead, one per block kept (apart from the read threads,
    which their reads may use)."""
    return ThreadPoolExecutor(max_workers=AHEAD_BLOCKS, thread_name_prefix="dsm-ahead")


def _ahead_key(job: BlockJob) -> tuple[Any, ...]:
    return (job.token, job.cube.url, job.t0, job.t1, job.y0, job.y1, job.x0, job.x1)


def read_ahead(job: BlockJob) -> None:
    """Start the reads of block ``job`` on an ahead thread without waiting for them, so they run
    while this worker predicts its current block; the task of ``job``, when it runs in this
    process, takes them (:func:`_take_ahead`). At most :data:`AHEAD_BLOCKS` blocks are kept
    under way; an older one is dropped (its task, run elsewhere, reads for itself)."""
    cube = _open(job.cube, job.token, "raw")
    started = _ahead_threads().submit(read_all, cube, _block_reads(job, cube).reads)
    with _ahead_lock:
        _ahead[_ahead_key(job)] = started
        while len(_ahead) > AHEAD_BLOCKS:
            _ahead.popitem(last=False)


def _take_ahead(job: BlockJob) -> Future[dict[Any, np.ndarray]] | None:
    """The reads of ``job`` started ahead in this process (:func:`read_ahead`), no longer kept there."""
    with _ahead_lock:
        return _ahead.pop(_ahead_key(job), None)


def layer_read(cube: xr.Dataset, name: str, day: dt.date) -> tuple[tuple[Any, ...], dict[str, int]]:
    """The cache key and the time index of predictor ``name``'s layer for ``day``: the day's
    daily layer, the 8-day or 16-day composite covering it, or the static layer
    (:func:`dsm.cube.layer_time`)."""
    where = layer_time(name, day)
    if where is None:
        return (name,), {}
    return (name, *where), {where[0]: time_position(cube.indexes[where[0]], where[1])}


def layer_reads(cube: xr.Dataset, days: Sequence[dt.date], names: Sequence[str], ys: slice, xs: slice,
                cache: Mapping[Any, np.ndarray]) -> dict[Any, tuple[str, dict[str, Any]]]:
    """The reads (:func:`read_all`) of the layers of ``names`` on ``days`` that ``cache`` lacks,
    each layer once (keys of :func:`layer_read`)."""
    reads: dict[Any, tuple[str, dict[str, Any]]] = {}
    for day in days:
        for name in names:
            key, index = layer_read(cube, name, day)
            if key not in cache:
                reads.setdefault(key, (name, {**index, "y": ys, "x": xs}))
    return reads


def block_features(cube: xr.Dataset, day: dt.date, names: Sequence[str], ys: slice, xs: slice,
                   cache: dict[Any, np.ndarray]) -> dict[str, np.ndarray]:
    """Each predictor of ``day`` on a block: the day's daily layers, the 8-day and 16-day
    composites covering it, the static layers (float32, NaN where missing); the layers not in
    ``cache`` are read together (:func:`layer_reads`, :func:`read_all`) and kept there."""
    todo = layer_reads(cube, [day], names, ys, xs, cache)
    cache.update((key, a.astype(np.float32, copy=False)) for key, a in read_all(cube, todo).items())
    return {name: cache[layer_read(cube, name, day)[0]] for name in names}


def finish_day(model: np.ndarray, unc: np.ndarray, origin: np.ndarray, smap: np.ndarray,
               clip: tuple[float, float] = (0.0, 1.0), residual_correction: bool = False,
               cells: DayCells | None = None, anomaly: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The day's map from the model's (:func:`model_day`): fused with the cell means (fusion
    method; ``anomaly`` replaces the model's own within-cell anomaly, e.g. its running mean),
    else clipped and optionally shifted to SMAP's cell means (``residual_correction``)."""
    if cells is not None:
        return fuse_block(model, origin, cells, clip, anomaly)
    sm = np.where(np.isfinite(model), np.clip(model, *clip), np.nan).astype(np.float32)
    if residual_correction:
        sm = residual_correct(sm, smap, clip)
    return sm, unc, origin


def predict_day(feats: Mapping[str, np.ndarray], land: np.ndarray, smap: np.ndarray, plan: DayPlan,
                load: Callable[[str, str], Any], clip: tuple[float, float] = (0.0, 1.0),
                residual_correction: bool = False, cells: DayCells | None = None, rain_spinup: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Soil moisture, uncertainty, origin and per-variant pixel counts of one day on one block:
    :func:`model_day` then :func:`finish_day` (pure given ``load``; inputs as read, screened
    here, :mod:`dsm.ranges`)."""
    smap, smap_bad = screen(SMAP, smap)
    model, unc, origin, counts, detail = model_day(feats, land, smap, plan, load, rain_spinup,
                                                   smap_out_of_range=smap_bad)
    anomaly = within_cell_anomaly(detail, land.shape[-2] // smap.shape[-2]) if plan.partners else None
    return (*finish_day(model, unc, origin, smap, clip, residual_correction, cells, anomaly), counts)


def residual_correct(sm: np.ndarray, smap: np.ndarray, clip: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Shift each cell's pixels so the cell mean equals SMAP where SMAP observed it (``smap``
    screened: :func:`run_block` and :func:`predict_day` pass only valid values, :mod:`dsm.ranges`)."""
    f = sm.shape[-2] // smap.shape[-2]
    means = block_reduce_mean(sm, factor=f)
    shift = np.where(np.isfinite(smap) & np.isfinite(means), smap - means, 0.0).astype(np.float32)
    full = repeat_to_fine(shift, f)
    return np.where(np.isfinite(sm), np.clip(sm + full, *clip), np.nan).astype(np.float32)


@dataclass
class _ModelledBlock:
    """The 1 km models of a block's days (and of the running-mean window's halo days)."""

    land: np.ndarray
    modelled: dict[dt.date, tuple[Any, ...]]  # day -> model_day's (model, unc, origin, counts, detail)
    anomalies: np.ndarray | None  # (t, y, x): the within-cell anomaly (partners, running mean), or None
    smaps: np.ndarray  # (days read, cy, cx), screened
    day_index: list[int]  # index into smaps of each day of (before, plans, after)
    masked: dict[dt.date, dict[str, int]]
    missing: dict[dt.date, list[str]]


@dataclass
class _BlockReads:
    """What a block reads (:func:`_block_reads`): its days and layers, and the reads themselves."""

    all_names: list[str]  # the predictors of its plans (and api_age)
    seq: tuple[DayPlan, ...]  # the plans of the window's days before, the block's days, those after
    day_index: list[int]  # the cube's time position of each day of seq
    run: list[tuple[DayPlan, int]]  # the days modelled, each with its index into the daily layers read
    daily: list[str]  # the daily layers (read over all the days at once)
    rest: list[str]  # the composites and static layers (each layer once)
    reads: dict[Any, tuple[str, dict[str, Any]]]  # key -> (variable, isel index), for read_all


def _block_reads(job: BlockJob, cube: xr.Dataset) -> _BlockReads:
    """Every layer ``job``'s block reads: the daily layers and SMAP over all its days (and the
    halo days of a running-mean anomaly: they are consecutive, so each is decoded once, rather
    than a time chunk per day), each composite and static layer once (keys of :func:`layer_read`),
    the land mask."""
    ys, xs = slice(job.y0, job.y1), slice(job.x0, job.x1)
    f = Region.from_dict(cube.attrs["region"]).fine_per_coarse
    cys, cxs = slice(job.y0 // f, job.y1 // f), slice(job.x0 // f, job.x1 // f)
    all_names = sorted({p for plan in job.plans for v in plan.variants for p in v.predictors})
    if job.rain_spinup and any(p in API_NAMES for p in all_names):
        all_names.append("api_age")
    seq = (*job.before, *job.plans, *job.after)
    day_index = [time_position(cube.indexes["time"], plan.day) for plan in seq]
    ct0, ct1 = min(day_index), max(day_index) + 1
    run = [(plan, ct - ct0) for plan, ct in zip(seq, day_index, strict=True) if not plan.error]  # days modelled
    spinup = int(cube.sizes.get("time_precip", cube.sizes["time"])) - int(cube.sizes["time"])
    daily = [n for n in all_names if n in SPECS and SPECS[n].axis in ("daily", "precip")]
    rest = [n for n in all_names if n not in daily]
    reads: dict[Any, tuple[str, dict[str, Any]]] = {
        ("", "land"): ("land_mask", {"y": ys, "x": xs}), ("", SMAP): (SMAP, {"time": slice(ct0, ct1), "cy": cys, "cx": cxs})}
    for name in daily:
        shift = spinup if SPECS[name].axis == "precip" else 0
        dim = "time_precip" if SPECS[name].axis == "precip" else "time"
        reads[("", name)] = (name, {dim: slice(ct0 + shift, ct1 + shift), "y": ys, "x": xs})
    reads.update(layer_reads(cube, [plan.day for plan, _ in run], rest, ys, xs, {}))
    return _BlockReads(all_names, seq, day_index, run, daily, rest, reads)


def _model_block(job: BlockJob) -> _ModelledBlock:
    """Read a block of the cube and apply the day plans' models to it, each model once over all
    the block's days (:func:`dsm.block_models.model_days`; runs on a worker). Its reads, or
    those :func:`read_ahead` started for it, done, the next block's (``job.ahead``) are started."""
    cube = _open(job.cube, job.token, "raw")
    ys, xs = slice(job.y0, job.y1), slice(job.x0, job.x1)
    f = Region.from_dict(cube.attrs["region"]).fine_per_coarse

    def load(key: str, sha: str) -> Any:
        return load_model(job.models, key, sha, job.threads, job.device)

    br = _block_reads(job, cube)
    all_names, seq, day_index, run, daily, rest = br.all_names, br.seq, br.day_index, br.run, br.daily, br.rest
    ct0 = min(day_index)
    at = np.array([i for _, i in run], int)
    got = read_all(cube, br.reads, _take_ahead(job))
    if job.ahead is not None:
        try:
            read_ahead(job.ahead)
        except Exception:  # noqa: BLE001 - that block's own task reads again and reports what fails
            log.debug("reading ahead block t %d, y %d, x %d failed to start", job.ahead.t0, job.ahead.y0,
                      job.ahead.x0, exc_info=True)
    land = got.pop(("", "land")) == 1
    smaps, smaps_bad = screen(SMAP, got.pop(("", SMAP)).astype(np.float32))
    feats = {name: got.pop(("", name)).astype(np.float32, copy=False)[at] for name in daily}
    cache = {key: a.astype(np.float32, copy=False) for key, a in got.items()}
    per_day = [block_features(cube, plan.day, rest, ys, xs, cache) for plan, _ in run]  # all cached: no read
    feats.update({n: np.stack([d[n] for d in per_day]) if run else np.empty((0, *land.shape), np.float32)
                  for n in rest})
    assert smaps_bad is not None  # SMAP has a valid range
    feats, bad = screen_layers(feats)
    model, unc, origin, counts, detail = model_days(feats, land, smaps[at], [plan for plan, _ in run], load,
                                                    job.rain_spinup, out_of_range=bad, smap_out_of_range=smaps_bad[at])
    bad_land = {p: (m & land).sum(axis=(1, 2)) for p, m in bad.items()}
    found = {p: np.isfinite(feats[p][:, land]).any(axis=1) for p in all_names if p != "api_age"}
    modelled: dict[dt.date, tuple[Any, ...]] = {}
    missing: dict[dt.date, list[str]] = {}
    masked: dict[dt.date, dict[str, int]] = {}
    for k, (plan, i) in enumerate(run):
        modelled[plan.day] = (model[k], unc[k], origin[k], counts[k], detail[k] if plan.partners else model[k])
        masked[plan.day] = merge_counts([{p: int(n[k]) for p, n in bad_land.items()}, {SMAP: int(smaps_bad[i].sum())}])
        missing[plan.day] = [p for p in all_names if p != "api_age" and not found[p][k]]
    anomalies = None
    if job.cells is not None and (job.window > 1 or any(p.partners for p in seq)):
        nan = np.full(land.shape, np.nan, np.float32)
        stack = np.stack([within_cell_anomaly(modelled[p.day][4], f) if p.day in modelled else nan for p in seq])
        anomalies = (running_mean(stack, job.window) if job.window > 1 else stack)[
            len(job.before):len(job.before) + job.t1 - job.t0]
    return _ModelledBlock(land, modelled, anomalies, smaps, [i - ct0 for i in day_index], masked, missing)


def _day_cells(job: BlockJob, i: int) -> DayCells | None:
    """Day ``i`` of the block's fused cell means (None: the paper's method)."""
    bc = job.cells
    return None if bc is None else DayCells(
        bc.cell_mean[i], bc.increment[i], bc.variance[i], bc.state[i], job.var_anomaly, job.anomaly_gain,
        job.interval, None if bc.halo is None else bc.halo[i], job.smooth,
        None if bc.screened is None else bc.screened[i])


def station_parts(job: BlockJob, pixels: Sequence[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The fusion map's parts ``B`` and ``a`` (:func:`dsm.cellmeans.fusion_parts`) at some
    pixels of a block (rows, columns within the block) on each of its days, for calibrating
    the anomaly gain at stations (runs on a worker; writes nothing).

    Returns ``{"base": (t, n), "anomaly": (t, n), "var_cell": (t, n)}`` (``var_cell``: the
    error variance of the pixel's fused cell mean), NaN where the pixel was not predicted.
    """
    mb = _model_block(job)
    rows = np.array([p[0] for p in pixels], int)
    cols = np.array([p[1] for p in pixels], int)
    base = np.full((len(job.plans), len(pixels)), np.nan, np.float32)
    anomaly = np.full_like(base, np.nan)
    var_cell = np.full_like(base, np.nan)
    for i, plan in enumerate(job.plans):
        cells = _day_cells(job, i)
        if plan.error or cells is None or plan.day not in mb.modelled:
            continue
        model = mb.modelled[plan.day][0]
        b, a = fusion_parts(model, cells, None if mb.anomalies is None else mb.anomalies[i])
        ok = np.isfinite(model[rows, cols])
        f = model.shape[-2] // cells.variance.shape[-2]
        base[i] = np.where(ok, b[rows, cols], np.nan)
        anomaly[i] = np.where(ok, a[rows, cols], np.nan)
        var_cell[i] = np.where(ok, cells.variance[rows // f, cols // f], np.nan)
    return {"base": base, "anomaly": anomaly, "var_cell": var_cell}


def run_block(job: BlockJob) -> dict[str, Any]:
    """Predict and write one block of the output store (runs on a worker).

    Returns per-day summaries: pixel counts per variant, origin bit counts, predictors with no
    valid land pixel in the block, the (cell, 36 km mean, SMAP) pairs and the values masked as
    impossible (``out_of_range``: land pixels per predictor, SMAP cells under ``smap_sm``).
    """
    cube = _open(job.cube, job.token, "raw")
    out = _open(job.output, job.token, products.KIND)
    ys, xs = slice(job.y0, job.y1), slice(job.x0, job.x1)
    region = Region.from_dict(cube.attrs["region"])
    f = region.fine_per_coarse
    cys, cxs = slice(job.y0 // f, job.y1 // f), slice(job.x0 // f, job.x1 // f)
    cell_ids = region.cell_ids[cys, cxs]
    mb = _model_block(job)
    nt = job.t1 - job.t0
    shape = (nt, job.y1 - job.y0, job.x1 - job.x0)
    sm = np.full(shape, np.nan, np.float32)
    unc = np.full(shape, np.nan, np.float32)
    origin = np.zeros(shape, products.ORIGIN_DTYPE)
    sm36 = np.full((nt, cell_ids.shape[0], cell_ids.shape[1]), np.nan, np.float32)
    summaries = []
    for i, plan in enumerate(job.plans):
        info: dict[str, Any] = {"day": plan.day.isoformat(), "land": int(mb.land.sum())}
        if plan.error:
            info["error"] = plan.error
            summaries.append(info)
            continue
        smap = mb.smaps[mb.day_index[len(job.before) + i]]
        model, u, o, counts, _ = mb.modelled[plan.day]
        s, u, o = finish_day(model, u, o, smap, job.clip, job.residual_correction, _day_cells(job, i),
                             None if mb.anomalies is None else mb.anomalies[i])
        sm[i], unc[i], origin[i] = s, u, o
        sm36[i] = block_reduce_mean(s, factor=f)
        info["counts"] = counts
        info["valid"] = int(np.isfinite(s).sum())
        stored = store.encode_like(xr.Variable(("y", "x"), s), out["sm"], "sm")  # the bytes export will read
        info["digest"] = products.digest_part(stored, job.y0, job.x0)
        info["origin"] = {str(b): n for b, n in products.origin_counts(o).items()}
        info["missing"] = mb.missing[plan.day]
        info["out_of_range"] = mb.masked[plan.day]
        ok = np.isfinite(sm36[i]) & np.isfinite(smap)
        info["pairs"] = [[int(c), float(a), float(b)]
                         for c, a, b in zip(cell_ids[ok], sm36[i][ok], smap[ok], strict=True)]
        summaries.append(info)
    coords = {"time": out["time"].values[job.t0:job.t1], "y": out["y"].values[ys], "x": out["x"].values[xs],
              "cy": out["cy"].values[cys], "cx": out["cx"].values[cxs]}
    part = xr.Dataset({"sm": (("time", "y", "x"), sm), "sm_unc": (("time", "y", "x"), unc),
                       "sm_origin": (("time", "y", "x"), origin), "sm_36km": (("time", "cy", "cx"), sm36)},
                      coords=coords)
    store.write_region(job.output, part, out)  # the four arrays written together
    return {"t0": job.t0, "y0": job.y0, "x0": job.x0, "days": summaries}
