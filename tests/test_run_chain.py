"""``dsm run`` end to end on an external cluster and object storage, and the faults it survives.

One module-scoped chain: a real S3-compatible server on loopback, a ``dask scheduler`` and two
``dask worker`` processes started here, and ``dsm run`` as its own process with every store
(cube, truth, stations, models, products, COGs, STAC, validation, run records) in ``s3://``
and the credentials in its environment only. The fault tests then predict again into fresh
output stores on the same cluster and store, and compare them byte for byte with the chain's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import yaml
from distributed import Client

from dsm import ledger
from dsm.chain import run
from dsm.config import load
from dsm.errors import StoreError
from dsm.store import FENCE_ATTR
from dsm.storeref import StoreRef
from dsm.testing.processes import ProcessCluster

pytestmark = [pytest.mark.s3, pytest.mark.cluster, pytest.mark.slow]
NDAYS = 24  # a 16-day period and half of the next: every stage, a fault after 4 days, half the time of 48

TRAINING = {"min_samples": 40, "models": ["mlr", "xgb"], "cv_folds": 2,
            "fusion": {"grid": {"max_depth": [3]}, "max_rounds": 80, "cv_folds": 3},
            "grids": {"xgb": {"n_estimators": [60], "max_depth": [3], "learning_rate": [0.1]}},
            "pooled_params": {"n_estimators": 60, "max_depth": 4}}


@pytest.fixture(scope="module")
def chain(s3, tmp_path_factory):
    """The whole chain run once by ``dsm run`` in a subprocess; yields what the tests need."""
    bucket = s3.make_bucket("dsm-chain")
    tmp = tmp_path_factory.mktemp("chain")
    root = f"{bucket}/tiny"
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-02"},  # NDAYS
           "stores": {k: f"{root}/{v}" for k, v in {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations",
                                                     "models": "models", "output": "sm.zarr", "cog": "cog",
                                                     "stac": "stac"}.items()},
           "chunks": {"space": 144, "time": 4}, "twin": {"seed": 3}, "training": TRAINING,
           "validation": {"partial_correlation_freq": "W", "bootstrap": {"n_resamples": 50}}}
    with ProcessCluster(2, env=s3.worker_env) as cluster:
        raw["cluster"] = {"address": cluster.address}
        path = tmp / "chain.yaml"
        path.write_text(yaml.safe_dump(raw))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **s3.env}
        started = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "dsm", "run", str(path)], capture_output=True, text=True,
                             env=env, timeout=600, cwd=tmp)
        yield {"s3": s3, "cluster": cluster, "path": path, "raw": raw, "root": root, "env": env, "first": res,
               "seconds": time.perf_counter() - started}


def _objects(fs, url: str) -> dict[str, bytes]:
    """Every object of a products store but the export stage's records (its COG and netCDF ledger)."""
    base = url.removeprefix("s3://").rstrip("/")
    export = tuple(f"{base}/{ledger.FOLDER}/{kind}/" for kind in (ledger.COG, ledger.NETCDF))
    return {p[len(base):]: fs.cat_file(p) for p in sorted(fs.find(base)) if not p.startswith(export)}


def _same_products(fs, a: str, b: str) -> list[str]:
    """Keys whose bytes differ between two product stores (root attributes compared without
    ``cog_settings``, which only the export stage records, as it alone writes its ledger objects)."""
    fs.invalidate_cache()
    oa, ob = _objects(fs, a), _objects(fs, b)
    assert oa.keys() == ob.keys()
    diff = [k for k in oa if k != "/zarr.json" and oa[k] != ob[k]]
    ja, jb = json.loads(oa["/zarr.json"]), json.loads(ob["/zarr.json"])
    for j in (ja, jb):
        j["attributes"].pop("cog_settings", None)
        j["attributes"].pop(FENCE_ATTR, None)  # the writer's lease token: every run takes its own
    return diff + (["/zarr.json"] if ja != jb else [])


def _days_done(out: StoreRef) -> int:
    try:
        return len(ledger.read(out).done)
    except (OSError, ValueError, KeyError, StoreError):  # not yet created, or the server is down
        return 0


def _fault_setup(chain, name: str):
    """Server, cluster, a filesystem, the chain's products URL, a fresh products URL ``name``
    and the chain's configuration predicting into it (credentials as storage options)."""
    assert chain["first"].returncode == 0
    ref, out = f"{chain['root']}/sm.zarr", f"{chain['root']}/{name}/sm.zarr"
    cfg = load(chain["path"])
    stores = cfg.stores.model_copy(update={"output": out, "storage_options": chain["s3"].storage_options})
    return chain["s3"], chain["cluster"], chain["s3"].filesystem(), ref, out, cfg.model_copy(update={"stores": stores})


@contextmanager
def _predicting(cfg, client, fs):
    """Run the predict stage of ``cfg`` in a thread; enter once 4 days are recorded (the fault
    goes in the body), leave when the run has ended; the run's result is ``results["r"]``."""
    results: dict = {}
    thread = threading.Thread(target=lambda: results.update(r=run(cfg, client, stages=("predict",))))
    thread.start()
    deadline = time.monotonic() + 120
    while _days_done(cfg.stores.ref("output")) < 4 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert thread.is_alive(), "prediction finished before the fault could be injected"
    try:
        yield results
    finally:
        thread.join(timeout=300)
    assert "r" in results, "the run did not return"


@pytest.mark.timeout(900)
def test_the_whole_chain_runs_on_an_external_cluster_against_s3(chain):
    res = chain["first"]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for stage in ("cube", "train", "predict", "export", "validate"):
        assert f"== {stage}: done" in res.stdout
    assert f"predicted {NDAYS} day(s)" in res.stdout and f"exported {NDAYS} day(s) of COGs" in res.stdout
    fs = chain["s3"].filesystem()
    root = chain["root"].removeprefix("s3://")
    assert _days_done(StoreRef(f"s3://{root}/sm.zarr", fs.storage_options)) == NDAYS
    cogs = fs.glob(f"{root}/cog/SM_1km_2016???.tif")
    assert len(cogs) == NDAYS and f"{root}/cog/SM_1km_2016161.tif" in cogs
    assert fs.exists(f"{root}/stac/collection.json")
    assert fs.exists(f"{root}/validation/report.html") and fs.exists(f"{root}/skill.json")
    assert fs.exists(f"{root}/validation/timeseries/dsm_timeseries.zip")
    # the mean maps, started by the validate stage before the twin skill, were written for the report
    assert fs.exists(f"{root}/validation/means.zarr/sm_daily_mean_regional/zarr.json")
    assert list(chain["path"].parent.iterdir()) == [chain["path"]]  # nothing written locally
    records = fs.glob(f"{root}/runs/*/run.json")
    assert len(records) == 1
    record = json.loads(fs.cat_file(records[0]))
    assert record["outcome"] == "complete" and [s["stage"] for s in record["stages"]] == \
        ["cube", "train", "predict", "export", "validate"]
    assert fs.exists(records[0].replace("run.json", "dask-performance.html"))
    assert not fs.exists(f"{root}/sm.zarr.lock")  # released
    assert chain["cluster"].address in res.stdout  # the cluster (and its dashboard) was named


@pytest.mark.timeout(600)
def test_a_rerun_resumes_and_redoes_nothing(chain):
    assert chain["first"].returncode == 0
    stages = [a for s in ("cube", "train", "predict", "export") for a in ("--stage", s)]  # validate always reruns
    res = subprocess.run([sys.executable, "-m", "dsm", "run", *stages, str(chain["path"])], capture_output=True,
                         text=True, env=chain["env"], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "twin already built" in res.stdout
    assert "skipped (already stored; --force retrains): fusion" in res.stdout
    assert "fusing the model's cell means" not in res.stdout + res.stderr  # no day left: no 36 km pass
    assert "predicted 0 day(s)" in res.stdout and f"skipped {NDAYS} already done" in res.stdout
    assert "exported 0 day(s) of COGs" in res.stdout and f"skipped {NDAYS}" in res.stdout


@pytest.mark.timeout(600)
def test_a_worker_killed_during_prediction_changes_no_byte(chain):
    s3, cluster, fs, ref, out, cfg = _fault_setup(chain, "killed-worker")
    with Client(cluster.address) as client:
        with _predicting(cfg, client, fs) as results:
            victim = next(i for i, w in enumerate(cluster.workers) if w.alive)
            cluster.kill_worker(victim)
        cluster.start_worker()  # back to two workers for the next test
    result = results["r"]
    assert result.outcome == "complete", [s.record() for s in result.stages]
    assert result.stages[0].summary["predicted"] == NDAYS
    assert _same_products(fs, ref, out) == []


@pytest.mark.timeout(600)
def test_an_s3_outage_during_a_run_resumes_to_identical_bytes(chain):
    s3, cluster, fs, ref, out, cfg = _fault_setup(chain, "outage")
    with Client(cluster.address) as client:
        with _predicting(cfg, client, fs) as results:
            s3.stop()
            time.sleep(3.0)
            s3.start()
        first = results["r"]
        stage = first.stages[0]
        # either the retries carried the run through, or it stopped with a clear, resumable error
        assert first.outcome == "complete" or (
            stage.status in ("error", "partial") and ("rerun to resume" in stage.message or stage.failed)), stage.record()
        # the rerun (the first run may not have managed to delete its lock while the server was down)
        second = run(cfg, client, stages=("predict",), break_lock=True)
    assert second.outcome == "complete", [s.record() for s in second.stages]
    assert _days_done(cfg.stores.ref("output")) == NDAYS
    assert _same_products(s3.filesystem(), ref, out) == []
