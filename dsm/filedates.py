"""Dates of input files from their names: ISO dates, and the patterns of the products' file names.

Shared by the ingest readers and by the gridded products of the validation; a name that holds
no date (or no valid one) raises :class:`dsm.errors.InputDateError` naming the file.
"""

from __future__ import annotations

import datetime as dt
import os
import re

from dsm.errors import InputDateError

__all__ = ["DEFAULT_DATE_REGEX", "date_from_name", "parse_day"]


def parse_day(text: str, path: str | os.PathLike[str], what: str, fmt: str | None = None) -> dt.date:
    """The date in ``text`` (ISO ``YYYY-MM-DD...`` or ``fmt``), else an :class:`InputDateError`
    saying which ``what`` of ``path`` is not a date."""
    try:
        return dt.datetime.strptime(text, fmt).date() if fmt else dt.date.fromisoformat(text[:10])
    except ValueError as exc:
        raise InputDateError(path, f"{what} {text!r} is not a date") from exc


#: Default file-name date pattern: ``AYYYYDDD`` (MODIS), ``YYYYDDD``, ``YYYYMMDD`` or
#: ``YYYY-MM-DD`` / ``YYYY_MM_DD``, not inside a longer run of digits.
DEFAULT_DATE_REGEX = (
    r"(?<!\d)(?:(?P<year>\d{4})[-_](?P<month>\d{2})[-_](?P<day>\d{2})"
    r"|(?P<year2>\d{4})(?P<month2>\d{2})(?P<day2>\d{2})"
    r"|(?P<year3>\d{4})(?P<doy>\d{3}))(?!\d)"
)


def date_from_name(path: str | os.PathLike[str], regex: str = DEFAULT_DATE_REGEX) -> dt.date:
    """Date in a file's name (not its folders), by a regular expression.

    Parameters
    ----------
    path
        The file; only ``os.path.basename(path)`` is searched.
    regex
        A pattern with named groups: ``year`` with ``doy`` (day of year), or ``year``,
        ``month`` and ``day``; a single group ``date`` holding ``YYYYMMDD`` or ``YYYYDDD`` is
        also accepted. Group names may carry a digit suffix (``year2``) so alternatives can
        share names; the first match in the name is used.

    Raises
    ------
    InputDateError
        No match, or the matched numbers are not a date.
    """
    name = os.path.basename(os.fspath(path))
    try:
        m = re.search(regex, name)
    except re.error as exc:
        raise InputDateError(path, f"date pattern {regex!r} is not a regular expression: {exc}") from exc
    if m is None:
        raise InputDateError(path, f"no date in the file name (pattern {regex!r})")
    groups = {re.sub(r"\d+$", "", k): v for k, v in m.groupdict().items() if v is not None}
    try:
        if "date" in groups:
            s = groups["date"]
            return dt.datetime.strptime(s, "%Y%m%d").date() if len(s) == 8 else _from_doy(int(s[:4]), int(s[4:]))
        if "doy" in groups:
            return _from_doy(int(groups["year"]), int(groups["doy"]))
        return dt.date(int(groups["year"]), int(groups["month"]), int(groups["day"]))
    except (KeyError, ValueError) as exc:
        raise InputDateError(path, f"'{m.group(0)}' in the file name is not a valid date ({exc})") from exc


def _from_doy(year: int, doy: int) -> dt.date:
    if not 1 <= doy <= (366 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 365):
        raise ValueError(f"day of year {doy} does not exist in {year}")
    return dt.date(year, 1, 1) + dt.timedelta(doy - 1)
