"""The cluster edge: a LocalCluster by default, or a scheduler started elsewhere, by address."""

from __future__ import annotations

import numpy as np
import pytest

from dsm import cluster, cube
from dsm.config import ClusterConfig
from dsm.errors import ConfigError
from dsm.testing.processes import ProcessCluster, free_ports


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
