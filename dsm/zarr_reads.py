"""Many selections of a Zarr store read in one call of zarr's async API (IO edge).

A prediction block reads a few dozen selections of different arrays of the cube. Through
xarray (or zarr's synchronous API) each selection enters zarr's event loop on its own and waits
for its own requests and decoding. :func:`read_selections` hands them all to that loop in one
``asyncio.gather``: every array's requests are in flight together, which counts on object
storage, and the fixed cost of a call is paid once, which counts on local disk (docs: the
"Performance" section of the README).

Only variables whose stored values xarray would not change are read this way: stored and
decoded dtype the same, no ``scale_factor``/``add_offset``, no fill value other than NaN (the
predictor cube's). Any other variable is read through xarray on the read threads
(:func:`dsm.store.read_threads`), so both give the same arrays. The errors are those of
:func:`dsm.store.read_values`: a chunk missing from rows recorded written
(:func:`dsm.store.require_chunks`) or one that cannot be decoded (:func:`dsm.store.damaged_chunks`)
names the store, the variable and the chunk. Only the chunks whose part of a selection holds
nothing but the fill value (all a missing chunk can read as) are looked up, so a block on object
storage makes no request beyond its reads in the usual case.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import xarray as xr
import zarr.api.asynchronous as zarr_async
from zarr import AsyncArray, AsyncGroup
from zarr.core.sync import sync

from dsm import store
from dsm.storeref import StoreRef

__all__ = ["read_selections", "read_variable"]

K = TypeVar("K")

#: ``ds.encoding`` key of a dataset's :class:`_Arrays` (made on first use).
_ARRAYS = "dsm_zarr_arrays"


class _Arrays:
    """The async arrays of one store, each opened (its metadata read) once, on zarr's loop."""

    def __init__(self, ref: StoreRef) -> None:
        self.ref = ref
        self._group: AsyncGroup | None = None
        self._arrays: dict[str, AsyncArray[Any]] = {}

    def __reduce__(self) -> tuple[Any, ...]:  # a copy elsewhere opens its own arrays
        return (_Arrays, (self.ref,))

    async def get(self, name: str) -> AsyncArray[Any]:
        """The array ``name`` of the store."""
        if name not in self._arrays:
            if self._group is None:
                self._group = await zarr_async.open_group(store=self.ref.url, mode="r",
                                                          storage_options=self.ref.zarr_options)
            found = await self._group.getitem(name)
            if not isinstance(found, AsyncArray):
                raise TypeError(f"{self.ref.url.rstrip('/')}/{name} is a group, not an array")
            self._arrays[name] = found
        return self._arrays[name]


def _arrays(ds: xr.Dataset) -> _Arrays:
    arrays = ds.encoding.get(_ARRAYS)
    if arrays is None:
        arrays = ds.encoding[_ARRAYS] = _Arrays(ds.encoding["store_ref"])
    return arrays


def stored_as_read(var: xr.DataArray) -> bool:
    """Whether xarray gives ``var``'s stored values unchanged: the same dtype, no scale or
    offset, and no fill value other than NaN to mask."""
    enc = var.encoding
    fill = enc.get("_FillValue")
    no_mask = fill is None or (isinstance(fill, float | np.floating) and bool(np.isnan(fill)))
    return (enc.get("dtype") == var.dtype and enc.get("scale_factor") is None and enc.get("add_offset") is None
            and no_mask)


def _key(var: xr.DataArray, index: Mapping[str, Any]) -> tuple[Any, ...]:
    """``index`` (an ``isel`` mapping of slices, integers or integer arrays) as a selection of the
    stored array."""
    picks = (index.get(str(d), slice(None)) for d in var.dims)
    return tuple(i if isinstance(i, slice) else (int(i) if np.ndim(i) == 0 else np.asarray(i, np.intp)) for i in picks)


def _from_chunk(values: np.ndarray, key: tuple[Any, ...], shape: tuple[int, ...], chunks: tuple[int, ...],
                grid: tuple[int, ...]) -> np.ndarray | None:
    """The part of ``values`` (read with selection ``key``) that came from the chunk at grid
    index ``grid``; None for a selection this does not follow (a slice with a step)."""
    part, axis = values, 0
    for sel, n, c, k in zip(key, shape, chunks, grid, strict=True):
        lo, hi = k * c, min((k + 1) * c, n)
        if isinstance(sel, slice):
            start, stop, step = sel.indices(n)
            if step != 1:
                return None
            part = part[(slice(None),) * axis + (slice(max(lo, start) - start, max(min(hi, stop) - start, 0)),)]
        elif isinstance(sel, np.ndarray):
            part = np.take(part, np.flatnonzero((sel >= lo) & (sel < hi)), axis=axis)
        else:
            continue  # an integer: its axis is gone
        axis += 1
    return part


def _only_fill(part: np.ndarray | None, fill: Any) -> bool:
    """Whether ``part`` holds nothing but the fill value (what a missing chunk reads as); True
    when unknown (None)."""
    if part is None:
        return True
    if part.size == 0:
        return False
    if isinstance(fill, float | np.floating) and np.isnan(fill):
        return bool(np.isnan(part).all())
    return bool((part == fill).all())


async def _read_one(ds: xr.Dataset, arrays: _Arrays, name: str, index: Mapping[str, Any]) -> np.ndarray:
    """Read one selection; a chunk in rows recorded written whose part holds only the fill value
    is checked to exist (a missing chunk reads as fill values: lost data would pass for cloud or
    water), a request for those chunks only."""
    arr = await arrays.get(name)
    key = _key(ds[name], index)
    values = np.asarray(await (arr.get_orthogonal_selection(key) if any(isinstance(k, np.ndarray) for k in key)
                               else arr.getitem(key)))  # as xarray's isel
    grid = tuple(arr.chunks)
    suspect = [k for k in store.written_chunks(ds, name, **index)
               if _only_fill(_from_chunk(values, key, arr.shape, grid, k), arr.metadata.fill_value)]
    stored = await asyncio.gather(*((arr.store_path / arr.metadata.encode_chunk_key(k)).exists() for k in suspect))
    missing = [k for k, there in zip(suspect, stored, strict=True) if not there]
    if missing:
        raise store.lost_chunks_error(ds, ds.encoding["store_ref"], name, missing)
    return values


async def _gather(ds: xr.Dataset, reads: Mapping[K, tuple[str, Mapping[str, Any]]]) -> list[Any]:
    arrays = _arrays(ds)
    return await asyncio.gather(*(_read_one(ds, arrays, name, index) for name, index in reads.values()),
                                return_exceptions=True)


def _raise(ds: xr.Dataset, name: str, index: Mapping[str, Any], exc: BaseException) -> None:
    """Raise ``exc``, a chunk that cannot be read or decoded as :func:`dsm.store.damaged_chunks`."""
    if not isinstance(exc, ValueError | RuntimeError | OSError):
        raise exc
    var, ref = ds[name], ds.encoding["store_ref"]
    arrays = _arrays(ds)

    def read(sel: tuple[slice, ...]) -> Any:
        async def one() -> Any:
            return await (await arrays.get(name)).getitem(sel)
        return sync(one())

    raise store.damaged_chunks(ref, name, var.shape, var.encoding.get("chunks", var.shape),
                               store.bounded_slices(var, index), read, exc) from exc


def read_selections(ds: xr.Dataset, reads: Mapping[K, tuple[str, Mapping[str, Any]]]) -> dict[K, np.ndarray]:
    """Every read ``key -> (variable, isel index: slices, integers, integer arrays; dimensions the
    variable lacks ignored)`` of ``ds`` (a store opened by
    :func:`dsm.store.open_cached` or :func:`dsm.store.open_store`) at once (module docstring);
    errors are raised in the order of ``reads``."""
    direct = {k: r for k, r in reads.items() if stored_as_read(ds[r[0]])}
    through_xarray = {k: functools.partial(store.read_values_checked, ds, name,
                                           **{d: i for d, i in index.items() if d in ds[name].dims})
                      for k, (name, index) in reads.items() if k not in direct}
    others = {k: store.read_threads().submit(fn) for k, fn in through_xarray.items()}
    got = dict(zip(direct, sync(_gather(ds, direct)), strict=True)) if direct else {}
    out = {}
    for key, (name, index) in reads.items():
        if key in others:
            out[key] = others[key].result()
            continue
        value = got[key]
        if isinstance(value, BaseException):
            _raise(ds, name, index, value)
        out[key] = value
    return out


def read_variable(ds: xr.Dataset, name: str) -> np.ndarray:
    """The whole of ``ds[name]`` (:func:`read_selections`: every chunk requested at once)."""
    return read_selections(ds, {name: (name, {})})[name]
