"""Count the Dask computations a block of code triggers.

A graph builder (:func:`dsm.samples.sample_graph`, :func:`dsm.store.write_template`, ...)
must only describe work: a stray ``.values`` or ``bool(dask_array)`` inside it computes part
of the cube on the spot, once per call, which is slow on a cluster and invisible in results.
:func:`assert_maximum_dask_computes` makes that a test failure::

    with assert_maximum_dask_computes(0):
        graph = sample_graph(cube, period, predictors)   # builds, never computes
    with assert_maximum_dask_computes(1):
        table = graph.compute()                           # one computation, not one per chunk
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dask


class TooManyComputesError(AssertionError):
    """More Dask computations ran than :func:`assert_maximum_dask_computes` allowed."""


class _CountingScheduler:
    """A synchronous Dask scheduler that counts its calls and refuses the one over ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def __call__(self, dsk: Mapping[Any, Any], keys: Sequence[Any] | Any, **kwargs: Any) -> Any:
        self.count += 1
        if self.count > self.limit:
            raise TooManyComputesError(f"Dask computation number {self.count}: at most {self.limit} allowed here")
        return dask.get(dsk, keys, **kwargs)


@contextmanager
def assert_maximum_dask_computes(limit: int = 0) -> Iterator[_CountingScheduler]:
    """Within the block, run every Dask computation synchronously here and fail the one after
    the first ``limit`` (:class:`TooManyComputesError`, an ``AssertionError``).

    Computations that name their scheduler or client explicitly (``client.compute``,
    ``.compute(scheduler=...)``) are not seen. Yields the counter (``.count``: computations so far).
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    counter = _CountingScheduler(limit)
    with dask.config.set(scheduler=counter):
        yield counter


__all__ = ["TooManyComputesError", "assert_maximum_dask_computes"]
