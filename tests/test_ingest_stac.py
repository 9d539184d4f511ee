"""Inputs from a STAC catalog (``inputs.stac``, :mod:`dsm.ingest.stac_inputs`) on the loopback S3 server.

A static catalog (pystac, saved self-contained) of COGs written by the ``dsm.testing`` writers:
MOD11A1 LST and QC_Day windows of a sinusoidal tile (scale and nodata in ``raster:bands``), and
16-day NDVI in two CRSs (a lon/lat COG with its own scale, an EASE-Grid one at 500 m). The
cube made from the catalog is compared pixel for pixel with the one made from the same data as
files: the HDF4 tiles (``inputs.mod11a1``, QC rules applied by the MODIS reader) and the COGs
as a GeoTIFF series (``inputs.geotiff.ndvi``).

The STAC API path (pystac-client) is not run here: no STAC API server can be served locally
without a database (stac-fastapi needs pgstac or Elasticsearch); after the search it runs the
same code as a static catalog (:func:`dsm.ingest.stac_inputs.search_items`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import yaml
from affine import Affine
from distributed import Client, LocalCluster
from rasterio.shutil import copy as rio_copy
from rasterio.warp import transform_bounds

from dsm import config as config_mod
from dsm.config_help import schema
from dsm.cube import open_cube
from dsm.errors import ConfigError, TransientIOError
from dsm.grid import Region
from dsm.ingest.plan import plan
from dsm.ingest.reproject import EASE_CRS, SINUSOIDAL_CRS
from dsm.ingest.stac_inputs import _is_api, item_date
from dsm.stages.ingest import ensure_cube, run_ingest
from dsm.testing.child_processes import free_ports
from dsm.testing.granules import LAYOUTS, TILE_SIZE, TILE_X0, TILE_Y0, modis_filename, write_geotiff, write_modis_tile

pytest.importorskip("odc.stac", reason="odc-stac (the 'stac' extra) is not installed")
pytestmark = pytest.mark.slow

REGION = Region.around(109.0, 38.9, 2, 2)
DAYS = [dt.date(2021, 8, 13), dt.date(2021, 8, 14), dt.date(2021, 8, 15)]
COMPOSITE = dt.date(2021, 8, 13)  # the cube's only 16-day period
PX = TILE_SIZE / LAYOUTS["MOD11A1"].pixels
LST_RULE = [[0, 2, [0]]]  # MOD11A1's default: QC_Day bits 0-1 clear


def _cog(path: Path, array: np.ndarray, transform: Affine, crs: object, nodata: float | None = None,
         scale: float | None = None) -> Path:
    """A COG of one band (deflate, tiled), with a GDAL scale when given."""
    plain = path.with_suffix(".plain.tif")
    write_geotiff(plain, array, transform, crs, nodata)
    if scale is not None:
        with rasterio.open(plain, "r+") as f:
            f.scales = (scale,)
    rio_copy(str(plain), str(path), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=128)
    plain.unlink()
    return path


def _lst_window() -> tuple[int, int, int, int, int, int]:
    """MOD11A1 tile (h, v) holding the region and the window (row0, col0, rows, cols) of its pixels around it."""
    x0, y0, x1, y1 = transform_bounds(EASE_CRS, SINUSOIDAL_CRS, *REGION.bounds, densify_pts=51)
    h, v = int((x0 - TILE_X0) // TILE_SIZE), int((TILE_Y0 - y1) // TILE_SIZE)
    assert (h, v) == (int((x1 - TILE_X0) // TILE_SIZE), int((TILE_Y0 - y0) // TILE_SIZE)), "region across tiles"
    c0 = math.floor((x0 - TILE_X0 - h * TILE_SIZE) / PX) - 6
    r0 = math.floor((TILE_Y0 - v * TILE_SIZE - y1) / PX) - 6
    c1 = math.ceil((x1 - TILE_X0 - h * TILE_SIZE) / PX) + 6
    r1 = math.ceil((TILE_Y0 - v * TILE_SIZE - y0) / PX) + 6
    return h, v, r0, c0, r1 - r0, c1 - c0


def _item(item_id: str, collection: str, assets: dict[str, tuple[str, dict | None]], *, day: dt.date | None = None,
          start: dt.date | None = None, bbox: list[float] | None = None) -> pystac.Item:
    bbox = bbox or list(REGION.lonlat_bounds)
    x0, y0, x1, y1 = bbox
    geom = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
    when = dt.datetime.combine(day, dt.time(12), dt.timezone.utc) if day else None
    props = {}
    if start is not None:
        props = {"start_datetime": f"{start}T00:00:00Z", "end_datetime": f"{start + dt.timedelta(15)}T23:59:59Z"}
    item = pystac.Item(item_id, geom, bbox, when, props, collection=collection)
    for key, (href, bands) in assets.items():
        extra = {"raster:bands": [bands]} if bands else {}
        item.add_asset(key, pystac.Asset(href, media_type=pystac.MediaType.COG, extra_fields=extra))
    return item


@pytest.fixture(scope="module")
def data(s3, tmp_path_factory):
    """COGs, HDF4 tiles and a static catalog of the COGs, in bucket ``stac-inputs``."""
    root = tmp_path_factory.mktemp("stac_inputs")
    rng = np.random.default_rng(11)
    bucket = s3.make_bucket("stac-inputs")
    fs = s3.filesystem()
    h, v, r0, c0, ny, nx = _lst_window()
    ulx, uly = TILE_X0 + h * TILE_SIZE + c0 * PX, TILE_Y0 - v * TILE_SIZE - r0 * PX
    lst_items, vi_items = [], []
    lst_bands = {"data_type": "uint16", "nodata": 0, "scale": 0.02, "offset": 0.0}
    for day in DAYS:
        raw = np.round((285 + 30 * rng.random((ny, nx))) / 0.02).astype(np.uint16)
        raw[rng.random((ny, nx)) < 0.05] = 0  # fill
        qc = rng.choice(np.array([0, 0, 0, 1, 2, 3, 64, 65], np.uint8), (ny, nx))
        tile = write_modis_tile(root / modis_filename("MOD11A1", day, h, v), "MOD11A1", h, v, day,
                                {"LST_Day_1km": raw, "QC_Day": qc}, row0=r0, col0=c0, shape=(ny, nx))
        fs.put_file(str(tile), f"stac-inputs/hdf/{tile.name}")
        halves = [(0, nx)] if day != DAYS[1] else [(0, nx // 2), (nx // 2, nx)]  # day 2: two items of one grid
        for i, (a, b) in enumerate(halves):
            t = Affine(PX, 0, ulx + a * PX, 0, -PX, uly)
            for name, arr, nd in (("lst", raw[:, a:b], 0), ("qc", qc[:, a:b], None)):
                f = _cog(root / f"{name}_{day}_{i}.tif", arr, t, SINUSOIDAL_CRS, nd)
                fs.put_file(str(f), f"stac-inputs/cog/{f.name}")
            lst_items.append(_item(f"MOD11A1.{day:%Y%j}.{i}", "mod11a1", {
                "LST_Day_1km": (f"{bucket}/cog/lst_{day}_{i}.tif", lst_bands),
                "QC_Day": (f"{bucket}/cog/qc_{day}_{i}.tif", None)}, day=day))
    # an item without its QC asset (failed, named), one far away (not searched)
    lst_items.append(_item("MOD11A1.noqc", "mod11a1", {"LST_Day_1km": (f"{bucket}/cog/lst_{DAYS[2]}_0.tif", lst_bands)},
                           day=DAYS[2]))
    lst_items.append(_item("MOD11A1.far", "mod11a1", {"LST_Day_1km": (f"{bucket}/cog/far.tif", lst_bands),
                                                      "QC_Day": (f"{bucket}/cog/far.tif", None)},
                           day=DAYS[0], bbox=[10.0, 40.0, 11.0, 41.0]))
    # 16-day NDVI: the west of the region in lon/lat (int16 counts, the file's own scale), the east
    # in EASE-Grid 2.0 at 500 m (float32): another CRS and resolution, reprojected; and a composite
    # off the cube's axis (skipped, named)
    lon0, lat0, lon1, lat1 = REGION.lonlat_bounds
    t_ll = Affine(0.005, 0, lon0 - 0.05, 0, -0.005, lat1 + 0.05)
    shape_ll = (round((lat1 - lat0 + 0.1) / 0.005), round((lon1 - lon0) * 0.6 / 0.005))
    counts = np.round(10000 * (0.1 + 0.7 * rng.random(shape_ll))).astype(np.int16)
    counts[:5] = -3000
    x0, y0, x1, y1 = REGION.bounds
    t_ease = Affine(500.0, 0, x0 + 0.4 * (x1 - x0) - 250, 0, -500.0, y1 + 3000)
    ease = (0.1 + 0.7 * rng.random((round((y1 - y0 + 6000) / 500), round(0.6 * (x1 - x0) / 500) + 8))).astype(np.float32)
    files = {"west": _cog(root / f"ndvi_west_{COMPOSITE}.tif", counts, t_ll, "EPSG:4326", -3000, 0.0001),
             "east": _cog(root / f"ndvi_east_{COMPOSITE}.tif", ease, t_ease, "EPSG:6933")}
    for part, f in files.items():
        fs.put_file(str(f), f"stac-inputs/ndvi/{f.name}")
        vi_items.append(_item(f"MOD13A2.{part}", "mod13a2", {"ndvi": (f"{bucket}/ndvi/{f.name}", None)},
                              start=COMPOSITE))
    vi_items.append(_item("MOD13A2.early", "mod13a2", {"ndvi": (f"{bucket}/ndvi/{files['west'].name}", None)},
                          start=COMPOSITE - dt.timedelta(16)))
    catalog = pystac.Catalog("inputs", "MODIS inputs as COGs")
    for cid, items in (("mod11a1", lst_items), ("mod13a2", vi_items), ("other", [])):
        coll = pystac.Collection(cid, cid, pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]),
                                                         pystac.TemporalExtent([[None, None]])))
        coll.add_items(items)
        catalog.add_child(coll)
    catalog.normalize_hrefs(str(root / "stac"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    fs.put(str(root / "stac"), "stac-inputs/", recursive=True)
    return bucket


def _config(tmp_path: Path, name: str, so: dict, inputs: dict) -> config_mod.Config:
    return config_mod.from_dict({
        "region": {"cells": [REGION.row0, REGION.col0, REGION.nrows, REGION.ncols]},
        "dates": {"start": DAYS[0].isoformat(), "end": DAYS[-1].isoformat()},
        "stores": {"cube": str(tmp_path / f"{name}.zarr")},
        "chunks": {"space": 36, "time": 2},
        "inputs": {"storage_options": so, **inputs},
    })


def _stac(bucket: str, **extra) -> dict:
    return {"stac": {"catalog": f"{bucket}/stac/catalog.json", "collections": ["mod11a1", "mod13a2"],
                     "assets": {"lst": {"asset": "LST_Day_1km", "collection": "mod11a1", "resampling": "nearest",
                                        "qc": {"asset": "QC_Day", "rules": LST_RULE}},
                                "ndvi": {"asset": "ndvi", "collection": "mod13a2", "resampling": "average"}}, **extra}}


def _ingest(cfg: config_mod.Config) -> dict:
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as lc, \
            Client(lc) as client:
        return run_ingest(cfg, client, progress=False)


@pytest.mark.s3
def test_stac_catalog_gives_the_cube_of_the_same_files(s3, data, tmp_path):
    files = _ingest(_config(tmp_path, "files", s3.storage_options, {
        "mod11a1": {"paths": f"{data}/hdf/*.hdf"},
        "geotiff": {"ndvi": {"paths": f"{data}/ndvi/*.tif", "resampling": "average"}}}))
    stac = _ingest(_config(tmp_path, "stac", s3.storage_options, _stac(data)))
    assert files["summary"]["task_errors"] == stac["summary"]["task_errors"] == 0, stac["task_errors"]
    by_file, by_stac = open_cube(str(tmp_path / "files.zarr")).load(), open_cube(str(tmp_path / "stac.zarr")).load()
    for var in ("lst", "ndvi"):
        a, b = by_stac[var].values, by_file[var].values
        assert np.isfinite(a).sum() > 0.3 * a.size and (np.isnan(a) == np.isnan(b)).all(), var
        # the HDF4 reader scales in float64, the GeoTIFF value rule in float32: one rounding apart at most
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=var)
    assert 0 < np.isnan(by_stac["lst"].values).mean() < 0.9  # QC (bits 0-1) and fill masked some pixels
    # every item named: used, the far one never searched, the others failed or skipped with the reason
    entries = {(f["source"], f["path"].rsplit("/", 1)[-1], f["date"]): (f["status"], f["reason"]) for f in stac["files"]}
    used = sorted(k[1] for k, (s, _) in entries.items() if s == "used")
    assert used == sorted([*(f"lst_{d}_0.tif" for d in DAYS), f"lst_{DAYS[1]}_1.tif",
                           f"ndvi_east_{COMPOSITE}.tif", f"ndvi_west_{COMPOSITE}.tif"])
    status, reason = entries[("stac:lst", "MOD11A1.noqc.json", DAYS[2].isoformat())]
    assert status == "failed" and "MOD11A1.noqc has no asset 'QC_Day'" in reason
    early = (COMPOSITE - dt.timedelta(16)).isoformat()
    assert entries[("stac:ndvi", f"ndvi_west_{COMPOSITE}.tif", early)][0] == "skipped"
    assert not any("far" in k[1] for k in entries)
    assert stac["provenance"]["lst"][DAYS[1].isoformat()] == [f"{data}/cog/lst_{DAYS[1]}_{i}.tif" for i in (0, 1)]


@pytest.mark.s3
def test_unreachable_or_missing_catalog(s3, data, tmp_path):
    """A server that does not answer: transient (rerun to resume); no catalog at the URL: the setting named."""
    dead = {**s3.storage_options, "endpoint_url": f"http://127.0.0.1:{free_ports(1)[0]}",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
    cfg = _config(tmp_path, "dead", dead, _stac(data))
    cube = ensure_cube(cfg)
    with pytest.raises(TransientIOError, match=r"inputs\.stac\.catalog: .*could not be reached.*rerun to resume"):
        plan(cfg, cube)
    raw = _stac(data)
    raw["stac"]["catalog"] = f"{data}/nowhere/catalog.json"
    cfg = _config(tmp_path, "missing", s3.storage_options, raw)
    with pytest.raises(ConfigError, match=r"inputs\.stac\.catalog: there is no STAC catalog at .*nowhere"):
        plan(cfg, ensure_cube(cfg))


@pytest.mark.s3
def test_an_asset_that_cannot_be_used_is_named(s3, data, tmp_path):
    """An asset key no item has: every item failed, naming it, and the input's error; the other variable is written."""
    raw = _stac(data)
    raw["stac"]["assets"]["lst"] = {"asset": "LST_Night_1km", "collection": "mod11a1"}
    report = _ingest(_config(tmp_path, "noasset", s3.storage_options, raw))
    failed = [f for f in report["files"] if f["source"] == "stac:lst"]
    assert failed and {f["status"] for f in failed} == {"failed"}
    assert all("has no asset 'LST_Night_1km'" in f["reason"] for f in failed)
    (err,) = [e for e in report["task_errors"] if e.get("input") == "inputs.stac.assets.lst"]
    assert "none of the" in err["error"] and "LST_Night_1km" in err["error"]
    assert np.isfinite(open_cube(str(tmp_path / "noasset.zarr"))["ndvi"].values).any()


def test_stac_settings():
    """Validation: one source per variable, known collections; the schema has the settings."""
    base = {"region": {"cells": [REGION.row0, REGION.col0, 1, 1]}, "dates": {"start": "2021-08-13", "end": "2021-08-14"},
            "stores": {"cube": "c.zarr"}}
    stac = {"catalog": "s3://b/catalog.json", "collections": "mod11a1", "assets": {"lst": {"asset": "LST_Day_1km"}}}
    cfg = config_mod.from_dict({**base, "inputs": {"stac": stac}})
    assert cfg.inputs.stac.collections == ("mod11a1",) and cfg.inputs.stac.assets["lst"].resampling == "average"
    with pytest.raises(ConfigError, match="stac.assets.lst: lst already comes from a MODIS source"):
        config_mod.from_dict({**base, "inputs": {"stac": stac, "mod11a1": {"paths": "x/*.hdf"}}})
    with pytest.raises(ConfigError, match="stac.assets.lst: lst already comes from geotiff.lst"):
        config_mod.from_dict({**base, "inputs": {"stac": stac, "geotiff": {"lst": {"paths": "x/*.tif"}}}})
    with pytest.raises(ConfigError, match="stac.assets.dem: not a daily"):
        config_mod.from_dict({**base, "inputs": {"stac": {**stac, "assets": {"dem": {"asset": "dem"}}}}})
    with pytest.raises(ConfigError, match="'mod13a2' is not one of collections"):
        config_mod.from_dict({**base, "inputs": {"stac": {**stac, "assets": {"lst": {"asset": "a", "collection": "mod13a2"}}}}})
    props = schema()["$defs"]
    assert {"catalog", "collections", "assets", "storage_options"} <= set(props["StacInput"]["properties"])
    assert {"asset", "qc", "scale", "nodata", "resampling"} <= set(props["StacAssetInput"]["properties"])
    assert "stac" in props["InputsConfig"]["properties"]


def test_the_readme_stac_example_is_valid():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = text.split("**Inputs from a STAC catalog**", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", body, flags=re.S)[:1]
    raw = yaml.safe_load(block)
    cfg = config_mod.from_dict({"region": {"cells": [REGION.row0, REGION.col0, 1, 1]}, "stores": {"cube": "c.zarr"},
                                "dates": {"start": "2021-08-13", "end": "2021-08-14"}, **raw})
    lst = cfg.inputs.stac.assets["lst"]
    assert lst.qc.rules == ((0, 2, (0,)),) and cfg.inputs.stac.assets["ndvi"].qc.asset == "1 km 16 days pixel reliability"


def test_item_dates():
    """An item's day: its start_datetime (a composite's first day), else its datetime, in UTC."""
    day = _item("a", "c", {}, day=DAYS[0])
    late = pystac.Item("b", None, None, dt.datetime(2021, 8, 13, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))), {})
    assert item_date(day) == DAYS[0] and item_date(late) == dt.date(2021, 8, 14)
    assert item_date(_item("c", "c", {}, start=COMPOSITE)) == COMPOSITE


def test_what_is_a_stac_api():
    """A root that conforms to item search, or links to a search endpoint, is searched with pystac-client."""
    assert _is_api({"type": "Catalog", "conformsTo": ["https://api.stacspec.org/v1.0.0/item-search"]})
    assert _is_api({"type": "Catalog", "links": [{"rel": "search", "href": "https://x/search"}]})
    assert not _is_api({"type": "Catalog", "links": [{"rel": "child", "href": "./mod11a1/collection.json"}]})
