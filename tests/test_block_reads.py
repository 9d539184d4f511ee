"""A prediction block reads its layers together, on the worker's read threads (:func:`dsm.blocks.read_all`)."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from dsm import blocks, store
from dsm.errors import StoreError
from dsm.storeref import StoreRef


def test_a_blocks_layers_are_read_together_on_the_read_threads(tiny_twin, monkeypatch):
    cube = store.open_cached(tiny_twin.cube, "read-all-test", "raw")
    day = cube.indexes["time"][20].date()
    names = ["lst", "ndvi", "albedo", "dem", "aspect"]  # daily, 16-day, 8-day and static layers
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
        _, index = blocks.layer_read(cube, name, day)
        want = np.asarray(cube[name].isel({**index, "y": ys, "x": xs}).values, np.float32)
        np.testing.assert_array_equal(got[name], want)
        assert got[name].dtype == np.float32
    assert len(threads) == len(names) and all(t.startswith("dsm-read") for t in threads)
    blocks.block_features(cube, day, names, ys, xs, cache)
    assert len(threads) == len(names)  # the second day of the same layers reads nothing


def test_a_failed_read_among_many_is_raised_with_its_store_error(tiny_twin, tmp_path):
    url = tmp_path / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, url)
    ref = StoreRef.of(str(url))
    cube = store.open_cached(ref, "read-all-fail", "raw")
    (url / "dem" / "c" / "0" / "0").write_bytes(b"not a chunk")
    reads = {name: (name, {"y": slice(0, 72), "x": slice(0, 72)}) for name in ("aspect", "dem", "slope")}
    with pytest.raises(StoreError, match="dem"):
        blocks.read_all(cube, reads)
