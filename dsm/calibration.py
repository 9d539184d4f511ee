"""Calibration of the fusion method's anomaly gain ``k`` from in situ stations (pure).

The fusion map is ``sm = B + k a``: ``B`` the (smoothed) fused cell mean, ``a = f - mean_cell
f`` the model's within-cell anomaly. At a station's pixel the observation ``o`` measures the
1 km truth plus the station's own error, which is independent of ``a``; so the least-squares
slope of ``o - B`` on ``a`` over the station-days estimates the ``k`` that minimises the map's
error there, without knowing the station error (it only adds noise to the slope, no bias):
``k = cov(o - B, a) / var(a)``.

With few stations the slope is noisy, so it is checked before use: by leave-one-station-out
cross-validation (each station's squared error with the slope of the others, against the
configured ``k``), and its 95 % interval is a bootstrap over stations. The calibrated ``k``
replaces the configured one only when it lowers the cross-validated error.

The same station-days calibrate ``sm_unc`` (:func:`calibrate_anomaly_sd`). The interval is
``z sqrt(var_cell + s^2)``: ``var_cell`` the fused cell mean's error variance (estimated at
36 km, :mod:`dsm.fusion`), ``s`` the error sd of the 1 km within-cell part, which nothing at
36 km observes. With stations, ``s`` is chosen by split-conformal calibration on normalised
scores: each station-day needs ``s_i^2 = (r_i / z)^2 - var_cell_i`` to be covered (``r`` the
observation minus the map), and ``s^2`` is the ``ceil((n + 1) q) / n`` empirical quantile of
those, so the interval covers the nominal share ``q`` of the station observations.
Leave-one-station-out coverage and a bootstrap interval over stations are recorded.

Stations see the 1 km truth plus their own error, whose largest part is usually a constant
offset: the probe's calibration and depth, and how its point differs from the 1 km pixel
(Gruber et al. 2013). That is why in situ validation scores SMAP by the unbiased RMSE
(Entekhabi et al. 2010). By default the same convention applies here: each station's mean
residual is removed before the scores are formed (``offsets="remove"``, the residuals rescaled
by ``sqrt(n_i / (n_i - 1))`` for the mean's own degree of freedom), so a station's offset does
not widen every pixel's interval. With ``offsets="keep"`` the raw residuals calibrate, and the
interval covers the station observations, so the 1 km truth at least as often.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

__all__ = ["OFFSETS", "GainCalibration", "IntervalCalibration", "calibrate_anomaly_sd", "calibrate_gain",
           "conformal_variance", "gain_slope", "without_station_offsets"]

GAIN_BOUNDS: tuple[float, float] = (0.0, 2.0)  # the range of training.fusion.anomaly_gain


class _Record:
    """A calibration recorded in the products store's attributes (JSON): ``interval`` is a pair."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)  # type: ignore[call-overload]
        d["interval"] = None if d["interval"] is None else [float(v) for v in d["interval"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output."""
        iv = d.get("interval")
        return cls(**{**d, "interval": None if iv is None else (float(iv[0]), float(iv[1]))})



@dataclass(frozen=True)
class GainCalibration(_Record):
    """The anomaly gain used by a products store, and where it came from.

    Attributes
    ----------
    gain : float
        The ``k`` applied (the calibrated one, or the configured one).
    source : str
        ``"stations"`` (calibrated) or ``"configured"``.
    configured : float
        ``training.fusion.anomaly_gain``.
    reason : str
        Why the source was chosen, in one sentence.
    estimate : float or None
        The slope over all stations (clipped to [0, 2]); None when not estimable.
    interval : tuple of float or None
        Its 2.5 and 97.5 % bootstrap percentiles over stations.
    cv_rmse_calibrated, cv_rmse_configured : float or None
        Leave-one-station-out RMSE (m3/m3) at the stations with the calibrated and the
        configured gain.
    n_stations, n_pairs : int
        Stations and station-days used.
    """

    gain: float
    source: str
    configured: float
    reason: str
    estimate: float | None = None
    interval: tuple[float, float] | None = None
    cv_rmse_calibrated: float | None = None
    cv_rmse_configured: float | None = None
    n_stations: int = 0
    n_pairs: int = 0


def _station_days(station: ArrayLike, columns: dict[str, ArrayLike], min_days: int
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The station-days with every column finite, of the stations with at least ``min_days`` of
    them: ``(ids, columns, kept station names)``; a ValueError when the lengths differ."""
    ids = np.asarray(station).astype(str)
    cols = {k: np.asarray(v, np.float64) for k, v in columns.items()}
    if not (all(c.shape == ids.shape for c in cols.values()) and ids.ndim == 1):
        raise ValueError(f"station, {', '.join(cols)} must be 1-D arrays of one length")
    ok = np.logical_and.reduce([np.isfinite(c) for c in cols.values()])
    names, counts = np.unique(ids[ok], return_counts=True)
    keep = names[counts >= min_days]
    rows = ok & np.isin(ids, keep)
    return ids[rows], {k: c[rows] for k, c in cols.items()}, keep


def _station_bootstrap(ids: np.ndarray, keep: np.ndarray, statistic: Any, n_boot: int,
                       seed: int) -> tuple[float, float] | None:
    """2.5 and 97.5 % percentiles of ``statistic(rows)`` over resamples of whole stations (the
    finite values), None when none is finite."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(ids == s) for s in keep]
    boots = np.array([statistic(np.concatenate([members[i] for i in rng.integers(0, keep.size, keep.size)]))
                      for _ in range(n_boot)], np.float64)
    boots = boots[np.isfinite(boots)]
    return (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))) if boots.size else None


def gain_slope(target: ArrayLike, anomaly: ArrayLike) -> float:
    """``cov(target, anomaly) / var(anomaly)`` clipped to ``[0, 2]``; NaN when ``anomaly`` has
    no variance or fewer than 3 finite pairs."""
    y, a = np.asarray(target, np.float64), np.asarray(anomaly, np.float64)
    ok = np.isfinite(y) & np.isfinite(a)
    y, a = y[ok], a[ok]
    if y.size < 3:
        return float("nan")
    a_c = a - a.mean()
    var = float(np.dot(a_c, a_c))
    if var <= 1e-12 * max(float(np.dot(a, a)), 1e-30):
        return float("nan")
    return float(np.clip(np.dot(a_c, y - y.mean()) / var, *GAIN_BOUNDS))


def calibrate_gain(station: ArrayLike, observed: ArrayLike, base: ArrayLike, anomaly: ArrayLike, *,
                   configured: float = 1.0, min_stations: int = 8, min_days: int = 10, n_boot: int = 1000,
                   seed: int = 0) -> GainCalibration:
    """Calibrate ``k`` from station-days (module docstring).

    Parameters
    ----------
    station : array_like
        Station identifier of each station-day.
    observed, base, anomaly : array_like
        The observation, ``B`` and ``a`` at the station's pixel that day (m3/m3); rows with any
        non-finite value are left out.
    configured : float
        The configured gain, kept when calibration is not possible or does not help.
    min_stations : int
        Fewest stations (each with at least ``min_days`` station-days) to calibrate.
    min_days : int
        Fewest station-days for a station to count.
    n_boot : int
        Bootstrap resamples of the stations for the interval.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    GainCalibration
    """
    ids, cols, keep = _station_days(station, {"observed": observed, "base": base, "anomaly": anomaly}, min_days)
    y, a = cols["observed"] - cols["base"], cols["anomaly"]
    n_st, n = int(keep.size), int(ids.size)

    def configured_because(reason: str, **extra: Any) -> GainCalibration:
        return GainCalibration(gain=float(configured), source="configured", configured=float(configured),
                               reason=reason, n_stations=n_st, n_pairs=n, **extra)

    if n_st < min_stations:
        return configured_because(f"{n_st} stations with >= {min_days} days in the region "
                                  f"(fewer than {min_stations}): the configured gain is used")
    estimate = gain_slope(y, a)
    if not np.isfinite(estimate):
        return configured_because("the model's within-cell anomaly has no variance at the stations")
    groups = [ids == s for s in keep]
    sse_cal = sse_conf = 0.0
    for test in groups:
        k = gain_slope(y[~test], a[~test])
        k = configured if not np.isfinite(k) else k
        sse_cal += float(np.sum((y[test] - k * a[test]) ** 2))
        sse_conf += float(np.sum((y[test] - configured * a[test]) ** 2))
    cv_cal, cv_conf = float(np.sqrt(sse_cal / n)), float(np.sqrt(sse_conf / n))
    interval = _station_bootstrap(ids, keep, lambda idx: gain_slope(y[idx], a[idx]), n_boot, seed)
    extra: dict[str, Any] = {"estimate": estimate, "interval": interval, "cv_rmse_calibrated": cv_cal,
                             "cv_rmse_configured": cv_conf}
    if cv_cal < cv_conf:
        return GainCalibration(gain=estimate, source="stations", configured=float(configured),
                               reason=f"calibrated on {n_st} stations: leave-one-station-out RMSE {cv_cal:.4f} "
                                      f"< {cv_conf:.4f} with the configured gain {configured:g}",
                               n_stations=n_st, n_pairs=n, **extra)
    return configured_because(f"the gain calibrated on {n_st} stations does not lower the leave-one-station-out "
                              f"RMSE ({cv_cal:.4f} vs {cv_conf:.4f}): the configured gain is used", **extra)


MIN_ANOMALY_SD = 1e-3  # m3/m3: the calibrated within-cell error sd is never taken below this


@dataclass(frozen=True)
class IntervalCalibration(_Record):
    """The within-cell error sd ``s`` behind ``sm_unc``, and where it came from.

    Attributes
    ----------
    anomaly_sd : float
        The ``s`` applied (m3/m3).
    source : str
        ``"stations"`` (conformal calibration) or ``"configured"``
        (``training.fusion.anomaly_error_sd``).
    configured : float
        ``training.fusion.anomaly_error_sd``.
    reason : str
        Why the source was chosen, in one sentence.
    nominal : float
        The interval's nominal coverage (``output.interval``).
    interval : tuple of float or None
        2.5 and 97.5 % bootstrap percentiles of ``s`` over stations.
    cv_coverage : float or None
        Share of the station-days covered when each station's ``s`` comes from the others.
    coverage_configured : float or None
        Share of the station-days the configured ``s`` covers.
    n_stations, n_pairs : int
        Stations and station-days used.
    station_offsets : str
        ``"removed"`` (each station's mean residual taken out before calibrating) or ``"kept"``.
    offset_rms : float or None
        Root mean square of the stations' mean residuals (m3/m3), where calibrated.
    """

    anomaly_sd: float
    source: str
    configured: float
    reason: str
    nominal: float = 0.9
    interval: tuple[float, float] | None = None
    cv_coverage: float | None = None
    coverage_configured: float | None = None
    n_stations: int = 0
    n_pairs: int = 0
    station_offsets: str = "kept"
    offset_rms: float | None = None


def conformal_variance(residual: ArrayLike, var_cell: ArrayLike, nominal: float) -> float:
    """The smallest ``s^2 >= 0`` whose intervals ``z sqrt(var_cell + s^2)`` cover ``residual``
    on at least ``ceil((n + 1) nominal)`` of its ``n`` values (split-conformal quantile of the
    scores ``(r / z)^2 - var_cell``; ``z`` the normal quantile of ``nominal``); ``inf`` when
    ``n`` is too small for that quantile, NaN without data."""
    if not 0 < nominal < 1:
        raise ValueError(f"nominal coverage must lie in (0, 1), got {nominal}")
    r, vc = np.asarray(residual, np.float64), np.asarray(var_cell, np.float64)
    z = float(norm.ppf((1.0 + nominal) / 2.0))
    scores = np.sort((r / z) ** 2 - vc)
    n = scores.size
    if n == 0:
        return float("nan")
    rank = int(np.ceil((n + 1) * nominal))
    if rank > n:
        return float("inf")
    return max(float(scores[rank - 1]), 0.0)


def _covered(residual: np.ndarray, var_cell: np.ndarray, var_anomaly: float, nominal: float) -> np.ndarray:
    z = float(norm.ppf((1.0 + nominal) / 2.0))
    return np.abs(residual) <= z * np.sqrt(var_cell + var_anomaly)


OFFSETS: tuple[str, ...] = ("remove", "keep")  # the choices of calibrate_anomaly_sd's offsets


def without_station_offsets(ids: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, float]:
    """``residual`` less each station's mean, rescaled by ``sqrt(n_i / (n_i - 1))`` (``n_i`` the
    station's days) so its variance is not shrunk by the removed mean; and the root mean square
    of the station means (m3/m3). Every station needs at least two days."""
    names, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    if names.size and counts.min() < 2:
        raise ValueError("every station needs at least two days to remove its offset")
    means = np.bincount(inverse, weights=residual, minlength=names.size) / counts
    scale = np.sqrt(counts / (counts - 1.0))
    return (residual - means[inverse]) * scale[inverse], float(np.sqrt(np.mean(means ** 2))) if names.size else 0.0


def calibrate_anomaly_sd(station: ArrayLike, residual: ArrayLike, var_cell: ArrayLike, *, nominal: float,
                         configured: float, min_stations: int = 8, min_days: int = 10, n_boot: int = 1000,
                         seed: int = 0, offsets: str = "remove") -> IntervalCalibration:
    """Calibrate the within-cell error sd of ``sm_unc`` at stations (module docstring).

    Parameters
    ----------
    station : array_like
        Station identifier of each station-day.
    residual : array_like
        The observation minus the map at the station's pixel that day (m3/m3).
    var_cell : array_like
        The fused cell mean's error variance there ((m3/m3)^2); rows with any non-finite value
        are left out.
    nominal : float
        The interval's nominal coverage.
    configured : float
        ``training.fusion.anomaly_error_sd``, kept with too few stations.
    min_stations, min_days : int
        Fewest stations, each with at least ``min_days`` station-days, to calibrate.
    n_boot : int
        Bootstrap resamples of the stations for the interval.
    seed : int
        Seed of the bootstrap.
    offsets : {"remove", "keep"}
        Whether each station's mean residual (its constant offset) is taken out before
        calibrating (module docstring).

    Returns
    -------
    IntervalCalibration
    """
    if offsets not in OFFSETS:
        raise ValueError(f"offsets must be one of {OFFSETS}, got {offsets!r}")
    ids, cols, keep = _station_days(station, {"residual": residual, "var_cell": var_cell}, max(min_days, 2))
    r, vc = cols["residual"], cols["var_cell"]
    n_st, n = int(keep.size), int(ids.size)
    base: dict[str, Any] = {"configured": float(configured), "nominal": float(nominal), "n_stations": n_st, "n_pairs": n}
    if n_st < min_stations:
        return IntervalCalibration(float(configured), "configured", reason=f"{n_st} stations with >= {min_days} "
                                   f"days in the region (fewer than {min_stations}): the configured sd is used", **base)
    centred, offset_rms = without_station_offsets(ids, r)
    if offsets == "remove":
        r = centred
    base |= {"station_offsets": "removed" if offsets == "remove" else "kept", "offset_rms": offset_rms}
    cov_conf = float(np.mean(_covered(r, vc, configured ** 2, nominal)))
    var = conformal_variance(r, vc, nominal)
    if not np.isfinite(var):
        return IntervalCalibration(float(configured), "configured", reason=f"{n} station-days are too few for the "
                                   f"{nominal:.0%} conformal quantile: the configured sd is used",
                                   coverage_configured=cov_conf, **base)
    sd = max(float(np.sqrt(var)), MIN_ANOMALY_SD)
    covered = np.zeros(n, bool)
    for s in keep:
        test = ids == s
        v = conformal_variance(r[~test], vc[~test], nominal)
        covered[test] = _covered(r[test], vc[test], max(v, MIN_ANOMALY_SD ** 2), nominal)
    interval = _station_bootstrap(
        ids, keep, lambda idx: np.sqrt(max(conformal_variance(r[idx], vc[idx], nominal), MIN_ANOMALY_SD ** 2)),
        n_boot, seed)
    cv = float(covered.mean())
    of = (f"their {n} station-days, each station's offset removed (rms {base['offset_rms']:.4f})"
          if offsets == "remove" else f"their {n} station-days")
    return IntervalCalibration(sd, "stations", reason=f"conformal at {n_st} stations: sm_unc covers {nominal:.0%} of "
                               f"{of} ({cv:.1%} when each station is left out; {cov_conf:.1%} with "
                               f"the configured sd {configured:g})", interval=interval, cv_coverage=cv,
                               coverage_configured=cov_conf, **base)
