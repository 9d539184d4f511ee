"""In situ validation of the 1 km product, SMAP 36 km and other gridded products.

What :func:`validate` does
--------------------------
1. **Stations** (:mod:`dsm.stations`): reads every configured in situ source (ISMN "header +
   values" / CEOP files, folders or zips; the plain CSV ``station, lon, lat, depth, time, value``
   under any column names, ``validation.stations[*].columns``), keeps the surface layer (sensor
   bottom ``<= validation.max_depth``, default 0.05 m) and the accepted ISMN flags (default
   ``G``), makes UTC daily means per sensor and then per station (the mean of its surface
   sensors).
2. **Location**: each station's 1 km pixel (row, col in the region) and 36 km SMAP cell
   (``cy, cx``) on the EASE-Grid 2.0 grid.
3. **Sampling** (:mod:`dsm.station_sampling`): the daily 1 km product (``sm`` of the output
   store, only days recorded in ``days_done``) at the pixel, SMAP 36 km (``smap_sm`` of the
   cube) at the cell, and every other gridded product (NetCDF, GeoTIFF series or Zarr in any
   CRS) at the station lon/lat (nearest cell of that product's grid, after transforming lon/lat
   into its CRS; sub-daily values are averaged over UTC days).
4. **Scores** (:mod:`dsm.station_scores`, :mod:`dsm.metrics`): R, RMSE, ubRMSE, bias and n with
   percentile bootstrap confidence intervals, per site, per network, pooled over all sites
   (``all``) and the mean of the per-site scores (``site_mean``, no interval). Every product is
   scored twice: ``days="common"`` on the station-days where the in situ mean and **every**
   product with any overlap are valid (the fair comparison: all on the same days) and
   ``days="own"`` on all station-days that product and the in situ mean share.

Sign of the bias: ``validation.bias_convention``; the default ``reference_minus_product`` is the
paper's (in situ mean minus product mean: positive = product too dry). The convention is
written in every score row.

Bad input never stops the run; each is named in :attr:`ValidationResult.problems` (columns
``kind, name, problem``) and the rest is scored: a station file in an unknown format, a station
outside the region, a station without a sensor in the surface layer, a station or product
without any day overlapping the in situ days, a gridded product without a CRS (or that
cannot be read).

Station-pixel time series are exported for pytesmo and QA4SM by :func:`export_timeseries`
(see its docstring for the columns).

Outputs of :func:`write_validation` (folder ``validation.out``): ``pairs.csv``,
``scores.csv``, ``scores.json``, ``stations.csv``, ``problems.csv`` and, on the twin,
``skill_periods.csv``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from distributed import Client

from dsm import files
from dsm import skill as skill_mod
from dsm.config import Config, StationSourceConfig, StoresConfig, ValidationConfig
from dsm.errors import ConfigError, DsmError, InputError
from dsm.progress import Steps
from dsm.station_sampling import PRODUCT_1KM, SMAP_36KM, ProductError, open_gridded, sample_gridded, sample_store
from dsm.station_scores import (
    DAY_SETS,
    LEVELS,
    SCORE_COLUMNS,
    ValidationResult,
    common_mask,
    overlap_problems,
    pair_table,
    score_pairs,
)
from dsm.stations import INSITU, SITE_KEYS, Problems, locate, read_source, station_daily, stations_config, weather_table
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- orchestration


def period_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The ``periods`` rows of a twin skill (:func:`dsm.skill.skill` with ``periods``) as a table
    ``period, map, n, rmse, r, ubrmse, bias, cell_r`` (``period`` ``all`` for the whole run)."""
    return pd.DataFrame(list(rows), columns=["period", "map", "n", "rmse", "r", "ubrmse", "bias", "cell_r"])


TwinScores = Mapping[str, Any] | Future[dict[str, Any]] | Callable[[], Future[dict[str, Any]]]
"""The twin skill (:func:`dsm.skill.twin_skill_of`); or a :class:`concurrent.futures.Future` of it
still being computed, waited for only when its per-period table is needed; or a function that
starts computing it and returns that future, called once the stations are sampled (so their
few reads are not queued behind the skill's tasks on the cluster)."""


def validate(config: Config, client: Client | None,
             progress: Callable[[str], None] | None = None,
             twin: TwinScores | None = None) -> ValidationResult:
    """Validate the configured products against the configured stations (see the module doc).

    Parameters
    ----------
    config : Config
        ``stores.output`` (the products store), ``stores.cube`` (SMAP) and ``validation``.
    client : distributed.Client or None
        Store reads run on its workers.
    progress : callable, optional
        Called with one :class:`~dsm.progress.Step` (task ``validate``) per station source read,
        per product sampled, for the scores and per twin period scored.
    twin : mapping, concurrent.futures.Future or callable, optional
        The twin skill of ``config`` (:func:`dsm.skill.twin_skill_of`), the future of one being
        computed beside this (awaited after the stations are scored), or a function starting
        one (:data:`TwinScores`): its ``periods`` are the per-period table, and the truth is
        not read again here. Without it,
        on the twin, the product's skill is computed here (:func:`dsm.skill.skill`, on
        ``client``'s workers when given) for that table.

    Returns
    -------
    ValidationResult

    Raises
    ------
    ConfigError
        Without ``stores.output`` or without any station source.
    """
    v = stations_config(config)
    if not config.stores.output:
        raise ConfigError("stores.output must be set to validate (the products store of dsm predict)")
    if not v.stations:
        raise ConfigError("no station source: set validation.stations (or stores.stations for the twin)")
    problems = Problems()
    steps = Steps(progress or log.info, "validate", len(v.stations) + 2 + len(v.products), "step")
    steps.start()
    records = _read_records(v.stations, config.stores, problems, steps)
    region = config.grid_region
    located = locate(records, region, problems)
    inside = located.loc[located["inside"], list(SITE_KEYS)]
    daily = station_daily(records, v, problems).merge(inside, on=list(SITE_KEYS))
    sites = located.loc[located["inside"]].merge(daily[list(SITE_KEYS)].drop_duplicates(), on=list(SITE_KEYS))
    sites = sites.reset_index(drop=True)
    samples = []
    product_names = [PRODUCT_1KM, SMAP_36KM]
    if len(sites):
        samples.append(sample_store(sites, config.stores.ref("output"), config.stores.ref("cube"), client))
    steps.step(f"sampled {PRODUCT_1KM} and {SMAP_36KM} at {len(sites)} stations")
    if callable(twin):
        twin = twin()
    for p in v.products:
        try:
            da = open_gridded(p)
            if len(sites):
                samples.append(sample_gridded(da, p, sites, problems))
            product_names.append(p.name)
        except ProductError as exc:
            problems.add("product", p.name, str(exc))
        steps.step(f"sampled {p.name}")
    pairs = pair_table(daily, samples)
    for name in product_names:
        if name not in pairs.columns:
            pairs[name] = np.nan
    usable = overlap_problems(pairs, product_names, problems, v.min_n) if len(pairs) else []
    scores = _score_stations(pairs, usable, v, client)
    steps.step(f"scored {len(usable)} product(s) at {len(sites)} stations")
    n_days = pairs.groupby(list(SITE_KEYS)).size().rename("n_days").reset_index()
    stations = located.merge(n_days, on=list(SITE_KEYS), how="left").fillna({"n_days": 0})
    stations["status"] = np.where(~stations["inside"], "outside region",
                                  np.where(stations["n_days"] > 0, "scored", "no days"))
    ps = _period_table(config, client, twin, problems, steps)
    return ValidationResult(stations.drop(columns=["inside"]), pairs, scores, problems.frame(), product_names, ps)


def _score_stations(pairs: pd.DataFrame, products: Sequence[str], v: ValidationConfig,
                    client: Client | None) -> pd.DataFrame:
    """:func:`dsm.station_scores.score_pairs` of ``products`` (their bootstrap intervals are most
    of the stage's arithmetic: a pooled level resamples every station-day), on ``client``'s
    workers when given: one task per product, day set and level, ahead of the tasks queued before
    them (the twin skill), the table the same as made here."""
    if client is None or not products:
        return score_pairs(pairs, products, boot=v.bootstrap, bias_convention=v.bias_convention, min_n=v.min_n)
    shared = client.scatter(pairs, hash=False)
    futures = [client.submit(score_pairs, shared, [name], boot=v.bootstrap, bias_convention=v.bias_convention,
                             min_n=v.min_n, common_products=products, days=(which,), levels=(level,), pure=False,
                             priority=1)
               for name in products for which in DAY_SETS for level in LEVELS]
    try:
        return pd.concat(client.gather(futures), ignore_index=True)
    finally:
        client.cancel([*futures, shared])


def _period_table(config: Config, client: Client | None, twin: Mapping[str, Any] | Future[dict[str, Any]] | None,
                  problems: Problems, steps: Steps) -> pd.DataFrame | None:
    """The twin's per-period skill table: from ``twin`` (awaited if still computing), else
    computed here on the twin; None off the twin."""
    scores: Mapping[str, Any] | None = twin.result() if isinstance(twin, Future) else twin
    ps: pd.DataFrame | None = None
    if scores is not None and scores.get("periods") is not None:
        ps = period_frame(scores["periods"])
        steps.grow(1)
        steps.step(f"twin skill per period: {ps['period'].nunique() - 1} period(s) from the twin skill")
        return ps
    if not config.stores.truth:
        return None
    try:
        ps = period_frame(skill_mod.skill(config.stores.ref("output"), config.stores.ref("truth"),
                                          config.stores.ref("cube"), client=client, periods=True)["periods"])
    except DsmError as exc:
        problems.add("twin", config.stores.truth, str(exc))
    steps.grow(1)
    steps.step(f"twin skill per period against {config.stores.truth}")
    return ps


def _read_records(sources: Sequence[StationSourceConfig], stores: StoresConfig, problems: Problems,
                  steps: Steps) -> pd.DataFrame:
    """The in situ records of every station source (read under the options of ``stores``;
    unreadable files in ``problems``), one progress step per source.

    Raises
    ------
    InputError
        No record could be read.
    """
    frames = []
    for i, src in enumerate(sources):
        data, failures = read_source(src, stores, f"validation.stations[{i}].columns")
        for path, why in failures.items():
            problems.add("station_file", path, why)
        frames.append(data)
        steps.step(f"station source {i}: {len(data)} records")
    frames = [f for f in frames if len(f)]
    if not frames:
        why = "; ".join(f"{r['name']}: {r['problem']}" for r in problems.rows if r["kind"] == "station_file")
        raise InputError(f"no in situ record could be read ({why or 'the station sources hold no records'})")
    records = pd.concat(frames, ignore_index=True)
    return records.assign(network=records["network"].fillna("-"))


def write_validation(result: ValidationResult, out: StoreRef) -> dict[str, str]:
    """Write the tables of a validation as CSV (and the scores also as JSON) in the folder ``out``.

    Returns
    -------
    dict of str to str
        Table name -> URL written.
    """
    fs, root = out.fs()
    files.make_folder(fs, root)
    written = {}
    tables = {"pairs": result.pairs, "scores": result.scores, "stations": result.stations,
              "problems": result.problems}
    if result.period_skill is not None:
        tables["skill_periods"] = result.period_skill
    for name, table in tables.items():
        written[name] = files.write_url(out.join(f"{name}.csv"), table.to_csv(index=False, date_format="%Y-%m-%d"))
    records = json.loads(result.scores.to_json(orient="records"))
    written["scores_json"] = files.write_url(out.join("scores.json"), json.dumps(
        {"bias_convention": result.scores["bias_convention"].iloc[0] if len(result.scores) else None,
         "products": result.products, "scores": records}, indent=1))
    return written


def export_timeseries(pairs: pd.DataFrame, stations: pd.DataFrame, out: StoreRef, *, dataset: str = "dsm",
                      units: str = "m3 m-3", depth: float | None = None) -> dict[str, Any]:
    """Station-pixel time series as CSV files that pytesmo and QA4SM read.

    Layout (QA4SM "user data upload: time series" convention)::

        OUT/<dataset>_gpi=<GPI>_lat=<LAT>_lon=<LON>.csv   one file per station
        OUT/metadata.yml                                  long_name and units of every column
        OUT/stations.csv                                  gpi -> network, station, lon, lat, pixel, cell
        OUT/<dataset>_timeseries.zip                      all of the above, ready to upload

    Each station CSV has a header row and the date as its first (index) column; read it with
    ``pandas.read_csv(path, index_col=0, parse_dates=True)`` (pytesmo's readers do the same).
    Columns: ``time`` (UTC day, ISO date), ``insitu`` (station daily mean of the surface
    sensors), ``sm_1km`` (the 1 km product at the station's pixel), ``smap_36km`` (SMAP at its
    36 km cell) and one column per other configured product; all m3/m3, empty where missing.
    ``GPI`` is the station's 0-based position in ``stations.csv``; LAT/LON the station's
    coordinates (degrees, WGS 84, 6 decimals).

    ``out`` is a local folder or an fsspec URL (``s3://...``, with its options): remote files
    are written to a temporary folder, then uploaded.

    Returns
    -------
    dict
        ``{"files": [...], "zip": path, "metadata": path, "stations": path}`` (under ``out``).
    """
    if out.is_local:
        return _write_timeseries(pairs, stations, Path(out.local_path), dataset, units, depth)
    fs, base = out.fs()
    with tempfile.TemporaryDirectory(prefix="dsm-timeseries-") as tmp:
        local = _write_timeseries(pairs, stations, Path(tmp), dataset, units, depth)
        files.make_folder(fs, base)
        for name in sorted(os.listdir(tmp)):
            files.put_file(fs, os.path.join(tmp, name), f"{base}/{name}")
    url = out.url.rstrip("/")
    return {"files": [f"{url}/{os.path.basename(f)}" for f in local["files"]],
            **{k: f"{url}/{os.path.basename(local[k])}" for k in ("zip", "metadata", "stations")}}


def _write_timeseries(pairs: pd.DataFrame, stations: pd.DataFrame, root: Path, dataset: str, units: str,
                      depth: float | None) -> dict[str, Any]:
    """:func:`export_timeseries` into the local folder ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    value_cols = [c for c in pairs.columns if c not in (*SITE_KEYS, "time")]
    sites = stations.loc[stations["status"] == "scored"].reset_index(drop=True) if "status" in stations else stations
    sites = sites.reset_index(drop=True)
    sites.insert(0, "gpi", np.arange(len(sites)))
    if depth is not None:
        sites["depth_max_m"] = depth
    files = []
    for _, s in sites.iterrows():
        sub = pairs.loc[(pairs["network"] == s["network"]) & (pairs["station"] == s["station"]),
                        ["time", *value_cols]]
        name = f"{dataset}_gpi={s.gpi}_lat={s.lat:.6f}_lon={s.lon:.6f}.csv"
        sub.to_csv(root / name, index=False, date_format="%Y-%m-%d", float_format="%.5f")
        files.append(str(root / name))
    long_names = {INSITU: "in situ daily mean, surface sensors", PRODUCT_1KM: "dsm 1 km soil moisture at the pixel",
                  SMAP_36KM: "SMAP L3 36 km soil moisture at the cell"}
    meta = {c: {"long_name": long_names.get(c, f"{c} at the station"), "units": units} for c in value_cols}
    (root / "metadata.yml").write_text(yaml.safe_dump(meta, sort_keys=False))
    sites.to_csv(root / "stations.csv", index=False)
    zpath = root / f"{dataset}_timeseries.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for f in [*files, str(root / "metadata.yml"), str(root / "stations.csv")]:
            z.write(f, os.path.basename(f))
    return {"files": files, "zip": str(zpath), "metadata": str(root / "metadata.yml"),
            "stations": str(root / "stations.csv")}


def run_validate(config: Config, client: Client | None,
                 progress: Callable[[str], None] | None = None,
                 twin: TwinScores | None = None) -> tuple[ValidationResult, dict[str, str]]:
    """:func:`validate` (``progress`` and ``twin`` as there), then write its tables and the
    station time series under ``validation.out``."""
    v = stations_config(config)
    result = validate(config, client, progress, twin)
    out = config.stores.at(str(v.out))
    written = write_validation(result, out)
    ts = export_timeseries(result.pairs, result.stations, out.join("timeseries"), depth=v.max_depth)
    written["timeseries_zip"] = ts["zip"]
    return result, written


def format_scores(scores: pd.DataFrame, days: str = "common") -> str:
    """The ``all`` and ``site_mean`` rows of each product as a text table."""
    sub = scores.loc[(scores["days"] == days) & scores["level"].isin(["all", "site_mean"])]
    cols = ["product", "level", "n", "r", "r_lo", "r_hi", "rmse", "ubrmse", "bias", "bias_lo", "bias_hi"]
    buf = io.StringIO()
    sub.loc[:, cols].to_string(buf, index=False, float_format=lambda v: f"{v:.4f}")
    return buf.getvalue()


def problem_lines(problems: pd.DataFrame) -> Iterable[str]:
    """One line per problem: ``kind name: problem``."""
    for _, p in problems.iterrows():
        yield f"{p['kind']} {p['name']}: {p['problem']}"


__all__ = [
    "INSITU", "PRODUCT_1KM", "SMAP_36KM", "SCORE_COLUMNS", "ProductError", "ValidationResult",
    "read_source", "station_daily", "locate", "sample_store", "open_gridded", "sample_gridded",
    "pair_table", "common_mask", "score_pairs", "overlap_problems", "period_frame", "stations_config",
    "TwinScores", "validate", "write_validation", "export_timeseries", "run_validate", "format_scores", "problem_lines",
    "weather_table",
]
