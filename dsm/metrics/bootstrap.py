"""Percentile bootstrap confidence intervals of the scores (:func:`bootstrap_scores`): the
ordinary bootstrap of the valid pairs or the moving-block bootstrap of a daily series."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dsm.metrics.scores import (
    METRIC_NAMES,
    BiasConvention,
    CentredSums,
    Scores,
    _check_convention,
    _check_min_n,
    _prepare,
    _safe_divide,
    score,
)

_MAX_RESAMPLE_VALUES = 2_000_000  # values held at once while scoring resamples


@dataclass(frozen=True)
class BootstrapScores:
    """Point estimates with percentile bootstrap confidence intervals.

    Attributes
    ----------
    estimate : Scores
        Scores of the full sample.
    r, rmse, ubrmse, bias : tuple of float
        ``(low, high)`` percentile bounds of each score over the resamples that gave a
        finite value; ``(nan, nan)`` when none did.
    confidence : float
        Two-sided confidence level, e.g. 0.95.
    n_resamples : int
        Number of bootstrap resamples drawn.
    block_length : int or None
        Length of the moving blocks, or None for the ordinary (pairwise) bootstrap.
    seed : int or None
        Seed of the random generator.
    """

    estimate: Scores
    r: tuple[float, float]
    rmse: tuple[float, float]
    ubrmse: tuple[float, float]
    bias: tuple[float, float]
    confidence: float
    n_resamples: int
    block_length: int | None
    seed: int | None


def _check_bootstrap_args(
    n_resamples: int, confidence: float, block_length: int | None, size: int
) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise ValueError(f"n_resamples must be an integer, got {n_resamples!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if block_length is None:
        return
    if isinstance(block_length, bool) or not isinstance(block_length, (int, np.integer)):
        raise ValueError(f"block_length must be an integer or None, got {block_length!r}")
    if not 1 <= block_length <= max(size, 1):
        raise ValueError(
            f"block_length must be between 1 and the series length {size}, "
            f"got {block_length}"
        )


def _pair_indices(
    rng: np.random.Generator, n_valid: int, n_resamples: int
) -> NDArray[np.intp]:
    """Ordinary bootstrap: draw valid pairs with replacement."""
    return rng.integers(0, n_valid, size=(n_resamples, n_valid))


def _block_indices(
    rng: np.random.Generator, size: int, n_resamples: int, block_length: int
) -> NDArray[np.intp]:
    """Moving-block bootstrap (Kuensch 1989) over positions ``0 .. size - 1``."""
    n_blocks = -(-size // block_length)
    starts = rng.integers(0, size - block_length + 1, size=(n_resamples, n_blocks))
    offsets = np.arange(block_length)
    indices = (starts[:, :, None] + offsets).reshape(n_resamples, -1)
    return indices[:, :size]


def _resample_scores(
    p: NDArray[np.float64],
    q: NDArray[np.float64],
    draw: Callable[[int], NDArray[np.intp]],
    n_resamples: int,
    bias_convention: str,
    min_n: int,
) -> dict[str, NDArray[Any]]:
    """Scores of ``n_resamples`` resamples of the pairs ``p``, ``q``; ``draw(k)`` gives the
    positions of the next ``k`` (a row each, as long as ``p``). They are drawn and scored a
    bounded number of rows at a time (:data:`_MAX_RESAMPLE_VALUES`), from the one random stream:
    the resamples of a single draw of every row."""
    step = max(1, _MAX_RESAMPLE_VALUES // max(p.size, 1))
    valid = ~(np.isnan(p) | np.isnan(q))
    weight = None if valid.all() else valid.astype(np.float64)
    if weight is not None:  # the gaps as zeros of weight 0: the rows need no masking
        p, q = np.where(valid, p, 0.0), np.where(valid, q, 0.0)
    parts = []
    for start in range(0, n_resamples, step):
        rows = draw(min(step, n_resamples - start))
        sums = _row_sums(p[rows], q[rows], None if weight is None else weight[rows])
        parts.append(sums.scores(bias_convention, min_n))
    return {k: np.concatenate([part[k] for part in parts]) for k in METRIC_NAMES}


def _row_sums(p: NDArray[np.float64], q: NDArray[np.float64], weight: NDArray[np.float64] | None) -> CentredSums:
    """The centred sums of every row of ``p`` and ``q`` (2-D; ``weight`` 1 for a pair, 0 for a
    gap, whose values must be finite; None: no gap).

    As :func:`dsm.metrics.scores._grouped_scores` does for groups, each row is first shifted
    by one of its own pairs, so a constant resample has exactly zero anomalies; the sums run
    along the rows, the gaps multiplied to zero (the arrays are overwritten).
    """
    rows = np.arange(p.shape[0])
    if weight is None:
        n = np.full(p.shape[0], p.shape[1])
        first = np.zeros(p.shape[0], dtype=np.intp)
    else:
        n = weight.sum(axis=1).astype(np.int64)
        first = np.argmax(weight, axis=1)  # a pair of each row (any: 0 for a row of none)
    pivot_p, pivot_q = p[rows, first], q[rows, first]

    def zero_gaps(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return x if weight is None else np.multiply(x, weight, out=x)

    diff = p - q  # 0 at the gaps
    p -= pivot_p[:, None]
    q -= pivot_q[:, None]
    mean_p_shift = _safe_divide(zero_gaps(p).sum(axis=1), n)
    mean_q_shift = _safe_divide(zero_gaps(q).sum(axis=1), n)
    p -= mean_p_shift[:, None]
    q -= mean_q_shift[:, None]
    dp, dq = zero_gaps(p), zero_gaps(q)
    diff2 = np.einsum("ij,ij->i", diff, diff)
    anomaly = np.subtract(dp, dq, out=diff)
    return CentredSums(
        n=n,
        mean_p=pivot_p + mean_p_shift,
        mean_q=pivot_q + mean_q_shift,
        pp=np.einsum("ij,ij->i", dp, dp),
        qq=np.einsum("ij,ij->i", dq, dq),
        pq=np.einsum("ij,ij->i", dp, dq),
        diff2=diff2,
        anomaly_diff2=np.einsum("ij,ij->i", anomaly, anomaly),
    )


def _percentile_bounds(values: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (np.nan, np.nan)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def bootstrap_scores(
    product: ArrayLike,
    reference: ArrayLike,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = None,
    block_length: int | None = None,
    bias_convention: BiasConvention = "reference_minus_product",
    min_n: int = 2,
) -> BootstrapScores:
    """Scores with percentile bootstrap confidence intervals.

    Parameters
    ----------
    product, reference : array_like
        Values paired by position, same shape. For the block bootstrap they must be
        1-D series on a regular time step (one value per day, NaN for gaps).
    n_resamples : int, default 1000
        Number of bootstrap resamples.
    confidence : float, default 0.95
        Two-sided confidence level of the percentile interval.
    seed : int, optional
        Seed of ``numpy.random.default_rng``; the same seed gives the same intervals.
    block_length : int, optional
        None (default): ordinary bootstrap of the valid pairs. An integer L: moving-block
        bootstrap of runs of L consecutive time steps (NaN gaps included, then dropped
        pairwise in each resample), for autocorrelated series.
    bias_convention : {"reference_minus_product", "product_minus_reference"}
        Sign of the bias (see :mod:`dsm.metrics`).
    min_n : int, default 2
        Fewest valid pairs for a (re)sample to be scored.

    Returns
    -------
    BootstrapScores
        The full-sample scores and ``(low, high)`` bounds of R, RMSE, ubRMSE and bias.
        Resamples without a finite score (e.g. a constant resample for R) are left out
        of that score's percentiles.
    """
    _check_convention(bias_convention)
    _check_min_n(min_n)
    p_all, q_all = _prepare(product, reference)
    _check_bootstrap_args(n_resamples, confidence, block_length, p_all.size)
    estimate = score(p_all, q_all, bias_convention=bias_convention, min_n=min_n)
    rng = np.random.default_rng(seed)
    if estimate.n < min_n:
        nan_pair = (np.nan, np.nan)
        return BootstrapScores(
            estimate, nan_pair, nan_pair, nan_pair, nan_pair,
            confidence, n_resamples, block_length, seed,
        )  # fmt: skip
    if block_length is None:
        keep = ~(np.isnan(p_all) | np.isnan(q_all))
        p_src, q_src = p_all[keep], q_all[keep]

        def draw(k: int) -> NDArray[np.intp]:
            return _pair_indices(rng, p_src.size, k)
    else:
        p_src, q_src = p_all, q_all

        def draw(k: int) -> NDArray[np.intp]:
            return _block_indices(rng, p_src.size, k, block_length)

    result = _resample_scores(p_src, q_src, draw, n_resamples, bias_convention, min_n)
    bounds = {k: _percentile_bounds(result[k], confidence) for k in METRIC_NAMES[:4]}
    return BootstrapScores(
        estimate=estimate,
        confidence=confidence,
        n_resamples=int(n_resamples),
        block_length=None if block_length is None else int(block_length),
        seed=seed,
        **bounds,
    )
