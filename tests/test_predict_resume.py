"""A ``dsm run`` killed midway through prediction (SIGKILL of the job and its workers) and rerun
resumes: it takes over the dead run's lock, redoes no finished day and gives the same bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from distributed import Client, LocalCluster

from dsm import ledger
from dsm.config import load
from dsm.errors import StoreError
from dsm.stages.predict import predict
from dsm.stages.train import train
from dsm.store import FENCE_ATTR
from dsm.storeref import StoreRef

pytestmark = pytest.mark.slow  # make test-fast leaves these out


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a store, except the ``*.partial`` temporaries of zarr's local store (a chunk
    is written to ``<key>.<token>.partial`` and renamed: a writer killed in between leaves one;
    it is no key of the store and no reader sees it); the root metadata without the writer's
    lease token (``fence``), which every run takes anew."""
    out = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
           if p.is_file() and not p.name.endswith(".partial")}
    meta = json.loads(out["zarr.json"])
    meta["attributes"].pop(FENCE_ATTR, None)
    out["zarr.json"] = json.dumps(meta, sort_keys=True).encode()
    return out


def _done(url: Path) -> int:
    try:
        return len(ledger.read(StoreRef(str(url))).done)
    except (OSError, ValueError, KeyError, StoreError):  # not yet created
        return 0


@pytest.mark.timeout(480)
def test_killed_run_resumes_to_byte_identical_output(tiny_twin, tmp_path):
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-06-24"},  # 16 days
           "stores": {"cube": tiny_twin.cube.url, "models": str(tmp_path / "models"), "output": str(tmp_path / "a.zarr")},
           "chunks": {"space": 72, "time": 1},
           "cluster": {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"},
           "training": {"min_samples": 30, "fusion": {"grid": {"max_depth": [3]}, "max_rounds": 60, "cv_folds": 3}},
           "rain": {"predictors": "off"}}  # fewer companion models: the test is about resuming, not skill
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load(path)
    ref_cfg = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"output": str(tmp_path / "ref.zarr")})})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cl, Client(cl) as c:
        assert train(cfg, c).failed == {}
        ref = predict(ref_cfg, c)
    assert len(ref.predicted) == 16

    proc = subprocess.Popen([sys.executable, "-m", "dsm", "run", "--stage", "predict", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    out = tmp_path / "a.zarr"
    deadline = time.monotonic() + 120
    while _done(out) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    finished_early = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)  # the job process, its scheduler and its workers
    proc.wait(timeout=30)
    assert not finished_early, "the run finished before it could be killed"
    killed_at = _done(out)
    assert 3 <= killed_at < 16
    res = subprocess.run([sys.executable, "-m", "dsm", "run", "--stage", "predict", str(path)], capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr
    assert f"skipped {killed_at} already done" in res.stdout
    assert "taking over the stale lock" in res.stderr
    a, b = _files(out), _files(tmp_path / "ref.zarr")
    assert a.keys() == b.keys()
    different = [k for k in a if a[k] != b[k]]
    assert different == []
    res = subprocess.run([sys.executable, "-m", "dsm", "status", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "days: 16, predicted 16, empty 0, failed 0, exported 0" in res.stdout
    assert "fusion: trained (pooled xgb: full, no-lst, static)" in res.stdout
