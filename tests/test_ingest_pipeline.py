"""``dsm ingest`` end to end on a real LocalCluster: real and fixture granules, bad files,
idempotency, a cube that a bad rerun must not damage, and inputs plus cube on loopback S3."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from affine import Affine
from click.testing import CliRunner
from rasterio.warp import transform_bounds

from dsm import config as config_mod
from dsm.cli import main
from dsm.cube import open_cube
from dsm.grid import Region
from dsm.ingest import dem_to_region, modis_to_region, read_modis_tile, read_spl3smp, soil_to_region
from dsm.ingest.plan import plan
from dsm.ingest.precip import read_imerg, remap_to_region
from dsm.ingest.report import report_ref
from dsm.ingest.reproject import EASE_CRS, SINUSOIDAL_CRS
from dsm.storeref import StoreRef
from dsm.testing.granules import (
    LAYOUTS,
    SmapPass,
    modis_filename,
    spl3smp_filename,
    write_geotiff,
    write_modis_tile,
    write_spl3smp,
    write_srtm_hgt,
)
from dsm.testing.precip import imerg_filename, write_imerg_day

pytestmark = pytest.mark.slow  # make test-fast leaves these out

MOD11 = "MOD11A1.A2021227.h11v05.061.2021228105320.hdf"
MOD13 = "MOD13A2.A2021225.h11v06.061.2021320163717.hdf"
X0, Y0, TILE = -20015109.354, 10007554.677, 1111950.5197
H, V = 11, 5
D13, D14, D15, D16, D17, D18 = (dt.date(2021, 8, d) for d in range(13, 19))
DAYS = [D13, D14, D15, D16, D17, D18]


def _region(real_tile: Path) -> Region:
    """1 x 2 SMAP cells inside tile h11v05 where the real MOD11A1 has many valid pixels."""
    from pyproj import Transformer

    ds, _ = read_modis_tile(real_tile)
    v = ~np.isnan(ds["lst"].values)[100:1100, 100:1100]  # keep away from the tile's edges
    blk = v.reshape(20, 50, 20, 50).mean((1, 3))
    i, j = np.unravel_index(np.argmax(blk), blk.shape)
    x, y = ds.x.values[100 + j * 50 + 25], ds.y.values[100 + i * 50 + 25]
    lon, lat = Transformer.from_crs(SINUSOIDAL_CRS, "EPSG:4326", always_xy=True).transform(x, y)
    return Region.around(float(lon), float(lat), 1, 2)


def _window(region: Region, pixels: int, margin: int = 6) -> dict:
    """The window of tile (H, V) with ``pixels`` per side covering the region."""
    left, bottom, right, top = transform_bounds(EASE_CRS, SINUSOIDAL_CRS, *region.bounds, densify_pts=51)
    px = TILE / pixels
    ulx, uly = X0 + H * TILE, Y0 - V * TILE
    c0, c1 = math.floor((left - ulx) / px) - margin, math.ceil((right - ulx) / px) + margin
    r0, r1 = math.floor((uly - top) / px) - margin, math.ceil((uly - bottom) / px) + margin
    assert 0 <= c0 < c1 <= pixels and 0 <= r0 < r1 <= pixels, "region must lie inside the tile"
    return {"row0": r0, "col0": c0, "shape": (r1 - r0, c1 - c0)}


def _fields(shape, rng, lo, hi):
    return (lo + (hi - lo) * rng.random(shape)).astype(np.float32)


def _reflectances(shape, rng) -> dict[str, np.ndarray]:
    """MOD09A1 bands 1-7; band 7 (SWIR 2.1 um) below band 6 (1.6 um), as over land, so NSDSI =
    (B6 - B7) / B6 stays within its valid range (independent draws gave down to -8: masked)."""
    bands = {f"sur_refl_b0{b}": _fields(shape, rng, 0.05, 0.45) for b in range(1, 7)}
    bands["sur_refl_b07"] = (bands["sur_refl_b06"] * _fields(shape, rng, 0.5, 0.95)).astype(np.float32)
    return bands


def _modis(folder: Path, product: str, date: dt.date, region: Region, rng, **kw) -> Path:
    lay = LAYOUTS[product]
    win = _window(region, lay.pixels)
    shape = win["shape"]
    data = {
        "MOD11A1": lambda: {"LST_Day_1km": _fields(shape, rng, 285, 320), "QC_Day": np.zeros(shape, np.uint8)},
        "MOD13A2": lambda: {"1 km 16 days NDVI": _fields(shape, rng, 0.1, 0.9), "1 km 16 days EVI": _fields(shape, rng, 0.1, 0.6),
                            "1 km 16 days pixel reliability": np.zeros(shape, np.int8)},
        "MOD09A1": lambda: {**_reflectances(shape, rng), "sur_refl_state_500m": np.zeros(shape, np.uint16)},
        "MOD15A2H": lambda: {"Lai_500m": _fields(shape, rng, 0.5, 6), "Fpar_500m": _fields(shape, rng, 0.1, 0.9),
                             "FparLai_QC": np.zeros(shape, np.uint8)},
        "MCD43A3": lambda: {"Albedo_WSA_shortwave": _fields(shape, rng, 0.1, 0.3), "Albedo_BSA_shortwave": _fields(shape, rng, 0.1, 0.3),
                            "BRDF_Albedo_Band_Mandatory_Quality_shortwave": np.zeros(shape, np.uint8)},
    }[product]()  # fmt: skip
    if kw.pop("all_fill", False):
        data = {k: (np.full(shape, np.nan, np.float32) if a.dtype.kind == "f" else a) for k, a in data.items()}
    path = folder / kw.pop("name", modis_filename(product, date, H, V))
    return write_modis_tile(path, product, H, V, date, data, **win, **kw)


def _truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 3])
    return dst


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    """Folders of real and fixture granules (with bad ones) and a config for 2021-08-13..18."""
    root = tmp_path_factory.mktemp("ingest")
    rng = np.random.default_rng(11)
    region = _region(shared_data / "modis" / MOD11)
    d = {k: root / k for k in ("smap", "mod11a1", "mcd43", "mod15a2h", "mod09a1", "mod13a2", "dem", "soil")}
    for p in d.values():
        p.mkdir()
    # MOD11A1: real tile (08-15); fixture (08-16) + truncated other tile -> partial group;
    # truncated (08-17) -> failed group; missing SDS (08-18); wrong product (a MOD13A2 file);
    # an impossible date in the name
    shutil.copy(shared_data / "modis" / MOD11, d["mod11a1"] / MOD11)
    _modis(d["mod11a1"], "MOD11A1", D16, region, rng)
    _truncated(shared_data / "modis" / MOD11, d["mod11a1"] / modis_filename("MOD11A1", D16, 12, 5))
    _truncated(shared_data / "modis" / MOD11, d["mod11a1"] / modis_filename("MOD11A1", D17, H, V))
    _modis(d["mod11a1"], "MOD11A1", D18, region, rng, omit=("LST_Day_1km",))
    shutil.copy(shared_data / "modis" / MOD13, d["mod11a1"] / MOD13)
    shutil.copy(shared_data / "modis" / MOD11, d["mod11a1"] / "MOD11A1.A2021999.h11v05.061.2021228105320.hdf")
    # composites on 2021-08-13 (day 225: an 8-day and a 16-day start); albedo daily, 08-14 all fill
    for key, product in (("mod13a2", "MOD13A2"), ("mod09a1", "MOD09A1"), ("mod15a2h", "MOD15A2H")):
        _modis(d[key], product, D13, region, rng)
    for day in (D13, D15):
        _modis(d["mcd43"], "MCD43A3", day, region, rng)
    _modis(d["mcd43"], "MCD43A3", D14, region, rng, all_fill=True)
    # SMAP: every day, plus an older duplicate (08-14) and a day outside the dates (08-19)
    lat, lon = np.meshgrid(np.arange(406), np.arange(964), indexing="ij")
    for day in [*DAYS, dt.date(2021, 8, 19)]:
        sm = (0.1 + 0.3 * rng.random((406, 964))).astype(np.float32)
        write_spl3smp(d["smap"] / spl3smp_filename(day), day, SmapPass(sm))
    write_spl3smp(d["smap"] / spl3smp_filename(D14, crid="R18290"), D14, SmapPass(np.full((406, 964), 0.2, np.float32)))
    # DEM: SRTM tiles over the region; a GeoTIFF DEM without a CRS (failed)
    lo0, la0, lo1, la1 = region.lonlat_bounds
    for la in range(math.floor(la0), math.floor(la1) + 1):
        for lo in range(math.floor(lo0), math.floor(lo1) + 1):
            yy, xx = np.meshgrid(la + 1 - np.arange(1201) / 1200, lo + np.arange(1201) / 1200, indexing="ij")
            write_srtm_hgt(d["dem"], la, lo, 300 + 200 * np.sin(3 * xx) * np.cos(2 * yy))
    write_geotiff(d["dem"] / "nocrs_dem.tif", np.ones((10, 10), np.float32), Affine(1, 0, 0, 0, -1, 10), None)
    # soil: 0.01 degree rasters in EPSG:4326
    t = Affine(0.01, 0, math.floor(lo0) - 0.5, 0, -0.01, math.ceil(la1) + 0.5)
    n = (int((math.ceil(la1) - math.floor(la0) + 1) * 100), int((math.ceil(lo1) - math.floor(lo0) + 1) * 100))
    sand = _fields(n, rng, 20, 60)
    for name, a in (("sand", sand), ("silt", (100 - sand) / 2), ("clay", (100 - sand) / 2)):
        write_geotiff(d["soil"] / f"{name}.tif", a.astype(np.float32), t, "EPSG:4326")
    raw = {
        "region": {"cells": [region.row0, region.col0, region.nrows, region.ncols]},
        "dates": {"start": D13.isoformat(), "end": D18.isoformat()},
        "stores": {"cube": "cube.zarr"},
        "cluster": {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"},
        "chunks": {"space": 36, "time": 2},
        "inputs": {
            "smap": {"paths": "smap/*.h5"},
            "mod11a1": {"paths": ["mod11a1/*.hdf"]},
            "mcd43": {"paths": "mcd43/*.hdf", "albedo": "wsa"},
            "mod15a2h": {"paths": "mod15a2h/*.hdf"},
            "mod09a1": {"paths": "mod09a1/*.hdf"},
            "mod13a2": {"paths": "mod13a2/*.hdf"},
            "dem": {"paths": ["dem/*.hgt", "dem/*.tif"]},
            "soil": {"sand": "soil/sand.tif", "silt": "soil/silt.tif", "clay": "soil/clay.tif"},
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root, region, d


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ingest(config: Path, *extra: str):
    res = CliRunner().invoke(main, ["ingest", str(config), "--no-progress", *extra], catch_exceptions=False)
    return res


@pytest.fixture(scope="module")
def first_run(inputs):
    root, region, d = inputs
    res = _ingest(root / "config.yaml")
    assert res.exit_code == 0, res.output
    return res, json.loads((root / "cube.ingest_report.json").read_text())


def _by_name(report):
    return {Path(f["path"]).name: f for f in report["files"]}


@pytest.mark.timeout(120)
def test_report_names_every_bad_file_with_its_reason(inputs, first_run):
    root, region, d = inputs
    res, report = first_run
    files = _by_name(report)
    assert files[MOD11]["status"] == "used" and files[MOD11]["date"] == "2021-08-15"
    bad = {
        modis_filename("MOD11A1", D16, 12, 5): ("failed", "UnreadableFileError", "not a readable HDF4"),
        modis_filename("MOD11A1", D17, H, V): ("failed", "UnreadableFileError", "not a readable HDF4"),
        modis_filename("MOD11A1", D18, H, V): ("failed", "MissingVariableError", "LST_Day_1km"),
        MOD13: ("failed", "WrongProductError", "MOD11A1 was asked"),
        "MOD11A1.A2021999.h11v05.061.2021228105320.hdf": ("failed", "InputDateError", "A2021999"),
        modis_filename("MCD43A3", D14, H, V): ("skipped", "EmptyGranuleError", "no valid"),
        "nocrs_dem.tif": ("failed", "GeolocationError", "no coordinate reference system"),
        spl3smp_filename(D14, crid="R18290"): ("skipped", "", f"superseded by {spl3smp_filename(D14)}"),
        spl3smp_filename(dt.date(2021, 8, 19)): ("skipped", "", "is not a day of the cube"),
    }
    for name, (status, error, reason) in bad.items():
        f = files[name]
        assert (f["status"], f["error"]) == (status, error), f
        assert reason in f["reason"], f
    used = {n for n, f in files.items() if f["status"] == "used"}
    assert len(used) == len(files) - len(bad) == 1 + 1 + 3 + 2 + 6 + len(list(d["dem"].glob("*.hgt"))) + 3
    groups = {(g["source"], g["date"]): g["status"] for g in report["groups"]}
    assert groups[("mod11a1", "2021-08-15")] == "complete"
    assert groups[("mod11a1", "2021-08-16")] == "partial"
    assert groups[("mod11a1", "2021-08-17")] == groups[("mod11a1", "2021-08-13")] == "failed"
    assert groups[("mcd43", "2021-08-14")] == "empty"
    assert groups[("dem", None)] == "partial" and groups[("sand", None)] == "complete"
    s = report["summary"]
    assert s["task_errors"] == 0 and s["failed"] == 6 and s["skipped"] == 3
    # printed: the summary line and every bad file with its reason
    assert "6 failed" in res.output and "not a readable HDF4" in res.output and "nocrs_dem.tif" in res.output
    assert report["provenance"]["lst"]["2021-08-15"] == [str(d["mod11a1"] / MOD11)]
    assert report["provenance"]["smap_sm"]["2021-08-14"] == [str(d["smap"] / spl3smp_filename(D14))]


@pytest.mark.timeout(60)
def test_cube_values_equal_the_readers(inputs, first_run):
    root, region, d = inputs
    cube = open_cube(str(root / "cube.zarr")).load()
    t = {day: i for i, day in enumerate(DAYS)}
    exp, _, _ = modis_to_region([d["mod11a1"] / MOD11], region, "MOD11A1")
    np.testing.assert_array_equal(cube["lst"].values[t[D15]], exp["lst"].values)
    assert np.isfinite(exp["lst"].values).sum() > 500
    exp, _, _ = modis_to_region([d["mod11a1"] / modis_filename("MOD11A1", D16, H, V)], region)
    np.testing.assert_array_equal(cube["lst"].values[t[D16]], exp["lst"].values)
    assert np.isfinite(exp["lst"].values).all()
    for day in (D13, D14, D17, D18):  # failed groups wrote nothing
        assert np.isnan(cube["lst"].values[t[day]]).all()
    exp, _, _ = modis_to_region([d["mcd43"] / modis_filename("MCD43A3", D15, H, V)], region)
    np.testing.assert_array_equal(cube["albedo"].values[t[D15]], exp["albedo_wsa"].values)
    assert np.isnan(cube["albedo"].values[t[D14]]).all()
    for key, names in (("mod15a2h", {"lai": "lai", "fpar": "fapar"}), ("mod09a1", {"ndwi": "ndwi", "lswi": "lswi", "nsdsi": "nsdsi"})):
        exp, _, _ = modis_to_region(sorted(d[key].glob("*.hdf")), region)
        for src, var in names.items():
            np.testing.assert_array_equal(cube[var].values[0], exp[src].values)
            assert np.isfinite(cube[var].values[0]).all()
    exp, _, _ = modis_to_region(sorted(d["mod13a2"].glob("*.hdf")), region)
    np.testing.assert_array_equal(cube["ndvi"].values[0], exp["ndvi"].values)
    np.testing.assert_array_equal(cube["evi"].values[0], exp["evi"].values)
    for day in DAYS:
        sm, _ = read_spl3smp(d["smap"] / spl3smp_filename(day), region)
        np.testing.assert_array_equal(cube["smap_sm"].values[t[day]], sm.values)
    dem, _ = dem_to_region(sorted(d["dem"].glob("*.hgt")), region)
    for v in ("dem", "slope", "aspect"):
        np.testing.assert_array_equal(cube[v].values, dem[v].values)
    soil = soil_to_region({f: d["soil"] / f"{f}.tif" for f in ("sand", "silt", "clay")}, region)
    for v in ("sand", "silt", "clay"):
        np.testing.assert_array_equal(cube[v].values, soil[v].values)
    land = np.isfinite(dem["dem"].values) & np.isfinite(soil["sand"].values)
    np.testing.assert_array_equal(cube["land_mask"].values, land.astype(np.uint8))
    assert land.all()


@pytest.mark.timeout(120)
def test_second_ingest_is_byte_identical_and_a_bad_rerun_damages_nothing(inputs, first_run):
    root, region, d = inputs
    before = _snapshot(root / "cube.zarr")
    res = _ingest(root / "config.yaml")
    assert res.exit_code == 0, res.output
    assert _snapshot(root / "cube.zarr") == before
    report = json.loads((root / "cube.ingest_report.json").read_text())
    assert report["summary"]["blocks_written"] == 0 and report["summary"]["failed"] == 6
    # a rerun whose only 08-15 MOD11A1 is a corrupt copy of the same name, and whose DEM is bad
    bad = root / "bad"
    (bad / "mod11a1").mkdir(parents=True)
    _truncated(d["mod11a1"] / MOD11, bad / "mod11a1" / MOD11)
    (bad / "N44W072.hgt").write_bytes(b"\0" * 1000)
    raw = yaml.safe_load((root / "config.yaml").read_text())
    raw["inputs"] = {"mod11a1": {"paths": str(bad / "mod11a1" / "*.hdf")}, "dem": {"paths": str(bad / "*.hgt")}}
    raw["stores"]["cube"] = str(root / "cube.zarr")
    (root / "bad.yaml").write_text(yaml.safe_dump(raw))
    res = _ingest(root / "bad.yaml", "--strict")
    assert res.exit_code == 1 and "2 failed" in res.output, res.output
    assert _snapshot(root / "cube.zarr") == before
    report = json.loads((root / "cube.ingest_report.json").read_text())
    assert {g["status"] for g in report["groups"]} == {"failed"}
    # provenance accumulates over runs: 08-15 still names the file that made it
    assert report["provenance"]["lst"]["2021-08-15"] == [str(d["mod11a1"] / MOD11)]


def test_plan_owns_whole_time_chunks(inputs, first_run):
    """No two tasks write the same chunk: daily tasks cover whole chunks of chunks.time days."""
    root, region, d = inputs
    cfg = config_mod.load(root / "config.yaml")
    p = plan(cfg, open_cube(cfg.stores.cube))
    spans = {}
    for t in p.tasks:
        assert (t.source, t.dim, t.start) not in spans
        spans[(t.source, t.dim, t.start)] = t.stop
        if t.dim == "time":
            assert t.start % 2 == 0 and t.stop - t.start == 2
            assert all(t.start <= DAYS.index(g.date) < t.stop for g in t.groups)
    assert sum(1 for t in p.tasks if t.source == "smap") == 3
    remote = report_ref(StoreRef("s3://b/x/cube.zarr", {"anon": True}))
    assert remote == StoreRef("s3://b/x/cube.ingest_report.json", {"anon": True})  # beside it, same options
    assert report_ref(StoreRef(str(root / "cube.zarr"))).url == str(root / "cube.ingest_report.json")


def test_config_refuses_two_sources_for_one_variable(tmp_path):
    raw = {"region": {"cells": [100, 200, 1, 1]}, "dates": {"start": "2021-08-13", "end": "2021-08-14"},
           "stores": {"cube": "c.zarr"}, "inputs": {"mod11a1": {"paths": "a/*.hdf"}, "geotiff": {"lst": {"paths": "b/*.tif"}}}}  # fmt: skip
    with pytest.raises(config_mod.ConfigError, match="geotiff.lst"):
        config_mod.from_dict(raw)
    raw["inputs"] = {"geotiff": {"dem": {"paths": "b/*.tif"}}}
    with pytest.raises(config_mod.ConfigError, match="not a daily, 8-day or 16-day"):
        config_mod.from_dict(raw)
    raw["inputs"] = {"smap": {"paths": "s/*.h5"}, "geotiff": {"lst": {"paths": ["t/*.tif"], "date_regex": r"_(?P<date>\d{7})"}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = config_mod.load(tmp_path / "c.yaml")
    assert cfg.inputs.smap.paths == (str(tmp_path / "s/*.h5"),)
    assert cfg.inputs.geotiff["lst"].paths == (str(tmp_path / "t/*.tif"),)


@pytest.mark.s3
@pytest.mark.timeout(180)
def test_ingest_from_and_into_s3(s3, inputs, tmp_path):
    """Inputs and cube in a bucket: workers download the granules; GeoTIFF series for lst."""
    from distributed import Client, LocalCluster

    from dsm.stages.ingest import run_ingest

    root, region, d = inputs
    bucket = s3.make_bucket("ingest")
    fs = s3.filesystem()
    for day in (D13, D14):
        fs.put_file(str(d["smap"] / spl3smp_filename(day)), f"ingest/in/smap/{spl3smp_filename(day)}")
    fs.put_file(str(d["mcd43"] / modis_filename("MCD43A3", D13, H, V)), f"ingest/in/mcd43/{modis_filename('MCD43A3', D13, H, V)}")
    fs.pipe_file(f"ingest/in/mcd43/{modis_filename('MCD43A3', D15, H, V)}", b"not an hdf file")
    lst = np.full(region.fine_shape, 300.0, np.float32)
    write_geotiff(tmp_path / "lst_2021-08-14.tif", lst, region.fine_transform, "EPSG:6933")
    fs.put_file(str(tmp_path / "lst_2021-08-14.tif"), "ingest/in/lst/lst_2021-08-14.tif")
    fs.put_file(str(d["soil"] / "sand.tif"), "ingest/in/soil/sand.tif")
    raw = yaml.safe_load((root / "config.yaml").read_text())
    raw["stores"] = {"cube": f"{bucket}/cube.zarr", "storage_options": s3.storage_options}
    raw["inputs"] = {
        "storage_options": s3.storage_options,
        "smap": {"paths": f"{bucket}/in/smap/*.h5"},
        "mcd43": {"paths": f"{bucket}/in/mcd43/*.hdf"},
        "geotiff": {"lst": {"paths": f"{bucket}/in/lst/*.tif", "resampling": "nearest"}},
        "soil": {"sand": f"{bucket}/in/soil/sand.tif"},
    }
    cfg = config_mod.from_dict(raw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, Client(lc) as client:
        report = run_ingest(cfg, client, progress=False)
        keys = sorted(fs.find("ingest/cube.zarr"))
        before = {k: fs.cat(k) for k in keys}
        again = run_ingest(cfg, client, progress=False)
        assert {k: fs.cat(k) for k in sorted(fs.find("ingest/cube.zarr"))} == before
    assert again["summary"]["blocks_written"] == 0
    assert report["report"] == f"{bucket}/cube.ingest_report.json" and fs.exists("ingest/cube.ingest_report.json")
    files = _by_name(report)
    assert files[modis_filename("MCD43A3", D15, H, V)]["status"] == "failed"
    assert files[modis_filename("MCD43A3", D15, H, V)]["path"].startswith("s3://ingest/in/mcd43/")
    assert sum(f["status"] == "used" for f in report["files"]) == 5
    cube = open_cube(cfg.stores.ref("cube")).load()
    np.testing.assert_array_equal(cube["lst"].values[1], lst)
    assert np.isnan(cube["lst"].values[0]).all()
    sm, _ = read_spl3smp(d["smap"] / spl3smp_filename(D14), region)
    np.testing.assert_array_equal(cube["smap_sm"].values[1], sm.values)
    exp, _, _ = modis_to_region([d["mcd43"] / modis_filename("MCD43A3", D13, H, V)], region)
    np.testing.assert_array_equal(cube["albedo"].values[0], exp["albedo_wsa"].values)
    soil = soil_to_region({"sand": d["soil"] / "sand.tif"}, region)
    np.testing.assert_array_equal(cube["sand"].values, soil["sand"].values)
    np.testing.assert_array_equal(cube["land_mask"].values, np.isfinite(soil["sand"].values).astype(np.uint8))


# -- precipitation (inputs.precip: IMERG daily files) ------------------------------------
P_AXIS = [dt.date(2021, 8, 9) + dt.timedelta(days=k) for k in range(10)]  # spin-up 3 -> 4 days (time chunk 2)
P_GOOD = [dt.date(2021, 8, d) for d in (9, 10, 12, 13, 16, 18)]
P_VARIED = dt.date(2021, 8, 16)


def _imerg_grid(region: Region, margin: int = 3, west_cut: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centres of IMERG's global 0.1 degree grid around the region (or only west of ``west_cut``)."""
    lon0, lat0, lon1, lat1 = region.lonlat_bounds
    i = np.arange(math.floor(lat0 * 10) - margin, math.ceil(lat1 * 10) + margin)
    j = np.arange(math.floor(lon0 * 10) - margin, math.ceil(lon1 * 10) + margin)
    lat, lon = np.round((i[::-1] + 0.5) / 10, 2), np.round((j + 0.5) / 10, 2)
    return lat, (lon if west_cut is None else lon[lon < west_cut])


def _precip_config(root: Path, region: Region, name: str, spinup: int = 3, paths: str = "imerg/*.nc4") -> Path:
    raw = {
        "region": {"cells": [region.row0, region.col0, region.nrows, region.ncols]},
        "dates": {"start": D13.isoformat(), "end": D18.isoformat()},
        "stores": {"cube": f"{name}.zarr"},
        "cluster": {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"},
        "chunks": {"space": 36, "time": 2},
        "rain": {"spinup_days": spinup},
        "inputs": {"precip": {"paths": paths, "product": "imerg"}, "land_mask": {"paths": "precip_land.tif"}},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def precip_run(inputs):
    """IMERG files for six days of the precipitation axis, a superseded Late run, a corrupt file,
    a file covering half the region and one outside the axis; land everywhere."""
    root, region, _ = inputs
    folder = root / "imerg"
    folder.mkdir()
    lat, lon = _imerg_grid(region)
    rng = np.random.default_rng(19)
    values = {}
    for k, day in enumerate(P_GOOD):
        v = (rng.random((lat.size, lon.size)) * 30).astype(np.float32) if day == P_VARIED else np.full(
            (lat.size, lon.size), k + 1.5, np.float32)
        values[day] = v
        write_imerg_day(folder / imerg_filename(day), day, lat, lon, v)
    write_imerg_day(folder / imerg_filename(D13, run="late"), D13, lat, lon, np.full((lat.size, lon.size), 99.0), run="late")
    _truncated(folder / imerg_filename(D13), folder / imerg_filename(D14))
    mid = float(np.mean(region.lonlat_bounds[::2]))
    half_lat, half_lon = _imerg_grid(region, west_cut=mid)
    write_imerg_day(folder / imerg_filename(D15), D15, half_lat, half_lon, np.ones((half_lat.size, half_lon.size)))
    write_imerg_day(folder / imerg_filename(dt.date(2021, 8, 20)), dt.date(2021, 8, 20), lat, lon, values[P_GOOD[0]])
    lon0, lat0, lon1, lat1 = region.lonlat_bounds
    t = Affine(0.01, 0, math.floor(lon0) - 0.5, 0, -0.01, math.ceil(lat1) + 0.5)
    n = (int((math.ceil(lat1) - math.floor(lat0) + 1) * 100), int((math.ceil(lon1) - math.floor(lon0) + 1) * 100))
    write_geotiff(root / "precip_land.tif", np.ones(n, np.float32), t, "EPSG:4326")
    config = _precip_config(root, region, "precip_cube")
    res = _ingest(config)
    assert res.exit_code == 0, res.output
    return config, res, json.loads((root / "precip_cube.ingest_report.json").read_text()), values


@pytest.mark.timeout(180)
def test_precip_ingest_writes_the_days_and_names_the_missing_ones(inputs, precip_run):
    root, region, _ = inputs
    config, res, report, values = precip_run
    cube = open_cube(str(root / "precip_cube.zarr")).load()
    assert [pd.Timestamp(t).date() for t in cube["time_precip"].values] == P_AXIS
    precip = cube["precip"].values
    for day in P_GOOD:
        got = precip[P_AXIS.index(day)]
        if day == P_VARIED:  # the reader + remap chain, and a field that really varies
            field = read_imerg(root / "imerg" / imerg_filename(day), bbox=region.lonlat_bounds)
            exp = remap_to_region(field, region, report["precip"]["remap"])[0]  # the configured (default) remap
            np.testing.assert_array_equal(got, exp)
            assert np.nanstd(got) > 1.0
        else:  # a constant field stays that constant on the right day
            np.testing.assert_allclose(got, values[day][0, 0], rtol=1e-6)
    missing = ["2021-08-11", "2021-08-14", "2021-08-15", "2021-08-17"]
    for day in missing:
        assert np.isnan(precip[P_AXIS.index(dt.date.fromisoformat(day))]).all()
    pr = report["precip"]
    assert pr["missing_days"] == missing and pr["day"] == "UTC" and pr["product"] == "imerg"
    assert pr["days_without_file"] == ["2021-08-11", "2021-08-17"]
    assert pr["days_without_data"] == ["2021-08-14", "2021-08-15"]
    assert pr["days_with_data"] == len(P_GOOD)
    files = _by_name(report)
    assert files[imerg_filename(D13, run="late")]["status"] == "skipped"
    assert "superseded by " + imerg_filename(D13) in files[imerg_filename(D13, run="late")]["reason"]
    assert (files[imerg_filename(D14)]["status"], files[imerg_filename(D14)]["error"]) == ("failed", "UnreadableFileError")
    assert files[imerg_filename(D15)]["error"] == "GeolocationError" and "covers only part" in files[imerg_filename(D15)]["reason"]
    assert files[imerg_filename(dt.date(2021, 8, 20))]["status"] == "skipped"
    assert report["provenance"]["precip"]["2021-08-13"] == [str(root / "imerg" / imerg_filename(D13))]
    assert "precip (imerg, day UTC): 6 days with data this run, 4 missing: 2021-08-11" in res.output


@pytest.mark.timeout(120)
def test_precip_ingest_runs_the_antecedent_indices_and_is_idempotent(inputs, precip_run):
    pytest.importorskip("dsm.antecedent")
    root, _, _ = inputs
    config, res, report, _ = precip_run
    assert report["antecedent"]["days"] == len(DAYS) and report["antecedent"]["cube_spinup_days"] == 4
    assert report["summary"]["task_errors"] == 0 and "antecedent indices: 6 days written" in res.output
    cube = open_cube(str(root / "precip_cube.zarr"))
    assert np.isfinite(cube["api_2d"].values).any()
    before = cube["precip"].values
    again = _ingest(config)
    assert again.exit_code == 0, again.output
    rep2 = json.loads((root / "precip_cube.ingest_report.json").read_text())
    assert rep2["blocks_written"].get("precip", 0) == 0 and rep2["precip"]["missing_days"] == report["precip"]["missing_days"]
    np.testing.assert_array_equal(open_cube(str(root / "precip_cube.zarr"))["precip"].values, before)


def test_precip_plan_refuses_a_cube_without_the_axis_or_with_another_spinup(tmp_path):
    from dsm.cube import RAIN_VARS, SCHEMA, Layout, create_cube, template
    from dsm.store import create

    raw = {"region": {"cells": [100, 200, 1, 1]}, "dates": {"start": "2021-08-13", "end": "2021-08-18"},
           "stores": {"cube": str(tmp_path / "old.zarr")}, "chunks": {"space": 36, "time": 2},
           "rain": {"spinup_days": 3}, "inputs": {"precip": {"paths": str(tmp_path / "*.nc4"), "product": "imerg"}}}
    cfg = config_mod.from_dict(raw)
    layout = Layout.from_config(cfg)
    create(cfg.stores.ref("cube"), template(layout, [s for s in SCHEMA if s.name not in RAIN_VARS]), "cube")
    with pytest.raises(config_mod.ConfigError, match=r"inputs.precip: the cube .*old.zarr has no precipitation axis"):
        plan(cfg, open_cube(cfg.stores.cube))
    raw["stores"]["cube"] = str(tmp_path / "new.zarr")
    create_cube(StoreRef(raw["stores"]["cube"]), Layout.from_config(config_mod.from_dict(raw)))
    raw["rain"]["spinup_days"] = 9
    cfg = config_mod.from_dict(raw)
    with pytest.raises(config_mod.ConfigError, match=r"4 days of precipitation spin-up, the configuration 10"):
        plan(cfg, open_cube(cfg.stores.cube))
    raw["rain"]["spinup_days"] = 4  # rounds to the same 4 days: accepted, no file -> every day missing
    cfg = config_mod.from_dict(raw)
    p = plan(cfg, open_cube(cfg.stores.cube))
    assert p.tasks == [] and len(p.sources["precip"]["days_without_file"]) == 10


def test_precip_plan_reads_netcdf_times_and_groups_era5_hours_across_files(tmp_path):
    """Days of many-day files come from their time coordinate; a local day needing two hourly
    files gets both; the worker's reader sums it from both."""
    from dsm.cube import Layout, create_cube
    from dsm.ingest.source_precip import precip_file_days, read_precip_group
    from dsm.testing.precip import (
        accumulate_since_00utc,
        chirps_nc_name,
        write_chirps_nc,
        write_era5land_daily,
        write_era5land_hourly,
    )

    region = Region.around(116.4, 39.9, 1, 1)  # Beijing: solar time UTC+8
    lat, lon = _imerg_grid(region)
    days = [dt.date(2021, 1, 30) + dt.timedelta(days=k) for k in range(4)]
    chirps = write_chirps_nc(tmp_path / chirps_nc_name(2021), days, lat, lon, np.ones((4, lat.size, lon.size)))
    assert precip_file_days(str(chirps), "chirps", 8, {}) == days
    daily = write_era5land_daily(tmp_path / "daily.nc", days[:2], lat, lon, np.ones((2, lat.size, lon.size)) * 0.01)
    assert precip_file_days(str(daily), "era5land", 8, {}) == days[:2]
    times = pd.date_range("2021-01-31 00:00", "2021-02-02 00:00", freq="h")
    amounts = np.random.default_rng(2).random((times.size, lat.size, lon.size)) * 5e-4
    tp = accumulate_since_00utc(times, amounts)
    jan = times < pd.Timestamp("2021-02-01")
    (tmp_path / "era5").mkdir()
    f1 = write_era5land_hourly(tmp_path / "era5" / "2021-01.nc", times[jan], lat, lon, tp[jan], layout="old")
    f2 = write_era5land_hourly(tmp_path / "era5" / "2021-02.nc", times[~jan], lat, lon, tp[~jan], layout="new")
    assert precip_file_days(str(f1), "era5land", 8, {}) == [dt.date(2021, 1, 31), dt.date(2021, 2, 1)]
    assert precip_file_days(str(f2), "era5land", 8, {}) == [dt.date(2021, 2, 1), dt.date(2021, 2, 2)]
    raw = {"region": {"cells": [region.row0, region.col0, 1, 1]}, "dates": {"start": "2021-02-01", "end": "2021-02-02"},
           "stores": {"cube": str(tmp_path / "c.zarr")}, "chunks": {"space": 36, "time": 2}, "rain": {"spinup_days": 2},
           "inputs": {"precip": {"paths": str(tmp_path / "era5" / "*.nc"), "product": "era5land"}}}
    cfg = config_mod.from_dict(raw)
    create_cube(cfg.stores.ref("cube"), Layout.from_config(cfg))
    p = plan(cfg, open_cube(cfg.stores.cube))
    groups = {g.date: g.urls for t in p.tasks for g in t.groups}
    assert groups[dt.date(2021, 2, 1)] == (str(f1), str(f2)) and groups[dt.date(2021, 1, 31)] == (str(f1),)
    assert p.sources["precip"]["utc_offset_hours"] == 8 and p.sources["precip"]["days_without_file"] == ["2021-01-30"]
    fields, many = read_precip_group("era5land", [str(f1), str(f2)], region, [dt.date(2021, 2, 1)], 8)
    assert {r.status for r in many.report} == {"used"} and len(fields) == 1
    hours = (times - pd.Timedelta(hours=1) + pd.Timedelta(hours=8)).normalize() == pd.Timestamp("2021-02-01")
    expect = 1000 * amounts[hours].sum(axis=0)
    f = fields[0]
    rows = [int(np.argmin(np.abs(lat - v))) for v in f["lat"].values]
    cols = [int(np.argmin(np.abs(lon - v))) for v in f["lon"].values]
    assert f.sizes["lat"] < lat.size  # read around the region only
    np.testing.assert_allclose(f.values[0], expect[np.ix_(rows, cols)], atol=0.02)
    # ERA5 (hourly amounts, not accumulated): every hourly file of the task fails, with the reason
    bad = write_era5land_hourly(tmp_path / "era5.nc", times, lat, lon, amounts)
    fields, many = read_precip_group("era5land", [str(bad)], region, [dt.date(2021, 2, 1)], 8)
    assert fields == [] and many.report[0].status == "failed" and "not accumulated" in many.report[0].reason
