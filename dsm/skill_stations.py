"""In situ stations of the twin skill: reading the twin's ``insitu.csv``, placing stations on a
store's 1 km pixels, their daily observations, and the per-station temporal R of each map with
bootstrap intervals over the stations (see :mod:`dsm.skill`, "Stations").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dsm.errors import InputError
from dsm.grid import EASE2_1KM, lonlat_to_xy
from dsm.skill_sums import json_float
from dsm.storeref import StoreRef

MIN_STATION_DAYS = 10
"""Fewest common station-days a station needs for its R."""
CONFIDENCE = 0.95
"""Level of the station bootstrap intervals."""


def read_twin_stations(src: StoreRef) -> pd.DataFrame:
    """The twin's in situ table (``insitu.csv`` at ``src``: station, network, lon, lat, depth, time,
    value) as the frame :func:`dsm.skill.skill` takes: ``station, lon, lat, time`` (UTC day, naive) ``, sm``."""
    with src.open("r") as f:
        raw = pd.read_csv(f, dtype={"station": str})
    value = "sm" if "sm" in raw.columns else "value"
    missing = [c for c in ("station", "lon", "lat", "time", value) if c not in raw.columns]
    if missing:
        raise InputError(f"{src}: no column(s) {missing} "
                         "(a twin's insitu.csv has station, lon, lat, time and value or sm)")
    time = pd.to_datetime(raw["time"], format="ISO8601", utc=True).dt.tz_localize(None).dt.floor("D")
    return pd.DataFrame({"station": raw["station"], "lon": raw["lon"].astype(np.float64),
                         "lat": raw["lat"].astype(np.float64), "time": time,
                         "sm": pd.to_numeric(raw[value]).astype(np.float64)})


def station_pixels(lon: np.ndarray, lat: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column (-1 outside) in a store's 1 km ``y``/``x`` coordinates of the pixels
    holding the points ``lon``/``lat`` (EASE-Grid 2.0 1 km indices, offset by the store's first
    pixel)."""
    px, py = lonlat_to_xy(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    row, col = EASE2_1KM.index(px, py)
    row0, col0 = EASE2_1KM.index(np.array([x[0]]), np.array([y[0]]))
    row, col = row - row0[0], col - col0[0]
    outside = (row < 0) | (row >= len(y)) | (col < 0) | (col >= len(x))
    return np.where(outside, -1, row), np.where(outside, -1, col)


def station_obs(stations: pd.DataFrame, times: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per station (station, lon, lat) and its daily mean ``sm`` on ``times`` (days, stations)."""
    need = ("station", "lon", "lat", "time", "sm")
    missing = [c for c in need if c not in stations.columns]
    if missing:
        raise InputError(f"stations has no column(s) {missing}; need {list(need)}")
    st = stations.loc[:, list(need)].copy()
    t = pd.to_datetime(st["time"])
    if getattr(t.dt, "tz", None) is not None:
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
    st["time"] = t.dt.floor("D")
    st["station"] = st["station"].astype(str)
    sites = st.groupby("station", sort=True).agg(lon=("lon", "first"), lat=("lat", "first")).reset_index()
    daily = st.groupby(["time", "station"])["sm"].mean().unstack("station")
    daily = daily.reindex(index=pd.DatetimeIndex(times), columns=sites["station"])
    return sites, daily.to_numpy(np.float64)


def station_scores(series: Mapping[str, np.ndarray], obs: np.ndarray, sites: pd.DataFrame,
                   n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-station temporal R of each map against the station observations, and its summary.

    Parameters
    ----------
    series
        Map label -> its values at the stations' pixels, (days, stations).
    obs
        The stations' daily observations, (days, stations).
    sites
        One row per station (``station``, ``lon``, ``lat``, optional ``row``, ``col``), in the
        column order of ``obs``.
    n_boot, seed
        Bootstrap resamples of the stations (with replacement; the same for every map) and the seed.
    """
    labels = list(series)
    valid = np.isfinite(obs)
    for v in series.values():
        valid &= np.isfinite(v)
    n_days = valid.sum(axis=0)
    r = _station_r(series, obs, valid, n_days)
    scored = np.ones(obs.shape[1], bool)
    for k in labels:
        scored &= np.isfinite(r[k])
    idx = np.flatnonzero(scored)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, idx.size, size=(n_boot, idx.size)) if idx.size and n_boot > 0 else None
    maps = {k: _r_summary(r[k][idx], draws) for k in labels}
    table = []
    for j in range(obs.shape[1]):
        row = {"station": str(sites["station"].iloc[j]), "lon": json_float(sites["lon"].iloc[j]),
               "lat": json_float(sites["lat"].iloc[j])}
        for c in ("row", "col"):
            if c in sites.columns:
                row[c] = int(sites[c].iloc[j])
        row["n"] = int(n_days[j])
        row["scored"] = bool(scored[j])
        row.update({f"r_{k}": json_float(r[k][j]) for k in labels})
        table.append(row)
    return {"maps": maps, "table": table, "n_boot": int(n_boot), "seed": int(seed), "confidence": CONFIDENCE,
            "min_days": MIN_STATION_DAYS, "n_stations": int(idx.size),
            "note": "temporal Pearson R per station on the station-days where every map and the station have "
                    "values; median/mean over the stations where every map's R is defined, percentile "
                    "bootstrap intervals over stations"}


def _station_r(series: Mapping[str, np.ndarray], obs: np.ndarray, valid: np.ndarray, n_days: np.ndarray
               ) -> dict[str, np.ndarray]:
    """Map label -> the temporal R at each station with enough valid days (NaN elsewhere, and
    where the map or the station does not vary)."""
    r = {k: np.full(obs.shape[1], np.nan) for k in series}
    for j in np.flatnonzero(n_days >= MIN_STATION_DAYS):
        o = obs[valid[:, j], j]
        for k in series:
            m = series[k][valid[:, j], j]
            if o.std() > 1e-9 and m.std() > 1e-9:
                r[k][j] = float(np.corrcoef(m, o)[0, 1])
    return r


def _r_summary(v: np.ndarray, draws: np.ndarray | None) -> dict[str, Any]:
    """Median and mean of the scored stations' R ``v``, with their bootstrap intervals
    (``draws``: the resampled station indices, one row per resample)."""
    alpha = (1 - CONFIDENCE) / 2
    res: dict[str, Any] = {"n_stations": int(v.size), "station_r_median": None, "station_r_median_ci": None,
                           "station_r_mean": None, "station_r_mean_ci": None}
    if v.size:
        res["station_r_median"], res["station_r_mean"] = json_float(np.median(v)), json_float(v.mean())
        if draws is not None:
            boot = v[draws]
            for name, stat in (("median", np.median(boot, axis=1)), ("mean", boot.mean(axis=1))):
                lo, hi = np.quantile(stat, [alpha, 1 - alpha])
                res[f"station_r_{name}_ci"] = [json_float(lo), json_float(hi)]
    return res


__all__ = ["CONFIDENCE", "MIN_STATION_DAYS", "read_twin_stations", "station_obs", "station_pixels", "station_scores"]
