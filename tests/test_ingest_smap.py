"""SPL3SMP / SPL3SMP_E readers on fixtures that follow the real version 9 schema on the real grids,
and on the real Harmony/OPeNDAP subsets."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import h5py
import numpy as np
import pytest
from affine import Affine

from dsm.errors import InputError
from dsm.grid import EASE2_9KM, EASE2_36KM, Region, lonlat_to_xy
from dsm.ingest import (
    EmptyGranuleError,
    GeolocationError,
    InputDateError,
    MissingVariableError,
    NoOverlapError,
    UnreadableFileError,
    WrongProductError,
    read_many,
    read_spl3smp,
    read_spl3smp_e,
)
from dsm.ingest.easegrid import Geolocation, Window, check_cells, locate, region_window
from dsm.testing.granules import (
    SmapPass,
    spl3smp_filename,
    write_smap_subset,
    write_spl3smp,
    write_spl3smp_e,
)
from dsm.testing.smap_granules import smap_schema

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
            for name in smap_schema(suffix):
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
    assert read_spl3smp(p, GLOBE)[1] == DATE  # the next fallback: tb_time_utc
    with h5py.File(p, "r+") as f:
        f["Soil_Moisture_Retrieval_Data_AM/tb_time_utc"][...] = b""
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


# -- Harmony/OPeNDAP subsets, SPL3SMP_E, products, groups --------------------------------
REAL_SUBSETS = {
    # file, product, grid, its granule's date (from the granule name in build_dmrpp_metadata)
    "SPL3SMP": ("hoss_shape_file_3d_no_dimensions_yxz_order_reference.nc4", EASE2_36KM, dt.date(2015, 4, 10)),
    "SPL3SMP_E": ("hoss_shape_file_2d_no_dimensions_reference.nc4", EASE2_9KM, dt.date(2015, 4, 5)),
}
READERS = {"SPL3SMP": read_spl3smp, "SPL3SMP_E": read_spl3smp_e}
PASSES = (("Soil_Moisture_Retrieval_Data_AM", ""), ("Soil_Moisture_Retrieval_Data_PM", "_pm"))


def _history_window(f) -> Window:
    """The window the OPeNDAP request in ``history`` asked for (inclusive ``[r0:r1][c0:c1]``)."""
    ce = unquote(f.attrs["history"].decode())
    r0, r1, c0, c1 = map(int, re.search(r"Soil_Moisture_Retrieval_Data_AM/latitude\[(\d+):(\d+)\]\[(\d+):(\d+)\]", ce).groups())
    return Window(r0, c0, r1 - r0 + 1, c1 - c0 + 1)


def _truth(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Soil moisture unique within any 100 x 100 cells of a grid, in [0.02, 0.5]."""
    return (0.02 + (np.asarray(rows)[:, None] % 100) * 0.004 + (np.asarray(cols)[None, :] % 100) * 0.00004).astype(np.float32)


@pytest.mark.parametrize("product", ["SPL3SMP", "SPL3SMP_E"])
def test_real_subsets_are_windows_of_the_grid(shared_data, product):
    """Every x/y of the real subsets is a cell centre of the grid at the requested window, and
    every valid latitude/longitude places the arrays at the same window."""
    name, grid, _ = REAL_SUBSETS[product]
    path = str(shared_data / "smap" / name)
    with h5py.File(path, "r") as f:
        want = _history_window(f)
        assert want == (Window(48, 147, 70, 156) if product == "SPL3SMP" else Window(195, 590, 274, 620))
        for group, sfx in PASSES:
            g = f[group]
            lat, lon = g[f"latitude{sfx}"], g[f"longitude{sfx}"]
            assert (lat[()] != -9999).sum() > 4000
            assert locate(path, grid, lat.shape, Geolocation(x=g["x"], y=g["y"])) == (want, "x/y")
            assert locate(path, grid, lat.shape, Geolocation(lat=lat, lon=lon)) == (want, "latitude/longitude")
            cols, rows = np.arange(want.col0, want.col0 + want.ncols), np.arange(want.row0, want.row0 + want.nrows)
            np.testing.assert_allclose(g["x"][()], grid.x_centres(cols), rtol=0, atol=1e-4)
            np.testing.assert_allclose(g["y"][()], grid.y_centres(rows), rtol=0, atol=1e-4)
            check_cells(path, grid, want, want, Geolocation(lat=lat, lon=lon), 1e-5)  # every valid cell
            shifted = Window(want.row0 + 1, want.col0, want.nrows, want.ncols)
            with pytest.raises(GeolocationError, match="differ from the EASE-Grid 2.0"):
                check_cells(path, grid, shifted, shifted, Geolocation(lat=lat, lon=lon), 1e-3)
            x = g["x"][()]
            with pytest.raises(GeolocationError, match=r"x\[\d+\] = .* m from the nearest cell centre"):
                locate(path, grid, lat.shape, Geolocation(x=x + 0.3 * grid.cell, y=g["y"]))
            with pytest.raises(GeolocationError, match="one .* cell at a time west to east"):
                locate(path, grid, lat.shape, Geolocation(x=x[::-1], y=g["y"]))
            other = EASE2_9KM if grid is EASE2_36KM else EASE2_36KM
            with pytest.raises(GeolocationError):
                locate(path, other, lat.shape, Geolocation(x=g["x"], y=g["y"]))


@pytest.mark.parametrize("product", ["SPL3SMP", "SPL3SMP_E"])
def test_real_subset_with_soil_moisture_lands_on_its_cells(tmp_path, shared_data, product):
    """The real subset, renamed and given soil moisture where it has latitude: read onto a
    region that it covers in part, each value lands on its cell, the rest is NaN, and the date
    comes from the granule name in its root attributes."""
    name, grid, date = REAL_SUBSETS[product]
    path = tmp_path / "download.nc4"  # a download tool's name: no date, no product
    shutil.copyfile(shared_data / "smap" / name, path)
    with h5py.File(path, "r+") as f:
        w = _history_window(f)
        g = f["Soil_Moisture_Retrieval_Data_AM"]
        have = g["latitude"][()] != -9999
        truth = _truth(np.arange(w.row0, w.row0 + w.nrows), np.arange(w.col0, w.col0 + w.ncols))
        ds = g.create_dataset("soil_moisture", data=np.where(have, truth, np.float32(-9999.0)))
        ds.attrs.update({"_FillValue": np.float32(-9999.0), "valid_min": np.float32(0.02), "valid_max": np.float32(0.5)})
    region = Region(110, 240, 12, 10)  # 36 km rows 110..121, cols 240..249: across the subset's southern edge
    da, got = READERS[product](path, region, qc_mask=0)
    assert got == date
    t = region_window(region, grid)
    cut = w.intersection(t)
    assert cut is not None and cut.shape != t.shape
    expect = np.full(t.shape, np.nan, np.float32)
    expect[t.slices(cut)] = np.where(have, truth, np.nan)[w.slices(cut)]
    np.testing.assert_array_equal(da.values, expect)
    assert np.isfinite(da.values).sum() == da.attrs["valid_cells"] > 0
    assert da.attrs["placement"] == "x/y"
    other = "SPL3SMP_E" if product == "SPL3SMP" else "SPL3SMP"
    with pytest.raises(WrongProductError, match=rf"{re.escape(str(path))}: .*names the product '{product}'; {READERS[other].__name__} reads {other}"):
        READERS[other](path, region)


def _subset_case(product: str):
    """A subset window and a region that covers part of it, per grid."""
    if product == "SPL3SMP":
        return EASE2_36KM, Window(100, 700, 12, 15), Region(95, 705, 10, 20)
    return EASE2_9KM, Window(403, 2810, 30, 26), Region(98, 700, 4, 8)  # 9 km rows 392..407, cols 2800..2831


@pytest.mark.parametrize("product", ["SPL3SMP", "SPL3SMP_E"])
@pytest.mark.parametrize("placement", ["x/y", "EASE_row_index/EASE_column_index", "latitude/longitude"])
def test_written_subset_values_land_on_their_cells(tmp_path, product, placement):
    grid, w, region = _subset_case(product)
    t = region_window(region, grid)
    cut = w.intersection(t)
    assert cut is not None and cut != t and cut != w  # the region and the subset overlap in part
    rows, cols = np.arange(w.row0, w.row0 + w.nrows), np.arange(w.col0, w.col0 + w.ncols)
    sm = _truth(rows, cols)
    i, j = cut.row0 - w.row0 + 2, cut.col0 - w.col0 + 3  # inside the cells read
    sm[i, j] = np.nan  # no retrieval: fill
    flag = np.zeros(w.shape, np.uint16)
    flag[i + 1, j + 1] = 1  # not recommended
    observed = np.ones(w.shape, bool)
    observed[0, :] = False  # no brightness temperature: no lat/lon, time, indices on the first row
    sm[0, :] = np.nan
    omit = () if placement.startswith("EASE") else ("EASE_row_index", "EASE_column_index")
    path = write_smap_subset(tmp_path / "subset.nc4", DATE, SmapPass(sm, flag, observed), row0=w.row0, col0=w.col0,
                             product=product, xy=placement == "x/y", omit=omit)
    da, date = READERS[product](path, region)
    assert date == DATE and da.attrs["placement"] == placement and da.attrs["file_window"] == str(w)
    expect = np.full(t.shape, np.nan, np.float32)
    keep = np.where(flag == 0, sm, np.nan)
    expect[t.slices(cut)] = keep[w.slices(cut)]
    np.testing.assert_array_equal(da.values, expect)
    ri, rj = w.row0 + i - t.row0, w.col0 + j - t.col0  # the fill and the flagged cell in the region
    assert np.isnan(da.values[ri, rj]) and np.isnan(da.values[ri + 1, rj + 1]) and np.isfinite(da.values[ri, rj + 1])
    # coordinates: the region's cells on the product's grid
    np.testing.assert_allclose(da[da.dims[1]].values, grid.x_centres(np.arange(t.col0, t.col0 + t.ncols)))
    np.testing.assert_allclose(da[da.dims[0]].values, grid.y_centres(np.arange(t.row0, t.row0 + t.nrows)))
    # the same field as a whole granule gives the same values where the subset reaches
    full = np.full((grid.nrows, grid.ncols), np.nan, np.float32)
    full[w.row0:w.row0 + w.nrows, w.col0:w.col0 + w.ncols] = keep
    writer = write_spl3smp if product == "SPL3SMP" else write_spl3smp_e
    granule = writer(tmp_path / spl3smp_filename(DATE, enhanced=product == "SPL3SMP_E"), DATE, SmapPass(full))
    whole, _ = READERS[product](granule, region)
    assert whole.attrs["placement"] == "global"
    np.testing.assert_array_equal(whole.values[t.slices(cut)], da.values[t.slices(cut)])


def test_spl3smp_e_granule_nests_in_the_36km_cells(tmp_path):
    grid = EASE2_9KM
    region = Region(100, 700, 3, 5)
    t = region_window(region, grid)
    assert t == Window(400, 2800, 12, 20)
    sm = np.full((1624, 3856), np.nan, np.float32)
    sm[395:415, 2795:2825] = _truth(np.arange(395, 415), np.arange(2795, 2825))
    path = write_spl3smp_e(tmp_path / spl3smp_filename(DATE, enhanced=True), DATE, SmapPass(sm))
    da, date = read_spl3smp_e(path, region)
    assert date == DATE and da.dims == ("y9", "x9") and "SPL3SMP_E" in da.attrs["long_name"]
    np.testing.assert_array_equal(da.values, sm[400:412, 2800:2820])
    # 4 x 4 nine-km cells per 36 km cell, 9 one-km pixels per 9 km cell, on one outline
    np.testing.assert_allclose(da.x9.values.reshape(5, 4).mean(axis=1), region.coarse_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(da.y9.values.reshape(3, 4).mean(axis=1), region.coarse_y, rtol=0, atol=1e-6)
    np.testing.assert_allclose(da.x9.values, region.fine_x.reshape(-1, 9).mean(axis=1), rtol=0, atol=1e-6)
    assert da.spatial_ref_9km.attrs["GeoTransform"].split()[1] == repr(grid.cell)
    assert da.rio.transform().almost_equals(Affine(grid.cell, 0, region.bounds[0], 0, -grid.cell, region.bounds[3]), precision=1e-6)
    # its geolocation is checked against the 9 km centres
    with h5py.File(path, "r+") as f:
        lat = f["Soil_Moisture_Retrieval_Data_AM/latitude"]
        lat[401, 2801] = lat[401, 2801] + 0.01
    with pytest.raises(GeolocationError, match=r"row 401, col 2801.*9 km"):
        read_spl3smp_e(path, region)
    # a 36 km granule is not SPL3SMP_E
    small = write_spl3smp(tmp_path / "g.h5", DATE, SmapPass(np.full((406, 964), 0.2, np.float32)), metadata=False)
    with pytest.raises(WrongProductError, match=r"shape \(406, 964\) is the global 36 km grid of SPL3SMP.*read_spl3smp reads SPL3SMP"):
        read_spl3smp_e(small, region)


def test_subset_outside_the_region_and_unplaceable_subsets(tmp_path):
    w = Window(100, 700, 5, 5)
    sm = _truth(np.arange(100, 105), np.arange(700, 705))
    far = write_smap_subset(tmp_path / "far.nc4", DATE, SmapPass(sm), row0=w.row0, col0=w.col0)
    with pytest.raises(NoOverlapError, match=rf"{re.escape(str(far))}: the file covers rows 100..104, cols 700..704 .* needs rows 10..11"):
        read_spl3smp(far, Region(10, 10, 2, 2))
    many = read_many([far], read_spl3smp, region=Region(10, 10, 2, 2))
    assert [(r.status, r.error) for r in many.report] == [("skipped", "NoOverlapError")]
    bare = write_smap_subset(tmp_path / "bare.nc4", DATE, SmapPass(sm), row0=100, col0=700, xy=False,
                             omit=("EASE_row_index", "EASE_column_index", "latitude", "longitude"))
    with pytest.raises(GeolocationError, match=rf"{re.escape(str(bare))}: arrays of shape \(5, 5\) .* no x/y"):
        read_spl3smp(bare, Region(100, 700, 2, 2))
    # indices that are not a window of the grid
    idx = write_smap_subset(tmp_path / "idx.nc4", DATE, SmapPass(sm), row0=100, col0=700, xy=False, omit=())
    with h5py.File(idx, "r+") as f:
        f["Soil_Moisture_Retrieval_Data_AM/EASE_column_index"][2, 3] = 1
    with pytest.raises(GeolocationError, match="do not make a window"):
        read_spl3smp(idx, Region(100, 700, 2, 2))
    # x/y off the cell centres
    off = write_smap_subset(tmp_path / "off.nc4", DATE, SmapPass(sm), row0=100, col0=700)
    with h5py.File(off, "r+") as f:
        f["Soil_Moisture_Retrieval_Data_AM/y"][...] += 5000.0
    with pytest.raises(GeolocationError, match=rf"{re.escape(str(off))}: y\[0\] .* not on this grid"):
        read_spl3smp(off, Region(100, 700, 2, 2))
    # x/y right but latitude off: the cells used are checked
    lat = write_smap_subset(tmp_path / "lat.nc4", DATE, SmapPass(sm), row0=100, col0=700)
    with h5py.File(lat, "r+") as f:
        f["Soil_Moisture_Retrieval_Data_AM/latitude"][1, 1] += 0.01
    with pytest.raises(GeolocationError, match=r"row 101, col 701"):
        read_spl3smp(lat, Region(100, 700, 2, 2))
    assert read_spl3smp(lat, Region(103, 703, 2, 2))[0].values[0, 0] == sm[3, 3]  # cells not used are not judged


def test_subset_date_from_its_own_content(tmp_path):
    sm = _truth(np.arange(100, 105), np.arange(700, 705))
    region = Region(100, 700, 5, 5)
    day = dt.date(2019, 8, 2)

    def subset(name, **kw):
        return write_smap_subset(tmp_path / name, day, SmapPass(sm, hour_utc=7.0), row0=100, col0=700, **kw)

    # the granule name in the root attributes (what OPeNDAP writes)
    p = subset("a.nc4", omit=("EASE_row_index", "EASE_column_index", "tb_time_seconds", "tb_time_utc"))
    assert read_spl3smp(p, region)[1] == day
    # the granule name in the history attribute alone
    with h5py.File(p, "r+") as f:
        del f.attrs["build_dmrpp_metadata.invocation"]
        f.attrs["history"] = np.bytes_("harmony: subset of SMAP_L3_SM_P_20190802_R19240_001.h5 by shapefile")
    assert read_spl3smp(p, region)[1] == day
    # the /Metadata of the subset
    p = subset("b.nc4", history=False, metadata=True, omit=("tb_time_seconds", "tb_time_utc"))
    assert read_spl3smp(p, region)[1] == day
    # the acquisition times: seconds, then the UTC strings
    p = subset("c.nc4", history=False, omit=("tb_time_utc",))
    assert read_spl3smp(p, region)[1] == day
    p = subset("d.nc4", history=False, omit=("tb_time_seconds",))
    assert read_spl3smp(p, region)[1] == day
    # a history naming another day than the metadata
    p = subset("e.nc4", metadata=True)
    with h5py.File(p, "r+") as f:
        f.attrs["build_dmrpp_metadata.invocation"] = np.bytes_("-f /DATA/SMAP_L3_SM_P_20190803_R19240_001.h5")
    with pytest.raises(InputDateError, match="2019-08-03"):
        read_spl3smp(p, region)
    # no date anywhere
    p = subset("f.nc4", history=False, omit=("tb_time_seconds", "tb_time_utc"))
    with pytest.raises(InputDateError, match=rf"{re.escape(str(p))}: no /Metadata.*keep the granule's original name"):
        read_spl3smp(p, region)


@pytest.mark.parametrize(
    "how, found",
    [
        ("shortName", "SPL4SMAU"),
        ("history", "SPL2SMP"),
        ("collection", "SPL4SMGP"),
        ("name", "SPL3SMP_E"),
        ("mapping", "9 km grid"),
    ],
)
def test_other_products_are_refused_by_name(tmp_path, how, found):
    sm = _truth(np.arange(100, 105), np.arange(700, 705))
    name = "SMAP_L3_SM_P_E_20150410_R19240_001.h5" if how == "name" else "download.nc4"
    p = write_smap_subset(tmp_path / name, DATE, SmapPass(sm), row0=100, col0=700, metadata=how == "shortName", history=False)
    with h5py.File(p, "r+") as f:
        if how == "shortName":
            f["Metadata/DatasetIdentification"].attrs["shortName"] = np.bytes_("SPL4SMAU")
        elif how == "history":
            f.attrs["history"] = np.bytes_("subset of SMAP_L2_SM_P_01234_D_20150410T061234_R19240_001.h5")
        elif how == "collection":
            f.attrs["history"] = np.bytes_("https://opendap.earthdata.nasa.gov/collections/C1/granules/SC:SPL4SMGP.007:1.dap.nc4")
        elif how == "mapping":
            f.move("EASE2_global_projection_36km", "EASE2_global_projection_9km")
    with pytest.raises(WrongProductError) as err:
        read_spl3smp(p, Region(100, 700, 2, 2))
    msg = str(err.value)
    assert msg.startswith(f"{p}: ") and found in msg and "read_spl3smp reads SPL3SMP (36 km) only" in msg
    assert "read_spl3smp_e reads SPL3SMP_E" in msg and "date" not in msg


def test_missing_overpass_group(tmp_path):
    sm = np.full((406, 964), np.nan, np.float32)
    sm[200, 500] = 0.25
    p = write_spl3smp(tmp_path / spl3smp_filename(DATE), DATE, None, SmapPass(sm, hour_utc=18.0))
    said = rf"{re.escape(str(p))}: no group Soil_Moisture_Retrieval_Data_AM .*groups present: Metadata, Soil_Moisture_Retrieval_Data_PM"
    with pytest.raises(MissingVariableError, match=said + ".*overpass: PM"):
        read_spl3smp(p, Region(199, 499, 3, 3))
    assert read_spl3smp(p, Region(199, 499, 3, 3), overpass="PM")[0].values[1, 1] == np.float32(0.25)
    am_only = write_spl3smp(tmp_path / "am.h5", DATE, SmapPass(sm))
    with pytest.raises(MissingVariableError, match="no group Soil_Moisture_Retrieval_Data_PM .*overpass: AM"):
        read_spl3smp(am_only, Region(199, 499, 3, 3), overpass="PM")
    neither = write_spl3smp(tmp_path / "neither.h5", DATE, None)
    with pytest.raises(WrongProductError, match=r"no group Soil_Moisture_Retrieval_Data_AM nor any other .*groups present: Metadata"):
        read_spl3smp(neither, GLOBE)


def test_subset_fixture_follows_the_real_subsets(tmp_path, shared_data):
    """The written subset's geolocation variables, grid mapping and x/y carry the real subsets' attributes."""
    internal = {"_Netcdf4Coordinates", "_Netcdf4Dimid", "dimensions", "DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "type", "coordinates"}
    for product, (name, grid, _) in REAL_SUBSETS.items():
        sm = _truth(np.arange(10), np.arange(12))
        p = write_smap_subset(tmp_path / f"{product}.nc4", DATE, SmapPass(sm), SmapPass(sm), row0=100, col0=200, product=product)
        km = "36km" if grid is EASE2_36KM else "9km"
        with h5py.File(shared_data / "smap" / name, "r") as real, h5py.File(p, "r") as ours:
            assert dict(ours[f"EASE2_global_projection_{km}"].attrs).keys() >= set(real[f"EASE2_global_projection_{km}"].attrs) - internal
            for k, v in real[f"EASE2_global_projection_{km}"].attrs.items():
                if k not in internal:
                    np.testing.assert_array_equal(ours[f"EASE2_global_projection_{km}"].attrs[k], v)
            for group, sfx in PASSES:
                for var in ("x", "y", f"latitude{sfx}", f"longitude{sfx}"):
                    r, o = real[group][var], ours[group][var]
                    assert o.dtype == r.dtype and o.ndim == r.ndim, var
                    for k, v in r.attrs.items():
                        if k not in internal:
                            if np.asarray(v).dtype.kind == "f" and np.isnan(v).all():
                                assert np.isnan(o.attrs[k]), (var, k)
                            elif k not in ("valid_min", "valid_max"):  # the DMR's values, not the subset's rounded ones
                                np.testing.assert_array_equal(o.attrs[k], v, err_msg=f"{var} {k}")
                assert ours[group][f"soil_moisture{sfx}"].dims[1][0] == ours[group]["x"]  # x/y are dimension scales
                assert ours[group]["y"].attrs["CLASS"] == b"DIMENSION_SCALE"
            assert _history_window(ours) == Window(100, 200, 10, 12)
