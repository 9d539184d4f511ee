"""Sample tables of many periods on the cluster, one task per (period, spatial block).

:func:`dsm.samples.sample_graph` describes a period's sample table as one dask graph over the
whole cube: with every predictor, aggregation, count and range a blockwise step per chunk,
that is thousands of tasks of a few milliseconds per period, and the graphs of a year weigh
megabytes on the scheduler ("Sending large graph"). :func:`sample_tables` computes the same
tables with one task per (period, block of the cube's spatial chunks): the task opens the cube,
reads its block and computes the same table with the same array functions on numpy
(:func:`dsm.samples.sample_table`), without a dask task per chunk and step;
the blocks' rows are put back in the order of the whole-cube table (day, then cell) and their
counts of masked values summed, so the tables are identical. Tables of several predictor sets
of the same days (a period's model and its reduced variants) are made by the same task from one
read of its block (:func:`table_set_futures`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client, Future

from dsm import store, zarr_reads
from dsm.grid import Region
from dsm.periods import Composite
from dsm.samples import OUT_OF_RANGE_ATTR, Reads, sample_table, table_counts
from dsm.storeref import StoreRef

__all__ = ["block_table", "block_tables", "sample_tables", "table_futures", "table_set_futures", "within"]

KM_PER_CELL = 36  # Region counts its rows and columns in 36 km cells on either SMAP grid


def block_table(cube: StoreRef, token: str, days: Composite | Sequence[dt.date], predictors: Sequence[str],
                y0: int, y1: int, x0: int, x1: int, options: Mapping[str, Any]) -> pd.DataFrame:
    """The sample table of ``days`` on pixels ``y0:y1, x0:x1`` of the cube at ``cube``
    (:func:`block_tables` of one predictor set)."""
    return block_tables(cube, token, days, [predictors], y0, y1, x0, x1, options)[0]


def block_tables(cube: StoreRef, token: str, days: Composite | Sequence[dt.date],
                 predictor_sets: Sequence[Sequence[str]], y0: int, y1: int, x0: int, x1: int,
                 options: Mapping[str, Any]) -> list[pd.DataFrame]:
    """The sample tables of ``days`` on pixels ``y0:y1, x0:x1`` of the cube at ``cube`` (whole 36
    km cells), one per predictor set, computed here with numpy (runs on a worker; the cube opened
    once per worker and ``token``, :func:`dsm.store.open_cached`; ``options``:
    :func:`~dsm.samples.sample_graph`'s keywords).

    The layers are read together in one call of zarr's async API
    (:func:`dsm.zarr_reads.read_selections`), once for all the sets: the largest set is tabled
    first and the others take the layers it read (a layer none read before is read then)."""
    ds = store.open_cached(cube, token, "raw")  # numpy on indexing: the block is read here, whole
    region = Region.from_dict(ds.attrs["region"])
    f = region.fine_per_coarse
    at = {"y": slice(y0, y1), "x": slice(x0, x1), "cy": slice(y0 // f, y1 // f), "cx": slice(x0 // f, x1 // f)}
    part = Region(region.row0 + y0 // KM_PER_CELL, region.col0 + x0 // KM_PER_CELL, (y1 - y0) // KM_PER_CELL,
                  (x1 - x0) // KM_PER_CELL, region.coarse_km)
    sub = ds.isel(at).assign_attrs(region=part.to_dict())  # a copy: the cached dataset keeps its own
    kept: dict[Any, np.ndarray] = {}  # the same days and block for every set: a key is the same selection

    def read(_: xr.Dataset, reads: Reads) -> dict[Any, np.ndarray]:  # the block's selections, of the whole cube
        todo = {k: (name, within(at, index)) for k, (name, index) in reads.items() if k not in kept}
        if todo:
            kept.update(zarr_reads.read_selections(ds, todo))
        return {k: kept[k] for k in reads}

    order = sorted(range(len(predictor_sets)), key=lambda i: -len(predictor_sets[i]))
    tables = {i: sample_table(sub, days, predictor_sets[i], **options, read=read) for i in order}
    return [tables[i] for i in range(len(predictor_sets))]


def within(outer: Mapping[str, slice], index: Mapping[str, Any]) -> dict[str, Any]:
    """``index`` (``isel``: slices, integers or integer arrays) of the part ``outer`` (bounded
    slices, step 1) of a dataset, as an index of the whole."""
    out = dict(index)
    for dim, part in outer.items():
        sel = index.get(dim, slice(None))
        if isinstance(sel, slice):
            start, stop, step = sel.indices(part.stop - part.start)
            out[dim] = slice(part.start + start, part.start + stop, step)
        else:
            out[dim] = part.start + np.asarray(sel)
    return out


def _merge(blocks: Sequence[Sequence[pd.DataFrame]], which: int) -> pd.DataFrame:
    """One period's tables of predictor set ``which`` (of each block's :func:`block_tables`) as
    the whole-cube table: rows by day, then cell."""
    parts = [b[which] for b in blocks]
    nonempty = [t for t in parts if len(t)]
    table = (pd.concat(nonempty, ignore_index=True).sort_values(["date", "cell"], kind="stable", ignore_index=True)
             if nonempty else parts[0].copy())
    table.attrs = {OUT_OF_RANGE_ATTR: table_counts(parts)}
    return table


def table_futures(client: Client, ds: xr.Dataset, day_sets: Sequence[Composite | Sequence[dt.date]],
                  predictors: Sequence[str], **options: Any) -> list[Future]:
    """:func:`sample_tables`, left on the workers: one future per table."""
    return [futures[0] for futures in table_set_futures(client, ds, day_sets, [predictors], **options)]


def table_set_futures(client: Client, ds: xr.Dataset, day_sets: Sequence[Composite | Sequence[dt.date]],
                      predictor_sets: Sequence[Sequence[str]], **options: Any) -> list[list[Future]]:
    """The tables of every predictor set for every day set, left on the workers (``[day set][set]``):
    one task per (day set, spatial block) tables all the sets from one read of the block
    (:func:`block_tables`), so a period's block is read once however many sets it has."""
    ref = store.store_ref_of(ds)
    token = uuid.uuid4().hex  # the cube is opened once per worker for these tables, afresh for the next ones
    chunks = ds["land_mask"].encoding.get("chunks") or ds["land_mask"].shape
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    blocks = [(y0, min(y0 + chunks[0], ny), x0, min(x0 + chunks[1], nx))
              for y0 in range(0, ny, chunks[0]) for x0 in range(0, nx, chunks[1])]
    sets = [list(p) for p in predictor_sets]
    out = []
    for days in day_sets:
        parts = [client.submit(block_tables, ref, token, days, sets, *b, dict(options), pure=False) for b in blocks]
        out.append([client.submit(_merge, parts, i, pure=False) for i in range(len(sets))])
    return out


def sample_tables(client: Client, ds: xr.Dataset, day_sets: Sequence[Composite | Sequence[dt.date]],
                  predictors: Sequence[str], **options: Any) -> list[pd.DataFrame]:
    """:func:`~dsm.samples.sample_graph`'s table of each period or list of days, computed on
    the workers with one task per (period, spatial block of the cube's chunks) (module
    docstring).

    Parameters
    ----------
    client
        The cluster.
    ds
        The cube, opened lazily with its own chunks by :func:`dsm.cube.open_cube` (the workers
        open it again from ``ds.encoding["store_ref"]``, :func:`dsm.store.store_ref_of`).
    day_sets
        The days of each table: a period (the days of it the cube holds) or a list of days.
    predictors
        Predictor names, in column order.
    options
        :func:`~dsm.samples.sample_graph`'s other arguments (``how``, ``min_valid_fraction``,
        ``features``, ``keep``, ``ranges``, ``count_column``).

    Returns
    -------
    list of pandas.DataFrame
        One table per period or list of days, identical to :func:`~dsm.samples.sample_graph`'s.
    """
    tables: list[pd.DataFrame] = client.gather(table_futures(client, ds, day_sets, predictors, **options))
    return tables
