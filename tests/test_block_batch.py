"""A block's days modelled at once, one call per model per block (:func:`dsm.block_models.model_days`),
give bit for bit what its days give one by one (:func:`dsm.block_models.model_day`), on the tiny twin
with both methods' trained models, clouds, days without SMAP, impossible values, anomaly
partners, a running-mean window's halo days, a day without a model and two periods' plans."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import zarr

from dsm import blocks, products, store
from dsm.block_models import apply_model, model_day, model_days
from dsm.blocks import BlockJob, block_features
from dsm.config import from_dict
from dsm.cube import API_NAMES
from dsm.dayplans import fusion_card, make_plans
from dsm.grid import FINE_PER_COARSE as F
from dsm.models.store import ModelStore
from dsm.periods import period_of, time_position
from dsm.ranges import SMAP, merge_counts, screen, screen_layers
from dsm.stages.train import train
from dsm.storeref import StoreRef

pytestmark = pytest.mark.slow  # make test-fast leaves these out

START = dt.date(2016, 6, 9)
BAD_DAY = 18  # day index with impossible LST and SMAP values written into the copy of the cube


def _config(cube: str, root, method: str):
    training = ({"method": "fusion", "min_samples": 30, "fusion": {"grid": {"max_depth": [3], "min_child_weight": [5],
                                                                             "reg_lambda": [1.0]},
                                                                    "max_rounds": 60, "cv_folds": 2}}
                if method == "fusion" else
                {"method": "rao2022", "min_samples": 30, "models": ["xgb"], "pooled": False, "cv_folds": 2,
                 "grids": {"xgb": {"n_estimators": [20], "max_depth": [3]}}})
    return from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
                      "stores": {"cube": cube, "models": str(root / "models"), "output": str(root / "sm.zarr")},
                      "chunks": {"space": 72, "time": 8}, "training": training,
                      "output": {"uncertainty": "quantile"}})


@pytest.fixture(scope="module")
def twin(tiny_twin, tmp_path_factory, client) -> SimpleNamespace:
    """Both methods trained on the tiny twin, and a copy of its cube to predict from with, on day
    BAD_DAY, impossible values (LST 1e30 over one cell, SMAP 1.5 in an observed cell), a gap in
    the precipitation record over two cells (the rain-free variants) and no NDVI in a strip of
    its 16-day composite (the static variant)."""
    root = tmp_path_factory.mktemp("block_batch")
    cfgs = {}
    for method in ("fusion", "rao2022"):
        cfg = _config(tiny_twin.cube.url, root / method, method)
        assert train(cfg, client).failed == {}
        cfgs[method] = cfg
    bad = str(root / "bad_cube.zarr")
    shutil.copytree(tiny_twin.cube.url, bad)
    lst = zarr.open_array(f"{bad}/lst", mode="r+")
    day = lst[BAD_DAY]
    day[:F, :F] = 1e30
    lst[BAD_DAY] = day
    smap = zarr.open_array(f"{bad}/smap_sm", mode="r+")
    observed = np.argwhere(np.isfinite(smap[BAD_DAY][:2, :2]))  # in the blocks at (0, 0)
    assert len(observed)
    smap[(BAD_DAY, *observed[0])] = 1.5
    precip = zarr.open_array(f"{bad}/precip", mode="r+")
    at = BAD_DAY + precip.shape[0] - lst.shape[0]  # time_precip starts with the spin-up
    day = precip[at]
    day[F:2 * F, :2 * F] = np.nan
    precip[at] = day
    ndvi = zarr.open_array(f"{bad}/ndvi", mode="r+")
    at = (period_of(START + dt.timedelta(BAD_DAY)).start - START).days // 16
    layer = ndvi[at]
    layer[F + 10:F + 14, :F] = np.nan
    ndvi[at] = layer
    return SimpleNamespace(bad=bad, **cfgs)


def _job(cfg, cube: str, t0: int, t1: int, y0: int, x0: int, half: int = 0, error: int | None = None) -> BlockJob:
    models = ModelStore(cfg.stores.ref("models"))
    days = [START + dt.timedelta(i) for i in range(48)]
    plans = make_plans(cfg, models, days, fusion_card(models) if cfg.training.method == "fusion" else None)
    if error is not None:
        plans[error] = replace(plans[error], variants=(), error="test: no model for this day")
    return BlockJob(StoreRef(cube), cfg.stores.ref("output"), cfg.stores.ref("models"), f"batch-{t0}-{y0}-{x0}",
                    t0, t1, y0, y0 + 72,
                    x0, x0 + 72, tuple(plans[t0:t1]), rain_spinup=cfg.rain.spinup_days,
                    before=tuple(plans[max(0, t0 - half):t0]), after=tuple(plans[t1:t1 + half]))


def _day_by_day(job: BlockJob) -> dict[dt.date, tuple[Any, ...]]:
    """What the block's days give one by one: each day's predictors read and screened alone,
    :func:`model_day` (with today's loader), the day's masked and missing summaries."""
    cube = blocks._open(job.cube, job.token, "raw")
    ys, xs = slice(job.y0, job.y1), slice(job.x0, job.x1)
    land = store.read_values_checked(cube, "land_mask", y=ys, x=xs) == 1
    names = sorted({p for plan in job.plans for v in plan.variants for p in v.predictors})
    if job.rain_spinup and any(p in API_NAMES for p in names):
        names.append("api_age")
    out = {}
    for plan in (*job.before, *job.plans, *job.after):
        if plan.error:
            continue
        feats, bad = screen_layers(block_features(cube, plan.day, names, ys, xs, {}))
        smap, smap_bad = screen(SMAP, store.read_values_checked(cube, SMAP, time=time_position(cube.indexes["time"], plan.day),
                                                   cy=slice(job.y0 // F, job.y1 // F),
                                                   cx=slice(job.x0 // F, job.x1 // F)).astype(np.float32))
        modelled = model_day(feats, land, smap, plan,
                             lambda k, s: blocks.load_model(job.models, k, s),
                             job.rain_spinup, out_of_range=bad, smap_out_of_range=smap_bad)
        masked = merge_counts([{p: int((m & land).sum()) for p, m in bad.items()}, {SMAP: int(smap_bad.sum())}])
        missing = [p for p in names if p != "api_age" and not np.isfinite(feats[p][land]).any()]
        out[plan.day] = (*modelled, masked, missing)
    return out


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _check_block(job: BlockJob) -> dict[dt.date, tuple[Any, ...]]:
    mb = blocks._model_block(job)
    want = _day_by_day(job)
    assert set(mb.modelled) == set(want)
    for day, (model, unc, origin, counts, detail, masked, missing) in want.items():
        got = mb.modelled[day]
        for name, a, b in (("model", got[0], model), ("unc", got[1], unc), ("origin", got[2], origin),
                           ("detail", got[4], detail)):
            assert _same_bits(a, b), f"{day} {name}: the block differs from the day alone"
        assert got[3] == counts and list(got[3]) == list(counts)
        assert mb.masked[day] == masked and mb.missing[day] == missing
    return want


class _Counting:
    """A stored model that counts the calls made of it and the rows asked (a real model inside)."""

    def __init__(self, model: Any, calls: list[tuple[str, int]], key: str) -> None:
        self.model, self.calls, self.key = model, calls, key

    def predict(self, X: np.ndarray) -> np.ndarray:
        self.calls.append((self.key, len(X)))
        return apply_model(self.model, X)


def _loader(models: StoreRef, calls: list[tuple[str, int]]) -> Any:
    return lambda key, sha: _Counting(blocks.load_model(models, key, sha), calls, key)


@pytest.mark.timeout(600)
def test_a_fusion_block_with_partners_halo_days_and_a_day_without_model_is_modelled_as_day_by_day(twin):
    job = _job(twin.fusion, twin.bad, 16, 24, 0, 0, half=1, error=20)
    assert job.plans[0].partners and len(job.before) == len(job.after) == 1
    want = _check_block(job)
    assert dt.date(2016, 6, 29) not in want and len(want) == 9  # 8 days + 2 halo days - the day without model
    # the block has what the comparison must cover: several variants, no-SMAP pixels, impossible
    # values moved to another variant, a short precipitation record
    bad_day = want[START + dt.timedelta(BAD_DAY)]
    assert all(n > 0 for n in bad_day[3].values()) and len(bad_day[3]) == 5 and bad_day[5][SMAP] == 1 and bad_day[5]["lst"] > 100
    origins = np.stack([w[2] for w in want.values()])
    for bit in (products.NO_SMAP, products.INPUT_OUT_OF_RANGE, products.ALL_PREDICTORS, products.REDUCED):
        assert (origins & bit).any(), bit
    assert all(not np.array_equal(w[0], w[4], equal_nan=True) for w in want.values())  # partners changed detail


@pytest.mark.timeout(600)
def test_a_rao2022_block_over_two_periods_with_quantiles_is_modelled_as_day_by_day(twin):
    job = _job(twin.rao2022, twin.bad, 12, 20, 0, 0)
    assert len({p.period for p in job.plans}) == 2 and all(v.quantile_key for v in job.plans[0].variants)
    want = _check_block(job)
    assert np.isfinite(np.stack([w[1] for w in want.values()])).sum() > 1000
    assert (np.stack([w[2] for w in want.values()]) & products.INPUT_OUT_OF_RANGE).any()


@pytest.mark.timeout(300)
def test_each_model_is_called_once_per_block_over_all_its_rows(twin):
    """model_days on the block's days: one call per stored model (a variant's own rows, and those
    it predicts as disaggregation model or anomaly partner), as many rows as day by day."""
    for cfg, t0 in ((twin.fusion, 16), (twin.rao2022, 12)):
        job = _job(cfg, twin.bad, t0, t0 + 8, 0, 0)
        cube = blocks._open(job.cube, job.token, "raw")
        ys = xs = slice(0, 72)
        land = store.read_values_checked(cube, "land_mask", y=ys, x=xs) == 1
        names = sorted({p for plan in job.plans for v in plan.variants for p in v.predictors}) + ["api_age"]
        days = [block_features(cube, p.day, names, ys, xs, {}) for p in job.plans]
        feats = {n: np.stack([d[n] for d in days]) for n in names}
        smaps = np.stack([store.read_values_checked(cube, SMAP, time=time_position(cube.indexes["time"], p.day),
                                       cy=slice(0, 2), cx=slice(0, 2)).astype(np.float32) for p in job.plans])
        batched: list[tuple[str, int]] = []
        single: list[tuple[str, int]] = []
        got = model_days(feats, land, smaps, job.plans, _loader(job.models, batched), job.rain_spinup)
        for i, p in enumerate(job.plans):
            one = model_day({n: a[i] for n, a in feats.items()}, land, smaps[i], p, _loader(job.models, single),
                            job.rain_spinup)
            assert _same_bits(got[0][i], one[0]) and _same_bits(got[2][i], one[2]) and got[3][i] == one[3]
        keys = [k for k, _ in batched]
        assert len(keys) == len(set(keys)) == len({k for k, _ in single}) >= 4
        assert len(single) > len(batched)
        rows = {k: sum(n for kk, n in single if kk == k) for k in keys}
        assert dict(batched) == rows


@pytest.mark.timeout(300)
def test_a_block_read_ahead_reads_nothing_itself_and_models_the_same(twin, read_calls):
    """The block a worker predicts starts the reads of the one it takes next (``ahead``); that
    block's task then reads nothing itself, and models bit for bit what it models reading alone."""
    job = _job(twin.fusion, twin.bad, 16, 24, 0, 0, half=1)
    alone = blocks._model_block(job)
    before = replace(_job(twin.fusion, twin.bad, 8, 16, 0, 0), token=job.token, ahead=job)
    blocks._model_block(before)  # its own reads, then job's started
    assert blocks._ahead_key(job) in blocks._ahead
    calls = read_calls
    calls.clear()
    ahead = blocks._model_block(job)
    assert calls == [] and blocks._ahead_key(job) not in blocks._ahead  # taken, not kept
    assert set(ahead.modelled) == set(alone.modelled)
    for day, got in ahead.modelled.items():
        for a, b in zip(got[:3], alone.modelled[day][:3], strict=True):
            assert _same_bits(a, b)
    blocks._model_block(job)  # nothing started ahead any more: it reads for itself
    assert len(calls) == 1 and len(calls[0]) > 10
    # at most AHEAD_BLOCKS blocks are kept under way in a process: the oldest are dropped
    for y0 in (0, 72, 0):
        blocks.read_ahead(replace(job, y0=y0, y1=y0 + 72, x0=72, x1=144))
    blocks.read_ahead(job)
    assert len(blocks._ahead) == blocks.AHEAD_BLOCKS and blocks._ahead_key(job) in blocks._ahead
    blocks._take_ahead(job)
    # a next block that cannot even be planned (its cube gone) does not fail the current one
    gone = replace(job, cube=StoreRef(str(Path(twin.bad).parent / "no_such_cube.zarr")))
    got = blocks._model_block(replace(job, ahead=gone))
    assert set(got.modelled) == set(alone.modelled) and blocks._ahead_key(gone) not in blocks._ahead
