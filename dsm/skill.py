"""Skill of 1 km products on the twin region, against its known 1 km truth.

:func:`skill` judges one or more 1 km products (``maps``: label -> products store) against two
maps without downscaling, on the same pixel-days, streaming one time chunk at a time (memory:
one time chunk of every map plus a few float64 layers per map and pixel, and between the passes
the chunks kept for the second, within ``keep_bytes``). Each chunk is read and
scored by :mod:`dsm.skill_chunks` into sums that merge (:mod:`dsm.skill_sums`): in this process,
or with a Dask ``client`` as one task per chunk on the workers, where each chunk's sums are
folded into those before it, in time order (:mod:`dsm.skill_workers`; the same result, bit for
bit): only each pass's total comes to the client. The second pass (the anomalies from the
pixels' time means) scores the arrays the first one kept where it read them, within a memory
budget (``keep_bytes``), so the stores are read once; what was not kept is read again. With
``periods``, the same pass also scores the first map per 16-day period (the table of
:func:`dsm.stages.validate.validate` and the report), so the validate stage reads the truth in this
one pass only.

Maps
----
``<label>``         each product's ``sm``
``smap_repeat``     SMAP 36 km repeated on its 1 km pixels (constant in a cell: its within-cell
                    correlations are undefined)
``smap_bilinear``   SMAP bilinearly interpolated between cell centres to 1 km

Pixel-days
----------
The **common pixel-days**: days in every product's ``days_done``; land pixels where the truth,
EVERY product's ``sm`` and both SMAP baselines (i.e. SMAP in the pixel's own cell that day)
are finite. Every map in ``scores[<label>]``, ``scores["smap_repeat"]`` and
``scores["smap_bilinear"]`` is scored on exactly these. ``scores["<label>_all"]`` scores a
product on all its own pixel-days (land, truth and its ``sm`` finite, SMAP or not).

Scores (JSON floats; None when undefined)
-----------------------------------------
``n, rmse, r, ubrmse, bias``  over the pixel-days (bias = map - truth).
``cell_r``          mean over (36 km cell, day) of the Pearson R between map and truth across the
                    cell's pixels (cells with >= :data:`~dsm.skill_sums.MIN_CELL_PIXELS` pixels, both non-constant).
``rmse_cell_mean``  RMSE over (cell, day) of the map's cell mean minus the truth's cell mean, the
                    means taken over the cell-day's pixels (cells with >= MIN_CELL_PIXELS pixels),
                    each cell-day counted once.
``rmse_anomaly``    RMSE over the pixels of those cell-days of the within-cell anomaly error
                    ``(map - map cell mean) - (truth - truth cell mean)``.
                    Since the squared error of a cell-day splits exactly into
                    ``n_c * e_c**2 + sum(anomaly error**2)``, ``rmse**2 == (sum_c n_c e_c**2 +
                    sum anomaly**2) / n`` on the qualifying cell-days; ``rmse_cell_mean`` weighs
                    cell-days equally instead of by their pixel count ``n_c``, so
                    ``rmse**2 ~ rmse_cell_mean**2 + rmse_anomaly**2`` holds only up to that
                    weighting (exactly when every cell-day has the same number of pixels, and
                    leaving out the pixels of cells below the threshold).
``temporal_r_median``, ``temporal_r_mean``, ``temporal_r_pixels``
                    per-pixel temporal Pearson R between map and truth over the pixel's days (in
                    the scored set), for pixels with >= :data:`~dsm.skill_sums.MIN_PIXEL_DAYS` days where neither
                    series is constant; median and mean over those pixels and their count (a map
                    constant in time at a pixel leaves the pixel out).
``anomaly_cell_r``  ``cell_r`` of daily anomalies: map minus its own per-pixel time mean vs truth
                    minus its per-pixel time mean (means over the pixel's days in the scored set,
                    pixels with >= MIN_PIXEL_DAYS days); a second pass over the time chunks
                    (``passes`` of the result: the chunks, and how many the second pass read
                    again).
``seasons``         {"DJF"|"MAM"|"JJA"|"SON": {n, rmse, cell_r}} for the seasons present.
``smap_days``       {n, rmse, temporal_r_median} on the pixel-days where SMAP observed the
                    pixel's cell: for the common scores these are exactly the common pixel-days
                    (the same n and rmse as the headline); for ``<label>_all`` the product's own
                    pixel-days with SMAP.
``other_days``      the same on the pixel-days WITHOUT a SMAP observation of the pixel's cell.
                    The common pixel-days never hold such a day (the baselines have no value
                    there), so for a product (``<label>`` and ``<label>_all`` alike) it is scored
                    over the product's OWN pixel-days (land, truth and its ``sm`` finite) where
                    SMAP is missing: not a common set, the products are not compared on the same
                    pixel-days there. The SMAP baselines get None.

Coverage
--------
``coverage[<label>]``: the fraction of the product's own pixel-days (``sm_unc`` finite too) whose
truth lies within ``sm +- sm_unc`` (``nominal``: the ``sm_unc`` attribute ``interval``), and
``by_origin``: the same over the pixel-days with each bit of ``sm_origin`` (its ``flag_masks``,
keyed by its ``flag_meanings``) set.

Stations
--------
With ``stations`` (columns station, lon, lat, time, sm; :func:`~dsm.skill_stations.read_twin_stations` reads the
twin's ``insitu.csv``), every map is sampled at each station's 1 km pixel and its temporal
Pearson R with the station's daily observations computed on the station-days where ALL maps
(products and both baselines, so SMAP days only) and the station have values (>=
:data:`~dsm.skill_stations.MIN_STATION_DAYS` days). Per map: median and mean of R over the stations where every map's
R is defined, with percentile bootstrap intervals (``n_boot`` resamples of those stations with
replacement, the same resamples for every map, ``seed``), and the per-station table. Under
``all_days``, each product's own summary on all its station-days, SMAP or not (the baselines
exist on SMAP days only).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from dsm import files, ledger, products, store
from dsm import skill_chunks as chunks_mod
from dsm.config import Config
from dsm.cube import open_cube
from dsm.errors import ConfigError, StoreError
from dsm.grid import FINE_PER_COARSE, Region, repeat_to_fine
from dsm.grid import bilinear as grid_bilinear
from dsm.skill_stations import (
    CONFIDENCE,
    MIN_STATION_DAYS,
    read_twin_stations,
    station_obs,
    station_pixels,
    station_scores,
)
from dsm.skill_sums import MIN_CELL_PIXELS, MIN_PIXEL_DAYS, SEASONS, CoverageSums
from dsm.skill_table import format_table
from dsm.storeref import StoreRef

if TYPE_CHECKING:  # the pure core imports no distributed: dsm.skill_workers does, when a client is given
    from distributed import Client

BASELINES = chunks_mod.BASELINES


def bilinear(coarse: np.ndarray, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """SMAP bilinearly interpolated to 1 km (:func:`dsm.grid.bilinear`; ``factor`` pixels per
    cell side), float32."""
    return grid_bilinear(coarse, factor).astype(np.float32)


def repeat(coarse: np.ndarray, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """SMAP repeated on its 1 km pixels (:func:`dsm.grid.repeat_to_fine`, ``factor`` a side)."""
    return repeat_to_fine(coarse, factor)

def skill(maps: Mapping[str, StoreRef] | StoreRef, truth: StoreRef, cube: StoreRef, *,
          stations: pd.DataFrame | None = None, n_boot: int = 1000, seed: int = 0,
          client: Client | None = None, periods: bool = False, keep_bytes: int | None = None) -> dict[str, Any]:
    """The twin skill summary of one or more 1 km products (see the module docstring).

    Parameters
    ----------
    maps
        Label -> products store; a single store ``ref`` is ``{"product": ref}``.
    truth, cube
        The twin's truth store (``sm_true``) and predictor cube (``land_mask``, ``smap_sm``).
    stations
        Optional in situ observations (station, lon, lat, time, sm), e.g.
        :func:`~dsm.skill_stations.read_twin_stations`.
    n_boot, seed
        Station bootstrap resamples and seed.
    client
        With a Dask client, each time chunk is read and scored by a task on its workers (the
        stores read there by their :class:`~dsm.storeref.StoreRef`), in two rounds (the anomalies need the
        pixels' time means of the first); the workers fold the chunks' sums in time order and
        send the client each pass's total, so the result is the same as without a client, bit
        for bit.
    periods
        Also score the first map and the baselines per 16-day period (``periods`` of the result).
    keep_bytes
        Bytes of the first pass's arrays each process (this one, or each worker) may keep for the
        second; default :data:`~dsm.skill_chunks.KEEP_SHARE` of its memory (a worker's memory limit, else the
        memory available here); 0 reads every chunk again.

    Returns
    -------
    dict
        ``maps`` (labels), ``days``, ``scores`` (label, ``smap_repeat``, ``smap_bilinear``,
        ``<label>_all``), ``coverage`` (label), ``stations`` (or None), ``passes`` (``chunks``,
        ``read_again``: the chunks the second pass read again), ``note`` and with
        ``periods`` the rows ``period, map, n, rmse, r, ubrmse, bias, cell_r`` (map ``product``:
        the first map; ``period`` ``all``: every day) on the first map's own pixel-days with SMAP
        (the common pixel-days when it is the only map).
    """
    refs = {"product": maps} if isinstance(maps, StoreRef) else dict(maps)
    labels = _labels(refs)
    outs = {k: products.open_products(ref) for k, ref in refs.items()}
    grid = open_cube(cube, chunks=None)  # the land mask: read here, without tasks
    store.open_store(truth, "truth")  # named here when missing (read by the chunk tasks)
    done = [set(ledger.read(refs[k], o.attrs).done) for k, o in outs.items()]
    days = sorted(set.intersection(*done))
    if not days:
        raise StoreError(f"no day is predicted in every one of {[str(r) for r in refs.values()]} (run dsm predict)")
    times = np.array(days, dtype="datetime64[ns]")
    land = grid["land_mask"].values == 1
    _check_shapes(outs, refs, land.shape)
    sites = obs = None
    outside: list[str] = []
    if stations is not None:
        sites, obs, outside = _stations_on_grid(stations, times, grid)
    if client is not None:
        from dsm.skill_workers import keep_budget, on_workers  # noqa: PLC0415 - distributed stays out of the pure core

        budget, runner = keep_budget(client) if keep_bytes is None else keep_bytes, on_workers(client)
    else:
        budget, runner = _keep_budget_here() if keep_bytes is None else keep_bytes, _in_process
    job = chunks_mod.SkillJob(
        refs, truth, cube, land, Region.from_dict(grid.attrs["region"]).fine_per_coarse,
        {k: CoverageSums(outs[k]) for k in labels},
        None if sites is None else sites["row"].to_numpy(), None if sites is None else sites["col"].to_numpy(),
        periods, int(budget))
    step = int(outs[labels[0]]["sm"].encoding.get("chunks", (8,))[0])
    chunks = [times[i:i + step] for i in range(0, len(times), step)]
    sums = chunks_mod.empty_sums(job, land.shape)
    anomalies = chunks_mod.Anomalies()
    with runner(job) as run:
        for part in run(chunks_mod.pass1, [(t,) for t in chunks]):  # pass 1
            sums.merge(part)
        common, own = sums.common, sums.own
        means = ({k: v.pix.means() for k, v in common.items()}, {k: v.pix.means() for k, v in own.items()})
        for anom in run(chunks_mod.pass2, [(t, *means) for t in chunks]):  # pass 2
            anomalies.merge(anom)
    for k, a in anomalies.common.items():
        common[k].anom.merge(a)
    for k, a in anomalies.own.items():
        own[k].anom.merge(a)
    names = job.names
    scores = {k: common[k].result() for k in names}
    for k in labels:
        scores[f"{k}_all"] = own[k].result()
        scores[k]["other_days"] = dict(scores[f"{k}_all"]["other_days"])  # the same pixel-days (see the module doc)
    st = None
    if sums.series is not None and obs is not None and sites is not None:
        series = {k: sums.series[k].astype(np.float64) for k in names}
        st = {**station_scores(series, obs, sites, n_boot, seed), "outside": outside,
              "all_days": {k: station_scores({k: series[k]}, obs, sites, n_boot, seed)["maps"][k] for k in labels}}
    out = {"maps": labels, "days": len(days), "scores": scores,
           "coverage": {k: sums.cover[k].result() for k in labels}, "stations": st,
           "passes": {"chunks": len(chunks), "read_again": anomalies.read_again},
           "note": "common pixel-days: land, truth, every product and SMAP (repeat and bilinear) all valid on "
                   "the days every product predicted; <label>_all: each product on all its own pixel-days; "
                   "smap_repeat has no within-cell variation (cell_r undefined); other_days: a product on its "
                   "own pixel-days without SMAP (not common to the maps; None for the baselines); "
                   "rmse**2 ~ rmse_cell_mean**2 + rmse_anomaly**2 up to the weighting of cell-days by their "
                   "pixel counts; coverage over each product's own pixel-days"}
    if periods:
        out["periods"] = chunks_mod.period_rows(sums.periods)
    return out


@contextmanager
def _in_process(job: chunks_mod.SkillJob) -> Iterator[chunks_mod.Runner]:
    """A :data:`~dsm.skill_chunks.Runner` of ``job`` here: the chunk functions one after another
    (on the job's stores, opened once; what pass 1 keeps stays in this process for pass 2)."""

    def run(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> Iterator[Any]:
        for a in args:
            yield fn(job, *a)

    try:
        yield run
    finally:
        job.release()


def _keep_budget_here() -> int:
    """:data:`~dsm.skill_chunks.KEEP_SHARE` of the memory available to this process now."""
    import psutil  # noqa: PLC0415 - only for the default budget

    return chunks_mod.keep_share(0, psutil.virtual_memory().available)


def _labels(refs: Mapping[str, StoreRef]) -> list[str]:
    """The map labels, refused when none or when one clashes with a baseline's or another's ``_all``."""
    if not refs:
        raise ConfigError("no product to score: name at least one products store")
    labels = list(refs)
    clash = [k for k in labels if k in BASELINES or k.endswith("_all") and k[:-4] in labels]
    if clash:
        raise ConfigError(f"map label(s) {clash} clash with {list(BASELINES)} or another label's _all scores")
    return labels


def _check_shapes(outs: Mapping[str, xr.Dataset], refs: Mapping[str, StoreRef], shape: tuple[int, ...]) -> None:
    for k, o in outs.items():
        if o["sm"].shape[1:] != shape:
            raise StoreError(f"{refs[k]}: sm is {o['sm'].shape[1:]} pixels, the cube {shape}: not a product of this "
                             "region (check stores.output and stores.cube)")


def _stations_on_grid(stations: pd.DataFrame, times: np.ndarray, cube: xr.Dataset
                      ) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The stations inside the grid (with their ``row``, ``col``), their observations on
    ``times`` and the names of those outside."""
    sites, obs = station_obs(stations, times)
    row, col = station_pixels(sites["lon"].to_numpy(), sites["lat"].to_numpy(), cube["x"].values, cube["y"].values)
    inside = row >= 0
    outside = [str(v) for v in sites["station"].loc[~inside]]
    sites = sites.assign(row=row, col=col).loc[inside].reset_index(drop=True)
    return sites, obs[:, inside], outside


def write_skill(result: Mapping[str, Any], dest: StoreRef) -> None:
    """Write the skill summary as JSON to ``dest``."""
    files.write_url(dest, json.dumps(result, indent=2))


def skill_maps(config: Config) -> dict[str, StoreRef]:
    """The products stores the twin skill scores: this run's (labelled by its method) and
    ``validation.compare`` (under the stores' options)."""
    if not (config.stores.truth and config.stores.output):
        raise ConfigError("stores.truth and stores.output must be set to score the twin")
    compare = dict(config.validation.compare) if config.validation else {}
    return {config.training.method: config.stores.ref("output"),
            **{k: config.stores.at(url) for k, url in compare.items()}}


def twin_skill_of(config: Config, client: Client | None = None) -> dict[str, Any]:
    """The twin skill (:func:`dsm.skill.skill`) of the configured products, with the twin's
    in situ stations when ``stores.stations`` holds them and the per-period scores of the run's
    product (``periods``, what :func:`dsm.stages.validate.validate` and the report show); on
    ``client``'s workers when given."""
    maps = skill_maps(config)
    stations = None
    if config.stores.stations:
        insitu = config.stores.ref("stations").join("insitu.csv")
        if store.exists(insitu):
            stations = read_twin_stations(insitu)
    return skill(maps, config.stores.ref("truth"), config.stores.ref("cube"), stations=stations,
                 client=client, periods=True)


__all__ = ["skill", "skill_maps", "twin_skill_of", "write_skill", "format_table", "bilinear", "repeat", "read_twin_stations",
           "station_pixels", "station_scores", "BASELINES", "CONFIDENCE", "MIN_CELL_PIXELS", "MIN_PIXEL_DAYS",
           "MIN_STATION_DAYS", "SEASONS"]
