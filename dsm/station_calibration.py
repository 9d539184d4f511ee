"""The fusion map's settings calibrated at the in situ stations, on the client (predict stage).

The map is ``sm = B + k a`` with interval ``z sqrt(var_cell + s^2)`` (:mod:`dsm.cellmeans`).
Before the first block is written, :func:`calibrate_at_stations` computes ``B``, ``a`` and
``var_cell`` at the station pixels on every day a station observed (one
:func:`dsm.blocks.station_parts` task per station cell and up to :data:`STATION_TASK_DAYS` days
holding observations, :func:`observed_spans`, submitted longest first,
:func:`dsm.task_order.longest_first`: the blocks' own code, writing nothing), then calibrates
the gain ``k`` (:func:`dsm.calibration.calibrate_gain`) and, on the residuals of the map with
that gain, the within-cell error sd ``s`` (:func:`dsm.calibration.calibrate_anomaly_sd`).
With too few stations, or with the calibration switched off, the configured values are used. A
products store keeps the values it was started with, so a resumed run writes the same bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import pandas as pd
from distributed import Client

from dsm.blocks import BlockJob, station_parts
from dsm.calibration import GainCalibration, IntervalCalibration, calibrate_anomaly_sd, calibrate_gain
from dsm.config import Config
from dsm.cube import Layout
from dsm.stations import station_observations
from dsm.task_order import longest_first

__all__ = ["GAIN_ATTR", "UNC_ATTR", "calibrate_at_stations", "calibrated", "observed_spans", "station_table"]

GAIN_ATTR = "anomaly_gain"  # products attribute: the store's GainCalibration
UNC_ATTR = "anomaly_error"  # products attribute: the store's IntervalCalibration

JobsFor = Callable[[int, int, int, int], BlockJob]

#: Days of one station task (rounded down to whole time chunks). A task reads one SMAP cell of
#: the cube, so a long span costs little memory, and it decodes each cube chunk it touches once
#: instead of once per time chunk of the run (a cube chunk holds many cells).
STATION_TASK_DAYS = 256


def observed_spans(days: Iterable[int], n_days: int, chunk: int, span: int) -> list[tuple[int, int]]:
    """The day ranges ``[t0, t1)`` of a station cell's tasks: the whole time chunks (of ``chunk``
    days) of the run's ``n_days`` that hold one of the observed ``days``, consecutive ones
    joined up to ``span`` days. Days nobody observed (frozen soil, a station's gaps) are not
    modelled: only station-days with an observation calibrate."""
    out: list[tuple[int, int]] = []
    for c in sorted({d // chunk for d in days if 0 <= d < n_days}):
        t0, t1 = c * chunk, min((c + 1) * chunk, n_days)
        if out and out[-1][1] == t0 and t1 - out[-1][0] <= span:
            out[-1] = (out[-1][0], t1)
        else:
            out.append((t0, t1))
    return out


def calibrated(stored: Mapping[str, Any]) -> bool:
    """Whether a products store's records ``stored`` hold its calibration (then kept: no station
    is modelled again, and a run needs the fused cell means of the days it predicts only)."""
    return bool(stored.get(GAIN_ATTR))


def station_table(config: Config, client: Client, jobs_for: JobsFor, n_days: int, obs: pd.DataFrame) -> pd.DataFrame:
    """The map's parts at the stations of ``obs`` (:func:`dsm.stations.station_observations`):
    one row per station-day with ``station, time, base, anomaly, var_cell, insitu``.

    ``jobs_for(t0, t1, row, col)`` is the block job of the SMAP cell holding pixel
    ``(row, col)`` over days ``t0:t1`` of the run.
    """
    f = config.grid_region.fine_per_coarse
    sites = obs.drop_duplicates("station").loc[:, ["station", "row", "col"]]
    tchunk = Layout.from_config(config).time_chunk
    span = tchunk * max(1, STATION_TASK_DAYS // tchunk)
    day_of = (pd.DatetimeIndex(obs["time"]).normalize() - pd.Timestamp(config.dates.start)).days
    observed = pd.Series(day_of, index=obs.index).groupby(obs["station"]).unique()
    tasks: list[tuple[BlockJob, list[tuple[int, int]], tuple[str, ...]]] = []  # in the table's order
    for key, group in sites.groupby([sites["row"] // f, sites["col"] // f]):
        cy, cx = (int(k) for k in cast(tuple[int, int], key))  # grouped by two columns
        pixels = [(int(r) - cy * f, int(c) - cx * f) for r, c in zip(group["row"], group["col"], strict=True)]
        seen = {int(d) for s in group["station"] for d in observed[s]}
        tasks += [(jobs_for(t0, t1, cy * f, cx * f), pixels, tuple(group["station"]))
                  for t0, t1 in observed_spans(seen, n_days, tchunk, span)]
    futures = {i: client.submit(station_parts, tasks[i][0], tasks[i][1], pure=False)
               for i in longest_first([job.t1 - job.t0 for job, _, _ in tasks])}
    frames = []
    for i, (job, _, names) in enumerate(tasks):
        parts = futures[i].result()
        days = pd.DatetimeIndex([config.dates.start + dt.timedelta(days=job.t0 + k) for k in range(parts["base"].shape[0])])
        for j, name in enumerate(names):
            frames.append(pd.DataFrame({"station": name, "time": days, **{k: v[:, j] for k, v in parts.items()}}))
    return pd.concat(frames, ignore_index=True).merge(obs.loc[:, ["station", "time", "insitu"]],
                                                      on=["station", "time"], how="inner")


def calibrate_at_stations(config: Config, client: Client, jobs_for: JobsFor, n_days: int,
                          stored: Mapping[str, Any], configured_sd: float
                          ) -> tuple[GainCalibration, IntervalCalibration]:
    """The gain ``k`` and the within-cell error sd ``s`` of this products store (module
    docstring).

    Parameters
    ----------
    stored
        The store's attributes: values recorded under :data:`GAIN_ATTR` / :data:`UNC_ATTR` are
        kept. A store that recorded a gain but no sd was started before ``s`` was calibrated
        and keeps ``configured_sd``.
    configured_sd
        ``training.fusion.anomaly_error_sd`` as the fusion model was trained with (its card).
    """
    fcfg = config.training.fusion
    nominal = config.output.interval
    if calibrated(stored):  # a resumed store keeps what it was started with (both are written together)
        unc = (IntervalCalibration.from_dict(dict(stored[UNC_ATTR])) if stored.get(UNC_ATTR) else
               IntervalCalibration(configured_sd, "configured", configured_sd,
                                   "the store was started before sm_unc was calibrated at stations", nominal))
        return GainCalibration.from_dict(dict(stored[GAIN_ATTR])), unc

    def configured_gain(why: str, n: int = 0) -> GainCalibration:
        return GainCalibration(fcfg.anomaly_gain, "configured", fcfg.anomaly_gain, why, n_stations=n)

    def configured_unc(why: str, n: int = 0) -> IntervalCalibration:
        return IntervalCalibration(configured_sd, "configured", configured_sd, why, nominal, n_stations=n)

    calibrate_unc = fcfg.interval_from_stations and config.output.uncertainty != "none"
    if not (fcfg.gain_from_stations or calibrate_unc):
        why = "training.fusion.gain_from_stations and interval_from_stations are off"
        return configured_gain(why), configured_unc(why)
    obs = station_observations(config)
    n_sites = obs["station"].nunique() if len(obs) else 0
    if n_sites < fcfg.min_gain_stations:
        why = (f"{n_sites} in situ stations in the region, fewer than training.fusion.min_gain_stations "
               f"= {fcfg.min_gain_stations}")
        return configured_gain(why, n_sites), configured_unc(why, n_sites)
    table = station_table(config, client, jobs_for, n_days, obs)
    gain = (calibrate_gain(table["station"], table["insitu"], table["base"], table["anomaly"],
                           configured=fcfg.anomaly_gain, min_stations=fcfg.min_gain_stations, seed=config.training.seed)
            if fcfg.gain_from_stations else configured_gain("training.fusion.gain_from_stations is off"))
    if not calibrate_unc:
        return gain, configured_unc("training.fusion.interval_from_stations is off (or output.uncertainty: none)")
    residual = table["insitu"] - (table["base"] + gain.gain * table["anomaly"])
    return gain, calibrate_anomaly_sd(table["station"], residual, table["var_cell"], nominal=nominal,
                                      configured=configured_sd, min_stations=fcfg.min_gain_stations,
                                      seed=config.training.seed, offsets=fcfg.interval_station_offsets)
