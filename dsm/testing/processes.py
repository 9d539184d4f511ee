"""Real Dask scheduler and worker processes on loopback.

`ProcessCluster` starts ``dask scheduler`` and ``dask worker`` as separate operating
system processes (the same CLIs a deployment uses), bound to 127.0.0.1 only, so code
under test reaches the cluster by address exactly as it would reach a remote one.
Workers can be killed with SIGKILL and new ones started, for fault tests.

The process helpers (`free_ports`, `wait_until`, `ManagedProcess`) live in
`dsm.testing.child_processes` and are re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from dsm.testing.child_processes import (
    LOOPBACK,
    ManagedProcess,
    ProcessStartError,
    child_env,
    free_ports,
    wait_until,
)

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "LOOPBACK",
    "ManagedProcess",
    "ProcessCluster",
    "ProcessStartError",
    "free_ports",
    "wait_until",
]

logger = logging.getLogger(__name__)


class ProcessCluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1.

    Use as a context manager::

        with ProcessCluster(2, env=s3.worker_env) as cluster, Client(cluster.address) as client:
            ...

    Workers are named ``worker-<i>`` and started with ``--no-nanny`` by default, so
    `kill_worker` kills the very process that holds the worker's state. Functions
    sent to the workers must be importable there (or pickled by value).

    Parameters
    ----------
    n_workers : int
        Workers started by `start`.
    nthreads : int
        Threads per worker (``--nthreads``).
    memory_limit : str or int, optional
        ``--memory-limit`` per worker (e.g. "1GiB"); default: the CLI's default.
    env : mapping, optional
        Extra environment for the workers (and scheduler) on top of this process's
        environment at `start`; a value of None removes the variable (for S3 use
        ``LoopbackS3.worker_env``). The directory holding ``dsm`` is put on
        PYTHONPATH unless this sets PYTHONPATH.
    nanny : bool
        Start workers under a nanny (``--nanny``). `kill_worker` then kills the nanny
        and its worker together.
    dashboard : bool
        Serve the scheduler's dashboard on a free 127.0.0.1 port.
    startup_timeout : float
        Seconds allowed for the scheduler and each batch of workers to come up.
    local_directory : path, optional
        Parent directory for logs and worker scratch space; default a temporary
        directory removed on `close`.
    worker_args : sequence of str
        Further ``dask worker`` arguments.
    """

    def __init__(
        self,
        n_workers: int = 2,
        *,
        nthreads: int = 1,
        memory_limit: str | int | None = None,
        env: Mapping[str, str | None] | None = None,
        nanny: bool = False,
        dashboard: bool = True,
        startup_timeout: float = 60.0,
        local_directory: str | os.PathLike[str] | None = None,
        worker_args: Sequence[str] = (),
    ) -> None:
        if n_workers < 0 or nthreads < 1:
            raise ValueError("n_workers must be >= 0 and nthreads >= 1")
        self.n_workers = n_workers
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        self.extra_env: dict[str, str | None] = dict(env or {})
        self.nanny = nanny
        self.dashboard = dashboard
        self.startup_timeout = startup_timeout
        self.worker_args = list(worker_args)
        self._own_dir = local_directory is None
        self._dir = Path(local_directory) if local_directory is not None else None
        self._scheduler: ManagedProcess | None = None
        self._workers: list[ManagedProcess] = []
        self._info: dict[str, object] = {}
        self._killed: set[int] = set()
        self._client: Client | None = None
        self.env: dict[str, str] = {}

    # -- public API ---------------------------------------------------------------

    @property
    def address(self) -> str:
        """The scheduler's address, ``tcp://127.0.0.1:PORT``."""
        if not self._info:
            raise RuntimeError("the cluster is not running")
        return str(self._info["address"])

    @property
    def dashboard_link(self) -> str | None:
        """URL of the scheduler's dashboard, or None when it is disabled."""
        if not self._info:
            raise RuntimeError("the cluster is not running")
        if not self.dashboard:
            return None
        services = self._info.get("services") or {}
        port = services.get("dashboard") if isinstance(services, dict) else None
        return f"http://{LOOPBACK}:{port}/status" if port else None

    @property
    def workers(self) -> list[ManagedProcess]:
        """Worker processes by index (killed ones stay in place)."""
        return list(self._workers)

    @property
    def scheduler_process(self) -> ManagedProcess:
        """The scheduler's process."""
        if self._scheduler is None:
            raise RuntimeError("the cluster is not running")
        return self._scheduler

    def start(self) -> Self:
        """Start the scheduler and `n_workers` workers and wait until all are connected."""
        if self._scheduler is not None:
            return self
        self.env = self._environment()
        try:
            self._make_dir()
            self._start_scheduler()
            for _ in range(self.n_workers):
                self._spawn_worker()
            self.wait_for_workers(self.n_workers, timeout=self.startup_timeout)
        except BaseException:
            self.close()
            raise
        logger.info("dask cluster at %s with %d workers", self.address, self.n_workers)
        return self

    def start_worker(self, *, wait: bool = True) -> int:
        """Start one more worker.

        Parameters
        ----------
        wait : bool
            Wait (bounded by ``startup_timeout``) until the scheduler sees it.

        Returns
        -------
        int
            The new worker's index, for `kill_worker`.
        """
        self.scheduler_process.check_running()
        index = self._spawn_worker()
        if wait:
            name = self._worker_name(index)
            wait_until(
                lambda: name in self.connected_worker_names(),
                self.startup_timeout,
                f"{name} to connect",
                check=self._workers[index].check_running,
                interval=0.25,
            )
        return index

    def kill_worker(self, index: int, *, wait: bool = True, timeout: float = 30.0) -> None:
        """SIGKILL worker `index` (a crash: no graceful handover of its data).

        Parameters
        ----------
        index : int
            Worker index (``worker-<index>``).
        wait : bool
            Wait until the scheduler has noticed that the worker is gone.
        timeout : float
            Seconds for that wait.
        """
        proc = self._workers[index]
        self._killed.add(index)
        proc.stop(kill=True)
        logger.info("killed %s", proc.name)
        if wait:
            name = self._worker_name(index)
            wait_until(
                lambda: name not in self.connected_worker_names(),
                timeout,
                f"the scheduler to drop {name}",
                interval=0.25,
            )

    def connected_worker_names(self) -> set[str]:
        """Names of the workers the scheduler currently knows."""
        info = self._scheduler_info()
        return {str(w.get("name")) for w in info["workers"].values()}

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        """Wait until exactly `n` workers are connected, failing early if a worker dies.

        Parameters
        ----------
        n : int
            Expected number of connected workers.
        timeout : float
            Seconds.
        """

        def check() -> None:
            self.scheduler_process.check_running()
            for index, proc in enumerate(self._workers):
                if index not in self._killed:
                    proc.check_running()

        wait_until(
            lambda: len(self.connected_worker_names()) == n,
            timeout,
            f"{n} dask workers to connect to {self.address}",
            check=check,
            interval=0.25,
        )

    def close(self) -> None:
        """Stop all workers, then the scheduler, and remove the temporary directory."""
        if self._client is not None:
            self._client.close(timeout=10)
            self._client = None
        for proc in self._workers:  # all at once, then wait for each
            proc.send_signal(signal.SIGTERM)
        for proc in self._workers:
            proc.stop(timeout=10.0)
        if self._scheduler is not None:
            self._scheduler.stop(timeout=10.0)
        self._workers = []
        self._killed = set()
        self._scheduler = None
        self._info = {}
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._info.get("address", "not running")
        return f"<ProcessCluster {state} workers={len(self._workers)}>"

    # -- internals ----------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        """This process's environment, `extra_env` applied, ``dsm`` importable.

        The directory holding the ``dsm`` package this process imported is put in
        front of PYTHONPATH (unless `extra_env` sets PYTHONPATH), so functions from
        an uninstalled checkout unpickle on the workers too.
        """
        env = child_env(self.extra_env)
        if "PYTHONPATH" not in self.extra_env:
            root = str(Path(__file__).resolve().parents[2])
            parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in parts if p != root]])
        return env

    def _make_dir(self) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="dsm-dask-"))
        self._dir.mkdir(parents=True, exist_ok=True)

    def _start_scheduler(self) -> None:
        assert self._dir is not None
        scheduler_file = self._dir / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        # The HTTP server (/health, /metrics) runs even with --no-dashboard: keep it
        # on loopback either way.
        dashboard = ["--dashboard-address", f"{LOOPBACK}:0"]
        if not self.dashboard:
            dashboard.append("--no-dashboard")
        argv = [
            sys.executable, "-m", "dask", "scheduler",
            "--host", LOOPBACK, "--port", "0",
            *dashboard,
            "--scheduler-file", str(scheduler_file),
        ]  # fmt: skip
        self._scheduler = ManagedProcess(
            "dask-scheduler", argv, self._dir / "scheduler.log", env=self.env, cwd=self._dir
        )
        self._scheduler.start()
        wait_until(
            lambda: self._read_scheduler_file(scheduler_file),
            self.startup_timeout,
            "the dask scheduler to write its address",
            check=self._scheduler.check_running,
        )

    def _read_scheduler_file(self, path: Path) -> bool:
        if not path.exists():
            return False
        info = json.loads(path.read_text())  # a partial write raises: retried
        if not str(info.get("address", "")).startswith(f"tcp://{LOOPBACK}:"):
            raise ProcessStartError(f"scheduler is not on loopback: {info.get('address')}")
        self._info = info
        return True

    def _worker_name(self, index: int) -> str:
        return f"worker-{index}"

    def _spawn_worker(self) -> int:
        assert self._dir is not None
        index = len(self._workers)
        name = self._worker_name(index)
        workdir = self._dir / name
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "dask", "worker", self.address,
            "--host", LOOPBACK,
            "--name", name,
            "--nthreads", str(self.nthreads),
            "--nanny" if self.nanny else "--no-nanny",
            # The worker serves /health and /metrics even with --no-dashboard, on
            # 0.0.0.0 unless told otherwise.
            "--no-dashboard", "--dashboard-address", f"{LOOPBACK}:0",
            "--local-directory", str(workdir),
            "--death-timeout", "60",
        ]  # fmt: skip
        if self.memory_limit is not None:
            argv += ["--memory-limit", str(self.memory_limit)]
        argv += self.worker_args
        proc = ManagedProcess(name, argv, self._dir / f"{name}.log", env=self.env, cwd=workdir)
        proc.start()
        self._workers.append(proc)
        return index

    def _scheduler_info(self) -> dict[str, dict[str, dict[str, object]]]:
        """Ask the scheduler for its state through a private, lazily made client."""
        if self._client is None:
            # Imported here: distributed is heavy and only needed once a cluster runs.
            from distributed import Client

            self._client = Client(self.address, timeout=10, set_as_default=False)
        return dict(self._client.scheduler_info(n_workers=-1))
