"""The cluster edge: a LocalCluster by default, or a scheduler started elsewhere, by address."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster

from dsm import cluster, cube
from dsm.config import ClusterConfig
from dsm.errors import ConfigError
from dsm.testing.processes import ProcessCluster, free_ports

pytestmark = pytest.mark.slow  # make test-fast leaves these out


@pytest.mark.timeout(120)
def test_local_cluster_runs_the_cube_summary_on_its_workers(tiny_twin):
    with cluster.connect(ClusterConfig(n_workers=2, threads_per_worker=1)) as client:
        line = cluster.describe(client)
        assert "2 workers, 2 threads" in line and "dashboard http://" in line
        ds = cube.open_cube(tiny_twin.cube)
        land = (ds["land_mask"] == 1).sum().compute()  # scheduled on the cluster's workers
        assert int(land) == int((ds["land_mask"].values == 1).sum())
        assert sum(client.run(lambda: 1).values()) == 2
    assert client.status == "closed"


def _where_arrays_go(nbytes: int) -> tuple[int, bool]:
    """Where glibc puts an array of ``nbytes`` made after one of the same size was freed, in
    this process: how many more blocks it has mapped while holding it (``mallinfo2().hblks``; 1:
    the array got its own ``mmap``, 0: it came from the heap), and whether the heap kept its size
    once the array was freed (False: its free top went back to the system, to be faulted in again)."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    first = np.ones(nbytes, np.uint8)  # freed below: glibc's adaptive threshold learns from it
    del first
    before = libc.mallinfo2().hblks
    held = np.ones(nbytes, np.uint8)
    during = libc.mallinfo2()
    del held
    return int(during.hblks - before), libc.mallinfo2().arena >= during.arena


@pytest.mark.timeout(180)
def test_workers_take_arrays_from_the_heap(monkeypatch):
    import ctypes

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallinfo2) to see where an allocation comes from")
    nbytes = 4 * 2**20  # a layer of a 144 x 144 x 8-day block in float64 is 1.3 MB, a skill chunk's 5 MB
    for name in cluster.WORKER_ENVIRON:  # an earlier nanny may have set them here
        monkeypatch.delenv(name, raising=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            Client(lc) as plain:  # Dask's own worker environment
        environ = next(iter(plain.run(lambda: dict(__import__("os").environ)).values()))
        assert environ["MALLOC_TRIM_THRESHOLD_"] == "65536" and "MALLOC_MMAP_THRESHOLD_" not in environ
        assert set(plain.run(_where_arrays_go, nbytes).values()) == {(1, True)}, "each array mapped and unmapped"
    for name in cluster.WORKER_ENVIRON:  # that nanny set Dask's value here, and the environment wins
        monkeypatch.delenv(name, raising=False)
    with cluster.connect(ClusterConfig(n_workers=2, threads_per_worker=1)) as client:
        environs = client.run(lambda: dict(__import__("os").environ)).values()
        assert all(e[k] == v for e in environs for k, v in cluster.WORKER_ENVIRON.items())
        assert all(e["OMP_NUM_THREADS"] == "1" for e in environs)  # Dask's other variables still there
        assert set(client.run(_where_arrays_go, nbytes).values()) == {(0, True)}, "from the heap, which keeps it"
    for name in cluster.WORKER_ENVIRON:
        monkeypatch.delenv(name, raising=False)
    with dask.config.set({f"{cluster.PRE_SPAWN_ENVIRON}.MALLOC_MMAP_THRESHOLD_": "1048576"}):  # configured: wins
        assert cluster.worker_environ()["MALLOC_MMAP_THRESHOLD_"] == "1048576"
        assert cluster.worker_environ()["MALLOC_TRIM_THRESHOLD_"] == cluster.WORKER_ENVIRON["MALLOC_TRIM_THRESHOLD_"]


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_an_external_scheduler_is_reached_by_address(tiny_twin):
    with ProcessCluster(2) as pc:
        with cluster.connect(ClusterConfig(address=pc.address)) as client:
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
            ds = cube.open_cube(tiny_twin.cube)
            total = float(ds["smap_sm"].sum().compute())
            assert total == pytest.approx(float(np.nansum(ds["smap_sm"].values)), rel=1e-6)
            pids = set(client.run(lambda: __import__("os").getpid()).values())
            assert __import__("os").getpid() not in pids  # really other processes
        # leaving the context closes the client but not a cluster it does not own
        with cluster.connect(ClusterConfig(address=pc.address)) as again:
            assert len(again.scheduler_info(n_workers=-1)["workers"]) == 2


@pytest.mark.timeout(60)
def test_an_unreachable_scheduler_is_named():
    port = free_ports(1)[0]
    with pytest.raises(ConfigError, match=f"cluster.address: cannot reach the scheduler at tcp://127.0.0.1:{port}"):
        with cluster.connect(ClusterConfig(address=f"tcp://127.0.0.1:{port}"), timeout=3):
            pass


def _block(i: int) -> np.ndarray:
    if i == 3:
        raise ValueError(f"block {i} is broken")
    return np.full(250_000, i, np.float32)  # 1 MB a result


def _held(client, key) -> bool:
    return client.run_on_scheduler(lambda dask_scheduler: key in dask_scheduler.tasks)


@pytest.mark.timeout(120)
def test_outcomes_release_each_result_once_taken_and_hand_over_failures(client):
    import time

    futures = client.map(_block, range(6), pure=False)
    client.gather([f for i, f in enumerate(futures) if i != 3], errors="skip")  # every task has finished
    assert all(_held(client, f.key) for f in futures)  # nothing taken yet: the cluster holds them all
    seen, failed = [], {}
    for tag, result, exc in cluster.outcomes(dict(zip(futures, range(6)))):
        if exc is None:
            assert result.nbytes == 1_000_000 and float(result[0]) == tag
            seen.append(tag)
        else:
            failed[tag] = str(exc)
        key = futures[tag].key
        deadline = time.monotonic() + 10
        while _held(client, key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _held(client, key), f"the result of task {tag} is still held after it was taken"
    assert sorted(seen) == [0, 1, 2, 4, 5]
    assert failed == {3: "block 3 is broken"}
