"""Readers for in situ soil moisture: ISMN station files, and every in situ reader in one place.

Every reader returns the same tidy table, one row per record
(:data:`~dsm.insitu_records.TIDY_COLUMNS`, processed by :mod:`dsm.insitu_records`). This module
reads the ISMN files; dsm's plain station and weather-station CSVs are read by
:mod:`dsm.station_csv`. Both are also importable from here, with the processing
(:func:`select_surface`, :func:`filter_flags`, :func:`daily_means`, :func:`station_table`).

ISMN formats (both are whitespace separated, any of CR, LF or CRLF line endings):

* "header + values": a first line ``CSE network station lat lon elevation
  depth_from depth_to sensor`` then one line per record
  ``YYYY/MM/DD HH:MM value ismn_flag provider_flag`` (the provider flag may be absent).
* "CEOP separated": no header; each line is ``YYYY/MM/DD HH:MM YYYY/MM/DD HH:MM CSE
  network station lat lon elevation depth_from depth_to value ismn_flag
  provider_flag``. The sensor name is only in the file name.

ISMN file names follow ``CSE_network_station_variable_depthfrom_depthto_sensor_start_end
.stm``; only soil moisture (variable ``sm``) is read. The provider flag and the
elevation are not kept. The archive's ``Metadata.xml`` is dataset-level ISO 19115
metadata (no per-station content) and is not read.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from dsm.insitu_records import (
    DAILY_COLUMNS,
    STATION_KEYS,
    TIDY_COLUMNS,
    InsituFormatError,
    daily_means,
    filter_flags,
    select_surface,
    station_table,
)
from dsm.station_csv import (
    STATION_CSV_COLUMNS,
    STATION_CSV_REQUIRED,
    WEATHER_COLUMNS,
    read_station_csv,
    read_weather_csv,
)

__all__ = [
    "DAILY_COLUMNS",
    "STATION_CSV_COLUMNS",
    "STATION_CSV_REQUIRED",
    "STATION_KEYS",
    "TIDY_COLUMNS",
    "WEATHER_COLUMNS",
    "InsituFormatError",
    "IsmnFileName",
    "ReadResult",
    "daily_means",
    "filter_flags",
    "parse_ismn_filename",
    "parse_ismn_text",
    "read_ismn_archive",
    "read_ismn_file",
    "read_ismn_files",
    "read_static_variables",
    "read_station_csv",
    "read_weather_csv",
    "select_surface",
    "station_table",
]

logger = logging.getLogger(__name__)

SOIL_MOISTURE = "sm"
_ISMN_TIME_FORMAT = "%Y/%m/%d %H:%M"
_FLOAT = r"[-+]?\d+(?:\.\d*)?"
_VALUE = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|NaN|nan"
_STAMP = r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}"
_HEADER_RE = re.compile(
    rf"^(?P<cse>\S+)\s+(?P<network>\S+)\s+(?P<station>\S+)\s+(?P<lat>{_FLOAT})\s+"
    rf"(?P<lon>{_FLOAT})\s+(?P<elevation>{_FLOAT}|NaN|nan)\s+(?P<depth_from>{_FLOAT})\s+"
    rf"(?P<depth_to>{_FLOAT})(?:\s+(?P<sensor>\S.*?))?\s*$"
)
_HEADER_VALUES_ROW = (
    rf"^(?P<time>{_STAMP})\s+(?P<value>{_VALUE})\s+(?P<flag>\S+)(?:\s+(?P<provider>\S.*?))?\s*$"
)
_CEOP_ROW = (
    rf"^(?P<time>{_STAMP})\s+{_STAMP}\s+(?P<cse>\S+)\s+(?P<network>\S+)\s+(?P<station>\S+)\s+"
    rf"(?P<lat>{_FLOAT})\s+(?P<lon>{_FLOAT})\s+(?P<elevation>{_FLOAT}|NaN|nan)\s+"
    rf"(?P<depth_from>{_FLOAT})\s+(?P<depth_to>{_FLOAT})\s+(?P<value>{_VALUE})\s+"
    rf"(?P<flag>\S+)(?:\s+(?P<provider>\S.*?))?\s*$"
)
_CEOP_START_RE = re.compile(rf"^{_STAMP}\s+{_STAMP}\s")
_FILENAME_RE = re.compile(
    r"^(?P<cse>[^_]+)_(?P<network>[^_]+)_(?P<station>.+)_(?P<variable>[A-Za-z]+)_"
    r"(?P<depth_from>-?\d+\.\d+)_(?P<depth_to>-?\d+\.\d+)_(?P<sensor>.+)_"
    r"(?P<start>\d{8})_(?P<end>\d{8})\.stm$",
    re.IGNORECASE,
)
_STATIC_NAME_RE = re.compile(
    r"^(?P<cse>[^_]+)_(?P<network>[^_]+)_(?P<station>.+)_static_variables\.csv$",
    re.IGNORECASE,
)
_STATIC_UNKNOWN_DEPTH = -99.9


@dataclass(frozen=True)
class IsmnFileName:
    """Fields of an ISMN data file name (``CSE_network_station_var_from_to_sensor_start_end``)."""

    cse: str
    network: str
    station: str
    variable: str
    depth_from: float
    depth_to: float
    sensor: str
    start: str
    end: str


@dataclass(frozen=True)
class ReadResult:
    """Outcome of reading many files: what could be read and what could not.

    Attributes
    ----------
    data : pandas.DataFrame
        Tidy records (:data:`TIDY_COLUMNS`) of every file that was read.
    failures : Mapping of str to str
        Source (path or ``archive.zip/member``) -> why it could not be read.
    skipped : tuple of str
        Sources left out on purpose: ISMN files of variables other than soil moisture.
    """

    data: pd.DataFrame
    failures: Mapping[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()


# --------------------------------------------------------------------------- ISMN files


def parse_ismn_filename(name: str) -> IsmnFileName | None:
    """Split an ISMN data file name into its fields.

    Parameters
    ----------
    name : str
        File name or path; only the last component is used.

    Returns
    -------
    IsmnFileName or None
        None when the name does not follow the ISMN pattern.
    """
    match = _FILENAME_RE.match(PurePosixPath(str(name).replace("\\", "/")).name)
    if match is None:
        return None
    fields = match.groupdict()
    return IsmnFileName(
        cse=fields["cse"],
        network=fields["network"],
        station=fields["station"],
        variable=fields["variable"].lower(),
        depth_from=float(fields["depth_from"]),
        depth_to=float(fields["depth_to"]),
        sensor=fields["sensor"],
        start=fields["start"],
        end=fields["end"],
    )


def _decode(content: bytes | str) -> str:
    if isinstance(content, str):
        return content
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode("latin-1")


def _numbered_lines(text: str) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers (CR, LF and CRLF all end a line)."""
    return [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]


def _station_meta(fields: Mapping[str, str | None], source: str) -> dict[str, object]:
    """Station metadata from header fields, checked for plausibility."""
    lat, lon = float(str(fields["lat"])), float(str(fields["lon"]))
    depth_from, depth_to = float(str(fields["depth_from"])), float(str(fields["depth_to"]))
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise InsituFormatError(source, f"implausible station position lat={lat}, lon={lon}")
    if not 0.0 <= depth_from <= depth_to:
        raise InsituFormatError(
            source, f"implausible depths depth_from={depth_from}, depth_to={depth_to} m"
        )
    return {
        "network": fields["network"],
        "station": fields["station"],
        "lon": lon,
        "lat": lat,
        "depth_from": depth_from,
        "depth_to": depth_to,
    }


def _match_rows(
    lines: Sequence[tuple[int, str]], pattern: str, source: str, what: str
) -> pd.DataFrame:
    """Parse record lines with a regular expression; any line that fails is an error."""
    numbers = [n for n, _ in lines]
    rows = pd.Series([text for _, text in lines], index=numbers, dtype=object)
    fields = rows.str.extract(pattern)
    bad = fields["time"].isna()
    if bad.any():
        number = int(fields.index[bad.to_numpy()][0])
        raise InsituFormatError(
            source,
            f"line {number} is not a {what} record: {rows.loc[number].strip()!r} "
            f"({int(bad.sum())} such line(s))",
        )
    return fields


def _empty_tidy() -> pd.DataFrame:
    """A tidy table without rows, with the column dtypes of a read file."""
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in TIDY_COLUMNS})
    for column in ("lon", "lat", "depth_from", "depth_to", "value"):
        frame[column] = frame[column].astype(np.float64)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _records_frame(
    meta: Mapping[str, object], fields: pd.DataFrame, source: str
) -> pd.DataFrame:
    """Tidy frame from the station metadata and the parsed record fields."""
    if fields.empty:
        return _empty_tidy()
    try:
        time = pd.to_datetime(fields["time"], format=_ISMN_TIME_FORMAT, utc=True)
    except ValueError as exc:
        raise InsituFormatError(source, f"bad timestamp: {exc}") from exc
    n = len(fields)
    columns: dict[str, object] = {key: [meta[key]] * n for key in STATION_KEYS}
    columns["time"] = pd.DatetimeIndex(time)
    columns["value"] = fields["value"].astype(np.float64).to_numpy()
    columns["flag"] = fields["flag"].to_numpy()
    return pd.DataFrame(columns, columns=list(TIDY_COLUMNS))


def _parse_header_values(
    lines: Sequence[tuple[int, str]], source: str, name: IsmnFileName | None
) -> pd.DataFrame:
    header = _HEADER_RE.match(lines[0][1])
    if header is None:
        raise InsituFormatError(
            source, f"line {lines[0][0]} is not an ISMN header: {lines[0][1].strip()!r}"
        )
    meta = _station_meta(header.groupdict(), source)
    sensor = header["sensor"] or (name.sensor if name else None)
    meta["sensor"] = sensor
    fields = _match_rows(lines[1:], _HEADER_VALUES_ROW, source, "header+values")
    return _records_frame(meta, fields, source)


def _parse_ceop_sep(
    lines: Sequence[tuple[int, str]], source: str, name: IsmnFileName | None
) -> pd.DataFrame:
    fields = _match_rows(lines, _CEOP_ROW, source, "CEOP-separated")
    station_cols = ["network", "station", "lat", "lon", "depth_from", "depth_to"]
    distinct = fields[station_cols].drop_duplicates()
    if len(distinct) > 1:
        raise InsituFormatError(
            source, f"records of {len(distinct)} different stations/depths in one file"
        )
    meta = _station_meta({str(k): v for k, v in fields.iloc[0].to_dict().items()}, source)
    meta["sensor"] = name.sensor if name else None
    return _records_frame(meta, fields, source)


def parse_ismn_text(content: bytes | str, source: str, filename: str | None = None) -> pd.DataFrame:
    """Parse the content of one ISMN soil moisture file (either format).

    Parameters
    ----------
    content : bytes or str
        The file content (UTF-8, falling back to Latin-1).
    source : str
        Where the content came from; used in error messages.
    filename : str, optional
        The file name, for the sensor name and variable (default: ``source``).

    Returns
    -------
    pandas.DataFrame
        Tidy records (:data:`TIDY_COLUMNS`), in file order.

    Raises
    ------
    InsituFormatError
        When the format is not recognised, a line is malformed, or the file name says
        the file holds a variable other than soil moisture.
    """
    name = parse_ismn_filename(filename if filename is not None else source)
    if name is not None and name.variable != SOIL_MOISTURE:
        raise InsituFormatError(
            source, f"holds variable {name.variable!r}, not soil moisture ({SOIL_MOISTURE!r})"
        )
    lines = _numbered_lines(_decode(content))
    if not lines:
        raise InsituFormatError(source, "file is empty")
    if _CEOP_START_RE.match(lines[0][1]):
        return _parse_ceop_sep(lines, source, name)
    if _HEADER_RE.match(lines[0][1]):
        return _parse_header_values(lines, source, name)
    raise InsituFormatError(
        source,
        "unknown format: first line is neither an ISMN header nor a CEOP record: "
        f"{lines[0][1].strip()[:120]!r}",
    )


def read_ismn_file(path: str | Path) -> pd.DataFrame:
    """Read one ISMN soil moisture file ("header + values" or "CEOP separated").

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.stm`` file.

    Returns
    -------
    pandas.DataFrame
        Tidy records (:data:`TIDY_COLUMNS`).

    Raises
    ------
    InsituFormatError
        On an unknown format or malformed content (the path is in the message).
    OSError
        When the file cannot be opened.
    """
    path = Path(path)
    return parse_ismn_text(path.read_bytes(), str(path), path.name)


def _read_many(items: Iterable[tuple[str, str, Callable[[], bytes]]]) -> ReadResult:
    """Read ``(source, filename, loader)`` items; ``loader()`` returns the bytes."""
    frames: list[pd.DataFrame] = []
    failures: dict[str, str] = {}
    skipped: list[str] = []
    for source, filename, loader in items:
        name = parse_ismn_filename(filename)
        if name is not None and name.variable != SOIL_MOISTURE:
            skipped.append(source)
            continue
        try:
            frames.append(parse_ismn_text(loader(), source, filename))
        except (InsituFormatError, OSError, zipfile.BadZipFile) as exc:
            failures[source] = str(exc)
            logger.warning("skipping in situ file: %s", exc)
    data = pd.concat(frames, ignore_index=True) if frames else _empty_tidy()
    return ReadResult(data=data, failures=failures, skipped=tuple(skipped))


def read_ismn_files(paths: Iterable[str | Path]) -> ReadResult:
    """Read many ISMN files, collecting per-file failures instead of stopping.

    Parameters
    ----------
    paths : iterable of str or pathlib.Path
        ``.stm`` files. Files whose ISMN name shows another variable than soil
        moisture are skipped.

    Returns
    -------
    ReadResult
        The records of every readable file, the failures and the skipped files.
    """
    items = [(str(p), Path(p).name, Path(p).read_bytes) for p in map(Path, paths)]
    return _read_many(items)


def read_ismn_archive(path: str | Path) -> ReadResult:
    """Read every soil moisture ``.stm`` file of an ISMN archive (zip) or folder.

    Parameters
    ----------
    path : str or pathlib.Path
        An ISMN download: a zip file or its unpacked folder (searched recursively).

    Returns
    -------
    ReadResult
        Records of every readable file; failures keyed by ``archive.zip/member``.

    Raises
    ------
    InsituFormatError
        When ``path`` is neither a folder nor a readable zip file.
    """
    path = Path(path)
    if path.is_dir():
        return read_ismn_files(sorted(path.rglob("*.stm")))
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InsituFormatError(path, f"not a readable ISMN zip archive or folder: {exc}") from exc
    with archive:
        members = sorted(
            m.filename for m in archive.infolist()
            if not m.is_dir() and m.filename.lower().endswith(".stm")
        )  # fmt: skip
        items = [
            (f"{path}/{m}", PurePosixPath(m).name, lambda m=m: archive.read(m)) for m in members
        ]
        return _read_many(items)


def read_static_variables(path: str | Path) -> pd.DataFrame:
    """Read an ISMN station ``*_static_variables.csv`` (soil texture, land cover, ...).

    Parameters
    ----------
    path : str or pathlib.Path
        The semicolon-separated file.

    Returns
    -------
    pandas.DataFrame
        One row per quantity, columns as in the file with ``depth_from[m]`` and
        ``depth_to[m]`` renamed ``depth_from``/``depth_to`` (metres; the file's
        -99.90 "depth unknown" becomes NaN) and ``value`` kept as text (it holds
        numbers and class names). ``network`` and ``station`` columns are added
        when the file name follows the ISMN pattern.

    Raises
    ------
    InsituFormatError
        When the file is not such a table.
    """
    path = Path(path)
    text = _decode(path.read_bytes())
    try:
        table = pd.read_csv(io.StringIO(text), sep=";", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InsituFormatError(path, f"not a static variables table: {exc}") from exc
    required = {"quantity_name", "depth_from[m]", "depth_to[m]", "value"}
    if not required <= set(table.columns):
        raise InsituFormatError(
            path, f"static variables table lacks column(s) {sorted(required - set(table.columns))}"
        )
    table = table.loc[:, [c for c in table.columns if not c.startswith("Unnamed")]]
    table = table.rename(columns={"depth_from[m]": "depth_from", "depth_to[m]": "depth_to"})
    for column in ("depth_from", "depth_to"):
        depth = pd.to_numeric(table[column].replace("", np.nan), errors="coerce")
        table[column] = depth.mask(np.isclose(depth, _STATIC_UNKNOWN_DEPTH))
    match = _STATIC_NAME_RE.match(path.name)
    if match is not None:
        table.insert(0, "station", match["station"])
        table.insert(0, "network", match["network"])
    return table
