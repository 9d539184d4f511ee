"""Tests of :mod:`dsm.fusion`: error model estimation, fusion, smoothing and intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from dsm import fusion
from dsm.fusion import (
    ErrorModel,
    estimate_error_model,
    fit_decay,
    fuse,
    innovation_autocorrelation,
    pixel_interval,
    smap_error_variance,
    smooth_increments,
    triple_collocation,
)


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) series along axis 0 with lag-1 correlation ``phi`` and std ``sd``."""
    out = np.empty(shape)
    out[0] = rng.normal(0.0, sd, shape[1:])
    innov_sd = sd * np.sqrt(1.0 - phi**2)
    for t in range(1, shape[0]):
        out[t] = phi * out[t - 1] + rng.normal(0.0, innov_sd, shape[1:])
    return out


def _synth(seed: int = 0, t: int = 365, cells: int = 12, sd_model: float = 0.03, tau: float = 3.0,
           sd_smap: float = 0.02, p_obs: float = 0.5, sd_truth: float = 0.06):
    """Truth (AR(1) in time around per-cell means), model with AR(1) error, sparse noisy SMAP."""
    rng = np.random.default_rng(seed)
    shape = (t, cells, cells)
    truth = 0.25 + rng.normal(0, 0.04, shape[1:]) + _ar1(rng, shape, 0.9, sd_truth)
    model = truth + _ar1(rng, shape, float(np.exp(-1.0 / tau)), sd_model)
    smap = truth + rng.normal(0.0, sd_smap, shape)
    smap[rng.random(shape) > p_obs] = np.nan
    return truth, model, smap


def _em(**kw) -> ErrorModel:
    base = dict(var_smap=4e-4, var_smap_method="triple_collocation", n_triplets=500, var_model=6e-4,
                mse_innovation=1e-3, n_samples=800, weight=0.6, decay_days=2.5, decay_method="estimated",
                max_carry_days=4, warnings=())
    base.update(kw)
    return ErrorModel(**base)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


# ----------------------------------------------------------------- triple collocation


def test_triple_collocation_recovers_known_error_variances():
    rng = np.random.default_rng(1)
    n = 20000
    truth = rng.normal(0.25, 0.06, n)
    sds = (0.02, 0.03, 0.025)
    x = truth + rng.normal(0, sds[0], n)
    y = 0.8 * truth + rng.normal(0, sds[1], n)
    z = truth + rng.normal(0, sds[2], n)
    est = triple_collocation(x, y, z)
    np.testing.assert_allclose(est, np.square(sds), rtol=0.10)


def test_triple_collocation_drops_nan_rows_and_handles_degenerate_input():
    rng = np.random.default_rng(2)
    x, y, z = rng.normal(size=(3, 200))
    clean = triple_collocation(x, y, z)
    xn, yn, zn = x.copy(), y.copy(), z.copy()
    xn[3], yn[10], zn[50] = np.nan, np.nan, np.inf
    keep = np.ones(200, bool)
    keep[[3, 10, 50]] = False
    np.testing.assert_allclose(triple_collocation(xn, yn, zn), triple_collocation(x[keep], y[keep], z[keep]))
    assert not np.allclose(triple_collocation(xn, yn, zn), clean)
    assert all(np.isnan(triple_collocation(x[:2], y[:2], z[:2])))
    # y constant: cov(y, z) = cov(x, y) = 0 -> var_ex and var_ez NaN, var_ey = 0 - 0 = 0
    ex, ey, ez = triple_collocation(x, np.full(200, 0.3), z)
    assert np.isnan(ex) and np.isnan(ez) and ey == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError):
        triple_collocation(x, y[:10], z)


def test_smap_error_variance_recovers_known_noise():
    _, model, smap = _synth(seed=3, sd_smap=0.02, sd_model=0.03, p_obs=0.5)
    var, n = smap_error_variance(smap, model, max_lag=2)
    assert n > 10000
    assert n <= int((np.isfinite(smap) & np.isfinite(model)).sum())
    assert var == pytest.approx(0.02**2, rel=0.10)


def test_smap_error_variance_prefers_nearest_lag(monkeypatch):
    captured = {}

    def spy(x, y, z):
        captured.update(x=np.asarray(x), y=np.asarray(y), z=np.asarray(z))
        return (1.0, 2.0, 3.0)

    monkeypatch.setattr(fusion, "triple_collocation", spy)
    smap = np.full((8, 1, 1), np.nan)
    for day in (0, 1, 3, 5, 7):
        smap[day] = 0.1 + day / 100
    model = np.full_like(smap, 0.2)
    _, n = smap_error_variance(smap, model, max_lag=2)
    # z of day 0 is day 1 (lag +1); day 1 -> day 0 (+1 missing, -1); day 3 -> day 5 (+1, -1
    # missing, +2 before -2 = day 1); day 5 -> day 7 (+2 before -2 = day 3); day 7 -> day 5 (-2)
    expected_z = [smap[1], smap[0], smap[5], smap[7], smap[5]]
    assert n == 5
    np.testing.assert_allclose(captured["x"], [smap[d, 0, 0] for d in (0, 1, 3, 5, 7)])
    np.testing.assert_allclose(captured["z"], np.ravel(expected_z))
    _, n1 = smap_error_variance(smap, model, max_lag=1)
    assert n1 == 2  # only days 0 and 1 have a neighbour one day away


# ------------------------------------------------------------------- decay of errors


def test_innovation_autocorrelation_recovers_model_error_correlation():
    tau = 3.0
    _, model, smap = _synth(seed=4, tau=tau, sd_model=0.03, sd_smap=0.02, p_obs=0.6)
    lags, rho, counts = innovation_autocorrelation(smap, model, 0.03**2, max_lag=6)
    np.testing.assert_array_equal(lags, np.arange(1, 7))
    assert (counts > 10000).all()
    np.testing.assert_allclose(rho, np.exp(-lags / tau), atol=0.06)
    assert fit_decay(lags, rho, counts) == pytest.approx(tau, rel=0.15)


def test_innovation_autocorrelation_nan_below_ten_pairs():
    smap = np.full((5, 1, 3), np.nan)
    smap[:, 0, :] = np.arange(15).reshape(5, 3) % 4
    model = np.zeros_like(smap)
    _, rho, counts = innovation_autocorrelation(smap, model, 1.0, max_lag=6)
    np.testing.assert_array_equal(counts, [12, 9, 6, 3, 0, 0])
    assert np.isfinite(rho[0]) and np.isnan(rho[1:]).all()
    with pytest.raises(ValueError):
        innovation_autocorrelation(smap, model, 0.0, max_lag=2)


@pytest.mark.parametrize("tau", [0.7, 2.5, 7.0, 20.0])
def test_fit_decay_recovers_exact_exponential(tau):
    lags = np.arange(1, 11)
    counts = np.random.default_rng(5).integers(10, 1000, lags.size)
    rho = np.exp(-lags / tau)
    rho[4], counts[4] = -5.0, 0  # an outlier with no weight is ignored
    rho[6] = np.nan
    assert fit_decay(lags, rho, counts) == pytest.approx(tau, rel=1e-3)


def test_fit_decay_nan_without_finite_rho():
    assert np.isnan(fit_decay([1, 2], [np.nan, np.nan], [50, 50]))
    assert np.isnan(fit_decay([1, 2], [0.5, 0.3], [0, 0]))


# ------------------------------------------------------------------------ ErrorModel


def test_error_model_rho_is_vectorised_and_cut_after_max_carry():
    em = _em(decay_days=2.5, max_carry_days=4)
    lags = np.array([[-1, 0, 1], [4, 5, 12]])
    expected = np.where((lags >= 0) & (lags <= 4), np.exp(-lags / 2.5), 0.0)
    np.testing.assert_allclose(em.rho(lags), expected)
    assert isinstance(em.rho(2), float) and em.rho(2) == pytest.approx(np.exp(-2 / 2.5))
    assert em.rho(0) == 1.0 and em.rho(5) == 0.0


def test_error_model_round_trips_through_json():
    em = _em(warnings=("only 3 SMAP triplets", "floored"), n_triplets=np.int64(3), var_smap=np.float64(4e-4))
    d = em.to_dict()
    assert isinstance(d["warnings"], list)
    back = ErrorModel.from_dict(json.loads(json.dumps(d)))
    assert back == em
    assert isinstance(back.warnings, tuple)
    with pytest.raises(TypeError):
        ErrorModel.from_dict({**d, "unexpected": 1})


@pytest.mark.parametrize("bad", [dict(weight=1.5), dict(var_smap=float("nan")), dict(var_model=0.0),
                                 dict(decay_method="guessed"), dict(var_smap_method="x"),
                                 dict(max_carry_days=-1), dict(decay_days=0.0)])
def test_error_model_rejects_invalid_fields(bad):
    with pytest.raises(ValueError):
        _em(**bad)


# ------------------------------------------------------------ estimate_error_model


def test_estimate_error_model_recovers_synthetic_truth():
    _, model, smap = _synth(seed=6, sd_model=0.03, tau=3.0, sd_smap=0.02, p_obs=0.5)
    em = estimate_error_model(smap, model, default_var_smap=0.04**2, max_carry_days=8)
    assert em.warnings == ()
    assert em.var_smap_method == "triple_collocation" and em.decay_method == "estimated"
    assert em.var_smap == pytest.approx(0.02**2, rel=0.10)
    assert em.var_model == pytest.approx(0.03**2, rel=0.10)
    assert em.decay_days == pytest.approx(3.0, rel=0.2)
    assert em.weight == pytest.approx(em.var_model / (em.var_model + em.var_smap))
    pairs = np.isfinite(smap) & np.isfinite(model)
    assert em.n_samples == int(pairs.sum())
    assert em.mse_innovation == pytest.approx(np.mean((smap[pairs] - model[pairs]) ** 2))
    assert em.max_carry_days == 8


def test_weight_near_one_when_model_noisy_and_near_zero_when_smap_noisy():
    truth, model, smap = _synth(seed=7, sd_model=0.08, sd_smap=0.01)
    em = estimate_error_model(smap, model, default_var_smap=0.04**2)
    assert em.weight > 0.95
    fused = fuse(model, smap, em)
    on = fused.state == 1
    np.testing.assert_allclose(fused.cell_mean[on], smap[on], atol=0.1 * np.abs(smap[on] - model[on]).max())
    assert _rmse(fused.cell_mean[on], truth[on]) < 0.5 * _rmse(model[on], truth[on])

    truth, model, smap = _synth(seed=8, sd_model=0.005, sd_smap=0.06)
    em = estimate_error_model(smap, model, default_var_smap=0.04**2, min_var_fraction=1e-3)
    assert em.weight < 0.05
    fused = fuse(model, smap, em)
    on = fused.state == 1
    assert np.abs(fused.cell_mean[on] - model[on]).max() < 0.1 * np.abs(smap[on] - model[on]).max()
    assert _rmse(fused.cell_mean[on], truth[on]) < 0.2 * _rmse(smap[on], truth[on])


def test_estimate_falls_back_with_warnings_when_data_are_scarce():
    smap = np.full((6, 2, 2), np.nan)
    smap[::2] = 0.3 + 0.01 * np.arange(12).reshape(3, 2, 2)
    model = np.full_like(smap, 0.28)
    em = estimate_error_model(smap, model, default_var_smap=1e-4, min_triplets=100, default_decay_days=4.0)
    assert em.var_smap_method == "configured_default" and em.var_smap == 1e-4
    assert em.n_triplets < 100
    assert any("min_triplets 100" in w and "configured default" in w for w in em.warnings)
    assert em.decay_method == "configured_default" and em.decay_days == 4.0
    assert any("decay" in w for w in em.warnings)
    assert np.isfinite([em.var_smap, em.var_model, em.weight, em.decay_days]).all()
    configured = estimate_error_model(smap, model, default_var_smap=1e-4, decay_days=5.0)
    assert configured.decay_method == "configured" and configured.decay_days == 5.0
    assert not any("decay" in w for w in configured.warnings)


def test_estimate_falls_back_when_collocation_is_not_positive(monkeypatch):
    _, model, smap = _synth(seed=9, t=60, cells=6)
    monkeypatch.setattr(fusion, "smap_error_variance", lambda *a, **k: (-2e-4, 5000))
    em = estimate_error_model(smap, model, default_var_smap=3e-4)
    assert em.var_smap == 3e-4 and em.var_smap_method == "configured_default" and em.n_triplets == 5000
    assert any("not finite and positive" in w for w in em.warnings)
    monkeypatch.setattr(fusion, "smap_error_variance", lambda *a, **k: (float("nan"), 5000))
    em = estimate_error_model(smap, model, default_var_smap=3e-4)
    assert em.var_smap == 3e-4 and em.var_smap_method == "configured_default"


def test_estimate_warns_when_decay_fit_hits_a_bound():
    rng = np.random.default_rng(17)
    truth = rng.uniform(0.1, 0.4, (200, 6, 6))
    model = truth + rng.normal(0, 0.03, truth.shape)  # white model error: rho = 0 at every lag
    smap = truth + rng.normal(0, 0.02, truth.shape)
    em = estimate_error_model(smap, model, default_var_smap=1e-3)
    assert em.decay_method == "estimated" and em.decay_days == pytest.approx(0.25, abs=1e-3)
    assert any("bound" in w for w in em.warnings)


def test_var_model_floor_applies_with_warning():
    _, model, smap = _synth(seed=10, t=60, cells=6, sd_model=0.01, sd_smap=0.01)
    em = estimate_error_model(smap, model, default_var_smap=0.05**2, min_triplets=10**9, min_var_fraction=0.05)
    assert em.var_model == pytest.approx(0.05 * em.mse_innovation)
    assert any("floored" in w for w in em.warnings)
    assert em.weight == pytest.approx(em.var_model / (em.var_model + 0.05**2))


def test_estimate_raises_without_any_smap():
    _, model, smap = _synth(seed=11, t=30, cells=4)
    with pytest.raises(ValueError, match="without SMAP"):
        estimate_error_model(np.full_like(smap, np.nan), model, default_var_smap=1e-3)
    with pytest.raises(ValueError, match="without SMAP"):  # SMAP only where the model is missing
        estimate_error_model(smap, np.where(np.isfinite(smap), np.nan, model), default_var_smap=1e-3)
    with pytest.raises(ValueError):
        estimate_error_model(smap[0], model[0], default_var_smap=1e-3)
    with pytest.raises(ValueError, match="model error variance is 0"):
        estimate_error_model(model, model, default_var_smap=1e-3)


# ------------------------------------------------------------------------------ fuse


def _reference_fuse(model, smap, em):
    """Plain per-cell loop of the documented rules, for comparison."""
    inc = np.full(model.shape, np.nan)
    var = np.full(model.shape, np.nan)
    state = np.zeros(model.shape, np.uint8)
    lag = np.full(model.shape, -1, np.int16)
    for i, j in np.ndindex(model.shape[1:]):
        last = None
        for t in range(model.shape[0]):
            m, s = model[t, i, j], smap[t, i, j]
            if np.isnan(m):
                continue
            if not np.isnan(s):
                inc[t, i, j] = em.weight * (s - m)
                var[t, i, j] = em.var_model * (1 - em.weight)
                state[t, i, j], lag[t, i, j], last = 1, 0, t
            elif last is not None and t - last <= em.max_carry_days:
                r = np.exp(-(t - last) / em.decay_days)
                inc[t, i, j] = r * inc[last, i, j]
                var[t, i, j] = em.var_model * (1 - r**2 * em.weight)
                state[t, i, j], lag[t, i, j] = 2, t - last
            else:
                inc[t, i, j], var[t, i, j] = 0.0, em.var_model
    return inc, var, state, lag


def test_fuse_carries_increment_with_decay_and_stops_after_max_carry():
    em = _em(var_model=6e-4, var_smap=4e-4, weight=0.6, decay_days=2.5, max_carry_days=4)
    t = 16
    model = (0.2 + 0.001 * np.arange(t)).reshape(t, 1, 1)
    smap = np.full_like(model, np.nan)
    smap[2], smap[10] = 0.3, 0.15
    out = fuse(model, smap, em)
    inc2 = em.weight * (0.3 - model[2, 0, 0])
    for day in range(t):
        if day == 2 or day == 10:
            exp_state, exp_lag, exp_inc = 1, 0, em.weight * (smap[day, 0, 0] - model[day, 0, 0])
            exp_var = em.var_model * (1 - em.weight)
        elif 3 <= day <= 6 or 11 <= day <= 14:
            src = 2 if day < 10 else 10
            exp_lag = day - src
            base = inc2 if src == 2 else em.weight * (0.15 - model[10, 0, 0])
            exp_state, exp_inc = 2, np.exp(-exp_lag / 2.5) * base
            exp_var = em.var_model * (1 - np.exp(-2 * exp_lag / 2.5) * em.weight)
        else:  # before any SMAP, or more than max_carry_days after it
            exp_state, exp_lag, exp_inc, exp_var = 0, -1, 0.0, em.var_model
        assert out.state[day, 0, 0] == exp_state, day
        assert out.lag[day, 0, 0] == exp_lag, day
        assert out.increment[day, 0, 0] == pytest.approx(exp_inc, abs=1e-15), day
        assert out.variance[day, 0, 0] == pytest.approx(exp_var), day
    np.testing.assert_allclose(out.cell_mean, model + out.increment)
    assert out.state.dtype == np.uint8 and out.lag.dtype == np.int16


def test_fuse_model_nan_and_smap_without_model():
    em = _em(max_carry_days=3)
    model = np.full((5, 1, 2), 0.2)
    smap = np.full_like(model, np.nan)
    smap[0] = 0.3
    model[1, 0, 0] = np.nan
    smap[1, 0, 0] = 0.5  # SMAP where the model is missing: no fusion, no new increment
    out = fuse(model, smap, em)
    assert np.isnan([out.cell_mean[1, 0, 0], out.increment[1, 0, 0], out.variance[1, 0, 0]]).all()
    assert out.state[1, 0, 0] == 0 and out.lag[1, 0, 0] == -1
    assert out.state[2, 0, 0] == 2 and out.lag[2, 0, 0] == 2
    assert out.increment[2, 0, 0] == pytest.approx(em.rho(2) * em.weight * (0.3 - 0.2))
    np.testing.assert_array_equal(out.state[:, 0, 1], [1, 2, 2, 2, 0])
    np.testing.assert_array_equal(out.lag[:, 0, 1], [0, 1, 2, 3, -1])


def test_fuse_matches_reference_loop_on_random_cube():
    rng = np.random.default_rng(12)
    shape = (40, 3, 4)
    model = rng.uniform(0.1, 0.4, shape)
    model[rng.random(shape) < 0.1] = np.nan
    smap = rng.uniform(0.1, 0.4, shape)
    smap[rng.random(shape) < 0.75] = np.nan
    em = _em(var_model=5e-4, var_smap=5e-4, weight=0.5, decay_days=1.7, max_carry_days=3)
    out = fuse(model, smap, em)
    inc, var, state, lag = _reference_fuse(model, smap, em)
    np.testing.assert_allclose(out.increment, inc, rtol=1e-12)
    np.testing.assert_allclose(out.variance, var, rtol=1e-12)
    np.testing.assert_array_equal(out.state, state)
    np.testing.assert_array_equal(out.lag, lag)
    assert set(np.unique(state)) == {0, 1, 2}


@pytest.mark.parametrize("carry", [0, 1, 3, 7])
def test_a_fused_day_depends_on_its_max_carry_days_before_it_only(carry):
    """What a run that predicts some days relies on (:func:`dsm.cellmeans.pass_day_sets`): the
    model's cell means NaN before day ``lo - max_carry_days`` change no fused value from ``lo``
    on, bit for bit; one day less of lead-in does."""
    rng = np.random.default_rng(carry)
    shape = (60, 4, 5)
    model = rng.uniform(0.1, 0.4, shape)
    model[rng.random(shape) < 0.05] = np.nan
    smap = rng.uniform(0.1, 0.4, shape)
    smap[rng.random(shape) < 0.7] = np.nan
    em = _em(max_carry_days=carry)
    whole = fuse(model, smap, em)
    lo = 30
    cut = model.copy()
    cut[:lo - carry] = np.nan
    part = fuse(cut, smap, em)
    for name in ("cell_mean", "increment", "variance", "state", "lag"):
        np.testing.assert_array_equal(getattr(part, name)[lo:], getattr(whole, name)[lo:], err_msg=name)
    if carry:  # the lead-in is needed: without its first day some day from lo on loses its carried increment
        short = model.copy()
        short[:lo - carry + 1] = np.nan
        assert not np.array_equal(fuse(short, smap, em).state[lo:], whole.state[lo:])


def test_fused_cell_means_beat_model_and_smap_and_variances_are_calibrated():
    truth, model, smap = _synth(seed=13, sd_model=0.03, tau=4.0, sd_smap=0.03, p_obs=0.35)
    em = estimate_error_model(smap, model, default_var_smap=0.04**2, max_carry_days=10)
    out = fuse(model, smap, em)
    on, carried = out.state == 1, out.state == 2
    assert _rmse(out.cell_mean[on], truth[on]) < 0.9 * _rmse(smap[on], truth[on])
    assert _rmse(out.cell_mean[on], truth[on]) < 0.9 * _rmse(model[on], truth[on])
    assert _rmse(out.cell_mean[carried], truth[carried]) < 0.95 * _rmse(model[carried], truth[carried])
    assert _rmse(out.cell_mean, truth) < 0.9 * _rmse(model, truth)
    for mask in (on, carried):
        mse = np.mean((out.cell_mean[mask] - truth[mask]) ** 2)
        assert mse == pytest.approx(np.mean(out.variance[mask]), rel=0.15)


# -------------------------------------------------------------------------- smoothing


def _block_means(fine: np.ndarray, factor: int) -> np.ndarray:
    cy, cx = fine.shape[-2] // factor, fine.shape[-1] // factor
    return fine.reshape(*fine.shape[:-2], cy, factor, cx, factor).mean(axis=(-3, -1))


def _boundary_jump(fine: np.ndarray, factor: int) -> float:
    across_x = np.abs(fine[:, factor - 1:-1:factor] - fine[:, factor::factor])
    across_y = np.abs(fine[factor - 1:-1:factor] - fine[factor::factor])
    both = np.concatenate([across_x.ravel(), across_y.ravel()])
    return float(np.mean(both[np.isfinite(both)]))


@pytest.mark.parametrize("factor", [36, 5])
def test_smooth_increments_preserves_cell_means_and_nan_cells(factor):
    rng = np.random.default_rng(14)
    inc = rng.normal(0, 0.02, (6, 7))
    inc[2, 3] = inc[0, 0] = inc[5, 6] = np.nan
    fine = smooth_increments(inc, factor)
    assert fine.shape == (6 * factor, 7 * factor)
    np.testing.assert_allclose(_block_means(fine, factor), inc, atol=1e-6, rtol=0)
    np.testing.assert_allclose(_block_means(fine, factor), inc, atol=1e-14, rtol=0)
    nan_fine = np.repeat(np.repeat(np.isnan(inc), factor, 0), factor, 1)
    np.testing.assert_array_equal(np.isnan(fine), nan_fine)


def test_smooth_increments_is_smoother_than_repetition():
    rng = np.random.default_rng(15)
    i, j = np.mgrid[0:8, 0:9]
    inc = 0.02 * np.sin(0.7 * i) + 0.015 * np.cos(0.5 * j) + rng.normal(0, 0.003, i.shape)
    inc[4, 4] = np.nan
    factor = 12
    fine = smooth_increments(inc, factor)
    plain = np.repeat(np.repeat(inc, factor, 0), factor, 1)
    assert _boundary_jump(fine, factor) < 0.5 * _boundary_jump(plain, factor)
    np.testing.assert_allclose(_block_means(fine, factor), inc, atol=1e-6)


def test_smooth_increments_exact_for_linear_field_in_the_interior():
    factor = 6
    i, j = np.mgrid[0:5, 0:6].astype(float)
    inc = 0.01 * i - 0.004 * j
    fine = smooth_increments(inc, factor)
    u = (np.arange(5 * factor) + 0.5) / factor - 0.5
    v = (np.arange(6 * factor) + 0.5) / factor - 0.5
    linear = 0.01 * u[:, None] - 0.004 * v[None, :]
    inner = (slice(factor, 4 * factor), slice(factor, 5 * factor))
    np.testing.assert_allclose(fine[inner], linear[inner], atol=1e-12)


def test_smooth_increments_renormalises_around_nan_cells():
    inc = np.full((5, 5), 0.01)
    inc[1, 2] = inc[3, 3] = np.nan
    fine = smooth_increments(inc, 8)
    np.testing.assert_allclose(fine[np.isfinite(fine)], 0.01, rtol=1e-12)
    assert np.isnan(smooth_increments(np.full((2, 3), np.nan), 4)).all()


def test_smooth_increments_time_axis_and_factor_one():
    rng = np.random.default_rng(16)
    cube = rng.normal(size=(3, 4, 5))
    cube[1, 2, 2] = np.nan
    stacked = np.stack([smooth_increments(c, 4) for c in cube])
    np.testing.assert_allclose(smooth_increments(cube, 4), stacked, equal_nan=True)
    np.testing.assert_allclose(smooth_increments(cube, 1), cube, equal_nan=True, atol=1e-15)
    for bad in (0, 2.5):
        with pytest.raises(ValueError):
            smooth_increments(cube, bad)
    with pytest.raises(ValueError):
        smooth_increments(cube[0, 0], 4)


# --------------------------------------------------------------------------- interval


@pytest.mark.parametrize("interval", [0.5, 0.9, 0.95])
def test_pixel_interval_covers_the_interval_and_broadcasts(interval):
    var_cell = np.array([[1e-4], [4e-4], [9e-4]])
    var_anom = np.array([0.0, 1e-4, 2e-4, 5e-4])
    half = pixel_interval(var_cell, var_anom, interval)
    assert half.shape == (3, 4)
    sd = np.sqrt(var_cell + var_anom)
    np.testing.assert_allclose(norm.cdf(half / sd) - norm.cdf(-half / sd), interval, rtol=1e-10)
    assert isinstance(pixel_interval(1e-4, 0.0, interval), float)


def test_pixel_interval_nan_and_invalid():
    assert np.isnan(pixel_interval(np.nan, 1e-4))
    assert np.isnan(pixel_interval(-1.0, 1e-4))
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            pixel_interval(1e-4, 1e-4, bad)


def test_running_mean_is_a_centred_nan_aware_window():
    from dsm.cellmeans import running_mean

    rng = np.random.default_rng(3)
    stack = rng.normal(size=(12, 3, 4)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.2] = np.nan
    got = running_mean(stack, 5)
    for t in range(12):
        window = stack[max(0, t - 2):t + 3]
        with np.errstate(invalid="ignore"):
            want = np.where(np.isfinite(stack[t]), np.nanmean(window, axis=0), np.nan)
        np.testing.assert_allclose(got[t], want, rtol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(running_mean(stack, 1), stack)
