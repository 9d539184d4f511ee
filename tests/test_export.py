"""COGs and STAC from an output store: validation, scale and nodata, Julian names, EPSG:4326, S3."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation import validate_dict
from rio_cogeo.cogeo import cog_validate

from dsm import files, ledger, products, store
from dsm.cog import LAYERS
from dsm.config import from_dict
from dsm.cube import Layout
from dsm.errors import ConfigError
from dsm.grid import Region
from dsm.stac import build_catalog
from dsm.stages.export import FsspecStacIO, blocksize_for, cog_name, export
from dsm.storeref import StoreRef

REGION = Region(74, 772, 4, 4)
START, END = dt.date(2016, 6, 9), dt.date(2016, 6, 12)


def _output(url: str, options=None) -> np.ndarray:
    """An output store of four days with known values; days 0-2 done, day 3 not."""
    ref = StoreRef(url, options)
    layout = Layout(REGION, START, END, 72, 2)
    products.create_products(ref, layout, 0.9, overwrite=True)
    ds = products.open_products(ref)
    rng = np.random.default_rng(0)
    sm = rng.uniform(0.02, 0.45, (4, 144, 144)).astype(np.float32)
    sm[:, :10, :] = np.nan  # "water"
    origin = np.where(np.isnan(sm), 0, 1).astype(np.uint8)
    part = xr.Dataset({"sm": (("time", "y", "x"), sm), "sm_unc": (("time", "y", "x"), sm * 0.1),
                       "sm_origin": (("time", "y", "x"), origin)},
                      coords={"time": ds["time"].values, "y": ds["y"].values, "x": ds["x"].values})
    store.write_region(ref, part, ds)
    days = [(START + dt.timedelta(i)).isoformat() for i in range(3)]
    ledger.write_days(ref, {d: ledger.DayRecord(done=True, model={"period": "2016161", "model_period": "2016161",
                                                                   "model": "xgb", "reused": False,
                                                                   "variants": {"full": {}}})
                            for d in days})
    return sm


def _config(out: str, cog: str, stac: str, options=None, **output):
    return from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": str(START), "end": str(END)},
                      "stores": {"cube": "unused.zarr", "output": out, "cog": cog, "stac": stac,
                                 "storage_options": options or {}},
                      "chunks": {"space": 72, "time": 2}, "output": output})


def _stac_files(folder):
    """Every file of a STAC folder: relative path -> (mtime in ns, bytes)."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*.json")}


@pytest.mark.timeout(180)
def test_cogs_are_valid_scaled_named_and_catalogued(client, tmp_path):
    sm = _output(str(tmp_path / "sm.zarr"))
    cfg = _config(str(tmp_path / "sm.zarr"), str(tmp_path / "cog"), str(tmp_path / "stac"))
    report = export(cfg, client)
    assert report.exported == ["2016-06-09", "2016-06-10", "2016-06-11"] and report.failed == {}
    written = sorted(p.name for p in (tmp_path / "cog").iterdir())
    assert written == sorted(f"SM_1km_{j}{s}.tif" for j in ("2016161", "2016162", "2016163")
                             for s in ("", "_unc", "_origin"))
    names = [n for n in written if not n.endswith(("_unc.tif", "_origin.tif"))]
    for i, name in enumerate(names):
        path = tmp_path / "cog" / name
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors
        with rasterio.open(path) as src:
            assert src.dtypes[0] == "int16" and src.nodata == -9999
            assert src.scales == (0.0001,) and src.offsets == (0.0,)
            assert src.overviews(1) and src.profile["tiled"] and src.compression.name.upper() == "DEFLATE"
            assert src.crs.to_epsg() == 6933
            assert src.transform.almost_equals(REGION.fine_transform)
            assert src.descriptions[0].startswith("sm: surface soil moisture") and src.tags(1)["units"] == "m3 m-3"
            data = src.read(1)
        with rasterio.open(path, overview_level=0) as ov:  # first overview: 2 x 2 means of valid pixels
            half = ov.read(1).astype(float)
        valid = (data != -9999).reshape(72, 2, 72, 2)
        count = valid.sum(axis=(1, 3))
        total = np.where(valid, data.reshape(72, 2, 72, 2), 0).sum(axis=(1, 3))
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        assert half.shape == (72, 72) and ((half == -9999) == np.isnan(mean)).all()
        assert np.abs(half - mean)[~np.isnan(mean)].max() <= 1
        want = np.where(np.isnan(sm[i]), -9999, np.round(sm[i].astype(np.float64) * 1e4)).astype(np.int16)
        assert np.abs(data.astype(int) - want).max() <= 1
        decoded = np.where(data == -9999, np.nan, data * 1e-4)
        np.testing.assert_allclose(decoded, sm[i], atol=1e-4)
    # STAC: readable with pystac; core schemas validate offline, extensions through their classes
    coll = pystac.read_file(str(tmp_path / "stac" / "collection.json"))
    assert isinstance(coll, pystac.Collection)
    validate_dict(coll.to_dict(), extensions=[])
    items = sorted(coll.get_items(), key=lambda it: it.id)
    assert [it.id for it in items] == [n.removesuffix(".tif") for n in names]
    for it in items:
        validate_dict(it.to_dict(), extensions=[])
        assert it.datetime.date() == dt.date(2016, 6, 9) + dt.timedelta(items.index(it))
        proj = ProjectionExtension.ext(it)
        assert proj.epsg == 6933 and proj.shape == [144, 144]
        raw = json.loads(Path(it.get_self_href()).read_text())  # as written (pystac migrates proj:epsg on read)
        assert raw["properties"]["proj:epsg"] == 6933 and raw["properties"]["proj:code"] == "EPSG:6933"
        assert not it.assets["sm"].href.startswith(("/", "file:"))  # relative: moves with the catalog
        assert it.assets["sm"].get_absolute_href() == str(tmp_path / "cog" / f"{it.id}.tif")
        assert it.assets["sm_unc"].get_absolute_href() == str(tmp_path / "cog" / f"{it.id}_unc.tif")
        assert it.assets["sm_origin"].get_absolute_href() == str(tmp_path / "cog" / f"{it.id}_origin.tif")
        band = RasterExtension.ext(it.assets["sm"]).bands[0]
        assert band.scale == 0.0001 and band.nodata == -9999 and band.data_type == "int16"
        assert it.properties["dsm:period"] == "2016161" and it.properties["dsm:model"] == "xgb"
        assert it.properties["dsm:origin_pixels"]["all_same_day_predictors"] == 134 * 144
    # the catalog and the COGs moved together to another folder: every asset still resolves
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "stac", moved / "stac")
    shutil.copytree(tmp_path / "cog", moved / "cog")
    for it in pystac.read_file(str(moved / "stac" / "collection.json")).get_items():
        href = it.assets["sm"].get_absolute_href()
        assert href == str(moved / "cog" / f"{it.id}.tif") and rasterio.open(href).read(1).shape == (144, 144)
    # recorded, and a rerun skips what is exported
    exported = ledger.read(cfg.stores.ref("output")).exported
    assert sorted(exported) == report.exported
    stac_before = _stac_files(tmp_path / "stac")
    again = export(cfg, client)
    assert again.exported == [] and again.skipped == report.exported
    # the rerun rewrote the Collection but no Item (theirs stand as written); an Item file gone is written again
    stac_again = _stac_files(tmp_path / "stac")
    assert stac_again.keys() == stac_before.keys() and all(v[1] == stac_before[k][1] for k, v in stac_again.items())
    items = [k for k in stac_before if k != "collection.json"]
    assert len(items) == 3 and all(stac_again[k][0] == stac_before[k][0] for k in items)
    assert stac_again["collection.json"][0] != stac_before["collection.json"][0]
    (tmp_path / "stac" / items[1]).unlink()
    export(cfg, client)
    assert _stac_files(tmp_path / "stac")[items[1]][1] == stac_before[items[1]][1]
    # the same files as a whole save of the catalog
    build_catalog(list(ledger.read(cfg.stores.ref("output")).exported.values()),
                  ledger.read(cfg.stores.ref("output")).days, StoreRef(str(tmp_path / "stac2")), cfg.output,
                  cfg.training.method)
    whole = _stac_files(tmp_path / "stac2")
    assert whole.keys() == stac_before.keys() and all(v[1] == stac_before[k][1] for k, v in whole.items())
    # the record holds each COG's size and digest; a truncated COG is exported again, alone
    first = tmp_path / "cog" / names[0]
    assert exported["2016-06-09"]["sha256"] == files.file_sha256(str(first))
    first.write_bytes(first.read_bytes()[:1000])
    redo = export(cfg, client)
    assert redo.exported == ["2016-06-09"] and redo.skipped == report.exported[1:]
    assert cog_validate(str(first), quiet=True)[0]
    # so is a day whose origin COG is gone, and a day recorded before the unc/origin COGs existed
    (tmp_path / "cog" / "SM_1km_2016162_origin.tif").unlink()
    recorded = ledger.read(cfg.stores.ref("output")).exported
    old_record = {k: v for k, v in recorded["2016-06-11"].items() if k != "layers"}
    ledger.write_exported(cfg.stores.ref("output"), {"2016-06-11": old_record})
    redo = export(cfg, client)
    assert redo.exported == ["2016-06-10", "2016-06-11"] and redo.skipped == ["2016-06-09"]
    assert (tmp_path / "cog" / "SM_1km_2016162_origin.tif").exists()
    assert sorted(ledger.read(cfg.stores.ref("output")).exported["2016-06-11"]["layers"]) == [
        "sm_origin", "sm_unc"]


@pytest.mark.timeout(180)
def test_epsg4326_export(client, tmp_path):
    _output(str(tmp_path / "sm.zarr"))
    cfg = _config(str(tmp_path / "sm.zarr"), str(tmp_path / "cog"), str(tmp_path / "stac"), export_crs="EPSG:4326")
    assert export(cfg, client).failed == {}
    with rasterio.open(tmp_path / "cog" / cog_name(START)) as src:
        assert src.crs.to_epsg() == 4326 and src.overviews(1) and src.scales == (0.0001,)
        assert src.units == ("m3 m-3",) and src.descriptions == (LAYERS["sm"].description,)  # through the warp too
        assert cog_validate(str(tmp_path / "cog" / cog_name(START)), strict=True, quiet=True) == (True, [], [])
        lon0, lat0, lon1, lat1 = REGION.lonlat_bounds
        assert src.bounds.left == pytest.approx(lon0, abs=0.02) and src.bounds.top == pytest.approx(lat1, abs=0.02)
    item = json.loads(next((tmp_path / "stac").rglob("SM_1km_2016161.json")).read_text())
    assert item["properties"]["proj:code"] == "EPSG:4326"


@pytest.mark.s3
@pytest.mark.timeout(240)
def test_export_to_s3(client, s3, tmp_path):
    options = s3.storage_options
    root = s3.make_bucket("dsm-export")
    bucket = root.removeprefix("s3://")
    out = f"{root}/sm.zarr"
    _output(out, options)
    cfg = _config(out, f"{root}/cog", f"{root}/stac", options)
    report = export(cfg, client)
    assert report.failed == {} and len(report.exported) == 3
    fs = s3.filesystem()
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/cog")) == sorted(
        f"SM_1km_{j}{s}.tif" for j in ("2016161", "2016162", "2016163") for s in ("", "_unc", "_origin"))
    local = tmp_path / "x.tif"
    fs.get_file(f"{bucket}/cog/SM_1km_2016162.tif", str(local))
    assert cog_validate(str(local), quiet=True)[0]
    coll = json.loads(fs.cat_file(f"{bucket}/stac/collection.json"))
    assert coll["type"] == "Collection" and len([lk for lk in coll["links"] if lk["rel"] == "item"]) == 3
    # the catalog reads back through the store's options (FsspecStacIO), and a rerun finds every
    # COG where it was recorded (their sizes read with the COG folder's options): nothing redone
    stac = cfg.stores.ref("stac")
    read = pystac.Collection.from_file(stac.join("collection.json").url, stac_io=FsspecStacIO(stac))
    assert sorted(it.id for it in read.get_items()) == ["SM_1km_2016161", "SM_1km_2016162", "SM_1km_2016163"]
    again = export(cfg, client)
    assert again.exported == [] and again.skipped == report.exported and again.failed == {}
    # the sizes come from one listing of the bucket's COG folder: a shortened object is exported again, alone
    fs.pipe_file(f"{bucket}/cog/SM_1km_2016162_unc.tif", b"short")
    redo = export(cfg, client)
    assert redo.exported == ["2016-06-10"] and redo.skipped == ["2016-06-09", "2016-06-11"]


def test_a_listing_answers_for_its_folder_and_asks_for_files_elsewhere(tmp_path):
    (tmp_path / "cog" / "2016").mkdir(parents=True)
    (tmp_path / "cog" / "a.tif").write_bytes(b"12345")
    (tmp_path / "cog" / "2016" / "b.tif").write_bytes(b"12")
    (tmp_path / "elsewhere.tif").write_bytes(b"123")
    listed = files.listing(StoreRef(str(tmp_path / "cog")))
    (tmp_path / "cog" / "late.tif").write_bytes(b"1")  # after the listing: not in it
    at = StoreRef(str(tmp_path)).join
    assert listed.has_size(at("cog/a.tif"), 5) and listed.has_size(at("cog/a.tif"), None)
    assert not listed.has_size(at("cog/a.tif"), 4) and listed.has_size(at("cog/2016/b.tif"), 2)
    assert not listed.has_size(at("cog/gone.tif"), None) and not listed.has_size(at("cog/late.tif"), 1)
    assert listed.has_size(at("elsewhere.tif"), 3) and not listed.has_size(at("elsewhere.tif"), 2)  # asked
    assert files.listing(StoreRef(str(tmp_path / "none"))).sizes == {}


def test_blocksize_leaves_room_for_an_overview():
    assert blocksize_for((144, 144), 512) == 64
    assert blocksize_for((4000, 3000), 512) == 512
    assert cog_name(dt.date(2016, 2, 1)) == "SM_1km_2016032.tif"


@pytest.mark.timeout(180)
def test_a_lost_products_chunk_is_never_published_and_its_days_are_predicted_again(client, tmp_path):
    url = str(tmp_path / "sm.zarr")
    sm = _output(url)
    days = ledger.read(StoreRef(url)).days
    ledger.write_days(StoreRef(url), {d: replace(r, model={**(r.model or {}), products.VALID_PIXELS: int(np.isfinite(sm[i]).sum())})
                            for i, (d, r) in enumerate(sorted(days.items()))})
    (tmp_path / "sm.zarr" / "sm" / "c" / "0" / "0" / "1").unlink()  # days 0-1, the block x 72:144
    cfg = _config(url, str(tmp_path / "cog"), str(tmp_path / "stac"))
    report = export(cfg, client)
    assert report.exported == ["2016-06-11"] and sorted(report.failed) == ["2016-06-09", "2016-06-10"]
    assert "a chunk of the products store is lost" in report.failed["2016-06-09"]
    assert sorted(p.name for p in (tmp_path / "cog").iterdir()) == [
        "SM_1km_2016163.tif", "SM_1km_2016163_origin.tif", "SM_1km_2016163_unc.tif"]
    led = ledger.read(StoreRef(url))
    assert led.done == ["2016-06-11"] and sorted(led.exported) == ["2016-06-11"]


@pytest.mark.timeout(180)
def test_a_damaged_products_chunk_is_named_and_never_published(client, tmp_path):
    url = str(tmp_path / "sm.zarr")
    _output(url)
    chunk = tmp_path / "sm.zarr" / "sm" / "c" / "1" / "1" / "0"  # days 2-3, the block y 72:144
    chunk.write_bytes(b"\x00garbage" * 64)
    report = export(_config(url, str(tmp_path / "cog"), str(tmp_path / "stac")), client)
    assert report.exported == ["2016-06-09", "2016-06-10"] and list(report.failed) == ["2016-06-11"]
    assert f"{url}/sm: chunk 1/1/0 cannot be read" in report.failed["2016-06-11"]
    assert not (tmp_path / "cog" / "SM_1km_2016163.tif").exists()
    assert ledger.read(StoreRef(url)).done == ["2016-06-09", "2016-06-10"]


@pytest.mark.timeout(180)
def test_uncertainty_and_origin_cogs_and_a_configured_collection(client, tmp_path):
    sm = _output(str(tmp_path / "sm.zarr"))
    providers = [{"name": "Example Soil Lab", "roles": ["producer", "licensor"], "url": "https://example.org"}]
    cfg = _config(str(tmp_path / "sm.zarr"), str(tmp_path / "cog"), str(tmp_path / "stac"), license="CC-BY-4.0",
                  license_url="https://creativecommons.org/licenses/by/4.0/", providers=providers,
                  keywords=["soil moisture", "Loess Plateau"])
    ds = products.open_products(cfg.stores.ref("output"))
    origin = np.where(np.isnan(sm), 0, 1).astype(np.uint16)
    origin[:, :, 1::2] |= np.where(origin[:, :, 1::2] > 0, products.EXTRAPOLATION, 0).astype(np.uint16)
    store.write_region(cfg.stores.ref("output"), xr.Dataset({"sm_origin": (("time", "y", "x"), origin)},
                                                            coords={"time": ds["time"].values, "y": ds["y"].values,
                                                                    "x": ds["x"].values}), ds)
    assert export(cfg, client).failed == {}
    stored = products.open_products(cfg.stores.ref("output"))
    for suffix, var in (("_unc", "sm_unc"), ("_origin", "sm_origin")):
        path = tmp_path / "cog" / f"SM_1km_2016162{suffix}.tif"
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors
        with rasterio.open(path) as src:
            assert src.descriptions[0].startswith(f"{var}: ") and src.tags(1)["variable"] == var
            data = src.read(1)
            if var == "sm_unc":
                assert src.dtypes[0] == "int16" and src.nodata == -9999 and src.scales == (0.0001,)
                assert src.tags(1)["units"] == "m3 m-3"
                decoded = np.where(data == -9999, np.nan, data * 1e-4)
                np.testing.assert_allclose(decoded, stored["sm_unc"].values[1], atol=1e-4)
                assert np.array_equal(np.isnan(decoded), np.isnan(sm[1]))
            else:
                assert src.dtypes[0] == "uint16" and src.nodata is None and src.scales == (1.0,)
                assert np.array_equal(data, origin[1])
            with rasterio.open(path, overview_level=0) as ov:
                half = ov.read(1)
            if var == "sm_origin":  # flags are never averaged
                assert set(np.unique(half)) <= {0, 1, 9}  # values of the day, never a mean of flags
    coll = pystac.read_file(str(tmp_path / "stac" / "collection.json"))
    validate_dict(coll.to_dict(), extensions=[])
    raw = json.loads((tmp_path / "stac" / "collection.json").read_text())
    assert raw["license"] == "CC-BY-4.0" and raw["keywords"] == ["soil moisture", "Loess Plateau"]
    assert [lk["href"] for lk in raw["links"] if lk["rel"] == "license"] == [
        "https://creativecommons.org/licenses/by/4.0/"]
    assert raw["providers"] == [{"name": "Example Soil Lab", "roles": ["producer", "licensor"],
                                 "url": "https://example.org"}]
    assert sorted(raw["item_assets"]) == ["sm", "sm_origin", "sm_unc"]
    assert raw["item_assets"]["sm_unc"]["roles"] == ["uncertainty"]
    assert raw["item_assets"]["sm_origin"]["roles"] == ["quality"]
    assert raw["item_assets"]["sm"]["raster:bands"][0]["scale"] == 0.0001
    assert raw["summaries"]["proj:code"] == ["EPSG:6933"] and raw["summaries"]["proj:epsg"] == [6933]
    assert raw["summaries"]["gsd"] == [pytest.approx(abs(REGION.fine_transform.a))]
    assert raw["summaries"]["dsm:method"] == [cfg.training.method]
    for ext in ("raster", "projection", "classification"):
        assert any(f"/{ext}/" in u for u in raw["stac_extensions"]), ext
    for it in coll.get_items():
        validate_dict(it.to_dict(), extensions=[])
        item = json.loads(Path(it.get_self_href()).read_text())
        assert any("/classification/" in u for u in item["stac_extensions"])
        assets = item["assets"]
        assert assets["sm_unc"]["roles"] == ["uncertainty"] and assets["sm_origin"]["roles"] == ["quality"]
        for key in ("sm", "sm_unc", "sm_origin"):
            assert not assets[key]["href"].startswith(("/", "file:"))
            assert assets[key]["type"] == pystac.MediaType.COG
        band = assets["sm_origin"]["raster:bands"][0]
        assert band["data_type"] == "uint16" and "nodata" not in band and band["scale"] == 1.0
        fields = {b["name"]: b for b in assets["sm_origin"]["classification:bitfields"]}
        assert [fields[m]["offset"] for m, _ in products.ORIGIN_BITS.values()] == list(range(9))
        assert all(b["length"] == 1 for b in fields.values())
        assert assets["sm_unc"]["raster:bands"][0]["nodata"] == -9999


def test_unknown_export_format_is_named(client, tmp_path):
    _output(str(tmp_path / "sm.zarr"))
    cfg = _config(str(tmp_path / "sm.zarr"), str(tmp_path / "cog"), str(tmp_path / "stac"))
    with pytest.raises(ConfigError, match=r"output.formats / --format"):
        export(cfg, client, formats=["gtiff"])


def _decoded(raw: np.ndarray, band: dict) -> np.ndarray:
    """Stored integers to physical values by an asset's ``raster:bands`` entry (nodata to NaN)."""
    values = raw.astype(np.float64) * band["scale"] + band["offset"]
    return np.where(raw == band["nodata"], np.nan, values)


def _same_as_store(loaded: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, ds: xr.Dataset, tool: str) -> None:
    """``loaded`` (physical ``sm``/``sm_unc``, integer ``sm_origin``; time, y, x) is the store's grid and values."""
    days = slice(0, 3)  # the exported days
    for var in ("sm", "sm_unc", "sm_origin"):
        assert loaded[var].shape == ds[var][days].shape, (tool, var, loaded[var].shape)
    assert np.abs(x - ds["x"].values).max() < 1e-6 and np.abs(y - ds["y"].values).max() < 1e-6, tool
    for var in ("sm", "sm_unc"):
        want = ds[var][days].values
        assert np.array_equal(np.isnan(loaded[var]), np.isnan(want)), (tool, var)
        assert np.nanmax(np.abs(loaded[var] - want)) <= 1e-4, (tool, var)
    assert loaded["sm_origin"].dtype == np.uint16, tool
    assert np.array_equal(loaded["sm_origin"], ds["sm_origin"][days].values.astype(np.uint16)), tool


@pytest.fixture(scope="module")
def moved_catalog(client, tmp_path_factory):
    """Three exported days whose catalog and COGs were moved together to another folder after the export."""
    root = tmp_path_factory.mktemp("moved-catalog")
    _output(str(root / "sm.zarr"))
    cfg = _config(str(root / "sm.zarr"), str(root / "made" / "cog"), str(root / "made" / "stac"))
    assert export(cfg, client).failed == {}
    (root / "made").rename(root / "moved")
    ds = products.open_products(cfg.stores.ref("output"))
    return {"root": root / "moved", "store": ds, "region": products.region_of(ds.attrs)}


def _moved_items(moved_catalog) -> list[pystac.Item]:
    items = pystac.read_file(str(moved_catalog["root"] / "stac" / "collection.json")).get_items()
    return sorted(items, key=lambda it: it.id)


@pytest.mark.timeout(180)
def test_the_sm_unc_and_origin_cogs_are_strictly_valid(moved_catalog):
    cogs = sorted((moved_catalog["root"] / "cog").iterdir())
    assert [p.name for p in cogs[:3]] == ["SM_1km_2016161.tif", "SM_1km_2016161_origin.tif", "SM_1km_2016161_unc.tif"]
    assert len(cogs) == 9
    for path in cogs:
        valid, errors, warnings = cog_validate(str(path), strict=True, quiet=True)  # warnings are errors too
        assert valid and not errors and not warnings, (path.name, errors, warnings)
        var = {"": "sm", "_unc": "sm_unc", "_origin": "sm_origin"}[path.stem[len("SM_1km_2016161"):]]
        want = {"sm": ("m3 m-3", 0.0001, -9999, "int16"), "sm_unc": ("m3 m-3", 0.0001, -9999, "int16"),
                "sm_origin": ("1", 1.0, None, "uint16")}[var]
        with rasterio.open(path) as src:  # what GDAL (gdalinfo, QGIS) shows of the band survives the COG writing
            assert src.units == (want[0],), (path.name, src.units)
            assert src.descriptions == (LAYERS[var].description,), (path.name, src.descriptions)
            assert src.tags(1) == {"units": want[0], "variable": var,
                                   "long_name": LAYERS[var].description.split(": ", 1)[1]}, path.name
            assert (src.scales, src.offsets, src.nodata, src.dtypes[0]) == ((want[1],), (0.0,), want[2], want[3])
            assert src.tags()["OVERVIEW_RESAMPLING"] == ("NEAREST" if var == "sm_origin" else "AVERAGE")


@pytest.mark.timeout(180)
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo's, not dsm's
def test_a_moved_catalog_loads_in_odc_stac_on_the_stores_grid(moved_catalog):
    odc_stac = pytest.importorskip("odc.stac", reason="odc-stac (test extra) is not installed")
    geobox = pytest.importorskip("odc.geo.geobox", reason="odc-geo (odc-stac's) is not installed")

    ds, region = moved_catalog["store"], moved_catalog["region"]
    transform, (height, width), res = region.fine_transform, region.fine_shape, abs(region.fine_transform.a)
    items = _moved_items(moved_catalog)
    assert len(items) == 3
    bands = {k: items[0].assets[k].extra_fields["raster:bands"][0] for k in ("sm", "sm_unc")}
    # on the store's grid (a GeoBox of its transform), by CRS and resolution, and on the items' own grid
    # (proj:code, proj:shape, proj:transform); the nodata comes from raster:bands, the scale is applied here
    grid = geobox.GeoBox((height, width), transform, "EPSG:6933")
    for kwargs in ({"geobox": grid}, {"crs": "EPSG:6933", "resolution": res}, {}):
        loaded = odc_stac.load(items, bands=["sm", "sm_unc", "sm_origin"], **kwargs)
        got = loaded.odc.geobox
        assert got.crs.epsg == 6933 and got.affine.almost_equals(transform, 1e-6), (sorted(kwargs), got.affine)
        assert loaded["sm"].attrs["nodata"] == -9999 and loaded["sm"].dtype == np.int16
        _same_as_store({"sm": _decoded(loaded["sm"].values, bands["sm"]),
                        "sm_unc": _decoded(loaded["sm_unc"].values, bands["sm_unc"]),
                        "sm_origin": loaded["sm_origin"].values}, loaded["x"].values, loaded["y"].values, ds,
                       f"odc-stac {sorted(kwargs)}")


@pytest.mark.timeout(180)
def test_a_moved_catalog_loads_in_stackstac_on_the_stores_grid(moved_catalog):
    stackstac = pytest.importorskip(
        "stackstac", reason="stackstac is not installed: make setup installs it without its dependencies, since "
                            "stackstac 0.5.1 (the last release) declares pandas<3 (pip install --no-deps stackstac==0.5.1)")
    ds, region = moved_catalog["store"], moved_catalog["region"]
    transform, (height, width), res = region.fine_transform, region.fine_shape, abs(region.fine_transform.a)
    items = _moved_items(moved_catalog)
    # stackstac resolves no relative href (gjoseph92/stackstac#20): pystac resolves them against the moved
    # catalog. pystac drops proj:epsg on reading (it migrates it to proj:code), so its items need epsg=;
    # stackstac's default snap_bounds rounds the 1000.895 m grid's edges outwards (145 x 145), so it is off.
    for it in items:
        it.make_asset_hrefs_absolute()
    grid_args = {"epsg": 6933, "resolution": res, "bounds": region.bounds, "snap_bounds": False,
                 "xy_coords": "center"}
    values = stackstac.stack(items, assets=["sm", "sm_unc"], rescale=True, dtype="float64", fill_value=np.nan,
                             **grid_args)
    origin = stackstac.stack(items, assets=["sm_origin"], rescale=False, dtype="uint16", fill_value=np.uint16(0),
                             **grid_args)
    assert values.attrs["transform"].almost_equals(transform, 1e-6)
    _same_as_store({"sm": values.sel(band="sm").values, "sm_unc": values.sel(band="sm_unc").values,
                    "sm_origin": origin.sel(band="sm_origin").values}, values["x"].values, values["y"].values, ds,
                   "stackstac")
    # the items as written (a STAC API's JSON): stackstac takes the CRS (proj:epsg) and the grid from them alone
    written = [json.loads(Path(it.get_self_href()).read_text()) for it in items]
    for raw, it in zip(written, items, strict=True):
        raw["assets"] = {k: {**a, "href": it.assets[k].href} for k, a in raw["assets"].items()}
    alone = stackstac.stack(written, assets=["sm"], snap_bounds=False, xy_coords="center")
    assert alone.attrs["crs"] == "epsg:6933" and alone.attrs["transform"].almost_equals(transform, 1e-6)
    assert alone.shape == (3, 1, height, width)
    np.testing.assert_allclose(alone.sel(band="sm").values, values.sel(band="sm").values, atol=1e-12)
