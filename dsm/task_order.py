"""The order and the sharing of tasks whose costs are known beforehand (pure functions).

A phase ends when its last task does: a long task started last runs alone while the other
workers wait. :func:`longest_first` orders tasks for a scheduler that hands them out as workers
free up; :func:`balanced_shares` splits them between a fixed number of workers that each run
their share one after another (longest processing time first: the makespan is at most 4/3 of
the best one's).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["balanced_shares", "longest_first"]


def longest_first(costs: Sequence[float]) -> list[int]:
    """The positions of ``costs`` in the order to submit them: the costliest first, equal ones in
    their order, so that the short ones fill the workers' last gaps."""
    return sorted(range(len(costs)), key=lambda i: -costs[i])


def balanced_shares(costs: Sequence[float], n: int) -> list[list[int]]:
    """The positions of ``costs`` split into ``n`` shares of nearly equal total cost: each task,
    costliest first, goes to the share with the least cost so far (the first of equal ones).
    Each share lists its tasks costliest first; a share may be empty when there are fewer tasks
    than ``n``."""
    if n < 1:
        raise ValueError(f"balanced_shares: n must be at least 1, not {n}")
    shares: list[list[int]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for i in longest_first(costs):
        k = min(range(n), key=lambda j: loads[j])
        shares[k].append(i)
        loads[k] += costs[i]
    return shares
