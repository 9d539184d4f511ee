"""In situ stations: reading the configured sources, daily surface means, and their place on
the grid (IO at the edge; used by the validation and by the fusion method's gain calibration).

Sources are ISMN files, folders or zips and plain CSV tables (:mod:`dsm.insitu` parses them);
paths are local or fsspec URLs. A file that cannot be read is named with the reason and left
out; the rest is used.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dsm import insitu, store
from dsm.config import Config, StationSourceConfig, StoresConfig, ValidationConfig
from dsm.errors import InputError
from dsm.files import expand, local_copies
from dsm.grid import Region, lonlat_to_xy
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)

INSITU = "insitu"
SITE_KEYS = ("network", "station")

__all__ = ["INSITU", "SITE_KEYS", "Problems", "locate", "read_source", "station_daily", "station_observations",
           "stations_config", "weather_table"]


class Problems:
    """Inputs left out of the validation, and why (logged as they are found)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def add(self, kind: str, name: str, problem: str) -> None:
        log.warning("validation: %s %s: %s", kind, name, problem)
        self.rows.append({"kind": kind, "name": name, "problem": problem})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["kind", "name", "problem"])


# --------------------------------------------------------------------------- stations


def _source_format(src: StationSourceConfig) -> str:
    if src.format != "auto":
        return src.format
    p = src.path.lower().rstrip("/")
    if p.endswith(".csv"):
        return "csv"
    if p.endswith((".stm", ".zip")) or os.path.isdir(src.path):
        return "ismn"
    return "unknown"


@contextlib.contextmanager
def _station_paths(ref: StoreRef) -> Iterator[tuple[list[tuple[str, str]], dict[str, str]]]:
    """``(local path, name to report)`` of each file or folder ``ref`` names, and the remote
    files that could not be downloaded. Local files, folders, zips and globs are used in place;
    remote files are matched by :func:`dsm.files.expand` and
    :func:`~dsm.files.local_copies` (the station readers need local files)."""
    if ref.is_local:
        local = ref.local_path
        yield [(p, p) for p in (sorted(glob.glob(local)) if glob.has_magic(local) else [local])], {}
        return
    options = dict(ref.options)
    urls = expand([ref.url], options)
    with local_copies(urls, options) as (paths, failed):
        yield [(local, url) for url, local in paths.items()], {f.path: f.reason for f in failed}


def _located(path: str, stores: StoresConfig | None) -> StoreRef:
    """``path`` under the fsspec options of ``stores`` (``config.stores``; None: no options)."""
    return stores.at(path) if stores is not None else StoreRef(path)


def read_source(src: StationSourceConfig, stores: StoresConfig | None = None,
                setting: str = "columns") -> tuple[pd.DataFrame, dict[str, str]]:
    """Read one in situ source into tidy records (:data:`dsm.insitu.TIDY_COLUMNS`).

    Parameters
    ----------
    src : StationSourceConfig
        Path (file, folder, zip or glob; local or an fsspec URL such as ``s3://``), format and
        the CSV column mapping.
    stores : StoresConfig, optional
        ``config.stores``: ``src.path`` is read under its fsspec options (default: none).
    setting : str, default "columns"
        The configuration key of ``src.columns``, named when a CSV lacks a column
        (``validation.stations[i].columns`` in :func:`validate`).

    Returns
    -------
    records : pandas.DataFrame
        Tidy records of every readable file.
    failures : dict of str to str
        File -> why it could not be read (unknown format, malformed content).
    """
    frames: list[pd.DataFrame] = []
    ref = _located(src.path, stores)
    with _station_paths(ref) as (items, failures):
        if not items and not failures:
            return insitu._empty_tidy(), {src.path: "no file matches this path"}
        for path, name in items:
            try:
                frame, member_failures = _read_station_path(path, src, setting)
                frames.append(frame)
                failures.update({k.replace(path, name): v for k, v in member_failures.items()})
            except insitu.InsituFormatError as exc:  # the file is the key: keep only the problem
                failures[name] = exc.problem if exc.path == path else str(exc).replace(path, name)
            except OSError as exc:
                failures[name] = str(exc).replace(path, name)
    frames = [f for f in frames if len(f)]
    data = pd.concat(frames, ignore_index=True) if frames else insitu._empty_tidy()
    return data, failures


def _read_station_path(path: str, src: StationSourceConfig, setting: str = "columns"
                       ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Tidy records of one local station file, folder or zip, and the archive members that
    could not be read; raises :class:`~dsm.insitu.InsituFormatError` for an unreadable file."""
    fmt = _source_format(StationSourceConfig(path=path, format=src.format, network=src.network))
    if not os.path.exists(path):
        raise insitu.InsituFormatError(path, "no such file or folder")
    if fmt == "csv":
        return insitu.read_station_csv(path, network=src.network, columns=src.columns, setting=setting), {}
    if fmt == "ismn" and (os.path.isdir(path) or path.lower().endswith(".zip")):
        res = insitu.read_ismn_archive(path)
        return res.data, dict(res.failures)
    if fmt == "ismn":
        return insitu.read_ismn_file(path), {}
    content = Path(path).read_bytes()  # unknown extension: accept ISMN content, else name the file
    try:
        return insitu.parse_ismn_text(content, path), {}
    except insitu.InsituFormatError as exc:
        raise insitu.InsituFormatError(
            path, "unknown station file format (not .csv, not an ISMN .stm file, folder or zip): "
                  f"{exc.problem}") from None


def station_daily(records: pd.DataFrame, cfg: ValidationConfig, problems: Problems | None = None) -> pd.DataFrame:
    """Surface layer, accepted flags, UTC daily means per sensor and then per station (pure).

    Parameters
    ----------
    records : pandas.DataFrame
        Tidy in situ records.
    cfg : ValidationConfig
        ``max_depth``, ``flags`` and ``min_obs_per_day``.
    problems : Problems, optional
        Collects stations without a sensor in the surface layer.

    Returns
    -------
    pandas.DataFrame
        ``network, station, lon, lat, time, insitu, n_sensors``; ``time`` is the UTC day
        (timezone-naive datetime64), one row per station-day.
    """
    cols = ["network", "station", "lon", "lat", "time", INSITU, "n_sensors"]
    if records.empty:
        return pd.DataFrame({c: [] for c in cols})
    records = records.assign(network=records["network"].fillna("-"))
    surface = insitu.select_surface(records, cfg.max_depth)
    if problems is not None:
        for (net, sta), grp in records.groupby(["network", "station"], sort=True):
            if not ((surface["network"] == net) & (surface["station"] == sta)).any():
                depths = sorted({f"{a:g}-{b:g} m" for a, b in zip(grp["depth_from"], grp["depth_to"], strict=True)})
                problems.add("station", f"{net}/{sta}",
                             f"depth not available: no sensor within 0-{cfg.max_depth:g} m "
                             f"(depths in the file: {', '.join(depths)})")
    good = insitu.filter_flags(surface, cfg.flags)
    if problems is not None:
        for (net, sta), grp in surface.groupby(["network", "station"], sort=True):
            if not ((good["network"] == net) & (good["station"] == sta)).any():
                problems.add("station", f"{net}/{sta}",
                             f"no surface record with an accepted flag {list(cfg.flags)} "
                             f"(flags found: {', '.join(sorted(map(str, grp['flag'].unique())))})")
    if good.empty:
        return pd.DataFrame({c: [] for c in cols})
    daily = insitu.daily_means(good, min_count=cfg.min_obs_per_day)
    daily["time"] = daily["time"].dt.tz_convert("UTC").dt.tz_localize(None)
    out = (daily.groupby(["network", "station", "time"], sort=True)
           .agg(lon=("lon", "first"), lat=("lat", "first"), insitu=("value", "mean"), n_sensors=("value", "size"))
           .reset_index())
    return out.loc[:, cols]


def locate(stations: pd.DataFrame, region: Region, problems: Problems | None = None) -> pd.DataFrame:
    """Each station's 1 km pixel and 36 km cell in ``region`` (pure).

    Parameters
    ----------
    stations : pandas.DataFrame
        At least ``network, station, lon, lat`` (one row per station, or per station-day).
    region : Region
        The configured region.
    problems : Problems, optional
        Collects stations outside the region.

    Returns
    -------
    pandas.DataFrame
        ``network, station, lon, lat, row, col, cy, cx, x, y, inside`` (one row per station;
        row/col/cy/cx are -1 outside the region).
    """
    table = stations.drop_duplicates(list(SITE_KEYS)).loc[:, [*SITE_KEYS, "lon", "lat"]].reset_index(drop=True)
    lon, lat = table["lon"].to_numpy(np.float64), table["lat"].to_numpy(np.float64)
    row, col = region.pixel_of(lon, lat) if len(table) else (np.zeros(0, int), np.zeros(0, int))
    x, y = lonlat_to_xy(lon, lat)
    inside = np.asarray(row) >= 0
    table["row"], table["col"] = np.asarray(row, np.int64), np.asarray(col, np.int64)
    table["cy"] = np.where(inside, table["row"] // region.fine_per_coarse, -1)
    table["cx"] = np.where(inside, table["col"] // region.fine_per_coarse, -1)
    table["x"], table["y"], table["inside"] = np.asarray(x), np.asarray(y), inside
    if problems is not None:
        lo0, la0, lo1, la1 = region.lonlat_bounds
        for _, s in table.loc[~inside].iterrows():
            problems.add("station", f"{s.network}/{s.station}",
                         f"outside the region: lon {s.lon:.5f}, lat {s.lat:.5f} is not in lon {lo0:.4f}..{lo1:.4f}, "
                         f"lat {la0:.4f}..{la1:.4f}")
    return table


def stations_config(config: Config) -> ValidationConfig:
    """The ``validation`` section, with the twin's station files as defaults."""
    v = config.validation or ValidationConfig()
    updates: dict[str, Any] = {}
    st = config.stores.stations
    if not v.stations and st:
        updates["stations"] = (StationSourceConfig(path=f"{st.rstrip('/')}/insitu.csv", format="csv"),)
    if v.weather is None and st:
        weather = config.stores.ref("stations").join("weather.csv")
        if store.exists(weather):
            updates["weather"] = weather.url
    if v.out is None:
        updates["out"] = config.stores.primary().sibling("validation").url
    return v.model_copy(update=updates)



def station_observations(config: Config) -> pd.DataFrame:
    """Daily surface observations of the configured stations inside the region.

    The stations are ``validation.stations`` (or the twin's), read, filtered and averaged to
    UTC days as the validation does. Returns ``station, time, insitu, row, col`` (``station``
    is ``network/station``; row/col the 1 km pixel in the region); empty without stations.
    """
    cfg = stations_config(config)
    frames = [read_source(src, config.stores, f"validation.stations[{i}].columns")[0]
              for i, src in enumerate(cfg.stations)]
    frames = [f for f in frames if len(f)]
    cols = ["station", "time", "insitu", "row", "col"]
    if not frames:
        return pd.DataFrame({c: [] for c in cols})
    daily = station_daily(pd.concat(frames, ignore_index=True), cfg)
    if daily.empty:
        return pd.DataFrame({c: [] for c in cols})
    sites = locate(daily, config.grid_region)
    sites = sites.loc[sites["inside"]]
    out = daily.merge(sites.loc[:, ["network", "station", "row", "col"]], on=["network", "station"])
    out["station"] = out["network"].astype(str) + "/" + out["station"].astype(str)
    return out.loc[:, cols].reset_index(drop=True)


def weather_table(v: ValidationConfig, stores: StoresConfig | None = None) -> pd.DataFrame | None:
    """The weather-station table of ``v`` (``weather`` read with ``weather_columns``, under the
    fsspec options of ``stores``: ``config.stores``; default none), or None without one (or when
    its file does not exist).

    Raises
    ------
    InputError
        The file lacks a column (naming it and ``validation.weather_columns.<name>``) or is no CSV.
    """
    if not v.weather:
        return None
    try:
        return insitu.read_weather_csv(_located(v.weather, stores), columns=v.weather_columns, setting="validation.weather_columns")
    except FileNotFoundError:
        return None
    except insitu.InsituFormatError as exc:
        raise InputError(f"weather file {exc}") from None
