"""Training on a real LocalCluster: per-period models, fallback, reruns, failures, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from distributed import get_task_stream

from dsm.config import from_dict
from dsm.cube import open_cube
from dsm.errors import ConfigError, TransientIOError, WorkerLostError
from dsm.models.period_cards import TrainedPeriodCard
from dsm.models.search import search, search_local
from dsm.models.store import ModelStore
from dsm.models.variant_cards import read_variant_card
from dsm.models.variants import FULL, variant_key, variants_of
from dsm.periods import periods
from dsm.samples import sample_graph
from dsm.stages.train import train

pytestmark = pytest.mark.slow  # make test-fast leaves these out

P1, P2, P3 = "2016161", "2016177", "2016193"
SMALL_GRIDS = {
    "mlr": {"fit_intercept": [True]},
    "svr": {"C": [1.0, 3.0]},
    "ann": {"hidden_layer_sizes": [[16]], "alpha": [0.01]},
    "rf": {"n_estimators": [30], "max_depth": [5]},
    "xgb": {"n_estimators": [30], "max_depth": [3]},
}


def _config(cube: str, model_store: str, **training):
    t = {"method": "rao2022", "min_samples": 30, "grids": SMALL_GRIDS, "pooled_params": {"n_estimators": 30},
         **training}
    return from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
                      "stores": {"cube": cube, "models": model_store}, "training": t})


def _copy_cube(tiny_twin, tmp_path: Path) -> str:
    dst = tmp_path / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, dst)
    return str(dst)


@pytest.mark.timeout(180)
def test_trains_every_period_stores_cards_and_rerun_skips(tiny_twin, tmp_path, client):
    cfg = _config(tiny_twin.cube.url, str(tmp_path / "models"))
    with get_task_stream(client) as stream:
        report = train(cfg, client)
    assert report.failed == {}
    assert report.trained == [P1, P2, P3]
    ds = open_cube(tiny_twin.cube)
    # every predictor set's table of a period from one task per block (the variants' too)
    chunks = ds["land_mask"].encoding["chunks"]
    blocks = -(-ds.sizes["y"] // chunks[0]) * -(-ds.sizes["x"] // chunks[1])
    assert sum(str(t["key"]).startswith("block_table") for t in stream.data) == 3 * blocks
    reduced = {v: preds for v, preds in variants_of(cfg).items() if v != FULL}
    assert reduced and len(report.variants) == 3 * (len(reduced) + 1)
    for p in periods(cfg.dates.start, cfg.dates.end):
        for variant, preds in reduced.items():
            card = read_variant_card(ModelStore(cfg.stores.ref("models")), variant_key(variant, p.name))
            assert card.n_samples == len(sample_graph(ds, p, list(preds)).compute(scheduler="sync")) > 0
    store = ModelStore(cfg.stores.ref("models"))
    for p, card in zip(periods(cfg.dates.start, cfg.dates.end), report.cards):
        n = len(sample_graph(ds, p, cfg.predictors).compute(scheduler="sync"))
        assert isinstance(card, TrainedPeriodCard) and card.n_samples == n
        assert card.split["n_train"] + card.split["n_test"] == n
        assert set(card.models) == set(cfg.training.models)
        best = min(card.models, key=lambda m: card.models[m].train["rmse"] + card.models[m].test["rmse"])
        assert card.chosen == best
        assert sum(card.importance.rf_impurity.values()) == pytest.approx(1.0)
        assert set(card.importance.xgb_gain) == set(cfg.predictors)
        assert card.spatial_split["models"]
        assert store.load_model(p.name) is not None
    assert report.pooled is not None and set(report.pooled.per_period) == {P1, P2, P3}
    t4 = report.table4()
    assert {"mlr", "svr", "ann", "rf", "xgb", "combination", "pooled"} <= set(t4.index)
    again = train(cfg, client)
    assert again.trained == [] and again.skipped == [P1, P2, P3] and again.failed == {}
    card_file = tmp_path / "models" / P3 / "card.json"
    card_file.write_text(json.dumps({k: v for k, v in json.loads(card_file.read_text()).items() if k != "models"}))
    healed = train(cfg, client)  # a card its schema rejects is trained again, not kept as done
    assert healed.trained == [P3] and healed.skipped == [P1, P2] and "models" in json.loads(card_file.read_text())
    forced = train(cfg, client, force=True, only=[P2])
    assert forced.trained == [P2] and forced.skipped == []


@pytest.mark.timeout(180)
def test_worker_failure_in_one_period_leaves_the_others_trained(tiny_twin, tmp_path, client):
    cube = _copy_cube(tiny_twin, tmp_path)
    # time chunks of 8 days: chunk 2 (days 16-23) lies in the second period only
    chunk = Path(cube) / "lst" / "c" / "2" / "0" / "0"
    assert chunk.is_file()
    chunk.write_bytes(b"this is not a blosc chunk")
    cfg = _config(cube, str(tmp_path / "models"), pooled=False)
    report = train(cfg, client)
    assert report.trained == [P1, P3]
    assert P2 in report.failed and report.failed[P2]
    assert ModelStore(cfg.stores.ref("models")).read_card(P2) is None  # retried by the next run


@pytest.mark.timeout(180)
def test_invalid_and_short_periods_fall_back(tiny_twin, tmp_path, client):
    cube = _copy_cube(tiny_twin, tmp_path)
    sm = zarr.open_array(str(Path(cube) / "smap_sm"), mode="r+").with_config({"write_empty_chunks": True})
    sm[0:16] = np.nan  # every sample of the first period invalid (written: no chunk is lost)
    cfg = _config(cube, str(tmp_path / "models"), pooled=False)
    report = train(cfg, client)
    assert report.trained == [P2, P3] and report.reused == [P1]
    card = ModelStore(cfg.stores.ref("models")).read_card(P1)
    assert card["n_samples"] == 0 and card["reused_from"] == P2 and "no valid samples" in card["fallback"]
    # a short middle period uses the previous one
    n2 = next(c.n_samples for c in report.cards if c.period == P2)
    n3 = next(c.n_samples for c in report.cards if c.period == P3)
    cfg2 = _config(cube, str(tmp_path / "models2"), pooled=False, min_samples=min(n2, n3) + 1,
                   models=["mlr", "rf"])
    report2 = train(cfg2, client)
    big = P2 if n2 > n3 else P3
    assert report2.trained == [big]
    cards = {c.period: c for c in report2.cards}
    assert all(cards[p].reused_from == big for p in (P1, P2, P3) if p != big)


@pytest.mark.timeout(120)
def test_cluster_search_matches_sklearn_search(client):
    rng = np.random.default_rng(0)
    X = rng.random((121, 4)).astype(np.float32)  # folds of 41, 40 and 40: a mean weighted by fold size differs
    y = X @ np.array([0.2, -0.1, 0.05, 0.3]) + rng.normal(0, 0.02, 121)
    grid = {"n_estimators": [20], "max_depth": [2, 6]}
    b = search_local("xgb", X, y, grid, folds=3, seed=1)
    for one_task_max, n_tasks in ((0, lambda n: n >= 6), (X.size, lambda n: n == 1)):  # per fit, then one task
        with get_task_stream(client) as ts:
            a = search(client, "xgb", X, y, grid, folds=3, seed=1, one_task_max=one_task_max)
        fits = [t for t in ts.data if "search_local" in str(t["key"]) or "fit" in str(t["key"])]
        assert n_tasks(len(fits)), (one_task_max, [t["key"] for t in ts.data])
        assert a.best_params == b.best_params
        assert a.cv_rmse == pytest.approx(b.cv_rmse, rel=1e-9)
        np.testing.assert_array_equal(a.estimator.predict(X), b.estimator.predict(X))


@pytest.mark.timeout(240)
def test_cli_train_prints_the_tables(tiny_twin, tmp_path):
    cfg = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": tiny_twin.cube.url, "models": str(tmp_path / "models")},
           "cluster": {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"},
           "training": {"method": "rao2022", "min_samples": 30, "grids": SMALL_GRIDS, "pooled": False,
                        "models": ["mlr", "xgb"]}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "dsm", "train", str(path)], capture_output=True, text=True, timeout=200)
    assert res.returncode == 0, res.stderr
    assert "per period:" in res.stdout and "Table 4" in res.stdout and "combination" in res.stdout
    for p in (P1, P2, P3):
        assert p in res.stdout
    bad = dict(cfg, training={"models": ["mlr", "lasso"]})
    path.write_text(yaml.safe_dump(bad))
    res = subprocess.run([sys.executable, "-m", "dsm", "train", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "lasso" in res.stderr


# --------------------------------------------------------------- grid values and lost workers

@pytest.mark.parametrize("training, path, value, reason", [
    ({"grids": {"rf": {"n_estimators": [200, -5]}}}, "training.grids.rf.n_estimators", "-5",
     "'n_estimators' parameter of RandomForestRegressor must be an int in the range [1, inf)"),
    ({"grids": {"svr": {"C": [0.0]}}}, "training.grids.svr.C", "0.0", "'C' parameter of SVR must be"),
    ({"grids": {"ann": {"hidden_layer_sizes": [[16], [16, -5]]}}}, "training.grids.ann.hidden_layer_sizes",
     "[16, -5]", "hidden_layer_sizes must be > 0"),
    ({"grids": {"xgb": {"max_depth": [-1]}}}, "training.grids.xgb.max_depth", "-1",
     "value -1 for Parameter max_depth should be greater equal to 0"),
    ({"grids": {"xgb": {"n_estimators": [0]}}}, "training.grids.xgb.n_estimators", "0", "whole number"),
    ({"fusion": {"grid": {"subsample": [0.8, 2.0]}}}, "training.fusion.grid.subsample", "2.0",
     "Parameter subsample exceed bound [0,1]"),
    ({"fusion": {"grid": {"max_dept": [3]}}}, "training.fusion.grid.max_dept", "3", "reports the parameter"),
    ({"pooled_params": {"n_estimators": 30, "learning_rate": -1}}, "training.pooled_params.learning_rate", "-1",
     "Parameter learning_rate should be greater equal to 0"),
])
def test_grid_values_their_estimator_rejects_fail_before_training(tmp_path, training, path, value, reason):
    from dsm.stages.train import check_training_config

    cfg = _config("/nonexistent/cube.zarr", str(tmp_path / "models"), **training)
    with pytest.raises(ConfigError) as info:
        check_training_config(cfg)
    text = str(info.value)
    assert text.startswith(f"{path}: the value {value} cannot be used") and reason in text
    assert "fix or remove it" in text and "\n" not in text and "Stack trace" not in text
    with pytest.raises(ConfigError, match=path):  # the train stage checks before opening the cube
        train(cfg, None)  # type: ignore[arg-type]


def test_valid_grids_pass_the_training_check(tmp_path):
    from dsm.stages.train import check_training_config

    check_training_config(_config("c.zarr", str(tmp_path / "m")))
    check_training_config(_config("c.zarr", str(tmp_path / "m"), method="fusion", grids={}, pooled_params={}))
    check_training_config(_config("c.zarr", str(tmp_path / "m"), grids={
        "rf": {"max_depth": [None, 4], "max_features": [1.0, "sqrt"]},
        "xgb": {"n_estimators": [5], "tree_method": ["exact"], "subsample": [1.0]},
        "ann": {"hidden_layer_sizes": [[8, 4], 6]}}, fusion={"grid": {"gamma": [0.0, 0.1]}}))


def test_a_lost_worker_in_the_distributed_fit_is_one_resumable_line():
    import xgboost
    from distributed.comm.core import CommClosedError

    from dsm.models.pooled import worker_lost

    raw = ("[09:41:07] /workspace/src/collective/result.cc:83: [allgather.cc:53|09:41:07]: Ring allgather failed, "
           "current iteration:0\n- [socket.h:348|09:41:07]: Socket error. Connection reset by peer\n"
           "Stack trace:\n  [bt] (0) /opt/xgboost/lib/libxgboost.so(+0x11031e) [0x7f41bc91031e]\n")
    err = worker_lost(xgboost.core.XGBoostError(raw), "pooled model (training.pooled)")
    assert isinstance(err, WorkerLostError) and isinstance(err, TransientIOError)
    text = str(err)
    assert text.startswith("pooled model (training.pooled): a Dask worker was lost during the distributed")
    assert "Ring allgather failed, current iteration:0; Socket error. Connection reset by peer" in text
    assert "rerun to resume" in text and "\n" not in text and "[bt]" not in text and "09:41:07" not in text
    closed = worker_lost(CommClosedError("in <TCP (closed) ConnectionPool.gather>: Stream is closed"), "fusion model")
    assert isinstance(closed, WorkerLostError) and str(closed).startswith("fusion model: a Dask worker was lost")
    # other errors of the fit are not a lost worker: a real parameter error of XGBoost goes on as it is
    with pytest.raises(xgboost.core.XGBoostError) as info:
        xgboost.XGBRegressor(max_depth=-1, n_estimators=1).fit(np.ones((4, 1), np.float32), np.ones(4, np.float32))
    assert worker_lost(info.value, "pooled model") is None
    assert worker_lost(ValueError("Ring allgather failed"), "pooled model") is None


@pytest.mark.timeout(300)
def test_the_same_inputs_and_seed_give_byte_identical_model_files(tiny_twin, tmp_path, client):
    """Provenance hashes are stable: per-period joblib and XGBoost files and the pooled
    ``xgboost.dask`` model come out byte for byte the same from two runs on two workers."""
    stores = []
    for name in ("first", "second"):
        cfg = _config(tiny_twin.cube.url, str(tmp_path / name), models=["mlr", "rf", "xgb"])
        cfg = cfg.model_copy(update={"dates": cfg.dates.model_copy(update={"end": cfg.dates.start.replace(day=24)})})
        assert train(cfg, client).failed == {}
        stores.append({str(p.relative_to(tmp_path / name)): p.read_bytes()
                       for p in sorted((tmp_path / name).rglob("model.*"))})
    first, second = stores
    assert "pooled/model.json" in first and any(k.startswith("2016161/model.") for k in first)
    assert first.keys() == second.keys() and [k for k in first if first[k] != second[k]] == []


@pytest.mark.timeout(180)
def test_a_model_that_fails_to_fit_makes_the_stage_partial_and_is_fitted_again_on_rerun(tiny_twin, tmp_path, client):
    """A grid value that passes the configuration check but fails in ``fit`` (a precomputed
    kernel, given features): the period still chooses among the other models, the failure is named per
    period and model (so the train stage is partial, not done), and a rerun tries it again."""
    grids = {**SMALL_GRIDS, "svr": {"kernel": ["precomputed"]}}  # needs a square kernel matrix: fails in fit
    cfg = _config(tiny_twin.cube.url, str(tmp_path / "models"), pooled=False, models=["mlr", "svr"], grids=grids)
    report = train(cfg, client)
    assert report.trained == [P1, P2, P3]
    assert sorted(report.failed) == [f"{p}/svr" for p in (P1, P2, P3)]
    assert all("failed to fit" in why and "square matrix" in why for why in report.failed.values())  # the cause named
    assert all(isinstance(c, TrainedPeriodCard) and c.chosen == "mlr" and "svr" in c.model_errors for c in report.cards)
    table = report.period_table()
    assert set(table.loc[table["status"] == "failed", "period"]) == set(report.failed)
    again = train(cfg, client)  # not skipped as done: the failed model is tried again
    assert again.trained == [P1, P2, P3] and sorted(again.failed) == sorted(report.failed)


@pytest.mark.timeout(240)
def test_the_configured_device_reaches_every_fitted_variant(tiny_twin, tmp_path, client):
    """``cluster.device`` is passed down to the companion fits on the workers (recorded in their
    cards); on a machine without a GPU XGBoost falls back to the CPU, so this runs anywhere."""
    from dsm.models.variants import variant_key

    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
                     "stores": {"cube": tiny_twin.cube.url, "models": str(tmp_path / "models")}, "cluster": {"device": "cuda"},
                     "training": {"method": "rao2022", "min_samples": 30, "grids": SMALL_GRIDS, "models": ["xgb"],
                                  "pooled": False}})
    report = train(cfg, client, only=[P2])
    assert report.failed == {} and report.variants
    store = ModelStore(cfg.stores.ref("models"))
    cards = [store.read_card(variant_key(v, P2)) for v in ("full", "no-lst")]
    assert [c["device"] for c in cards] == ["cuda", "cuda"], cards
