"""The anomaly gain calibrated from stations (dsm.calibration)."""

import numpy as np
import pytest

from dsm.calibration import GainCalibration, calibrate_gain, gain_slope


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
