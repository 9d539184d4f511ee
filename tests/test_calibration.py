"""The anomaly gain and the interval's within-cell error sd calibrated from stations (dsm.calibration)."""

import numpy as np
import pytest
from scipy.stats import norm

from dsm.calibration import (
    GainCalibration,
    IntervalCalibration,
    calibrate_anomaly_sd,
    calibrate_gain,
    conformal_variance,
    gain_slope,
    without_station_offsets,
)


def _stations(k_true: float, n_stations: int = 12, days: int = 200, station_sd: float = 0.02, seed: int = 1):
    """Station-days where the truth is B + k_true a + noise and stations add their own error."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"S{i}" for i in range(n_stations)], days)
    a = rng.normal(0.0, 0.015, ids.size)
    base = rng.uniform(0.1, 0.3, ids.size)
    truth = base + k_true * a + rng.normal(0.0, 0.01, ids.size)
    bias = np.repeat(rng.normal(0.0, 0.01, n_stations), days)
    return ids, truth + bias + rng.normal(0.0, station_sd, ids.size), base, a


def test_the_slope_recovers_the_gain_despite_station_error():
    ids, obs, base, a = _stations(0.5, station_sd=0.03)
    assert gain_slope(obs - base, a) == pytest.approx(0.5, abs=0.06)


def test_a_helpful_gain_is_calibrated_with_a_bootstrap_interval_and_cross_validation():
    ids, obs, base, a = _stations(0.4)
    cal = calibrate_gain(ids, obs, base, a, configured=1.0)
    assert cal.source == "stations"
    assert cal.gain == pytest.approx(0.4, abs=0.08)
    assert cal.interval[0] < cal.gain < cal.interval[1]
    assert cal.cv_rmse_calibrated < cal.cv_rmse_configured
    assert (cal.n_stations, cal.n_pairs) == (12, ids.size)
    assert GainCalibration.from_dict(cal.to_dict()) == cal


def test_the_configured_gain_stays_when_the_calibration_does_not_help():
    ids, obs, base, a = _stations(1.0, seed=3)
    cal = calibrate_gain(ids, obs, base, a, configured=1.0)
    assert cal.estimate == pytest.approx(1.0, abs=0.1) and cal.estimate != 1.0
    assert cal.cv_rmse_calibrated >= cal.cv_rmse_configured
    assert (cal.source, cal.gain) == ("configured", 1.0) and "does not lower" in cal.reason


def test_too_few_stations_keep_the_configured_gain_and_say_so():
    ids, obs, base, a = _stations(0.4, n_stations=5)
    cal = calibrate_gain(ids, obs, base, a, configured=0.9, min_stations=8)
    assert (cal.source, cal.gain, cal.n_stations) == ("configured", 0.9, 5)
    assert "fewer than 8" in cal.reason


def test_stations_with_too_few_days_do_not_count_and_nan_rows_are_left_out():
    ids, obs, base, a = _stations(0.4, n_stations=9, days=30)
    obs[ids == "S0"] = np.nan  # S0 has no usable day
    cal = calibrate_gain(ids, obs, base, a, configured=1.0, min_stations=8, min_days=10)
    assert cal.n_stations == 8 and cal.n_pairs == 8 * 30
    assert cal.source == "stations"


def test_the_gain_is_clipped_to_its_configured_range():
    ids, obs, base, a = _stations(3.0)
    assert calibrate_gain(ids, obs, base, a, configured=1.0).gain == 2.0


def test_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match="one length"):
        calibrate_gain(["a", "b"], [0.1], [0.1, 0.2], [0.0, 0.1])


def test_the_conformal_variance_covers_the_nominal_share_and_no_more():
    rng = np.random.default_rng(3)
    r = rng.normal(0.0, 0.03, 999)
    vc = rng.uniform(0.0, 2e-4, r.size)
    var = conformal_variance(r, vc, 0.9)
    z = norm.ppf(0.95)
    covered = np.abs(r) <= z * np.sqrt(vc + var) + 1e-15
    assert covered.sum() == int(np.ceil(1000 * 0.9))  # the (n + 1) q-th smallest score: exactly that many
    assert (np.abs(r) <= z * np.sqrt(vc + var * 0.999)).sum() < covered.sum()  # and it is the smallest such
    assert conformal_variance(r * 1e-3, np.full(r.size, 1e-2), 0.9) == 0.0  # the cell's variance alone covers
    assert conformal_variance(r[:5], vc[:5], 0.9) == np.inf  # too few values for the quantile
    with pytest.raises(ValueError, match="nominal"):
        conformal_variance(r, vc, 1.0)


def test_the_within_cell_sd_is_calibrated_to_cover_the_station_observations():
    """Residuals (station - map) of sd sqrt(var_cell + 0.015^2 + station error^2): the calibrated sd
    makes the normal interval cover 90 % of the station-days, also for stations left out."""
    rng = np.random.default_rng(5)
    ids = np.repeat([f"S{i}" for i in range(12)], 300)
    vc = rng.uniform(0.5e-4, 1.5e-4, ids.size)
    r = rng.normal(0.0, 1.0, ids.size) * np.sqrt(vc + 0.015 ** 2 + 0.01 ** 2)
    cal = calibrate_anomaly_sd(ids, r, vc, nominal=0.9, configured=0.03)
    assert cal.source == "stations" and cal.n_stations == 12 and cal.n_pairs == ids.size
    assert cal.anomaly_sd == pytest.approx(np.hypot(0.015, 0.01), rel=0.08)
    assert cal.cv_coverage == pytest.approx(0.9, abs=0.02) and cal.coverage_configured > 0.97
    assert cal.interval[0] < cal.anomaly_sd < cal.interval[1]
    assert IntervalCalibration.from_dict(cal.to_dict()) == cal
    few = calibrate_anomaly_sd(ids[:600], r[:600], vc[:600], nominal=0.9, configured=0.03)
    assert few.source == "configured" and few.anomaly_sd == 0.03 and "fewer than 8" in few.reason
    with pytest.raises(ValueError, match="one length"):
        calibrate_anomaly_sd(ids, r[:-1], vc, nominal=0.9, configured=0.03)


def test_station_offsets_are_removed_before_the_interval_is_calibrated():
    """Each station reads the map's truth + its own constant offset (sd 0.02) + noise: removing the
    offsets calibrates the sd of the rest, keeping them widens it by the offsets' spread."""
    rng = np.random.default_rng(8)
    ids = np.repeat([f"S{i}" for i in range(16)], 200)
    vc = rng.uniform(0.5e-4, 1.5e-4, ids.size)
    within = rng.normal(0.0, 1.0, ids.size) * np.sqrt(vc + 0.015 ** 2)
    offset = np.repeat(rng.normal(0.0, 0.02, 16), 200)
    removed = calibrate_anomaly_sd(ids, within + offset, vc, nominal=0.9, configured=0.03)
    kept = calibrate_anomaly_sd(ids, within + offset, vc, nominal=0.9, configured=0.03, offsets="keep")
    assert removed.station_offsets == "removed" and kept.station_offsets == "kept"
    assert removed.anomaly_sd == pytest.approx(0.015, rel=0.08)
    assert kept.anomaly_sd > 1.4 * removed.anomaly_sd
    assert removed.offset_rms == kept.offset_rms == pytest.approx(np.sqrt(np.mean(offset[::200] ** 2)), rel=0.1)
    assert "offset removed" in removed.reason and "offset" not in kept.reason
    assert IntervalCalibration.from_dict(removed.to_dict()) == removed
    no_offsets = calibrate_anomaly_sd(ids, within, vc, nominal=0.9, configured=0.03)
    assert no_offsets.anomaly_sd == pytest.approx(removed.anomaly_sd, rel=0.05)
    with pytest.raises(ValueError, match="offsets must be one of"):
        calibrate_anomaly_sd(ids, within, vc, nominal=0.9, configured=0.03, offsets="drop")


def test_removing_station_offsets_keeps_the_within_station_variance():
    """Two-day stations: the centred residuals are rescaled by sqrt(n / (n - 1)), so their mean
    square matches the noise variance, not half of it."""
    rng = np.random.default_rng(2)
    ids = np.repeat(np.arange(20000).astype(str), 2)
    r = rng.normal(0.0, 1.0, ids.size) + np.repeat(rng.normal(0.0, 3.0, 20000), 2)
    centred, rms = without_station_offsets(ids, r)
    assert np.mean(centred ** 2) == pytest.approx(1.0, rel=0.03)
    assert np.allclose(centred[::2], -centred[1::2])
    assert rms == pytest.approx(np.hypot(3.0, np.sqrt(0.5)), rel=0.03)
    with pytest.raises(ValueError, match="two days"):
        without_station_offsets(np.array(["a", "b", "b"]), np.zeros(3))
