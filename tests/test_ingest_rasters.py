"""Soil texture rasters, per-date GeoTIFF series, file-name dates and the many-files report."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from affine import Affine

from dsm.filedates import DEFAULT_DATE_REGEX
from dsm.grid import Region
from dsm.ingest import (
    InputDateError,
    WrongProductError,
    date_from_name,
    geotiff_series_to_region,
    read_many,
    soil_to_region,
)
from dsm.testing.granules import write_geotiff

REGION = Region.around(110.0, 40.0, 1, 2)  # northern China, 1 x 2 SMAP cells


def _geographic(tmp_path, name, array, nodata=None):
    """A 0.01-degree raster covering 108-113 E, 38-42 N."""
    t = Affine(0.01, 0.0, 108.0, 0.0, -0.01, 42.0)
    return write_geotiff(tmp_path / name, array, t, "EPSG:4326", nodata=nodata)


def test_soil_texture_percent(tmp_path):
    lon = 108.005 + np.arange(500) * 0.01
    sand = np.broadcast_to(20.0 + 10.0 * (lon - 108.0), (400, 500)).astype(np.float32)  # 20..70 %
    clay = np.full((400, 500), 15.0, np.float32)
    clay[:5, :5] = -1  # nodata corner, outside the region
    silt = (100.0 - sand - 15.0).astype(np.float32)
    paths = {
        "sand": _geographic(tmp_path, "sand.tif", sand),
        "silt": _geographic(tmp_path, "silt.tif", silt),
        "clay": _geographic(tmp_path, "clay.tif", clay, nodata=-1),
    }
    ds = soil_to_region(paths, REGION)
    assert set(ds.data_vars) == {"sand", "silt", "clay"} and ds["sand"].attrs["units"] == "%"
    assert not np.isnan(ds["sand"].values).any()
    np.testing.assert_allclose(ds["clay"].values, 15.0, atol=1e-4)
    expect = 20.0 + 10.0 * (REGION.fine_lon - 108.0)
    np.testing.assert_allclose(ds["sand"].values, np.broadcast_to(expect, REGION.fine_shape), atol=0.1)
    np.testing.assert_allclose((ds["sand"] + ds["silt"] + ds["clay"]).values, 100.0, atol=1e-3)
    assert ds.attrs["pixels_sum_off_by_5pct"] == 0
    # g/kg (SoilGrids) needs scale=0.1; without it the unit mistake is an input error
    gkg = _geographic(tmp_path, "sand_gkg.tif", (sand * 10).astype(np.int16))
    with pytest.raises(WrongProductError, match="not percent"):
        soil_to_region({"sand": gkg}, REGION)
    np.testing.assert_allclose(soil_to_region({"sand": gkg}, REGION, scale=0.1)["sand"].values, ds["sand"].values, atol=0.05)


def test_geotiff_series_with_dates_from_names(tmp_path):
    files = []
    for day, value in ((dt.date(2021, 8, 15), 300.0), (dt.date(2021, 8, 13), 290.0)):
        a = np.full((400, 500), value, np.float32)
        a[200:, :] = np.nan  # south half missing
        files.append(_geographic(tmp_path, f"lst_{day:%Y%j}.tif", a, nodata=np.nan))
    files.append(_geographic(tmp_path, "lst_nodate.tif", np.ones((400, 500), np.float32)))
    far = write_geotiff(tmp_path / "lst_2021227_far.tif", np.ones((10, 10), np.float32),
                        Affine(0.01, 0, -60.0, 0, -0.01, 0.0), "EPSG:4326")
    da, many = geotiff_series_to_region([*files, far], REGION, "lst", date_regex=r"_(?P<year>\d{4})(?P<doy>\d{3})", resampling="nearest", attrs={"units": "K"})
    assert [(r.status, r.error) for r in many.report] == [
        ("used", ""), ("used", ""), ("failed", "InputDateError"), ("skipped", "NoOverlapError")
    ]
    assert da.dims == ("time", "y", "x") and list(da.time.values.astype("datetime64[D]").astype(str)) == ["2021-08-13", "2021-08-15"]
    north = REGION.fine_lat > 40.0 + 0.02
    south = REGION.fine_lat < 40.0 - 0.02
    assert (da.values[0][north] == 290.0).all() and (da.values[1][north] == 300.0).all()
    assert np.isnan(da.values[:, south]).all()
    assert da.attrs["units"] == "K" and da.attrs["grid_mapping"] == "spatial_ref"


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("MOD11A1.A2021227.h11v05.061.2021228105320.hdf", dt.date(2021, 8, 15)),
        ("SMAP_L3_SM_P_20150410_R19240_001.h5", dt.date(2015, 4, 10)),
        ("albedo_2016-02-29.tif", dt.date(2016, 2, 29)),
        ("/data/2019/ndvi_2016_12_31.tif", dt.date(2016, 12, 31)),
    ],
)
def test_date_from_name(name, expect):
    assert date_from_name(name) == expect


def test_bad_dates_from_names():
    with pytest.raises(InputDateError, match="no date"):
        date_from_name("/x/lst.tif")
    with pytest.raises(InputDateError, match="not a valid date"):
        date_from_name("lst_2021-02-30.tif")
    with pytest.raises(InputDateError, match="not a valid date"):
        date_from_name("MOD11A1.A2021366.h11v05.hdf")
    assert date_from_name("x_D2020.061_y.tif", r"D(?P<year>\d{4})\.(?P<doy>\d{3})") == dt.date(2020, 3, 1)
    assert date_from_name("x_20200301.tif", r"_(?P<date>\d{8})") == dt.date(2020, 3, 1)
    with pytest.raises(InputDateError, match="not a regular expression"):
        date_from_name("x.tif", "(")
    assert "doy" in DEFAULT_DATE_REGEX


def test_read_many_propagates_bugs():
    def buggy(path):
        raise ZeroDivisionError(path)

    with pytest.raises(ZeroDivisionError):
        read_many(["a"], buggy)


# -- values: scale, offset and nodata from the file or the configuration; the valid range ----
def _tagged(tmp_path, name, array, scale, nodata=None, offset=0.0):
    """A 0.01-degree GeoTIFF like :func:`_geographic` whose band carries GDAL scale/offset metadata."""
    import rasterio

    profile = {"driver": "GTiff", "width": array.shape[1], "height": array.shape[0], "count": 1,
               "dtype": array.dtype.name, "crs": "EPSG:4326", "transform": Affine(0.01, 0.0, 108.0, 0.0, -0.01, 42.0),
               "nodata": nodata}  # fmt: skip
    with rasterio.open(tmp_path / name, "w", **profile) as dst:
        dst.write(array, 1)
        dst.scales, dst.offsets = (scale,), (offset,)
    return tmp_path / name


def test_integer_series_need_a_scale_from_the_file_or_the_configuration(tmp_path):
    from dsm.ingest.rasters import ValueRule

    counts = np.full((400, 500), 4000, np.int16)  # MOD13-like NDVI counts
    counts[:, :250] = -3000  # its fill value, west of 110.5 E: over half the region
    bare = _geographic(tmp_path, "ndvi_2021-08-13.tif", counts)
    tagged = _tagged(tmp_path, "ndvi_2021-08-29.tif", counts, 0.0001, nodata=-3000)
    rule = ValueRule(setting="inputs.geotiff.ndvi")
    da, many = geotiff_series_to_region([bare, tagged], REGION, "ndvi", resampling="nearest", rule=rule)
    assert [(r.status, r.error) for r in many.report] == [("failed", "WrongProductError"), ("used", "")]
    assert "int16 values without a scale" in many.report[0].reason
    assert "set inputs.geotiff.ndvi.scale (e.g. 0.0001 for MOD13 NDVI counts" in many.report[0].reason
    west, east = REGION.fine_lon < 110.5 - 0.02, REGION.fine_lon > 110.5 + 0.02
    assert west.any() and east.any()
    np.testing.assert_allclose(da.values[0][:, east], 0.4, rtol=1e-6)  # scale and nodata from the file's tags
    assert np.isnan(da.values[0][:, west]).all()
    # the configuration gives scale and nodata to the file without them; the file's own win
    rule = ValueRule(scale=0.0001, nodata=-3000, setting="inputs.geotiff.ndvi")
    da, many = geotiff_series_to_region([bare, tagged], REGION, "ndvi", resampling="nearest", rule=rule)
    assert [r.status for r in many.report] == ["used", "used"]
    np.testing.assert_array_equal(da.values[0], da.values[1])
    mistaken = ValueRule(scale=0.001, setting="inputs.geotiff.ndvi")
    da, many = geotiff_series_to_region([tagged], REGION, "ndvi", resampling="nearest", rule=mistaken)
    np.testing.assert_allclose(da.values[0][:, east], 0.4, rtol=1e-6)


def test_series_files_with_values_outside_the_valid_range_are_refused_and_named(tmp_path):
    from dsm.ingest.rasters import ValueRule

    good = _geographic(tmp_path, "ndvi_2021-08-13.tif", np.full((400, 500), 0.5, np.float32))
    counts = np.full((400, 500), 4000, np.int16)
    wrong = _geographic(tmp_path, "ndvi_2021-08-29.tif", counts)  # scale 0.001 configured: NDVI 4
    rule = ValueRule(scale=0.001, setting="inputs.geotiff.ndvi")
    da, many = geotiff_series_to_region([good, wrong], REGION, "ndvi", resampling="nearest", rule=rule)
    assert [(r.status, r.error) for r in many.report] == [("used", ""), ("failed", "WrongProductError")]
    assert "values over the region (4..4) are outside the valid range of ndvi [-0.2, 1]" in many.report[1].reason
    assert "scale 0.001 and offset 0 (from inputs.geotiff.ndvi.scale)" in many.report[1].reason
    assert da.sizes["time"] == 1 and (da.values[0] == np.float32(0.5 * 0.001)).all()  # only the good file
    spike = np.full((400, 500), 0.5, np.float32)
    spike[200, 200] = 7.5  # one impossible value over the region (110.0 E, 40.0 N: an undeclared fill)
    spike[0, 0] = 99.0  # outside the region: not checked
    spiked = _geographic(tmp_path, "ndvi_2021-09-14.tif", spike)
    rule = ValueRule(setting="inputs.geotiff.ndvi")
    _, many = geotiff_series_to_region([spiked], REGION, "ndvi", resampling="nearest", rule=rule)
    assert (many.report[0].status, many.report[0].error) == ("failed", "WrongProductError")
    assert "1 values over the region (0.5..7.5)" in many.report[0].reason
    hint = "set inputs.geotiff.ndvi.scale, inputs.geotiff.ndvi.offset or inputs.geotiff.ndvi.nodata"
    assert hint in many.report[0].reason
    spike[200, 200] = 0.5
    _, many = geotiff_series_to_region([_geographic(tmp_path, "ndvi_2021-09-30.tif", spike)], REGION, "ndvi", rule=rule)
    assert many.report[0].status == "used"
    far = write_geotiff(tmp_path / "ndvi_2021-10-01.tif", np.full((10, 10), 9.0, np.float32),
                        Affine(0.01, 0, -60.0, 0, -0.01, 0.0), "EPSG:4326")
    _, many = geotiff_series_to_region([far], REGION, "ndvi", rule=rule)
    assert many.report[0].error == "NoOverlapError"


def test_soil_raster_off_the_region_is_no_overlap(tmp_path):
    from dsm.ingest import NoOverlapError

    far = write_geotiff(tmp_path / "sand.tif", np.full((10, 10), 40.0, np.float32),
                        Affine(0.01, 0, -60.0, 0, -0.01, 0.0), "EPSG:4326")
    with pytest.raises(NoOverlapError, match="does not overlap the region"):
        soil_to_region({"sand": far}, REGION)
