"""Train/test splits of a period's samples (pure).

* :func:`date_split` — the paper's split: 50 % / 50 % stratified by sampling date, checked by a
  two-sample Kolmogorov-Smirnov test of train vs test soil moisture and redrawn while
  ``p <= alpha``, up to ``max_attempts`` draws. Every date with ``n`` samples puts
  ``n // 2`` in each half; an odd one out goes to train or test by a coin flip, so the
  halves differ by at most one sample per date. If no draw passes, the draw with the
  highest p-value is kept and ``accepted`` is False (recorded, never hidden).
* :func:`spatial_block_split` — blocks of ``block x block`` SMAP cells (aligned on the global
  36 km grid) held out together: shows how much the date split flatters the test score,
  since neighbouring cells and days share information.

Both are reproducible from the seed: the same seed and table give the same split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import ks_2samp

KsTest = Callable[[np.ndarray, np.ndarray], tuple[float, float]]


def ks_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS test: ``(statistic, p-value)``; NaN with an empty half."""
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    res = ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


@dataclass(frozen=True)
class Split:
    """Row indices of the train and test halves, and how they were drawn.

    Attributes
    ----------
    train, test
        Sorted row positions in the sample table.
    kind
        ``"date"`` or ``"spatial"``.
    seed
        Seed of the generator.
    attempts
        Number of draws made (1 for the spatial split).
    ks_statistic, ks_pvalue
        KS test of the kept draw.
    accepted
        Whether the kept draw passed (``p > alpha``).
    pvalues
        The p-value of every draw, in order.
    """

    train: NDArray[np.intp]
    test: NDArray[np.intp]
    kind: str
    seed: int
    attempts: int
    ks_statistic: float
    ks_pvalue: float
    accepted: bool
    pvalues: tuple[float, ...] = field(default=())

    def record(self) -> dict[str, object]:
        """JSON-ready description (no indices)."""
        return {"kind": self.kind, "seed": self.seed, "n_train": int(self.train.size),
                "n_test": int(self.test.size), "attempts": self.attempts,
                "ks_statistic": self.ks_statistic, "ks_pvalue": self.ks_pvalue,
                "accepted": self.accepted}


def _draw_by_date(codes: NDArray[np.intp], rng: np.random.Generator) -> NDArray[np.bool_]:
    """One stratified draw: a boolean 'in train' per row."""
    in_train = np.zeros(codes.size, dtype=bool)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for group in np.split(order, bounds):
        if group.size == 0:
            continue
        shuffled = rng.permutation(group)
        k = group.size // 2 + (group.size % 2 if rng.random() < 0.5 else 0)
        in_train[shuffled[:k]] = True
    return in_train


def date_split(dates: ArrayLike, sm: ArrayLike, seed: int, alpha: float = 0.05,
               max_attempts: int = 20, test: KsTest = ks_test) -> Split:
    """The paper's split: 50/50 stratified by date, redrawn while KS ``p <= alpha``.

    Parameters
    ----------
    dates
        Sampling date of every row (any hashable values).
    sm
        Target soil moisture of every row.
    seed
        Seed of ``numpy.random.default_rng``.
    alpha
        A draw is accepted when its KS p-value is above ``alpha``.
    max_attempts
        Most draws; the best (highest p) is kept when none passes.
    test
        The KS test (``(a, b) -> (statistic, p)``).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    _, codes = np.unique(np.asarray(dates), return_inverse=True)
    codes = codes.ravel()
    y = np.asarray(sm, dtype=np.float64).ravel()
    if codes.size != y.size:
        raise ValueError(f"dates and sm differ in length: {codes.size} vs {y.size}")
    rng = np.random.default_rng(seed)
    best: tuple[float, float, NDArray[np.bool_]] | None = None
    pvalues: list[float] = []
    for _ in range(max_attempts):
        in_train = _draw_by_date(codes, rng)
        stat, p = test(y[in_train], y[~in_train])
        pvalues.append(p)
        if best is None or (np.nan_to_num(p, nan=-1.0) > np.nan_to_num(best[1], nan=-1.0)):
            best = (stat, p, in_train)
        if p > alpha:
            break
    assert best is not None
    stat, p, in_train = best
    return Split(np.flatnonzero(in_train), np.flatnonzero(~in_train), "date", int(seed),
                 len(pvalues), stat, p, bool(p > alpha), tuple(pvalues))


def spatial_block_split(rows: ArrayLike, cols: ArrayLike, sm: ArrayLike, seed: int,
                        block: int = 2) -> Split:
    """Hold out blocks of ``block x block`` SMAP cells together.

    Blocks are taken on the global 36 km grid (``row // block, col // block``), shuffled
    with the seed and dealt one at a time to the half with fewer samples so far, so the
    halves stay near 50/50 in samples.
    """
    if block < 1:
        raise ValueError(f"block must be at least 1 cell, got {block}")
    r = np.asarray(rows, dtype=np.int64).ravel() // block
    c = np.asarray(cols, dtype=np.int64).ravel() // block
    y = np.asarray(sm, dtype=np.float64).ravel()
    keys, codes, counts = np.unique(np.stack([r, c], 1), axis=0, return_inverse=True, return_counts=True)
    codes = codes.ravel()
    rng = np.random.default_rng(seed)
    to_train = np.zeros(len(keys), dtype=bool)
    n_train = n_test = 0
    for b in rng.permutation(len(keys)):
        if n_train <= n_test:
            to_train[b] = True
            n_train += counts[b]
        else:
            n_test += counts[b]
    in_train = to_train[codes]
    stat, p = ks_test(y[in_train], y[~in_train])
    return Split(np.flatnonzero(in_train), np.flatnonzero(~in_train), "spatial", int(seed),
                 1, stat, p, True, (p,))
