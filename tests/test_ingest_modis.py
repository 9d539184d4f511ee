"""MODIS readers on the real tiles (expectations from the raw SDS with pyhdf) and on fixtures."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pytest
from pyhdf.SD import SD
from pyproj import Transformer

from dsm.grid import Region, lonlat_to_xy, xy_to_lonlat
from dsm.ingest import (
    EmptyGranuleError,
    GeolocationError,
    InputDateError,
    MissingVariableError,
    QCRule,
    UnreadableFileError,
    WrongProductError,
    modis_to_region,
    read_many,
    read_modis_tile,
)
from dsm.ingest.reproject import SINUSOIDAL_PROJ4
from dsm.testing.granules import modis_filename, write_modis_tile

MOD11 = "MOD11A1.A2021227.h11v05.061.2021228105320.hdf"
MOD13 = "MOD13A2.A2021225.h11v06.061.2021320163717.hdf"
MOD09 = "MOD09A1.A2017193.h18v04.006.2017202035302.hdf"
X0, Y0, T = -20015109.354, 10007554.677, 1111950.5197


def raw(path, name):
    sd = SD(str(path))
    try:
        s = sd.select(name)
        return s[:], s.attributes()
    finally:
        sd.end()


@pytest.fixture(scope="module")
def modis(shared_data):
    return shared_data / "modis"


def test_mod11a1_lst_matches_sds_and_qc(modis):
    ds, date = read_modis_tile(modis / MOD11)
    lst, a = raw(modis / MOD11, "LST_Day_1km")
    qc, _ = raw(modis / MOD11, "QC_Day")
    good = (lst != 0) & ((qc & 0b11) == 0)
    kelvin = lst[good] * 0.02
    out = ds["lst"].values
    assert date == dt.date(2021, 8, 15) and ds.attrs["tile"] == "h11v05"
    assert int(np.count_nonzero(~np.isnan(out))) == int(good.sum()) == 40077
    assert np.nanmin(out) == pytest.approx(kelvin.min(), abs=1e-3)
    assert np.nanmax(out) == pytest.approx(kelvin.max(), abs=1e-3)
    np.testing.assert_array_equal(np.isnan(out), ~good)
    assert 250 < np.nanmin(out) and np.nanmax(out) < 340  # August, mid-latitudes: physical
    assert ds["lst"].attrs["units"] == "K"
    # QC is configurable: accepting "other quality" (01) too adds those pixels
    ds2, _ = read_modis_tile(modis / MOD11, qc={"QC_Day": [QCRule(0, 2, (0, 1))]})
    assert int(np.count_nonzero(~np.isnan(ds2["lst"].values))) == int(((lst != 0) & ((qc & 3) <= 1)).sum())


def test_mod13a2_ndvi_evi_and_tile_corners(modis):
    ds, date = read_modis_tile(modis / MOD13)
    assert date == dt.date(2021, 8, 13) and ds.attrs["tile"] == "h11v06"
    rel, _ = raw(modis / MOD13, "1 km 16 days pixel reliability")
    for var, sds in (("ndvi", "1 km 16 days NDVI"), ("evi", "1 km 16 days EVI")):
        r, a = raw(modis / MOD13, sds)
        assert a["scale_factor"] == 10000.0 and a["_FillValue"] == -3000
        keep = (r != -3000) & np.isin(rel, (0, 1))
        out = ds[var].values
        np.testing.assert_array_equal(~np.isnan(out), keep)
        np.testing.assert_allclose(out[keep], r[keep] / 10000.0, rtol=0, atol=1e-6)
        assert -0.2 <= np.nanmin(out) and np.nanmax(out) <= 1.0
    # pixel corners from StructMetadata match the published tiling
    px = T / 1200
    assert ds.x.values[0] - px / 2 == pytest.approx(X0 + 11 * T, abs=0.01)
    assert ds.y.values[0] + px / 2 == pytest.approx(Y0 - 6 * T, abs=0.01)
    assert ds.x.values[-1] + px / 2 == pytest.approx(X0 + 12 * T, abs=0.01)
    assert ds.y.values[-1] - px / 2 == pytest.approx(Y0 - 7 * T, abs=0.01)


def _valid_region(ds, var, nrows=2, ncols=2):
    """A region around the densest block of valid pixels of a tile."""
    v = ~np.isnan(ds[var].values)
    blk = v[: v.shape[0] // 50 * 50, : v.shape[1] // 50 * 50]
    blk = blk.reshape(blk.shape[0] // 50, 50, blk.shape[1] // 50, 50).mean((1, 3))
    i, j = np.unravel_index(np.argmax(blk), blk.shape)
    lon, lat = Transformer.from_crs(SINUSOIDAL_PROJ4, "EPSG:4326", always_xy=True).transform(
        ds.x.values[j * 50 + 25], ds.y.values[i * 50 + 25]
    )
    return Region.around(float(lon), float(lat), nrows, ncols)


def test_known_pixels_land_in_the_right_1km_cells(modis):
    """Nearest resampling: each 1 km EASE cell holds the MODIS pixel containing its centre."""
    ds, _ = read_modis_tile(modis / MOD13)
    region = _valid_region(ds, "ndvi")
    out, date, many = modis_to_region([modis / MOD13], region)
    assert out["ndvi"].dims == ("y", "x") and out["ndvi"].shape == region.fine_shape
    # independent geometry: EASE centre -> lon/lat -> sinusoidal -> tile pixel (published tiling)
    xx, yy = np.meshgrid(region.fine_x, region.fine_y)
    lon, lat = xy_to_lonlat(xx.ravel(), yy.ravel())
    sx, sy = Transformer.from_crs("EPSG:4326", SINUSOIDAL_PROJ4, always_xy=True).transform(lon, lat)
    px = T / 1200
    col = np.floor((sx - (X0 + 11 * T)) / px).astype(int)
    row = np.floor(((Y0 - 6 * T) - sy) / px).astype(int)
    inside = (row >= 0) & (row < 1200) & (col >= 0) & (col < 1200)
    expect = np.full(row.shape, np.nan, np.float32)
    expect[inside] = ds["ndvi"].values[row[inside], col[inside]]
    got = out["ndvi"].values.ravel()
    assert np.count_nonzero(~np.isnan(expect)) > 300
    np.testing.assert_array_equal(got, expect)
    # and one known pixel, end to end: a valid NDVI pixel's centre falls in the 1 km cell
    # whose centre maps back to that same pixel
    k = int(np.flatnonzero(~np.isnan(expect))[len(np.flatnonzero(~np.isnan(expect))) // 2])
    r0, c0 = row[k], col[k]
    cx = X0 + 11 * T + (c0 + 0.5) * px
    cy = Y0 - 6 * T - (r0 + 0.5) * px
    plon, plat = Transformer.from_crs(SINUSOIDAL_PROJ4, "EPSG:4326", always_xy=True).transform(cx, cy)
    erow, ecol = region.pixel_of(plon, plat)
    raw_ndvi, _ = raw(modis / MOD13, "1 km 16 days NDVI")
    assert abs(int(erow) - k // region.fine_shape[1]) <= 1 and abs(int(ecol) - k % region.fine_shape[1]) <= 1
    assert out["ndvi"].values.ravel()[k] == pytest.approx(raw_ndvi[r0, c0] / 10000.0, abs=1e-6)


def test_mod09a1_indices_equal_the_formulas(modis):
    ds, date = read_modis_tile(modis / MOD09)
    assert date == dt.date(2017, 7, 12)
    b = {n: raw(modis / MOD09, f"sur_refl_b0{n}")[0] * 0.0001 for n in (2, 4, 6, 7)}
    state, _ = raw(modis / MOD09, "sur_refl_state_500m")
    clear = ((state & 0b11) == 0) & ((state & 0b100) == 0)
    for name, formula in (
        ("ndwi", (b[4] - b[2]) / (b[4] + b[2])),
        ("lswi", (b[2] - b[6]) / (b[2] + b[6])),
        ("nsdsi", (b[6] - b[7]) / b[6]),
    ):
        out = ds[name].values
        np.testing.assert_array_equal(~np.isnan(out), clear)
        np.testing.assert_allclose(out[clear], formula[clear], rtol=1e-5, atol=1e-6)
    # the geolocation of the 73 x 66 cut comes from its StructMetadata, on the tile's pixel grid
    px = T / 2400
    c0 = (ds.x.values[0] - px / 2 - (X0 + 18 * T)) / px
    r0 = ((Y0 - 4 * T) - (ds.y.values[0] + px / 2)) / px
    assert abs(c0 - round(c0)) < 1e-3 and abs(r0 - round(r0)) < 1e-3
    region = Region.around(*xy_to_lonlat(*_sinu_to_ease(ds.x.values[33], ds.y.values[36])), 1, 1)
    out, _, _ = modis_to_region([modis / MOD09], region)
    valid = out["nsdsi"].values[~np.isnan(out["nsdsi"].values)]
    assert valid.size > 500  # the cut is ~34 x 31 km: about that many 1 km pixels
    assert np.nanmin(ds["nsdsi"].values) <= valid.min() and valid.max() <= np.nanmax(ds["nsdsi"].values)


def _sinu_to_ease(x, y):
    lon, lat = Transformer.from_crs(SINUSOIDAL_PROJ4, "EPSG:4326", always_xy=True).transform(x, y)
    return lonlat_to_xy(lon, lat)


# -- fixtures of products without a real sample -----------------------------------------
def test_mod15a2h_and_mcd43a3_fixtures(tmp_path):
    date = dt.date(2020, 7, 11)
    rng = np.random.default_rng(0)
    shape = (240, 240)
    lai = np.round(rng.uniform(0, 6, shape), 1)
    fpar = np.round(rng.uniform(0, 1, shape), 2)
    qc = np.zeros(shape, np.uint8)
    qc[:10] = 0b1  # back-up algorithm
    qc[10:20] = 0b01000  # cloudy
    lai_raw = np.round(lai * 10).astype(np.uint8)
    lai_raw[20:25] = 253  # barren land-cover code: outside valid_range -> NaN
    p = write_modis_tile(
        tmp_path / modis_filename("MOD15A2H", date, 25, 5), "MOD15A2H", 25, 5, date,
        {"Lai_500m": lai_raw, "Fpar_500m": fpar, "FparLai_QC": qc}, row0=1000, col0=1200,
    )
    ds, d = read_modis_tile(p)
    assert d == date and ds.attrs["product"] == "MOD15A2H"
    assert np.isnan(ds["lai"].values[:25]).all() and np.isnan(ds["fpar"].values[:20]).all()
    np.testing.assert_allclose(ds["lai"].values[25:], lai[25:], atol=1e-5)
    np.testing.assert_allclose(ds["fpar"].values[20:], fpar[20:], atol=1e-5)
    a = SD(str(p)).select("Lai_500m").attributes()
    assert a["scale_factor"] == 0.1 and a["_FillValue"] == 255 and list(a["valid_range"]) == [0, 100]

    wsa = np.full((480, 480), 0.18)
    bsa = np.full((480, 480), 0.16)
    quality = np.zeros((480, 480), np.uint8)
    quality[:, :240] = 1  # magnitude inversion: kept by default
    quality[:100, :100] = 255  # fill
    p = write_modis_tile(
        tmp_path / modis_filename("MCD43A3", date, 25, 5), "MCD43A3", 25, 5, date,
        {"Albedo_WSA_shortwave": wsa, "Albedo_BSA_shortwave": bsa, "BRDF_Albedo_Band_Mandatory_Quality_shortwave": quality},
        row0=960, col0=960,
    )
    ds, d = read_modis_tile(p)
    assert d == date
    assert np.isnan(ds["albedo_wsa"].values[:100, :100]).all()
    assert np.nanmax(np.abs(ds["albedo_wsa"].values - 0.18)) < 1e-6
    strict, _ = read_modis_tile(p, qc={"BRDF_Albedo_Band_Mandatory_Quality_shortwave": [QCRule(0, 8, (0,))]})
    assert np.isnan(strict["albedo_bsa"].values[:, :240]).all() and not np.isnan(strict["albedo_bsa"].values[:, 240:]).any()
    # 500 m -> 1 km average of a constant field is that constant, with NaN only where no data
    lon, lat = Transformer.from_crs(SINUSOIDAL_PROJ4, "EPSG:4326", always_xy=True).transform(
        float(ds.x.values[300]), float(ds.y.values[300])
    )
    out, _, _ = modis_to_region([p], Region.around(float(lon), float(lat), 1, 1))
    assert np.nanmax(np.abs(out["albedo_bsa"].values - 0.16)) < 1e-5
    assert out["albedo_bsa"].attrs["resampling_to_1km"] == "average"


def test_mosaic_across_a_tile_edge(tmp_path):
    """Two adjacent MOD11A1 windows meeting at h11|h12: values on both sides, no seam."""
    date = dt.date(2021, 8, 15)
    left = np.full((200, 100), 300.0)
    right = np.full((200, 100), 310.0)
    qc = np.zeros((200, 100), np.uint8)
    p1 = write_modis_tile(tmp_path / modis_filename("MOD11A1", date, 11, 5), "MOD11A1", 11, 5, date,
                          {"LST_Day_1km": left, "QC_Day": qc}, row0=500, col0=1100)
    p2 = write_modis_tile(tmp_path / modis_filename("MOD11A1", date, 12, 5), "MOD11A1", 12, 5, date,
                          {"LST_Day_1km": right, "QC_Day": qc}, row0=500, col0=0)
    edge_x = X0 + 12 * T
    y = Y0 - 5 * T - 600 * T / 1200
    lon, lat = Transformer.from_crs(SINUSOIDAL_PROJ4, "EPSG:4326", always_xy=True).transform(edge_x, y)
    region = Region.around(float(lon), float(lat), 2, 2)
    out, d, many = modis_to_region([p1, p2], region)
    assert d == date and [r.status for r in many.report] == ["used", "used"]
    v = out["lst"].values
    xs, ys = np.meshgrid(region.fine_x, region.fine_y)
    plon, plat = xy_to_lonlat(xs, ys)
    sx, sy = Transformer.from_crs("EPSG:4326", SINUSOIDAL_PROJ4, always_xy=True).transform(plon, plat)
    west = (sx < edge_x) & (sx > edge_x - 90 * T / 1200)
    east = (sx > edge_x) & (sx < edge_x + 90 * T / 1200)
    rows_in = (sy < Y0 - 5 * T - 510 * T / 1200) & (sy > Y0 - 5 * T - 690 * T / 1200)
    assert (v[west & rows_in] == np.float32(300.0)).all() and (v[east & rows_in] == np.float32(310.0)).all()
    assert (west & rows_in).sum() > 100 and (east & rows_in).sum() > 100
    # a third tile far away is skipped, not failed
    p3 = write_modis_tile(tmp_path / modis_filename("MOD11A1", date, 20, 5), "MOD11A1", 20, 5, date,
                          {"LST_Day_1km": left, "QC_Day": qc}, row0=500, col0=1100)
    _, _, many = modis_to_region([p1, p3], region)
    assert [(r.status, r.error) for r in many.report] == [("used", ""), ("skipped", "NoOverlapError")]


# -- bad input ----------------------------------------------------------------------------
def test_corrupt_copies_are_reported_not_fatal(tmp_path, modis):
    paths = []
    for name in (MOD11, MOD13, MOD09):
        data = (modis / name).read_bytes()
        t = tmp_path / f"trunc_{name}"
        t.write_bytes(data[: len(data) // 2])
        f = tmp_path / f"flip_{name}"
        b = bytearray(data)
        for i in np.random.default_rng(0).integers(0, len(b), 200):  # crashes libhdf4 on MOD13A2
            b[i] ^= 0xFF
        f.write_bytes(bytes(b))
        paths += [t, f]
    many = read_many([modis / MOD11, *paths], read_modis_tile)
    report = {r.path: r for r in many.report}
    assert report[str(modis / MOD11)].status == "used"
    for p in paths:
        assert report[str(p)].status == "failed", (p, report[str(p)])
        assert report[str(p)].error in ("UnreadableFileError", "GeolocationError", "InputDateError")
    assert "crashed" in report[str(tmp_path / f"flip_{MOD13}")].reason
    assert "not a readable HDF4" in report[str(tmp_path / f"trunc_{MOD11}")].reason


def test_wrong_product_missing_sds_empty_and_bad_date(tmp_path, modis):
    with pytest.raises(WrongProductError, match="MOD13A2 was asked"):
        read_modis_tile(modis / MOD11, product="MOD13A2")
    renamed = tmp_path / MOD11.replace("MOD11A1", "MOD13A2")
    shutil.copy(modis / MOD11, renamed)
    with pytest.raises(WrongProductError, match="MODIS_Grid_Daily_1km_LST"):
        read_modis_tile(renamed)
    date = dt.date(2021, 8, 15)
    lst = np.full((50, 50), 300.0)
    p = write_modis_tile(tmp_path / modis_filename("MOD11A1", date, 11, 5), "MOD11A1", 11, 5, date,
                         {"LST_Day_1km": lst}, omit=("QC_Day",))
    with pytest.raises(MissingVariableError, match="QC_Day"):
        read_modis_tile(p)
    assert read_modis_tile(p, qc={"QC_Day": []})[0]["lst"].attrs["valid_pixels"] == 2500
    empty = write_modis_tile(tmp_path / modis_filename("MOD13A2", date, 11, 5), "MOD13A2", 11, 5, date,
                             {"1 km 16 days NDVI": np.full((50, 50), np.nan)}, shape=(50, 50))
    with pytest.raises(EmptyGranuleError, match="no valid MOD13A2"):
        read_modis_tile(empty)
    bad_date = tmp_path / "MOD11A1.A2021400.h11v05.061.2021228105320.hdf"
    shutil.copy(p, bad_date)
    with pytest.raises(InputDateError, match="A2021400"):
        read_modis_tile(bad_date, qc={"QC_Day": []})
    other_day = tmp_path / "MOD11A1.A2021228.h11v05.061.2021228105320.hdf"
    shutil.copy(p, other_day)
    with pytest.raises(InputDateError, match="disagrees"):
        read_modis_tile(other_day, qc={"QC_Day": []})
    geo = write_modis_tile(tmp_path / "MOD11A1.A2021227.h11v05.061.x.hdf", "MOD11A1", 11, 5, date,
                           {"LST_Day_1km": lst}, struct_metadata="GROUP=GridStructure\nEND_GROUP=GridStructure\n")
    with pytest.raises(GeolocationError, match="GRID_1"):
        read_modis_tile(geo)
    with pytest.raises(UnreadableFileError, match="does not exist"):
        read_modis_tile(tmp_path / "nothing.hdf")
    with pytest.raises(UnreadableFileError):
        read_modis_tile(modis.parent / "dem" / "N44W072.hgt", product="MOD11A1", isolate=False)


def test_fixture_layout_matches_the_real_tiles(tmp_path, modis):
    """SDS attributes written for MOD11A1/MOD13A2/MOD09A1 equal those of the real files."""
    date = dt.date(2021, 8, 15)
    for product, real, names in (
        ("MOD11A1", MOD11, ["LST_Day_1km"]),
        ("MOD13A2", MOD13, ["1 km 16 days NDVI", "1 km 16 days EVI", "1 km 16 days pixel reliability"]),
        ("MOD09A1", MOD09, ["sur_refl_b02", "sur_refl_b07", "sur_refl_state_500m"]),
    ):
        p = write_modis_tile(tmp_path / modis_filename(product, date, 11, 5), product, 11, 5, date, {}, shape=(4, 4))
        for n in names:
            got, want = raw(p, n)[1], raw(modis / real, n)[1]
            for key in ("_FillValue", "valid_range", "scale_factor", "add_offset", "long_name", "units"):
                if key in want:
                    assert got[key] == want[key], (product, n, key)
            assert raw(p, n)[0].dtype == raw(modis / real, n)[0].dtype


def _grid_text(xdim: str, ydim: str) -> str:
    return ("GROUP=GridStructure\n\tGROUP=GRID_1\n\t\tGridName=\"MODIS_Grid_Daily_1km_LST\"\n"
            f"\t\tXDim={xdim}\n\t\tYDim={ydim}\n"
            "\t\tUpperLeftPointMtrs=(-7783653.637667,4447802.078667)\n"
            "\t\tLowerRightMtrs=(-6671703.118000,3335851.559000)\n"
            "\t\tProjection=GCTP_SNSOID\n\t\tProjParams=(6371007.181000,0,0,0,0,0,0,0,0,0,0,0,0)\n"
            "\tEND_GROUP=GRID_1\nEND_GROUP=GridStructure\n")


def test_a_malformed_grid_size_is_a_geolocation_error_naming_the_file():
    from dsm.ingest.modis_metadata import parse_struct_metadata

    geom = parse_struct_metadata(_grid_text("1200", "1200"), "tile.hdf")
    assert (geom.xdim, geom.ydim) == (1200, 1200) and geom.pixel_size == pytest.approx(926.625433, abs=1e-5)
    for xdim in ("1200.0", "-1200", "twelve"):
        with pytest.raises(GeolocationError, match=r"tile\.hdf.*XDim="):
            parse_struct_metadata(_grid_text(xdim, "1200"), "tile.hdf")
