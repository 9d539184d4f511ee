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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["GainCalibration", "calibrate_gain", "gain_slope"]

GAIN_BOUNDS: tuple[float, float] = (0.0, 2.0)  # the range of training.fusion.anomaly_gain


@dataclass(frozen=True)
class GainCalibration:
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["interval"] = None if self.interval is None else [float(v) for v in self.interval]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GainCalibration:
        """Rebuild from :meth:`to_dict` output."""
        iv = d.get("interval")
        return cls(**{**d, "interval": None if iv is None else (float(iv[0]), float(iv[1]))})


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
    ids = np.asarray(station).astype(str)
    o, b, a = (np.asarray(v, np.float64) for v in (observed, base, anomaly))
    if not (ids.shape == o.shape == b.shape == a.shape and o.ndim == 1):
        raise ValueError("station, observed, base and anomaly must be 1-D arrays of one length")
    ok = np.isfinite(o) & np.isfinite(b) & np.isfinite(a)
    ids, y, a = ids[ok], (o - b)[ok], a[ok]
    names, counts = np.unique(ids, return_counts=True)
    keep = names[counts >= min_days]
    rows = np.isin(ids, keep)
    ids, y, a = ids[rows], y[rows], a[rows]
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
    groups = {s: ids == s for s in keep}
    sse_cal = sse_conf = 0.0
    for s, test in groups.items():
        k = gain_slope(y[~test], a[~test])
        k = configured if not np.isfinite(k) else k
        sse_cal += float(np.sum((y[test] - k * a[test]) ** 2))
        sse_conf += float(np.sum((y[test] - configured * a[test]) ** 2))
    cv_cal, cv_conf = float(np.sqrt(sse_cal / n)), float(np.sqrt(sse_conf / n))
    rng = np.random.default_rng(seed)
    boots = []
    members = [np.flatnonzero(m) for m in groups.values()]
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, n_st, n_st)])
        boots.append(gain_slope(y[idx], a[idx]))
    boots_a = np.asarray(boots)
    boots_a = boots_a[np.isfinite(boots_a)]
    interval = (float(np.percentile(boots_a, 2.5)), float(np.percentile(boots_a, 97.5))) if boots_a.size else None
    extra = {"estimate": estimate, "interval": interval, "cv_rmse_calibrated": cv_cal, "cv_rmse_configured": cv_conf}
    if cv_cal < cv_conf:
        return GainCalibration(gain=estimate, source="stations", configured=float(configured),
                               reason=f"calibrated on {n_st} stations: leave-one-station-out RMSE {cv_cal:.4f} "
                                      f"< {cv_conf:.4f} with the configured gain {configured:g}",
                               n_stations=n_st, n_pairs=n, **extra)
    return configured_because(f"the gain calibrated on {n_st} stations does not lower the leave-one-station-out "
                              f"RMSE ({cv_cal:.4f} vs {cv_conf:.4f}): the configured gain is used", **extra)
