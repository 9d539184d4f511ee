"""``dsm run CONFIG --until DATE`` on object storage and an external cluster (:mod:`dsm.extend`).

The paper's method (rao2022) on the tiny twin, every store (cube, truth, stations, models,
products, COGs, STAC) in ``s3://`` on the loopback S3 server, a ``dask scheduler`` and two
``dask worker`` processes: a run to day N (2016-07-03, 25 days: the last 4-day time chunk holds
one day), then ``dsm run CONFIG --until N+4`` as its own process (credentials in its environment
only). The objects are compared by ETag and last-modified time before and after: the extension
wrote no existing data chunk but the partial last time chunk and the chunks of the days it redid
(those of the retrained partial period, named in the ledger). The ledger is read here, in the
process that made the first run (its s3fs instance has the ledger's folders listed), after the
other process added records: every day must be read as done.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import xarray as xr
import yaml
from distributed import Client

from dsm import ledger
from dsm.chain import run
from dsm.config import load
from dsm.testing.processes import ProcessCluster

pytestmark = [pytest.mark.s3, pytest.mark.cluster, pytest.mark.slow]

START, N, UNTIL = dt.date(2016, 6, 9), dt.date(2016, 7, 3), dt.date(2016, 7, 7)
TCHUNK = 4
TRAINING = {"method": "rao2022", "min_samples": 40, "models": ["mlr", "xgb"], "cv_folds": 2, "pooled": False,
            "grids": {"xgb": {"n_estimators": [30], "max_depth": [3], "learning_rate": [0.2]}}}
DAILY = ("lst", "albedo", "smap_sm", "sm_true", "sm", "sm_unc", "sm_origin", "sm_36km")  # on the daily time axis


def _objects(fs, url: str) -> dict[str, tuple[str, object]]:
    """Every object under ``url``: key relative to it -> (ETag, last modified)."""
    fs.invalidate_cache()
    base = url.removeprefix("s3://").rstrip("/")
    return {p[len(base) + 1:]: (info["ETag"], info["LastModified"])
            for p, info in fs.find(base, detail=True).items()}


def _row(key: str) -> tuple[str, int] | None:
    """``(variable, time chunk index)`` of a daily data chunk ``var/c/t/...``, else None."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] in DAILY and parts[1] == "c":
        return parts[0], int(parts[2])
    return None


@pytest.mark.timeout(600)
def test_until_extends_every_store_on_s3_on_an_external_cluster(s3, tmp_path):
    root = f"{s3.make_bucket('dsm-extend')}/tiny"
    stores = {k: f"{root}/{v}" for k, v in {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations",
                                             "models": "models", "output": "sm.zarr", "cog": "cog",
                                             "stac": "stac"}.items()}
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": START.isoformat(), "end": N.isoformat()},
           "stores": stores, "chunks": {"space": 144, "time": TCHUNK}, "twin": {"seed": 3}, "training": TRAINING,
           "run": {"stages": ["cube", "train", "predict", "export"], "performance_report": False}}
    fs = s3.filesystem()
    with ProcessCluster(2, env=s3.worker_env) as cluster:
        raw["cluster"] = {"address": cluster.address}
        path = tmp_path / "extend.yaml"
        path.write_text(yaml.safe_dump(raw))
        cfg = load(path)
        cfg = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"storage_options": s3.storage_options})})
        with Client(cluster.address) as client:
            first = run(cfg, client, progress=lambda line: None)
        assert first.outcome == "complete", [(s.stage, s.status, s.message) for s in first.stages]
        before = {s: _objects(fs, stores[s]) for s in ("cube", "output")}
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **s3.env}
        res = subprocess.run([sys.executable, "-m", "dsm", "run", str(path), "--until", UNTIL.isoformat()],
                             capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"twin extended from {N} to {UNTIL}" in res.stdout, res.stdout
    assert "trained on: 2016177 2016-06-25..2016-07-07" in res.stdout, res.stdout  # 2016161 kept
    assert "predicted 13 day(s)" in res.stdout and "skipped 16 already done" in res.stdout, res.stdout  # 9 redone
    n_old, n_new = (N - START).days + 1, (UNTIL - START).days + 1

    # every day done, the COGs of every day, the arrays grown, the recorded ends moved
    led = ledger.read(cfg.stores.ref("output"))
    days = [(START + dt.timedelta(k)).isoformat() for k in range(n_new)]
    assert sorted(led.done) == days
    cogs = fs.glob(f"{stores['cog'].removeprefix('s3://')}/SM_1km_2016???.tif")
    assert len(cogs) == n_new
    for store in ("cube", "output"):
        ref = cfg.stores.ref(store)
        with xr.open_zarr(ref.url, storage_options=ref.zarr_options, consolidated=False) as ds:
            assert ds.sizes["time"] == n_new, store
            assert str(ds["time"].values[-1])[:10] == UNTIL.isoformat()
            assert ds.attrs["end"] == UNTIL.isoformat()
            assert int(ds["sm" if store == "output" else "lst"].isel(time=-1).notnull().sum()) > 0, store

    # no existing data chunk written again but the partial one and the redone days' ones
    redone = sorted(d for d, r in led.days.items() if (r.model or {}).get("replaces"))
    assert redone == [(dt.date(2016, 6, 25) + dt.timedelta(k)).isoformat() for k in range(9)]  # period 2016177
    redone_rows = {(dt.date.fromisoformat(d) - START).days // TCHUNK for d in redone}
    partial = n_old // TCHUNK
    for store in ("cube", "output"):
        after = _objects(fs, stores[store])
        old = {k: v for k, v in before[store].items() if _row(k)}
        assert len(old) > 20 and old.keys() <= after.keys(), store
        touched = {_row(k)[1] for k, v in old.items() if after[k] != v}
        allowed = {partial} | (redone_rows if store == "output" else set())
        assert touched <= allowed, (store, sorted(touched))
        kept = {_row(k)[1] for k in old} - allowed
        assert kept, store  # some rows were there to keep
        new_rows = {_row(k)[1] for k in after.keys() - before[store].keys() if _row(k)}
        assert new_rows == {n_new // TCHUNK}, store  # the new days' time chunk only

    # the STAC collection ends on the new end
    collection = json.loads(fs.cat_file(f"{stores['stac'].removeprefix('s3://')}/collection.json"))
    extent = collection["extent"]["temporal"]["interval"][0]
    assert extent[0].startswith(START.isoformat()) and extent[1].startswith(UNTIL.isoformat())
