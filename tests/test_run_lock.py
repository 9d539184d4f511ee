"""The output store's lock: a second run refuses, a dead run's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dsm.cli import main
from dsm.errors import TransientIOError
from dsm.runlock import LockError, LockLostError, LockRecord, RunLock, is_stale, lock_ref
from dsm.storeref import StoreRef

pytestmark = pytest.mark.slow  # make test-fast leaves these out


def _write(ref: StoreRef, record: LockRecord) -> None:
    Path(ref.url).write_text(json.dumps(record.__dict__))


def test_a_live_lock_refuses_a_second_run_and_names_its_holder(tmp_path):
    url = StoreRef(str(tmp_path / "sm.zarr.lock"))
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
    url = StoreRef(str(tmp_path / "out.lock"))
    with RunLock(url, ttl=2.0, heartbeat=0.2, run_id="beating") as lock:
        before = lock.read().heartbeat
        time.sleep(0.8)
        after = lock.read()
        assert after.heartbeat > before
        assert not is_stale(after, ttl=2.0)


def test_a_killed_runs_lock_on_this_host_is_taken_over(tmp_path):
    url = StoreRef(str(tmp_path / "out.lock"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    _write(url, LockRecord("killed", socket.gethostname(), pid, "2026-01-01T00:00:00+00:00", time.time()))
    with RunLock(url, ttl=600, heartbeat=5, run_id="rerun") as lock:
        assert lock.read().run_id == "rerun"


def test_an_old_heartbeat_from_another_host_is_stale_but_a_fresh_one_is_not(tmp_path):
    url = StoreRef(str(tmp_path / "out.lock"))
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
        RunLock(StoreRef(str(tmp_path / "x.lock")), ttl=5, heartbeat=5)


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_the_lock_works_on_object_storage(s3):
    bucket = s3.make_bucket("dsm-lock")
    url = lock_ref(StoreRef(f"{bucket}/runs/sm.zarr", s3.storage_options))
    assert url.url == f"{bucket}/runs/sm.zarr.lock" and url.options == s3.storage_options
    with RunLock(url, ttl=30, heartbeat=5, run_id="on-s3"):
        with pytest.raises(LockError, match="on-s3"):
            RunLock(url, ttl=30, heartbeat=5, run_id="other").acquire(settle=0)
    assert not s3.filesystem().exists(url.url.removeprefix("s3://"))


def test_dsm_run_refuses_a_locked_output_store_before_doing_anything(tmp_path):
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations", "models": "models",
                      "output": "sm.zarr"},
           "twin": {"seed": 1}, "cluster": {"dashboard_address": ":0"}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    with RunLock(StoreRef(str(tmp_path / "sm.zarr.lock")), ttl=60, heartbeat=10, run_id="holder"):
        res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code == 2, res.output
    assert "locked by run holder" in res.output
    assert not (tmp_path / "cube.zarr").exists() and not (tmp_path / "runs").exists()  # nothing was started


# -- the lease is enforced -----------------------------------------------------------------
def _take_over(url: StoreRef, run_id: str = "usurper") -> None:
    """What a second run with --break-lock does: write its own live record over the lock."""
    _write(url, LockRecord(run_id, "another-host", 1, "2026-01-01T00:00:00+00:00", time.time() + 3600))


def test_a_holder_whose_lock_was_taken_over_stops_at_its_next_check(tmp_path):
    url = StoreRef(str(tmp_path / "out.lock"))
    with RunLock(url, ttl=5, heartbeat=0.2, run_id="first") as lock:
        lock.check()  # still ours
        _take_over(url)
        with pytest.raises(LockLostError, match=r"lost the lock .* to run usurper .*run first stopped"):
            lock.check()
        time.sleep(0.5)  # the heartbeat saw it too, and never writes over the new holder
        assert lock.read().run_id == "usurper"
    assert Path(url.url).exists() and json.loads(Path(url.url).read_text())["run_id"] == "usurper"  # not released by the loser


def test_the_heartbeat_thread_notices_the_loss_without_a_check(tmp_path):
    url = StoreRef(str(tmp_path / "out.lock"))
    with RunLock(url, ttl=5, heartbeat=0.1, run_id="first") as lock:
        _take_over(url)
        time.sleep(0.4)
        Path(url.url).unlink()  # the new holder is gone again: the lease stays lost
        with pytest.raises(LockLostError, match="usurper"):
            lock.check()


def test_a_late_write_of_a_taken_over_holder_is_refused_by_its_fencing_token(tmp_path):
    import zarr

    from dsm import store

    url, out = StoreRef(str(tmp_path / "out.lock")), StoreRef(str(tmp_path / "out.zarr"))
    zarr.open_group(out.url, mode="w")
    first = RunLock(url, ttl=5, heartbeat=1, run_id="first")
    first.acquire(settle=0)
    store.set_attrs(out, {"days_done": ["2016-06-09"]}, fence=first.fence)
    # the first holder stalls past its ttl (a long pause); a second run takes the lock over
    with RunLock(url, ttl=5, heartbeat=1, run_id="second", break_lock=True) as second:
        assert second.fence > first.fence
        store.set_attrs(out, {"days_done": ["2016-06-09", "2016-06-10"]}, fence=second.fence)
        # the first wakes up and writes its records before its next check: refused, nothing written
        with pytest.raises(LockLostError, match=r"a later run \(lease token \d+\) has written its records"):
            store.set_attrs(out, {"days_done": []}, fence=first.fence)
        attrs = zarr.open_group(out.url, mode="r").attrs
        assert attrs["days_done"] == ["2016-06-09", "2016-06-10"] and attrs[store.FENCE_ATTR] == second.fence
        store.set_attrs(out, {"days_done": ["2016-06-09"]}, fence=second.fence)  # its own token: accepted
    first.release()
    with RunLock(url, ttl=5, heartbeat=1, run_id="third") as third:  # a later lease, on a released lock
        assert third.fence > second.fence
    assert LockRecord(**{k: v for k, v in json.loads(json.dumps(third.record.__dict__)).items()
                         if k != "fence"}).fence == 0  # a record written before tokens existed


def test_a_lease_not_renewed_for_its_ttl_is_lost(tmp_path):
    url = StoreRef(str(tmp_path / "out.lock"))
    lock = RunLock(url, ttl=0.6, heartbeat=0.5, run_id="slow")
    lock.acquire(settle=0)
    lock._stop.set()  # the heartbeat stops, as when the storage cannot be written
    time.sleep(0.8)
    with pytest.raises(LockLostError, match="not renewed"):
        lock.check()
    lock.release()
    with pytest.raises(LockLostError, match="does not hold"):
        lock.check()


def test_the_model_store_refuses_to_write_for_a_lost_lease(tmp_path):
    from sklearn.linear_model import LinearRegression

    from dsm.models.store import ModelStore

    url = StoreRef(str(tmp_path / "models.lock"))
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    with RunLock(url, ttl=5, heartbeat=1, run_id="writer") as lock:
        store = ModelStore(StoreRef(str(tmp_path / "models")), lease=lock)
        store.save_model("2016161", model)
        _take_over(url)
        with pytest.raises(LockLostError, match="usurper"):
            store.write_card("2016161", {"status": "trained"})
    assert not (tmp_path / "models" / "2016161" / "card.json").exists()


def test_an_unreachable_lock_storage_is_one_clear_error(tmp_path):
    lock = RunLock(StoreRef("s3://dsm-no-bucket/sm.zarr.lock", {
        "endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s", "config_kwargs": {"retries": {"max_attempts": 1}},
        "connect_timeout": 1}), ttl=5, heartbeat=1)
    with pytest.raises(TransientIOError, match=r"cannot take the lock s3://dsm-no-bucket/sm.zarr.lock: .*endpoint_url"):
        lock.acquire(settle=0)


def test_dsm_demo_never_deletes_the_stores_of_a_live_run(tmp_path):
    marker = tmp_path / "sm.zarr" / "keep"
    marker.parent.mkdir()
    marker.write_text("a live run's output")
    with RunLock(StoreRef(str(tmp_path / "sm.zarr.lock")), ttl=60, heartbeat=10, run_id="live"):
        res = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path), "--size", "tiny", "--no-compare"])
    assert res.exit_code == 2, res.output
    assert "locked by run live" in res.output
    assert marker.read_text() == "a live run's output"


def _tiny_run(tmp_path: Path) -> Path:
    from dsm.twin import demo_config

    raw = demo_config("tiny", seed=2, quick=True)
    raw["cluster"] = {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"}
    raw["run"] = {"lock_ttl": 30, "lock_heartbeat": 1, "performance_report": False}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _start(path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "dsm", "run", str(path)], cwd=path.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(proc: subprocess.Popen, text: str, lines: list[str], timeout: float = 300) -> None:
    deadline = time.time() + timeout
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if text in line:
            return
        assert time.time() < deadline, "".join(lines)
    raise AssertionError(f"the run ended before {text!r}:\n{''.join(lines)}")


def _run_and_act(tmp_path: Path, when: str, act) -> tuple[int, str]:
    """Start ``dsm run`` on a tiny twin, call ``act(proc)`` once ``when`` is printed, and wait
    for the run to end; returns its exit status and its whole output."""
    proc = _start(_tiny_run(tmp_path))
    lines: list[str] = []
    try:
        _wait_for(proc, when, lines)
        act(proc)
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return proc.returncode, "".join(lines) + out


@pytest.mark.timeout(400)
def test_a_run_whose_lock_is_taken_over_stops_with_exit_1_and_writes_no_more(tmp_path):
    code, text = _run_and_act(tmp_path, "== cube: done", lambda proc: _take_over(StoreRef(str(tmp_path / "sm.zarr.lock"))))
    assert code == 1, text
    assert "error in stage train: lost the lock" in text and "usurper" in text
    assert not (tmp_path / "sm.zarr").exists()  # no later stage ran
    assert json.loads((tmp_path / "sm.zarr.lock").read_text())["run_id"] == "usurper"  # the new holder keeps it
    record = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
    assert record["outcome"] == "failed" and record["stages"][-1]["stage"] == "train"


@pytest.mark.timeout(400)
def test_sigterm_releases_the_lock_and_records_the_run_as_interrupted(tmp_path):
    code, text = _run_and_act(tmp_path, "building the twin region", lambda proc: proc.send_signal(signal.SIGTERM))
    assert code == 1, text
    assert "== cube: interrupted" in text and "stopped by SIGTERM" in text
    assert not (tmp_path / "sm.zarr.lock").exists()  # released: the rerun starts at once
    record = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
    assert record["outcome"] == "interrupted"
    assert record["stages"][-1] == {**record["stages"][-1], "stage": "cube", "status": "interrupted"}


@pytest.mark.timeout(400)
def test_sigterm_during_training_does_not_wait_for_the_periods_being_fitted(tmp_path):
    """Grid searches far longer than the test: the stop must not wait for them to finish."""
    path = _tiny_run(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["training"] = {"method": "rao2022", "models": ["xgb"], "pooled": False, "min_samples": 30,
                       "grids": {"xgb": {"n_estimators": [100000], "max_depth": [10], "learning_rate": [0.001]}}}
    path.write_text(yaml.safe_dump(raw))
    proc = _start(path)
    lines: list[str] = []
    try:
        _wait_for(proc, "== cube: done", lines)
        time.sleep(5)  # the first searches are running on the worker
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 1, text
    assert "== train: interrupted" in text and "stopped by SIGTERM" in text
    assert not (tmp_path / "sm.zarr.lock").exists()
    record = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
    assert record["outcome"] == "interrupted" and record["stages"][-1]["stage"] == "train"


@pytest.mark.parametrize("command", [["predict", "--overwrite"], ["train"], ["export", "--force"], ["validate"],
                                     ["report"], ["twin", "--overwrite"]])
def test_every_writing_command_refuses_a_locked_output_store(tmp_path, command):
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations", "models": "models",
                      "output": "sm.zarr", "cog": "cog"},
           "twin": {"seed": 1}, "cluster": {"dashboard_address": ":0"}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    with RunLock(StoreRef(str(tmp_path / "sm.zarr.lock")), ttl=60, heartbeat=10, run_id="holder"):
        res = CliRunner().invoke(main, [command[0], str(path), *command[1:]])
    assert res.exit_code == 2, res.output
    assert "locked by run holder" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]  # nothing was written, the lock released


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_dsm_run_names_a_bucket_that_does_not_exist_and_never_creates_it(s3, tmp_path):
    missing = "dsm-mistyped-bucket"
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations", "models": "models",
                      "output": f"s3://{missing}/sm.zarr", "storage_options": s3.storage_options},
           "twin": {"seed": 1}, "cluster": {"dashboard_address": ":0"}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code != 0 and f"the bucket s3://{missing} does not exist" in res.output, res.output
    assert "Traceback" not in res.output
    assert not s3.filesystem().exists(missing) and not (tmp_path / "cube.zarr").exists()
