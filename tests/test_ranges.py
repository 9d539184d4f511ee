"""Impossible input values: masked, counted and reported at ingest, in the
samples (training and the 36 km cell means) and at prediction, where they also set origin bit
256; SMAP outside [0.02, 0.5] never enters training, fusion or residual correction.

The tiny twin gets LST 1e30 over a whole cell and +inf on one pixel, NDVI -5 and albedo -7 on
strips of pixels, SMAP 1.5 and -0.3 on two cell-days: the cases a hostile run found published.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
import zarr
from sklearn.dummy import DummyRegressor

from dsm import products, ranges, store
from dsm.block_models import model_day
from dsm.blocks import BlockJob, predict_day, run_block
from dsm.config import from_dict
from dsm.cube import Layout, open_cube
from dsm.dayplans import DayPlan, VariantPlan
from dsm.errors import StoreError
from dsm.grid import FINE_PER_COARSE, Region, block_reduce_mean
from dsm.models.cards import FUSION_KEY, FusionCard
from dsm.models.disaggregation import pixel_sample_graph
from dsm.models.store import ModelStore
from dsm.periods import period_of
from dsm.samples import OUT_OF_RANGE, OUT_OF_RANGE_ATTR, sample_graph, smap_grid
from dsm.stages.predict import open_or_create_output, predict
from dsm.storeref import StoreRef

F = FINE_PER_COARSE
REGION = Region(74, 772, 4, 4)  # the tiny twin
START, END = dt.date(2016, 6, 9), dt.date(2016, 7, 26)
D, D2 = dt.date(2016, 6, 27), dt.date(2016, 6, 30)  # SMAP observes every cell but (0, 1) on both
T, T2 = (D - START).days, (D2 - START).days
LST_CELL = (slice(0, F), slice(0, F))  # cell (0, 0): LST 1e30 on day D
LST_INF = (5, 80)  # one pixel of cell (0, 2): LST +inf on day D
NDVI_STRIP = (slice(36, 40), slice(0, F))  # cell (1, 0): NDVI -5 over the 16-day period of D
ALBEDO_STRIP = (slice(40, 44), slice(36, 72))  # cell (1, 1): albedo -7 on day D
SMAP_HIGH, SMAP_LOW = (1, 1), (1, 0)  # SMAP 1.5 on day D, -0.3 on day D2
P2 = period_of(D)


# ------------------------------------------------------------------------------ pure
def test_outside_and_screen_on_numpy_and_dask():
    v = np.array([1e30, 300.0, np.nan, np.inf, -np.inf, 150.0, 360.0, 149.9], np.float32)
    bad = np.array([True, False, False, True, True, False, False, True])
    np.testing.assert_array_equal(ranges.outside(v, (150.0, 360.0)), bad)
    out, mask = ranges.screen("lst", da.from_array(v, chunks=3))
    np.testing.assert_array_equal(mask.compute(), bad)
    np.testing.assert_array_equal(np.isnan(out.compute()), bad | np.isnan(v))
    # SMAP: its own valid_min/valid_max; a value stored at float32(0.02) is valid, in float32 or float64
    smap = np.array([0.02, 0.5, 1.5, -0.3, 0.019, np.inf], np.float32)
    for a in (smap, smap.astype(np.float64)):
        np.testing.assert_array_equal(ranges.screen("smap_sm", a)[1], [False, False, True, True, True, True])
    assert ranges.valid_range("smap_sm") == (0.02, 0.5)
    assert ranges.screen("not_a_variable", v)[1] is None
    layers, masks = ranges.screen_layers({"lst": v, "dem": np.array([100.0], np.float32)})
    assert set(masks) == {"lst"} and layers["lst"].dtype == np.float32 and np.isnan(layers["lst"][0])
    assert ranges.merge_counts([{"lst": 2, "smap_sm": 0}, {"lst": 1, "albedo": 4}]) == {"albedo": 4, "lst": 3}


def test_model_day_treats_impossible_values_as_missing_and_flags_what_it_changed():
    land = np.ones((F, 3 * F), bool)
    lst = np.full(land.shape, 300.0, np.float32)
    lst[:, :F] = 1e30  # cell 0: impossible LST everywhere
    lst[:4, F:] = np.nan  # cloud over four rows of cells 1 and 2
    albedo = np.full(land.shape, 0.2, np.float32)
    albedo[10:12, F:2 * F] = -7.0
    ndvi = np.full(land.shape, 0.4, np.float32)
    ndvi[20:22, 2 * F:] = -5.0
    ndvi[0:2, 2 * F:] = -5.0  # under the cloud too
    feats = {"lst": lst, "albedo": albedo, "ndvi": ndvi, "dem": np.full(land.shape, 1000.0, np.float32)}
    smap = np.array([[0.2, 1.5, 0.25]], np.float32)
    models = {k: DummyRegressor(strategy="constant", constant=c).fit(np.zeros((1, 1)), [c])
              for k, c in (("full", 0.3), ("no-lst", 0.25), ("static", 0.2))}
    plan = DayPlan(D, P2.name, P2.name, "xgb", False, (
        VariantPlan("full", ("lst", "albedo", "ndvi", "dem"), "full", "s"),
        VariantPlan("no-lst", ("albedo", "ndvi", "dem"), "no-lst", "s"),
        VariantPlan("static", ("dem",), "static", "s")))
    sm, _, origin, counts = predict_day(feats, land, smap, plan, lambda k, s: models[k], clip=(0.0, 1.0),
                                        residual_correction=True)
    oor = products.INPUT_OUT_OF_RANGE
    assert origin.dtype == np.uint16
    # cell 0: never the full model, which would have taken LST 1e30; the reduced one, flagged
    assert (origin[:, :F] == products.REDUCED | oor).all()
    np.testing.assert_allclose(block_reduce_mean(sm)[0, 0], 0.2, atol=1e-6)  # shifted to SMAP 0.2
    # cell 1: SMAP 1.5 is no observation (bits 16 and 256, no residual shift); albedo -7 -> static
    assert ((origin[:, F:2 * F] & (products.NO_SMAP | oor)) == products.NO_SMAP | oor).all()
    np.testing.assert_allclose(sm[10:12, F:2 * F], 0.2)
    assert (origin[10:12, F:2 * F] & products.REDUCED).all()
    assert sm[20, F + 5] == pytest.approx(0.3) and sm[0, F + 5] == pytest.approx(0.25)  # full; cloud: no-lst
    # cell 2: NDVI -5 -> static model and flagged; under cloud as well (no-lst would have used it)
    assert (origin[20:22, 2 * F:] == products.REDUCED | oor).all() and (origin[0:2, 2 * F:] & oor).all()
    assert (origin[2:4, 2 * F:] == products.REDUCED).all()  # cloud alone: reduced, not flagged
    assert (origin[10, 2 * F:] == products.ALL_PREDICTORS).all()
    assert counts["full"] == int(((origin & products.ALL_PREDICTORS) > 0).sum()) and sum(counts.values()) == land.sum()
    assert counts["static"] == 2 * F + 2 * 2 * F  # albedo -7 in cell 1, NDVI -5 in cell 2
    assert ((sm >= 0) & (sm <= 1)).all()
    # model_day alone screens what it is given as well
    _, _, alone, _, _ = model_day(feats, land, smap, plan, lambda k, s: models[k])
    np.testing.assert_array_equal(alone, origin)


# ------------------------------------------------------------------------------ a hostile cube
@pytest.fixture(scope="module")
def bad_cube(tiny_twin, tmp_path_factory) -> str:
    """The tiny twin with impossible values written straight into its chunks."""
    root = tmp_path_factory.mktemp("bad_cube")
    url = str(root / "cube.zarr")
    shutil.copytree(tiny_twin.cube.url, url)
    lst = zarr.open_array(f"{url}/lst", mode="r+")
    day = lst[T]
    day[LST_CELL] = 1e30
    day[LST_INF] = np.inf
    lst[T] = day
    for name, t, where, value in (("albedo", T, ALBEDO_STRIP, -7.0),
                                  ("ndvi", (P2.start - START).days // 16, NDVI_STRIP, -5.0)):
        arr = zarr.open_array(f"{url}/{name}", mode="r+")
        layer = arr[t]
        layer[where] = value
        arr[t] = layer
    smap = zarr.open_array(f"{url}/smap_sm", mode="r+")
    for t, cell, value in ((T, SMAP_HIGH, 1.5), (T2, SMAP_LOW, -0.3)):
        assert np.isfinite(smap[t][cell]), "the twin observes the cell: the bad value replaces an observation"
        smap[(t, *cell)] = value
    return url


def _land(url: str) -> np.ndarray:
    return open_cube(url)["land_mask"].values == 1


def _expected(url: str) -> dict[str, int]:
    land = _land(url)
    return {"albedo": int(land[ALBEDO_STRIP].sum()), "lst": int(land[LST_CELL].sum() + land[LST_INF]),
            "ndvi": int(land[NDVI_STRIP].sum())}


def test_samples_mask_impossible_values_and_count_them(bad_cube, tiny_twin):
    ds, clean = open_cube(bad_cube), open_cube(tiny_twin.cube)
    preds = ["lst", "albedo", "ndvi", "dem"]
    want = _expected(bad_cube)
    with dask.config.set(scheduler="synchronous"):
        train = sample_graph(ds, P2, preds, keep="smap").compute()
        every = sample_graph(ds, P2, preds, keep="all", count_column=True).compute()
        pixels = pixel_sample_graph(ds, P2, preds, pixels_per_cell=64).compute()
    def valid(name: str, values) -> bool:
        return not ranges.outside(np.asarray(values), ranges.valid_range(name)).any()

    # SMAP 1.5 and -0.3 are no targets; every target is a valid SMAP value
    assert valid("smap_sm", train["sm"]) and valid("smap_sm", every["sm"])
    cells = REGION.cell_ids
    for day, cell in ((D, SMAP_HIGH), (D2, SMAP_LOW)):
        rows = train[(train["date"] == np.datetime64(day, "ns")) & (train["cell"] == cells[cell])]
        assert rows.empty
    assert len(pixels) > 1000 and valid("smap_sm", pixels["sm"])
    assert all(valid(p, pixels[p]) for p in preds) and all(valid(p, train[p]) for p in preds)
    # counted: 1 km land pixel-days per predictor (NDVI: each of the period's 16 days), SMAP cell-days
    counts = {**want, "ndvi": want["ndvi"] * 16, "smap_sm": 2}
    assert train.attrs[OUT_OF_RANGE_ATTR] == every.attrs[OUT_OF_RANGE_ATTR] == counts
    # the cell means leave the masked pixels out; the count column says where
    row = every[(every["date"] == np.datetime64(D, "ns")) & (every["cell"] == cells[0, 0])].iloc[0]
    assert np.isnan(row["lst"]) and row[OUT_OF_RANGE] == _land(bad_cube)[LST_CELL].sum()
    row = every[(every["date"] == np.datetime64(D, "ns")) & (every["cell"] == cells[1, 0])].iloc[0]
    ndvi = np.where(_land(bad_cube), clean["ndvi"].sel(time_16d=np.datetime64(P2.start, "ns")).values, np.nan)
    ndvi[NDVI_STRIP] = np.nan
    assert row["ndvi"] == pytest.approx(np.nanmean(ndvi[F:2 * F, :F]), rel=1e-5)
    assert row[OUT_OF_RANGE] == want["ndvi"]
    assert (every.loc[every["date"] != np.datetime64(D, "ns"), OUT_OF_RANGE].isin([0, want["ndvi"]])).all()
    # a circular predictor is screened before it becomes sine and cosine (400 degrees: impossible)
    aspect = clean["aspect"].values.copy()
    aspect[50, 100] = 400.0
    odd = clean.assign(aspect=(("y", "x"), aspect))
    with dask.config.set(scheduler="synchronous"):
        circ = sample_graph(odd, P2, ["aspect"], features=["aspect_sin", "aspect_cos"], keep="all").compute()
    row = circ[(circ["date"] == np.datetime64(D, "ns")) & (circ["cell"] == cells[1, 2])].iloc[0]
    rad = np.deg2rad(np.where(_land(bad_cube), clean["aspect"].values, np.nan)[F:2 * F, 2 * F:3 * F])
    rad[50 - F, 100 - 2 * F] = np.nan
    assert row["aspect_sin"] == pytest.approx(np.nanmean(np.sin(rad)), rel=1e-5)
    assert circ.attrs[OUT_OF_RANGE_ATTR] == {"aspect": 16}
    # the whole SMAP grid, as the fusion's error model and cell means read it
    smap, bad = smap_grid(ds["smap_sm"].values)
    assert bad.sum() == 2 and bad[T][SMAP_HIGH] and bad[T2][SMAP_LOW] and valid("smap_sm", smap)
    np.testing.assert_array_equal(np.isnan(smap), np.isnan(clean["smap_sm"].values) | bad)


@pytest.mark.parametrize("options", [dict(keep="all", count_column=True), dict(keep="smap", ranges=True),
                                     dict(keep="complete", how="nearest")])
def test_a_table_computed_now_equals_the_lazy_graph_with_impossible_values(bad_cube, tmp_path, options):
    """The workers' numpy path (:func:`dsm.samples.sample_table` on a cube opened without dask)
    gives the lazy graph's table: rows, values and counts of masked values, also for an
    impossible aspect, which is masked before it becomes sine and cosine."""
    from dsm.features import feature_names
    from dsm.samples import sample_table

    url = str(tmp_path / "cube.zarr")
    shutil.copytree(bad_cube, url)
    aspect = zarr.open_array(f"{url}/aspect", mode="r+")
    values = aspect[:]
    values[:5, :7] = 400.0
    aspect[:] = values
    preds = ["lst", "albedo", "ndvi", "dem", "aspect"]
    feats = list(feature_names(preds))
    want = sample_graph(open_cube(url), P2, preds, features=feats, **options).compute(scheduler="sync")
    got = sample_table(xr.open_zarr(url, chunks=None, consolidated=False), P2, preds, features=feats, **options)
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want)
    assert got.attrs == want.attrs
    assert want.attrs[OUT_OF_RANGE_ATTR]["aspect"] == _land(url)[:5, :7].sum() * 16 > 0


def test_period_card_of_rao2022_reports_the_masked_values(bad_cube, client):
    from dsm.models.period import fit_period

    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": str(START), "end": str(END)},
                     "stores": {"cube": bad_cube}, "chunks": {"space": 72, "time": 8},
                     "training": {"method": "rao2022", "models": ["xgb"], "cv_folds": 2, "min_samples": 30,
                                  "grids": {"xgb": {"n_estimators": [10], "max_depth": [2]}}}})
    preds = ["lst", "albedo", "ndvi", "dem"]
    table = client.compute(sample_graph(open_cube(bad_cube), P2, preds)).result()
    card = fit_period(client, table, P2.name, preds, cfg.training).card
    want = _expected(bad_cube)
    assert card.inputs_out_of_range == {**want, "ndvi": want["ndvi"] * 16, "smap_sm": 2}


@pytest.mark.timeout(120)
def test_block_prediction_uses_the_reduced_models_and_smap_only_when_valid(bad_cube, tmp_path):
    """The paper's method on one block, in this process: LST 1e30 -> no-LST model, NDVI -5 and
    albedo -7 -> static model, SMAP 1.5 / -0.3 -> no observation (no residual shift), all flagged."""
    layout = Layout(REGION, START, END, 72, 8)
    out = str(tmp_path / "sm.zarr")
    products.create_products(StoreRef(out), layout, None)
    models = ModelStore(StoreRef(str(tmp_path / "models")))
    variants = []
    for name, preds, value in (("full", ("lst", "albedo", "ndvi", "dem"), 0.3),
                               ("no-lst", ("albedo", "ndvi", "dem"), 0.25), ("static", ("dem",), 0.2)):
        entry = models.save_model(name, DummyRegressor(strategy="constant", constant=value).fit(np.zeros((1, 1)), [value]))
        models.write_card(name, {"model": entry})
        variants.append(VariantPlan(name, preds, name, entry["sha256"]))
    t0 = T // 8 * 8
    plans = tuple(DayPlan(START + dt.timedelta(t), period_of(START + dt.timedelta(t)).name, "p", "dummy", False,
                          tuple(variants)) for t in range(t0, t0 + 8))
    job = BlockJob(StoreRef(bad_cube), StoreRef(out), models.ref, "token-ranges", t0, t0 + 8, 0, 72, 0, 72, plans,
                   residual_correction=True)
    result = run_block(job)
    ds = products.open_products(out)
    cube = open_cube(bad_cube)
    land = _land(bad_cube)[:72, :72]
    sm, origin = ds["sm"].values[T, :72, :72], ds["sm_origin"].values[T, :72, :72]
    feats = {n: cube[n].sel(time=np.datetime64(D, "ns")).values[:72, :72] for n in ("lst", "albedo")}
    ndvi = cube["ndvi"].sel(time_16d=np.datetime64(P2.start, "ns")).values[:72, :72]
    oor = products.INPUT_OUT_OF_RANGE
    assert ((sm[land] >= 0) & (sm[land] <= 1)).all() and np.isfinite(sm[land]).all()
    # cell (0, 0), LST 1e30: the full model never; the pixels it would have had are flagged
    raw_full = land & np.isfinite(feats["albedo"]) & np.isfinite(ndvi)
    cell = np.zeros(land.shape, bool)
    cell[LST_CELL] = True
    assert not (origin[cell & land] & products.ALL_PREDICTORS).any()
    np.testing.assert_array_equal((origin & oor)[cell] > 0, (raw_full & cell)[cell])
    # NDVI -5 and albedo -7: the static model (only it lacks them), flagged where it changed the model
    for strip in (NDVI_STRIP, ALBEDO_STRIP):
        sub = np.zeros(land.shape, bool)
        sub[strip] = True
        sub &= land & np.isfinite(feats["albedo"] if strip == NDVI_STRIP else ndvi)
        assert sub.sum() > 100 and (origin[sub] & oor).all() and (origin[sub] & products.REDUCED).all()
    # SMAP 1.5 (day D) and -0.3 (day D2): no observation, no residual shift, flagged
    for t, (cy, cx) in ((T, SMAP_HIGH), (T2, SMAP_LOW)):
        o = ds["sm_origin"].values[t, cy * F:(cy + 1) * F, cx * F:(cx + 1) * F]
        s = ds["sm"].values[t, cy * F:(cy + 1) * F, cx * F:(cx + 1) * F]
        ok = o > 0
        assert ok.any() and ((o[ok] & (products.NO_SMAP | oor)) == products.NO_SMAP | oor).all()
        assert 0.19 < np.nanmean(s) < 0.31  # the models' values (0.2-0.3), not shifted to 1.5 or -0.3
    smap = cube["smap_sm"].values[T, :2, :2]
    ok = np.isfinite(smap)
    ok[SMAP_HIGH] = False
    assert ok.sum() == 2  # (0, 1) unobserved
    np.testing.assert_allclose(block_reduce_mean(sm)[ok], smap[ok], atol=2e-4)
    # counted per day: land pixels per predictor, SMAP cells
    days = {d["day"]: d for d in result["days"]}
    want = _expected(bad_cube)
    want["lst"] = int(land[LST_CELL].sum())  # the +inf pixel is in another block
    assert days[D.isoformat()]["out_of_range"] == {**want, "smap_sm": 1}
    assert days[D2.isoformat()]["out_of_range"] == {"ndvi": want["ndvi"], "smap_sm": 1}
    assert days[D.isoformat()]["origin"][str(oor)] == int(((origin & oor) > 0).sum())


# ------------------------------------------------------------------------------ the default method, end to end
FAST = {"grid": {"max_depth": [3], "min_child_weight": [5], "reg_lambda": [1.0]}, "max_rounds": 100, "cv_folds": 3}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fusion_never_trains_on_or_fuses_impossible_values(bad_cube, tmp_path, client):
    from dsm.stages.train import train

    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": str(START), "end": str(END)},
                     "stores": {"cube": bad_cube, "models": str(tmp_path / "models"), "output": str(tmp_path / "sm.zarr")},
                     "chunks": {"space": 72, "time": 8},
                     "training": {"method": "fusion", "min_samples": 30, "fusion": FAST}})
    assert train(cfg, client).failed == {}
    card = FusionCard.from_dict(ModelStore(cfg.stores.ref("models")).read_card(FUSION_KEY))
    want = _expected(bad_cube)
    n_periods_days = {**want, "ndvi": want["ndvi"] * 16, "smap_sm": 2}
    assert card.inputs_out_of_range == n_periods_days
    for rec in card.variants:  # the 1 km ranges of bit 8 hold no impossible value
        for f, (lo, hi) in rec.ranges.items():
            bounds = ranges.valid_range(f)
            assert bounds is None or bounds[0] <= lo <= hi <= bounds[1] + 1e-3, f
    report = predict(cfg, client)
    assert report.failed == {} and len(report.predicted) == 48
    assert report.out_of_range[D.isoformat()] == {**want, "smap_sm": 1}
    assert report.out_of_range[D2.isoformat()] == {"ndvi": want["ndvi"], "smap_sm": 1}
    assert report.out_of_range_cells == n_periods_days
    out = products.open_products(cfg.stores.output)
    sm, origin = out["sm"].values[T], out["sm_origin"].values[T]
    land = _land(bad_cube)
    oor = products.INPUT_OUT_OF_RANGE
    # cell (0, 0), LST 1e30: a real map from the reduced model, flagged (it was 0.0000 over the cell)
    cell = sm[LST_CELL][land[LST_CELL]]
    assert np.isfinite(cell).all() and 0.02 < cell.mean() < 0.5 and cell.std() > 1e-3
    assert (origin[LST_CELL][land[LST_CELL]] & oor).all()
    assert not (origin[LST_CELL][land[LST_CELL]] & products.ALL_PREDICTORS).any()
    # SMAP 1.5: not fused (bit 32 elsewhere that day), no observation, flagged; its 36 km mean stays plausible
    cy, cx = SMAP_HIGH
    o = origin[cy * F:(cy + 1) * F, cx * F:(cx + 1) * F]
    assert not (o & products.SMAP_FUSED).any() and (o[o > 0] & (products.NO_SMAP | oor)).all()
    fused = origin[:F, 2 * F:3 * F]
    assert (fused[fused > 0] & products.SMAP_FUSED).all()
    assert out["sm_36km"].values[T][SMAP_HIGH] < 0.5
    cy, cx = SMAP_LOW
    o = out["sm_origin"].values[T2, cy * F:(cy + 1) * F, cx * F:(cx + 1) * F]
    assert not (o & products.SMAP_FUSED).any() and (o[o > 0] & oor).all()
    valid = out["sm"].values[np.isfinite(out["sm"].values)]
    assert valid.min() >= cfg.output.clip[0] and valid.max() <= cfg.output.clip[1]
    # NDVI -5 on a strip of cell (1, 0): its cell mean was made without the strip, so the whole
    # cell is flagged on every day of the period, not only the strip's pixels
    t = (D - START).days - 1
    o = out["sm_origin"].values[t, F + 8:2 * F, :F]
    assert (o > 0).any() and (o[o > 0] & oor).all()
    # days without impossible inputs are untouched by the flag
    assert not (out["sm_origin"].values[: P2.start.toordinal() - START.toordinal()] & oor).any()


# ------------------------------------------------------------------------------ ingest
def test_ingest_masks_impossible_values_counts_and_reports_them(tmp_path, client):
    import h5py

    from dsm.ingest import read_spl3smp
    from dsm.ingest.report import format_report
    from dsm.stages.ingest import run_ingest
    from dsm.testing.granules import AM_GROUP, SmapPass, spl3smp_filename, write_geotiff, write_spl3smp

    region = Region(74, 772, 1, 2)
    d13, d14 = dt.date(2021, 8, 13), dt.date(2021, 8, 14)  # 08-13: an 8-day and a 16-day composite start
    for sub in ("lst", "albedo", "ndvi", "smap", "dem"):
        (tmp_path / sub).mkdir()
    shape, t = region.fine_shape, region.fine_transform
    lst = np.full(shape, 300.0, np.float32)
    lst[0:3, 0:5], lst[5, 5] = 1e30, np.inf
    albedo = np.full(shape, 0.2, np.float32)
    albedo[10:12, 10:12] = -7.0
    ndvi = np.full(shape, 0.4, np.float32)
    ndvi[20, 0:6] = -5.0
    dem = np.full(shape, 1200.0, np.float32)
    dem[30, 60] = 12000.0  # higher than any mountain
    write_geotiff(tmp_path / "lst" / "lst_2021-08-13.tif", lst, t, "EPSG:6933")
    write_geotiff(tmp_path / "albedo" / "albedo_2021-08-14.tif", albedo, t, "EPSG:6933")
    write_geotiff(tmp_path / "ndvi" / "ndvi_2021-08-13.tif", ndvi, t, "EPSG:6933")
    write_geotiff(tmp_path / "dem" / "dem.tif", dem, t, "EPSG:6933")
    for day, value in ((d13, 1.5), (d14, -0.3)):  # granules whose metadata lets the values through
        sm = np.full((406, 964), 0.25, np.float32)
        sm[region.row0, region.col0] = value
        path = write_spl3smp(tmp_path / "smap" / spl3smp_filename(day), day, SmapPass(sm))
        with h5py.File(path, "r+") as f:
            ds = f[f"{AM_GROUP}/soil_moisture"]
            ds.attrs["valid_min"], ds.attrs["valid_max"] = np.float32(-1.0), np.float32(2.0)
    raw = {"region": {"cells": [region.row0, region.col0, region.nrows, region.ncols]},
           "dates": {"start": d13.isoformat(), "end": d14.isoformat()},
           "stores": {"cube": str(tmp_path / "cube.zarr")}, "chunks": {"space": 36, "time": 2},
           "inputs": {"smap": {"paths": str(tmp_path / "smap/*.h5")},
                      "geotiff": {v: {"paths": str(tmp_path / v / "*.tif"), "resampling": "nearest"}
                                  for v in ("lst", "albedo", "ndvi")},
                      "dem": {"paths": str(tmp_path / "dem" / "dem.tif")}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    cfg = from_dict(raw)
    report = run_ingest(cfg, client, progress=False)
    # GeoTIFF series and DEM files with impossible values are refused and named, never stored
    files = {Path(f["path"]).name: f for f in report["files"]}
    for name, var in (("lst_2021-08-13.tif", "lst"), ("albedo_2021-08-14.tif", "albedo"),
                      ("ndvi_2021-08-13.tif", "ndvi"), ("dem.tif", "dem")):
        assert (files[name]["status"], files[name]["error"]) == ("failed", "WrongProductError"), files[name]
        assert f"outside the valid range of {var}" in files[name]["reason"]
    cube = open_cube(cfg.stores.cube).load()
    for v in ("lst", "albedo", "ndvi", "dem"):
        assert np.isnan(cube[v].values).all(), v
    # the SMAP reader lets the values through: the pipeline masks them
    smap_read = [read_spl3smp(tmp_path / "smap" / spl3smp_filename(day), region)[0].values for day in (d13, d14)]
    assert smap_read[0][0, 0] == pytest.approx(1.5) and smap_read[1][0, 0] == pytest.approx(-0.3)
    assert np.isnan(cube["smap_sm"].values[:, 0, 0]).all() and (cube["smap_sm"].values[:, 0, 1] == np.float32(0.25)).all()
    want = {"smap_sm": {"2021-08-13": 1, "2021-08-14": 1}}
    assert report["out_of_range"] == want and report["summary"]["out_of_range"] == 2
    on_disk = json.loads(Path(report["report"]).read_text())
    assert on_disk["out_of_range"] == want
    assert any(line.startswith("values outside their valid range") and "smap_sm 2" in line for line in format_report(report))


# ------------------------------------------------------------------------------ stores made before bit 256
def _old_store(url: str, layout: Layout) -> None:
    ds = products.products_template(layout, None)
    ds["sm_origin"] = ds["sm_origin"].astype(np.uint8)
    ds["sm_origin"].encoding = store.encoding_for(np.dtype(np.uint8), ds["sm"].encoding["chunks"], None)
    store.create(StoreRef(url), ds, products.KIND)


def test_stores_with_uint8_origin_are_read_and_exported_but_not_resumed(tmp_path):
    from dsm.stages.export import ExportJob, export_day

    layout = Layout(REGION, START, END, 72, 8)
    url = str(tmp_path / "old.zarr")
    _old_store(url, layout)
    old = products.open_products(url)
    assert old["sm_origin"].dtype == np.uint8
    sm = np.full((8, *REGION.fine_shape), np.nan, np.float32)  # one time chunk; day 0 predicted
    sm[0] = 0.25
    origin = np.where(np.isfinite(sm), products.ALL_PREDICTORS | products.RAIN_MEMORY_SHORT, 0).astype(np.uint8)
    part = xr.Dataset({"sm": (("time", "y", "x"), sm), "sm_origin": (("time", "y", "x"), origin)},
                      coords={"time": old["time"].values[:8], "y": old["y"].values, "x": old["x"].values})
    store.write_region(StoreRef(url), part, old)
    counts = products.origin_counts(products.open_products(url)["sm_origin"].values[0])
    assert counts[products.RAIN_MEMORY_SHORT] == sm[0].size and counts[products.INPUT_OUT_OF_RANGE] == 0
    info = export_day(ExportJob(StoreRef(url), StoreRef(str(tmp_path / "cog")), START, 0))
    assert info["origin"]["input_out_of_range"] == 0 and info["origin"]["rain_memory_short"] == sm[0].size
    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": str(START), "end": str(END)},
                     "stores": {"cube": str(tmp_path / "cube.zarr"), "models": str(tmp_path / "m"), "output": url},
                     "chunks": {"space": 72, "time": 8}})
    with pytest.raises(StoreError, match=r"sm_origin as uint8, made before origin bit 256.*--overwrite"):
        open_or_create_output(cfg)
    assert open_or_create_output(cfg, overwrite=True)["sm_origin"].dtype == np.uint16
