"""Writing the antecedent precipitation indices into the cube: the IO edge of :mod:`dsm.rain`.

:func:`write_antecedent` opens the cube and scans its whole ``precip`` series with one
task per spatial block of the cube's chunks (on the cluster's workers when a client is given):
the task reads the block a time chunk at a time (the spin-up days first), carries the scan's
state from chunk to chunk and writes the ``api_*`` and ``api_age`` chunks of the cube's days
with :func:`dsm.store.write_region`, so no task holds more than one time chunk of the series
and the tasks are as many as the spatial blocks (not a chain of small tasks per time chunk).
Water pixels (``land_mask`` 0) get NaN indices and age 0. The settings go to the cube
attribute ``antecedent_precipitation`` so that later stages know the indices are there.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import xarray as xr
import zarr

from dsm import rain as rain_mod
from dsm import store
from dsm.cube import API_EFOLDING_DAYS, API_NAMES, open_cube
from dsm.errors import InputError, StoreError
from dsm.storeref import StoreRef
from dsm.zarr_reads import read_selections

if TYPE_CHECKING:
    from distributed import Client

    from dsm.config import RainConfig

ATTR = "antecedent_precipitation"  #: cube attribute recording the settings of the written indices
_DAILY = ("time", "y", "x")
_WRITTEN = (*API_NAMES, "api_age")  # the variables the scan writes, in the order it makes them


@dataclass(frozen=True)
class AntecedentSummary:
    """What :func:`write_antecedent` wrote.

    Attributes
    ----------
    cube : str
        The cube's URL.
    efolding_days, spinup_days, max_gap_days
        The settings (``spinup_days``: the configured age below which pixel-days are flagged).
    cube_spinup_days : int
        Days of precipitation before the cube's first day (the spin-up actually scanned).
    days, precip_days : int
        Days written; days scanned (spin-up included).
    land_pixels : int
        Land pixels (``land_mask`` 1).
    missing_precip_days : int
        Scanned days on which no land pixel has precipitation.
    restart_pixels : int
        Land pixels whose indices restarted at least once (a gap longer than ``max_gap_days``).
    refused_pixel_days : int
        Land pixel-days of the cube's days with NaN indices (inside such a gap).
    flagged_pixel_days : int
        Land pixel-days of the cube's days with ``api_age < spinup_days``.
    blocks : int
        Region writes (time chunk x spatial block).
    written : str
        UTC time of the write (ISO 8601).
    """

    cube: str
    efolding_days: tuple[int, ...]
    spinup_days: int
    max_gap_days: int
    cube_spinup_days: int
    days: int
    precip_days: int
    land_pixels: int
    missing_precip_days: int
    restart_pixels: int
    refused_pixel_days: int
    flagged_pixel_days: int
    blocks: int
    written: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["efolding_days"] = list(self.efolding_days)
        return d


@dataclass(frozen=True)
class _BlockScan:
    """What the scan of one spatial block found (:func:`_scan_block`), summed over the blocks."""

    precip_on_land: np.ndarray  # (precipitation days,) bool: some land pixel of the block has a value
    land_pixels: int
    restart_pixels: int
    refused_pixel_days: int
    flagged_pixel_days: int
    blocks: int  # region writes


def _pieces(n: int, size: int) -> tuple[int, ...]:
    return (size,) * (n // size) + ((n % size,) if n % size else ())


def _scan_block(ref: StoreRef, call: str, y0: int, y1: int, x0: int, x1: int, *, spin: int, first: int,
                max_gap_days: int, spinup_days: int) -> _BlockScan:
    """Scan the whole precipitation series of one spatial block, a time chunk at a time (the
    state carried from chunk to chunk: :func:`dsm.rain.api_scan`), and write its ``api_*`` and
    ``api_age`` chunks (runs on a worker; the cube's time chunks wholly before day index
    ``first`` are left as stored). Water pixels get NaN indices and age 0."""
    cube = store.open_cached(ref, call, "raw")  # once per worker and call, read without dask
    ys, xs = slice(y0, y1), slice(x0, x1)
    land = read_selections(cube, {"land": ("land_mask", {"y": ys, "x": xs})})["land"] == 1
    tc = cube["api_age"].encoding["chunks"][0]
    n_precip = cube.sizes["time_precip"]
    on_land = np.zeros(n_precip, bool)
    ever_refused = np.zeros(land.shape, bool)
    refused_days = flagged = writes = 0
    state = None
    t = 0
    for size in _pieces(spin, tc) + _pieces(n_precip - spin, tc):  # the spin-up, then the cube's time chunks
        p = read_selections(cube, {"p": ("precip", {"time_precip": slice(t, t + size), "y": ys, "x": xs})})["p"]
        try:
            apis, age, state = rain_mod.api_scan(p, API_EFOLDING_DAYS, max_gap_days, state)
        except ValueError as exc:  # name where: the index in the message counts from this part of the cube
            days = cube["time_precip"].values[[t, t + size - 1]].astype("datetime64[D]")
            raise ValueError(f"the cube {ref.url}, 'precip' of {days[0]} .. {days[1]}, rows {y0}:{y1}, columns "
                             f"{x0}:{x1}: {exc}; the precipitation readers refuse such values: write these days "
                             "again with dsm ingest") from None
        on_land[t:t + size] = (np.isfinite(p) & land).any(axis=(1, 2))
        refused = np.isnan(apis[0]) & land
        ever_refused |= refused.any(axis=0)
        t0, t1 = t - spin, t - spin + size  # on the cube's days
        t += size
        if t0 < 0:
            continue
        refused_days += int(refused.sum())
        flagged += int(((age < spinup_days) & land).sum())
        if t1 <= first:
            continue
        values = [np.where(land, a, np.float32(np.nan)) for a in apis] + [np.where(land, age, np.uint8(0))]
        coords = {"time": cube["time"].values[t0:t1], "y": cube["y"].values[ys], "x": cube["x"].values[xs]}
        store.write_region(ref, xr.Dataset({n: (_DAILY, v) for n, v in zip(_WRITTEN, values, strict=True)},
                                           coords=coords), cube)
        writes += 1
    return _BlockScan(on_land, int(land.sum()), int(ever_refused.sum()), refused_days, flagged, writes)


def _check_cube(ref: StoreRef, cube: xr.Dataset) -> int:
    """Refuse a cube without precipitation or index variables; return its spin-up days."""
    url = ref.url
    if "precip" not in cube or "time_precip" not in cube.dims:
        raise InputError(f"the cube {url} has no precipitation ('precip' on 'time_precip'): configure "
                         "inputs.precip and run dsm ingest (a cube made before the rain variables must be recreated)")
    missing = [n for n in _WRITTEN if n not in cube]
    if missing:
        raise StoreError(f"the cube {url} lacks {missing}: recreate it with this version of dsm (dsm ingest)")
    spin = cube.sizes["time_precip"] - cube.sizes["time"]
    if spin < 0 or not cube.indexes["time_precip"][spin:].equals(cube.indexes["time"]):
        raise StoreError(f"the cube {url}: 'time_precip' does not end with the cube's days")
    array = zarr.open_array(ref.join("precip").url, mode="r", storage_options=ref.zarr_options)
    if array.nchunks_initialized == 0:
        raise InputError(f"the cube {url} has no precipitation values ('precip' is empty): configure "
                         "inputs.precip and run dsm ingest")
    return spin


def _forget(ref: StoreRef, cube: xr.Dataset) -> None:
    """Drop the record of earlier indices before overwriting them (a failed run leaves none)."""
    if ATTR in cube.attrs:
        group = zarr.open_group(ref.url, mode="r+", storage_options=ref.zarr_options)
        del group.attrs[ATTR]


def _compute(client: Client | None, *lazy: Any) -> Sequence[Any]:
    if client is not None:
        return client.gather(client.compute(list(lazy)))
    return dask.compute(*lazy)


def write_antecedent(cube_ref: StoreRef, rain: RainConfig, client: Client | None = None,
                     from_index: int = 0) -> AntecedentSummary:
    """Compute the antecedent precipitation indices of the cube's ``precip`` and write them in.

    The whole series is scanned (the indices are recursive), but only the time chunks from the
    one holding day index ``from_index`` on are written: a cube extended in time
    (:mod:`dsm.extend`) keeps the chunks of its earlier days, whose indices cannot change when
    only later precipitation was written.

    Parameters
    ----------
    cube_ref
        The predictor cube.
    rain
        ``spinup_days`` (the age flagged below) and ``max_gap_days`` (:mod:`dsm.rain`).
    client
        Compute on this cluster's workers; None: ``dask.compute`` (Dask's default scheduler).
    from_index
        The first day (index on ``time``) whose chunk is written (0: every chunk). ``blocks``
        of the summary counts the blocks written.

    Returns
    -------
    AntecedentSummary

    Raises
    ------
    InputError
        The cube has no precipitation, or none on land.
    StoreError
        The cube lacks the index variables or its precipitation axis does not fit its days.
    ValueError
        Negative or infinite precipitation in the cube.
    """
    cube = open_cube(cube_ref)
    spin = _check_cube(cube_ref, cube)
    nt, ny, nx = (cube.sizes[d] for d in _DAILY)
    _, sc_y, sc_x = cube["api_age"].encoding["chunks"]
    call = uuid.uuid4().hex
    scan = dask.delayed(_scan_block, pure=False)
    lazy = [scan(cube_ref, call, y0, min(y0 + sc_y, ny), x0, min(x0 + sc_x, nx), spin=spin,
                 first=max(0, int(from_index)), max_gap_days=rain.max_gap_days, spinup_days=rain.spinup_days)
            for y0 in range(0, ny, sc_y) for x0 in range(0, nx, sc_x)]
    _forget(cube_ref, cube)
    parts: Sequence[_BlockScan] = _compute(client, *lazy)
    done = {f.name: sum(getattr(part, f.name) for part in parts) for f in fields(_BlockScan)
            if f.name != "precip_on_land"}  # counts: summed over the blocks
    done["precip_on_land"] = np.logical_or.reduce([part.precip_on_land for part in parts])
    days_with_rain = int(np.count_nonzero(done["precip_on_land"]))
    if days_with_rain == 0:
        raise InputError(f"the cube {cube_ref} has no precipitation on land (every 'precip' value over land is "
                         "missing): configure inputs.precip and run dsm ingest")
    written = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    every_day = {n: [0, nt] for n in _WRITTEN}  # all rows written: a chunk lost later is an error
    store.set_attrs(cube_ref, {ATTR: {"efolding_days": list(API_EFOLDING_DAYS), "spinup_days": rain.spinup_days,
                                      "max_gap_days": rain.max_gap_days, "cube_spinup_days": spin},
                               store.WRITTEN_ATTR: store.merge_written(cube.attrs.get(store.WRITTEN_ATTR, {}),
                                                                       every_day)})
    return AntecedentSummary(
        cube=cube_ref.url, efolding_days=tuple(API_EFOLDING_DAYS), spinup_days=rain.spinup_days,
        max_gap_days=rain.max_gap_days, cube_spinup_days=spin, days=nt, precip_days=spin + nt,
        land_pixels=int(done["land_pixels"]), missing_precip_days=spin + nt - days_with_rain,
        restart_pixels=int(done["restart_pixels"]), refused_pixel_days=int(done["refused_pixel_days"]),
        flagged_pixel_days=int(done["flagged_pixel_days"]), blocks=int(done["blocks"]), written=written)
