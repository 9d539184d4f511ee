"""Tidy in situ records: the table every in situ reader returns, and its processing.

The table has one row per record (:data:`TIDY_COLUMNS`):

=========== ==================================================================
network     network name (ISMN header field 2)
station     station name
lon, lat    station position, degrees (WGS84)
depth_from  top of the measured layer, metres below the surface
depth_to    bottom of the measured layer, metres (a point sensor: from == to)
sensor      instrument name, or missing when the file does not tell
time        UTC timestamp of the record (tz-aware)
value       volumetric soil moisture, m3/m3
flag        ISMN quality flag: ``G`` good, ``C01``-``C03`` out of plausible range,
            ``D01``-``D10`` dubious, ``M`` missing, ``U`` undefined; several flags
            are joined by commas (``D03,D05``)
=========== ==================================================================

:func:`select_surface` keeps the surface layer, :func:`filter_flags` the good records and
:func:`daily_means` makes UTC daily means (:data:`DAILY_COLUMNS`); readers raise
:class:`InsituFormatError` for a file they cannot read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dsm.errors import InputError

STATION_KEYS: tuple[str, ...] = (
    "network", "station", "lon", "lat", "depth_from", "depth_to", "sensor",
)  # fmt: skip
TIDY_COLUMNS: tuple[str, ...] = (*STATION_KEYS, "time", "value", "flag")
DAILY_COLUMNS: tuple[str, ...] = (*STATION_KEYS, "time", "value", "n_obs")


class InsituFormatError(InputError, ValueError):
    """A file is not in a supported in situ format or its content is malformed.

    Parameters
    ----------
    path : str or pathlib.Path
        The offending file (for an archive member: ``archive.zip/member``).
    problem : str
        What is wrong.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _require_columns(data: pd.DataFrame, columns: Iterable[str], caller: str) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"{caller}: data has no column(s) {missing}")


def select_surface(
    data: pd.DataFrame, max_depth: float = 0.05, *, tolerance: float = 1e-9
) -> pd.DataFrame:
    """Keep the records of the surface layer: ``depth_to <= max_depth``.

    Parameters
    ----------
    data : pandas.DataFrame
        Tidy records.
    max_depth : float, default 0.05
        Deepest allowed bottom of the measured layer, metres (SMAP senses ~5 cm).
    tolerance : float, default 1e-9
        Slack on the comparison for depths written with rounding.

    Returns
    -------
    pandas.DataFrame
        The selected rows (a copy; original index kept).
    """
    _require_columns(data, ("depth_to",), "select_surface")
    return data.loc[data["depth_to"] <= max_depth + tolerance].copy()


def _flag_is_kept(flag: object, keep: frozenset[str]) -> bool:
    """True when every comma-separated code of ``flag`` is accepted by ``keep``.

    A code is accepted when it is in ``keep`` or when its letter is (``"D"`` accepts
    ``D01`` ... ``D10``).
    """
    if not isinstance(flag, str) or not flag.strip():
        return False
    codes = [code.strip() for code in flag.split(",")]
    return all(code in keep or code[:1] in keep for code in codes if code)


def filter_flags(data: pd.DataFrame, keep: str | Iterable[str] = ("G",)) -> pd.DataFrame:
    """Keep the records whose ISMN quality flag is accepted.

    Parameters
    ----------
    data : pandas.DataFrame
        Tidy records.
    keep : str or iterable of str, default ("G",)
        Accepted flags: whole codes (``"D05"``) or classes (``"D"`` for any
        ``D01``-``D10``). A combined flag such as ``"D03,D05"`` is kept only when every
        code in it is accepted. Missing flags are never kept.

    Returns
    -------
    pandas.DataFrame
        The selected rows (a copy; original index kept).
    """
    _require_columns(data, ("flag",), "filter_flags")
    accepted = frozenset([keep] if isinstance(keep, str) else keep)
    verdict = {flag: _flag_is_kept(flag, accepted) for flag in data["flag"].unique()}
    mask = data["flag"].map(verdict).fillna(False).astype(bool)
    return data.loc[mask].copy()


def daily_means(data: pd.DataFrame, *, min_count: int = 1) -> pd.DataFrame:
    """Average the records of each sensor over UTC days.

    Parameters
    ----------
    data : pandas.DataFrame
        Tidy records (usually after :func:`select_surface` and :func:`filter_flags`).
        ``time`` must be timezone-aware.
    min_count : int, default 1
        Fewest non-missing records (e.g. hourly readings) a day needs to get a mean;
        days with fewer are dropped.

    Returns
    -------
    pandas.DataFrame
        :data:`DAILY_COLUMNS`: the station keys, ``time`` (00:00 UTC of the day),
        ``value`` (mean, m3/m3) and ``n_obs`` (records averaged), sorted by station
        and day.

    Raises
    ------
    ValueError
        On missing columns, naive timestamps or ``min_count < 1``.
    """
    _require_columns(data, (*STATION_KEYS, "time", "value"), "daily_means")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"daily_means: min_count must be an integer >= 1, got {min_count!r}")
    if getattr(data["time"].dt, "tz", None) is None:
        raise ValueError("daily_means: time must be timezone-aware (UTC), got naive timestamps")
    valid = data.loc[data["value"].notna(), [*STATION_KEYS, "time", "value"]]
    valid = valid.assign(time=valid["time"].dt.tz_convert("UTC").dt.floor("D"))
    grouped = valid.groupby([*STATION_KEYS, "time"], sort=True, dropna=False)["value"]
    daily = grouped.agg(value="mean", n_obs="count").reset_index()
    daily = daily.loc[daily["n_obs"] >= min_count].reset_index(drop=True)
    daily["n_obs"] = daily["n_obs"].astype(np.int64)
    return daily.loc[:, list(DAILY_COLUMNS)]


def station_table(data: pd.DataFrame) -> pd.DataFrame:
    """One row per sensor: its station keys, first and last time and record count.

    Parameters
    ----------
    data : pandas.DataFrame
        Tidy or daily records.

    Returns
    -------
    pandas.DataFrame
        :data:`STATION_KEYS` plus ``start``, ``end`` and ``n_records``.
    """
    _require_columns(data, (*STATION_KEYS, "time"), "station_table")
    grouped = data.groupby(list(STATION_KEYS), sort=True, dropna=False)["time"]
    return grouped.agg(start="min", end="max", n_records="size").reset_index()
