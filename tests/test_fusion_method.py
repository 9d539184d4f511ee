"""The default method (training.method: fusion) end to end on the tiny twin, beside the paper's."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from dsm import ledger, products
from dsm.block_models import model_day
from dsm.blocks import predict_day
from dsm.cellmeans import DayCells, fuse_block
from dsm.config import from_dict
from dsm.cube import RAIN_PREDICTORS as RAIN
from dsm.dayplans import DayPlan, VariantPlan
from dsm.errors import ConfigError
from dsm.fusion import STATE_CARRIED, STATE_FUSED
from dsm.grid import FINE_PER_COARSE, block_reduce_mean, repeat_to_fine
from dsm.models.cards import FUSION_KEY, FusionCard
from dsm.models.store import ModelStore
from dsm.skill import skill
from dsm.stages.predict import predict
from dsm.stages.train import train
from dsm.storeref import StoreRef

pytestmark = pytest.mark.slow  # make test-fast leaves these out

FAST = {"grid": {"max_depth": [4], "min_child_weight": [5], "reg_lambda": [1.0]}, "max_rounds": 200, "cv_folds": 3}
SMALL_GRIDS = {"svr": {"C": [1.0]}, "ann": {"hidden_layer_sizes": [[16]], "alpha": [0.01]},
               "rf": {"n_estimators": [30], "max_depth": [5]}, "xgb": {"n_estimators": [30], "max_depth": [3]}}


def _config(cube: str, root: Path, method: str = "fusion", **training):
    t = {"min_samples": 30, "method": method, "fusion": FAST, "grids": SMALL_GRIDS, "cv_folds": 2, "pooled": False,
         **training}
    return from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
                      "stores": {"cube": cube, "models": str(root / "models"), "output": str(root / "sm.zarr")},
                      "chunks": {"space": 72, "time": 8}, "training": t})


@pytest.fixture(scope="module")
def runs(tiny_twin, tmp_path_factory, client):
    """The default method trained and predicted on the tiny twin (the paper's method has its own
    tests in test_train/test_predict)."""
    out = {}
    for method in ("fusion",):
        cfg = _config(tiny_twin.cube.url, tmp_path_factory.mktemp(method), method)
        rep = train(cfg, client)
        assert rep.failed == {}
        pr = predict(cfg, client)
        assert pr.failed == {} and len(pr.predicted) == 48
        out[method] = cfg
    return out


@pytest.fixture(scope="module")
def unsmoothed(runs, tmp_path_factory, client):
    """The fusion run predicted again with the fused cell means as 36 km blocks (smooth: none) and
    the configured gain k = 1: the map's within-cell anomaly is the model's own."""
    raw = runs["fusion"].model_dump(mode="json")
    raw["training"]["fusion"].update(smooth="none", gain_from_stations=False)
    raw["stores"]["output"] = str(tmp_path_factory.mktemp("unsmoothed") / "sm.zarr")
    cfg = from_dict(raw)
    assert predict(cfg, client).failed == {}
    return cfg


@pytest.mark.timeout(900)
def test_fusion_beats_bilinear_smap_on_a_small_twin(tmp_path_factory, client):
    """8 x 8 SMAP cells over 64 summer days: the smallest twin with enough SMAP cell-days
    (about 1800) for the error model; the tiny twin's 300 leave the fusion weight unresolved.
    The same run without the rain predictors (rain.predictors: off) follows the weather less."""
    import datetime as dt

    from dsm.grid import Region
    from dsm.synthetic import TwinSpec
    from dsm.twin import TwinStores, build_twin

    root = tmp_path_factory.mktemp("small_twin")
    st = TwinStores(*(StoreRef(str(root / n)) for n in ("cube.zarr", "truth.zarr", "stations")))
    build_twin(st, TwinSpec(Region(72, 770, 8, 8), dt.date(2016, 6, 1), dt.date(2016, 8, 3), seed=42), 144, 8,
               progress=False)
    raw = _config(st.cube.url, root).model_dump(mode="json")
    raw["region"] = {"cells": [72, 770, 8, 8]}
    raw["dates"] = {"start": "2016-06-01", "end": "2016-08-03"}
    raw["chunks"] = {"space": 144, "time": 8}
    cfg = from_dict(raw)
    dry = from_dict({**raw, "rain": {"predictors": "off"},
                     "stores": {**raw["stores"], "models": str(root / "dry_models"), "output": str(root / "dry.zarr")}})
    for c in (cfg, dry):
        assert train(c, client).failed == {}
        assert predict(c, client).failed == {}
    card = FusionCard.from_dict(ModelStore(dry.stores.ref("models")).read_card(FUSION_KEY))
    assert card.predictors == tuple(dry.predictors)
    s = skill({"fusion": cfg.stores.ref("output"), "no rain": dry.stores.ref("output")}, st.truth, st.cube)["scores"]
    assert s["fusion"]["n"] == s["smap_bilinear"]["n"] > 1_000_000
    assert s["fusion"]["rmse"] < 0.97 * s["smap_bilinear"]["rmse"]
    assert s["smap_bilinear"]["rmse"] < s["smap_repeat"]["rmse"]
    # the rain predictors make the maps follow the weather pixel by pixel
    assert s["fusion"]["temporal_r_median"] > s["no rain"]["temporal_r_median"] + 0.005
    assert s["fusion_all"]["temporal_r_median"] > s["no rain_all"]["temporal_r_median"] + 0.005
    assert s["fusion"]["rmse"] < s["no rain"]["rmse"]
    assert s["fusion"]["rmse_cell_mean"] < s["smap_bilinear"]["rmse_cell_mean"]
    assert s["fusion"]["cell_r"] > s["smap_bilinear"]["cell_r"]


def test_card_records_the_search_the_companions_and_the_error_model(runs, tiny_twin):
    store = ModelStore(runs["fusion"].stores.ref("models"))
    card = FusionCard.from_dict(store.read_card(FUSION_KEY))
    # the twin has precipitation: the rain predictors join, with companions for gaps in its record
    assert [v.name for v in card.variants] == ["full", "no-lst", "no-rain", "no-lst-rain", "static"]
    assert card.predictors[-4:] == ("precip", "api_2d", "api_5d", "api_15d")
    by_name = {v.name: v for v in card.variants}
    assert "api_15d" in by_name["no-lst"].predictors and "precip" not in by_name["no-lst-rain"].predictors
    assert by_name["no-rain"].predictors == tuple(p for p in card.predictors if p not in RAIN)
    # each rain model's within-cell anomaly is averaged with its rain-free companion's
    assert card.anomaly_partners == {"full": "no-rain", "no-lst": "no-lst-rain"}
    full = card.variants[0]
    assert full.features[-2:] == ("doy_sin", "doy_cos") and "aspect_sin" in full.features
    assert "aspect" not in full.features and set(full.ranges) == set(full.features[:-2])
    lo, hi = full.ranges["dem"]
    dem = xr.open_zarr(tiny_twin.cube.url, consolidated=False)["dem"].values
    assert np.nanmin(dem) <= lo < hi <= np.nanmax(dem)  # 1 km pixel range, not the 36 km means
    em = card.error_model
    assert em["var_smap"] > 0 and em["var_model"] > 0 and 0 < em["weight"] < 1 and em["decay_days"] > 0
    assert em["var_smap_method"] in ("triple_collocation", "configured_default")
    assert card.search and card.search[0]["n_rounds"] == full.n_rounds
    assert card.cv["scheme"] == "blocks of days x cells"
    assert {v.fit_workers for v in card.variants} == {1}  # refitted on one worker: the same on any cluster


@pytest.mark.timeout(300)
def test_the_models_are_the_same_on_one_worker_as_on_two(runs, tmp_path):
    """Every model's rows fit one worker, so the ``xgboost.dask`` refits give the same bytes on a
    cluster of one worker as on the two of ``runs`` (rows split across workers would not)."""
    from distributed import Client

    from dsm.cluster import local_cluster

    two = runs["fusion"]
    one = two.model_copy(update={"stores": two.stores.model_copy(update={"models": str(tmp_path / "models")})})
    with local_cluster(1, 1, dashboard_address=":0") as cluster, Client(cluster) as c:
        assert train(one, c).failed == {}
    cards = [FusionCard.from_dict(ModelStore(cfg.stores.ref("models")).read_card(FUSION_KEY)) for cfg in (two, one)]
    assert [(v.name, v.sha256) for v in cards[0].variants] == [(v.name, v.sha256) for v in cards[1].variants]
    assert cards[0].error_model == cards[1].error_model and cards[0].search == cards[1].search


def test_stored_models_reload_bit_identical(runs):
    store = ModelStore(runs["fusion"].stores.ref("models"))
    card = FusionCard.from_dict(store.read_card(FUSION_KEY))
    for rec in card.variants:
        model = store.load_model(rec.key)
        raw = bytes(model.get_booster().save_raw("json"))
        assert hashlib.sha256(raw).hexdigest() == rec.sha256
        X = np.random.default_rng(1).normal(size=(50, len(rec.features))).astype(np.float32)
        again = store.load_model(rec.key)
        assert np.array_equal(model.predict(X), again.predict(X))


def test_every_model_is_non_decreasing_in_the_rain_predictors(runs):
    store = ModelStore(runs["fusion"].stores.ref("models"))
    card = FusionCard.from_dict(store.read_card(FUSION_KEY))
    assert card.monotone_increasing == ("precip", "api_2d", "api_5d", "api_15d")
    rng = np.random.default_rng(3)
    for rec in [v for v in card.variants if "precip" in v.predictors]:
        model = store.load_model(rec.key)
        bounds = [rec.ranges.get(f, (-1.0, 1.0)) for f in rec.features]  # the training pixels' ranges; doy in [-1, 1]
        X = np.column_stack([rng.uniform(lo, hi, 400) for lo, hi in bounds]).astype(np.float32)
        for i, f in enumerate(rec.features):
            wetter = X.copy()
            wetter[:, i] += rng.uniform(0.0, 0.5, len(X)).astype(np.float32) * (bounds[i][1] - bounds[i][0])
            change = model.predict(wetter) - model.predict(X)
            if f in card.monotone_increasing:
                assert change.min() >= 0, (rec.name, f, change.min())
            elif f == "lst":  # free: the model does decrease somewhere in an unconstrained predictor
                assert change.min() < 0, (rec.name, f)


def test_coverage_gap_free_and_unc_are_the_same_for_both_methods(runs, tiny_twin):
    land = xr.open_zarr(tiny_twin.cube.url, consolidated=False)["land_mask"].values == 1
    stores = {m: xr.open_zarr(cfg.stores.output, consolidated=False) for m, cfg in runs.items()}
    for method, ds in stores.items():
        sm, unc = ds["sm"].values, ds["sm_unc"].values
        assert ds.attrs["method"] == method and products.decode_attrs(ds.attrs)["gap_free"] is True
        assert np.isfinite(sm).sum() == land.sum() * sm.shape[0], method  # every land pixel-day
        assert np.array_equal(np.isfinite(unc), np.isfinite(sm)), method
        assert (unc[np.isfinite(unc)] > 0).all()
        origin = ds["sm_origin"].values
        assert ((origin > 0) == np.isfinite(sm)).all()
    fused = stores["fusion"]["sm_origin"].values
    assert ((fused & products.SMAP_FUSED) > 0).any() and ((fused & products.SMAP_CARRIED) > 0).any()
    no_smap = (fused & products.NO_SMAP) > 0
    assert not ((fused & products.SMAP_FUSED) > 0)[no_smap].any()  # fused only where SMAP observed


@pytest.mark.timeout(600)
def test_a_region_without_smap_gets_the_model_alone_flagged(runs, tiny_twin, tmp_path, client):
    cube = tmp_path / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, cube)
    arr = zarr.open_array(str(cube / "smap_sm"), mode="r+").with_config({"write_empty_chunks": True})
    arr[...] = np.nan  # SMAP written, no retrieval anywhere (the chunks stay: none is lost)
    base = runs["fusion"]
    cfg = from_dict({**base.model_dump(mode="json"), "stores": {**base.stores.model_dump(), "cube": str(cube),
                                                               "output": str(tmp_path / "sm.zarr")}})
    assert predict(cfg, client).failed == {}
    ds = xr.open_zarr(cfg.stores.output, consolidated=False)
    origin, sm = ds["sm_origin"].values, ds["sm"].values
    ok = np.isfinite(sm)
    assert ok.any() and ((origin[ok] & products.NO_SMAP) > 0).all()
    assert not ((origin & (products.SMAP_FUSED | products.SMAP_CARRIED)) > 0).any()


def _cells(cell_mean, increment, state, halo=None, smooth="none"):
    var = np.full(cell_mean.shape, 1e-4)
    return DayCells(cell_mean, increment, var, state, var_anomaly=4e-4, anomaly_gain=1.0, interval=0.9,
                    halo=halo, smooth=smooth)


@pytest.mark.parametrize("smooth", ["none", "increments", "cell_means"])
def test_fuse_block_keeps_the_fused_cell_means_and_the_model_anomaly(smooth):
    rng = np.random.default_rng(0)
    f = FINE_PER_COARSE
    model = (0.2 + 0.02 * rng.normal(size=(2 * f, 3 * f))).astype(np.float32)
    model[:5, :5] = np.nan  # water
    C = np.array([[0.25, 0.15, 0.3], [0.2, 0.22, 0.18]])
    inc = np.array([[0.02, -0.01, 0.0], [0.03, 0.0, 0.01]])
    state = np.array([[STATE_FUSED, STATE_CARRIED, 0], [STATE_FUSED, 0, STATE_CARRIED]], np.uint8)
    halo = None
    if smooth != "none":
        halo = np.pad(inc if smooth == "increments" else C, 1, constant_values=np.nan)
    sm, unc, origin = fuse_block(model, np.ones(model.shape, np.uint8), _cells(C, inc, state, halo, smooth))
    np.testing.assert_allclose(block_reduce_mean(sm), C, atol=1e-6)  # area-to-point consistent
    if smooth == "none":
        anomaly = model - np.repeat(np.repeat(block_reduce_mean(model), f, 0), f, 1)
        np.testing.assert_allclose(sm - np.repeat(np.repeat(C, f, 0), f, 1), anomaly, atol=1e-6)
    assert np.isnan(sm[:5, :5]).all() and np.isnan(unc[:5, :5]).all()
    np.testing.assert_allclose(unc[10, 10], 1.6448536 * np.sqrt(1e-4 + 4e-4), rtol=1e-5)
    assert (origin[10:20, 10:20] & products.SMAP_FUSED).all()
    assert (origin[10:20, 40:50] & products.SMAP_CARRIED).all()
    assert not (origin[10:20, 80:90] & (products.SMAP_FUSED | products.SMAP_CARRIED)).any()


def test_config_refuses_a_gain_outside_0_2_and_the_removed_predict_with(tiny_twin, tmp_path):
    with pytest.raises(ConfigError, match="anomaly_gain"):
        _config(tiny_twin.cube.url, tmp_path, fusion={"anomaly_gain": 2.5})
    with pytest.raises(ConfigError, match="predict_with was removed"):
        _config(tiny_twin.cube.url, tmp_path, predict_with="pooled")
    with pytest.raises(ConfigError, match="max_rounds"):
        _config(tiny_twin.cube.url, tmp_path, fusion={"grid": {"n_estimators": [100]}})


@pytest.mark.timeout(600)
def test_disaggregation_model_is_trained_stored_and_averaged_into_the_map(runs, tiny_twin, tmp_path, client):
    import datetime as dt

    cfg = _config(tiny_twin.cube.url, tmp_path, disaggregation=True, fusion={**FAST, "pixels_per_cell": 16})
    assert train(cfg, client).failed == {}
    store = ModelStore(cfg.stores.ref("models"))
    card = FusionCard.from_dict(store.read_card(FUSION_KEY))
    assert card.disaggregation is not None and card.disaggregation_card["n_groups"] > 100
    assert card.disaggregation_card["loss_end"] < card.disaggregation_card["loss_start"]
    week = [dt.date(2016, 6, 9) + dt.timedelta(i) for i in range(8)]
    assert predict(cfg, client, only_days=week).failed == {}
    ds = xr.open_zarr(cfg.stores.output, consolidated=False)
    assert "disaggregation" in ledger.read(cfg.stores.ref("output")).day("2016-06-09").model
    plain = xr.open_zarr(runs["fusion"].stores.output, consolidated=False)
    a, b = ds["sm"].isel(time=slice(0, 8)).values, plain["sm"].isel(time=slice(0, 8)).values
    both = np.isfinite(a) & np.isfinite(b)
    assert both.sum() > 10_000 and not np.allclose(a[both], b[both])
    # the cell means stay the fused ones: the averaging only changes the within-cell pattern
    diff = block_reduce_mean(a[0]) - block_reduce_mean(b[0])
    assert np.nanmax(np.abs(diff)) < 0.01


def test_running_mean_window_smooths_the_within_cell_anomaly_across_time_chunks(runs, unsmoothed, tmp_path, client):
    """anomaly_window_days: the map's within-cell anomaly is the centred running mean of the
    daily one (halo days read across the 8-day blocks), its cell means unchanged."""
    from dsm.cellmeans import running_mean, within_cell_anomaly

    base = runs["fusion"]
    raw = base.model_dump(mode="json")
    raw["training"]["fusion"].update(anomaly_window_days=5, smooth="none")  # within-cell anomaly = the model's
    raw["stores"]["output"] = str(tmp_path / "sm_window.zarr")
    cfg = from_dict(raw)
    assert predict(cfg, client).failed == {}
    daily = xr.open_zarr(unsmoothed.stores.output, consolidated=False)["sm"].values
    smooth = xr.open_zarr(cfg.stores.output, consolidated=False)["sm"].values
    assert np.array_equal(np.isfinite(daily), np.isfinite(smooth))
    want = running_mean(np.stack([within_cell_anomaly(d) for d in daily]), 5)
    got = np.stack([within_cell_anomaly(d) for d in smooth])
    ok = np.isfinite(want) & (daily > 0.01) & (smooth > 0.01)  # away from the clip at 0
    assert ok.sum() > 100_000
    assert np.abs(got[ok] - want[ok]).max() < 2e-3  # int16 storage (1e-4) and clipping at cell edges
    # days 7 and 8 sit on either side of the first block boundary: smoothed across it
    assert np.abs(got[7:9][ok[7:9]] - want[7:9][ok[7:9]]).mean() < 2e-4
    assert np.nanstd(np.diff(got, axis=0)) < 0.7 * np.nanstd(np.diff(np.stack([within_cell_anomaly(d) for d in daily]), axis=0))
    cm = lambda a: np.stack([block_reduce_mean(d) for d in a])  # noqa: E731
    assert np.nanmax(np.abs(cm(smooth) - cm(daily))) < 5e-3


def test_anomaly_window_must_be_odd(tiny_twin, tmp_path):
    with pytest.raises(ConfigError, match="anomaly_window_days must be odd"):
        _config(tiny_twin.cube.url, tmp_path, fusion={**FAST, "anomaly_window_days": 4})


def test_the_anomaly_gain_is_calibrated_at_the_stations_recorded_and_kept_on_resume(unsmoothed, tiny_twin, tmp_path,
                                                                                    client):
    """With the twin's 12 stations the gain k of B + k a and sm_unc's within-cell error sd come from
    them (dsm.calibration): recorded in the store, applied to every pixel, and kept by a resumed run."""
    from scipy.stats import norm

    from dsm.calibration import GainCalibration, IntervalCalibration
    from dsm.cellmeans import within_cell_anomaly
    from dsm.station_calibration import GAIN_ATTR, UNC_ATTR

    raw = unsmoothed.model_dump(mode="json")  # smooth: none, so that the within-cell anomaly of the map is k a
    # a configured gain far from the twin's (about 0.5): the stations' must win and be applied
    raw["training"]["fusion"].update(gain_from_stations=True, min_gain_stations=4, anomaly_gain=2.0)
    raw["stores"].update(output=str(tmp_path / "kcal.zarr"), stations=tiny_twin.stations.url)
    cfg = from_dict(raw)
    rep = predict(cfg, client)
    assert rep.failed == {}
    assert list(rep.phases) == ["cell_means", "calibration", "blocks"]  # each timed, in the order they ran
    assert all(v > 0 for v in rep.phases.values()) and sum(rep.phases.values()) <= rep.seconds
    cal = GainCalibration.from_dict(ledger.read(cfg.stores.ref("output")).stored_records()[GAIN_ATTR])
    assert cal.n_stations >= 4 and cal.n_pairs > 100
    assert cal.estimate is not None and cal.cv_rmse_calibrated > 0 and cal.interval is not None
    assert cal.source == "stations" and cal.configured == 2.0 and cal.cv_rmse_calibrated < cal.cv_rmse_configured
    one = xr.open_zarr(unsmoothed.stores.output, consolidated=False)["sm"].values
    got = xr.open_zarr(cfg.stores.output, consolidated=False)["sm"].values
    a1 = np.stack([within_cell_anomaly(d) for d in one])
    ak = np.stack([within_cell_anomaly(d) for d in got])
    ok = np.isfinite(a1) & (one > 0.02) & (got > 0.02) & (np.abs(a1) > 0.01)  # away from the clip at 0
    assert ok.sum() > 10_000
    assert np.median(ak[ok] / a1[ok]) == pytest.approx(cal.gain, abs=0.02)
    # sm_unc's within-cell sd comes from the same stations, and every pixel's interval uses it:
    # (u_k / z)^2 - (u_1 / z)^2 = s^2 - 0.03^2, the cell variance being the same in both stores
    unc = IntervalCalibration.from_dict(ledger.read(cfg.stores.ref("output")).stored_records()[UNC_ATTR])
    assert unc.source == "stations" and unc.n_pairs == cal.n_pairs and unc.cv_coverage is not None
    assert unc.configured == pytest.approx(0.03) and unc.anomaly_sd != unc.configured
    assert unc.station_offsets == "removed" and unc.offset_rms > 0  # training.fusion.interval_station_offsets
    u_1 = xr.open_zarr(unsmoothed.stores.output, consolidated=False)["sm_unc"].values
    u_k = xr.open_zarr(cfg.stores.output, consolidated=False)["sm_unc"].values
    z = norm.ppf((1 + cfg.output.interval) / 2)
    both = np.isfinite(u_1) & np.isfinite(u_k)
    assert both.sum() > 10_000
    assert np.median(((u_k / z) ** 2 - (u_1 / z) ** 2)[both]) == pytest.approx(unc.anomaly_sd ** 2 - 0.03 ** 2, abs=1e-5)
    # a resumed run keeps the store's gain even when the stations change
    raw["stores"]["stations"] = str(tmp_path / "no-stations")
    led = ledger.read(cfg.stores.ref("output"))
    ledger.write_days(cfg.stores.ref("output"), {d: ledger.taken_back(led.day(d)) for d in led.done[-8:]})
    assert predict(from_dict(raw), client).failed == {}
    assert ledger.read(cfg.stores.ref("output")).stored_records()[GAIN_ATTR] == cal.to_dict()
    assert ledger.read(cfg.stores.ref("output")).stored_records()[UNC_ATTR] == unc.to_dict()
    # a rerun with nothing left to do runs no phase
    again = predict(from_dict(raw), client)
    assert again.predicted == [] and again.phases == {}
    assert np.array_equal(xr.open_zarr(cfg.stores.output, consolidated=False)["sm"].values, got, equal_nan=True)
    assert np.array_equal(xr.open_zarr(cfg.stores.output, consolidated=False)["sm_unc"].values, u_k, equal_nan=True)


class _Linear:
    """A model predicting ``X @ w`` (the columns a variant's plan feeds it)."""

    def __init__(self, *w: float) -> None:
        self.w = np.asarray(w, np.float32)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.w


def test_the_within_cell_anomaly_is_averaged_with_the_rain_free_partner():
    f = FINE_PER_COARSE
    rng = np.random.default_rng(3)
    land = np.ones((f, 2 * f), bool)
    land[:3, :3] = False
    lst = (300 + 5 * rng.normal(size=land.shape)).astype(np.float32)
    lst[:, f:][:4] = np.nan  # cloud: the reduced models there
    feats = {"lst": lst, "dem": (1000 + 50 * rng.normal(size=land.shape)).astype(np.float32),
             "precip": np.full(land.shape, 4.0, np.float32)}
    feats["precip"][:, f + 10:] = 12.0  # rain varies within cell 1
    models = {"full": _Linear(0.001, 0.0001, 0.01), "no-rain": _Linear(0.0005, 0.0002),
              "no-lst": _Linear(0.0003, 0.02), "static": _Linear(0.0002)}
    full = VariantPlan("full", ("lst", "dem", "precip"), "full", "s")
    no_rain = VariantPlan("no-rain", ("lst", "dem"), "no-rain", "s")
    no_lst = VariantPlan("no-lst", ("dem", "precip"), "no-lst", "s")
    static = VariantPlan("static", ("dem",), "static", "s")
    plain = DayPlan(dt.date(2016, 6, 27), "p", "fusion", "xgb", False, (full, no_rain, no_lst, static))
    paired = replace(plain, partners=(("full", no_rain), ("no-lst", static)))
    smap = np.array([[0.2, 0.25]], np.float32)
    load = lambda key, sha: models[key]  # noqa: E731
    m0, u0, o0, c0, d0 = model_day(feats, land, smap, plain, load)
    m1, u1, o1, c1, d1 = model_day(feats, land, smap, paired, load)
    # the model, its origin and counts do not change; the detail field is the pair's mean
    np.testing.assert_array_equal(m0, m1)
    np.testing.assert_array_equal(o0, o1)
    assert c0 == c1 and d0 is m0
    X = np.stack([feats["lst"], feats["dem"], feats["precip"]], -1)
    clear = land & np.isfinite(lst)
    np.testing.assert_allclose(d1[clear], 0.5 * (X[clear] @ models["full"].w + X[clear][:, :2] @ models["no-rain"].w),
                               rtol=1e-6)
    cloud = land & ~np.isfinite(lst)
    np.testing.assert_allclose(d1[cloud], 0.5 * (X[cloud][:, 1:] @ models["no-lst"].w + X[cloud][:, 1] * 0.0002),
                               rtol=1e-6)
    assert np.isnan(d1[~land]).all()
    # the fused map adds k times the detail's within-cell anomaly to the fused cell mean
    cells = _cells(np.array([[0.21, 0.24]]), np.zeros((1, 2)), np.full((1, 2), STATE_FUSED, np.uint8))
    sm, _, _, _ = predict_day(feats, land, smap, paired, load, cells=cells)
    expected = d1 - repeat_to_fine(block_reduce_mean(d1), f) + repeat_to_fine(np.array([[0.21, 0.24]]), f)
    np.testing.assert_allclose(sm[land], expected[land], atol=1e-6)
    sm0, _, _, _ = predict_day(feats, land, smap, plain, load, cells=cells)
    assert not np.allclose(sm0[land], sm[land])


def test_prediction_averages_the_anomaly_with_the_cards_rain_free_partner(runs, unsmoothed, tmp_path, client):
    """The same models predicted with a card that lists no anomaly partners: the cell means do
    not change, the within-cell anomalies do (they are the full model's alone)."""
    from dsm.cellmeans import within_cell_anomaly

    models = tmp_path / "models"
    shutil.copytree(unsmoothed.stores.models, models)
    store = ModelStore(StoreRef(str(models)))
    card = store.read_card(FUSION_KEY)
    assert card["anomaly_partners"] == {"full": "no-rain", "no-lst": "no-lst-rain"}
    store.write_card(FUSION_KEY, {**card, "anomaly_partners": {}})
    raw = unsmoothed.model_dump(mode="json")
    raw["stores"].update(models=str(models), output=str(tmp_path / "alone.zarr"))
    alone = from_dict(raw)
    assert predict(alone, client).failed == {}
    day = "2016-06-20"
    assert ledger.read(unsmoothed.stores.ref("output")).day(day).model["anomaly_partners"] == card["anomaly_partners"]
    assert "anomaly_partners" not in ledger.read(alone.stores.ref("output")).day(day).model
    paired = xr.open_zarr(unsmoothed.stores.output, consolidated=False)["sm"].values
    own = xr.open_zarr(alone.stores.output, consolidated=False)["sm"].values
    ok = (paired > 0.01) & (own > 0.01)  # away from the clip at 0
    assert ok.sum() > 100_000
    cm = lambda a: np.stack([block_reduce_mean(d) for d in a])  # noqa: E731
    np.testing.assert_allclose(cm(np.where(ok, paired, np.nan)), cm(np.where(ok, own, np.nan)), atol=2e-3)
    a_paired = np.stack([within_cell_anomaly(d) for d in paired])[ok]
    a_own = np.stack([within_cell_anomaly(d) for d in own])[ok]
    assert np.abs(a_paired - a_own).mean() > 5e-4


def test_station_tasks_model_only_the_time_chunks_holding_an_observation():
    from dsm.station_calibration import observed_spans

    # chunks of 8 days over 100 days; observations in chunks 0, 1, 2, 5 and the last (partial) one
    days = [0, 7, 8, 20, 41, 99, -3, 100]  # days outside the run are ignored
    assert observed_spans(days, 100, 8, 256) == [(0, 24), (40, 48), (96, 100)]
    assert observed_spans(days, 100, 8, 16) == [(0, 16), (16, 24), (40, 48), (96, 100)]  # at most 16 days each
    assert observed_spans([], 100, 8, 256) == []
    every = observed_spans(range(100), 100, 8, 32)
    assert [t1 - t0 for t0, t1 in every] == [32, 32, 32, 4] and every[0][0] == 0 and every[-1][1] == 100


def test_the_36km_pass_of_some_days_covers_them_and_their_lead_in_only():
    from types import SimpleNamespace

    from dsm.cellmeans import pass_day_sets
    from dsm.fusion import ErrorModel
    from dsm.periods import Composite, periods

    start, end = dt.date(2016, 6, 9), dt.date(2016, 7, 23)
    ds = xr.Dataset(coords={"time": _daily_axis(dt.date(2016, 6, 1), end)})  # the cube holds days before the run
    em = ErrorModel(var_smap=4e-4, var_smap_method="triple_collocation", n_triplets=500, var_model=6e-4,
                    mse_innovation=1e-3, n_samples=800, weight=0.6, decay_days=2.5, decay_method="estimated",
                    max_carry_days=10)
    card = SimpleNamespace(error_model=em.to_dict())  # what the pass reads of a fusion card
    assert pass_day_sets(ds, start, end, card) == periods(start, end)  # every period, whole
    sets = pass_day_sets(ds, start, end, card, (dt.date(2016, 7, 3), end))
    # from 10 days before 07-03: the end of the first period (06-09..06-24), then its own (06-25..07-10)
    # whole, then the last one's days the cube holds (07-11..07-23)
    assert sets[0] == [dt.date(2016, 6, 23), dt.date(2016, 6, 24)]
    assert sets[1] == Composite(dt.date(2016, 6, 25), dt.date(2016, 7, 10))
    assert sets[2] == [dt.date(2016, 7, 11) + dt.timedelta(days=i) for i in range(13)] and len(sets) == 3
    # near the start the lead-in stops where the whole pass starts: the first period's first day
    first = pass_day_sets(ds, start, end, card, (dt.date(2016, 6, 10), dt.date(2016, 6, 12)))
    assert first == [[dt.date(2016, 6, 9) + dt.timedelta(days=i) for i in range(4)]]


def _daily_axis(first: dt.date, last: dt.date) -> np.ndarray:
    """Daily datetime64 values from ``first`` to ``last``, as a cube's time axis holds them."""
    return np.arange(np.datetime64(first, "ns"), np.datetime64(last + dt.timedelta(days=1), "ns"), np.timedelta64(1, "D"))
