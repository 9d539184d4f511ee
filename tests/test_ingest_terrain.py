"""DEM readers on the real SRTM tile, slope/aspect against independent finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import Geod, Transformer

from dsm.grid import EASE2_1KM, Region, lonlat_to_xy
from dsm.ingest import GeolocationError, UnreadableFileError, dem_to_region, read_hgt, read_many
from dsm.ingest.terrain import read_dem
from dsm.testing.granules import write_geotiff, write_srtm_hgt


@pytest.fixture(scope="module")
def hgt(shared_data):
    return shared_data / "dem" / "N44W072.hgt"


@pytest.fixture(scope="module")
def region():
    return Region.around(-71.45, 44.55, 1, 1)  # White Mountains, inside N44W072


@pytest.fixture(scope="module")
def dem_ds(hgt, region):
    ds, many = dem_to_region([hgt], region)
    assert [r.status for r in many.report] == ["used"]
    return ds


def test_read_hgt_layout(hgt):
    r = read_hgt(hgt)
    raw = np.fromfile(hgt, ">i2").reshape(1201, 1201)
    assert r.data.shape == (1201, 1201)
    np.testing.assert_array_equal(np.isnan(r.data), raw == -32768)
    np.testing.assert_array_equal(r.data[~np.isnan(r.data)], raw[raw != -32768])
    # sample (0, 0) is the point 45 N, 72 W; sample (1200, 1200) is 44 N, 71 W
    assert r.transform * (0.5, 0.5) == pytest.approx((-72.0, 45.0))
    assert r.transform * (1200.5, 1200.5) == pytest.approx((-71.0, 44.0))
    assert 100 < np.nanmin(r.data) and np.nanmax(r.data) < 1920  # Mt Washington 1917 m


def test_dem_is_the_mean_of_samples_in_each_cell(hgt, region, dem_ds):
    """Compare with the plain mean of the SRTM samples whose points fall inside each 1 km cell."""
    raw = np.fromfile(hgt, ">i2").reshape(1201, 1201).astype(float)
    lat = 45.0 - np.arange(1201) / 1200.0
    lon = -72.0 + np.arange(1201) / 1200.0
    lo, la = np.meshgrid(lon, lat)
    x, y = lonlat_to_xy(lo.ravel(), la.ravel())
    row, col = EASE2_1KM.index(x, y)
    row, col = row - region.fine_row0, col - region.fine_col0
    ny, nx = region.fine_shape
    ok = (row >= 0) & (row < ny) & (col >= 0) & (col < nx) & (raw.ravel() != -32768)
    idx = row[ok] * nx + col[ok]
    mean = np.bincount(idx, raw.ravel()[ok], ny * nx) / np.maximum(np.bincount(idx, minlength=ny * nx), 1)
    dem = dem_ds["dem"].values.ravel()
    diff = np.abs(dem - mean)
    assert not np.isnan(dem).any()
    assert np.median(diff) < 2.0 and np.percentile(diff, 99) < 15.0
    assert dem_ds["dem"].attrs["units"] == "m" and dem_ds["dem"].dims == ("y", "x")


def test_slope_aspect_against_independent_finite_differences(region, dem_ds):
    z = dem_ds["dem"].values.astype(np.float64)
    # ground spacing between neighbouring pixel centres measured on the ellipsoid
    geod = Geod(ellps="WGS84")
    lon, lat = region.fine_lon, region.fine_lat
    dx = geod.inv(np.full(lat.size, lon[0]), lat, np.full(lat.size, lon[1]), lat)[2]  # per row
    dy = geod.inv(np.full(lat.size - 2, lon[0]), lat[:-2], np.full(lat.size - 2, lon[0]), lat[2:])[2] / 2
    dy = np.concatenate([[dy[0]], dy, [dy[-1]]])
    # Horn's operator = central differences of the DEM smoothed by [1, 2, 1]/4 across the derivative
    zs_y = (np.roll(z, 1, 0) + 2 * z + np.roll(z, -1, 0)) / 4
    zs_x = (np.roll(z, 1, 1) + 2 * z + np.roll(z, -1, 1)) / 4
    dzdx = np.gradient(zs_y, axis=1) / dx[:, None]
    dzdy = -np.gradient(zs_x, axis=0) / dy[:, None]  # rows run north to south
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    aspect = np.degrees(np.arctan2(-dzdx, -dzdy)) % 360
    inner = (slice(2, -2), slice(2, -2))
    got_s = dem_ds["slope"].values[inner]
    got_a = dem_ds["aspect"].values[inner]
    np.testing.assert_allclose(got_s, slope[inner], atol=2e-3)
    steep = slope[inner] > 0.5
    dang = np.abs((got_a - aspect[inner] + 180) % 360 - 180)
    assert steep.sum() > 500 and dang[steep].max() < 0.05
    # plain (unsmoothed) central differences agree on the smooth part of the terrain
    plain = np.degrees(np.arctan(np.hypot(np.gradient(z, axis=1) / dx[:, None], np.gradient(z, axis=0) / dy[:, None])))
    assert np.median(np.abs(got_s - plain[inner])) < 1.0
    assert 5 < np.nanmax(got_s) < 45


def test_geotiff_plane_in_utm(tmp_path):
    """A tilted plane in UTM 19N: slope and aspect come back in ground units and true north."""
    a, b = 0.05, 0.02  # dz/dE, dz/dN on the UTM grid
    e = 500000.0 + (np.arange(1500) - 750) * 100.0
    n = 4900000.0 - (np.arange(1500) - 750) * 100.0
    z = 1000.0 + a * (e[None, :] - 500000.0) + b * (n[:, None] - 4900000.0)
    t = Affine(100.0, 0.0, e[0] - 50.0, 0.0, -100.0, n[0] + 50.0)
    p = write_geotiff(tmp_path / "plane_utm.tif", z.astype(np.float32), t, "EPSG:32619", nodata=-9999.0)
    lon, lat = Transformer.from_crs("EPSG:32619", "EPSG:4326", always_xy=True).transform(500000.0, 4900000.0)
    region = Region.around(lon, lat, 1, 1)
    ds, _ = dem_to_region([p], region)
    s = ds["slope"].values
    assert not np.isnan(s).any()
    expect = np.degrees(np.arctan(np.hypot(a, b)))
    assert np.abs(s - expect).max() < 0.01 * expect
    aspect = np.degrees(np.arctan2(-a, -b)) % 360
    assert np.abs(ds["aspect"].values - aspect).max() < 0.5  # UTM grid convergence on the CM is ~0


def test_srtm_mosaic_has_no_seam(tmp_path):
    """Two synthetic .hgt tiles sharing an edge: the 1 km DEM across the edge is continuous."""
    lat = 40.0 + (1200 - np.arange(1201)) / 1200.0
    for lon0 in (-100, -99):
        lon = lon0 + np.arange(1201) / 1200.0
        write_srtm_hgt(tmp_path, 40, lon0, 1000.0 + 300.0 * (lon[None, :] + 100.0) + 0.0 * lat[:, None])
    region = Region.around(-99.0, 40.5, 1, 1)
    ds, many = dem_to_region(sorted(tmp_path.glob("*.hgt")), region)
    assert [r.status for r in many.report] == ["used", "used"]
    dem = ds["dem"].values
    expect = 1000.0 + 300.0 * (region.fine_lon[None, :] + 100.0)
    inside = (region.fine_lon > -99.95) & (region.fine_lon < -98.05)
    np.testing.assert_allclose(dem[:, inside], np.broadcast_to(expect, dem.shape)[:, inside], atol=0.6)


def test_bad_dems(tmp_path, hgt):
    trunc = tmp_path / "N44W072.hgt"
    trunc.write_bytes(hgt.read_bytes()[:100000])
    noname = tmp_path / "dem.hgt"
    noname.write_bytes(hgt.read_bytes())
    nocrs = write_geotiff(tmp_path / "nocrs.tif", np.ones((10, 10), np.float32), Affine(1, 0, 0, 0, -1, 10), None)
    local = write_geotiff(
        tmp_path / "local.tif", np.ones((10, 10), np.float32), Affine(1, 0, 0, 0, -1, 10),
        'LOCAL_CS["arbitrary",LOCAL_DATUM["x",0],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]',
    )
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + b"\x13" * 500)
    void = write_srtm_hgt(tmp_path, 10, 10, np.full((1201, 1201), -32768, np.int16))
    many = read_many([hgt, trunc, noname, nocrs, local, garbage, void], read_dem)
    got = [(r.status, r.error) for r in many.report]
    assert got == [
        ("used", ""),
        ("failed", "UnreadableFileError"),
        ("failed", "UnreadableFileError"),
        ("failed", "GeolocationError"),
        ("failed", "GeolocationError"),
        ("failed", "UnreadableFileError"),
        ("skipped", "EmptyGranuleError"),
    ]
    assert "truncated" in many.report[1].reason and "no coordinate reference system" in many.report[3].reason
    with pytest.raises(GeolocationError, match=str(local)):
        read_dem(local)
    with pytest.raises(UnreadableFileError, match="N44W072"):
        read_hgt(noname)


def test_dems_off_the_region_are_skipped_and_impossible_elevations_refused(tmp_path, hgt, region):
    from dsm.ingest.rasters import ValueRule

    far = write_srtm_hgt(tmp_path, 10, 10, np.full((1201, 1201), 120, np.int16))  # N10E010: far from the region
    ds, many = dem_to_region([far], region)
    assert [(r.status, r.error) for r in many.report] == [("skipped", "NoOverlapError")]
    assert "does not overlap the region" in many.report[0].reason and np.isnan(ds["dem"].values).all()
    ds, many = dem_to_region([hgt, far], region)  # a folder of tiles: the one over the region is used
    assert [r.status for r in many.report] == ["used", "skipped"] and np.isfinite(ds["dem"].values).all()
    # a GeoTIFF DEM in centimetres: refused, unless inputs.dem.scale says so
    t = region.fine_transform
    cm = write_geotiff(tmp_path / "dem_cm.tif", np.full(region.fine_shape, 123400, np.int32), t, "EPSG:6933")
    ds, many = dem_to_region([cm], region, ValueRule(setting="inputs.dem"))
    assert [(r.status, r.error) for r in many.report] == [("failed", "WrongProductError")]
    assert "outside the valid range of dem [-500, 9000]" in many.report[0].reason
    assert "set inputs.dem.scale" in many.report[0].reason
    ds, many = dem_to_region([cm], region, ValueRule(scale=0.01, setting="inputs.dem"))
    assert many.report[0].status == "used"
    np.testing.assert_allclose(ds["dem"].values, 1234.0)


# -- precomputed slope and aspect (inputs.slope, inputs.aspect) ------------------------------
def test_precomputed_slope_is_averaged_and_aspect_takes_its_circular_mean(tmp_path, region):
    from dsm.ingest.rasters import ValueRule
    from dsm.ingest.terrain import terrain_layer

    # 0.001 degree (about 100 m) rasters over the region; columns alternate 350 and 10 degrees
    t = Affine(0.001, 0.0, -72.0, 0.0, -0.001, 45.0)
    cols = np.arange(1000)
    aspect = np.broadcast_to(np.where(cols % 2, 10.0, 350.0), (1000, 1000)).astype(np.float32)
    slope = np.broadcast_to(np.where(cols % 2, 10.0, 30.0), (1000, 1000)).astype(np.float32)
    out, many = terrain_layer([write_geotiff(tmp_path / "aspect.tif", aspect, t, "EPSG:4326")], "aspect", region)
    assert [r.status for r in many.report] == ["used"]
    a = out["aspect"]
    assert a.shape == region.fine_shape and np.isfinite(a).all()
    assert np.all(np.minimum(a, 360.0 - a) < 1.0)  # north: 350 and 10 average to 0, not 180
    out, _ = terrain_layer([write_geotiff(tmp_path / "slope.tif", slope, t, "EPSG:4326")], "slope", region)
    np.testing.assert_allclose(out["slope"], 20.0, atol=0.5)
    # values outside the valid range refuse the file, named with the setting to change
    percent = write_geotiff(tmp_path / "slope_percent.tif", slope * 5.0, t, "EPSG:4326")
    out, many = terrain_layer([percent], "slope", region, ValueRule(setting="inputs.slope"))
    assert out is None and (many.report[0].status, many.report[0].error) == ("failed", "WrongProductError")
    assert "outside the valid range of slope [0, 90]" in many.report[0].reason
    assert "set inputs.slope.scale, inputs.slope.offset or inputs.slope.nodata" in many.report[0].reason
    flat = aspect.copy()
    flat[:, :500] = -1.0  # ArcGIS marks flat cells -1: refused, unless nodata says so
    marked = write_geotiff(tmp_path / "aspect_arcgis.tif", flat, t, "EPSG:4326")
    _, many = terrain_layer([marked], "aspect", region)
    assert many.report[0].status == "failed" and "outside the valid range of aspect [0, 360]" in many.report[0].reason
    out, many = terrain_layer([marked], "aspect", region, ValueRule(nodata=-1, setting="inputs.aspect"))
    assert many.report[0].status == "used" and np.all(np.minimum(out["aspect"], 360 - out["aspect"])[np.isfinite(out["aspect"])] < 1.0)
