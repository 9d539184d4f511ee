"""16-day and 8-day calendars and Julian names."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsm import periods
from dsm.errors import ConfigError

years = st.integers(1990, 2100)


@given(years)
def test_every_day_of_a_year_is_in_exactly_one_period(year):
    ps = periods.periods(dt.date(year, 1, 1), dt.date(year, 12, 31))
    assert len(ps) == 23
    assert [p.start.timetuple().tm_yday for p in ps] == list(range(1, 354, 16))
    covered = [d for p in ps for d in p.days]
    assert covered == list(periods.days(dt.date(year, 1, 1), dt.date(year, 12, 31)))
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    assert ps[-1].end == dt.date(year, 12, 31) and ps[-1].ndays == (14 if leap else 13)
    assert all(p.ndays == 16 for p in ps[:-1])


@given(st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31)))
def test_the_period_and_8day_composite_of_a_day_contain_it(day):
    p = periods.period_of(day)
    c = periods.composite_8day_of(day)
    assert day in p and day in c
    assert p.start <= c.start and c.end <= p.end  # 8-day composites nest in 16-day periods
    assert (c.start.timetuple().tm_yday - 1) % 8 == 0
    assert periods.parse_julian(periods.julian_name(day)) == day


@given(years)
def test_8day_calendar_has_46_composites_ending_on_31_december(year):
    cs = periods.composites_8day(dt.date(year, 1, 1), dt.date(year, 12, 31))
    assert len(cs) == 46
    assert cs[-1].start.timetuple().tm_yday == 361 and cs[-1].end == dt.date(year, 12, 31)


def test_julian_names():
    assert periods.julian_name(dt.date(2016, 1, 17)) == "2016017"
    assert periods.period_of(dt.date(2016, 12, 31)).name == "2016353"
    assert periods.parse_julian("2016366") == dt.date(2016, 12, 31)
    with pytest.raises(ValueError, match="2015366"):
        periods.parse_julian("2015366")
    with pytest.raises(ValueError, match="not a Julian date"):
        periods.parse_julian("16-017")


def test_periods_span_years_and_partial_ranges():
    ps = periods.periods(dt.date(2015, 12, 25), dt.date(2016, 1, 20))
    assert [p.name for p in ps] == ["2015353", "2016001", "2016017"]


def test_dates_in_the_wrong_order():
    with pytest.raises(ConfigError, match="wrong order"):
        periods.periods(dt.date(2016, 2, 1), dt.date(2016, 1, 1))
