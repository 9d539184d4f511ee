"""The predictor cube: schema, template, chunk-aligned region writes, local and S3 round trips."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import xarray as xr
from dask.utils import key_split
from distributed import get_task_stream

from dsm import cube, store
from dsm.errors import ConfigError, StoreError
from dsm.grid import Region
from dsm.storeref import StoreRef

LAYOUT = cube.Layout(Region(72, 770, 2, 3), dt.date(2016, 6, 9), dt.date(2016, 6, 30), 36, 8)


def _fill(ds: xr.Dataset, names, seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    part = ds[list(names)].reset_coords(drop=True).compute()
    for n in names:
        part[n] = part[n].copy(data=rng.random(part[n].shape).astype(part[n].dtype))
    return part


def test_schema_has_the_14_predictors_on_their_native_axes():
    axes = {v.name: v.axis for v in cube.SCHEMA}
    assert axes["lst"] == axes["albedo"] == "daily"
    assert {axes[v] for v in ("lai", "fapar", "ndwi", "lswi", "nsdsi")} == {"8day"}
    assert axes["ndvi"] == axes["evi"] == "16day" and axes["smap_sm"] == "smap"
    assert {axes[v] for v in ("dem", "slope", "aspect", "sand", "silt", "clay", "land_mask")} == {"static"}
    from dsm.config import PAPER_PREDICTORS

    assert set(PAPER_PREDICTORS) <= cube.PREDICTOR_NAMES and "fapar" in cube.PREDICTOR_NAMES


def test_template_round_trip_local(tmp_path):
    url = StoreRef(str(tmp_path / "cube.zarr"))
    cube.create_cube(url, LAYOUT)
    ds = cube.open_cube(url)
    # axes and coordinates of the layout
    assert ds.sizes["time"] == 22 and ds.sizes["time_8d"] == 3 and ds.sizes["time_16d"] == 2
    assert ds.sizes["y"] == 72 and ds.sizes["x"] == 108 and ds.sizes["cy"] == 2 and ds.sizes["cx"] == 3
    np.testing.assert_array_equal(ds["x"].values, LAYOUT.region.fine_x)
    assert str(ds["time_16d"].values[1])[:10] == "2016-06-25"
    # CRS, CF attributes and chunking
    assert ds.rio.crs.to_epsg() == 6933
    assert ds.rio.transform().almost_equals(LAYOUT.region.fine_transform, precision=1e-6)
    smap = ds["smap_sm"].rio.set_spatial_dims(x_dim="cx", y_dim="cy")
    assert smap.rio.crs.to_epsg() == 6933
    assert smap.rio.transform().almost_equals(LAYOUT.region.coarse_transform, precision=1e-6)
    for spec in cube.SCHEMA:
        v = ds[spec.name]
        assert v.attrs["units"] == spec.units and v.attrs["long_name"]
        mapping = v.attrs.get("grid_mapping", v.encoding.get("grid_mapping"))
        assert mapping == ("spatial_ref_36km" if spec.axis == "smap" else "spatial_ref")
        chunks = v.encoding["chunks"]
        for dim, c in zip(v.dims, chunks):
            if dim in ("y", "x"):
                assert c % 36 == 0
    assert ds["lst"].encoding["chunks"] == (8, 36, 36)
    # everything empty until written
    assert np.isnan(ds["lst"].values).all()

    part = _fill(ds.isel(time=slice(8, 16), y=slice(36, 72)), ["lst", "albedo"], seed=1)
    store.write_region(url, part)
    static = _fill(ds, ["dem", "sand"], seed=2)
    store.write_region(url, static)
    back = cube.open_cube(url)
    np.testing.assert_array_equal(back["lst"].isel(time=slice(8, 16), y=slice(36, 72)).values, part["lst"].values)
    assert np.isnan(back["lst"].isel(time=slice(0, 8)).values).all()
    assert np.isnan(back["lst"].isel(time=slice(8, 16), y=slice(0, 36)).values).all()
    np.testing.assert_array_equal(back["dem"].values, static["dem"].values)
    assert isinstance(back["lst"].data, type(ds["lst"].data))  # lazy (dask)


def test_misaligned_region_writes_are_refused(tmp_path):
    url = StoreRef(str(tmp_path / "cube.zarr"))
    cube.create_cube(url, LAYOUT)
    ds = cube.open_cube(url)
    with pytest.raises(StoreError, match="not aligned"):
        store.write_region(url, _fill(ds.isel(time=slice(2, 10)), ["lst"]))
    with pytest.raises(StoreError, match="not aligned"):
        store.write_region(url, _fill(ds.isel(y=slice(10, 46)), ["dem"]))
    # the last, partial time chunk is aligned
    store.write_region(url, _fill(ds.isel(time=slice(16, 22)), ["lst"]))
    other = _fill(ds.isel(time=slice(0, 8)), ["lst"]).assign_coords(time=ds["time"].values[0:8] + np.timedelta64(365, "D"))
    with pytest.raises(StoreError, match="not a contiguous part"):
        store.write_region(url, other)


def test_open_errors_name_the_url(tmp_path):
    missing = str(tmp_path / "nothing.zarr")
    with pytest.raises(StoreError, match="no Zarr store at .*nothing.zarr"):
        cube.open_cube(missing)
    plain = str(tmp_path / "plain.zarr")
    xr.Dataset({"a": ("x", np.arange(3))}).to_zarr(plain, zarr_format=3, consolidated=False)
    with pytest.raises(StoreError, match="plain.zarr is not a dsm store"):
        cube.open_cube(plain)
    url = StoreRef(str(tmp_path / "cube.zarr"))
    cube.create_cube(url, LAYOUT)
    with pytest.raises(StoreError, match="already exists"):
        cube.create_cube(url, LAYOUT)
    with pytest.raises(StoreError, match="dsm cube store, expected a dsm truth"):
        store.open_store(url, "truth")


def test_layout_refuses_bad_chunks():
    with pytest.raises(ConfigError, match="multiple of 36"):
        cube.Layout(LAYOUT.region, LAYOUT.start, LAYOUT.end, 100, 8)


def test_layout_is_recovered_from_a_store(tmp_path):
    url = StoreRef(str(tmp_path / "cube.zarr"))
    cube.create_cube(url, LAYOUT)
    assert cube.layout_of(cube.open_cube(url)) == LAYOUT


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.timeout(180)
def test_round_trip_through_a_real_s3_server(s3):
    bucket = s3.make_bucket("cube-roundtrip")
    url = StoreRef(f"{bucket}/run1/cube.zarr", s3.storage_options)
    cube.create_cube(url, LAYOUT)
    ds = cube.open_cube(url)
    part = _fill(ds.isel(time=slice(0, 8)), ["lst"], seed=3)
    store.write_region(url, part)
    back = cube.open_cube(url)
    np.testing.assert_array_equal(back["lst"].isel(time=slice(0, 8)).values, part["lst"].values)
    assert back.rio.crs.to_epsg() == 6933
    # the chunk objects really are in the bucket
    fs = s3.filesystem()
    keys = fs.find(f"{url.url}/lst")
    assert any("/c/0/0/0" in k for k in keys)
    with pytest.raises(StoreError, match="no Zarr store"):
        cube.open_cube(url.at(f"{bucket}/elsewhere.zarr"))


def test_the_layers_of_a_day_one_rule_for_every_axis():
    from dsm.periods import composite_8day_of, period_of

    day = dt.date(2016, 7, 20)
    assert cube.layer_time("lst", day) == ("time", day)
    assert cube.layer_time("smap_sm", day) == ("time", day)
    assert cube.layer_time("precip", day) == ("time_precip", day)
    assert cube.layer_time("lai", day) == ("time_8d", composite_8day_of(day).start)
    assert cube.layer_time("ndvi", day) == ("time_16d", period_of(day).start)
    assert composite_8day_of(day).start != day and period_of(day).start not in (day, composite_8day_of(day).start)
    assert cube.layer_time("dem", day) is None and cube.layer_dim("dem") is None
    assert cube.layer_time("not_a_variable", day) is None
    # the rule is the cube's own: each non-static variable's first dimension
    for spec in cube.SCHEMA:
        assert cube.layer_dim(spec.name) == (None if spec.axis == "static" else spec.dims[0])


def test_valid_fractions_count_every_value_in_range_over_land(tiny_twin, tmp_path, client):
    """One task per spatial block counts each variable's values within its valid range over
    land (SMAP: every cell), a time chunk at a time: the fractions of the whole arrays, exactly,
    in process and on the workers."""
    import shutil

    path = str(tmp_path / "cube.zarr")
    shutil.copytree(tiny_twin.cube.url, path)
    ds = cube.open_cube(path)
    lst = ds["lst"].values.copy()
    lst[3, 10:20, 70:80] = 400.0  # out of range (K), across two spatial blocks
    ndvi = ds["ndvi"].values.copy()
    ndvi[0, :5, :] = np.nan
    smap = ds["smap_sm"].values.copy()
    smap[5, 0, :] = 0.9  # above smap_sm's range
    part = xr.Dataset({"lst": (("time", "y", "x"), lst), "ndvi": (("time_16d", "y", "x"), ndvi),
                       "smap_sm": (("time", "cy", "cx"), smap)},
                      coords={d: ds[d].values for d in ("time", "time_16d", "y", "x", "cy", "cx")})
    store.write_region(StoreRef(path), part, ds)
    ds = cube.open_cube(path)
    land = ds["land_mask"].values == 1
    want = {}
    for spec in cube.SCHEMA:
        v = ds[spec.name].values
        ok = (v >= spec.valid_range[0]) & (v <= spec.valid_range[1])
        want[spec.name] = (land.mean() if spec.name == "land_mask" else ok.mean() if spec.axis == "smap"
                           else ok[..., land].mean())
    assert want["lst"] < 1 and want["ndvi"] < 1 and want["smap_sm"] < 1
    assert cube.valid_fractions_of(ds) == pytest.approx(want, rel=0, abs=1e-15)
    with client.as_current(), get_task_stream(client) as stream:  # the default scheduler: the cluster
        assert cube.valid_fractions_of(ds) == pytest.approx(want, rel=0, abs=1e-15)
    assert sorted(key_split(t["key"]) for t in stream.data) == ["block_counts"] * 4  # 2 x 2 blocks of 72
