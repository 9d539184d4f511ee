"""The output store's lock: a second run refuses, a dead run's lock is taken over."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dsm.cli import main
from dsm.runlock import LockError, LockRecord, RunLock, is_stale, lock_url


def _write(url, record: LockRecord) -> None:
    Path(url).write_text(json.dumps(record.__dict__))


def test_a_live_lock_refuses_a_second_run_and_names_its_holder(tmp_path):
    url = str(tmp_path / "sm.zarr.lock")
    first = RunLock(url, ttl=30, heartbeat=5, run_id="first")
    with first:
        second = RunLock(url, ttl=30, heartbeat=5, run_id="second")
        with pytest.raises(LockError, match=r"locked by run first \(pid \d+ on .*--break-lock"):
            second.acquire(settle=0)
        assert first.read().run_id == "first"
    assert first.read() is None  # released: the lock object is gone
    with RunLock(url, ttl=30, heartbeat=5, run_id="third") as third:
        assert third.read().run_id == "third"


def test_the_heartbeat_keeps_a_lock_fresh(tmp_path):
    url = str(tmp_path / "out.lock")
    with RunLock(url, ttl=2.0, heartbeat=0.2, run_id="beating") as lock:
        before = lock.read().heartbeat
        time.sleep(0.8)
        after = lock.read()
        assert after.heartbeat > before
        assert not is_stale(after, ttl=2.0)


def test_a_killed_runs_lock_on_this_host_is_taken_over(tmp_path):
    url = str(tmp_path / "out.lock")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    _write(url, LockRecord("killed", socket.gethostname(), pid, "2026-01-01T00:00:00+00:00", time.time()))
    with RunLock(url, ttl=600, heartbeat=5, run_id="rerun") as lock:
        assert lock.read().run_id == "rerun"


def test_an_old_heartbeat_from_another_host_is_stale_but_a_fresh_one_is_not(tmp_path):
    url = str(tmp_path / "out.lock")
    _write(url, LockRecord("elsewhere", "another-host", 1, "2026-01-01T00:00:00+00:00", time.time() - 300))
    with RunLock(url, ttl=120, heartbeat=5, run_id="mine") as lock:
        assert lock.read().run_id == "mine"
    _write(url, LockRecord("elsewhere", "another-host", 1, "2026-01-01T00:00:00+00:00", time.time()))
    with pytest.raises(LockError, match="elsewhere"):
        RunLock(url, ttl=120, heartbeat=5, run_id="mine").acquire(settle=0)
    with RunLock(url, ttl=120, heartbeat=5, run_id="forced", break_lock=True) as lock:
        assert lock.read().run_id == "forced"


def test_heartbeat_must_be_shorter_than_ttl(tmp_path):
    with pytest.raises(ValueError, match="heartbeat"):
        RunLock(str(tmp_path / "x.lock"), ttl=5, heartbeat=5)


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_the_lock_works_on_object_storage(s3):
    bucket = s3.make_bucket("dsm-lock")
    url = lock_url(f"{bucket}/runs/sm.zarr")
    with RunLock(url, s3.storage_options, ttl=30, heartbeat=5, run_id="on-s3"):
        with pytest.raises(LockError, match="on-s3"):
            RunLock(url, s3.storage_options, ttl=30, heartbeat=5, run_id="other").acquire(settle=0)
    assert not s3.filesystem().exists(url.removeprefix("s3://"))


def test_dsm_run_refuses_a_locked_output_store_before_doing_anything(tmp_path):
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations", "models": "models",
                      "output": "sm.zarr"},
           "twin": {"seed": 1}, "cluster": {"dashboard_address": None}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    with RunLock(str(tmp_path / "sm.zarr.lock"), ttl=60, heartbeat=10, run_id="holder"):
        res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code == 2, res.output
    assert "locked by run holder" in res.output
    assert not (tmp_path / "cube.zarr").exists() and not (tmp_path / "runs").exists()  # nothing was started
