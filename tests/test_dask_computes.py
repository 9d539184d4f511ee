"""The graph builders build and never compute (dsm.testing.assert_maximum_dask_computes)."""

from __future__ import annotations

import datetime as dt

import dask.array as da
import pytest

from dsm import config as config_mod
from dsm import store
from dsm.cube import Layout, cube_template, open_cube
from dsm.models.disaggregation import pixel_sample_graph
from dsm.periods import periods
from dsm.samples import sample_graph
from dsm.storeref import StoreRef
from dsm.testing import TooManyComputesError, assert_maximum_dask_computes


def test_the_counter_allows_the_limit_and_fails_the_next_computation():
    x = da.arange(10, chunks=5)
    with assert_maximum_dask_computes(2) as seen:
        assert int(x.sum().compute()) == 45
        assert x.max().compute() == 9
        assert seen.count == 2
        with pytest.raises(TooManyComputesError, match="number 3: at most 2"):
            x.min().compute()
    with assert_maximum_dask_computes(0), pytest.raises(TooManyComputesError):
        bool(x.sum() > 0)  # an implicit computation counts as well
    with pytest.raises(ValueError, match="limit"), assert_maximum_dask_computes(-1):
        pass


def test_the_sample_graphs_compute_nothing_until_asked_once(tiny_twin):
    cube = open_cube(tiny_twin.cube)
    period = periods(dt.date(2016, 6, 9), dt.date(2016, 7, 10))[0]
    with assert_maximum_dask_computes(0):
        graph = sample_graph(cube, period, ["lst", "ndvi", "dem", "sand"], keep="smap", ranges=True)
        pixels = pixel_sample_graph(cube, period, ["lst", "dem", "aspect_sin", "doy_sin"], pixels_per_cell=8)
    with assert_maximum_dask_computes(1):
        table = graph.compute()
    with assert_maximum_dask_computes(1):
        drawn = pixels.compute()
    assert len(table) > 0 and {"sm", "lst", "lst__min", "lst__max"} <= set(table.columns)
    assert len(drawn) > 0


def test_a_store_template_is_written_without_computing_its_data(tmp_path):
    cfg = config_mod.from_dict({"region": {"cells": [74, 772, 2, 2]}, "dates": {"start": "2016-06-03",
                                "end": "2016-06-20"}, "stores": {"cube": str(tmp_path / "cube.zarr")}})
    template = cube_template(Layout.from_config(cfg))
    assert any(isinstance(v.data, da.Array) for v in template.data_vars.values())
    with assert_maximum_dask_computes(0):
        store.create(StoreRef(str(tmp_path / "cube.zarr")), template, "cube")
    assert store.exists(StoreRef(str(tmp_path / "cube.zarr/zarr.json")))
