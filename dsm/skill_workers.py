"""The chunk tasks of :func:`dsm.skill.skill` on Dask workers (kept out of the pure core)."""

from __future__ import annotations

import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psutil
from distributed import Client, Future, wait

from dsm.cluster import in_turn, preferably_on, worker_addresses
from dsm.skill_chunks import FOLDS, Runner, SkillJob, days_key, keep_share


def on_workers(client: Client, window: int = 0) -> Callable[[SkillJob], AbstractContextManager[Runner]]:
    """A runner factory: ``with on_workers(client)(job) as run`` runs the chunk functions of
    ``job`` as tasks on ``client``'s workers and folds their sums there.

    The job goes to every worker once, for both passes (each worker's copy keeps the arrays its
    pass-1 tasks read, :meth:`~dsm.skill_chunks.SkillJob.keep`), and is released when the block
    ends. Each chunk's task is followed by a fold task (:data:`dsm.skill_chunks.FOLDS`) that adds
    its sums to those of the chunks before it, in the order of ``args`` (the merge order that
    makes the sums those of one pass, bit for bit); only the last fold's result, the sums of all
    the chunks, comes to the client, which ``run`` yields. At most ``window`` chunks (default: 2
    per worker thread + 2) are submitted beyond the oldest one not yet scored; Dask runs each fold
    as soon as its chunk and the fold before it are done, and releases both. Pass 1's chunk tasks
    go preferably to the workers in turn (:func:`dsm.cluster.in_turn`); each chunk's pass-2 task
    preferably to the worker that holds the arrays its pass 1 kept (asked of the workers before
    pass 2: Dask may have moved a pass-1 task, e.g. off a worker busy with other work); a task
    that runs elsewhere (the worker gone, or its task stolen) reads them again.

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
            held = _holders(client, job_f) if job.keep_bytes else {}
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

    return runner


def _holders(client: Client, job: Future) -> dict[int, str]:
    """Chunk key (:func:`dsm.skill_chunks.days_key`) -> the worker whose copy of ``job`` holds
    that chunk's pass-1 arrays."""
    held = client.run(_kept_chunks, job.key)
    return {chunk: worker for worker, chunks in sorted(held.items()) for chunk in chunks}


def _kept_chunks(key: str, dask_worker: Any) -> list[int]:
    """On a worker: the chunks its copy of the job ``key`` holds for pass 2 (none without it)."""
    job = dask_worker.data.get(key)
    return [] if job is None else job.kept_chunks()


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
