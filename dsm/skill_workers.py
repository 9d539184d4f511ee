"""The chunk tasks of :func:`dsm.skill.skill` on Dask workers (kept out of the pure core)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

from distributed import Client, as_completed

from dsm.skill_chunks import Runner, SkillJob


def on_workers(client: Client, window: int = 0) -> Runner:
    """Run the chunk functions as tasks on ``client``'s workers, at most ``window`` in flight
    (default: 2 per worker thread + 2), and yield their results in the order of ``args`` (each as
    soon as it and all before it are done: the merge order that makes the sums those of one pass).

    ``args`` holds one tuple per chunk: its days, then arguments the same for every chunk (sent
    to the workers once, with the job)."""

    def run(fn: Callable[..., Any], job: SkillJob, args: list[tuple[Any, ...]]) -> Iterator[Any]:
        width = window or 2 * max(1, sum(client.nthreads().values())) + 2
        # each one object ([x]: a dict or tuple would be scattered item by item, under its own keys)
        shared = [client.scatter([a], broadcast=True, hash=False)[0] for a in ((job, *args[0][1:]) if args else ())]
        job_f, rest = (shared[0], shared[1:]) if shared else (job, [])
        pending = iter(enumerate(args))
        done: dict[int, Any] = {}
        queue = as_completed()
        index: dict[Any, int] = {}  # task key -> chunk

        def submit() -> None:
            item = next(pending, None)
            if item is not None:
                i, a = item
                f = client.submit(fn, job_f, a[0], *rest, key=f"skill-{fn.__name__}-{i}-{uuid.uuid4().hex}")
                index[f.key] = i
                queue.add(f)

        for _ in range(width):
            submit()
        nxt = 0
        for fut in queue:
            done[index.pop(fut.key)] = fut.result()
            submit()
            while nxt in done:
                yield done.pop(nxt)
                nxt += 1
        client.cancel(shared)

    return run


__all__ = ["on_workers"]
