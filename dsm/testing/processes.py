"""Real Dask scheduler and worker processes on loopback, plus process helpers.

`ProcessCluster` starts ``dask scheduler`` and ``dask worker`` as separate operating
system processes (the same CLIs a deployment uses), bound to 127.0.0.1 only, so code
under test reaches the cluster by address exactly as it would reach a remote one.
Workers can be killed with SIGKILL and new ones started, for fault tests.

The lower-level helpers (`free_ports`, `ManagedProcess`) are shared with
`dsm.testing.s3`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

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

LOOPBACK = "127.0.0.1"
"""The only address the test services bind to."""

_POLL_S = 0.1
_TAIL_BYTES = 256 * 1024
_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


class ProcessStartError(RuntimeError):
    """A helper process did not start or did not become ready in time."""


def free_ports(n: int) -> list[int]:
    """Return `n` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets are held open until every port is chosen, so the ports are distinct.
    Another process may still take a port before it is used; callers that can
    should retry on "address already in use".

    Parameters
    ----------
    n : int
        Number of ports.

    Returns
    -------
    list of int
        The ports.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    check: Callable[[], None] | None = None,
    interval: float = _POLL_S,
) -> None:
    """Poll `predicate` until it is true, for at most `timeout` seconds.

    Parameters
    ----------
    predicate : callable
        Returns True when the wait is over. Exceptions count as "not yet".
    timeout : float
        Seconds.
    what : str
        Description used in the timeout message.
    check : callable, optional
        Called on every round before `predicate`; it raises to abort the wait
        (for example when the process being waited for has died).
    interval : float
        Seconds between rounds.

    Raises
    ------
    TimeoutError
        If `predicate` is not true within `timeout`.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        if check is not None:
            check()
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - "not ready yet", reported on timeout
            logger.debug("still waiting for %s: %r", what, exc)
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def _child_env(overrides: Mapping[str, str | None] | None) -> dict[str, str]:
    """Return a copy of ``os.environ`` with `overrides` applied (None removes)."""
    env = dict(os.environ)
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class ManagedProcess:
    """A child process in its own session whose output goes to a log file.

    The process (and its process group) is always killed on `stop`, and at
    interpreter exit if the owner forgot.

    Parameters
    ----------
    name : str
        Short name used in logs and errors.
    argv : sequence of str
        Command line.
    log_path : Path
        File that receives stdout and stderr (appended to, so restarts keep history).
    env : mapping, optional
        Complete environment of the child; default: this process's environment.
    cwd : Path, optional
        Working directory of the child.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """Process id of the child (kept after it exits), or None if never started."""
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once the child has exited, else None."""
        return self._popen.poll() if self._popen is not None else None

    @property
    def alive(self) -> bool:
        """Whether the child is running."""
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        """Start the child; a running child is left alone."""
        if self.alive:
            return
        self._close_log()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_offset = self._log.tell()
        logger.debug("starting %s: %s", self.name, " ".join(self.argv))
        self._popen = subprocess.Popen(  # noqa: S603 - argv built by this package
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        _LIVE.add(self)
        logger.info("started %s (pid %d)", self.name, self._popen.pid)

    def check_running(self) -> None:
        """Raise `ProcessStartError` with the log tail if the child has exited."""
        if self._popen is None:
            raise ProcessStartError(f"{self.name} was never started")
        code = self._popen.poll()
        if code is not None:
            tail = self.log_tail(since_start=True)
            raise ProcessStartError(f"{self.name} exited with status {code}; last log lines:\n{tail}")

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the child's whole process group (no-op once it exited)."""
        if self._popen is None or self._popen.poll() is not None:
            return
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0, *, kill: bool = False) -> int | None:
        """Stop the child and wait for it.

        Parameters
        ----------
        timeout : float
            Seconds to wait after SIGTERM before escalating to SIGKILL.
        kill : bool
            Send SIGKILL right away (an abrupt crash, for fault tests).

        Returns
        -------
        int or None
            The exit status, or None if the child was never started.
        """
        popen = self._popen
        if popen is None:
            return None
        if popen.returncode is not None and self._log is None:
            return popen.returncode  # already stopped and reaped
        if popen.poll() is None:
            self.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.info("%s still running %.0f s after SIGTERM; killing it", self.name, timeout)
                self.send_signal(signal.SIGKILL)
                popen.wait(timeout=10.0)
        # Reap leftovers of the group (e.g. a nanny's worker) that outlived the leader.
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._close_log()
        _LIVE.discard(self)
        logger.info("stopped %s (status %s)", self.name, popen.returncode)
        return popen.returncode

    def log_tail(self, lines: int = 40, *, since_start: bool = False) -> str:
        """Return the last `lines` lines of the child's log.

        Parameters
        ----------
        lines : int
            Number of lines.
        since_start : bool
            Only what the latest `start` wrote (the log is appended to across restarts).
        """
        try:
            with open(self.log_path, "rb") as log:
                end = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_offset if since_start else 0, end - _TAIL_BYTES))
                data = log.read()
        except OSError:
            return "<no log>"
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@atexit.register
def _kill_leftovers() -> None:
    """Kill children whose owners did not stop them."""
    for proc in list(_LIVE):
        proc.stop(timeout=2.0)


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
        env = _child_env(self.extra_env)
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
