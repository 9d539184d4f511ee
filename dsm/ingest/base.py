"""The many-files helper shared by the ingest readers, and the names they share: the input-file
errors (:mod:`dsm.errors`) and file-name dates (:mod:`dsm.filedates`).

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

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dsm.errors import (
    EmptyGranuleError,
    GeolocationError,
    IngestInputError,
    InputDateError,
    InputError,
    MissingVariableError,
    NoOverlapError,
    UnreadableFileError,
    WrongProductError,
)
from dsm.filedates import DEFAULT_DATE_REGEX, date_from_name, parse_day
from dsm.files import FileReport, Status

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


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


__all__ = ["DEFAULT_DATE_REGEX", "EmptyGranuleError", "GeolocationError", "IngestInputError", "InputDateError",
           "ManyResult", "MissingVariableError", "NoOverlapError", "PathLike", "UnreadableFileError",
           "WrongProductError", "date_from_name", "parse_day", "read_many"]
