"""Analysis: partial correlation against an OLS computation, significance classes, importance
over periods, date vs spatial split, lazy mean maps, weather aggregation, regional subset."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from dsm import analysis
from dsm.errors import GridError
from dsm.grid import Region, lonlat_to_xy
from dsm.models.period_cards import period_card_from_dict
from dsm.storeref import StoreRef


def _ols_partial(x, y, z):
    """Independent route: correlation of residuals, and the OLS t-test of y ~ x + z."""
    Z = np.column_stack([np.ones_like(z), z])
    rx = x - Z @ np.linalg.lstsq(Z, x, rcond=None)[0]
    ry = y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0]
    r = np.corrcoef(rx, ry)[0, 1]
    X = np.column_stack([np.ones_like(x), x, z])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    df = len(y) - 3
    cov = (resid @ resid / df) * np.linalg.inv(X.T @ X)
    t = beta[1] / np.sqrt(cov[1, 1])
    return r, 2 * stats.t.sf(abs(t), df)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partial_correlation_equals_residual_correlation_and_ols_t_test(seed):
    rng = np.random.default_rng(seed)
    n = 24
    z = rng.normal(size=n)
    x = 0.6 * z + rng.normal(size=n)
    y = 0.3 * x - 0.5 * z + rng.normal(size=n)
    r, p, k = analysis.partial_correlation(x, y, z)
    r_ref, p_ref = _ols_partial(x, y, z)
    assert k == n
    assert r == pytest.approx(r_ref, abs=1e-12)
    assert p == pytest.approx(p_ref, rel=1e-9)


def test_partial_correlation_hand_case_missing_values_and_too_few():
    x = np.array([1.0, 2, 3, 4, 5, 6])
    y = np.array([2.0, 1, 4, 3, 6, 5])
    z = np.array([1.0, 1, 1, 2, 2, 2])
    c = np.corrcoef([x, y, z])
    expected = (c[0, 1] - c[0, 2] * c[1, 2]) / np.sqrt((1 - c[0, 2] ** 2) * (1 - c[1, 2] ** 2))
    r, p, n = analysis.partial_correlation(x, y, z)
    assert r == pytest.approx(expected, abs=1e-12) and n == 6
    t = expected * np.sqrt(3 / (1 - expected**2))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), 3), rel=1e-9)
    r2, _, n2 = analysis.partial_correlation(np.append(x, np.nan), np.append(y, 5.0), np.append(z, 1.0))
    assert n2 == 6 and r2 == pytest.approx(r)
    r3, p3, n3 = analysis.partial_correlation(x[:4], y[:4], z[:4])
    assert np.isnan(r3) and np.isnan(p3) and n3 == 4
    with pytest.raises(ValueError, match="min_n"):
        analysis.partial_correlation(x, y, z, min_n=3)


def test_significance_classes():
    assert analysis.significance_class(0.7, 0.01) == "significantly positive"
    assert analysis.significance_class(-0.7, 0.049) == "significantly negative"
    assert analysis.significance_class(0.7, 0.05) == "not significant"
    assert analysis.significance_class(-0.1, 0.6) == "not significant"
    assert analysis.significance_class(np.nan, np.nan) == "insufficient data"


def _card(period, rf, xgb, status="trained", spatial=None):
    models = {"mlr": {"train": {"r": 0.8, "rmse": 0.03}, "test": {"r": 0.7, "rmse": 0.04}},
              "rf": {"train": {"r": 0.9, "rmse": 0.02}, "test": {"r": 0.8, "rmse": 0.035}},
              "xgb": {"train": {"r": 0.95, "rmse": 0.01}, "test": {"r": 0.85, "rmse": 0.03}}}
    if status == "reused":
        return period_card_from_dict({"period": period, "status": status, "reused_from": "2016017"})
    card = {"period": period, "status": status, "predictors": ["lst", "albedo", "dem"], "chosen": "xgb",
            "models": models, "importance": {"rf_impurity": rf, "xgb_gain": xgb}}
    if spatial is not None:
        card["spatial_split"] = {"models": {m: {"test": {"r": 0.5, "rmse": v}} for m, v in spatial.items()}}
    return period_card_from_dict(card)


def test_importance_mean_and_std_over_trained_periods():
    cards = [
        _card("2016001", {"lst": 0.5, "albedo": 0.3, "dem": 0.2}, {"lst": 0.6, "albedo": 0.1, "dem": 0.3}),
        _card("2016017", {"lst": 0.3, "albedo": 0.5, "dem": 0.2}, {"lst": 0.2, "albedo": 0.5, "dem": 0.3}),
        _card("2016033", {"lst": 0.1, "albedo": 0.1, "dem": 0.8}, None),
        _card("2016049", {"lst": 1.0, "albedo": 0.0, "dem": 0.0}, {"lst": 1.0}, status="reused"),
    ]
    s = analysis.importance_summary(cards)
    assert list(s.index) == ["lst", "albedo", "dem"]  # sorted by mean XGB gain
    assert s.loc["lst", "rf_impurity_mean"] == pytest.approx(0.3)
    assert s.loc["lst", "rf_impurity_std"] == pytest.approx(np.std([0.5, 0.3, 0.1], ddof=1))
    assert s.loc["dem", "rf_impurity_n"] == 3
    assert s.loc["albedo", "xgb_gain_mean"] == pytest.approx(0.3)
    assert s.loc["albedo", "xgb_gain_std"] == pytest.approx(np.std([0.1, 0.5], ddof=1))
    assert s.loc["lst", "xgb_gain_n"] == 2  # the reused card does not count
    assert analysis.importance_summary([]).empty


def test_split_comparison_puts_spatial_beside_date_scores():
    cards = [_card("2016001", {}, {}, spatial={"mlr": 0.05, "rf": 0.045, "xgb": 0.05}),
             _card("2016017", {}, {}, spatial={"mlr": 0.07, "rf": 0.055, "xgb": 0.04})]
    t = analysis.split_comparison(cards)
    row = t.loc[(t["period"] == "2016001") & (t["model"] == "rf")].iloc[0]
    assert row["date_test_rmse"] == 0.035 and row["spatial_test_rmse"] == 0.045
    assert row["rmse_increase"] == pytest.approx(0.01)
    mean = t.loc[(t["period"] == "mean") & (t["model"] == "xgb")].iloc[0]
    assert mean["spatial_test_rmse"] == pytest.approx(0.045) and mean["rmse_increase"] == pytest.approx(0.015)
    assert bool(t.loc[(t["period"] == "2016017") & (t["model"] == "xgb"), "chosen"].iloc[0])
    assert analysis.split_comparison([_card("2016001", {}, {})]).empty


def _daily_cube(days=400, ny=6, nx=5, seed=0):
    rng = np.random.default_rng(seed)
    t = pd.date_range("2015-12-01", periods=days, freq="D")
    values = rng.uniform(0.05, 0.4, (days, ny, nx)).astype(np.float32)
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:40, 0, 0] = np.nan  # a pixel empty for all of December 2015
    data = da.from_array(values, chunks=(8, 3, 5))
    return xr.DataArray(data, dims=("time", "y", "x"),
                        coords={"time": t, "y": np.arange(ny)[::-1] * 1000.0, "x": np.arange(nx) * 1000.0}), values


@pytest.mark.parametrize("start", ["2016-01-01", "2015-07-01"])  # within a year; across new year
def test_a_climatology_of_up_to_a_year_is_the_maps_by_day_of_year(start):
    sm, values = _daily_cube(days=300)
    sm = sm.assign_coords(time=pd.date_range(start, periods=300, freq="D"))
    clim = analysis.daily_climatology(sm)
    want = sm.groupby("time.dayofyear").mean(skipna=True)  # the general path: one group per day
    assert isinstance(clim.data, da.Array) and len(clim.__dask_graph__()) < len(want.__dask_graph__()) / 4
    assert list(clim["dayofyear"].values) == list(want["dayofyear"].values)
    np.testing.assert_array_equal(clim.values, want.values)  # NaN days stay NaN
    assert clim.dims == want.dims and clim.dtype == want.dtype


@pytest.mark.slow
def test_mean_maps_are_lazy_and_equal_pandas_groupbys(tmp_path):
    sm, values = _daily_cube()
    monthly = analysis.monthly_means(sm)
    annual = analysis.annual_means(sm)
    clim = analysis.daily_climatology(sm)
    assert all(isinstance(a.data, da.Array) for a in (monthly, annual, clim))
    frame = pd.DataFrame(values.reshape(len(sm.time), -1), index=sm.indexes["time"])
    ref_m = frame.groupby(frame.index.to_period("M")).mean()
    np.testing.assert_allclose(monthly.values.reshape(len(ref_m), -1), ref_m.to_numpy(), rtol=1e-6)
    assert np.isnan(monthly.values[0, 0, 0])
    ref_y = frame.groupby(frame.index.year).mean()
    np.testing.assert_allclose(annual.values.reshape(len(ref_y), -1), ref_y.to_numpy(), rtol=1e-6)
    ref_d = frame.groupby(frame.index.day_of_year).mean()
    np.testing.assert_allclose(clim.values.reshape(len(ref_d), -1), ref_d.to_numpy(), rtol=1e-6)
    assert monthly.sizes["month"] == 14 and clim.sizes["dayofyear"] == 366
    url = analysis.write_means(sm, StoreRef(str(tmp_path / "means.zarr")), None)
    back = xr.open_zarr(url, consolidated=False)
    np.testing.assert_allclose(back["sm_monthly"].values, monthly.values, rtol=1e-6)
    assert back["sm_daily_mean"].attrs["units"] == "m3 m-3"
    # each day of the year's mean over the pixels of its mean map, NaN where that map has none
    maps = back["sm_daily_mean"].values.reshape(366, -1).astype(np.float64)
    valid = np.isfinite(maps).any(axis=1)
    want = np.full(366, np.nan)
    want[valid] = np.nanmean(maps[valid], axis=1)
    np.testing.assert_allclose(back["sm_daily_mean_regional"].values, want, rtol=1e-12)
    assert back["sm_daily_mean_regional"].dims == ("dayofyear",)


def test_weather_and_sm_aggregation_drop_incomplete_periods():
    days = pd.date_range("2016-01-01", "2016-03-31", freq="D")
    w = pd.DataFrame({"station": "W1", "time": days, "precip_mm": 1.0, "tair_c": np.arange(len(days), dtype=float)})
    w.loc[(w["time"].dt.month == 2) & (w["time"].dt.day > 10), "tair_c"] = np.nan  # February mostly missing
    agg = analysis.aggregate_weather(w, "MS")
    assert list(agg["period"].dt.month) == [1, 3]
    assert agg.loc[0, "precip_mm"] == 31.0 and agg.loc[0, "tair_c"] == pytest.approx(15.0)
    sm = pd.DataFrame({"station": "W1", "time": days, "sm": 0.2})
    sm.loc[sm["time"].dt.month == 3, "sm"] = np.nan
    got = analysis.aggregate_sm(sm, "sm", "MS")
    assert list(got["period"].dt.month) == [1, 2] and got.loc[1, "n_days"] == 29


def test_station_partial_correlations_classes():
    rng = np.random.default_rng(4)
    periods = pd.date_range("2010-01-01", periods=36, freq="MS")
    rows_w, rows_s = [], []
    for st, kind in (("WET", "precip"), ("HOT", "tair"), ("NONE", None), ("SHORT", "precip")):
        p = rng.gamma(2.0, 20.0, periods.size)
        t = 10 + 10 * np.sin(np.arange(periods.size) / 12 * 2 * np.pi) + rng.normal(0, 1, periods.size)
        noise = rng.normal(0, 0.01, periods.size)
        sm = 0.15 + (0.002 * p if kind == "precip" else 0) - (0.01 * t if kind == "tair" else 0) + noise
        k = 4 if st == "SHORT" else periods.size
        rows_w.append(pd.DataFrame({"station": st, "period": periods[:k], "precip_mm": p[:k], "tair_c": t[:k]}))
        rows_s.append(pd.DataFrame({"station": st, "period": periods[:k], "sm": sm[:k]}))
    table = analysis.station_partial_correlations(pd.concat(rows_s), pd.concat(rows_w)).set_index("station")
    assert table.loc["WET", "class_precip"] == "significantly positive"
    assert table.loc["HOT", "class_tair"] == "significantly negative"
    assert table.loc["NONE", "class_precip"] == "not significant"
    assert table.loc["SHORT", "class_precip"] == "insufficient data" and table.loc["SHORT", "n"] == 4


def test_subset_box_keeps_pixel_centres_inside():
    region = Region(74, 772, 2, 2)
    ds = xr.Dataset({"sm": (("y", "x"), np.zeros(region.fine_shape, np.float32))},
                    coords={"y": region.fine_y, "x": region.fine_x})
    box = (108.6, 38.4, 108.9, 38.7)
    sub = analysis.subset_box(ds, box)
    (x0, x1), (y0, y1) = lonlat_to_xy([box[0], box[2]], [box[1], box[3]])
    inside_x = (region.fine_x >= x0) & (region.fine_x <= x1)
    inside_y = (region.fine_y >= y0) & (region.fine_y <= y1)
    assert sub.sizes == {"y": inside_y.sum(), "x": inside_x.sum()}
    assert 0 < sub.sizes["x"] < region.fine_shape[1]
    with pytest.raises(GridError, match="does not overlap"):
        analysis.subset_box(ds, (0.0, 0.0, 1.0, 1.0))
    with pytest.raises(GridError, match="lon_min < lon_max"):
        analysis.subset_box(ds, (109.0, 38.0, 108.0, 39.0))
