"""The order and the sharing of tasks of known cost (:mod:`dsm.task_order`)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsm.task_order import balanced_shares, longest_first


def test_station_tasks_are_submitted_longest_first():
    # two station cells' day spans as observed_spans makes them: a long one, then the year's short rest
    spans = [(0, 256), (256, 366), (0, 256), (256, 366), (40, 48)]
    assert longest_first([t1 - t0 for t0, t1 in spans]) == [0, 2, 1, 3, 4]  # equal ones keep their order
    assert longest_first([]) == []


def test_refits_are_shared_by_cost_not_in_turn():
    # the fusion refits' costs (rows x features x rounds): in turn, worker 0 would fit 9 + 5 + 1 and
    # worker 1 only 2 + 2; the balanced shares give each 10 and 9
    shares = balanced_shares([9, 2, 5, 2, 1], 2)
    assert shares == [[0, 4], [2, 1, 3]]
    assert balanced_shares([3.0], 2) == [[0], []]  # fewer tasks than workers: an empty share
    assert balanced_shares([], 3) == [[], [], []]
    with pytest.raises(ValueError, match="n must be at least 1"):
        balanced_shares([1.0], 0)


def _best_makespan(costs: list[float], n: int) -> float:
    """The least, over every assignment of the tasks to ``n`` workers, of the largest share."""
    best = float("inf")
    for owners in itertools.product(range(n), repeat=len(costs)):
        loads = [0.0] * n
        for c, k in zip(costs, owners, strict=True):
            loads[k] += c
        best = min(best, max(loads))
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0.0, 100.0, allow_nan=False), max_size=7), st.integers(1, 3))
def test_balanced_shares_cover_every_task_once_within_four_thirds_of_the_best(costs, n):
    shares = balanced_shares(costs, n)
    assert len(shares) == n
    assert sorted(i for share in shares for i in share) == list(range(len(costs)))
    for share in shares:  # each share costliest first
        assert [costs[i] for i in share] == sorted((costs[i] for i in share), reverse=True)
    makespan = max(sum(costs[i] for i in share) for share in shares)
    assert makespan <= 4 / 3 * _best_makespan(costs, n) + 1e-9  # Graham's bound for LPT
