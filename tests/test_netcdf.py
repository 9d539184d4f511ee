"""CF-1.10 / ACDD-1.3 netCDF export and the CF attributes of the products store: checked with a
real CF checker (compliance-checker), read back with netCDF4-python and xarray."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dsm import ledger, products, store
from dsm.config import from_dict
from dsm.cube import Layout
from dsm.errors import ConfigError
from dsm.grid import Region
from dsm.stages.export import export
from dsm.storeref import StoreRef

netCDF4 = pytest.importorskip("netCDF4", reason="netCDF4-python is needed to read the files back (test extra)")

REGION = Region(74, 772, 2, 2)
START, END = dt.date(2016, 6, 29), dt.date(2016, 7, 2)
DONE = ["2016-06-29", "2016-06-30", "2016-07-02"]  # 2016-07-01 not predicted
PROVIDERS = [{"name": "Example Soil Lab", "roles": ["producer", "processor"], "url": "https://example.org/soil",
              "email": "soil@example.org"},
             {"name": "Example Data Host", "roles": ["host"], "url": "https://data.example.org",
              "email": "data@example.org"}]


def _store(url: str, options: dict | None = None) -> np.ndarray:
    """A products store of four days (72 x 72 pixels) with known sm, sm_unc and origin; three done."""
    ref = StoreRef(url, options)
    products.create_products(ref, Layout(REGION, START, END, 36, 2), 0.9, overwrite=True)
    ds = products.open_products(ref)
    rng = np.random.default_rng(1)
    sm = rng.uniform(0.02, 0.45, (4, 72, 72)).astype(np.float32)
    sm[:, :5, :] = np.nan  # "water"
    origin = np.where(np.isnan(sm), 0, products.ALL_PREDICTORS | products.INPUT_OUT_OF_RANGE).astype(np.uint16)
    part = xr.Dataset({"sm": (("time", "y", "x"), sm), "sm_unc": (("time", "y", "x"), sm * 0.1),
                       "sm_origin": (("time", "y", "x"), origin)},
                      coords={"time": ds["time"].values, "y": ds["y"].values, "x": ds["x"].values})
    store.write_region(ref, part, ds)
    stored = products.open_products(ref)["sm"].values
    packed = _packed(ref)
    index = {d: (dt.date.fromisoformat(d) - START).days for d in DONE}
    models = {d: {"period": "2016177", "model": "xgb", products.VALID_PIXELS: int(np.isfinite(stored[t]).sum()),
                  products.SM_DIGEST: products.day_digest(packed[t], (36, 36))} for d, t in index.items()}
    ledger.write_days(ref, {d: ledger.DayRecord(done=True, model=m) for d, m in models.items()})
    return stored


def _packed(ref: StoreRef) -> np.ndarray:
    """``sm`` as stored (int16)."""
    import zarr

    return np.asarray(zarr.open_array(ref.join("sm").url, mode="r", storage_options=ref.zarr_options)[:])


def _config(tmp_path: Path, **output):
    return from_dict({"region": {"cells": [74, 772, 2, 2]}, "dates": {"start": str(START), "end": str(END)},
                      "stores": {"cube": "unused.zarr", "output": str(tmp_path / "sm.zarr"),
                                 "netcdf": str(tmp_path / "nc")},
                      "chunks": {"space": 36, "time": 2},
                      "output": {"formats": ["netcdf"], "netcdf_period": "month", "license": "CC-BY-4.0",
                                 "providers": PROVIDERS, **output}})


KNOWN: dict[str, str] = {
    # compliance-checker 6.1 lists lambert_cylindrical_equal_area's one required attribute as a string,
    # not a tuple, and asks for each of its letters ("l is a required attribute..."); the attribute
    # itself (longitude_of_central_meridian) is asserted present in the test
    "is a required attribute for grid mapping lambert_cylindrical_equal_area": "checker bug",
    # ACDD wants a standard_name on every data variable; none in the CF table names a prediction
    # interval's half width (sm_unc), and a wrong one would be worse than none
    'variable "sm_unc" missing the following attributes:: standard_name': "no CF standard name",
    # warnings: the bounds of a scalar coordinate have one dimension (CF 7.1); the vertical extent
    # and time_coverage_end are the layer's and the last day's bounds, not the coordinate values
    "Boundary variable depth_bnds specified by depth should have at least two dimensions": "CF 7.1",
    "geospatial_vertical_min != geospatial_vertical_max for scalar depth values": "the 0-5 cm layer",
    "geospatial_vertical_max != depth values": "the 0-5 cm layer",
    "geospatial_bounds_vertical_crs not present": "EPSG has no CRS of depth below the land surface",
    "time_coverage_end and actual time values": "end of the last day",
    "naming_authority not present": "no naming authority of the user's is known",
}


def _cf_failures(path: str) -> dict[str, list[str]]:
    """compliance-checker's failed checks of ``path`` against CF-1.10 and ACDD-1.3 by priority
    (``high``: errors, ``medium``: warnings), less the :data:`KNOWN` ones."""
    from compliance_checker.runner import CheckSuite

    suite = CheckSuite()
    suite.load_all_available_checkers()
    ds = suite.load_dataset(path)
    out: dict[str, list[str]] = {"high": [], "medium": [], "low": []}
    for checker, (results, errors) in suite.run_all(ds, ["cf:1.10", "acdd:1.3"], skip_checks=[]).items():
        assert not errors, f"{checker} could not run: {errors}"
        for r in results:
            value = r.value
            failed = (value[0] < value[1]) if isinstance(value, tuple) else not value
            msgs = [m for m in r.msgs if not any(k in f"{r.name}: {m}" for k in KNOWN)]
            if failed and msgs:
                out[{3: "high", 2: "medium", 1: "low"}[r.weight]].append(f"{checker} {r.name}: {msgs}")
    return out


@pytest.mark.timeout(240)
def test_netcdf_files_are_cf_acdd_clean_and_hold_the_stored_values(client, tmp_path):
    pytest.importorskip("compliance_checker", reason="compliance-checker (CF checker, test extra) is not installed")
    stored = _store(str(tmp_path / "sm.zarr"))
    cfg = _config(tmp_path)
    report = export(cfg, client, command="dsm export config.yaml --format netcdf")
    assert report.netcdf_failed == {} and report.exported == [] and report.stac is None  # no COGs asked for
    assert report.netcdf == [str(tmp_path / "nc" / "SM_1km_201606.nc"), str(tmp_path / "nc" / "SM_1km_201607.nc")]
    zarr_ds = xr.open_zarr(tmp_path / "sm.zarr", consolidated=False)
    for path, days in zip(report.netcdf, (DONE[:2], DONE[2:])):
        with netCDF4.Dataset(path) as nc:
            sm = nc["sm"]
            assert sm.dtype == np.int16 and sm.filters()["zlib"] and sm.chunking() != "contiguous"
            assert sm.valid_range.dtype == np.int16 and list(sm.valid_range) == [0, 10000]
            assert sm._FillValue == -9999 and sm.scale_factor == np.float32(1e-4) and sm.add_offset == 0
            read = sm[:]  # masked and scaled by netCDF4 as any CF reader does
            t = [(dt.date.fromisoformat(d) - START).days for d in days]
            want = stored[t]
            assert np.array_equal(np.ma.getmaskarray(read), np.isnan(want))
            np.testing.assert_allclose(read.filled(np.nan), want, atol=1e-4)
            np.testing.assert_allclose(read.filled(np.nan), zarr_ds["sm"].values[t], atol=1e-4)
            assert np.ma.count(read) > 0.9 * read.size
            assert nc["sm_unc"][:].mask.sum() == np.isnan(want).sum()
            assert (nc["sm_origin"][:] == (np.where(np.isnan(want), 0, 257))).all()
            times = netCDF4.num2date(nc["time"][:], nc["time"].units, only_use_cftime_datetimes=False)
            assert [str(x)[:10] for x in times] == days and nc["time"].bounds == "time_bnds"
            assert (nc["time_bnds"][:, 1] - nc["time_bnds"][:, 0] == 1).all()
            assert nc["depth"].positive == "down" and float(nc["depth"][...]) == pytest.approx(0.025)
            assert list(nc["depth_bnds"][:]) == pytest.approx([0.0, 0.05])
            for coord in ("time", "x", "y", "lat", "lon", "depth"):
                assert "_FillValue" not in nc[coord].ncattrs(), coord
            assert nc["x"].axis == "X" and nc["y"].standard_name == "projection_y_coordinate"
            assert nc["spatial_ref"].grid_mapping_name == "lambert_cylindrical_equal_area" and "crs_wkt" in nc["spatial_ref"].ncattrs()
            assert sm.cell_methods == "area: mean" and sm.grid_mapping == "spatial_ref"
            assert nc.Conventions == "CF-1.10, ACDD-1.3" and "10.5194/essd-14-3053-2022" in nc.references
            assert nc.license == "CC-BY-4.0" and nc.creator_name == "Example Soil Lab"
            assert nc.publisher_url == "https://data.example.org"
            assert nc["spatial_ref"].longitude_of_central_meridian == 0
            assert "dsm export config.yaml --format netcdf" in nc.history
            assert nc.time_coverage_start == f"{days[0]}T00:00:00Z"
            assert not any(a in nc.ncattrs() for a in ("days_done", "day_models", "origin_bits"))
        with xr.open_dataset(path, decode_coords="all") as x:  # xarray reads the same
            np.testing.assert_allclose(x["sm"].values, want, atol=1e-4)
            assert x["sm"].rio.crs.to_epsg() == 6933
        failures = _cf_failures(path)
        assert failures["high"] == [] and failures["medium"] == [], failures
    # a rerun skips both files; a file gone, or a setting changed, is written again
    assert export(cfg, client).netcdf_skipped == ["201606", "201607"]
    Path(report.netcdf[1]).unlink()
    again = export(cfg, client)
    assert again.netcdf == [report.netcdf[1]] and again.netcdf_skipped == ["201606"]
    relicensed = export(_config(tmp_path, license="CC0-1.0"), client)
    assert relicensed.netcdf == report.netcdf
    with netCDF4.Dataset(report.netcdf[0]) as nc:
        assert nc.license == "CC0-1.0"


@pytest.mark.timeout(240)
def test_a_replaced_chunk_is_never_written_to_netcdf(client, tmp_path):
    url = str(tmp_path / "sm.zarr")
    _store(url)
    chunk = tmp_path / "sm.zarr" / "sm" / "c"
    (chunk / "1" / "0" / "0").write_bytes((chunk / "0" / "0" / "0").read_bytes())  # days 2-3 get days 0-1's block
    report = export(_config(tmp_path), client)
    assert list(report.netcdf_failed) == ["201607"] and "digest differs" in report.netcdf_failed["201607"]
    assert report.netcdf == [str(tmp_path / "nc" / "SM_1km_201606.nc")]
    assert not (tmp_path / "nc" / "SM_1km_201607.nc").exists()
    assert ledger.read(StoreRef(url)).done == DONE[:2]  # predict writes it again


@pytest.mark.s3
@pytest.mark.timeout(240)
def test_netcdf_files_go_to_s3_beside_the_products_store_and_a_rerun_skips_them(client, s3, tmp_path):
    root = s3.make_bucket("dsm-netcdf")
    stored = _store(f"{root}/out/sm.zarr", s3.storage_options)
    raw = _config(tmp_path).model_dump(mode="json")
    raw["stores"].update(output=f"{root}/out/sm.zarr", netcdf=None, storage_options=s3.storage_options)
    cfg = from_dict(raw)
    report = export(cfg, client)
    assert report.netcdf_failed == {}
    assert report.netcdf == [f"{root}/out/netcdf/SM_1km_201606.nc", f"{root}/out/netcdf/SM_1km_201607.nc"]
    local = tmp_path / "back.nc"
    s3.filesystem().get_file(report.netcdf[1].removeprefix("s3://"), str(local))
    with netCDF4.Dataset(local) as nc:
        np.testing.assert_allclose(nc["sm"][:].filled(np.nan), stored[[3]], atol=1e-4)
    # the recorded files are found (their sizes read with the store's options): nothing written again
    again = export(cfg, client)
    assert again.netcdf == [] and again.netcdf_skipped == ["201606", "201607"] and again.netcdf_failed == {}


def test_the_run_exports_netcdf_without_a_cog_folder_and_skips_when_there_is_nothing_to_write(client, tmp_path):
    """``dsm run``'s export stage with ``output.formats: [netcdf]`` and no ``stores.cog`` writes
    the netCDF files (it used to skip the stage for want of a COG folder)."""
    from dsm.chain import run

    _store(str(tmp_path / "sm.zarr"))
    res = run(_config(tmp_path), client, stages=("export",))
    (stage,) = res.stages
    assert stage.status == "done", stage
    assert sorted(p.name for p in (tmp_path / "nc").iterdir()) == ["SM_1km_201606.nc", "SM_1km_201607.nc"]
    cogs_only = _config(tmp_path, formats=["cog"])  # COGs asked, no folder for them: named, not done
    (stage,) = run(cogs_only, client, stages=("export",)).stages
    assert stage.status == "skipped" and "stores.cog is not set" in stage.message


def test_products_store_attributes_are_cf(tmp_path):
    url = str(tmp_path / "sm.zarr")
    products.create_products(StoreRef(url), Layout(REGION, START, END, 36, 2), 0.9)
    meta = {v: json.loads((tmp_path / "sm.zarr" / v / "zarr.json").read_text())["attributes"]
            for v in ("sm", "sm_unc", "sm_origin", "x", "y", "cy", "lat", "time", "time_bnds", "depth")}
    assert meta["sm"]["valid_range"] == [0, 10000] and "valid_min" not in meta["sm"]  # packed units
    assert meta["sm_unc"]["valid_range"] == [0, 10000] and meta["sm_origin"]["valid_range"] == [0, 511]
    assert meta["sm"]["cell_methods"] == "area: mean"
    for coord in ("x", "y", "cy", "lat", "time", "time_bnds", "depth"):
        assert "_FillValue" not in meta[coord], coord
    assert meta["cy"]["axis"] == "Y" and meta["cy"]["standard_name"] == "projection_y_coordinate"
    assert meta["time"]["bounds"] == "time_bnds" and meta["time_bnds"]["units"] == meta["time"]["units"]
    ds = xr.open_zarr(url, consolidated=False)
    assert float(ds["depth"]) == pytest.approx(0.025) and ds["depth"].attrs["positive"] == "down"
    assert (ds["time_bnds"].values[:, 1] - ds["time_bnds"].values[:, 0] == np.timedelta64(1, "D")).all()
    assert "10.5194/essd-14-3053-2022" in ds.attrs["references"]
    # the store goes to netCDF as it is, root attributes and all (the run records are its ledger)
    plain = ds.copy()
    plain["sm"] = plain["sm"].copy(data=np.full(plain["sm"].shape, 0.25, np.float32))
    plain.to_netcdf(tmp_path / "plain.nc", engine="netcdf4")
    with netCDF4.Dataset(tmp_path / "plain.nc") as nc:
        assert set(ds.attrs) <= set(nc.ncattrs()) and products.region_of(nc.__dict__) == REGION
        assert nc["sm"].dtype == np.int16 and not np.ma.getmaskarray(nc["sm"][:]).any()
        np.testing.assert_allclose(nc["sm"][:], 0.25, atol=1e-4)


def test_bad_export_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match="output.license"):
        _config(tmp_path, license="CC BY 4.0")
    with pytest.raises(ConfigError, match="output.formats"):
        _config(tmp_path, formats=["geotiff"])
