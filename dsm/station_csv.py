"""dsm's plain CSV tables: in situ station records and weather stations, under any column names.

:func:`read_station_csv` reads ``station, lon, lat, depth, time, value`` (the layout the twin
writes for its stations) into tidy records (:data:`dsm.insitu_records.TIDY_COLUMNS`);
:func:`read_weather_csv` reads daily precipitation and air temperature
(:data:`WEATHER_COLUMNS`). A ``columns`` mapping from dsm's names to the file's reads any
other column names; a missing column is named with the setting that maps it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dsm.insitu_records import TIDY_COLUMNS, InsituFormatError
from dsm.storeref import StoreRef

STATION_CSV_COLUMNS: tuple[str, ...] = (
    "station", "network", "lon", "lat", "depth", "time", "value", "sensor", "flag",
)  # fmt: skip
"""dsm's names of the station CSV columns; ``columns`` maps any of them to a file's own names."""
STATION_CSV_REQUIRED: tuple[str, ...] = ("station", "lon", "lat", "depth", "time", "value")
WEATHER_COLUMNS: tuple[str, ...] = ("station", "lon", "lat", "time", "precip_mm", "tair_c")
"""dsm's names of the weather-station CSV columns (all required)."""


def _mapped_columns(
    path: str | Path, found: Sequence[str], names: Sequence[str], required: Sequence[str],
    columns: Mapping[str, str] | None, setting: str,
) -> dict[str, str]:
    """dsm name -> the file's column, for the ``names`` the file has (all of ``required``, and
    every name ``columns`` maps); raises :class:`InsituFormatError` naming each missing column
    and the setting that maps it."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(names))
    if unknown:
        raise InsituFormatError(path, f"{setting} names unknown column(s) {unknown}; dsm's names: {list(names)}")
    col = {n: columns.get(n, n) for n in names}
    missing = [n for n in names if col[n] not in found and (n in required or n in columns)]
    if missing:
        why = "; ".join(
            f"no column {col[n]!r} (dsm's {n!r}, set by {setting}.{n})" if n in columns
            else f"no column {n!r}: set {setting}.{n} to the file's name for it" for n in missing)
        raise InsituFormatError(path, f"{why}; the file's columns are {list(found)}")
    return {n: c for n, c in col.items() if c in found}


def read_station_csv(
    path: str | Path, *, network: str | None = None, default_flag: str = "G",
    columns: Mapping[str, str] | None = None, setting: str = "columns",
) -> pd.DataFrame:
    """Read the plain in situ CSV (``station, lon, lat, depth, time, value``).

    This is the layout dsm's synthetic twin writes for its stations; ``columns`` reads any
    other CSV with these quantities under other names.

    Parameters
    ----------
    path : str or pathlib.Path
        Comma-separated file with a header row. Optional columns: ``network``,
        ``sensor`` and ``flag``. ``depth`` is the sensor depth in metres (it becomes
        ``depth_from`` and ``depth_to``), ``value`` is in m3/m3, ``time`` is ISO 8601
        (naive times are taken as UTC).
    network : str, optional
        Network name for files without a ``network`` column.
    default_flag : str, default "G"
        Quality flag given to every record when the file has no ``flag`` column.
    columns : mapping of str to str, optional
        dsm's name (:data:`STATION_CSV_COLUMNS`) -> the file's column name, for the names
        that differ; a mapped column must exist.
    setting : str, default "columns"
        The configuration key of ``columns``, named in errors
        (e.g. ``validation.stations[0].columns``).

    Returns
    -------
    pandas.DataFrame
        Tidy records (:data:`TIDY_COLUMNS`).

    Raises
    ------
    InsituFormatError
        When a required or mapped column is missing (naming it and the setting to change)
        or a value cannot be parsed.
    """
    path = Path(path)
    text = {(columns or {}).get(n, n): str for n in ("station", "network", "sensor")}
    try:
        raw = pd.read_csv(path, dtype=text)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InsituFormatError(path, f"not a readable CSV: {exc}") from exc
    col = _mapped_columns(path, list(raw.columns), STATION_CSV_COLUMNS, STATION_CSV_REQUIRED, columns, setting)
    try:
        numeric = {
            c: pd.to_numeric(raw[col[c]]).astype(np.float64) for c in ("lon", "lat", "depth", "value")
        }
        time = pd.to_datetime(raw[col["time"]], format="ISO8601", utc=True)
    except (ValueError, TypeError) as exc:
        raise InsituFormatError(path, f"bad value: {exc}") from exc
    frame = pd.DataFrame(
        {
            "network": raw[col["network"]] if "network" in col else network,
            "station": raw[col["station"]],
            "lon": numeric["lon"],
            "lat": numeric["lat"],
            "depth_from": numeric["depth"],
            "depth_to": numeric["depth"],
            "sensor": raw[col["sensor"]] if "sensor" in col else None,
            "time": time,
            "value": numeric["value"],
            "flag": raw[col["flag"]] if "flag" in col else default_flag,
        },
        columns=list(TIDY_COLUMNS),
    )
    return frame


def read_weather_csv(
    src: StoreRef, *, columns: Mapping[str, str] | None = None, setting: str = "weather_columns",
) -> pd.DataFrame:
    """Read a weather-station table (daily precipitation and air temperature).

    Parameters
    ----------
    src : StoreRef
        A CSV (local path or fsspec URL, with its options) with a header row and the columns
        :data:`WEATHER_COLUMNS`: ``station, lon, lat, time, precip_mm, tair_c``.
    columns : mapping of str to str, optional
        dsm's name -> the file's column name, for the names that differ.
    setting : str, default "weather_columns"
        The configuration key of ``columns``, named in errors.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`WEATHER_COLUMNS` (``time`` parsed), one row per station-day.

    Raises
    ------
    FileNotFoundError
        No file at ``src``.
    InsituFormatError
        A required or mapped column is missing, or the file is not a CSV.
    """
    url = src.url
    try:
        with src.open("r") as f:
            raw = pd.read_csv(f, dtype={(columns or {}).get("station", "station"): str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InsituFormatError(url, f"not a readable CSV: {exc}") from exc
    col = _mapped_columns(url, list(raw.columns), WEATHER_COLUMNS, WEATHER_COLUMNS, columns, setting)
    w = pd.DataFrame({n: raw[col[n]] for n in WEATHER_COLUMNS})
    try:
        w["time"] = pd.to_datetime(w["time"])
    except (ValueError, TypeError) as exc:
        raise InsituFormatError(url, f"bad value in column {col['time']!r}: {exc}") from exc
    return w
