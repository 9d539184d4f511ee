"""The report's mean maps kept current: a run redoes the months, years and days of the year whose
days changed, and the store is then the same as one made from scratch."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from dsm import analysis, ledger, mean_maps, products, store
from dsm.cube import Layout
from dsm.grid import Region
from dsm.storeref import StoreRef
from dsm.testing.validation import record_days_done

REGION = Region(74, 772, 4, 4)  # 144 x 144 pixels: 4 spatial chunks of 72
START = dt.date(2016, 12, 20)


def _day_values(day: pd.Timestamp, shape: tuple[int, int]) -> np.ndarray:
    """A day's map, the same whatever store holds it (seeded by the day), with missing pixels."""
    rng = np.random.default_rng(day.toordinal())
    sm = rng.uniform(0.02, 0.45, shape).astype(np.float32)
    sm[rng.random(shape) < 0.15] = np.nan
    return sm


def _products(path, end: dt.date, done_until: dt.date) -> StoreRef:
    """A products store from START to ``end``, every day written, those up to ``done_until``
    recorded done with the digest of their stored ``sm``."""
    ref = StoreRef(str(path))
    products.create_products(ref, Layout(REGION, START, end, 72, 8), 0.9)
    out = products.open_products(ref)
    times = pd.DatetimeIndex(out["time"].values)
    sm = np.stack([_day_values(t, (out.sizes["y"], out.sizes["x"])) for t in times])
    part = xr.Dataset({"sm": (("time", "y", "x"), sm)}, coords={"time": out["time"].values, "y": out["y"].values,
                                                                 "x": out["x"].values})
    store.write_region(ref, part, out)
    record_days_done(ref, [str(t.date()) for t in times if t.date() <= done_until])
    return ref


def _update(ref: StoreRef, dest: StoreRef) -> mean_maps.MeansPlan:
    plan, job = mean_maps.means_update(ref, dest)
    if job is not None:
        job.compute()
    return plan


def _same(a: StoreRef, b: StoreRef) -> None:
    """Two mean maps stores hold the same coordinates, values (bit for bit) and days record."""
    x, y = (xr.open_zarr(s.url, consolidated=False).load() for s in (a, b))
    assert set(x.variables) == set(y.variables)
    for name in x.variables:
        assert x[name].dtype == y[name].dtype
        np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=str(name))
    assert x.attrs[mean_maps.DAYS_ATTR] == y.attrs[mean_maps.DAYS_ATTR]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Products from 2016-12-20 to 2017-01-25, done to 2017-01-20, and their mean maps."""
    root = tmp_path_factory.mktemp("mean_maps")
    ref = _products(root / "sm.zarr", dt.date(2017, 1, 25), dt.date(2017, 1, 20))
    means = StoreRef(str(root / "means.zarr"))
    plan = _update(ref, means)
    return root, ref, means, plan


def test_the_mean_maps_are_the_means_of_the_days_done(made):
    root, ref, means, plan = made
    assert plan.rebuild and plan.months == [0, 1] and plan.years == [0, 1] and len(plan.doys) == 366
    ds = products.open_products(ref)
    done = set(ledger.read(ref).done)
    sm = ds["sm"].where(xr.DataArray([str(t)[:10] in done for t in ds["time"].values], dims="time"))
    got = xr.open_zarr(means.url, consolidated=False).load()
    for name, want in (("sm_monthly", analysis.monthly_means(sm)), ("sm_annual", analysis.annual_means(sm))):
        assert list(got[name][got[name].dims[0]].values) == list(want[want.dims[0]].values)
        np.testing.assert_allclose(got[name].values, want.values, rtol=1e-6, err_msg=name)  # NaN where NaN
    clim = analysis.daily_climatology(sm.dropna("time", how="all"))
    np.testing.assert_allclose(got["sm_daily_mean"].sel(dayofyear=clim["dayofyear"]).values, clim.values, rtol=1e-6)
    others = np.setdiff1d(mean_maps.DOY, clim["dayofyear"].values)
    assert np.isnan(got["sm_daily_mean"].sel(dayofyear=others).values).all()
    regional = analysis.regional_means(got["sm_daily_mean"])
    np.testing.assert_allclose(got["sm_daily_mean_regional"].values, regional.values, rtol=1e-12)
    assert got["sm_monthly"].attrs["units"] == "m3 m-3"


def test_a_daily_run_redoes_its_month_year_and_day_of_year_only_and_equals_a_store_made_anew(made, tmp_path):
    _, made_ref, made_means, _ = made
    ref, means = StoreRef(str(tmp_path / "sm.zarr")), StoreRef(str(tmp_path / "means.zarr"))
    shutil.copytree(made_ref.url, ref.url)
    shutil.copytree(made_means.url, means.url)
    assert _update(ref, means).nothing  # nothing changed: nothing planned, nothing written

    record_days_done(ref, ["2017-01-21"])  # the next day predicted
    plan = _update(ref, means)
    assert (plan.months, plan.years, plan.doys, plan.rebuild) == ([1], [1], [20], False)
    anew = StoreRef(str(tmp_path / "anew.zarr"))
    _update(ref, anew)
    _same(means, anew)

    # a day redone with other values (another digest): its month, year and day of the year
    raw = xr.open_zarr(ref.url, consolidated=False, mask_and_scale=False)["sm"]
    i = int(np.flatnonzero(raw["time"].values == np.datetime64("2016-12-25"))[0])
    codes = raw[i].values
    array = zarr.open_array(ref.join("sm").url, mode="r+")
    array[i] = np.where(codes != products.FILL, codes + 7, codes)
    record_days_done(ref, ["2016-12-25"])
    plan = _update(ref, means)
    assert (plan.months, plan.years, plan.doys) == ([0], [0], [359])  # 2016 is a leap year
    shutil.rmtree(anew.url)
    _update(ref, anew)
    _same(means, anew)

    ledger.write_days(ref, {"2017-01-03": ledger.DayRecord()})  # a day taken back
    plan = _update(ref, means)
    assert (plan.months, plan.years, plan.doys) == ([1], [1], [2])
    shutil.rmtree(anew.url)
    _update(ref, anew)
    _same(means, anew)


def test_an_extended_products_store_grows_the_month_and_year_axes(made, tmp_path):
    _, _, made_means, _ = made
    ref = _products(tmp_path / "sm.zarr", dt.date(2017, 3, 10), dt.date(2017, 2, 3))  # the same days, and more
    means = StoreRef(str(tmp_path / "means.zarr"))
    shutil.copytree(made_means.url, means.url)
    plan = _update(ref, means)
    assert not plan.rebuild and plan.months == [1, 2, 3] and plan.years == [1]
    assert plan.doys == list(range(20, 34))  # 2017-01-21 .. 2017-02-03
    got = xr.open_zarr(means.url, consolidated=False)
    assert [str(m)[:10] for m in got["month"].values] == ["2016-12-01", "2017-01-01", "2017-02-01", "2017-03-01"]
    anew = StoreRef(str(tmp_path / "anew.zarr"))
    _update(ref, anew)
    _same(means, anew)
    record_days_done(ref, ["2017-02-04"])  # the annual mean adds the sums kept of the year's other months
    assert _update(ref, means).months == [2]
    shutil.rmtree(anew.url)
    _update(ref, anew)
    _same(means, anew)


def test_a_store_of_another_layout_or_without_the_record_is_made_anew(made, tmp_path):
    _, made_ref, made_means, _ = made
    means = StoreRef(str(tmp_path / "means.zarr"))
    shutil.copytree(made_means.url, means.url)
    group = zarr.open_group(means.url, mode="r+")
    del group.attrs[mean_maps.DAYS_ATTR]  # a store made before the record: which days it holds is unknown
    plan = _update(made_ref, means)
    assert plan.rebuild
    _same(means, made_means)
    times = pd.DatetimeIndex(["2016-12-20", "2016-12-21"])
    same = {"layout": {"shape": [144, 144]}, "days": {}, "n_months": 1, "n_years": 1}
    axes = mean_maps.group_axes(times)
    assert not mean_maps.plan(*axes, {"shape": [144, 144]}, {}, same).rebuild
    assert mean_maps.plan(*axes, {"shape": [72, 144]}, {}, same).rebuild  # another grid
