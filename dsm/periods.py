"""Calendars of the method: 16-day regression periods, 8-day composites, Julian names.

The 16-day periods follow the MOD13A2 composites: they start on day of year 1, 17, 33, ...,
353 of every year and the last one of a year ends on 31 December (13 days, or 14 in a leap
year). The 8-day calendar of MOD09A1 / MOD15A2H starts on day 1, 9, ..., 361; its last
composite ends on 31 December (5 or 6 days). A period or composite is named by its first day
as ``YYYYDDD`` (for example ``2016017``).

Everything here is pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsm.errors import ConfigError

Date = dt.date


@dataclass(frozen=True, order=True)
class Composite:
    """A compositing window of a calendar: ``start`` to ``end`` inclusive."""

    start: Date
    end: Date

    @property
    def name(self) -> str:
        """Julian name ``YYYYDDD`` of the first day."""
        return julian_name(self.start)

    @property
    def days(self) -> list[Date]:
        """Every day of the window."""
        return [self.start + dt.timedelta(d) for d in range((self.end - self.start).days + 1)]

    @property
    def ndays(self) -> int:
        """Number of days in the window."""
        return (self.end - self.start).days + 1

    def __contains__(self, day: object) -> bool:
        return isinstance(day, Date) and self.start <= _as_date(day) <= self.end


def _as_date(day: Date | dt.datetime) -> Date:
    return day.date() if isinstance(day, dt.datetime) else day


def julian_name(day: Date) -> str:
    """``YYYYDDD`` of a day (day of year zero-padded to three digits)."""
    day = _as_date(day)
    return f"{day.year:04d}{day.timetuple().tm_yday:03d}"


def parse_julian(name: str) -> Date:
    """The day named ``YYYYDDD``; raises ``ValueError`` naming the string if it is not one."""
    if len(name) != 7 or not name.isdigit():
        raise ValueError(f"{name!r} is not a Julian date YYYYDDD")
    year, doy = int(name[:4]), int(name[4:])
    start = dt.date(year, 1, 1)
    if not 1 <= doy <= (dt.date(year, 12, 31) - start).days + 1:
        raise ValueError(f"{name!r}: day of year {doy} does not exist in {year}")
    return start + dt.timedelta(doy - 1)


def _composite_of(day: Date, length: int) -> Composite:
    day = _as_date(day)
    doy = day.timetuple().tm_yday
    first = (doy - 1) // length * length + 1
    start = dt.date(day.year, 1, 1) + dt.timedelta(first - 1)
    end = min(start + dt.timedelta(length - 1), dt.date(day.year, 12, 31))
    return Composite(start, end)


def period_of(day: Date) -> Composite:
    """The 16-day regression period (MOD13A2 composite) containing ``day``."""
    return _composite_of(day, 16)


def composite_8day_of(day: Date) -> Composite:
    """The 8-day composite (MOD09A1, MOD15A2H) containing ``day``."""
    return _composite_of(day, 8)


def _composites(start: Date, end: Date, length: int) -> list[Composite]:
    check_dates(start, end)
    out: list[Composite] = []
    c = _composite_of(start, length)
    while c.start <= end:
        out.append(c)
        c = _composite_of(c.end + dt.timedelta(1), length)
    return out


def periods(start: Date, end: Date) -> list[Composite]:
    """Every 16-day period overlapping ``start``..``end`` (inclusive), in order."""
    return _composites(start, end, 16)


def composites_8day(start: Date, end: Date) -> list[Composite]:
    """Every 8-day composite overlapping ``start``..``end`` (inclusive), in order."""
    return _composites(start, end, 8)


def days(start: Date, end: Date) -> Iterator[Date]:
    """Every day from ``start`` to ``end`` inclusive."""
    check_dates(start, end)
    for d in range((end - start).days + 1):
        yield start + dt.timedelta(d)


def check_dates(start: Date, end: Date) -> None:
    """Raise ``ConfigError`` unless ``start <= end``."""
    if start > end:
        raise ConfigError(f"dates are in the wrong order: start {start} is after end {end}")


def time_position(index: pd.Index, when: Any) -> int:
    """Position of the date ``when`` on a time index that holds it once.

    Raises
    ------
    KeyError
        ``when`` is not on the index.
    ValueError
        It is there more than once.
    """
    loc = index.get_loc(pd.Timestamp(when))
    if not isinstance(loc, (int, np.integer)):
        raise ValueError(f"{when} is not once on the time axis")
    return int(loc)

