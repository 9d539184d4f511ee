"""Errors, date parsing and the many-files helper shared by the ingest readers.

Every problem with one input file raises a subclass of :class:`dsm.errors.InputError` whose
message starts with the file's path and says what is wrong with it. :func:`read_many` runs a
reader over many files and returns what could be read plus a per-file report, so one bad
file never stops an ingest:

============================  ========  ==============================================
exception                     status    meaning
============================  ========  ==============================================
(none)                        used      the reader returned a result
:class:`EmptyGranuleError`    skipped   readable, but no valid pixel (all fill / QC)
:class:`NoOverlapError`       skipped   readable, but it does not cover the region
any other ``InputError``      failed    unreadable, corrupt, wrong product, bad date...
============================  ========  ==============================================

Any other exception is a bug and propagates.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dsm.errors import InputError
from dsm.files import FileReport, Status

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


class IngestInputError(InputError):
    """An input file cannot be used; ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnreadableFileError(IngestInputError):
    """The file is missing, truncated, corrupt or not of the expected format."""


class WrongProductError(IngestInputError):
    """The file is readable but is not the product (or grid) that was asked for."""


class MissingVariableError(IngestInputError):
    """A variable (SDS, HDF5 dataset, attribute) the reader needs is absent."""


class EmptyGranuleError(IngestInputError):
    """The file holds no valid pixel (all fill or all rejected by quality control)."""


class NoOverlapError(IngestInputError):
    """The file does not cover any part of the requested region."""


class InputDateError(IngestInputError):
    """The date of the file cannot be determined, or its sources disagree."""


class GeolocationError(IngestInputError):
    """The file's geolocation is missing, unknown (CRS) or disagrees with the grid."""


@dataclass
class ManyResult:
    """Results of :func:`read_many`: values of the used files (in input order) and the report."""

    results: dict[str, Any] = field(default_factory=dict)
    report: list[FileReport] = field(default_factory=list)

    def by_status(self, status: Status) -> list[FileReport]:
        """The report entries with ``status``."""
        return [r for r in self.report if r.status == status]


def read_many(paths: Iterable[PathLike], reader: Callable[..., Any], /, **kwargs: Any) -> ManyResult:
    """Apply ``reader(path, **kwargs)`` to every path, never stopping on a bad file.

    Parameters
    ----------
    paths
        Input files.
    reader
        Any reader of this package (``read_spl3smp``, ``read_modis_tile``...).
    **kwargs
        Passed to ``reader``.

    Returns
    -------
    ManyResult
        ``results[path]`` for every used file and one :class:`FileReport` per input path.
    """
    out = ManyResult()
    for p in paths:
        path = os.fspath(p)
        try:
            value = reader(path, **kwargs)
        except (EmptyGranuleError, NoOverlapError) as exc:
            log.info("skipped %s", exc)
            out.report.append(FileReport(path, "skipped", _reason(exc), type(exc).__name__))
        except InputError as exc:
            log.warning("failed %s", exc)
            out.report.append(FileReport(path, "failed", _reason(exc), type(exc).__name__))
        else:
            out.results[path] = value
            out.report.append(FileReport(path, "used"))
    return out


def _reason(exc: InputError) -> str:
    return getattr(exc, "reason", None) or str(exc)


# -- dates ------------------------------------------------------------------------------
def parse_day(text: str, path: PathLike, what: str, fmt: str | None = None) -> dt.date:
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


def date_from_name(path: PathLike, regex: str = DEFAULT_DATE_REGEX) -> dt.date:
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
