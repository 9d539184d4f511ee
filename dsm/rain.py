"""Antecedent precipitation index (API): a scan of daily precipitation along time (pure, no IO).

For each e-folding time ``e`` (days) the index decays by ``k = exp(-1/e)`` a day. Per pixel
and day ``t`` (``P`` in mm/day):

valid day (finite ``P >= 0``)
    ``API_t = k API_(t-1) + P_t``; the run of missing days ``gap`` goes back to 0; ``age``
    becomes ``min(age + 1, 255)``.
missing day (NaN)
    ``gap += 1`` and ``age = 0``. While ``gap <= max_gap_days`` the indices decay through the
    day (its rain taken as 0): the value is a lower bound, which ``age = 0`` flags. Once
    ``gap > max_gap_days`` the state restarts at 0 and the indices are NaN for the rest of the
    run (a refusal, not a guess); they count again from 0 after it.
initial state
    zeros, ``gap = 0``, ``age = 0``: the spin-up days before the first day fill it.
negative or infinite precipitation
    :class:`ValueError` naming it (the readers refuse it earlier; this is a guard).

``age`` is the number of days since the last missing day (capped at 255); downstream,
pixel-days with ``age < rain.spinup_days`` are flagged. The state is carried in float64 and
the indices are returned as float32, so a scan split at any time boundaries gives exactly the
values of one scan over the whole series. :func:`dsm.antecedent.write_antecedent` scans the cube
this way, a time chunk at a time per spatial block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AGE_MAX = 255  #: ``age`` saturates here (uint8)
_GAP_MAX = np.iinfo(np.int32).max


def decay(efolding_days: float) -> float:
    """Daily decay factor ``k = exp(-1 / efolding_days)`` of an index with that e-folding time."""
    if not (math.isfinite(efolding_days) and efolding_days > 0):
        raise ValueError(f"e-folding time must be a positive number of days, got {efolding_days!r}")
    return math.exp(-1.0 / efolding_days)


@dataclass(frozen=True, eq=False)
class ApiState:
    """The scan's state per pixel after a day: one index per decay, the missing-day run, the age.

    Attributes
    ----------
    api : ndarray, float64, (n_decay, y, x)
        Index values (0 after a restart, never NaN).
    gap : ndarray, int32, (y, x)
        Consecutive missing days up to now (0 after a valid day).
    age : ndarray, uint8, (y, x)
        Days since the last missing day, capped at 255.
    """

    api: np.ndarray
    gap: np.ndarray
    age: np.ndarray

    @classmethod
    def initial(cls, n_decay: int, shape: tuple[int, int]) -> ApiState:
        """The state before the first day: zeros, no gap, age 0."""
        return cls(np.zeros((n_decay, *shape)), np.zeros(shape, np.int32), np.zeros(shape, np.uint8))


def _check(precip: np.ndarray, where: str) -> None:
    bad = np.isinf(precip) | (precip < 0)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        value = float(precip[first])
        kind = "negative" if value < 0 else "infinite"
        raise ValueError(f"{kind} precipitation {value!r} mm at index {first} {where} ({int(bad.sum())} such "
                         "value(s)): precipitation must be NaN (missing) or finite and >= 0")


def api_step(precip: np.ndarray, efolding_days: Sequence[float], max_gap_days: int,
             state: ApiState | None = None) -> tuple[np.ndarray, np.ndarray, ApiState]:
    """Advance the indices by one day.

    Parameters
    ----------
    precip : ndarray, (y, x)
        The day's precipitation (mm), NaN where missing.
    efolding_days
        E-folding times of the indices (days).
    max_gap_days
        Longest run of missing days bridged by decay.
    state
        The state after the previous day (None: :meth:`ApiState.initial`); not modified.

    Returns
    -------
    api : ndarray, float32, (n_decay, y, x)
    age : ndarray, uint8, (y, x)
    state : ApiState
    """
    p = np.asarray(precip, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"one day of precipitation is (y, x), got shape {p.shape}")
    api, age, state = api_scan(p[None], efolding_days, max_gap_days, state)
    return api[:, 0], age[0], state


def _factors(efolding_days: Sequence[float]) -> np.ndarray:
    return np.array([decay(e) for e in efolding_days], dtype=np.float64)[:, None, None]


def _step(p: np.ndarray, k: np.ndarray, max_gap_days: int, state: ApiState) -> tuple[np.ndarray, np.ndarray, ApiState]:
    missing = np.isnan(p)
    gap = np.where(missing, np.minimum(state.gap.astype(np.int64) + 1, _GAP_MAX), 0).astype(np.int32)
    restart = gap > max_gap_days
    api = np.where(restart, 0.0, k * state.api + np.where(missing, 0.0, p))
    age = np.where(missing, 0, np.minimum(state.age.astype(np.int16) + 1, AGE_MAX)).astype(np.uint8)
    out = np.where(restart, np.nan, api).astype(np.float32)
    return out, age, ApiState(api, gap, age)


def api_scan(precip: np.ndarray, efolding_days: Sequence[float], max_gap_days: int,
             state: ApiState | None = None) -> tuple[np.ndarray, np.ndarray, ApiState]:
    """Scan a series of days with :func:`api_step`.

    Parameters
    ----------
    precip : ndarray, (t, y, x)
        Daily precipitation (mm), NaN where missing.
    efolding_days, max_gap_days, state
        As :func:`api_step`; ``state`` is the state before the first of these days.

    Returns
    -------
    api : ndarray, float32, (n_decay, t, y, x)
    age : ndarray, uint8, (t, y, x)
    state : ApiState
        The state after the last day (feed it to the next scan to continue the series).
    """
    p = np.asarray(precip)
    if p.ndim != 3:
        raise ValueError(f"precipitation is (t, y, x), got shape {p.shape}")
    if max_gap_days < 0:
        raise ValueError(f"max_gap_days must be >= 0, got {max_gap_days}")
    _check(p, "in the series scanned")
    if state is None:
        state = ApiState.initial(len(efolding_days), p.shape[1:])
    api = np.empty((len(efolding_days), *p.shape), np.float32)
    age = np.empty(p.shape, np.uint8)
    k = _factors(efolding_days)
    for t in range(p.shape[0]):
        api[:, t], age[t], state = _step(p[t].astype(np.float64), k, max_gap_days, state)
    return api, age, state
