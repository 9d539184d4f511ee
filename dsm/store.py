"""Zarr stores at any fsspec URL: template creation, chunk-aligned region writes, opening.

Every dsm store (predictor cube, truth, products) is written the same way: the whole store
is first created as a *template* (metadata, coordinates and empty arrays, no data), then
filled by independent region writes whose bounds fall on chunk boundaries, so writers on
different workers never touch the same chunk and a rerun rewrites identical bytes. A store
carries ``dsm_store`` (its kind) and ``dsm_format`` attributes; :func:`open_store` checks them.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.core.buffer import Buffer

from dsm import files
from dsm.errors import LockLostError, StoreError, StoreNotFoundError
from dsm.storeref import StoreRef

FORMAT_VERSION = 1


def default_compressors() -> list[Any]:
    """Blosc-lz4 with byte shuffle (fast enough for hot data, see docs/architecture.md), then a
    CRC32C checksum of each stored chunk, which zarr verifies on every read: a damaged or
    foreign chunk is an error (:func:`read_values`), never silently decoded."""
    return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()]


def damaged_chunks(ref: StoreRef, name: str, shape: Sequence[int], chunks: Sequence[int], index: Sequence[slice],
                   read: Callable[[tuple[slice, ...]], Any], exc: BaseException) -> StoreError:
    """The error for a selection of ``ref``/``name`` that could not be read or decoded.

    Each chunk (of shape ``chunks``) that ``index`` (one slice per dimension) touches is read
    again alone with ``read``; the error names those that fail (their grid indices, as in the
    store's keys ``c/i/j/k``) and the first failure's cause.
    """
    ranges = _chunk_ranges(index, chunks)
    bad, cause = [], exc
    for key in itertools.product(*ranges):
        try:
            read(tuple(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(key, chunks, shape, strict=True)))
        except (ValueError, RuntimeError, OSError) as err:
            bad.append("/".join(map(str, key)))
            cause = err if len(bad) == 1 else cause
    where = f"chunk {', '.join(bad)}" if bad else "a chunk"
    return StoreError(f"{ref.url.rstrip('/')}/{name}: {where} cannot be read ({type(cause).__name__}: {cause}). The "
                      "store is damaged: rewrite that part (rerun the stage that wrote it) or restore it")


#: Threads per process that read the variables :func:`dsm.zarr_reads.read_selections` reads through xarray.
READ_THREADS = 8


@functools.cache
def read_threads() -> ThreadPoolExecutor:
    """This process's read threads (made on first use)."""
    return ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="dsm-read")


def read_values(ds: xr.Dataset, name: str, ref: StoreRef, **index: slice) -> np.ndarray:
    """``ds[name].isel(index)`` as a numpy array, a chunk that cannot be decoded raising
    :func:`damaged_chunks`'s error (store, variable, chunk) instead of a codec message."""
    var = ds[name]
    try:
        return np.asarray(var.isel(index).values)
    except (ValueError, RuntimeError, OSError) as exc:
        raise damaged_chunks(ref, str(name), var.shape, var.encoding.get("chunks", var.shape), bounded_slices(var, index),
                             lambda sl: var[sl].values, exc) from exc


def read_values_checked(ds: xr.Dataset, name: str, **index: Any) -> np.ndarray:
    """``ds[name]`` at ``index`` (:func:`read_values`), after :func:`require_chunks`: a chunk lost
    from rows recorded written, or one that cannot be decoded, is an error naming it."""
    ref = ds.encoding["store_ref"]
    require_chunks(ds, ref, name, **index)
    return read_values(ds, name, ref, **index)


def _chunk_ranges(selection: Sequence[slice], chunks: Sequence[int]) -> list[range]:
    """Per dimension, the chunk indices a selection (bounded slices) touches."""
    return [range(sl.start // c, max(sl.stop - 1, sl.start) // c + 1) for sl, c in zip(selection, chunks, strict=True)]


def bounded_slices(var: xr.DataArray, index: Mapping[str, Any]) -> list[slice]:
    """``index`` (an ``isel`` mapping of slices, integers or integer arrays) as one bounded slice
    per dimension (an array: the range its positions span)."""
    out = []
    for dim, n in zip(var.dims, var.shape, strict=True):
        s = index.get(str(dim), slice(None))
        if not isinstance(s, slice):  # an integer, or integer positions: the range they span
            pos = np.atleast_1d(np.asarray(s, np.int64))
            s = slice(int(pos.min()), int(pos.max()) + 1) if pos.size else slice(0, 0)
        start, stop, _ = s.indices(n)
        out.append(slice(start, stop))
    return out


def exists(ref: StoreRef) -> bool:
    """Whether a file, folder or object exists at ``ref``."""
    fs, path = ref.fs()
    return bool(fs.exists(path))


def is_store(ref: StoreRef) -> bool:
    """Whether a Zarr store (its ``zarr.json``) exists at ``ref``."""
    return exists(ref.join("zarr.json"))


def create(ref: StoreRef, template: xr.Dataset, kind: str, overwrite: bool = False) -> None:
    """Write a store's template: metadata and coordinates only, no data chunks.

    ``template`` holds dask-backed data variables (never computed) whose ``encoding``
    carries chunks and codecs. Refuses to replace an existing store unless ``overwrite``, which
    removes it first. The store is made in memory, then its objects are written together: on
    object storage one batch of concurrent requests, where zarr makes its arrays one request
    after another.
    """
    if not overwrite and is_store(ref):
        raise StoreError(f"a store already exists at {ref}; pass overwrite=True to replace it")
    ds = template.copy()
    ds.attrs = {**template.attrs, "dsm_store": kind, "dsm_format": FORMAT_VERSION}
    made: dict[str, Buffer] = {}
    ds.to_zarr(zarr.storage.MemoryStore(made), mode="w", compute=False, zarr_format=3, consolidated=False)
    fs, root = ref.fs()
    if fs.exists(root):
        fs.rm(root, recursive=True)
    files.write_all(fs, {f"{root}/{key}": buf.to_bytes() for key, buf in made.items()})


def root_attrs(ref: StoreRef) -> dict[str, Any] | None:
    """The root attributes of the Zarr store at ``ref``, read from its ``zarr.json`` without
    xarray or zarr (a store resized half way by a run that was killed is still read); None when
    there is no store."""
    fs, root = ref.fs()
    try:
        raw = fs.cat_file(f"{root}/zarr.json")
    except FileNotFoundError:
        return None
    return dict(json.loads(raw).get("attributes", {}))


@functools.lru_cache(maxsize=8)
def open_cached(ref: StoreRef, token: str, kind: str) -> xr.Dataset:
    """A store opened once per process and run (``token``), for the tasks of that run on a
    worker: ``kind`` ``"raw"`` reads numpy arrays on indexing (no dask), any other kind is
    :func:`open_store` of that kind with its own chunks. The dataset's ``encoding`` records
    its URL (``source``) and handle (``store_ref``)."""
    if kind == "raw":
        ds = xr.open_zarr(ref.url, chunks=None, consolidated=False, storage_options=ref.zarr_options,
                          mask_and_scale=True)
    else:
        ds = open_store(ref, kind)
    ds.encoding.update(source=ref.url, store_ref=ref)
    return ds


def open_store(ref: StoreRef, kind: str, chunks: Mapping[str, int] | None | str = "store") -> xr.Dataset:
    """Open a dsm store lazily and check that it is of ``kind``; ``ds.encoding["store_ref"]`` is ``ref``.

    Parameters
    ----------
    chunks
        ``"store"`` (default) for the store's own chunks as dask arrays, or any value
        accepted by :func:`xarray.open_zarr`.
    """
    try:
        if not is_store(ref):
            raise StoreNotFoundError(f"no Zarr store at {ref} (no zarr.json found)")
        dask_chunks: Any = {} if chunks == "store" else (dict(chunks) if isinstance(chunks, Mapping) else chunks)
        ds = xr.open_zarr(ref.url, chunks=dask_chunks, consolidated=False, storage_options=ref.zarr_options)
    except StoreError:
        raise
    except (OSError, ValueError, KeyError, zarr.errors.BaseZarrError) as exc:
        raise StoreError(f"cannot open {ref} as a Zarr store: {exc}") from exc
    found = ds.attrs.get("dsm_store")
    if found != kind:
        what = f"a dsm {found} store" if found else "not a dsm store (no 'dsm_store' attribute)"
        raise StoreError(f"{ref} is {what}, expected a dsm {kind} store")
    if ds.attrs.get("dsm_format") != FORMAT_VERSION:
        raise StoreError(
            f"{ref} has dsm_format {ds.attrs.get('dsm_format')!r}; this dsm reads format {FORMAT_VERSION}"
        )
    ds.encoding["store_ref"] = ref
    return ds



def store_ref_of(ds: xr.Dataset) -> StoreRef:
    """The handle of the store ``ds`` was opened from (``ds.encoding["store_ref"]``, set by
    :func:`dsm.store.open_store`).

    Raises
    ------
    ValueError
        ``ds`` was not opened by :func:`dsm.store.open_store` (or :func:`dsm.cube.open_cube`).
    """
    ref = ds.encoding.get("store_ref")
    if not isinstance(ref, StoreRef):
        raise ValueError("the dataset records no store (ds.encoding['store_ref']): open the cube with "
                         "dsm.cube.open_cube or dsm.store.open_store")
    return ref

def region_slices(store: xr.Dataset, part: xr.Dataset | xr.DataArray) -> dict[Hashable, slice]:
    """Index slices of ``part`` inside ``store``, found from their dimension coordinates.

    Raises :class:`StoreError` if a coordinate of ``part`` is not a contiguous run of the
    store's coordinate.
    """
    out: dict[Hashable, slice] = {}
    for dim in part.dims:
        full = store.indexes[dim]
        sub = part.indexes[dim] if dim in part.indexes else None
        if sub is None:
            raise StoreError(f"cannot place data without a '{dim}' coordinate")
        start = full.get_indexer(sub[:1])[0]
        if start < 0 or not full[start : start + len(sub)].equals(sub):
            raise StoreError(f"'{dim}' values of the data are not a contiguous part of the store's")
        out[dim] = slice(int(start), int(start) + len(sub))
    return out


def _check_aligned(name: Hashable, region: Mapping[Hashable, slice], chunks: tuple[int, ...],
                   dims: tuple[Hashable, ...], shape: tuple[int, ...]) -> None:
    for dim, size, chunk in zip(dims, shape, chunks, strict=True):
        sl = region[dim]
        if sl.start % chunk or (sl.stop % chunk and sl.stop != size):
            raise StoreError(
                f"region write of '{name}' along '{dim}' [{sl.start}:{sl.stop}] is not aligned to "
                f"the store's chunks of {chunk}: concurrent writers could corrupt a chunk"
            )


_CF_KEYS = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset", "units", "calendar")


def encode_like(var: xr.Variable, target: xr.DataArray, name: Hashable) -> np.ndarray:
    """``var`` encoded exactly as the store encodes ``target`` (dtype, fill, CF packing)."""
    v = var.copy(deep=False)
    v.attrs = {}
    v.encoding = {k: target.encoding[k] for k in _CF_KEYS if k in target.encoding}
    return np.asarray(xr.conventions.encode_cf_variable(v, name=name).values)


def write_region(ref: StoreRef, part: xr.Dataset, store: xr.Dataset | None = None
                 ) -> dict[Hashable, dict[Hashable, slice]]:
    """Write ``part`` (data variables with dimension coordinates) into its place in a store.

    Each variable is CF-encoded with the store's own encoding (dtype, ``_FillValue``,
    ``scale_factor``) and written into its Zarr array at the region found from its
    coordinates. Region bounds must fall on the store's chunk boundaries, for numpy and
    dask data alike, so concurrent writers never share a chunk. Only the arrays written
    are opened (one metadata read each), which matters on object storage.

    Parameters
    ----------
    store
        The store opened with :func:`open_store` (saves re-opening it on every call).

    Returns
    -------
    The region written, per variable.
    """
    so = ref.zarr_options
    if store is None:
        store = xr.open_zarr(ref.url, consolidated=False, storage_options=so)
    written: dict[Hashable, dict[Hashable, slice]] = {}
    writes: dict[Hashable, Callable[[], None]] = {}
    for name, var in part.data_vars.items():
        if name not in store.data_vars:
            raise StoreError(f"variable '{name}' is not in the store at {ref}")
        target = store[name]
        if tuple(target.dims) != tuple(var.dims):
            raise StoreError(f"'{name}' has dims {tuple(var.dims)}, the store has {tuple(target.dims)}")
        region = region_slices(store, var)
        _check_aligned(name, region, tuple(target.encoding["chunks"]), target.dims, target.shape)
        writes[name] = functools.partial(_write_array, ref.join(str(name)), tuple(region[d] for d in target.dims),
                                         encode_like(var.variable, target, name))
        written[name] = region
    write_together(writes)
    return written


def _write_array(ref: StoreRef, where: tuple[slice, ...], data: np.ndarray) -> None:
    array = zarr.open_array(ref.url, mode="r+", storage_options=ref.zarr_options)
    # every chunk of a written region is stored, empty or not: a chunk missing where its
    # row is recorded written (WRITTEN_ATTR) is lost data, never "no data" (require_chunks)
    array.with_config({"write_empty_chunks": True})[where] = data


#: Threads per process that write a block's arrays together (:func:`write_together`).
WRITE_THREADS = 4


@functools.cache
def write_threads() -> ThreadPoolExecutor:
    """This process's write threads (made on first use)."""
    return ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="dsm-write")


def write_together(writes: Mapping[Any, Callable[[], None]]) -> None:
    """Every write at once, on :data:`WRITE_THREADS` threads (each array's metadata read and
    chunk writes overlap those of the others, which counts on object storage); waits for all of
    them, then raises the first error in the order of ``writes``."""
    futures = [write_threads().submit(fn) for fn in writes.values()]
    errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err


WRITTEN_ATTR = "chunks_written"
"""Store attribute: per variable, the ranges ``[start, stop)`` along its first axis that were
written (every chunk of those rows is stored, :func:`write_region`)."""


REVISION_ATTR = "inputs_revision"
"""Store attribute (the cube): how many runs changed its values (:func:`record_written`). Predict
records it with each day, and makes a day it found empty again once it has moved: new inputs
may have arrived for it."""


def record_written(ref: StoreRef, attrs: Mapping[str, Any],
                   *wrote: Mapping[str, Sequence[int]], also: Mapping[str, Any] | None = None) -> None:
    """Add the rows of each ``{variable: [start, stop]}`` in ``wrote`` to the written-rows record
    (:data:`WRITTEN_ATTR`) of the store at ``ref``, whose attributes are ``attrs``, and count one
    more revision (:data:`REVISION_ATTR`), with the attributes ``also``, in one metadata write;
    nothing when nothing was written."""
    wrote = tuple(w for w in wrote if w)
    if not wrote:
        return
    set_attrs(ref, {WRITTEN_ATTR: merge_written(attrs.get(WRITTEN_ATTR, {}), *wrote),
                    REVISION_ATTR: int(attrs.get(REVISION_ATTR, 0)) + 1, **dict(also or {})})


def first_axis_ranges(regions: Mapping[Hashable, Mapping[Hashable, slice]]) -> dict[str, list[int]]:
    """``{variable: [start, stop]}`` along each variable's first axis, from :func:`write_region`'s result."""
    return {str(name): [int(next(iter(r.values())).start), int(next(iter(r.values())).stop)]
            for name, r in regions.items()}


def merge_written(recorded: Mapping[str, Sequence[Sequence[int]]], *wrote: Mapping[str, Sequence[int]]
                  ) -> dict[str, list[list[int]]]:
    """``recorded`` ranges per variable with each ``{variable: [start, stop]}`` of ``wrote`` added
    (overlapping and touching ranges joined)."""
    ranges = {k: [list(r) for r in v] for k, v in recorded.items()}
    for w in wrote:
        for name, (start, stop) in w.items():
            ranges.setdefault(name, []).append([int(start), int(stop)])
    out: dict[str, list[list[int]]] = {}
    for name, rs in ranges.items():
        joined: list[list[int]] = []
        for start, stop in sorted(rs):
            if joined and start <= joined[-1][1]:
                joined[-1][1] = max(joined[-1][1], stop)
            else:
                joined.append([start, stop])
        out[name] = joined
    return {k: out[k] for k in sorted(out)}


def written_chunks(ds: xr.Dataset, name: str, **index: Any) -> list[tuple[int, ...]]:
    """The grid indices of the chunks of ``ds[name]`` under ``index`` that lie in rows recorded
    written (:data:`WRITTEN_ATTR`), so must be stored."""
    rows = ds.attrs.get(WRITTEN_ATTR, {}).get(name)
    if not rows:
        return []
    var = ds[name]
    chunks = var.encoding.get("chunks", var.shape)
    return [key for key in itertools.product(*_chunk_ranges(bounded_slices(var, index), chunks))
            if row_written(rows, key[0], chunks[0])]


def lost_chunks_error(ds: xr.Dataset, ref: StoreRef, name: str, missing: Sequence[tuple[int, ...]]) -> StoreError:
    """The error for chunks (grid indices) of ``ds[name]`` missing although their rows were written."""
    var = ds[name]
    chunks = var.encoding.get("chunks", var.shape)
    keys = ", ".join("c/" + "/".join(map(str, k)) for k in missing)
    first = sorted({k[0] for k in missing})
    spans = ", ".join(f"{k * chunks[0]}..{min((k + 1) * chunks[0], var.shape[0]) - 1}" for k in first)
    return StoreError(f"{ref.url.rstrip('/')}/{name}: chunk {keys} is missing although it was written (index "
                      f"{spans} of {var.dims[0]}): the data is lost. Restore it, or rebuild the cube "
                      "(dsm ingest CONFIG; dsm twin CONFIG --overwrite for a twin)")


def require_chunks(ds: xr.Dataset, ref: StoreRef, name: str, **index: slice) -> None:
    """Raise when a chunk of ``ds[name]`` under ``index`` is missing from a row recorded written.

    A missing chunk reads as fill values: without this check lost data would pass for cloud or
    water. Rows not recorded (:data:`WRITTEN_ATTR`) are not checked: nothing was written there.

    Raises
    ------
    StoreError
        Naming the store, the variable, the missing chunk keys and the indices of the first
        axis (days) they hold (:func:`lost_chunks_error`).
    """
    fs, root = ref.join(name).fs()
    missing = [key for key in written_chunks(ds, name, **index)
               if not fs.exists("/".join((root, "c", *map(str, key))))]
    if missing:
        raise lost_chunks_error(ds, ref, name, missing)


def chunk_keys(shape: Sequence[int], chunks: Sequence[int], row: int) -> list[str]:
    """The keys (``c/row/j/k``) of every chunk of row ``row`` along the first axis of an array."""
    rest = [range(-(-n // c)) for n, c in zip(shape[1:], chunks[1:], strict=True)]
    return ["/".join(map(str, ("c", row, *key))) for key in itertools.product(*rest)]


def row_written(ranges: Sequence[Sequence[int]], row: int, chunk: int) -> bool:
    """Whether chunk row ``row`` (rows of ``chunk`` along the first axis) lies in a recorded written range."""
    return any(a <= row * chunk < b for a, b in ranges)


def missing_chunks(ref: StoreRef, name: str, shape: Sequence[int], chunks: Sequence[int],
                   rows: Sequence[int]) -> list[str]:
    """Keys of the chunks of ``rows`` (along the first axis) of ``ref``/``name`` absent from the
    store, found with one listing (of the row when there is one, else of the variable)."""
    if not rows:
        return []
    fs, root = ref.join(name).fs()
    prefix = f"{root}/"
    present = {p[len(prefix):] for p in fs.find(f"{prefix}c/{rows[0]}" if len(rows) == 1 else f"{prefix}c")}
    return [k for r in rows for k in chunk_keys(shape, chunks, r) if k not in present]


def lost_chunks(ds: xr.Dataset, ref: StoreRef, name: str) -> list[str]:
    """Keys of ``ds[name]``'s chunks missing from the rows recorded written (:data:`WRITTEN_ATTR`)."""
    ranges = ds.attrs.get(WRITTEN_ATTR, {}).get(name, [])
    var = ds[name]
    chunks = var.encoding.get("chunks", var.shape)
    rows = [r for r in range(-(-var.shape[0] // chunks[0])) if row_written(ranges, r, chunks[0])]
    return missing_chunks(ref, name, var.shape, chunks, rows)


def require_present(ds: xr.Dataset, ref: StoreRef, names: Sequence[str]) -> None:
    """Raise naming every chunk of ``names`` lost from rows recorded written (:func:`lost_chunks`).

    Raises
    ------
    StoreError
        Naming the store, each variable and its missing chunk keys.
    """
    lost = {n: keys for n in names if n in ds and (keys := lost_chunks(ds, ref, n))}
    if lost:
        listed = "; ".join(f"{n}: {', '.join(k[:5])}{' ...' if len(k) > 5 else ''} ({len(k)} chunks)" for n, k in lost.items())
        raise StoreError(f"{ref.url.rstrip('/')}: chunks missing although they were written ({listed}): the data is "
                         "lost. Restore them, or rebuild the cube (dsm ingest CONFIG; dsm twin CONFIG --overwrite "
                         "for a twin); dsm verify CONFIG lists every damaged chunk")


FENCE_ATTR = "fence"
"""Store attribute: the fencing token of the lease that last wrote the store's records
(:attr:`dsm.runlock.RunLock.fence`)."""


def set_attrs(ref: StoreRef, attrs: Mapping[str, Any], fence: int | None = None) -> None:
    """Update top-level store attributes (JSON-serialisable values) in ONE metadata write: zarr's
    ``attrs.update`` writes once per key, so a run killed between keys could leave one record
    ahead of another. (The products' records of days are not attributes: :mod:`dsm.ledger`.)

    With ``fence`` (the writer's lease token, :attr:`dsm.runlock.RunLock.fence`) the write is
    refused when the store records a larger token (a later run has written its records since:
    this writer's lease was taken over), and the token is recorded (:data:`FENCE_ATTR`).

    Raises
    ------
    LockLostError
        A later lease's token is recorded: nothing is written.
    """
    group = zarr.open_group(ref.url, mode="r+", storage_options=ref.zarr_options)
    if fence is not None:
        check_fence(ref.url, group.attrs.get(FENCE_ATTR), fence)
        attrs = {**attrs, FENCE_ATTR: int(fence)}
    group.update_attributes(json.loads(json.dumps(dict(attrs))))  # one write of zarr.json


def check_fence(url: str, recorded: Any, fence: int) -> None:
    """Refuse a write by the lease of token ``fence`` when the store at ``url`` records the token
    ``recorded`` (:data:`FENCE_ATTR`) of a later lease.

    Raises
    ------
    LockLostError
        ``recorded`` is larger than ``fence``: this writer's lease was taken over.
    """
    if recorded is not None and int(recorded) > fence:
        raise LockLostError(f"{url}: a later run (lease token {recorded}) has written its records since this run's "
                            f"lease (token {fence}) was taken over; this run stops without writing")


def encoding_for(dtype: np.dtype, chunks: tuple[int, ...], fill: Any) -> dict[str, Any]:
    """Zarr format 3 encoding for one variable."""
    return {"chunks": chunks, "compressors": default_compressors(), "_FillValue": fill,
            "dtype": np.dtype(dtype)}
