"""Where the work runs: a new LocalCluster, or an existing scheduler by address.

Stages never create or look up a cluster themselves: they take the
:class:`distributed.Client` this module opens, so the same code runs on a laptop, against a
``dask scheduler`` started by hand, or (later) on Kubernetes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import dask
from distributed import Client, Future, LocalCluster, as_completed

from dsm.config import ClusterConfig
from dsm.errors import ConfigError, LockLostError

log = logging.getLogger(__name__)

T = TypeVar("T")

PRE_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"
WORKER_ENVIRON: dict[str, str] = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}
"""glibc's malloc thresholds for the worker processes dsm starts, in place of Dask's defaults.

Dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory back to the
system). Setting a threshold also stops glibc from adapting its mmap threshold, which stays at
128 KiB: every larger array is then mapped, zero-filled page by page and unmapped again, and
whatever else is freed at the top of the heap beyond 64 KiB is returned and faulted in again
on the next allocation. dsm's tasks make many arrays of 0.1-30 MB and were 1.5-2.4 times slower
on Dask's workers than in a plain process (README "Performance"). These are the values glibc's
own adaptation reaches at most on 64-bit systems: arrays up to 32 MiB come from the heap, and
its free top is returned beyond 64 MiB. A value configured in Dask (other than its default;
``None`` removes it) or set in the environment takes precedence. Workers started outside dsm
(``dask worker``, Kubernetes) need these in their environment (``dsm deploy`` sets them).
"""


def worker_environ() -> dict[str, Any]:
    """Dask's ``distributed.nanny.pre-spawn-environ`` with :data:`WORKER_ENVIRON` in place of
    Dask's default values (a value configured otherwise wins)."""
    configured = dask.config.get(PRE_SPAWN_ENVIRON, default={})
    defaults = dask.config.get(PRE_SPAWN_ENVIRON, default={}, config=dask.config.merge(*dask.config.defaults))
    chosen = {k: v for k, v in configured.items() if k not in WORKER_ENVIRON or v != defaults.get(k)}
    return {**configured, **WORKER_ENVIRON, **chosen}


def local_cluster(n_workers: int, threads_per_worker: int, **kwargs: Any) -> LocalCluster:
    """A LocalCluster of ``n_workers`` worker processes with ``threads_per_worker`` threads each,
    whose workers start with :func:`worker_environ` (``kwargs`` go to :class:`~distributed.LocalCluster`).
    Notebooks and scripts that start their own cluster for dsm should start it this way."""
    with dask.config.set({PRE_SPAWN_ENVIRON: worker_environ()}):  # read by each Nanny as it is made
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, **kwargs)


@contextlib.contextmanager
def connect(config: ClusterConfig, timeout: float = 30.0) -> Iterator[Client]:
    """Open a client on the configured cluster; close it (and a LocalCluster) on exit.

    With ``config.address`` the client connects to that scheduler and leaves it running;
    otherwise a LocalCluster of ``n_workers`` processes is started and shut down.
    """
    if config.address:
        try:
            client = Client(config.address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cluster.address: cannot reach the scheduler at {config.address}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = local_cluster(config.n_workers, config.threads_per_worker, memory_limit=config.memory_limit,
                            dashboard_address=config.dashboard_address)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def describe(client: Client) -> str:
    """One line naming the scheduler, its workers and the dashboard link."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    link = client.dashboard_link if info.get("services", {}).get("dashboard") else "(no dashboard)"
    return f"cluster {client.scheduler.address}: {len(workers)} workers, {threads} threads; dashboard {link}"


def worker_addresses(client: Client) -> list[str]:
    """The addresses of all of ``client``'s workers, sorted (asked for all of them: the default
    of ``scheduler_info`` has differed between distributed versions)."""
    return sorted(client.scheduler_info(n_workers=-1).get("workers", {}))


def in_turn(workers: Sequence[str], k: int) -> dict[str, Any]:
    """``client.submit`` options for the ``k``-th of some tasks: run in the order submitted
    (``priority``), preferably on the workers taken in turn (``allow_other_workers``: Dask may
    still move a task), so the ``k``-th tasks of two rounds meet on the same worker."""
    return preferably_on(workers[k % len(workers)] if workers else None, k)


def preferably_on(worker: str | None, k: int) -> dict[str, Any]:
    """``client.submit`` options for the ``k``-th of some tasks: run in the order submitted
    (``priority``), preferably on ``worker`` (Dask may still move it; None: anywhere)."""
    options: dict[str, Any] = {"priority": -k}
    if worker is not None:
        options.update(workers=[worker], allow_other_workers=True)
    return options


def outcomes(futures: Mapping[Future, T]) -> Iterator[tuple[T, Any, Exception | None]]:
    """Each future's tag with its result or its exception, in the order the tasks finish.

    Every future is released as soon as its outcome has been taken, so a worker holds only the
    results not yet consumed, not every result of a stage until its last task: a stage's worker
    memory stays independent of how many tasks (blocks, days, files) the region has.

    Parameters
    ----------
    futures
        Future -> the caller's tag for it (a job, a day, a task).

    Yields
    ------
    (tag, result, None) for a task that succeeded, (tag, None, exception) for one that failed.
    """
    for fut in as_completed(list(futures)):
        tag = futures[fut]
        try:
            result, error = fut.result(), None
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who reports it and goes on
            result, error = None, exc
        fut.release()
        yield tag, result, error


def leased_outcomes(client: Client, futures: Mapping[Future, T],
                    check: Callable[[], None]) -> Iterator[tuple[T, Any, Exception | None]]:
    """:func:`outcomes`, with the run's lease checked (``check``: :meth:`dsm.runlock.Lease.check`)
    as each task lands: a lost lease cancels the tasks not yet finished and raises
    :class:`~dsm.errors.LockLostError`, so a run that lost its store writes nothing more."""
    for tag, result, error in outcomes(futures):
        try:
            check()
        except LockLostError:
            client.cancel(list(futures))
            raise
        yield tag, result, error
