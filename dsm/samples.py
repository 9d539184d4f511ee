"""Per-period training samples: 1 km predictors aggregated to the SMAP cells.

A *sample* is one (SMAP cell, day) of a 16-day period where SMAP and every predictor,
aggregated to the cell, are valid. SMAP cells are 36 km (SPL3SMP), or 9 km where the region's
coarse grid is SPL3SMP_E's (``region.coarse: spl3smp_e``, :attr:`dsm.grid.Region.coarse_km`):
everything below holds with 9 x 9 pixels per cell. The sample table of a period is a pandas
DataFrame with the columns ``date`` (datetime64), ``cell`` (global cell id,
:func:`dsm.grid.cell_id`), ``row`` and ``col`` (global row and column on the coarse grid), one
column per predictor, and ``sm`` (SMAP soil moisture, the target), sorted by date then cell.

:func:`sample_graph` builds that table as a lazy dask graph over the cube (it reads nothing);
computing it on the cluster (``client.compute``) reads and aggregates the 1 km chunks on the
workers, and only the small table travels. :func:`sample_table` computes the same table now,
with numpy, for a block that fits in memory (each task of :mod:`dsm.sample_tables` does so).

Aggregation rules (``how``)
---------------------------
A 1 km pixel is *valid* when it is finite and the cube's ``land_mask`` is 1 there.

``"mean"`` (default)
    The mean of the valid 1 km pixels of the cell, provided at least
    ``min_valid_fraction`` of the cell's 36 x 36 = 1296 pixels are valid; else invalid.
``"nearest"`` (as in the paper)
    The value of one 1 km pixel: row 18, column 18 of the cell's 36 x 36 block (counting
    from 0 at the north-west corner; row 4, column 4 of a 9 km cell). With an even 36 pixels
    per side no pixel is centred on the cell centre; pixel (18, 18) is the one whose
    north-west (upper-left) corner *is* the cell centre, i.e. the south-east pixel of the
    central four. Invalid if that pixel is.

Predictors on composite axes (8-day, 16-day) take, for each day, the composite containing
the day; static predictors are the same every day. The SMAP value is the cube's
``smap_sm`` for the cell and day (already on the coarse grid).

Impossible values
-----------------
A 1 km value outside its variable's valid range, and a SMAP value outside [0.02, 0.5] or
infinite, is treated as missing (:mod:`dsm.ranges`): it enters no mean, no extreme, and no
target. The table's ``attrs["out_of_range"]`` counts what was masked: 1 km land pixel-days
per predictor, SMAP cell-days under ``smap_sm``; with ``count_column`` each row also carries
``n_out_of_range``, the masked pixel values of its cell-day over all its predictors.

The array functions (:func:`table_from_arrays`, and the per-cell statistics of :mod:`dsm.cell_stats`) are pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.delayed import Delayed

from dsm.cell_stats import Aggregation, aggregate, cell_extreme, cell_statistics, count_cells
from dsm.cube import layer_dim, layer_time
from dsm.errors import InputError
from dsm.features import CIRCULAR, feature_layers, source_of
from dsm.grid import FINE_PER_COARSE, NCOLS_36KM, Region
from dsm.periods import Composite
from dsm.ranges import SMAP, masked, merge_counts, outside, screen_lazy, valid_range
from dsm.ranges import screen as screen_range

Keep = Literal["complete", "smap", "all"]
RANGE_SUFFIX = {"min": "__min", "max": "__max"}
NEAREST_OFFSET = FINE_PER_COARSE // 2  # 18 at 36 km: the pixel whose upper-left corner is the cell centre
TARGET = "sm"
KEY_COLUMNS = ("date", "cell", "row", "col")
OUT_OF_RANGE = "n_out_of_range"  #: per-row column of masked 1 km values (``count_column``)
OUT_OF_RANGE_ATTR = "out_of_range"  #: ``table.attrs`` key: ``{variable: count}`` of masked values


# ------------------------------------------------------------------------------- pure core
def table_from_arrays(dates: Sequence[np.datetime64], cells: np.ndarray,
                      columns: Mapping[str, np.ndarray], target: np.ndarray,
                      required: Sequence[str] | None = None, need_target: bool = True,
                      ncols: int = NCOLS_36KM) -> pd.DataFrame:
    """The sample table from coarse arrays, keeping the (cell, day) rows whose ``required``
    columns (default: all) and, with ``need_target``, target are valid.

    Parameters
    ----------
    dates
        The days, length ``t``.
    cells
        Global coarse cell ids (:attr:`dsm.grid.Region.cell_ids`), shape ``(cy, cx)``.
    columns
        Predictor name -> array of shape ``(t, cy, cx)`` or ``(cy, cx)`` (static).
    target
        SMAP soil moisture, shape ``(t, cy, cx)``.
    ncols
        Columns of the global coarse grid the ids count in (964 at 36 km, 3856 at 9 km).
    """
    t = len(dates)
    shape = (t, *cells.shape)
    data: dict[str, np.ndarray] = {
        "date": np.repeat(np.asarray(dates, dtype="datetime64[ns]"), cells.size),
        "cell": np.broadcast_to(cells, shape).ravel().astype(np.int64),
    }
    data["row"] = data["cell"] // ncols
    data["col"] = data["cell"] % ncols
    ok = np.isfinite(target).ravel() if need_target else np.ones(t * cells.size, bool)
    must = set(columns if required is None else required)
    for name, arr in columns.items():
        full = np.broadcast_to(np.asarray(arr, dtype=np.float32), shape).ravel()
        data[name] = full
        if name in must:
            ok &= np.isfinite(full)
    data[TARGET] = np.asarray(target, dtype=np.float32).ravel()
    frame = pd.DataFrame({k: v[ok] for k, v in data.items()})
    return frame.reset_index(drop=True)


def screened_table(dates: Sequence[np.datetime64], cells: np.ndarray, columns: Mapping[str, np.ndarray],
                   target: np.ndarray, required: Sequence[str] | None, need_target: bool,
                   bad_cells: Mapping[str, np.ndarray], count_column: bool = False,
                   ncols: int = NCOLS_36KM) -> pd.DataFrame:
    """:func:`table_from_arrays` with SMAP outside its valid range (or infinite) masked, and
    ``attrs["out_of_range"]`` (module docstring).

    ``bad_cells`` holds, per predictor, the masked land pixels per cell (:func:`count_cells`),
    ``(t, cy, cx)`` or ``(cy, cx)`` for a static predictor (counted once per day); with
    ``count_column`` their sum over predictors becomes the column ``n_out_of_range``;
    ``ncols`` as for :func:`table_from_arrays`.
    """
    target, smap_bad = screen_range(SMAP, np.asarray(target, np.float32))
    shape = (len(dates), *cells.shape)
    if count_column:
        columns = {**columns, OUT_OF_RANGE: sum((np.broadcast_to(b, shape) for b in bad_cells.values()),
                                                np.zeros(shape, np.int32))}
    table = table_from_arrays(dates, cells, columns, target, required, need_target, ncols)
    counts = {name: int(np.broadcast_to(b, shape).sum()) for name, b in bad_cells.items()}
    table.attrs[OUT_OF_RANGE_ATTR] = merge_counts([counts, {SMAP: 0 if smap_bad is None else int(smap_bad.sum())}])
    return table


def table_counts(tables: Sequence[pd.DataFrame]) -> dict[str, int]:
    """The summed ``attrs["out_of_range"]`` of sample tables (e.g. of every period)."""
    return merge_counts(t.attrs.get(OUT_OF_RANGE_ATTR, {}) for t in tables)


def empty_table(predictors: Sequence[str]) -> pd.DataFrame:
    """A sample table with no rows and the right columns and dtypes."""
    return table_from_arrays([], np.zeros((0, 0), np.int64),
                             {p: np.zeros((0, 0, 0), np.float32) for p in predictors},
                             np.zeros((0, 0, 0), np.float32))


# ------------------------------------------------------------------------------- lazy graph
def _per_cell_lazy(func: Any, fine: da.Array, land: da.Array, dtype: Any, factor: int, **kwargs: Any) -> da.Array:
    """``func(fine, land, factor=factor, **kwargs)`` (:func:`aggregate`, :func:`count_cells`,
    :func:`cell_extreme`) on each chunk of ``fine``: one task per chunk."""
    f = factor
    for c in (*fine.chunks[-2], *fine.chunks[-1]):
        if c % f:
            raise InputError(f"cube chunks {fine.chunksize} are not multiples of {f} in space: "
                             "a SMAP cell would straddle two chunks")
    land = land.rechunk(fine.chunks[-2:])
    lead = "".join("abcdefgh"[i] for i in range(fine.ndim - 2))
    return da.blockwise(
        func, lead + "yx", fine, lead + "yx", land, "yx", factor=f, **kwargs,
        adjust_chunks={"y": tuple(c // f for c in fine.chunks[-2]), "x": tuple(c // f for c in fine.chunks[-1])},
        dtype=dtype, meta=np.empty((0,) * fine.ndim, dtype),
    )


def _per_cell_now(func: Any, fine: np.ndarray, land: np.ndarray, dtype: Any, factor: int, **kwargs: Any) -> np.ndarray:
    """``func`` on the whole of ``fine`` at once (its blocks are whole cells)."""
    return func(fine, land, factor=factor, **kwargs)


def _lazy_array(values: xr.DataArray) -> da.Array:
    data = values.data
    return data if isinstance(data, da.Array) else da.from_array(data)


def _screen_now(name: str, values: np.ndarray) -> np.ndarray:
    bounds = valid_range(name)
    return values if bounds is None else masked(values, bounds)


@dataclass(frozen=True)
class _Evaluation:
    """How :func:`_sample_table`'s steps run: lazily, one dask task per chunk and step
    (:func:`sample_graph`), or now on numpy arrays (:func:`sample_table`). Both call the same
    array functions, so their tables are identical."""

    arrays: Any  # (ds, {key: (variable, isel index)}) -> {key: its values} (dask, or numpy read now)
    per_cell: Any  # _per_cell_lazy or _per_cell_now
    statistics: Any  # cell_statistics, or its lazy arrays (_statistics_lazy)
    screen: Any  # (name, array) -> the array with NaN outside the name's valid range
    table: Any  # screened_table, or its dask.delayed
    empty: Any  # empty_table, or its dask.delayed


Reads = Mapping[Any, tuple[str, Mapping[str, Any]]]  # key -> (variable, isel index)


def values_each(ds: xr.Dataset, reads: Reads) -> dict[Any, np.ndarray]:
    """The values of each of ``reads`` of ``ds``, read one after another (:func:`sample_table`'s
    default ``read``; an index's dimensions that a variable lacks are ignored)."""
    return {k: np.asarray(ds[name].isel(index, missing_dims="ignore").values) for k, (name, index) in reads.items()}


def _lazy_each(ds: xr.Dataset, reads: Reads) -> dict[Any, da.Array]:
    return {k: _lazy_array(ds[name].isel(index, missing_dims="ignore")) for k, (name, index) in reads.items()}


def _statistics_lazy(fine: da.Array, land: da.Array, how: Aggregation, min_valid_fraction: float,
                     bounds: tuple[float, float] | None, ranges: bool, factor: int) -> list[da.Array]:
    """:func:`cell_statistics` as lazy arrays, a task per chunk and statistic."""
    out = [_per_cell_lazy(aggregate, fine, land, np.float32, factor, how=how, min_valid_fraction=min_valid_fraction,
                          bounds=bounds)]
    if ranges:
        out += [_per_cell_lazy(cell_extreme, fine, land, np.float32, factor, stat=stat, bounds=bounds)
                for stat in ("min", "max")]
    return out


_LAZY = _Evaluation(_lazy_each, _per_cell_lazy, _statistics_lazy, screen_lazy,
                    dask.delayed(screened_table, pure=True), dask.delayed(empty_table))
_NOW = _Evaluation(values_each, _per_cell_now, cell_statistics, _screen_now, screened_table, empty_table)


def period_days(ds: xr.Dataset, period: Composite) -> list[dt.date]:
    """The days of ``period`` that the cube holds."""
    have = set(pd.DatetimeIndex(ds["time"].values).date)
    return [d for d in period.days if d in have]


def check_predictors(ds: xr.Dataset, predictors: Sequence[str]) -> None:
    """Raise :class:`InputError` naming every predictor (or ``smap_sm``/``land_mask``) the cube lacks."""
    missing = [p for p in (*predictors, "smap_sm", "land_mask") if p not in ds.data_vars]
    if missing:
        raise InputError(f"the cube lacks variable(s) {missing} needed for training")


def predictor_layer(ds: xr.Dataset, name: str, days: Sequence[dt.date], screen: bool = True) -> da.Array:
    """The 1 km layer of predictor ``name`` for each of ``days``, lazily: ``(t, y, x)`` for daily
    and composite predictors (the composite containing each day), ``(y, x)`` for static ones.
    With ``screen``, values outside the variable's valid range are NaN (:func:`dsm.ranges.screen_lazy`)."""
    data = _lazy_array(_select_layer(ds, name, days))
    return screen_lazy(name, data) if screen else data


def _positions(ds: xr.Dataset, name: str, dim: str, labels: Sequence[Any]) -> np.ndarray:
    """The positions of ``labels`` on the cube's ``dim``, an error naming ``name`` and the first
    missing one."""
    pos = ds.indexes[dim].get_indexer(pd.DatetimeIndex(list(labels)))
    if (pos < 0).any():
        raise InputError(f"cube variable '{name}' has no layer for {pd.Timestamp(labels[int(np.argmax(pos < 0))]).date()} "
                         f"on '{dim}': the cube does not cover these dates")
    return pos


def _layer_index(ds: xr.Dataset, name: str, days: Sequence[dt.date]) -> dict[str, Any]:
    """:func:`predictor_layer`'s selection as an ``isel`` index (positions of each day's layer on
    the layer's time axis; nothing for a static layer), before any value is read."""
    var = ds[name]
    dim = layer_dim(name)
    if var.dims == ("y", "x") and dim is None:
        return {}
    if dim is not None and dim in var.dims:
        labels = [np.datetime64(w[1], "ns") for d in days if (w := layer_time(name, d)) is not None]
        return {dim: _positions(ds, name, dim, labels)}
    raise InputError(f"cube variable '{name}' has unexpected dims {var.dims}")


def _select_layer(ds: xr.Dataset, name: str, days: Sequence[dt.date]) -> xr.DataArray:
    """:func:`predictor_layer`'s selection, before any value is read."""
    return ds[name].isel(_layer_index(ds, name, days))


def smap_layer(ds: xr.Dataset, times: Sequence[Any], screen: bool = True) -> da.Array:
    """SMAP ``(t, cy, cx)`` on ``times``, lazily; with ``screen``, NaN outside [0.02, 0.5]
    (the valid range of ``smap_sm``) and where infinite."""
    data = _lazy_array(ds[SMAP].sel(time=list(times)))
    return screen_lazy(SMAP, data) if screen else data


def is_static(ds: xr.Dataset, feature: str) -> bool:
    """Whether a feature's predictor is a static (y, x) layer of the cube."""
    return ds[source_of(feature)].dims == ("y", "x")


def sample_graph(ds: xr.Dataset, period: Composite | Sequence[dt.date], predictors: Sequence[str],
                 how: Aggregation = "mean", min_valid_fraction: float = 0.5, *,
                 features: Sequence[str] | None = None, keep: Keep = "complete", ranges: bool = False,
                 count_column: bool = False) -> Delayed:
    """A lazy dask graph whose result is the sample table of ``period`` (or of a list of days).

    Parameters
    ----------
    ds
        The predictor cube, opened lazily (:func:`dsm.cube.open_cube`).
    period
        The 16-day period, or the days to tabulate.
    predictors
        Predictor names, in column order.
    how, min_valid_fraction
        Aggregation rule (module docstring).
    features
        Feature columns computed from the 1 km predictors before aggregation
        (:mod:`dsm.features`, e.g. ``aspect_sin``); default: the predictors themselves.
    keep
        Rows kept: ``"complete"`` SMAP and every feature valid (the paper's samples);
        ``"smap"`` SMAP and the static features valid, dynamic ones may be NaN (models that
        choose among predictor subsets); ``"all"`` every cell-day whose static features are valid.
    ranges
        Add ``<feature>__min`` and ``<feature>__max``: the extremes of the valid 1 km land
        pixels of each cell-day (the range a model saw at 1 km).
    count_column
        Add ``n_out_of_range`` (module docstring).

    The result's ``attrs["out_of_range"]`` counts the values masked as impossible (module
    docstring), whatever the options.

    Raises
    ------
    InputError
        When the cube lacks a predictor, ``smap_sm`` or ``land_mask``.
    """
    return _sample_table(_LAZY, ds, period, predictors, how, min_valid_fraction, features, keep, ranges, count_column)


def sample_table(ds: xr.Dataset, period: Composite | Sequence[dt.date], predictors: Sequence[str],
                 how: Aggregation = "mean", min_valid_fraction: float = 0.5, *,
                 features: Sequence[str] | None = None, keep: Keep = "complete", ranges: bool = False,
                 count_column: bool = False,
                 read: Callable[[xr.Dataset, Reads], dict[Any, np.ndarray]] | None = None) -> pd.DataFrame:
    """:func:`sample_graph`'s table computed now with numpy, for a block small enough to hold
    in memory (``ds`` opened with ``chunks=None``, or sliced from such a cube): the same array
    functions without a dask task per chunk and step, so the same table, sooner
    (:func:`dsm.sample_tables.block_table`). ``read(ds, reads)`` reads the selections the table
    needs (key -> (variable, ``isel`` index), all at once; default :func:`values_each`), e.g.
    concurrently."""
    ev = _NOW if read is None else replace(_NOW, arrays=read)
    return _sample_table(ev, ds, period, predictors, how, min_valid_fraction, features, keep, ranges, count_column)


def _sample_table(ev: _Evaluation, ds: xr.Dataset, period: Composite | Sequence[dt.date], predictors: Sequence[str],
                  how: Aggregation, min_valid_fraction: float, features: Sequence[str] | None, keep: Keep,
                  ranges: bool, count_column: bool) -> Any:
    """:func:`sample_graph` (``ev`` lazy) or :func:`sample_table` (``ev`` now)."""
    check_predictors(ds, predictors)
    columns_of = tuple(features) if features is not None else tuple(predictors)
    region = Region.from_dict(ds.attrs["region"])
    cells, f = region.cell_ids, region.fine_per_coarse
    days = period_days(ds, period) if isinstance(period, Composite) else list(period)
    if not days:
        return ev.empty(list(columns_of))
    times = [np.datetime64(d, "ns") for d in days]
    layers_of: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {
        (name,): (name, _layer_index(ds, name, days)) for name in sorted({source_of(f) for f in columns_of})}
    selections = {("", "land"): ("land_mask", {}), ("", SMAP): (SMAP, {"time": _positions(ds, SMAP, "time", times)}),
                  **layers_of}
    got = ev.arrays(ds, selections)
    land = got.pop(("", "land")) == 1
    smap = got.pop(("", SMAP))
    raw = {key[0]: got[key] for key in layers_of}
    # impossible values: masked inside the aggregation tasks, or before a circular predictor
    # becomes sine and cosine; counted per cell from the raw layers
    layers = {name: ev.screen(name, layer) if name in CIRCULAR else layer for name, layer in raw.items()}
    bad = {name: ev.per_cell(count_cells, layer, land, np.int32, f, bounds=valid_range(name))
           for name, layer in raw.items() if valid_range(name) is not None}  # (t, cy, cx), or (cy, cx) if static
    columns: dict[str, Any] = {}
    for name, fine in feature_layers(layers, columns_of).items():
        bounds = valid_range(name) if source_of(name) == name else None
        stats = ev.statistics(fine, land, how=how, min_valid_fraction=min_valid_fraction, bounds=bounds,
                              ranges=ranges, factor=f)
        columns[name] = stats[0]
        if ranges:
            columns[f"{name}{RANGE_SUFFIX['min']}"], columns[f"{name}{RANGE_SUFFIX['max']}"] = stats[1:]
    required = list(columns_of) if keep == "complete" else [c for c in columns_of if is_static(ds, c)]
    return ev.table(times, cells, columns, smap, required, keep != "all", bad,
                    count_column, region.coarse_grid.ncols)


def smap_grid(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cube's whole SMAP ``(time, cy, cx)`` (``values``, read) as float32 with NaN where
    invalid (outside [0.02, 0.5] or infinite), and the mask of the values so masked."""
    return screen_range(SMAP, np.asarray(values, np.float32))  # type: ignore[return-value]


def table_to_grid(table: pd.DataFrame, values: np.ndarray, ds: xr.Dataset) -> np.ndarray:
    """Per-row values of a sample table placed on the cube's (time, cy, cx) SMAP grid (NaN
    where the table has no row)."""
    region = Region.from_dict(ds.attrs["region"])
    row0, col0, nrows, ncols = region.window(region.coarse_grid)
    times = pd.DatetimeIndex(ds["time"].values)
    out = np.full((len(times), nrows, ncols), np.nan, np.float32)
    ti = times.get_indexer(pd.DatetimeIndex(table["date"]))
    out[ti, table["row"].to_numpy() - row0, table["col"].to_numpy() - col0] = values
    return out


def empty_cube_cause(ds: Any) -> str | None:
    """Why a cube has no training sample, when the cause is an input that was never ingested:
    no valid SMAP on any day, or no land pixel; None otherwise.

    Parameters
    ----------
    ds
        The cube (:func:`dsm.cube.open_cube`); ``smap_sm`` (36 km) and ``land_mask`` are read.
    """
    if SMAP in ds:
        sm = np.asarray(ds[SMAP].values, np.float32)
        if not (np.isfinite(sm) & ~outside(sm, valid_range(SMAP) or (0.0, 1.0))).any():
            return ("it holds no SMAP soil moisture on any day (smap_sm is empty): no SMAP granule was ingested. "
                    "Configure inputs.smap (SPL3SMP files SMAP_L3_SM_P_*.h5 covering the dates) and run dsm ingest; "
                    "its report (<cube>.ingest_report.json) says what happened to each file")
    if "land_mask" in ds and not (ds["land_mask"].values == 1).any():
        return ("its land mask has no land pixel: give inputs.land_mask or inputs.dem (and soil) and run dsm ingest; "
                "the ingest report's land_mask_source says where the mask came from")
    return None
