"""The chunk tasks of :func:`dsm.skill.skill` on Dask workers (kept out of the pure core)."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psutil
from distributed import Client, Future, wait

from dsm.cluster import in_turn, preferably_on, worker_addresses
from dsm.skill_chunks import FOLDS, Runner, SkillJob, days_key, held_chunks, keep_share, release_held


def on_workers(client: Client, window: int = 0) -> Callable[[SkillJob], AbstractContextManager[Runner]]:
    """A runner factory: ``with on_workers(client)(job) as run`` runs the chunk functions of
    ``job`` as tasks on ``client``'s workers and folds their sums there.

    The job goes to every worker once, for both passes (each worker process keeps the arrays its
    pass-1 tasks read, :meth:`~dsm.skill_chunks.SkillJob.keep`, under the job's token, so they
    outlast a copy of the job that Dask's active memory manager drops between the passes), and is
    released, with whatever the workers still keep of it, when the block ends. Each chunk's task is
    followed by a fold task (:data:`dsm.skill_chunks.FOLDS`) that adds its sums to those of the
    chunks before it, in the order of ``args`` (the merge order that makes the sums those of one
    pass, bit for bit); only the last fold's result, the sums of all the chunks, comes to the
    client, which ``run`` yields. At most ``window`` chunks (default: 2 per worker thread + 2) are
    submitted beyond the oldest one not yet scored; Dask runs each fold as soon as its chunk and the
    fold before it are done, and releases both. Pass 1's chunk tasks go preferably to the workers in
    turn (:func:`dsm.cluster.in_turn`); each chunk's pass-2 task preferably to the worker that holds
    the arrays its pass 1 kept (asked of the workers before pass 2: Dask may have moved a pass-1
    task, e.g. off a worker busy with other work); a task that runs elsewhere (the worker gone, or
    its task stolen) reads them again.

    ``args`` holds one tuple per chunk: its days, then arguments the same for every chunk (sent
    to the workers once, with the job). A failed chunk task fails the run with its error."""

    @contextmanager
    def runner(job: SkillJob) -> Iterator[Runner]:
        # each one object ([x]: a dict or tuple would be scattered item by item, under its own keys)
        job_f = client.scatter([job], broadcast=True, hash=False)[0]
        workers = worker_addresses(client)  # chunk i's pass-1 task: in_turn(workers, i)

        def run(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> Iterator[Any]:
            if not args:
                return
            fold = FOLDS[fn]
            width = window or 2 * max(1, sum(client.nthreads().values())) + 2
            rest = [client.scatter([a], broadcast=True, hash=False)[0] for a in args[0][1:]]
            run_id = uuid.uuid4().hex
            # chunk -> the worker holding its pass-1 arrays (none in pass 1, nor with nothing kept)
            held = _holders(client, job.token) if job.keep_bytes else {}
            acc: Future | None = None
            scoring: deque[Future] = deque()  # chunk tasks not known to be done, oldest first
            try:
                for i, a in enumerate(args):
                    holder = held.get(days_key(a[0]))
                    where = in_turn(workers, i) if holder is None else preferably_on(holder, i)
                    part = client.submit(fn, job_f, a[0], *rest, key=f"skill-{fn.__name__}-{i}-{run_id}", **where)
                    # only the newest fold is held here: each earlier one is released once folded on
                    acc = client.submit(fold, job_f, acc, part, key=f"skill-{fold.__name__}-{i}-{run_id}")
                    scoring.append(part)
                    if len(scoring) >= width:  # the oldest chunk scored before another one starts
                        _raise_if_failed(scoring.popleft())
                assert acc is not None
                total = acc.result()
            finally:
                for f in rest:  # released, not cancelled: cancelling walks tasks that are already released
                    f.release()
            yield total

        try:
            yield run
        finally:
            job_f.release()
            _release_held(client, job.token)

    return runner


def _holders(client: Client, token: str) -> dict[int, str]:
    """Chunk key (:func:`dsm.skill_chunks.days_key`) -> the worker that holds that chunk's pass-1
    arrays of the job ``token``."""
    held = client.run(held_chunks, token)
    return {chunk: worker for worker, chunks in sorted(held.items()) for chunk in chunks}


def _release_held(client: Client, token: str) -> None:
    """Drop what the workers still hold of the job ``token`` (what pass 2 did not take: it
    failed or never ran). A worker or scheduler that cannot be reached is left as it is: this
    runs as the job ends, also on its error, which it must not hide."""
    with contextlib.suppress(OSError):  # distributed's CommClosedError is one
        client.run(release_held, token, on_error="ignore")


def _raise_if_failed(fut: Future) -> None:
    """Wait for ``fut``; raise its error (that of the chunk it folds) if it failed."""
    wait(fut)
    if fut.status == "error":
        fut.result()


def keep_budget(client: Client) -> int:
    """The bytes each worker of ``client`` may keep between the skill passes:
    :data:`~dsm.skill_chunks.KEEP_SHARE` of the smallest worker's memory limit; a worker without
    a limit counts its share of the memory available on its host (split among the workers
    there)."""
    facts = client.run(_memory_facts)  # address -> (host, limit, available)
    if not facts:
        return 0
    per_host = Counter(host for host, _, _ in facts.values())
    return min(keep_share(limit, available, per_host[host]) for host, limit, available in facts.values())


def _memory_facts(dask_worker: Any) -> tuple[str, int, int]:
    """A worker's host, memory limit (0: none) and the memory available on its host."""
    return (socket.gethostname(), int(dask_worker.memory_manager.memory_limit or 0),
            int(psutil.virtual_memory().available))


__all__ = ["keep_budget", "on_workers"]
