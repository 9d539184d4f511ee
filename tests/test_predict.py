"""Daily prediction on a real LocalCluster: equality with the stored models, int16 packing,
origin bits, store records, reruns, bad input."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from dsm import ledger, products
from dsm.block_models import apply_model
from dsm.blocks import predict_day, residual_correct
from dsm.config import from_dict
from dsm.cube import open_cube
from dsm.dayplans import DayPlan, VariantPlan
from dsm.errors import StoreError
from dsm.models.store import ModelStore
from dsm.models.variants import variant_key
from dsm.periods import composite_8day_of, period_of
from dsm.stages.predict import predict
from dsm.stages.train import train

pytestmark = pytest.mark.slow  # make test-fast leaves these out

P1, P2, P3 = "2016161", "2016177", "2016193"
GRIDS = {"xgb": {"n_estimators": [40], "max_depth": [3]}}


def config(cube: str, models: str, out: str, **extra):
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": cube, "models": models, "output": out}, "chunks": {"space": 72, "time": 8},
           "training": {"method": "rao2022", "min_samples": 30, "grids": GRIDS, "models": ["xgb"], "pooled": False}}
    for k, v in extra.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return from_dict(raw)


@pytest.fixture(scope="module")
def trained(tiny_twin, tmp_path_factory, client):
    root = tmp_path_factory.mktemp("predict")
    cfg = config(tiny_twin.cube.url, str(root / "models"), str(root / "sm.zarr"))
    report = train(cfg, client)
    assert report.failed == {} and len(report.variants) == 9  # full, no-lst, static x 3 periods
    return cfg, root


@pytest.fixture(scope="module")
def predicted(trained, client):
    cfg, root = trained
    report = predict(cfg, client)
    return cfg, report


def _features(ds: xr.Dataset, day: dt.date, names) -> dict[str, np.ndarray]:
    t = np.datetime64(day, "ns")
    out = {}
    for n in names:
        v = ds[n]
        if "time" in v.dims:
            v = v.sel(time=t)
        elif "time_8d" in v.dims:
            v = v.sel(time_8d=np.datetime64(composite_8day_of(day).start, "ns"))
        elif "time_16d" in v.dims:
            v = v.sel(time_16d=np.datetime64(period_of(day).start, "ns"))
        out[n] = v.values.astype(np.float32)
    return out


@pytest.mark.timeout(240)
def test_prediction_equals_the_stored_models_and_round_trips_int16(predicted, tiny_twin):
    cfg, report = predicted
    assert report.failed == {} and report.empty == {} and len(report.predicted) == 48
    out = products.open_products(cfg.stores.output)
    assert out["sm"].encoding["dtype"] == np.int16 and out["sm"].encoding["scale_factor"] == 1e-4
    assert out["sm"].encoding["_FillValue"] == -9999 and out["sm"].attrs["grid_mapping"] == "spatial_ref"
    assert out.rio.crs.to_epsg() == 6933
    assert "reduced_model" in out["sm_origin"].attrs["flag_meanings"]
    assert out["sm_origin"].attrs["flag_masks"] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert set(products.decode_attrs(out.attrs)["origin_bits"]) == {"1", "2", "4", "8", "16", "32", "64", "128", "256"}
    assert out["sm_origin"].dtype == np.uint16
    cube = open_cube(tiny_twin.cube)
    land = cube["land_mask"].values == 1
    models = ModelStore(cfg.stores.ref("models"))
    full = models.load_model(P2)
    reduced = models.load_model(variant_key("no-lst", P2))
    raw = zarr.open_array(f"{cfg.stores.output}/sm", mode="r")
    for day in (dt.date(2016, 6, 26), dt.date(2016, 7, 2)):
        t = (day - cfg.dates.start).days
        f = _features(cube, day, cfg.predictors)
        X = np.stack([f[p] for p in cfg.predictors], axis=-1)
        all_ok = land & np.isfinite(X).all(axis=-1)
        red = land & ~all_ok & np.isfinite(X[..., 1:]).all(axis=-1)
        assert all_ok.sum() > 100 and red.sum() > 0
        sm = out["sm"].isel(time=t).values
        want_full = np.clip(full.predict(X[all_ok]), 0, 1)
        want_red = np.clip(reduced.predict(X[red][:, 1:]), 0, 1)
        np.testing.assert_allclose(sm[all_ok], want_full, atol=5.01e-5, rtol=0)
        np.testing.assert_allclose(sm[red], want_red, atol=5.01e-5, rtol=0)
        # int16 packing: value x 10000 rounded; decoding is within 1e-4
        assert raw[t].dtype == np.int16
        assert np.abs(raw[t][all_ok] - want_full * 1e4).max() <= 0.5 + 1e-3
        # the rest of the land: the static companion (gap-free mode); off land: empty
        static_cols = [i for i, p in enumerate(cfg.predictors) if p in ("dem", "slope", "aspect", "sand", "silt", "clay")]
        rest = land & ~(all_ok | red)
        assert rest.any() and np.isfinite(X[rest][:, static_cols]).all()
        want_static = np.clip(models.load_model(variant_key("static", P2)).predict(X[rest][:, static_cols]), 0, 1)
        np.testing.assert_allclose(sm[rest], want_static, atol=5.01e-5, rtol=0)
        assert np.all(np.isnan(sm[~land])) and np.all(raw[t][~land] == -9999)
        origin = out["sm_origin"].isel(time=t).values
        assert np.all(origin[all_ok] & 1) and not np.any(origin[all_ok] & 2)
        assert np.all(origin[red | rest] & 2) and not np.any(origin[red | rest] & 1)
        assert np.all(origin[~land] == 0)
        smap = cube["smap_sm"].sel(time=np.datetime64(day, "ns")).values
        nosmap = np.repeat(np.repeat(~np.isfinite(smap), 36, 0), 36, 1)
        assert np.array_equal((origin & 16) > 0, nosmap & land)
        unc = out["sm_unc"].isel(time=t).values
        assert np.all(unc[all_ok | red] >= 0) and np.isfinite(unc[all_ok | red]).all()
        qcard = models.read_card(f"variants/full/{P2}/quantile")
        assert 0 <= qcard["test_coverage"] <= 1 and "conformal_margin" in qcard
        q = models.load_model(f"variants/full/{P2}/quantile").predict(X[all_ok]).reshape(-1, 2)
        want_unc = np.maximum(np.abs(q[:, 1] - q[:, 0]) / 2 + qcard["conformal_margin"], 0)
        np.testing.assert_allclose(unc[all_ok], want_unc, atol=5.01e-5, rtol=0)
    led = ledger.read(cfg.stores.ref("output"))
    assert led.done == [d.isoformat() for d in (cfg.dates.start + dt.timedelta(i) for i in range(48))]
    rec = led.day("2016-06-26").model
    assert rec["period"] == P2 and rec["model"] == "xgb" and rec["variants"]["full"]["model"] == P2
    assert rec["variants"]["full"]["sha256"] == models.read_card(P2)["model"]["sha256"]
    assert rec[products.VALID_PIXELS] == int(np.isfinite(out["sm"].isel(time=17).values).sum()) > 0
    assert all(led.day(d).consistency is not None for d in led.done)
    cs = [v for v in (led.day(d).consistency for d in led.done) if v["n"] > 2]
    assert len(cs) > 10 and all(0 <= v["rmse"] < 0.2 and -1 <= v["r"] <= 1 for v in cs)
    sm36 = out["sm_36km"].isel(time=(dt.date(2016, 6, 26) - cfg.dates.start).days).values
    np.testing.assert_allclose(sm36, out["sm"].isel(time=17).coarsen(y=36, x=36).mean().values, atol=1e-4)


@pytest.mark.timeout(120)
def test_rerun_skips_and_other_configurations_are_refused(predicted, client, tiny_twin, tmp_path):
    cfg, _ = predicted
    again = predict(cfg, client)
    assert again.predicted == [] and len(again.skipped) == 48
    other = config(tiny_twin.cube.url, cfg.stores.models, cfg.stores.output, dates={"start": "2016-06-09", "end": "2016-07-20"})
    with pytest.raises(StoreError, match="another configuration.*end"):
        predict(other, client)
    chunks = config(tiny_twin.cube.url, cfg.stores.models, cfg.stores.output, chunks={"space": 144})
    with pytest.raises(StoreError, match="chunks"):
        predict(chunks, client)
    region = config(tiny_twin.cube.url, cfg.stores.models, str(tmp_path / "x.zarr"), region={"cells": [74, 773, 4, 4]})
    with pytest.raises(StoreError, match="cube .* covers region"):
        predict(region, client)


@pytest.mark.timeout(240)
def test_the_store_metadata_keeps_its_size_as_days_are_predicted_and_plain_xarray_writes_netcdf(trained, client,
                                                                                                   tmp_path):
    cfg, _ = trained
    c = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"output": str(tmp_path / "sm.zarr")})})
    meta = tmp_path / "sm.zarr" / "zarr.json"
    sizes = []
    for n in (8, 24, 48):  # one time chunk, then two more, then the rest
        assert predict(c, client, only_days=[cfg.dates.start + dt.timedelta(i) for i in range(n)]).failed == {}
        sizes.append(meta.stat().st_size)
        assert len(ledger.read(c.stores.ref("output")).done) == n
    assert len(set(sizes)) == 1, sizes  # the days' records are the ledger's, one object per time chunk
    chunks = sorted(p.name for p in (tmp_path / "sm.zarr" / ledger.FOLDER / "predict").iterdir())
    assert chunks == [f"{cfg.dates.start + dt.timedelta(t)}.json" for t in range(0, 48, 8)]
    with xr.open_zarr(c.stores.output, consolidated=False) as ds:
        ds.isel(time=slice(0, 2)).to_netcdf(tmp_path / "sm.nc")
        attrs = dict(ds.attrs)
    with xr.open_dataset(tmp_path / "sm.nc") as nc:
        assert {k: np.asarray(v).tolist() for k, v in nc.attrs.items()} == {k: np.asarray(v).tolist()
                                                                             for k, v in attrs.items()}
        assert ledger.store_records(nc.attrs).settings == ledger.read(c.stores.ref("output")).settings is not None


@pytest.mark.timeout(180)
def test_empty_day_and_missing_period_are_reported_and_the_rest_is_produced(trained, client, tiny_twin, tmp_path):
    cfg, root = trained
    cube = tmp_path / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, cube)
    for name in ("lst", "albedo"):  # every daily predictor of 2016-06-20 (index 11) missing
        arr = zarr.open_array(str(cube / name), mode="r+")
        arr[11] = np.nan
    models = tmp_path / "models"
    shutil.copytree(cfg.stores.models, models)
    shutil.rmtree(models / P3)
    # without gap filling (gap-free mode fills such a day with the static companion model)
    c = config(str(cube), str(models), str(tmp_path / "sm.zarr"), output={"gap_free": False})
    report = predict(c, client)
    assert list(report.empty) == ["2016-06-20"] and "albedo, lst" in report.empty["2016-06-20"]
    p3_days = [(dt.date(2016, 7, 11) + dt.timedelta(i)).isoformat() for i in range(16)]
    assert sorted(report.failed) == p3_days and "no model" in report.failed[p3_days[0]]
    assert len(report.predicted) == 48 - 16 - 1
    out = products.open_products(c.stores.output)
    assert ledger.read(c.stores.ref("output")).failed[p3_days[0]].startswith(f"{P3} has no model card in ")
    assert np.isnan(out["sm"].sel(time="2016-07-15").values).all()
    assert np.isfinite(out["sm"].sel(time="2016-07-10").values).any()
    # the model comes back: the rerun does only the failed days
    shutil.copytree(Path(cfg.stores.models) / P3, models / P3)
    again = predict(c, client)
    assert sorted(again.predicted) == p3_days and again.failed == {}
    assert ledger.read(c.stores.ref("output")).failed == {}


@pytest.mark.timeout(180)
def test_paper_mode_leaves_cloud_gaps_and_residual_correction_matches_smap(trained, client, tmp_path):
    cfg, _ = trained
    c = config(cfg.stores.cube, cfg.stores.models, str(tmp_path / "sm.zarr"),
               output={"gap_free": False, "residual_correction": True}, dates={"start": "2016-06-09", "end": "2016-06-16"})
    predict(c, client)
    out = products.open_products(c.stores.output)
    cube = open_cube(cfg.stores.cube)
    lst = cube["lst"].sel(time=out["time"]).values
    sm = out["sm"].values
    origin = out["sm_origin"].values
    assert np.isnan(sm[np.isnan(lst)]).all() and not np.any(origin & 2)
    smap = cube["smap_sm"].sel(time=out["time"]).values
    means = out["sm"].coarsen(y=36, x=36).mean().values
    ok = np.isfinite(smap) & np.isfinite(means)
    assert ok.sum() > 10
    np.testing.assert_allclose(means[ok], smap[ok], atol=2e-3)  # clipping to [0, 1] aside, exact


def test_origin_bits_on_constructed_cases():
    f = 36
    land = np.ones((f, 2 * f), bool)
    land[:, -3:] = False
    a = np.full((f, 2 * f), 1.0, np.float32)
    lst = np.full((f, 2 * f), 300.0, np.float32)
    lst[:4] = np.nan  # cloud over four rows
    albedo = np.full((f, 2 * f), 0.2, np.float32)
    albedo[:2, :2] = 0.9  # outside the training range (inside the valid range)
    feats = {"lst": lst, "albedo": albedo}
    smap = np.array([[0.2, np.nan]], np.float32)

    class Const:
        def __init__(self, v):
            self.v = v

        def predict(self, X):
            return np.full(len(X), self.v)

    models = {"full": Const(0.3), "red": Const(0.25), "qf": Const(0.05)}
    full = VariantPlan("full", ("lst", "albedo"), "full", "s", ranges=((250.0, 350.0), (0.0, 0.5)))
    red = VariantPlan("no-lst", ("albedo",), "red", "s", ranges=((0.0, 0.5),))
    plan = DayPlan(dt.date(2016, 6, 9), P1, P1, "xgb", False, (full, red))
    sm, unc, origin, counts = predict_day(feats, land, smap, plan, lambda k, s: models[k])
    assert counts == {"full": int((land & ~np.isnan(lst)).sum()), "no-lst": int((land & np.isnan(lst)).sum())}
    assert origin[10, 10] == 1 and sm[10, 10] == pytest.approx(0.3)
    assert origin[10, 40] == 1 | 16  # SMAP missing in the second cell
    assert origin[0, 10] == 2 and sm[0, 10] == pytest.approx(0.25)
    assert origin[0, 0] == 2 | 8  # reduced model and albedo out of range
    assert origin[10, -1] == 0 and np.isnan(sm[10, -1])  # water
    assert np.isnan(unc[land]).all()  # no quantile model in the plan
    reused = DayPlan(plan.day, P2, P1, "xgb", True, (full,))
    sm2, _, origin2, _ = predict_day(feats, land, smap, reused, lambda k, s: models[k])
    assert origin2[10, 10] == 1 | 4 and origin2[0, 10] == 0 and np.isnan(sm2[0, 10])  # no reduced model: gap
    # a model on the antecedent indices flags pixel-days whose rain record is short (bit 128)
    age = np.full(land.shape, 60.0, np.float32)
    age[:, 5:8] = 3.0  # a gap three days ago
    wet = {**feats, "api_5d": a.copy(), "api_age": age}
    rainy = VariantPlan("full", ("lst", "albedo", "api_5d"), "full", "s")
    _, _, origin3, _ = predict_day(wet, land, smap, DayPlan(plan.day, P1, P1, "xgb", False, (rainy, red)),
                                   lambda k, s: models[k], rain_spinup=45)
    assert origin3[10, 6] == 1 | 128 and origin3[10, 10] == 1
    assert origin3[0, 6] == 2  # the reduced model does not use the indices: no flag
    _, _, origin4, _ = predict_day(wet, land, smap, DayPlan(plan.day, P1, P1, "xgb", False, (rainy,)),
                                   lambda k, s: models[k])
    assert origin4[10, 6] == 1  # rain_spinup 0: no flagging
    # residual correction: cell mean equals SMAP where observed, untouched elsewhere
    corr = residual_correct(sm, smap)
    assert np.nanmean(corr[:, :f]) == pytest.approx(0.2, abs=1e-6)
    np.testing.assert_array_equal(corr[:, f:], sm[:, f:])


def test_apply_model_uses_inplace_predict_for_boosters():
    import xgboost
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    X = rng.random((200, 3)).astype(np.float32)
    y = X @ np.array([0.1, 0.2, -0.1]) + 0.2
    booster = xgboost.XGBRegressor(n_estimators=10, max_depth=2).fit(X, y).get_booster()
    np.testing.assert_allclose(apply_model(booster, X), booster.predict(xgboost.DMatrix(X)), rtol=1e-6)
    lin = LinearRegression().fit(X, y)
    np.testing.assert_allclose(apply_model(lin, X), lin.predict(X))
    assert apply_model(lin, X[:0]).shape == (0,)
