"""Remote inputs read in place (``inputs.read: auto``, :mod:`dsm.inplace`) on the loopback S3
server: the same cube as copying them first, no local copy of the files read in place, fewer
bytes than the file for a regional read, and failures reported as failed copies are."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.shutil import copy as rio_copy

import dsm.inplace
from dsm import config as config_mod
from dsm.cube import open_cube
from dsm.files import FileReport, local_copies
from dsm.grid import Region
from dsm.ingest.base import read_many
from dsm.ingest.rasters import ValueRule, geotiff_series_to_region
from dsm.ingest.reproject import SINUSOIDAL_CRS
from dsm.ingest.smap import read_smap
from dsm.ingest.source import in_place
from dsm.ingest.sources import configured_sources
from dsm.inplace import input_files
from dsm.testing.granules import (
    LAYOUTS,
    TILE_SIZE,
    TILE_X0,
    TILE_Y0,
    SmapPass,
    modis_filename,
    spl3smp_filename,
    write_geotiff,
    write_modis_tile,
    write_spl3smp,
)

pytestmark = pytest.mark.slow

REGION = Region.around(109.0, 38.9, 2, 2)
DAYS = [dt.date(2021, 8, 13), dt.date(2021, 8, 14), dt.date(2021, 8, 15)]


def _cog(path: Path, array: np.ndarray, transform: Affine, crs: str = "EPSG:4326", nodata: float | None = None,
         blocksize: int = 256) -> Path:
    """A Cloud-Optimized GeoTIFF (deflate, tiled, with overviews) of one band."""
    plain = path.with_suffix(".plain.tif")
    write_geotiff(plain, array, transform, crs, nodata)
    rio_copy(str(plain), str(path), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=blocksize)
    plain.unlink()
    return path


def _around(region: Region, deg: float, res: float) -> tuple[Affine, tuple[int, int]]:
    """A lon/lat grid of ``res`` degrees reaching ``deg`` degrees beyond the region on every side."""
    lon0, lat0, lon1, lat1 = region.lonlat_bounds
    west, north = math.floor(lon0 - deg), math.ceil(lat1 + deg)
    shape = (round((north - math.floor(lat0 - deg)) / res), round((math.ceil(lon1 + deg) - west) / res))
    return Affine(res, 0, west, 0, -res, north), shape


def _smap(path: Path, day: dt.date, rng: np.random.Generator, extra: int = 0) -> Path:
    """A global SPL3SMP granule (land-like 40 % of the cells observed, all of the region's); ``extra`` more float32
    variables per pass, as the real granule's brightness temperatures, opacity... (its size)."""
    import h5py

    observed = rng.random((406, 964)) < 0.4
    observed[REGION.row0:REGION.row0 + REGION.nrows, REGION.col0:REGION.col0 + REGION.ncols] = True
    sm = np.where(observed, 0.05 + 0.4 * rng.random((406, 964)), np.nan).astype(np.float32)
    write_spl3smp(path, day, SmapPass(sm), SmapPass(sm[::-1].copy()))
    with h5py.File(path, "a") as f:
        for group, sfx in (("Soil_Moisture_Retrieval_Data_AM", ""), ("Soil_Moisture_Retrieval_Data_PM", "_pm")):
            for i in range(extra):
                f[group].create_dataset(f"tb_extra_{i}{sfx}", data=np.where(observed, 200 + 100 * rng.random(sm.shape),
                                                                             -9999.0).astype(np.float32),
                                        chunks=(203, 482), compression="gzip", compression_opts=4)
    return path


def _modis_lst(folder: Path, day: dt.date, rng: np.random.Generator) -> Path:
    """A whole MOD11A1 tile holding the region's centre."""
    lon, lat = REGION.lonlat_bounds[0] / 2 + REGION.lonlat_bounds[2] / 2, REGION.lonlat_bounds[1] / 2 + REGION.lonlat_bounds[3] / 2
    x, y = Transformer.from_crs("EPSG:4326", SINUSOIDAL_CRS, always_xy=True).transform(lon, lat)
    h, v = int((x - TILE_X0) // TILE_SIZE), int((TILE_Y0 - y) // TILE_SIZE)
    n = LAYOUTS["MOD11A1"].pixels
    data = {"LST_Day_1km": (285 + 30 * rng.random((n, n))).astype(np.float32), "QC_Day": np.zeros((n, n), np.uint8)}
    return write_modis_tile(folder / modis_filename("MOD11A1", day, h, v), "MOD11A1", h, v, day, data)


@pytest.fixture(scope="module")
def bucket(s3, tmp_path_factory):
    """SMAP granules, per-date LST COGs, a DEM COG and a MODIS HDF4 tile in a bucket."""
    root = tmp_path_factory.mktemp("inplace")
    rng = np.random.default_rng(5)
    url = s3.make_bucket("inplace")
    fs = s3.filesystem()
    for day in DAYS[:2]:
        name = spl3smp_filename(day)
        fs.put_file(str(_smap(root / name, day, rng)), f"inplace/smap/{name}")
    transform, shape = _around(REGION, 0.5, 0.01)
    for day in DAYS[1:]:
        lst = (290 + 20 * rng.random(shape)).astype(np.float32)
        fs.put_file(str(_cog(root / f"lst_{day}.tif", lst, transform)), f"inplace/lst/lst_{day}.tif")
    dem = (500 + 1000 * rng.random(shape)).astype(np.float32)
    fs.put_file(str(_cog(root / "dem.tif", dem, transform)), "inplace/dem/dem.tif")
    tile = _modis_lst(root, DAYS[0], rng)
    fs.put_file(str(tile), f"inplace/mod11a1/{tile.name}")
    return url


def _config(tmp_path: Path, bucket: str, so: dict, read: str) -> config_mod.Config:
    return config_mod.from_dict({
        "region": {"cells": [REGION.row0, REGION.col0, REGION.nrows, REGION.ncols]},
        "dates": {"start": DAYS[0].isoformat(), "end": DAYS[-1].isoformat()},
        "stores": {"cube": str(tmp_path / f"{read}.zarr")},
        "chunks": {"space": 36, "time": 2},
        "inputs": {"storage_options": so, "read": read,
                   "smap": {"paths": f"{bucket}/smap/*.h5"},
                   "geotiff": {"lst": {"paths": f"{bucket}/lst/*.tif", "resampling": "average"}},
                   "dem": {"paths": f"{bucket}/dem/*.tif"}},
    })


def _ingest(cfg: config_mod.Config, monkeypatch) -> tuple[dict, list[str]]:
    """Ingest on an in-process LocalCluster; also returns every URL handed to ``local_copies``."""
    from distributed import Client, LocalCluster

    from dsm.stages.ingest import run_ingest

    copied: list[str] = []

    def spy(urls, storage_options):
        copied.extend(u for u in urls if "://" in u)
        return local_copies(urls, storage_options)

    monkeypatch.setattr(dsm.inplace, "local_copies", spy)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as lc, \
            Client(lc) as client:
        return run_ingest(cfg, client, progress=False), copied


@pytest.mark.s3
def test_in_place_and_copied_inputs_make_the_same_cube(s3, bucket, tmp_path, monkeypatch):
    results = {}
    for read in ("copy", "auto"):
        cfg = _config(tmp_path, bucket, s3.storage_options, read)
        report, copied = _ingest(cfg, monkeypatch)
        assert report["summary"]["task_errors"] == 0, report["task_errors"]
        results[read] = (open_cube(cfg.stores.cube).load(), report, copied)
    (copy_cube, copy_report, copy_copied), (cube, report, copied) = results["copy"], results["auto"]
    for v in ("smap_sm", "lst", "dem"):
        assert np.isfinite(cube[v].values).any(), v
        np.testing.assert_array_equal(cube[v].values, copy_cube[v].values, err_msg=v)
    assert np.isfinite(cube["smap_sm"].values[:2]).all() and np.isfinite(cube["lst"].values[1:]).all()
    statuses = sorted((f["path"], f["status"]) for f in report["files"])
    assert statuses == sorted((f["path"], f["status"]) for f in copy_report["files"])
    assert {s for _, s in statuses} == {"used"} and len(statuses) == 5
    # in place: nothing copied; the copy path copies every one of them
    assert copied == []
    assert sorted(copy_copied) == sorted(p for p, _ in statuses)


@pytest.mark.s3
def test_hdf4_tiles_are_still_copied(s3, bucket, tmp_path, monkeypatch):
    raw = _config(tmp_path, bucket, s3.storage_options, "auto").model_dump(mode="json")
    raw["inputs"] = {"storage_options": s3.storage_options, "mod11a1": {"paths": f"{bucket}/mod11a1/*.hdf"},
                     "smap": {"paths": f"{bucket}/smap/*.h5"}}
    report, copied = _ingest(config_mod.from_dict(raw), monkeypatch)
    assert report["summary"]["task_errors"] == 0, report["task_errors"]
    assert [f["status"] for f in report["files"]] == ["used"] * 3
    assert [u.rsplit("/", 2)[1] for u in copied] == ["mod11a1"]  # the SMAP granules were read in place
    assert np.isfinite(open_cube(str(tmp_path / "auto.zarr"))["lst"].values[0]).any()


@pytest.mark.s3
def test_a_regional_read_fetches_a_small_part_of_each_file(s3, tmp_path):
    """A realistic granule (the real one is ~30 MB: 8 variables the reader uses, 20 more per
    pass) and a COG much larger than the region: only the bytes the readers need are fetched."""
    rng = np.random.default_rng(9)
    s3.make_bucket("inplace-bytes")
    fs = s3.filesystem()
    granule = _smap(tmp_path / spl3smp_filename(DAYS[0]), DAYS[0], rng, extra=20)
    transform, shape = _around(REGION, 3.0, 0.005)
    cog = _cog(tmp_path / f"lst_{DAYS[0]}.tif", (290 + 20 * rng.random(shape)).astype(np.float32), transform)
    urls = {p: f"s3://inplace-bytes/{p.name}" for p in (granule, cog)}
    for p, u in urls.items():
        fs.put_file(str(p), u)
    with input_files(list(urls.values()), s3.storage_options, True) as got:
        sm, _ = read_smap(got.paths[urls[granule]], REGION)
        lst, many = geotiff_series_to_region([got.paths[urls[cog]]], REGION, "lst", rule=ValueRule())
        fetched = got.transfers()
    np.testing.assert_array_equal(sm.values, read_smap(granule, REGION)[0].values)
    np.testing.assert_array_equal(lst.values, geotiff_series_to_region([cog], REGION, "lst")[0].values)
    assert [r.status for r in many.report] == ["used"]
    for p, u in urls.items():
        size = p.stat().st_size
        assert fetched[u].error is None and 0 < fetched[u].bytes < size / 4, (p.name, fetched[u], size)


@pytest.mark.s3
def test_failures_in_place_are_reported_as_failed_copies_are(tmp_path):
    """A missing file, and a server that goes away after the file was found: the same reports
    as the copy path (the second transient: rerun to resume), naming the URL."""
    from dsm.testing.s3 import LoopbackS3

    granule = _smap(tmp_path / spl3smp_filename(DAYS[0]), DAYS[0], np.random.default_rng(1))
    with LoopbackS3() as own:
        own.make_bucket("gone")
        own.filesystem().put_file(str(granule), f"gone/{granule.name}")
        url, missing = f"s3://gone/{granule.name}", "s3://gone/SMAP_L3_SM_P_20210814_R19240_001.h5"
        so = {**own.storage_options, "config_kwargs": {"retries": {"max_attempts": 1}}}  # fail fast
        with input_files([url, missing], so, True) as got:
            assert got.failed == [FileReport(missing, "failed", "file does not exist", "UnreadableFileError")]
            with local_copies([missing], so) as (_, copy_failed):
                assert copy_failed == got.failed
            own.stop()
            reports = got.reports(read_many([got.paths[url]], read_smap, region=REGION).report)
        with local_copies([url], so) as (_, copy_failed):
            pass
    (r,) = [r for r in reports if r.path == url]
    (c,) = copy_failed
    assert type(r.path) is str and (r.status, r.error) == (c.status, c.error) == ("failed", "TransientIOError")
    assert r.reason.startswith("reading it in place failed (") and r.reason.endswith("rerun to resume")
    assert c.reason.startswith("download failed (")


_READ_AFTER_THE_SERVER_STOPPED = """
import sys
from pathlib import Path
import h5py
from dsm.inplace import HDF5_CACHE, input_files
from dsm.testing.s3 import LoopbackS3
granule = Path(sys.argv[1])
with LoopbackS3() as own:
    own.make_bucket("gone")
    own.filesystem().put_file(str(granule), f"gone/{granule.name}")
    url = f"s3://gone/{granule.name}"
    with input_files([url], {**own.storage_options, "config_kwargs": {"retries": {"max_attempts": 1}}}, True) as got:
        own.stop()
        handle = got.paths[url].open(HDF5_CACHE)
        try:
            h5py.File(handle, "r")
        except OSError:
            pass
        handle.close()
        remote = got.paths[url]
print("error kept:", type(remote.transfer.error).__name__)
"""


def test_a_failed_read_in_place_does_not_crash_the_process_at_exit(tmp_path):
    """A read that fails under h5py's C code records its error; kept until the interpreter exits,
    that error must not hold h5py's frames (it crashed the process at exit: signal 11)."""
    import subprocess
    import sys

    granule = _smap(tmp_path / spl3smp_filename(DAYS[0]), DAYS[0], np.random.default_rng(1))
    res = subprocess.run([sys.executable, "-c", _READ_AFTER_THE_SERVER_STOPPED, str(granule)], capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert "error kept:" in res.stdout and "NoneType" not in res.stdout


def test_which_remote_files_are_read_in_place():
    """auto: SMAP and GDAL rasters in place, but not SRTM .hgt tiles nor VRTs; MODIS HDF4 tiles
    and precipitation files copied; copy: everything copied; anything else refused."""
    tifs = {"paths": "s3://b/*.tif"}
    raw = {"region": {"cells": [REGION.row0, REGION.col0, 1, 1]}, "dates": {"start": "2021-08-13", "end": "2021-08-14"},
           "stores": {"cube": "c.zarr"},
           "inputs": {"smap": {"paths": "s3://b/*.h5"}, "mod11a1": {"paths": "s3://b/*.hdf"},
                      "precip": {"paths": "s3://b/*.nc4", "product": "imerg"}, "geotiff": {"ndvi": tifs},
                      "reflectance": {b: "s3://b/*.tif" for b in ("b2", "b4", "b6", "b7")}, "dem": tifs,
                      "soil": {"sand": "s3://b/*.tif"}, "land_mask": tifs}}
    cfg = config_mod.from_dict(raw)
    how = {name: in_place(cfg, s.reads) for name, s in configured_sources(cfg).items()}
    assert cfg.inputs.read == "auto" and how["smap"] is True
    for source in ("geotiff:ndvi", "reflectance", "static"):
        test = how[source]
        assert test("s3://b/x.tif") and not test("s3://b/N38E108.hgt") and not test("s3://b/sand_0-5cm_mean.vrt")
    assert how["mod11a1"] is False and how["precip"] is False
    copy = config_mod.from_dict({**raw, "inputs": {**raw["inputs"], "read": "copy"}})
    assert not any(in_place(copy, s.reads) for s in configured_sources(copy).values())
    with pytest.raises(config_mod.ConfigError, match="inputs.read"):
        config_mod.from_dict({**raw, "inputs": {**raw["inputs"], "read": "in_place"}})
