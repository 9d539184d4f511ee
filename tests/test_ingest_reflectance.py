"""MOD09A1 reflectance bands as per-date GeoTIFFs (``inputs.reflectance``):
the indices equal the MOD09A1 tile reader's on the same pixels; dates are matched across
bands; values are range-checked and integers need a scale."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer

from dsm.filedates import date_from_name
from dsm.grid import Region
from dsm.ingest import modis_to_region, read_modis_tile
from dsm.ingest.hdf4 import read_hdf4
from dsm.ingest.rasters import ValueRule
from dsm.ingest.reflectance import DATE_REGEX, match_band_dates, reflectance_indices
from dsm.ingest.reproject import SINUSOIDAL_CRS
from dsm.testing.granules import write_geotiff

MOD09 = "MOD09A1.A2017193.h18v04.006.2017202035302.hdf"
SDS = {"b2": "sur_refl_b02", "b4": "sur_refl_b04", "b6": "sur_refl_b06", "b7": "sur_refl_b07",
       "state": "sur_refl_state_500m"}
RULE = ValueRule(scale=0.0001, nodata=-28672, setting="inputs.reflectance")


@pytest.fixture(scope="module")
def tile(shared_data):
    """The real MOD09A1 cut: its path, raw SDS, transform and a 1 x 1 cell region over it."""
    path = shared_data / "modis" / MOD09
    ds, _ = read_modis_tile(path)
    raw = read_hdf4(path, list(SDS.values())).sds
    lon, lat = Transformer.from_crs(SINUSOIDAL_CRS, "EPSG:4326", always_xy=True).transform(ds.x.values[33], ds.y.values[36])
    return path, raw, Affine.from_gdal(*ds.attrs["transform"]), Region.around(float(lon), float(lat), 1, 1)


def _bands(folder, raw, transform, kind="int16", with_state=True):
    """The sample's bands as MODIStsp writes them: int16 counts (fill -28672, no scale tag) or
    scaled float32 (NaN fill), named ``MOD09A1_sur_refl_b02_2017_193.tif``."""
    out = {}
    for band, sds in SDS.items():
        if band == "state" and not with_state:
            continue
        a = raw[sds]
        nodata = 65535 if band == "state" else -28672
        if kind == "float32" and band != "state":
            a = np.where(a == -28672, np.nan, a * 0.0001).astype(np.float32)
            nodata = np.nan
        out[str(write_geotiff(folder / f"MOD09A1_{sds}_2017_193.tif", a, transform, SINUSOIDAL_CRS, nodata))] = band
    return out


@pytest.mark.shared_data
def test_band_geotiffs_of_the_real_mod09a1_give_the_tile_readers_indices(tile, tmp_path):
    path, raw, transform, region = tile
    files = _bands(tmp_path, raw, transform)
    assert {date_from_name(f, DATE_REGEX) for f in files} == {dt.date(2017, 7, 12)}
    got, many = reflectance_indices(files, region, RULE)
    assert [r.status for r in many.report] == ["used"] * 5
    expect, _, _ = modis_to_region([path], region)
    for var in ("ndwi", "lswi", "nsdsi"):
        e = expect[var].values
        assert np.isfinite(e).sum() > 500
        np.testing.assert_array_equal(np.isnan(got[var]), np.isnan(e))
        np.testing.assert_allclose(got[var], e, rtol=0, atol=1e-6, equal_nan=True)
    # without the state band nothing is screened: the tile reader with its QC switched off
    floats = tmp_path / "float"
    floats.mkdir()
    got, many = reflectance_indices(_bands(floats, raw, transform, "float32", with_state=False), region,
                                    ValueRule(setting="inputs.reflectance"))
    assert [r.status for r in many.report] == ["used"] * 4
    unscreened, _, _ = modis_to_region([path], region, qc={"sur_refl_state_500m": ()})
    for var in ("ndwi", "lswi", "nsdsi"):
        e = unscreened[var].values
        assert np.isfinite(e).sum() > np.isfinite(expect[var].values).sum()  # the state band screened some out
        np.testing.assert_allclose(got[var], e, rtol=0, atol=1e-6, equal_nan=True)


def test_dates_are_matched_across_bands():
    files = {
        "b2": ["r/MOD09A1_sur_refl_b02_2021_225.tif", "r/MOD09A1_sur_refl_b02_2021_233.tif", "r/b02_nodate.tif"],
        "b4": ["r/MOD09A1_sur_refl_b04_2021_225.tif", "r/MOD09A1_sur_refl_b04_2021_233.tif", "r/shared_2021_241.tif"],
        "b6": ["r/MOD09A1_sur_refl_b06_2021_225.tif", "r/shared_2021_241.tif"],
        "b7": ["r/MOD09A1_sur_refl_b07_2021_225.tif", "r/MOD09A1_sur_refl_b07_2021_233.tif"],
    }
    found = match_band_dates(files)
    assert list(found.complete) == [dt.date(2021, 8, 13)]
    assert [b for b, _ in found.complete[dt.date(2021, 8, 13)]] == ["b2", "b4", "b6", "b7"]
    problems = {p[0].split("/")[1]: p[1:] for p in found.problems}
    assert problems["MOD09A1_sur_refl_b02_2021_233.tif"] == (
        dt.date(2021, 8, 21), "skipped", "no b6 (inputs.reflectance.b6) file for 2021-08-21: the date is skipped", "")
    assert problems["MOD09A1_sur_refl_b07_2021_233.tif"][1] == "skipped"
    assert problems["b02_nodate.tif"][1:] == ("failed", "no date in the file name (pattern "
                                             f"{DATE_REGEX!r})", "InputDateError")
    assert problems["shared_2021_241.tif"][1] == "failed"
    assert "matched by the paths of inputs.reflectance.b4 and inputs.reflectance.b6" in problems["shared_2021_241.tif"][2]
    assert len(found.problems) == 5  # 233: b2, b4, b7 skipped; no date; two bands


REGION = Region.around(110.0, 40.0, 1, 2)


def _geographic(path, array, res=0.005, nodata=None):
    """A raster of ``res`` degrees covering 108-113 E, 38-42 N (0.005 degrees: about MODIS' 500 m)."""
    return str(write_geotiff(path, array, Affine(res, 0.0, 108.0, 0.0, -res, 42.0), "EPSG:4326", nodata=nodata))


def _synthetic(folder, day="2021225", counts=True, res=0.005):
    rng = np.random.default_rng(3)
    shape = (round(4 / res), round(5 / res))
    refl = {b: rng.uniform(0.05, 0.45, shape) for b in ("b2", "b4", "b6")}
    refl["b7"] = refl["b6"] * rng.uniform(0.5, 0.95, shape)
    folder.mkdir(exist_ok=True)
    return {_geographic(folder / f"refl_{b}_{day}.tif", np.round(a * 10000).astype(np.int16) if counts
                        else a.astype(np.float32), res): b for b, a in refl.items()}, refl


def test_band_values_are_checked_and_bands_of_a_date_share_a_grid(tmp_path):
    from dsm import indices

    files, refl = _synthetic(tmp_path / "ok")
    bare = ValueRule(setting="inputs.reflectance")
    got, many = reflectance_indices(files, REGION, bare)
    assert got is None and {(r.status, r.error) for r in many.report} == {("failed", "WrongProductError")}
    assert ("int16 values without a scale (no scale in the file, inputs.reflectance.scale not set): set "
            "inputs.reflectance.scale (e.g. 0.0001 for MOD09A1 reflectance counts") in many.report[0].reason
    wrong = ValueRule(scale=0.001, setting="inputs.reflectance")
    _, many = reflectance_indices(files, REGION, wrong)
    assert all(r.status == "failed" for r in many.report)
    assert "are outside the valid range of b2 reflectance [-0.01, 1.6] after scale 0.001" in many.report[0].reason
    got, many = reflectance_indices(files, REGION, ValueRule(scale=0.0001, setting="inputs.reflectance"))
    assert [r.status for r in many.report] == ["used"] * 4
    # the indices at 0.005 degrees, averaged: a 1 km pixel lies between the extremes of its own pixels
    ndwi = indices.ndwi(refl["b2"], refl["b4"])
    assert np.isfinite(got["ndwi"]).all() and ndwi.min() < got["ndwi"].min() and got["ndwi"].max() < ndwi.max()
    assert abs(float(np.mean(got["ndwi"])) - float(np.mean(ndwi))) < 0.01
    # b6 on another grid than the other bands of its date: its date cannot pair them
    other, _ = _synthetic(tmp_path / "other", res=0.01)
    mixed = {**{p: b for p, b in files.items() if b != "b6"}, **{p: b for p, b in other.items() if b == "b6"}}
    got, many = reflectance_indices(mixed, REGION, RULE)
    assert got is None and [r.status for r in many.report] == ["failed"] * 4
    by_band = {mixed[r.path]: r.reason for r in many.report}
    assert by_band["b6"].startswith("no usable b2, b4, b7 raster on its grid") and by_band["b2"].startswith("no usable b6 raster")
