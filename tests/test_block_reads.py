"""A prediction block reads its layers together, in one call of zarr's async API (:func:`dsm.blocks.read_all`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
import shutil
import threading

import numpy as np
import pytest

from dsm import blocks, store, zarr_reads
from dsm.errors import StoreError
from dsm.periods import composite_8day_of, period_of
from dsm.storeref import StoreRef


def _expected(cube, name: str, day, ys: slice, xs: slice) -> np.ndarray:
    """The layer of ``name`` for ``day``, selected by label here (not by the code under test)."""
    labels = {"time": day, "time_8d": composite_8day_of(day).start, "time_16d": period_of(day).start}
    var = cube[name]
    where = {dim: np.datetime64(labels[dim], "ns") for dim in var.dims if dim in labels}
    return np.asarray(var.sel(where).isel(y=ys, x=xs).values, np.float32)


def test_a_blocks_layers_are_read_together_in_one_call(tiny_twin, read_calls):
    cube = store.open_cached(tiny_twin.cube, "read-all-test", "raw")
    days = [d.date() for d in cube.indexes["time"]]
    # two consecutive days in the same 8-day and 16-day composites
    day = next(d for d, e in zip(days, days[1:], strict=False)
               if composite_8day_of(d) == composite_8day_of(e) and period_of(d) == period_of(e))
    nxt = day + dt.timedelta(days=1)
    names = ["lst", "albedo", "lai", "ndvi", "dem", "aspect"]  # daily, 8-day, 16-day and static layers
    ys, xs = slice(36, 108), slice(0, 72)
    calls = read_calls
    cache: dict = {}
    got = blocks.block_features(cube, day, names, ys, xs, cache)
    for name in names:
        np.testing.assert_array_equal(got[name], _expected(cube, name, day, ys, xs))
        assert got[name].dtype == np.float32
    assert calls == [sorted(names)]
    # the next day reads only its daily layers; the composites and static layers come from the cache
    got = blocks.block_features(cube, nxt, names, ys, xs, cache)
    assert calls[1] == sorted(n for n in names if "time" in cube[n].dims) == ["albedo", "lst"]
    for name in names:
        np.testing.assert_array_equal(got[name], _expected(cube, name, nxt, ys, xs))


def test_selections_read_together_equal_xarrays_for_stored_and_decoded_variables(tiny_twin, tmp_path):
    """The cube's variables are read through zarr's async API, a scaled int16 one through xarray:
    both give what xarray's ``isel`` gives, integer indices dropping their dimension."""
    cube = store.open_cached(tiny_twin.cube, "read-selections", "raw")
    reads = {}
    for name, var in cube.data_vars.items():
        index = {d: (slice(3, 70) if d in ("y", "x") else (1 if cube.sizes[d] > 1 else 0)) for d in var.dims}
        reads[name] = (name, index)
        reads[(name, "whole")] = (name, {})
    assert all(zarr_reads.stored_as_read(cube[n]) for n in ("lst", "land_mask", "smap_sm", "dem"))
    got = zarr_reads.read_selections(cube, reads)
    for key, (name, index) in reads.items():
        want = cube[name].isel(index).values
        assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want)
    import xarray as xr

    url = tmp_path / "scaled.zarr"
    sm = np.array([[0.1234, np.nan], [0.5, 0.25]])
    xr.Dataset({"sm": (("y", "x"), sm), "n": (("y", "x"), np.ones((2, 2), np.float32))}).to_zarr(
        url, zarr_format=3, consolidated=False,
        encoding={"sm": {"dtype": "int16", "scale_factor": 1e-4, "_FillValue": -9999}})
    ds = store.open_cached(StoreRef.of(str(url)), "read-selections", "raw")
    assert not zarr_reads.stored_as_read(ds["sm"]) and zarr_reads.stored_as_read(ds["n"])
    # dimensions a variable lacks are ignored, on either path
    both = zarr_reads.read_selections(ds, {"sm": ("sm", {"y": 0, "cy": slice(0, 1)}), "n": ("n", {"cx": 3})})
    np.testing.assert_allclose(both["sm"], [0.1234, np.nan])
    np.testing.assert_array_equal(both["n"], np.ones((2, 2)))
    import pickle

    copy = pickle.loads(pickle.dumps(ds))  # travels without the arrays it opened, and opens its own
    np.testing.assert_array_equal(zarr_reads.read_variable(copy, "n"), np.ones((2, 2)))


def test_a_failed_read_among_many_is_raised_with_its_store_error(tiny_twin, tmp_path):
    url = tmp_path / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, url)
    ref = StoreRef.of(str(url))
    cube = store.open_cached(ref, "read-all-fail", "raw")
    (url / "dem" / "c" / "0" / "0").write_bytes(b"not a chunk")
    reads = {name: (name, {"y": slice(0, 72), "x": slice(0, 72)}) for name in ("aspect", "dem", "slope")}
    with pytest.raises(StoreError, match="dem"):
        blocks.read_all(cube, reads)


def test_a_sample_tables_layers_are_read_together_and_give_the_table_read_one_by_one(tiny_twin, read_calls):
    from dsm.grid import Region
    from dsm.periods import periods
    from dsm.sample_tables import block_table
    from dsm.samples import sample_table

    cube = store.open_cached(tiny_twin.cube, "table-reads", "raw")
    period = periods(dt.date(2016, 6, 9), dt.date(2016, 6, 24))[0]
    names = ["lst", "albedo", "ndvi", "dem", "aspect"]
    calls = read_calls
    got = block_table(tiny_twin.cube, "table-reads", period, names, 72, 144, 72, 144, {})  # not at the origin
    assert calls == [sorted([*names, "land_mask", "smap_sm"])]  # one call, land and SMAP too
    sub = cube.isel(y=slice(72, 144), x=slice(72, 144), cy=slice(2, 4), cx=slice(2, 4))
    region = Region.from_dict(cube.attrs["region"])
    sub = sub.assign_attrs(region=Region(region.row0 + 2, region.col0 + 2, 2, 2, region.coarse_km).to_dict())
    one_by_one = sample_table(sub, period, names)  # read through xarray, one after another
    assert len(got) > 0
    assert got.equals(one_by_one)


def test_every_predictor_set_of_a_block_is_tabled_from_one_read(tiny_twin, read_calls):
    """block_tables: the largest set is read in one call and the others take its layers, each
    set's table the one block_table makes of it alone; a layer no set read before is read then."""
    from dsm.periods import periods
    from dsm.sample_tables import block_table, block_tables

    period = periods(dt.date(2016, 6, 9), dt.date(2016, 6, 24))[0]
    full = ["lst", "albedo", "ndvi", "dem", "aspect"]
    sets = [["dem", "aspect"], full, ["albedo", "ndvi", "dem", "aspect"]]  # the largest not first
    together = block_tables(tiny_twin.cube, "set-reads", period, sets, 72, 144, 72, 144, {})
    assert read_calls == [sorted([*full, "land_mask", "smap_sm"])]
    read_calls.clear()
    alone = [block_table(tiny_twin.cube, "set-reads", period, s, 72, 144, 72, 144, {}) for s in sets]
    assert len(read_calls) == len(sets)
    for got, want in zip(together, alone, strict=True):
        assert len(want) > 0 and list(got.columns) == list(want.columns)
        assert got.equals(want) and got.attrs == want.attrs
    assert len(together[0]) > len(together[1])  # the sets keep different rows
    read_calls.clear()
    block_tables(tiny_twin.cube, "set-reads", period, [["lst", "dem"], ["ndvi", "dem"]], 72, 144, 72, 144, {})
    assert read_calls == [sorted(["lst", "dem", "land_mask", "smap_sm"]), ["ndvi"]]


def test_a_blocks_arrays_are_written_together_and_a_failed_write_is_raised_after_the_others(tmp_path, monkeypatch):
    import xarray as xr

    url = tmp_path / "w.zarr"
    ds = xr.Dataset({n: (("y", "x"), np.zeros((4, 4), np.float32)) for n in ("a", "b", "c")},
                    coords={"y": np.arange(4.0), "x": np.arange(4.0)})
    ds.to_zarr(url, zarr_format=3, consolidated=False, encoding={n: {"chunks": (2, 2)} for n in ("a", "b", "c")})
    ref = StoreRef.of(str(url))
    threads: list[str] = []
    write = store._write_array

    def recording(where_ref, where, data):
        threads.append(threading.current_thread().name)
        return write(where_ref, where, data)

    monkeypatch.setattr(store, "_write_array", recording)
    part = xr.Dataset({n: (("y", "x"), np.full((2, 2), v, np.float32)) for n, v in (("a", 1), ("b", 2), ("c", 3))},
                      coords={"y": [2.0, 3.0], "x": [0.0, 1.0]})
    store.write_region(ref, part)
    assert len(threads) == 3 and all(t.startswith("dsm-write") for t in threads)
    back = xr.open_zarr(url, consolidated=False)
    for n, v in (("a", 1), ("b", 2), ("c", 3)):
        np.testing.assert_array_equal(back[n].values[2:, :2], v)
        assert (back[n].values[:2] == 0).all()
    shutil.rmtree(url / "b")  # an array gone: its write fails, the others are still made
    part = part + 1
    with pytest.raises(FileNotFoundError, match="w.zarr/b"):
        store.write_region(ref, part, back)  # opened before: it still lists b
    again = xr.open_zarr(url, consolidated=False, chunks=None)
    np.testing.assert_array_equal(again["a"].values[2:, :2], 2)
    np.testing.assert_array_equal(again["c"].values[2:, :2], 4)


def test_blocks_go_to_the_workers_in_turn_in_time_order_and_read_ahead_only_from_remote_cubes(client):
    from dsm.blocks import BlockJob
    from dsm.stages.predict import _in_turn

    workers = sorted(client.scheduler_info()["workers"])
    assert len(workers) == 2

    def jobs(cube: str) -> dict[int, list[BlockJob]]:
        ref = StoreRef.of(cube)
        return {t0: [BlockJob(ref, ref, ref, "turn", t0, t0 + 8, y0, y0 + 72, 0, 72, (),
                              cells=f"cell means {t0} {y0}")  # type: ignore[arg-type]  # a stand-in
                     for y0 in (0, 72, 144)] for t0 in (0, 8)}

    for cube, ahead in (("s3://bucket/cube.zarr", True), ("/data/cube.zarr", False), ("file:///data/cube.zarr", False)):
        placed = _in_turn(client, jobs(cube))
        order = [job for js in jobs(cube).values() for job in js]
        assert [(j.t0, j.y0) for j, _ in placed] == [(j.t0, j.y0) for j in order]
        assert [p["priority"] for _, p in placed] == [0, -1, -2, -3, -4, -5]  # the first submitted runs first
        assert [p["workers"] for _, p in placed] == [[workers[k % 2]] for k in range(6)]
        assert all(p["allow_other_workers"] for _, p in placed)
        # each block names the one its worker takes next, without a chain of them or its cell
        # means (its reads need neither)
        want = [replace(order[k + 2], cells=None) if ahead and k + 2 < 6 else None for k in range(6)]
        assert [j.ahead for j, _ in placed] == want
        assert all(j.ahead is None or j.ahead.ahead is None for j, _ in placed)
        assert all(j.cells is not None for j, _ in placed)


def test_a_chunk_lost_under_a_sample_tables_days_is_an_error_and_only_fill_chunks_are_looked_up(
        tiny_twin, tmp_path, monkeypatch):
    """Daily layers read at integer positions (an orthogonal selection over two time chunks) with
    the second chunk gone: the table fails naming it. Chunks that read as data are not looked up."""
    from dsm.periods import periods
    from dsm.sample_tables import block_table

    url = tmp_path / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, url)
    ref = StoreRef.of(str(url))
    period = periods(dt.date(2016, 6, 9), dt.date(2016, 6, 24))[0]
    looked: list[bool] = []
    only_fill = zarr_reads._only_fill

    def recording(part, fill):
        found = only_fill(part, fill)
        looked.append(found)
        return found

    monkeypatch.setattr(zarr_reads, "_only_fill", recording)
    table = block_table(ref, "lost-daily", period, ["lst", "ndvi", "dem"], 0, 72, 72, 144, {})
    assert len(table) and looked and not any(looked)  # every chunk read as data: none looked up
    (url / "lst" / "c" / "1" / "0" / "1").unlink()  # days 8-15 of the period's 0-15
    with pytest.raises(StoreError, match=r"lst: chunk c/1/0/1 is missing although it was written"):
        block_table(ref, "lost-daily-2", period, ["lst", "ndvi", "dem"], 0, 72, 72, 144, {})
