"""Real inputs a user has: files, globs and folders; inputs that give nothing fail
the ingest; coverage of the static rasters and where the land mask comes from; scale and
nodata of GeoTIFF series from the configuration; duplicate granules (newest intact wins);
MOD09A1 reflectance bands, precomputed slope, SoilGrids as published; rasters dsm cannot place.

The ingests run through ``dsm ingest`` / ``dsm run`` on the module's LocalCluster (reached
by ``cluster.address``), with files written by :mod:`dsm.testing` and rasterio.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from click.testing import CliRunner

from dsm.cli import main
from dsm.cube import open_cube
from dsm.files import expand, expand_each
from dsm.grid import Region
from dsm.ingest import read_spl3smp
from dsm.ingest.inputs import folder_patterns
from dsm.ingest.static import SEA_MIN_PIXELS, sea_level_water
from dsm.samples import empty_cube_cause
from dsm.store import WRITTEN_ATTR
from dsm.testing.granules import (
    SmapPass,
    modis_filename,
    spl3smp_filename,
    write_geotiff,
    write_smap_subset,
    write_spl3smp,
)

REGION = Region.around(110.0, 40.0, 1, 2)
D13, D14 = dt.date(2021, 8, 13), dt.date(2021, 8, 14)


def _smap(folder: Path, day: dt.date, value: float, crid: str = "R19240") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_spl3smp(folder / spl3smp_filename(day, crid=crid), day, SmapPass(np.full((406, 964), value, np.float32)))


def _on_region(path: Path, array: np.ndarray, nodata: float | None = None) -> Path:
    """A GeoTIFF on the region's own 1 km grid (EPSG:6933)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_geotiff(path, array, REGION.fine_transform, "EPSG:6933", nodata=nodata)


def _far(path: Path) -> Path:
    """A 0.01 degree raster over the South Atlantic: nowhere near the region."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_geotiff(path, np.full((50, 50), 20.0, np.float32), Affine(0.01, 0, -20.0, 0, -0.01, -30.0), "EPSG:4326")


def _truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[:5000])
    return dst


def _config(root: Path, client, inputs: dict, name: str = "cube", end: dt.date = D14) -> Path:
    raw = {"region": {"cells": [REGION.row0, REGION.col0, REGION.nrows, REGION.ncols]},
           "dates": {"start": D13.isoformat(), "end": end.isoformat()},
           "stores": {"cube": str(root / f"{name}.zarr"), "output": str(root / f"{name}_out.zarr")},
           "cluster": {"address": client.scheduler.address}, "chunks": {"space": 36, "time": 2},
           "inputs": inputs}  # fmt: skip
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _ingest(config: Path, *extra: str):
    return CliRunner().invoke(main, ["ingest", str(config), "--no-progress", *extra], catch_exceptions=False)


def _report(root: Path, name: str = "cube") -> dict:
    return json.loads((root / f"{name}.ingest_report.json").read_text())


def _files(report: dict) -> dict[str, dict]:
    return {Path(f["path"]).name: f for f in report["files"]}


# -- 1. files, globs and folders; no silent no-ops ---------------------------------------
def test_paths_are_files_globs_or_folders_searched_for_the_products_own_files(tmp_path):
    a = tmp_path / "granules"
    s13, s14 = _smap(a, D13, 0.2), _smap(a / "2021" / "08", D14, 0.2)
    mod = a / "2021" / modis_filename("MOD11A1", D13, 11, 5)
    mod.write_bytes(b"x")
    (a / "notes.txt").write_text("not a granule")
    tif = a / "2021" / "NDVI_2021225.TIF"
    tif.write_bytes(b"x")
    smap, both = folder_patterns("smap"), sorted([str(s13), str(s14)])
    assert expand([str(a)], {}, smap) == both  # recursive, only SMAP files
    assert expand([str(tmp_path / "gran*")], {}, smap) == both  # a glob matching a folder
    assert expand([str(a)], {}, folder_patterns("mod11a1", "MOD11A1")) == [str(mod)]
    assert expand([str(a)], {}, folder_patterns("geotiff:ndvi")) == [str(tif)]  # *.tif, any case
    found = expand_each([str(s13), str(a / "missing.h5"), str(a / "*.h5")], {}, smap)
    assert found == {str(s13): [str(s13)], str(a / "missing.h5"): [], str(a / "*.h5"): [str(s13)]}
    assert expand([str(a)], {}) == []  # without patterns a folder gives nothing (plain expand, as before)


@pytest.mark.s3
def test_folders_on_s3_are_searched_too(s3, tmp_path):
    bucket = s3.make_bucket("folders")
    fs = s3.filesystem()
    src = _smap(tmp_path, D13, 0.2)
    fs.put_file(str(src), f"folders/in/2021/{src.name}")
    fs.pipe_file("folders/in/readme.txt", b"x")
    got = expand([f"{bucket}/in/"], s3.storage_options, folder_patterns("smap"))
    assert got == [f"{bucket}/in/2021/{src.name}"]
    assert expand([f"{bucket}/in/*/"], s3.storage_options, folder_patterns("smap")) == got


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_input_that_matches_nothing_or_whose_files_all_fail_fails_the_ingest(tmp_path, client):
    empty = tmp_path / "smap_empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("the granules are elsewhere")
    dem = np.full(REGION.fine_shape, 250.0, np.float32)
    inputs = {"smap": {"paths": str(empty)}, "dem": {"paths": str(_on_region(tmp_path / "dem" / "dem.tif", dem))}}
    res = _ingest(_config(tmp_path, client, inputs))
    assert res.exit_code == 1, res.output
    assert (f"inputs.smap: no file matches ['{empty}'] (a folder is searched for SMAP_L3_SM_P_*.h5, SMAP_L3_SM_P_*.nc4, "
            "SMAP_L3_SM_P_*.nc)") in res.output
    report = _report(tmp_path)
    assert [e["input"] for e in report["task_errors"]] == ["inputs.smap"] and report["summary"]["input_errors"] == 1
    np.testing.assert_array_equal(open_cube(str(tmp_path / "cube.zarr"))["dem"].values, dem)  # the rest is ingested
    # dsm run: the cube stage is not done, the run exits 1
    res = CliRunner().invoke(main, ["run", str(tmp_path / "cube.yaml"), "--stage", "cube"], catch_exceptions=False)
    assert res.exit_code == 1 and "== cube: partial" in res.output and "inputs.smap: no file matches" in res.output
    # every file failed: named with the reasons
    good = _smap(tmp_path / "ok", D13, 0.2)
    bad = tmp_path / "smap_bad"
    bad.mkdir()
    _truncated(good, bad / spl3smp_filename(D14))
    inputs["smap"] = {"paths": str(bad)}
    res = _ingest(_config(tmp_path, client, inputs))
    assert res.exit_code == 1
    assert "inputs.smap: none of the 1 files of" in res.output and "1 failed (UnreadableFileError)" in res.output
    # one good file among failed ones: the input gave something; --strict fails on any failed file
    inputs["smap"] = {"paths": [str(bad), str(good)]}
    assert _ingest(_config(tmp_path, client, inputs)).exit_code == 0
    res = _ingest(_config(tmp_path, client, inputs), "--strict")
    assert res.exit_code == 1 and "1 failed" in res.output and "ERROR" not in res.output


@pytest.mark.timeout(180)
def test_training_on_a_cube_without_smap_names_the_missing_input(tmp_path, client):
    from dsm import config as config_mod
    from dsm.errors import InputError
    from dsm.features import feature_names
    from dsm.models.fusion_train import sample_table

    dem = np.full(REGION.fine_shape, 250.0, np.float32)
    config = _config(tmp_path, client, {"dem": {"paths": str(_on_region(tmp_path / "dem.tif", dem))}})
    assert _ingest(config).exit_code == 0
    cfg = config_mod.load(config)
    ds = open_cube(cfg.stores.cube)
    assert "no SMAP granule was ingested" in (empty_cube_cause(ds) or "")
    preds = ("dem", "slope", "aspect")
    with pytest.raises(InputError, match=r"nothing to train on .* no SMAP granule was ingested. Configure inputs.smap"):
        sample_table(cfg, client, ds, preds, feature_names(preds))


# -- 2. coverage and the land mask ---------------------------------------------------------
@pytest.mark.timeout(120)
def test_rasters_off_the_region_are_named_and_fail_their_input(tmp_path, client):
    inputs = {"dem": {"paths": str(_far(tmp_path / "dem" / "far_dem.tif"))},
              "soil": {"sand": str(_far(tmp_path / "soil" / "sand.tif"))},
              "land_mask": {"paths": str(tmp_path / "mask")}}  # fmt: skip
    _far(tmp_path / "mask" / "far_mask.tif")
    res = _ingest(_config(tmp_path, client, inputs))
    assert res.exit_code == 1, res.output
    report = _report(tmp_path)
    files = _files(report)
    for name in ("far_dem.tif", "sand.tif", "far_mask.tif"):
        assert (files[name]["status"], files[name]["error"]) == ("skipped", "NoOverlapError"), files[name]
        assert "does not overlap the region" in files[name]["reason"]
    assert sorted(e["input"] for e in report["task_errors"]) == ["inputs.dem", "inputs.land_mask", "inputs.soil.sand"]
    assert "far_dem.tif" in res.output and "does not overlap the region" in res.output
    assert report["land_mask_source"].startswith("land_mask input (no file used")
    assert np.isnan(open_cube(str(tmp_path / "cube.zarr"))["dem"].values).all()


def test_sea_level_water_takes_edge_and_large_zero_areas():
    dem = np.full((12, 12), 120.0, np.float32)
    dem[:, :3] = 0.0  # sea along the west edge
    dem[5:7, 6:8] = 0.0  # a small inland flat at 0 m: land
    dem[1:4, 8:11] = 0.0  # a large inland area at 0 m: water
    dem[11, 10:12] = 0.0  # a small one on the edge: the sea entering the region
    water = sea_level_water(dem)
    expect = np.zeros(dem.shape, bool)
    expect[:, :3] = expect[1:4, 8:11] = expect[11, 10:12] = True
    np.testing.assert_array_equal(water, expect)
    assert 4 < SEA_MIN_PIXELS <= 9


@pytest.mark.timeout(120)
def test_land_mask_from_the_dem_or_the_land_mask_input_and_reported(tmp_path, client):
    ny, nx = REGION.fine_shape
    dem = (100.0 + np.arange(ny * nx, dtype=np.float32).reshape(ny, nx) % 400).astype(np.float32)
    dem[:, :10] = 0.0  # the sea, along the west edge
    dem[20:22, 40:42] = 0.0  # 4 pixels at 0 m inland: land
    dem[30, 50] = np.nan  # no elevation: not land
    config = _config(tmp_path, client, {"dem": {"paths": str(_on_region(tmp_path / "dem.tif", dem, nodata=np.nan))}})
    res = _ingest(config)
    assert res.exit_code == 0, res.output
    report = _report(tmp_path)
    assert report["land_mask_source"] == "dem (sea-level zeros as water)"
    assert any("sea-level zeros taken as water" in w for w in report["warnings"])
    assert "land mask: dem (sea-level zeros as water)" in res.output and "WARNING" in res.output
    land = np.ones((ny, nx), np.uint8)
    land[:, :10] = 0
    land[30, 50] = 0
    np.testing.assert_array_equal(open_cube(str(tmp_path / "cube.zarr"))["land_mask"].values, land)
    # a land_mask input decides instead
    raw = yaml.safe_load(config.read_text())
    raw["inputs"]["land_mask"] = {"paths": str(_on_region(tmp_path / "mask.tif", np.ones((ny, nx), np.float32)))}
    config.write_text(yaml.safe_dump(raw))
    assert _ingest(config).exit_code == 0
    assert _report(tmp_path)["land_mask_source"] == "land_mask input"
    assert (open_cube(str(tmp_path / "cube.zarr"))["land_mask"].values == 1).all()


# -- 3. GeoTIFF series values from the configuration ---------------------------------------
@pytest.mark.timeout(120)
def test_geotiff_series_scale_and_nodata_from_the_configuration(tmp_path, client):
    counts = np.full(REGION.fine_shape, 4000, np.int16)  # MOD13-like NDVI counts
    counts[:, :5] = -3000
    _on_region(tmp_path / "ndvi" / "ndvi_2021-08-13.tif", counts)
    inputs = {"geotiff": {"ndvi": {"paths": str(tmp_path / "ndvi"), "resampling": "nearest"}}}
    res = _ingest(_config(tmp_path, client, inputs))
    assert res.exit_code == 1 and "set inputs.geotiff.ndvi.scale (e.g. 0.0001" in res.output, res.output
    assert np.isnan(open_cube(str(tmp_path / "cube.zarr"))["ndvi"].values).all()
    inputs["geotiff"]["ndvi"].update(scale=0.0001, nodata=-3000)  # the refused run bound nothing: accepted
    assert _ingest(_config(tmp_path, client, inputs)).exit_code == 0
    ndvi = open_cube(str(tmp_path / "cube.zarr"))["ndvi"].values[0]
    assert np.isnan(ndvi[:, :5]).all()
    np.testing.assert_allclose(ndvi[:, 5:], 0.4, rtol=1e-6)
    # another scale for values already in the cube would mix two scalings: refused, named
    inputs["geotiff"]["ndvi"].update(scale=0.00005)
    res = _ingest(_config(tmp_path, client, inputs))
    assert res.exit_code == 2 and "inputs.geotiff.ndvi.scale: 0.0001 -> 5e-05" in res.output, res.output
    assert "dsm ingest CONFIG --overwrite" in res.output
    np.testing.assert_allclose(open_cube(str(tmp_path / "cube.zarr"))["ndvi"].values[0][:, 5:], 0.4, rtol=1e-6)
    assert _ingest(_config(tmp_path, client, inputs), "--overwrite").exit_code == 0  # a new cube, the new scale
    np.testing.assert_allclose(open_cube(str(tmp_path / "cube.zarr"))["ndvi"].values[0][:, 5:], 0.2, rtol=1e-6)


# -- 4. duplicates: the newest intact granule wins -----------------------------------------
@pytest.mark.timeout(120)
def test_newest_intact_duplicate_wins_and_a_failed_newer_one_falls_back(tmp_path, client):
    folder = tmp_path / "smap"
    old13, new13 = _smap(folder, D13, 0.2, "R18290"), _smap(folder, D13, 0.3, "R19240")
    old14 = _smap(folder, D14, 0.25, "R18290")
    new14 = _truncated(new13, folder / spl3smp_filename(D14, crid="R19240"))
    res = _ingest(_config(tmp_path, client, {"smap": {"paths": str(folder)}}))
    assert res.exit_code == 0, res.output
    report = _report(tmp_path)
    files = _files(report)
    assert files[old13.name]["status"] == "skipped" and files[old13.name]["reason"] == f"superseded by {new13.name}"
    assert files[new14.name]["status"] == "failed"
    assert f"the older {old14.name} was tried instead" in files[new14.name]["reason"]
    assert files[old14.name]["status"] == "used" and f"the newer {new14.name} failed" in files[old14.name]["reason"]
    assert report["fallbacks"] == [{"source": "smap", "date": "2021-08-14", "failed": str(new14), "used": str(old14),
                                    "reason": files[new14.name]["reason"].split(" (the older")[0]}]
    assert {g["date"]: g["status"] for g in report["groups"]} == {"2021-08-13": "complete", "2021-08-14": "complete"}
    assert f"fallback smap 2021-08-14: {new14.name} failed" in res.output
    sm = open_cube(str(tmp_path / "cube.zarr"))["smap_sm"].values
    np.testing.assert_array_equal(sm[0], read_spl3smp(new13, REGION)[0].values)
    np.testing.assert_array_equal(sm[1], read_spl3smp(old14, REGION)[0].values)
    np.testing.assert_allclose(sm, [np.full(sm.shape[1:], 0.3), np.full(sm.shape[1:], 0.25)])
    assert report["provenance"]["smap_sm"]["2021-08-14"] == [str(old14)]


def test_harmony_subsets_renamed_by_a_download_tool_are_dated_from_their_content(tmp_path, client):
    folder = tmp_path / "harmony"
    folder.mkdir()
    rows, cols = REGION.nrows + 4, REGION.ncols + 6
    values = np.linspace(0.1, 0.4, rows * cols, dtype=np.float32).reshape(rows, cols)
    subset = write_smap_subset(folder / "download_1.nc4", D13, SmapPass(values), row0=REGION.row0 - 2,
                               col0=REGION.col0 - 3)  # dated by the granule name in its history
    other = write_smap_subset(folder / "download_2.nc4", D14, SmapPass(values[::-1]), row0=REGION.row0 - 2,
                              col0=REGION.col0 - 3, history=False)  # by the name in its build_dmrpp invocation
    (folder / "download_3.nc4").write_bytes(b"<html>login required</html>")  # what a failed download leaves
    res = _ingest(_config(tmp_path, client, {"smap": {"paths": str(folder / "*.nc4")}}))
    assert res.exit_code == 0, res.output
    files = _files(_report(tmp_path))
    assert files[subset.name]["status"] == "used" and files[subset.name]["date"] == D13.isoformat()
    assert files[other.name]["status"] == "used" and files[other.name]["date"] == D14.isoformat()
    assert files["download_3.nc4"]["status"] == "failed" and "not a readable HDF5 file" in files["download_3.nc4"]["reason"]
    sm = open_cube(str(tmp_path / "cube.zarr"))["smap_sm"].values
    np.testing.assert_array_equal(sm[0], values[2:2 + REGION.nrows, 3:3 + REGION.ncols])
    np.testing.assert_array_equal(sm[1], values[::-1][2:2 + REGION.nrows, 3:3 + REGION.ncols])
    # the rows written are recorded: a chunk lost from them later is an error, not cloud
    assert open_cube(str(tmp_path / "cube.zarr")).attrs[WRITTEN_ATTR] == {"smap_sm": [[0, 2]]}


@pytest.mark.timeout(120)
def test_spl3smp_e_fills_a_9km_cube_and_the_36km_product_is_refused_by_name(tmp_path, client):
    folder = tmp_path / "smap_e"
    folder.mkdir()
    r9 = Region(REGION.row0, REGION.col0, REGION.nrows, REGION.ncols, coarse_km=9)
    rows, cols = r9.coarse_shape[0] + 6, r9.coarse_shape[1] + 4  # a subset around the region's 9 km cells
    values = np.linspace(0.1, 0.4, rows * cols, dtype=np.float32).reshape(rows, cols)
    row0, col0 = REGION.row0 * 4 - 3, REGION.col0 * 4 - 2
    for day, field in ((D13, values), (D14, values[::-1])):
        write_smap_subset(folder / spl3smp_filename(day, enhanced=True).replace(".h5", ".nc4"), day, SmapPass(field),
                          row0=row0, col0=col0, product="SPL3SMP_E")
    path = _config(tmp_path, client, {"smap": {"paths": str(folder)}})
    raw = yaml.safe_load(path.read_text())
    raw["region"]["coarse"] = "spl3smp_e"
    path.write_text(yaml.safe_dump(raw))
    res = _ingest(path)
    assert res.exit_code == 0, res.output
    cube = open_cube(str(tmp_path / "cube.zarr"))
    assert cube["smap_sm"].shape == (2, 4, 8) and cube.attrs["region"]["coarse_km"] == 9
    np.testing.assert_allclose(cube["cx"].values, r9.coarse_x)
    np.testing.assert_array_equal(cube["smap_sm"].values[0], values[3:7, 2:10])
    np.testing.assert_array_equal(cube["smap_sm"].values[1], values[::-1][3:7, 2:10])
    # the 36 km product for a 9 km region: refused, naming both products
    _smap(tmp_path / "smap36", D13, 0.2)
    raw["inputs"] = {"smap": {"paths": str(tmp_path / "smap36")}}
    raw["stores"]["cube"] = str(tmp_path / "other.zarr")
    path.write_text(yaml.safe_dump(raw))
    res = _ingest(path)
    assert res.exit_code == 1, res.output
    files = _files(_report(tmp_path, "other"))
    reason = files[spl3smp_filename(D13)]["reason"]
    assert files[spl3smp_filename(D13)]["status"] == "failed" and "SPL3SMP" in reason and "SPL3SMP_E" in reason, reason


@pytest.mark.timeout(120)
def test_a_failed_imerg_final_falls_back_to_the_late_run(tmp_path, client):
    import math

    from dsm.testing.precip import imerg_filename, write_imerg_day

    lon0, lat0, lon1, lat1 = REGION.lonlat_bounds
    i = np.arange(math.floor(lat0 * 10) - 3, math.ceil(lat1 * 10) + 3)  # IMERG's 0.1 degree grid around the region
    j = np.arange(math.floor(lon0 * 10) - 3, math.ceil(lon1 * 10) + 3)
    lat, lon = np.round((i[::-1] + 0.5) / 10, 2), np.round((j + 0.5) / 10, 2)
    folder = tmp_path / "imerg"
    folder.mkdir()

    def day(d: dt.date, value: float, run: str) -> Path:
        return write_imerg_day(folder / imerg_filename(d, run=run), d, lat, lon, np.full((lat.size, lon.size), value), run=run)

    late13, late14, final14 = day(D13, 7.0, "late"), day(D14, 9.0, "late"), day(D14, 3.0, "final")
    final13 = _truncated(final14, folder / imerg_filename(D13))
    config = _config(tmp_path, client, {"precip": {"paths": str(folder), "product": "imerg"}})
    raw = yaml.safe_load(config.read_text())
    raw["rain"] = {"spinup_days": 1}
    config.write_text(yaml.safe_dump(raw))
    res = _ingest(config)
    assert res.exit_code == 0, res.output
    report = _report(tmp_path)
    files = _files(report)
    assert files[final13.name]["status"] == "failed" and files[late13.name]["status"] == "used"
    assert f"the newer {final13.name} failed" in files[late13.name]["reason"]
    assert files[late14.name]["status"] == "skipped" and files[late14.name]["reason"] == f"superseded by {final14.name}"
    assert [(f["date"], Path(f["failed"]).name, Path(f["used"]).name) for f in report["fallbacks"]] == [
        ("2021-08-13", final13.name, late13.name)]
    precip = open_cube(str(tmp_path / "cube.zarr"))["precip"].values[-2:]
    np.testing.assert_allclose(precip, [np.full(precip.shape[1:], 7.0), np.full(precip.shape[1:], 3.0)], rtol=1e-6)


# -- 5. MOD09A1 reflectance bands, precomputed slope, SoilGrids (items 5 and 8) --------------
D21 = dt.date(2021, 8, 21)  # the 8-day composite after D13


@pytest.mark.timeout(120)
def test_reflectance_bands_make_the_indices_and_a_date_missing_a_band_is_named(tmp_path, client):
    from dsm.ingest.rasters import ValueRule
    from dsm.ingest.reflectance import reflectance_indices

    rng = np.random.default_rng(5)
    (tmp_path / "refl").mkdir()
    t = Affine(0.005, 0, 108.0, 0, -0.005, 42.0)  # about MODIS' 500 m, in lon/lat
    made: dict[dt.date, dict[str, str]] = {D13: {}, D21: {}}
    for day in (D13, D21):
        refl = {b: rng.uniform(0.05, 0.45, (800, 1000)) for b in ("b2", "b4", "b6")}
        refl["b7"] = refl["b6"] * rng.uniform(0.5, 0.95, (800, 1000))
        for b, a in refl.items():
            if (day, b) == (D21, "b6"):
                continue  # that date lacks band 6
            p = write_geotiff(tmp_path / "refl" / f"MOD09A1_sur_refl_b0{b[1]}_{day:%Y_%j}.tif",
                              np.round(a * 10000).astype(np.int16), t, "EPSG:4326", nodata=-28672)
            made[day][str(p)] = b
    inputs = {"reflectance": {**{b: str(tmp_path / "refl" / f"*_b0{b[1]}_*.tif") for b in ("b2", "b4", "b6", "b7")},
                              "scale": 0.0001, "nodata": -28672}}
    res = _ingest(_config(tmp_path, client, inputs, end=D21))
    assert res.exit_code == 0, res.output
    files = _files(_report(tmp_path))
    for name in ("MOD09A1_sur_refl_b02_2021_233.tif", "MOD09A1_sur_refl_b04_2021_233.tif", "MOD09A1_sur_refl_b07_2021_233.tif"):
        assert (files[name]["status"], files[name]["date"]) == ("skipped", "2021-08-21"), files[name]
        assert files[name]["reason"] == "no b6 (inputs.reflectance.b6) file for 2021-08-21: the date is skipped"
        assert name in res.output
    assert [files[Path(p).name]["status"] for p in made[D13]] == ["used"] * 4
    cube = open_cube(str(tmp_path / "cube.zarr"))
    expect, _ = reflectance_indices(made[D13], REGION, ValueRule(0.0001, None, -28672, "inputs.reflectance"))
    for var in ("ndwi", "lswi", "nsdsi"):
        values = cube[var].values
        assert values.shape[0] == 2 and np.isfinite(values[0]).all()
        np.testing.assert_array_equal(values[0], expect[var])
        assert np.isnan(values[1]).all()  # 2021-08-21: not written
    assert sorted(_report(tmp_path)["provenance"]["ndwi"]["2021-08-13"]) == sorted(made[D13])


@pytest.mark.timeout(120)
def test_a_slope_raster_replaces_the_dems_slope_and_one_out_of_range_is_refused_by_name(tmp_path, client):
    from dsm.ingest.terrain import dem_to_region

    ny, nx = REGION.fine_shape
    dem = _on_region(tmp_path / "dem.tif", (500.0 + 30.0 * np.arange(nx, dtype=np.float32))[None, :].repeat(ny, 0))
    given = np.full((ny, nx), 12.5, np.float32)
    given[:, :7] = 3.0
    slope = _on_region(tmp_path / "terrain" / "slope.tif", given)
    config = _config(tmp_path, client, {"dem": {"paths": str(dem)}, "slope": {"paths": str(slope)}})
    res = _ingest(config)
    assert res.exit_code == 0, res.output
    cube = open_cube(str(tmp_path / "cube.zarr"))
    from_dem, _ = dem_to_region([dem], REGION)
    np.testing.assert_array_equal(cube["slope"].values, given)
    assert np.nanmin(np.abs(from_dem["slope"].values - given)) > 1  # not the DEM's slope
    np.testing.assert_array_equal(cube["aspect"].values, from_dem["aspect"].values)  # the DEM's: no aspect input
    assert _report(tmp_path)["provenance"]["slope"] == {"static": [str(slope)]}
    # a slope in percent (up to 150): refused and named, the input fails, the cube keeps its slope
    pct = _on_region(tmp_path / "terrain" / "slope_percent.tif", given * 12)
    raw = yaml.safe_load(config.read_text())
    raw["inputs"]["slope"] = {"paths": str(pct)}
    config.write_text(yaml.safe_dump(raw))
    res = _ingest(config)
    assert res.exit_code == 1
    f = _files(_report(tmp_path))["slope_percent.tif"]
    assert (f["status"], f["error"]) == ("failed", "WrongProductError")
    assert "outside the valid range of slope [0, 90]" in f["reason"] and "set inputs.slope.scale" in f["reason"]
    assert "slope_percent.tif" in res.output and "inputs.slope: none of the 1 files" in res.output
    np.testing.assert_array_equal(open_cube(str(tmp_path / "cube.zarr"))["slope"].values, given)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_soilgrids_as_published_fills_the_texture_and_a_folder_mixing_units_is_refused(tmp_path, client):
    from dsm.ingest.soilgrids import soilgrids_layer
    from dsm.testing.soilgrids import NODATA, grid_window, texture, write_soilgrids

    data = write_soilgrids(tmp_path / "isric", REGION)
    res = _ingest(_config(tmp_path, client, {"soil": {"soilgrids": str(data)}}))
    assert res.exit_code == 0, res.output
    report = _report(tmp_path)
    cube = open_cube(str(tmp_path / "cube.zarr"))
    for f in ("sand", "silt", "clay"):
        vrt = str(data / f / f"{f}_0-5cm_mean.vrt")
        assert _files(report)[f"{f}_0-5cm_mean.vrt"]["status"] == "used"
        np.testing.assert_array_equal(cube[f].values, soilgrids_layer([vrt], f, REGION)[0][f])
    np.testing.assert_allclose(cube["silt"].values, 40.0, atol=1e-4)
    assert report["sources"]["sand"]["setting"] == "inputs.soil.soilgrids" and not report["warnings"]
    assert report["land_mask_source"].startswith("soil")
    # the SoilGrids URL: the workers' GDAL reads the VRTs and their tiles in place (no copy)
    from dsm.testing.web import LoopbackHTTP

    with LoopbackHTTP(tmp_path / "isric") as web:
        res = _ingest(_config(tmp_path, client, {"soil": {"soilgrids": f"{web.url}data/"}}, name="web"))
    assert res.exit_code == 0, res.output
    assert {Path(f["path"]).name for f in _report(tmp_path, "web")["files"] if f["status"] == "used"} == {
        f"{f}_0-5cm_mean.vrt" for f in ("sand", "silt", "clay")}
    web_cube = open_cube(str(tmp_path / "web.zarr"))
    for f in ("sand", "silt", "clay"):
        np.testing.assert_array_equal(web_cube[f].values, cube[f].values)
    # sand in percent beside silt and clay in g/kg: each alone is plausible, together they are refused
    grams = texture(grid_window(REGION)[2:])
    grams["sand"] = np.where(grams["sand"] == NODATA, NODATA, grams["sand"] // 10).astype(np.int16)
    mixed = write_soilgrids(tmp_path / "mixed", REGION, grams)
    res = _ingest(_config(tmp_path, client, {"soil": {"soilgrids": str(mixed)}}, name="mixed"))
    assert res.exit_code == 1
    files = _files(_report(tmp_path, "mixed"))
    for f in ("sand", "silt", "clay"):
        entry = files[f"{f}_0-5cm_mean.vrt"]
        assert (entry["status"], entry["error"]) == ("failed", "WrongProductError")
        assert "the rasters (sand_0-5cm_mean.vrt, silt_0-5cm_mean.vrt, clay_0-5cm_mean.vrt) are not all percent" in entry["reason"]
    assert np.isnan(open_cube(str(tmp_path / "mixed.zarr"))["sand"].values).all()


# -- 6. rasters dsm cannot place: refused by name, the rest ingested ------------------------
def _unplaceable(folder: Path) -> dict[str, str]:
    """LST GeoTIFFs of 2021-08-13 / 14 dsm cannot place: file name -> the reason it must give."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    a = np.full(REGION.fine_shape, 300.0, np.float32)
    t = REGION.fine_transform
    local = 'LOCAL_CS["arbitrary",LOCAL_DATUM["x",0],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
    cases = {"lst_2021-08-13_rotated.tif": (t * Affine.rotation(10), "EPSG:6933", "rotated or sheared"),
             "lst_2021-08-14_sheared.tif": (t * Affine.shear(5, 0), "EPSG:6933", "rotated or sheared"),
             "lst_2021-08-14_nocrs.tif": (t, None, "no coordinate reference system"),
             "lst_2021-08-14_localcs.tif": (t, local, "unknown or unusable coordinate reference system"),
             "lst_2021-08-14_nogeotransform.tif": (None, "EPSG:6933", "no geotransform")}
    for name, (transform, crs, _) in cases.items():
        profile = {"driver": "GTiff", "width": a.shape[1], "height": a.shape[0], "count": 1, "dtype": "float32"}
        profile.update({k: v for k, v in (("transform", transform), ("crs", crs)) if v is not None})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(folder / name, "w", **profile) as dst:
                dst.write(a, 1)
    return {name: why for name, (_, _, why) in cases.items()}


@pytest.mark.timeout(120)
def test_rasters_dsm_cannot_place_are_refused_by_name_and_the_rest_is_ingested(tmp_path, client):
    folder = tmp_path / "lst"
    good = _on_region(folder / "lst_2021-08-13.tif", np.full(REGION.fine_shape, 290.0, np.float32))
    bad = _unplaceable(folder)
    dem = _on_region(tmp_path / "dem" / "dem.tif", np.full(REGION.fine_shape, 800.0, np.float32))
    rotated_dem = tmp_path / "dem" / "dem_rotated.tif"
    rotated_dem.write_bytes((folder / "lst_2021-08-13_rotated.tif").read_bytes())
    inputs = {"geotiff": {"lst": {"paths": str(folder), "resampling": "nearest"}}, "dem": {"paths": str(tmp_path / "dem")}}
    res = _ingest(_config(tmp_path, client, inputs))
    assert res.exit_code == 0, res.output  # every input gave something
    files = _files(_report(tmp_path))
    for name, why in {**bad, "dem_rotated.tif": "rotated or sheared"}.items():
        assert (files[name]["status"], files[name]["error"]) == ("failed", "GeolocationError"), files[name]
        assert why in files[name]["reason"] and name in res.output
    assert files[good.name]["status"] == files[dem.name]["status"] == "used"
    cube = open_cube(str(tmp_path / "cube.zarr"))
    assert (cube["lst"].values[0] == 290.0).all() and np.isnan(cube["lst"].values[1]).all()
    assert (cube["dem"].values == 800.0).all()
