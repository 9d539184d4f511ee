"""Shared fixtures: the real sample data folder, a tiny twin, a loopback S3 server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import settings

# Property tests check values, never time: a shared 2-core machine stalls a 1 ms example now and
# then, and hypothesis's default 200 ms deadline would turn that into a failure.
settings.register_profile("dsm", deadline=None)
settings.load_profile("dsm")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample files not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_twin(tmp_path_factory: pytest.TempPathFactory):
    """The tiny twin (4 x 4 SMAP cells, 48 days) built once per session; treat as read-only."""
    from dsm.testing import make_synthetic_cube

    return make_synthetic_cube(str(tmp_path_factory.mktemp("tiny_twin")), size="tiny", seed=7)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``dsm demo --size tiny --seed 3`` run once per session as a user runs it (its own
    process): ``work`` (the folder, with ``config.yaml``) and ``result`` (the process's exit
    status and output). Treat the folder as read-only."""
    work = tmp_path_factory.mktemp("tiny_demo") / "demo"
    result = subprocess.run([sys.executable, "-m", "dsm", "demo", "--workdir", str(work), "--size", "tiny", "--seed",
                             "3", "--no-compare"], capture_output=True, text=True, timeout=300)
    return SimpleNamespace(work=work, result=result)


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server (SeaweedFS, else moto) on 127.0.0.1 for the session."""
    from dsm.testing.s3 import LoopbackS3

    with LoopbackS3() as server:
        yield server


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes (one thread each), started as dsm starts one
    (:func:`dsm.cluster.local_cluster`), and its client, per test module."""
    from distributed import Client

    from dsm.cluster import local_cluster

    with local_cluster(2, 1, dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def read_calls(monkeypatch):
    """The variables of each call of :func:`dsm.zarr_reads.read_selections` that reads something
    during the test, sorted: the reads made, a call per block or table."""
    from dsm import zarr_reads

    calls: list[list[str]] = []
    read = zarr_reads.read_selections

    def recording(ds, reads):
        if reads:
            calls.append(sorted(name for name, _ in reads.values()))
        return read(ds, reads)

    monkeypatch.setattr(zarr_reads, "read_selections", recording)
    return calls
