"""Error model and fusion of the modelled 36 km cell means with the day's SMAP.

A pooled model predicts the 36 km cell mean ``m`` of each cell and day; SMAP ``S`` observes
some cells on some days with random error variance ``var_S``. Per cell and day the fusion is
optimal interpolation, ``C = m + w (S - m)`` with ``w = var_M / (var_M + var_S)``. On days
without SMAP the last increment ``w (S - m)`` is carried ``L`` days on as ``rho(L) w (S - m)``
with ``rho(L) = exp(-L / tau)`` up to ``max_carry_days`` (0 beyond).

The error model is estimated from the data: ``var_S`` by triple collocation (SMAP, the
out-of-fold model, SMAP on a neighbouring day), ``var_M`` as the mean squared innovation minus
``var_S`` and ``tau`` from the lagged autocorrelation of the innovations (white SMAP noise
drops out of lagged covariances). Arrays are ``(t, cy, cx)`` over consecutive days and 36 km
cells, NaN = missing. This module is pure: numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from dsm.grid import bilinear

__all__ = ["ErrorModel", "FusedCells", "estimate_error_model", "fit_decay", "fuse",
           "innovation_autocorrelation", "pixel_interval", "smap_error_variance", "smooth_increments",
           "triple_collocation"]

VAR_SMAP_METHODS: tuple[str, ...] = ("triple_collocation", "configured_default")
DECAY_METHODS: tuple[str, ...] = ("estimated", "configured", "configured_default")
STATE_MODEL, STATE_FUSED, STATE_CARRIED = 0, 1, 2
DECAY_BOUNDS: tuple[float, float] = (0.25, 60.0)  # days searched by fit_decay


def _cube_pair(smap: ArrayLike, model: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    s, m = np.asarray(smap, dtype=np.float64), np.asarray(model, dtype=np.float64)
    if s.ndim != 3 or s.shape != m.shape:
        raise ValueError(f"smap and model must be (t, cy, cx) arrays of one shape, got {s.shape}, {m.shape}")
    return s, m


def triple_collocation(x: ArrayLike, y: ArrayLike, z: ArrayLike) -> tuple[float, float, float]:
    """Error variances of three collocated estimates of one quantity (covariance notation).

    ``var_ex = var(x) - cov(x,y) cov(x,z) / cov(y,z)`` and cyclically (Stoffelen 1998,
    McColl et al. 2014), with sample (co)variances (divisor ``n - 1``).

    Parameters
    ----------
    x, y, z : array_like
        1-D arrays of equal length; a row with any non-finite member is dropped.

    Returns
    -------
    tuple of float
        ``(var_ex, var_ey, var_ez)``; NaN where the denominator covariance is 0 (to rounding:
        at most 1e-12 times the largest variance) or fewer than 3 rows remain. Negative
        estimates are returned as computed.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (x, y, z)]
    if any(a.ndim != 1 for a in arrays) or len({a.size for a in arrays}) != 1:
        raise ValueError("triple_collocation needs three 1-D arrays of equal length")
    stacked = np.vstack(arrays)
    stacked = stacked[:, np.isfinite(stacked).all(axis=0)]
    if stacked.shape[1] < 3:
        return (np.nan, np.nan, np.nan)
    c = np.cov(stacked)
    tiny = 1e-12 * float(np.max(np.diag(c)))  # a covariance this small is 0 to rounding
    ex, ey, ez = (float(c[i, i] - c[i, j] * c[i, k] / c[j, k]) if abs(c[j, k]) > tiny else np.nan
                  for i, j, k in ((0, 1, 2), (1, 0, 2), (2, 0, 1)))
    return (ex, ey, ez)


def smap_error_variance(smap: ArrayLike, model: ArrayLike, max_lag: int = 2) -> tuple[float, int]:
    """SMAP's random error variance by triple collocation with the model and SMAP itself.

    The triplet of a cell and day ``t`` is ``x = S_t``, ``y = m_t`` (the out-of-fold model) and
    ``z = S`` of the same cell on the nearest other day within ``max_lag`` days (lag 1, then
    -1, 2, -2, ...). SMAP's error is white in time, so it is independent of ``z``'s error.

    Parameters
    ----------
    smap, model : array_like
        ``(t, cy, cx)`` SMAP and out-of-fold model cell means, NaN where missing.
    max_lag : int
        Largest lag (days) searched for ``z``.

    Returns
    -------
    tuple
        ``(variance, n_triplets)``; the variance is NaN when not estimable.
    """
    s, m = _cube_pair(smap, model)
    if max_lag < 1:
        raise ValueError(f"max_lag must be >= 1, got {max_lag}")
    z = np.full_like(s, np.nan)
    n_t = s.shape[0]
    for lag in (sign * k for k in range(1, min(max_lag, n_t - 1) + 1) for sign in (1, -1)):
        shifted = np.full_like(s, np.nan)
        if lag > 0:
            shifted[:-lag] = s[lag:]
        else:
            shifted[-lag:] = s[:lag]
        fill = np.isnan(z) & np.isfinite(shifted)
        z[fill] = shifted[fill]
    ok = np.isfinite(s) & np.isfinite(m) & np.isfinite(z)
    return triple_collocation(s[ok], m[ok], z[ok])[0], int(ok.sum())


def innovation_autocorrelation(
    smap: ArrayLike, model: ArrayLike, var_model: float, max_lag: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """Lagged autocorrelation of the model error from the innovations ``d = S - m``.

    For each lag ``L`` the pairs (same cell, days ``t`` and ``t + L``, both ``d`` finite) give
    ``rho_hat(L) = cov(d_t, d_{t+L}) / var_model`` (each member's mean removed, divisor n).
    SMAP's white noise drops out of the lagged covariance, leaving the model error's.

    Parameters
    ----------
    smap, model : array_like
        ``(t, cy, cx)`` SMAP and out-of-fold model cell means.
    var_model : float
        Model error variance (> 0).
    max_lag : int
        Lags ``1 .. max_lag`` are evaluated.

    Returns
    -------
    tuple of ndarray
        ``(lags, rho_hat, counts)``; ``rho_hat`` is NaN where ``counts < 10``.
    """
    s, m = _cube_pair(smap, model)
    if not (np.isfinite(var_model) and var_model > 0):
        raise ValueError(f"var_model must be finite and > 0, got {var_model}")
    d = s - m
    lags = np.arange(1, max(int(max_lag), 0) + 1, dtype=np.int64)
    rho = np.full(lags.size, np.nan)
    counts = np.zeros(lags.size, dtype=np.int64)
    for i, lag in enumerate(lags):
        if lag >= d.shape[0]:
            continue
        a, b = d[:-lag], d[lag:]
        ok = np.isfinite(a) & np.isfinite(b)
        counts[i] = n = int(ok.sum())
        if n >= 10:
            a, b = a[ok], b[ok]
            rho[i] = float(np.mean((a - a.mean()) * (b - b.mean())) / var_model)
    return lags, rho, counts


def fit_decay(lags: ArrayLike, rho: ArrayLike, counts: ArrayLike,
              bounds: tuple[float, float] = DECAY_BOUNDS) -> float:
    """E-folding time ``tau`` (days) of ``rho(L) = exp(-L / tau)`` by weighted least squares.

    Minimises ``sum_L n_L (rho_L - exp(-L / tau))**2`` over ``tau`` in ``bounds`` (bounded
    Brent search) on the finite ``rho_L`` with positive counts ``n_L``.

    Returns NaN when no finite ``rho`` has a positive count.
    """
    lag_a, rho_a = np.asarray(lags, dtype=np.float64), np.asarray(rho, dtype=np.float64)
    n_a = np.asarray(counts, dtype=np.float64)
    ok = np.isfinite(rho_a) & np.isfinite(lag_a) & (n_a > 0)
    if not ok.any():
        return float("nan")
    lag_a, rho_a, n_a = lag_a[ok], rho_a[ok], n_a[ok]

    def loss(tau: float) -> float:
        return float(np.sum(n_a * (rho_a - np.exp(-lag_a / tau)) ** 2))

    res = minimize_scalar(loss, bounds=bounds, method="bounded", options={"xatol": 1e-6})
    return float(res.x)


@dataclass(frozen=True)
class ErrorModel:
    """Error variances, fusion weight and decay of carried increments.

    Attributes
    ----------
    var_smap : float
        SMAP random error variance (m3/m3)^2; ``var_smap_method`` says where it came from
        (``"triple_collocation"`` or ``"configured_default"``), ``n_triplets`` how many
        triplets the collocation had.
    var_model : float
        Error variance of the modelled cell mean; ``mse_innovation`` is the mean of
        ``(S - m)**2`` over the ``n_samples`` finite pairs.
    weight : float
        ``var_model / (var_model + var_smap)``.
    decay_days : float
        ``tau`` of ``rho(L) = exp(-L / tau)``; ``decay_method`` is ``"estimated"``,
        ``"configured"`` or ``"configured_default"``.
    max_carry_days : int
        Days an increment is carried (``rho`` is 0 beyond).
    warnings : tuple of str
        Why a default or floor was used.
    """

    var_smap: float
    var_smap_method: str
    n_triplets: int
    var_model: float
    mse_innovation: float
    n_samples: int
    weight: float
    decay_days: float
    decay_method: str
    max_carry_days: int
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.var_smap_method not in VAR_SMAP_METHODS:
            raise ValueError(f"var_smap_method must be one of {VAR_SMAP_METHODS}, got {self.var_smap_method!r}")
        if self.decay_method not in DECAY_METHODS:
            raise ValueError(f"decay_method must be one of {DECAY_METHODS}, got {self.decay_method!r}")
        for name in ("var_smap", "var_model", "decay_days"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"ErrorModel.{name} must be finite and > 0, got {value}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"ErrorModel.weight must lie in [0, 1], got {self.weight}")
        if not 0 <= self.max_carry_days <= np.iinfo(np.int16).max:
            raise ValueError(f"ErrorModel.max_carry_days must lie in [0, 32767], got {self.max_carry_days}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (plain floats, ints, strings and a list of warnings)."""
        def plain(v: Any) -> Any:
            return v if isinstance(v, str) else int(v) if isinstance(v, (int, np.integer)) else float(v)

        d = {f.name: plain(getattr(self, f.name)) for f in fields(self) if f.name != "warnings"}
        return {**d, "warnings": [str(w) for w in self.warnings]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ErrorModel:
        """Rebuild from :meth:`to_dict` output; unknown or missing keys raise ``TypeError``."""
        return cls(**{**d, "warnings": tuple(d.get("warnings", ()))})

    def rho(self, lag: ArrayLike) -> Any:
        """``exp(-lag / decay_days)`` for ``0 <= lag <= max_carry_days``, else 0 (vectorised)."""
        lag_a = np.asarray(lag, dtype=np.float64)
        inside = (lag_a >= 0) & (lag_a <= self.max_carry_days)
        out = np.where(inside, np.exp(-np.where(inside, lag_a, 0.0) / self.decay_days), 0.0)
        return float(out) if out.ndim == 0 else out


def estimate_error_model(
    smap: ArrayLike,
    model: ArrayLike,
    *,
    default_var_smap: float,
    min_triplets: int = 100,
    max_lag_tc: int = 2,
    max_carry_days: int = 10,
    decay_days: float | None = None,
    default_decay_days: float = 3.0,
    min_var_fraction: float = 0.05,
) -> ErrorModel:
    """Estimate the :class:`ErrorModel` from SMAP and the out-of-fold model cell means.

    ``var_smap`` by :func:`smap_error_variance`, else ``default_var_smap`` (with fewer than
    ``min_triplets`` triplets or a non-finite or non-positive estimate); ``var_model =
    mean((S - m)**2) - var_smap`` floored at ``min_var_fraction`` times the mean; ``tau`` is
    ``decay_days`` if given, else fitted to :func:`innovation_autocorrelation` (lags
    ``1 .. max(1, max_carry_days)``), else ``default_decay_days``. Every fallback adds a
    string to ``warnings``.

    Raises
    ------
    ValueError
        When no cell and day has both SMAP and the model (nothing to estimate from), or on
        invalid settings.
    """
    s, m = _cube_pair(smap, model)
    if not (np.isfinite(default_var_smap) and default_var_smap > 0):
        raise ValueError(f"default_var_smap must be finite and > 0, got {default_var_smap}")
    if decay_days is not None and not (np.isfinite(decay_days) and decay_days > 0):
        raise ValueError(f"decay_days must be finite and > 0 or None, got {decay_days}")
    if not 0 < min_var_fraction < 1:
        raise ValueError(f"min_var_fraction must lie in (0, 1), got {min_var_fraction}")
    d = s - m
    finite = np.isfinite(d)
    n_samples = int(finite.sum())
    if n_samples == 0:
        raise ValueError("no cell and day has both a finite SMAP value and a finite model value: "
                         "the fusion error model cannot be estimated without SMAP")
    notes: list[str] = []
    var_s, n_trip = smap_error_variance(s, m, max_lag=max_lag_tc)
    method = "triple_collocation"
    if n_trip < min_triplets or not (np.isfinite(var_s) and var_s > 0):
        why = (f"only {n_trip} SMAP triplets (< min_triplets {min_triplets})" if n_trip < min_triplets
               else f"the triple collocation estimate {var_s:.6g} is not finite and positive")
        notes.append(f"{why}: var_smap set to the configured default {default_var_smap:.6g}")
        var_s, method = float(default_var_smap), "configured_default"
    mse = float(np.mean(d[finite] ** 2))
    var_m = mse - var_s
    if not var_m >= min_var_fraction * mse:
        var_m = min_var_fraction * mse
        notes.append(f"mean squared innovation {mse:.6g} minus var_smap {var_s:.6g} is below "
                     f"{min_var_fraction:g} of it: var_model floored at {var_m:.6g}")
    if var_m <= 0:
        raise ValueError("SMAP equals the model everywhere: the model error variance is 0")
    if decay_days is not None:
        tau, decay_method = float(decay_days), "configured"
    else:
        lags, rho, counts = innovation_autocorrelation(s, m, var_m, max(1, max_carry_days))
        tau, decay_method = fit_decay(lags, rho, counts), "estimated"
        if not np.isfinite(tau):
            notes.append(f"too few innovation pairs ({int(counts.max(initial=0))} < 10 at every lag) to "
                         f"estimate the decay: decay_days set to the configured default {default_decay_days:g}")
            tau, decay_method = float(default_decay_days), "configured_default"
        elif min(abs(tau - b) for b in DECAY_BOUNDS) < 1e-3:
            notes.append(f"the fitted decay_days {tau:.4g} lies at a bound of {list(DECAY_BOUNDS)} days: the "
                         "innovations are uncorrelated (low) or barely decay, e.g. a persistent bias (high)")
    return ErrorModel(var_smap=float(var_s), var_smap_method=method, n_triplets=n_trip,
                      var_model=float(var_m), mse_innovation=mse, n_samples=n_samples,
                      weight=float(var_m / (var_m + var_s)), decay_days=tau, decay_method=decay_method,
                      max_carry_days=int(max_carry_days), warnings=tuple(notes))


@dataclass(frozen=True)
class FusedCells:
    """Fused 36 km cell means, all ``(t, cy, cx)``.

    Attributes
    ----------
    cell_mean : ndarray
        ``C = m + increment`` (NaN where the model is NaN).
    increment : ndarray
        Value added to the model.
    variance : ndarray
        Error variance of ``C``.
    state : ndarray of uint8
        0 = model only, 1 = fused with the day's SMAP, 2 = an earlier increment carried.
    lag : ndarray of int16
        Days since the SMAP day whose increment is used; -1 with state 0.
    """

    cell_mean: NDArray[np.float64]
    increment: NDArray[np.float64]
    variance: NDArray[np.float64]
    state: NDArray[np.uint8]
    lag: NDArray[np.int16]


def fuse(model: ArrayLike, smap: ArrayLike, em: ErrorModel) -> FusedCells:
    """Fuse the modelled cell means with SMAP over consecutive days.

    With SMAP and the model on a cell-day: ``increment = w (S - m)``, state 1, lag 0,
    ``variance = var_M (1 - w)``. Else, if the cell was fused ``L <= max_carry_days`` days
    earlier (the latest such day): ``increment = rho(L)`` times that day's increment, state 2,
    ``variance = var_M (1 - rho(L)**2 w)``. Else increment 0, state 0, variance ``var_M``.
    Where the model is NaN everything is NaN, state 0, lag -1.

    Derivation: with model error ``e`` (variance ``var_M``, ``corr(e_t, e_{t+L}) = rho``) and
    white SMAP error ``n`` (``var_S``), the innovation ``d_t = S_t - m_t = e_t + n_t`` has
    variance ``var_M + var_S`` and ``cov(e_{t+L}, d_t) = rho var_M``. The best linear
    predictor of ``e_{t+L}`` from ``d_t`` is therefore ``rho var_M / (var_M + var_S) d_t =
    rho w d_t``, with error variance ``var_M - (rho var_M)**2 / (var_M + var_S) =
    var_M (1 - rho**2 w)``; ``L = 0`` gives the usual ``var_M (1 - w)``.

    Parameters
    ----------
    model, smap : array_like
        ``(t, cy, cx)`` model cell means and SMAP, NaN where missing.
    em : ErrorModel
        Weight, variances and decay.
    """
    s, m = _cube_pair(smap, model)
    w, var_m = em.weight, em.var_model
    shape = m.shape
    increment = np.full(shape, np.nan)
    variance = np.full(shape, np.nan)
    state = np.zeros(shape, dtype=np.uint8)
    lag = np.full(shape, -1, dtype=np.int16)
    last_inc = np.full(shape[1:], np.nan)
    last_day = np.full(shape[1:], -1, dtype=np.int64)
    for t in range(shape[0]):
        have_m = np.isfinite(m[t])
        fused = have_m & np.isfinite(s[t])
        since = t - last_day
        carried = have_m & ~fused & (last_day >= 0) & (since <= em.max_carry_days)
        rho = em.rho(np.where(carried, since, 0))
        inc, var = increment[t], variance[t]
        inc[have_m], var[have_m] = 0.0, var_m
        inc[fused] = w * (s[t][fused] - m[t][fused])
        var[fused] = var_m * (1.0 - w)
        inc[carried] = rho[carried] * last_inc[carried]
        var[carried] = var_m * (1.0 - rho[carried] ** 2 * w)
        state[t][fused], state[t][carried] = STATE_FUSED, STATE_CARRIED
        lag[t][fused], lag[t][carried] = 0, since[carried]
        last_inc[fused], last_day[fused] = inc[fused], t
    return FusedCells(cell_mean=m + increment, increment=increment, variance=variance, state=state, lag=lag)


def smooth_increments(increment: ArrayLike, factor: int = 36) -> NDArray[np.float64]:
    """Area-to-point smoothing of cell increments onto the fine grid, cell means preserved.

    Bilinear interpolation between cell centres (edge values held beyond the outer centres;
    NaN neighbours left out and the weights renormalised), then each cell's fine values are
    shifted by (cell value - block mean of the interpolated values), so every cell's block
    mean equals its increment exactly. NaN cells stay NaN.

    Parameters
    ----------
    increment : array_like
        ``(cy, cx)`` or ``(t, cy, cx)`` cell increments, NaN allowed.
    factor : int
        Fine pixels per cell side.

    Returns
    -------
    ndarray
        ``(cy * factor, cx * factor)`` (with the leading time axis when given).
    """
    v = np.asarray(increment, dtype=np.float64)
    if v.ndim not in (2, 3):
        raise ValueError(f"increment must be (cy, cx) or (t, cy, cx), got shape {v.shape}")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    factor = int(factor)
    cy, cx = v.shape[-2:]
    interp = bilinear(v, factor)
    blocks = interp.reshape(*v.shape[:-2], cy, factor, cx, factor)
    shift = v - blocks.mean(axis=(-3, -1))  # NaN for NaN cells
    blocks = blocks + shift[..., :, None, :, None]
    return blocks.reshape(*v.shape[:-2], cy * factor, cx * factor)


def pixel_interval(variance_cell: ArrayLike, var_anomaly: ArrayLike, interval: float = 0.9) -> Any:
    """Half-width of the two-sided normal ``interval`` of a pixel value.

    ``z * sqrt(variance_cell + var_anomaly)`` with ``z = norm.ppf((1 + interval) / 2)``;
    shapes broadcast. NaN where the total variance is NaN or negative.
    """
    if not 0 < interval < 1:
        raise ValueError(f"interval must lie in (0, 1), got {interval}")
    total = np.asarray(variance_cell, dtype=np.float64) + np.asarray(var_anomaly, dtype=np.float64)
    z = float(norm.ppf((1.0 + interval) / 2.0))
    out = z * np.sqrt(np.where(total >= 0, total, np.nan))
    return float(out) if out.ndim == 0 else out
