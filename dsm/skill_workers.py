"""The chunk tasks of :func:`dsm.skill.skill` on Dask workers (kept out of the pure core)."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from distributed import Client, Future, wait

from dsm.skill_chunks import FOLDS, Runner, SkillJob


def on_workers(client: Client, window: int = 0) -> Runner:
    """Run the chunk functions as tasks on ``client``'s workers and fold their sums there.

    Each chunk's task is followed by a fold task (:data:`dsm.skill_chunks.FOLDS`) that adds its
    sums to those of the chunks before it, in the order of ``args`` (the merge order that makes
    the sums those of one pass, bit for bit); only the last fold's result, the sums of all the
    chunks, comes to the client, which the runner yields. At most ``window`` chunks (default: 2
    per worker thread + 2) are submitted beyond the oldest one not yet scored; Dask runs each fold
    as soon as its chunk and the fold before it are done, and releases both.

    ``args`` holds one tuple per chunk: its days, then arguments the same for every chunk (sent
    to the workers once, with the job). A failed chunk task fails the run with its error."""

    def run(fn: Callable[..., Any], job: SkillJob, args: list[tuple[Any, ...]]) -> Iterator[Any]:
        if not args:
            return
        fold = FOLDS[fn]
        width = window or 2 * max(1, sum(client.nthreads().values())) + 2
        # each one object ([x]: a dict or tuple would be scattered item by item, under its own keys)
        shared = [client.scatter([a], broadcast=True, hash=False)[0] for a in (job, *args[0][1:])]
        job_f, rest = shared[0], shared[1:]
        run_id = uuid.uuid4().hex
        acc: Future | None = None
        scoring: deque[Future] = deque()  # chunk tasks not known to be done, oldest first
        try:
            for i, a in enumerate(args):
                part = client.submit(fn, job_f, a[0], *rest, key=f"skill-{fn.__name__}-{i}-{run_id}")
                # only the newest fold is held here: each earlier one is released once folded on
                acc = client.submit(fold, job_f, acc, part, key=f"skill-{fold.__name__}-{i}-{run_id}")
                scoring.append(part)
                if len(scoring) >= width:  # the oldest chunk scored before another one starts
                    _raise_if_failed(scoring.popleft())
            assert acc is not None
            total = acc.result()
        finally:
            for f in shared:  # released, not cancelled: cancelling walks tasks that are already released
                f.release()
        yield total

    return run


def _raise_if_failed(fut: Future) -> None:
    """Wait for ``fut``; raise its error (that of the chunk it folds) if it failed."""
    wait(fut)
    if fut.status == "error":
        fut.result()


__all__ = ["on_workers"]
