"""Per-period training samples: 1 km predictors aggregated to the 36 km SMAP cells.

A *sample* is one (36 km cell, day) of a 16-day period where SMAP and every predictor,
aggregated to 36 km, are valid. The sample table of a period is a pandas DataFrame with the
columns ``date`` (datetime64), ``cell`` (global cell id, :func:`dsm.grid.cell_id`), ``row``
and ``col`` (global 36 km row and column), one column per predictor, and ``sm`` (SMAP soil
moisture, the target), sorted by date then cell.

:func:`sample_graph` builds that table as a lazy dask graph over the cube (it reads nothing);
computing it on the cluster (``client.compute``) reads and aggregates the 1 km chunks on the
workers, and only the small table travels.

Aggregation rules (``how``)
---------------------------
A 1 km pixel is *valid* when it is finite and the cube's ``land_mask`` is 1 there.

``"mean"`` (default)
    The mean of the valid 1 km pixels of the cell, provided at least
    ``min_valid_fraction`` of the cell's 36 x 36 = 1296 pixels are valid; else invalid.
``"nearest"`` (as in the paper)
    The value of one 1 km pixel: row 18, column 18 of the cell's 36 x 36 block (counting
    from 0 at the north-west corner). With an even 36 pixels per side no pixel is centred
    on the cell centre; pixel (18, 18) is the one whose north-west (upper-left) corner *is*
    the cell centre, i.e. the south-east pixel of the central four. Invalid if that pixel is.

Predictors on composite axes (8-day, 16-day) take, for each day, the composite containing
the day; static predictors are the same every day. The SMAP value is the cube's
``smap_sm`` for the cell and day (already 36 km).

The array functions (:func:`aggregate`, :func:`table_from_arrays`) are pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.delayed import Delayed

from dsm.cube import SPECS
from dsm.errors import InputError
from dsm.grid import FINE_PER_COARSE, NCOLS_36KM, Region, block_reduce_mean
from dsm.periods import Composite, composite_8day_of

Aggregation = Literal["mean", "nearest"]
NEAREST_OFFSET = FINE_PER_COARSE // 2  # 18: the pixel whose upper-left corner is the cell centre
TARGET = "sm"
KEY_COLUMNS = ("date", "cell", "row", "col")


# ------------------------------------------------------------------------------- pure core
def aggregate(fine: np.ndarray, land: np.ndarray, how: Aggregation = "mean",
              min_valid_fraction: float = 0.5) -> np.ndarray:
    """Aggregate 1 km pixels to 36 km cells by the module's rule.

    Parameters
    ----------
    fine
        Array whose last two axes are 1 km rows and columns (multiples of 36).
    land
        Boolean land mask of the last two axes; pixels off land count as invalid.
    how
        ``"mean"`` or ``"nearest"`` (see the module docstring).
    min_valid_fraction
        For ``"mean"``: fewest valid pixels, as a fraction of 1296, for a valid cell.

    Returns
    -------
    numpy.ndarray
        float32 array with the last two axes divided by 36; NaN where invalid.
    """
    fine = np.where(land, fine, np.nan).astype(np.float32, copy=False)
    if how == "mean":
        return block_reduce_mean(fine, min_valid_fraction).astype(np.float32)
    if how == "nearest":
        f = FINE_PER_COARSE
        return np.ascontiguousarray(fine[..., NEAREST_OFFSET::f, NEAREST_OFFSET::f])
    raise ValueError(f"unknown aggregation {how!r}; use 'mean' or 'nearest'")


def table_from_arrays(dates: Sequence[np.datetime64], cells: np.ndarray,
                      columns: Mapping[str, np.ndarray], target: np.ndarray) -> pd.DataFrame:
    """The sample table from 36 km arrays, keeping only fully valid (cell, day) rows.

    Parameters
    ----------
    dates
        The days, length ``t``.
    cells
        Global 36 km cell ids, shape ``(cy, cx)``.
    columns
        Predictor name -> array of shape ``(t, cy, cx)`` or ``(cy, cx)`` (static).
    target
        SMAP soil moisture, shape ``(t, cy, cx)``.
    """
    t = len(dates)
    shape = (t, *cells.shape)
    data: dict[str, np.ndarray] = {
        "date": np.repeat(np.asarray(dates, dtype="datetime64[ns]"), cells.size),
        "cell": np.broadcast_to(cells, shape).ravel().astype(np.int64),
    }
    data["row"] = data["cell"] // NCOLS_36KM
    data["col"] = data["cell"] % NCOLS_36KM
    ok = np.isfinite(target).ravel()
    for name, arr in columns.items():
        full = np.broadcast_to(np.asarray(arr, dtype=np.float32), shape).ravel()
        data[name] = full
        ok &= np.isfinite(full)
    data[TARGET] = np.asarray(target, dtype=np.float32).ravel()
    frame = pd.DataFrame({k: v[ok] for k, v in data.items()})
    return frame.reset_index(drop=True)


def empty_table(predictors: Sequence[str]) -> pd.DataFrame:
    """A sample table with no rows and the right columns and dtypes."""
    return table_from_arrays([], np.zeros((0, 0), np.int64),
                             {p: np.zeros((0, 0, 0), np.float32) for p in predictors},
                             np.zeros((0, 0, 0), np.float32))


# ------------------------------------------------------------------------------- lazy graph
def _aggregate_dask(fine: da.Array, land: da.Array, how: Aggregation, min_valid_fraction: float) -> da.Array:
    f = FINE_PER_COARSE
    for c in (*fine.chunks[-2], *fine.chunks[-1]):
        if c % f:
            raise InputError(f"cube chunks {fine.chunksize} are not multiples of {f} in space: "
                             "a 36 km cell would straddle two chunks")
    land = land.rechunk(fine.chunks[-2:])
    lead = "".join("abcdefgh"[i] for i in range(fine.ndim - 2))
    chunks = (*fine.chunks[:-2], tuple(c // f for c in fine.chunks[-2]), tuple(c // f for c in fine.chunks[-1]))
    return da.blockwise(
        aggregate, lead + "yx", fine, lead + "yx", land, "yx",
        how=how, min_valid_fraction=min_valid_fraction,
        adjust_chunks={"y": chunks[-2], "x": chunks[-1]}, dtype=np.float32,
        meta=np.empty((0,) * fine.ndim, np.float32),
    )


def period_days(ds: xr.Dataset, period: Composite) -> list[dt.date]:
    """The days of ``period`` that the cube holds."""
    have = set(pd.DatetimeIndex(ds["time"].values).date)
    return [d for d in period.days if d in have]


def check_predictors(ds: xr.Dataset, predictors: Sequence[str]) -> None:
    """Raise :class:`InputError` naming every predictor (or ``smap_sm``/``land_mask``) the cube lacks."""
    missing = [p for p in (*predictors, "smap_sm", "land_mask") if p not in ds.data_vars]
    if missing:
        raise InputError(f"the cube lacks variable(s) {missing} needed for training")


def sample_graph(ds: xr.Dataset, period: Composite, predictors: Sequence[str],
                 how: Aggregation = "mean", min_valid_fraction: float = 0.5) -> Delayed:
    """A lazy dask graph whose result is the sample table of ``period``.

    Parameters
    ----------
    ds
        The predictor cube, opened lazily (:func:`dsm.cube.open_cube`).
    period
        The 16-day period.
    predictors
        Predictor names, in column order.
    how, min_valid_fraction
        Aggregation rule (module docstring).

    Raises
    ------
    InputError
        When the cube lacks a predictor, ``smap_sm`` or ``land_mask``.
    """
    check_predictors(ds, predictors)
    r = ds.attrs["region"]
    cells = Region(r["row0"], r["col0"], r["nrows"], r["ncols"]).cell_ids
    days = period_days(ds, period)
    if not days:
        return dask.delayed(empty_table)(list(predictors))
    times = [np.datetime64(d, "ns") for d in days]
    land = ds["land_mask"].data == 1
    columns: dict[str, Any] = {}
    for name in predictors:
        var = ds[name]
        axis = SPECS[name].axis if name in SPECS else None
        if var.dims == ("y", "x") or axis == "static":
            fine = var
        elif "time" in var.dims:
            fine = var.sel(time=times)
        elif "time_8d" in var.dims:
            starts = [np.datetime64(composite_8day_of(d).start, "ns") for d in days]
            fine = var.sel(time_8d=xr.DataArray(starts, dims="time"))
        elif "time_16d" in var.dims:
            fine = var.sel(time_16d=[np.datetime64(period.start, "ns")])
        else:
            raise InputError(f"cube variable '{name}' has unexpected dims {var.dims}")
        data = fine.data if isinstance(fine.data, da.Array) else da.from_array(fine.data)
        columns[name] = _aggregate_dask(data, land, how, min_valid_fraction)
    target = ds["smap_sm"].sel(time=times).data
    return dask.delayed(table_from_arrays, pure=True)(times, cells, columns, target)
