"""Precipitation readers (IMERG, CHIRPS, ERA5-Land) on fixtures in the real layouts, their
checks, and the remap to the 1 km grid (conservative keeps area means, bilinear is exact on
linear fields)."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from dsm.grid import CELL_1KM, Region, lonlat_to_xy
from dsm.ingest.base import (
    GeolocationError,
    InputDateError,
    MissingVariableError,
    NoOverlapError,
    WrongProductError,
)
from dsm.ingest.precip import (
    check_covers,
    local_utc_offset,
    read_chirps,
    read_era5land,
    read_imerg,
    read_precip,
    remap_to_region,
)
from dsm.testing.precip import (
    accumulate_since_00utc,
    chirps_nc_name,
    chirps_tif_name,
    imerg_filename,
    write_chirps_nc,
    write_chirps_tif,
    write_era5land_daily,
    write_era5land_hourly,
    write_imerg_day,
)

REGION = Region.around(-99.5, 40.0, 2, 2)  # Kansas: about 99.7-98.96 W, 39.40-40.13 N
DAY = dt.date(2016, 1, 1)


def grid(res: float, margin: int = 3, region: Region = REGION) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (lat north->south, lon west->east) of a global res-degree grid around the region."""
    lon0, lat0, lon1, lat1 = region.lonlat_bounds
    i0, i1 = math.floor(lat0 / res) - margin, math.ceil(lat1 / res) + margin
    j0, j1 = math.floor(lon0 / res) - margin, math.ceil(lon1 / res) + margin
    lat = np.round((np.arange(i1 - 1, i0 - 1, -1) + 0.5) * res, 4)
    lon = np.round((np.arange(j0, j1) + 0.5) * res, 4)
    return lat, lon


def field(lat: np.ndarray, lon: np.ndarray, seed: int = 0, scale: float = 20.0) -> np.ndarray:
    return (np.random.default_rng(seed).random((lat.size, lon.size)) * scale).astype(np.float32)


# -- IMERG ------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["V07", "V06"])
def test_imerg_values_units_date_and_lon_major_layout(tmp_path, version):
    lat, lon = grid(0.1)
    v = field(lat, lon)
    v[2, 5] = np.nan
    path = write_imerg_day(tmp_path / imerg_filename(DAY, f"{version}B"), DAY, lat, lon, v, version=version)
    name = "precipitation" if version == "V07" else "precipitationCal"
    with h5py.File(path, "r") as f:  # the real layout: (time, lon, lat), fill -9999.9, the product's units
        dims = [f[name].dims[i][0].name.split("/")[-1] for i in range(3)]
        assert dims == ["time", "lon", "lat"]
        assert str(f[name].attrs["units"]) == ("mm/day" if version == "V07" else "mm")
        assert np.isclose(f[name].attrs["_FillValue"][0], -9999.9)
        assert f[name][0, 5, 2] == np.float32(-9999.9)
        assert f["lon"].dtype == np.float32 and f[f"{name}_cnt"].dtype == np.int16
    da = read_imerg(path)
    assert da.dims == ("time", "lat", "lon") and da.name == "precip" and da.dtype == np.float32
    np.testing.assert_array_equal(da.values[0], v)  # NaN where the file has its fill value
    np.testing.assert_allclose(da.lat, lat)
    np.testing.assert_allclose(da.lon, lon)
    assert pd.Timestamp(da.time.values[0]) == pd.Timestamp(DAY)
    assert da.attrs["day"] == "UTC" and da.attrs["run"] == "final" and da.attrs["version"] == f"{version}B"
    # a bounding box reads only the cells around the region (two cells of margin)
    lon0, lat0, lon1, lat1 = REGION.lonlat_bounds
    sub = read_imerg(path, bbox=REGION.lonlat_bounds)
    keep_lat = (lat >= lat0 - 0.2) & (lat <= lat1 + 0.2)
    keep_lon = (lon >= lon0 - 0.2) & (lon <= lon1 + 0.2)
    assert sub.shape == (1, keep_lat.sum(), keep_lon.sum()) and sub.shape[1] < lat.size
    np.testing.assert_array_equal(sub.values[0], v[np.ix_(keep_lat, keep_lon)])


def test_imerg_dates_runs_and_wrong_products(tmp_path):
    lat, lon = grid(0.1)
    v = field(lat, lon)
    late = write_imerg_day(tmp_path / imerg_filename(DAY, "V07B", run="late"), DAY, lat, lon, v, run="late")
    assert read_imerg(late).attrs["run"] == "late"
    # BeginDate and the file name disagree
    other = tmp_path / imerg_filename(DAY + dt.timedelta(days=1))
    shutil.copy(late, other)
    with pytest.raises(InputDateError, match="disagrees with the file name"):
        read_imerg(other)
    # a half-hourly file, a CHIRPS file given to the IMERG reader, a file with no IMERG variable
    hhr = tmp_path / "3B-HHR.MS.MRG.3IMERG.20160101-S000000-E002959.0000.V07B.HDF5"
    shutil.copy(late, hhr)
    with pytest.raises(WrongProductError, match="half-hourly"):
        read_imerg(hhr)
    chirps = write_chirps_nc(tmp_path / chirps_nc_name(2016), [DAY], lat, lon, v[None])
    with pytest.raises(WrongProductError, match="'precip'.*not an IMERG file"):
        read_imerg(chirps)
    empty = tmp_path / imerg_filename(DAY, "V07C")
    xr.Dataset({"foo": (("lat",), lat)}, coords={"lat": lat}).to_netcdf(empty, engine="h5netcdf")
    with pytest.raises(MissingVariableError, match="precipitationCal"):
        read_imerg(empty)


@pytest.mark.parametrize("units, match", [("mm/hr", "rate"), ("kg m-2 s-1", "rate"), ("m", "mislabelled"),
                                          ("K", "not a precipitation depth")])
def test_units_that_are_not_a_daily_depth_are_refused(tmp_path, units, match):
    lat, lon = grid(0.1)
    path = write_imerg_day(tmp_path / imerg_filename(DAY), DAY, lat, lon, field(lat, lon), units=units)
    with pytest.raises(WrongProductError, match=match):
        read_imerg(path)


def test_negative_values_are_refused_and_rounding_noise_is_zeroed(tmp_path):
    lat, lon = grid(0.1)
    v = field(lat, lon)
    v[1, 1] = -3.0
    with pytest.raises(WrongProductError, match="negative"):
        read_imerg(write_imerg_day(tmp_path / imerg_filename(DAY), DAY, lat, lon, v))
    v[1, 1] = -5e-7
    da = read_imerg(write_imerg_day(tmp_path / imerg_filename(DAY, "V07C"), DAY, lat, lon, v))
    assert da.values[0, 1, 1] == 0.0


# -- CHIRPS -----------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_chirps_geotiff(tmp_path, gz):
    lat, lon = grid(0.05)
    v = field(lat, lon, 1)
    v[0, :3] = np.nan
    path = write_chirps_tif(tmp_path / chirps_tif_name(DAY), lat, lon, v, gz=gz)
    assert path.name.endswith(".tif.gz" if gz else ".tif")
    da = read_chirps(path)
    np.testing.assert_array_equal(da.values[0], v)
    np.testing.assert_allclose(da.lat, lat)
    np.testing.assert_allclose(da.lon, lon)
    assert pd.Timestamp(da.time.values[0]) == pd.Timestamp(DAY) and da.attrs["res_deg"] == pytest.approx((0.05, 0.05))
    nodate = tmp_path / f"chirps-latest{'.tif.gz' if gz else '.tif'}"
    shutil.copy(path, nodate)
    with pytest.raises(InputDateError, match="YYYY.MM.DD"):
        read_chirps(nodate)


def test_chirps_netcdf_many_days(tmp_path):
    lat, lon = grid(0.05)
    days = [DAY + dt.timedelta(days=k) for k in range(4)]
    v = np.stack([field(lat, lon, k) for k in range(4)])
    path = write_chirps_nc(tmp_path / chirps_nc_name(2016), days, lat, lon, v)
    with xr.open_dataset(path, engine="h5netcdf", decode_times=False) as ds:  # the real layout
        assert ds["precip"].dims == ("time", "latitude", "longitude") and ds["precip"].attrs["units"] == "mm/day"
        assert ds["time"].attrs["units"] == "days since 1980-1-1 0:0:0"
        assert ds["latitude"].values[0] < ds["latitude"].values[-1]  # south to north
    da = read_chirps(path, days=[days[3], days[1], dt.date(2017, 1, 1)])
    assert [pd.Timestamp(t).date() for t in da.time.values] == [days[1], days[3]]
    np.testing.assert_allclose(da.values, v[[1, 3]], rtol=1e-6)
    assert da.lat.values[0] > da.lat.values[-1]  # normalised north to south
    both = read_precip("chirps", [path], bbox=REGION.lonlat_bounds)
    assert both.sizes["time"] == 4 and both.sizes["lat"] < lat.size


def test_chirps_netcdf_in_m_is_refused(tmp_path):
    lat, lon = grid(0.05)
    path = write_chirps_nc(tmp_path / chirps_nc_name(2016), [DAY], lat, lon, field(lat, lon)[None] / 1000, units="m")
    with pytest.raises(WrongProductError, match="not CHIRPS's"):
        read_chirps(path)


# -- ERA5-Land --------------------------------------------------------------------------
def _hours(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="h")


def _local_sums(times: pd.DatetimeIndex, amounts_m: np.ndarray, offset: int) -> dict[dt.date, np.ndarray]:
    """Independent local-day sums (mm) of the hours ending at ``times``; complete days only."""
    out: dict[dt.date, list[np.ndarray]] = {}
    for t, a in zip(times, amounts_m):
        start_local = t - pd.Timedelta(hours=1) + pd.Timedelta(hours=offset)  # the hour's start, local time
        out.setdefault(start_local.date(), []).append(a)
    return {d: 1000 * np.sum(v, axis=0) for d, v in out.items() if len(v) == 24}


@pytest.mark.parametrize("layout", ["new", "old"])
def test_era5land_hourly_summed_into_local_days_across_the_day_boundary(tmp_path, layout):
    lat, lon = grid(0.1)
    times = _hours("2016-01-01 00:00", "2016-01-04 00:00")
    rng = np.random.default_rng(3)
    amounts = rng.random((times.size, lat.size, lon.size)) * 2e-4  # m per hour
    # a storm at 18-22 UTC on Jan 1: Jan 2 in UTC+8 (02-06 local), Jan 1 in UTC
    storm = (times > pd.Timestamp("2016-01-01 18:00")) & (times <= pd.Timestamp("2016-01-01 22:00"))
    amounts[storm] += 0.01
    amounts[:, 0, 0] = np.nan
    tp = accumulate_since_00utc(times, amounts)
    path = write_era5land_hourly(tmp_path / f"era5land_{layout}.nc", times, lat, lon, tp, layout=layout)
    with xr.open_dataset(path, decode_times=False, mask_and_scale=False,
                         engine="h5netcdf" if layout == "new" else "scipy") as ds:
        assert ds["tp"].attrs["units"] == "m"
        if layout == "old":
            assert ds["tp"].dtype == np.int16 and ds["time"].attrs["units"].startswith("hours since 1900")
        else:
            assert "valid_time" in ds["tp"].dims and {"number", "expver"} <= set(ds.coords)
    atol = 1e-3 if layout == "new" else 0.01  # the old CDS packs int16
    for offset, label in ((8, "UTC+08:00"), (0, "UTC"), (-5, "UTC-05:00")):
        da = read_era5land(path, offset)
        assert da.attrs["day"] == label and da.dims == ("time", "lat", "lon")
        expect = _local_sums(times, amounts, offset)
        got = {pd.Timestamp(t).date(): da.values[k] for k, t in enumerate(da.time.values)}
        for d, a in got.items():
            if d in expect:
                np.testing.assert_allclose(a, expect[d], atol=atol, equal_nan=True)
                assert np.isnan(a[0, 0]) and np.isfinite(a[1:, 1:]).all()
            else:  # a day without all 24 hours is NaN, never a partial sum
                assert np.isnan(a).all(), (offset, d)
        assert set(expect) <= set(got)
    storm_mm = 4 * 10.0  # hours ending 19-22 UTC
    by_day = {o: read_era5land(path, o) for o in (0, 8)}
    assert by_day[0].sel(time="2016-01-01").values[1, 1] > storm_mm  # the UTC day
    assert by_day[0].sel(time="2016-01-02").values[1, 1] < storm_mm
    assert by_day[8].sel(time="2016-01-02").values[1, 1] > storm_mm  # 02-06 local time on Jan 2
    assert by_day[8].sel(time="2016-01-03").values[1, 1] < storm_mm
    assert np.isnan(by_day[8].sel(time="2016-01-01").values).all()  # starts before the file's first hour


def test_era5land_day_from_two_files(tmp_path):
    lat, lon = grid(0.1)
    times = _hours("2016-01-31 00:00", "2016-02-02 00:00")
    amounts = np.random.default_rng(4).random((times.size, lat.size, lon.size)) * 3e-4
    tp = accumulate_since_00utc(times, amounts)
    cut = times < pd.Timestamp("2016-02-01 00:00")  # monthly files: January ends at 23 UTC
    upto = times <= pd.Timestamp("2016-02-01 00:00")  # ... or at 00 UTC: an hour given by both files
    f1 = write_era5land_hourly(tmp_path / "jan.nc", times[upto], lat, lon, tp[upto])
    f2 = write_era5land_hourly(tmp_path / "feb.nc", times[~cut], lat, lon, tp[~cut])
    expect = _local_sums(times, amounts, 8)
    feb1 = read_era5land([f1, f2], 8, days=[dt.date(2016, 2, 1)])
    np.testing.assert_allclose(feb1.values[0], expect[dt.date(2016, 2, 1)], atol=1e-3)
    alone = read_era5land(f2, 8, days=[dt.date(2016, 2, 1)])
    assert np.isnan(alone.values).all()  # needs January's last hours: not silently summed


def test_era5land_daily_sums_and_bad_files(tmp_path):
    lat, lon = grid(0.1)
    days = [DAY, DAY + dt.timedelta(days=1)]
    tp = np.random.default_rng(5).random((2, lat.size, lon.size)) * 0.02  # m per day
    da = read_era5land(write_era5land_daily(tmp_path / "daily.nc", days, lat, lon, tp), 8)
    np.testing.assert_allclose(da.values, tp * 1000, rtol=1e-6)
    assert [pd.Timestamp(t).date() for t in da.time.values] == days and "as delivered" in da.attrs["day"]
    # mm stored in a file that says m: a thousand times too much
    with pytest.raises(WrongProductError, match="mislabelled"):
        read_era5land(write_era5land_daily(tmp_path / "mm_as_m.nc", days, lat, lon, tp * 1000), 0)
    # hourly amounts (ERA5 single levels) instead of accumulations since 00 UTC
    times = _hours("2016-01-01 00:00", "2016-01-02 00:00")
    hourly = np.random.default_rng(6).random((times.size, lat.size, lon.size)) * 1e-3
    with pytest.raises(WrongProductError, match="not accumulated since 00 UTC"):
        read_era5land(write_era5land_hourly(tmp_path / "era5.nc", times, lat, lon, hourly), 0)
    with pytest.raises(WrongProductError, match="rate"):
        read_era5land(write_era5land_hourly(tmp_path / "rate.nc", times, lat, lon, hourly, units="m s**-1"), 0)
    with pytest.raises(WrongProductError, match="not an ERA5-Land file"):
        read_era5land(write_imerg_day(tmp_path / imerg_filename(DAY), DAY, lat, lon, field(lat, lon)), 0)
    xr.Dataset({"t2m": (("latitude",), lat)}, coords={"latitude": lat}).to_netcdf(tmp_path / "t2m.nc", engine="h5netcdf")
    with pytest.raises(MissingVariableError, match="'tp'"):
        read_era5land(tmp_path / "t2m.nc", 0)


# -- coverage, offsets --------------------------------------------------------------------
def test_check_covers(tmp_path):
    lat, lon = grid(0.1)
    da = read_imerg(write_imerg_day(tmp_path / imerg_filename(DAY), DAY, lat, lon, field(lat, lon)))
    check_covers(da, REGION, "f")
    check_covers(read_imerg(tmp_path / imerg_filename(DAY), bbox=REGION.lonlat_bounds), REGION, "f")
    with pytest.raises(GeolocationError, match="covers only part"):
        check_covers(da.isel(lon=slice(0, 8)), REGION, "f")
    far = Region.around(10.0, 45.0, 1, 1)
    with pytest.raises(NoOverlapError, match="does not touch"):
        check_covers(da, far, "f")
    with pytest.raises(NoOverlapError):
        check_covers(read_imerg(tmp_path / imerg_filename(DAY), bbox=far.lonlat_bounds), far, "f")
    # 0..360 longitudes are the same place
    shifted = da.assign_coords(lon=da.lon.values + 360.0)
    check_covers(shifted, REGION, "f")
    assert local_utc_offset(REGION) == -7 and local_utc_offset(Region.around(116.4, 39.9, 1, 1)) == 8


# -- remap ------------------------------------------------------------------------------
def _da(values: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> xr.DataArray:
    v = values if values.ndim == 3 else values[None]
    return xr.DataArray(v, dims=("time", "lat", "lon"),
                        coords={"time": pd.date_range("2016-01-01", periods=v.shape[0]), "lat": lat, "lon": lon})


def _cell_areas(lat: np.ndarray, lon: np.ndarray, res: float, region: Region) -> np.ndarray:
    """Area (m2) of each source cell inside the region, from the WGS 84 authalic formula (no EASE code)."""
    a, e = 6378137.0, 0.0818191908426215

    def q(phi: np.ndarray) -> np.ndarray:
        s = np.sin(np.radians(phi))
        return (1 - e**2) * (s / (1 - e**2 * s**2) - np.log((1 - e * s) / (1 + e * s)) / (2 * e))

    lon0, lat0, lon1, lat1 = region.lonlat_bounds
    s = np.clip(lat - res / 2, lat0, lat1)
    n = np.clip(lat + res / 2, lat0, lat1)
    w = np.clip(lon - res / 2, lon0, lon1)
    east = np.clip(lon + res / 2, lon0, lon1)
    return (a**2 / 2 * (q(n) - q(s)))[:, None] * np.radians(east - w)[None, :]


@pytest.mark.parametrize("res", [0.1, 0.05, 0.25])
def test_conservative_remap_preserves_area_means(res):
    lat, lon = grid(res)
    v = field(lat, lon, 7).astype(np.float64)
    out = remap_to_region(_da(v, lat, lon), REGION, "conservative")
    assert out.shape == (1, *REGION.fine_shape) and out.dtype == np.float32 and np.isfinite(out).all()
    # the whole region: pixel sum x pixel area = source cells x their area inside the region
    areas = _cell_areas(lat, lon, res, REGION)
    np.testing.assert_allclose(out[0].sum(dtype=np.float64) * CELL_1KM**2, (v * areas).sum(), rtol=1e-5)
    # a block of source cells: the mean of the pixels inside it equals the area-weighted block mean
    lon0, lat0, lon1, lat1 = REGION.lonlat_bounds
    full_lat = np.flatnonzero((lat + res / 2 <= lat1) & (lat - res / 2 >= lat0))
    full_lon = np.flatnonzero((lon - res / 2 >= lon0) & (lon + res / 2 <= lon1))
    nb = min(4, full_lat.size, full_lon.size)
    assert nb >= 2
    i0, j0 = full_lat[0], full_lon[0]
    blk_lat, blk_lon = lat[i0:i0 + nb], lon[j0:j0 + nb]
    y_n = lonlat_to_xy(0.0, blk_lat[0] + res / 2)[1]
    y_s = lonlat_to_xy(0.0, blk_lat[-1] - res / 2)[1]
    x_w = lonlat_to_xy(blk_lon[0] - res / 2, 0.0)[0]
    x_e = lonlat_to_xy(blk_lon[-1] + res / 2, 0.0)[0]
    ys, xs = REGION.fine_y, REGION.fine_x
    rows = (ys + CELL_1KM / 2 <= y_n) & (ys - CELL_1KM / 2 >= y_s)
    cols = (xs - CELL_1KM / 2 >= x_w) & (xs + CELL_1KM / 2 <= x_e)
    inside = out[0][np.ix_(rows, cols)].astype(np.float64)
    blk = v[i0:i0 + nb, j0:j0 + nb]
    w = _cell_areas(blk_lat, blk_lon, res, Region(0, 0, 406, 964))
    edge = 2 * CELL_1KM * ((x_e - x_w) + (y_n - y_s)) / ((x_e - x_w) * (y_n - y_s))  # pixels missing at the edges
    assert abs(inside.mean() - (blk * w).sum() / w.sum()) <= edge * (blk.max() - blk.min()) + 1e-6
    # constant fields stay constant, and a NaN cell spreads to the pixels it touches, no further
    const = remap_to_region(_da(np.full_like(v, 3.5), lat, lon), REGION)
    np.testing.assert_allclose(const, 3.5, rtol=1e-6)
    holes = v.copy()
    holes[i0, j0] = np.nan
    out_h = remap_to_region(_da(holes, lat, lon), REGION)
    touched = np.isnan(out_h[0])
    assert touched.any() and not touched.all()
    np.testing.assert_array_equal(out_h[0][~touched], out[0][~touched])


def test_bilinear_is_exact_on_linear_fields_inside_and_refuses_unknown_methods():
    lat, lon = grid(0.1)
    lin = 2.0 + 3.0 * (lon[None, :] + 100) + 5.0 * (lat[:, None] - 40)
    out = remap_to_region(_da(np.stack([lin, 2 * lin]), lat, lon), REGION, "bilinear")
    expect = 2.0 + 3.0 * (REGION.fine_lon[None, :] + 100) + 5.0 * (REGION.fine_lat[:, None] - 40)
    np.testing.assert_allclose(out[0], expect, rtol=1e-5)
    np.testing.assert_allclose(out[1], 2 * expect, rtol=1e-5)
    # cell order in the input does not matter (south-to-north latitudes, 0..360 longitudes)
    flipped = _da(lin[::-1], lat[::-1], lon)
    np.testing.assert_allclose(remap_to_region(flipped, REGION, "bilinear")[0], out[0], rtol=1e-6)
    east = _da(lin, lat, lon + 360.0)
    np.testing.assert_allclose(remap_to_region(east, REGION, "conservative"),
                               remap_to_region(_da(lin, lat, lon), REGION, "conservative"), rtol=1e-6)
    # outside the grid: NaN
    part = remap_to_region(_da(lin[:, :8], lat, lon[:8]), REGION, "bilinear")
    assert np.isnan(part[0][:, -1]).all() and np.isfinite(part[0][:, 0]).all()
    with pytest.raises(ValueError, match="conservative"):
        remap_to_region(_da(lin, lat, lon), REGION, "nearest")  # type: ignore[arg-type]


def test_remap_of_a_reader_field_matches_its_cells(tmp_path):
    """The end of the chain: an IMERG file remapped; each pixel lies within its cells' range."""
    lat, lon = grid(0.1)
    v = field(lat, lon, 9)
    da = read_imerg(write_imerg_day(tmp_path / imerg_filename(DAY), DAY, lat, lon, v), bbox=REGION.lonlat_bounds)
    out = remap_to_region(da, REGION)
    assert np.isfinite(out).all()
    assert out.min() >= v.min() - 1e-4 and out.max() <= v.max() + 1e-4
    # every pixel's value is a mean of the cells holding its corners
    lat_c, lon_c = REGION.fine_lat, REGION.fine_lon
    r = np.searchsorted(-lat, -lat_c) - 1
    c = np.searchsorted(lon, lon_c) - 1
    lo = np.minimum.reduce([v[np.ix_(r + a, c + b)] for a in (0, 1) for b in (0, 1)])
    hi = np.maximum.reduce([v[np.ix_(r + a, c + b)] for a in (0, 1) for b in (0, 1)])
    assert (out[0] >= lo - 1e-4).all() and (out[0] <= hi + 1e-4).all()


def test_time_order_and_path_types(tmp_path):
    lat, lon = grid(0.1)
    a = write_imerg_day(tmp_path / imerg_filename(DAY + dt.timedelta(days=1)), DAY + dt.timedelta(days=1), lat, lon,
                        field(lat, lon, 1))
    b = write_imerg_day(tmp_path / imerg_filename(DAY), DAY, lat, lon, field(lat, lon, 2))
    both = read_precip("imerg", [str(a), Path(b)])
    assert [pd.Timestamp(t).date() for t in both.time.values] == [DAY, DAY + dt.timedelta(days=1)]
