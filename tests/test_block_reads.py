"""A prediction block reads its layers together, on the worker's read threads (:func:`dsm.blocks.read_all`)."""

from __future__ import annotations

import datetime as dt
import shutil
import threading

import numpy as np
import pytest

from dsm import blocks, store
from dsm.errors import StoreError
from dsm.periods import composite_8day_of, period_of
from dsm.storeref import StoreRef


def _expected(cube, name: str, day, ys: slice, xs: slice) -> np.ndarray:
    """The layer of ``name`` for ``day``, selected by label here (not by the code under test)."""
    labels = {"time": day, "time_8d": composite_8day_of(day).start, "time_16d": period_of(day).start}
    var = cube[name]
    where = {dim: np.datetime64(labels[dim], "ns") for dim in var.dims if dim in labels}
    return np.asarray(var.sel(where).isel(y=ys, x=xs).values, np.float32)


def test_a_blocks_layers_are_read_together_on_the_read_threads(tiny_twin, monkeypatch):
    cube = store.open_cached(tiny_twin.cube, "read-all-test", "raw")
    days = [d.date() for d in cube.indexes["time"]]
    # two consecutive days in the same 8-day and 16-day composites
    day = next(d for d, e in zip(days, days[1:], strict=False)
               if composite_8day_of(d) == composite_8day_of(e) and period_of(d) == period_of(e))
    nxt = day + dt.timedelta(days=1)
    names = ["lst", "albedo", "lai", "ndvi", "dem", "aspect"]  # daily, 8-day, 16-day and static layers
    ys, xs = slice(36, 108), slice(0, 72)
    threads: list[str] = []
    read = blocks._read

    def recording(ds, name, **index):
        threads.append(threading.current_thread().name)
        return read(ds, name, **index)

    monkeypatch.setattr(blocks, "_read", recording)
    cache: dict = {}
    got = blocks.block_features(cube, day, names, ys, xs, cache)
    for name in names:
        np.testing.assert_array_equal(got[name], _expected(cube, name, day, ys, xs))
        assert got[name].dtype == np.float32
    assert len(threads) == len(names) and all(t.startswith("dsm-read") for t in threads)
    # the next day reads only its daily layers; the composites and static layers come from the cache
    got = blocks.block_features(cube, nxt, names, ys, xs, cache)
    assert len(threads) == len(names) + sum("time" in cube[n].dims for n in names) == len(names) + 2
    for name in names:
        np.testing.assert_array_equal(got[name], _expected(cube, name, nxt, ys, xs))


def test_a_failed_read_among_many_is_raised_with_its_store_error(tiny_twin, tmp_path):
    url = tmp_path / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, url)
    ref = StoreRef.of(str(url))
    cube = store.open_cached(ref, "read-all-fail", "raw")
    (url / "dem" / "c" / "0" / "0").write_bytes(b"not a chunk")
    reads = {name: (name, {"y": slice(0, 72), "x": slice(0, 72)}) for name in ("aspect", "dem", "slope")}
    with pytest.raises(StoreError, match="dem"):
        blocks.read_all(cube, reads)
