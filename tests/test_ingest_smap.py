"""SPL3SMP reader on fixtures that follow the real version 9 schema on the real 36 km grid."""

from __future__ import annotations

import datetime as dt
import shutil
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest

from dsm.grid import EASE2_36KM, Region, lonlat_to_xy
from dsm.ingest import (
    EmptyGranuleError,
    GeolocationError,
    InputDateError,
    MissingVariableError,
    UnreadableFileError,
    WrongProductError,
    read_many,
    read_spl3smp,
)
from dsm.errors import InputError
from dsm.testing.granules import SmapPass, _smap_schema, spl3smp_filename, write_spl3smp

DATE = dt.date(2015, 4, 10)
GLOBE = Region(0, 0, 406, 964)


@pytest.fixture(scope="module")
def real_grid(shared_data):
    """Real AM/PM latitude/longitude of SMAP_L3_SM_P_20150410 (-9999 where no retrieval)."""
    with h5py.File(shared_data / "smap" / "SC_SPL3SMP_009_prefetch.nc4", "r") as f:
        return (
            f["Soil_Moisture_Retrieval_Data_AM/latitude"][()],
            f["Soil_Moisture_Retrieval_Data_AM/longitude"][()],
            f["Soil_Moisture_Retrieval_Data_PM/latitude_pm"][()],
            f["Soil_Moisture_Retrieval_Data_PM/longitude_pm"][()],
        )


@pytest.fixture(scope="module")
def granule(tmp_path_factory, real_grid):
    """A granule with unique soil moisture per observed cell, some flagged, filled, out of range."""
    lat, lon, lat_pm, lon_pm = real_grid
    rng = np.random.default_rng(3)
    obs = lat != -9999.0
    ids = np.arange(lat.size).reshape(lat.shape)
    sm = np.where(obs, 0.05 + (ids % 100_000) * 4e-6, np.nan).astype(np.float32)
    retrieved = obs & (rng.random(lat.shape) < 0.8)  # the rest: observed but no retrieval (fill)
    sm[~retrieved] = np.nan
    flag = np.where(retrieved, 0, 65534).astype(np.uint16)
    not_recommended = retrieved & (rng.random(lat.shape) < 0.25)
    flag[not_recommended] |= 0b1
    flag[retrieved & (rng.random(lat.shape) < 0.3)] |= 0b1000  # FT bit: not part of the default mask
    out_of_range = retrieved & ~not_recommended & (rng.random(lat.shape) < 0.01)
    sm[out_of_range] = 0.6
    obs_pm = lat_pm != -9999.0
    sm_pm = np.where(obs_pm, 0.3, np.nan).astype(np.float32)
    path = tmp_path_factory.mktemp("smap") / spl3smp_filename(DATE)
    write_spl3smp(
        path,
        DATE,
        SmapPass(sm, flag, observed=obs),
        SmapPass(sm_pm, observed=obs_pm, hour_utc=18.0),
        latitude=np.where(obs, lat, np.where(obs_pm, lat_pm, -9999.0)),
        longitude=np.where(obs, lon, np.where(obs_pm, lon_pm, -9999.0)),
    )
    return {"path": path, "sm": sm, "flag": flag, "lat": lat, "lon": lon, "obs_pm": obs_pm}


def test_every_valid_retrieval_lands_in_its_cell(granule):
    da, date = read_spl3smp(granule["path"], GLOBE)
    assert date == DATE and da.dims == ("cy", "cx") and da.attrs["units"] == "m3 m-3"
    sm, flag, lat, lon = granule["sm"], granule["flag"], granule["lat"], granule["lon"]
    expect_valid = ~np.isnan(sm) & (flag & 1 == 0) & (sm <= 0.5) & (sm >= 0.02)
    # place each valid retrieval independently, from its own latitude/longitude
    x, y = lonlat_to_xy(lon[expect_valid], lat[expect_valid])
    row, col = EASE2_36KM.index(x, y)
    assert (row >= 0).all()
    np.testing.assert_array_equal(da.values[row, col], sm[expect_valid])
    assert int(np.count_nonzero(~np.isnan(da.values))) == int(expect_valid.sum()) > 50_000
    assert da.attrs["valid_cells"] == int(expect_valid.sum())


def test_region_is_a_window_of_the_globe(granule):
    region = Region.from_bbox(100.0, 35.0, 115.0, 45.0)  # northern China
    da, _ = read_spl3smp(granule["path"], region)
    full, _ = read_spl3smp(granule["path"], GLOBE)
    rs, cs = GLOBE.coarse_slices(region)
    np.testing.assert_array_equal(da.values, full.values[rs, cs])
    np.testing.assert_allclose(da.cx.values, region.coarse_x)
    assert da.time.values == np.datetime64("2015-04-10")


def test_qc_mask_and_fill(granule):
    sm, flag = granule["sm"], granule["flag"]
    keep_all, _ = read_spl3smp(granule["path"], GLOBE, qc_mask=0)
    in_range = ~np.isnan(sm) & (sm <= 0.5)
    np.testing.assert_array_equal(~np.isnan(keep_all.values), in_range)
    strict, _ = read_spl3smp(granule["path"], GLOBE, qc_mask=0b1001)
    np.testing.assert_array_equal(~np.isnan(strict.values), in_range & (flag & 0b1001 == 0))
    default, _ = read_spl3smp(granule["path"], GLOBE)
    assert np.isnan(default.values[flag & 1 == 1]).all()
    assert np.isnan(default.values[np.isnan(sm)]).all()  # -9999 fill never leaks as a value
    assert np.nanmin(default.values) >= 0.02 and np.nanmax(default.values) <= 0.5


def test_pm_option(granule):
    pm, date = read_spl3smp(granule["path"], GLOBE, overpass="PM")
    assert date == DATE
    np.testing.assert_array_equal(~np.isnan(pm.values), granule["obs_pm"])
    assert np.nanmax(pm.values) == np.nanmin(pm.values) == np.float32(0.3)


def test_fixture_follows_the_real_schema(granule, shared_data):
    """Names, dtypes, dims and attributes written equal those of the real v9 DMR."""
    root = ET.parse(shared_data / "smap" / "SC_SPL3SMP_009.dmr").getroot()
    ns = root.tag.split("}")[0] + "}"
    types = {"Float32": "f4", "Float64": "f8", "UInt16": "u2", "String": "S"}
    with h5py.File(granule["path"], "r") as f:
        for group, suffix in (("Soil_Moisture_Retrieval_Data_AM", ""), ("Soil_Moisture_Retrieval_Data_PM", "_pm")):
            g = next(e for e in root if e.get("name") == group)
            for name in _smap_schema(suffix):
                var = next(e for e in g if e.get("name") == name)
                ds = f[group][name]
                assert ds.dtype.str.lstrip("<>|")[:len(types[var.tag[len(ns):]])] == types[var.tag[len(ns):]], name
                assert ds.shape == tuple(int(d.get("size")) for d in var if d.tag == ns + "Dim")
                want = {a.get("name"): (a.get("type"), a.find(ns + "Value").text) for a in var if a.tag == ns + "Attribute"}
                want.pop("HDF5_HARDLINK", None)  # a link to retrieval_qual_flag_dca, not an attribute value
                assert set(ds.attrs) == set(want), name
                for key, (typ, text) in want.items():
                    got = ds.attrs[key]
                    if typ == "String":
                        assert got.decode() == text, (name, key)
                    else:
                        assert got.dtype == np.dtype(types[typ]), (name, key)
                        assert got == np.asarray(float(text), dtype=got.dtype), (name, key)


def test_date_sources(tmp_path, granule):
    sm = np.full((406, 964), np.nan, np.float32)
    sm[150, 400] = 0.2
    # no metadata: the file name gives the date
    p = write_spl3smp(tmp_path / spl3smp_filename(dt.date(2016, 2, 29)), dt.date(2016, 2, 29), SmapPass(sm), metadata=False)
    assert read_spl3smp(p, GLOBE)[1] == dt.date(2016, 2, 29)
    # neither: the acquisition times give it
    p = write_spl3smp(tmp_path / "granule.h5", dt.date(2017, 7, 1), SmapPass(sm, hour_utc=5.5), metadata=False)
    assert read_spl3smp(p, GLOBE)[1] == dt.date(2017, 7, 1)
    # metadata and name disagree
    p = tmp_path / spl3smp_filename(dt.date(2015, 4, 11))
    shutil.copy(granule["path"], p)
    with pytest.raises(InputDateError, match="disagrees"):
        read_spl3smp(p, GLOBE)
    # nothing at all
    p = write_spl3smp(tmp_path / "nodate.h5", DATE, SmapPass(sm, observed=np.zeros((406, 964), bool)), metadata=False)
    with h5py.File(p, "r+") as f:
        f["Soil_Moisture_Retrieval_Data_AM/tb_time_seconds"][...] = -9999.0
    with pytest.raises(InputDateError, match="no /Metadata"):
        read_spl3smp(p, GLOBE)


def test_geolocation_mismatch_raises(tmp_path):
    from dsm.testing.granules import ease36_latlon

    lat, lon = ease36_latlon()
    sm = np.full((406, 964), np.nan, np.float32)
    sm[200, 500] = 0.2
    p = write_spl3smp(tmp_path / spl3smp_filename(DATE), DATE, SmapPass(sm), latitude=lat + 0.002, longitude=lon)
    with pytest.raises(GeolocationError, match=r"row 200, col 500"):
        read_spl3smp(p, Region(199, 499, 3, 3))
    ok = write_spl3smp(tmp_path / "ok.h5", DATE, SmapPass(sm), latitude=lat + 0.0005, longitude=lon)
    assert read_spl3smp(ok, Region(199, 499, 3, 3))[0].values[1, 1] == np.float32(0.2)


def test_bad_granules_are_reported_not_fatal(tmp_path, granule, shared_data):
    good = granule["path"]
    data = good.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / spl3smp_filename(DATE, counter=2)
    b = bytearray(data)
    for i in np.random.default_rng(1).integers(len(b) // 4, len(b), 3000):
        b[i] ^= 0xFF
    flipped.write_bytes(bytes(b))
    header = tmp_path / "header.h5"
    header.write_bytes(b"\x00" * 16 + data[16:])
    wrong = shared_data / "smap" / "SC_SPL3SMP_009_prefetch.nc4"  # lat/lon only: no soil_moisture
    modis = next((shared_data / "modis").glob("MOD11A1*.hdf"))
    empty = write_spl3smp(tmp_path / "empty.h5", DATE, SmapPass(np.full((406, 964), np.nan, np.float32)))
    missing = tmp_path / "missing.h5"
    paths = [good, truncated, flipped, header, wrong, modis, empty, missing]
    many = read_many(paths, read_spl3smp, region=GLOBE)
    status = {r.path: (r.status, r.error) for r in many.report}
    assert status[str(good)] == ("used", "")
    assert status[str(truncated)] == ("failed", "UnreadableFileError")
    assert status[str(header)] == ("failed", "UnreadableFileError")
    assert status[str(flipped)][0] == "failed"  # corrupt chunks fail to decompress
    assert status[str(wrong)] == ("failed", "MissingVariableError")
    assert status[str(modis)] == ("failed", "UnreadableFileError")
    assert status[str(empty)] == ("skipped", "EmptyGranuleError")
    assert status[str(missing)] == ("failed", "UnreadableFileError")
    assert list(many.results) == [str(good)]
    for r in many.report[1:]:
        assert r.reason
    with pytest.raises(InputError, match=str(truncated)):
        read_spl3smp(truncated, GLOBE)


def test_wrong_product_and_shape(tmp_path):
    p = tmp_path / "e.h5"
    with h5py.File(p, "w") as f:
        f.create_group("Metadata/DatasetIdentification").attrs["shortName"] = np.bytes_("SPL3SMP_E")
        f.create_dataset("Soil_Moisture_Retrieval_Data_AM/soil_moisture", data=np.zeros((1624, 3856), np.float32))
    with pytest.raises(WrongProductError, match="SPL3SMP_E"):
        read_spl3smp(p, GLOBE)
    with h5py.File(p, "r+") as f:
        del f["Metadata"]
    with pytest.raises(WrongProductError, match="shape"):
        read_spl3smp(p, GLOBE)
    with h5py.File(p, "w") as f:
        f.create_group("Soil_Moisture_Retrieval_Data_AM")
    with pytest.raises(MissingVariableError, match="soil_moisture"):
        read_spl3smp(p, GLOBE)
    with pytest.raises(UnreadableFileError, match="does not exist"):
        read_spl3smp(tmp_path / "nope.h5", GLOBE)
    with pytest.raises(EmptyGranuleError):
        sm = np.full((406, 964), 0.2, np.float32)
        read_spl3smp(write_spl3smp(tmp_path / "q.h5", DATE, SmapPass(sm, np.ones((406, 964), np.uint16))), GLOBE)
