"""Scores, model selection and the fallback chain (pure).

* :func:`scores` — R and RMSE (via :mod:`dsm.metrics`) of predictions on a set.
* :func:`choose` — the period's model: lowest ``mean(train RMSE, test RMSE)``; ties go to
  the earlier model in the configured order; models without finite scores are never chosen.
* :func:`resolve_fallbacks` — a period with too few samples uses the previous trained
  period's model (the nearest trained one before it, following the chain back); a leading
  period with none before it uses the next trained one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from dsm import metrics


def scores(predicted: ArrayLike, observed: ArrayLike) -> dict[str, float]:
    """``{"r", "rmse", "n"}`` of predictions against observations (population statistics)."""
    s = metrics.score(predicted, observed)
    return {"r": s.r, "rmse": s.rmse, "n": s.n}


def selection_score(model_scores: Mapping[str, Mapping[str, float]]) -> float:
    """``mean(train RMSE, test RMSE)`` of one model (NaN if either is missing)."""
    try:
        return 0.5 * (float(model_scores["train"]["rmse"]) + float(model_scores["test"]["rmse"]))
    except (KeyError, TypeError):
        return float("nan")


def choose(per_model: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """The model with the lowest ``mean(train RMSE, test RMSE)``.

    Parameters
    ----------
    per_model
        ``{model: {"train": {"rmse": ...}, "test": {"rmse": ...}}}`` in preference order.

    Raises
    ------
    ValueError
        When no model has finite scores.
    """
    best, best_score = None, math.inf
    for name, s in per_model.items():
        v = selection_score(s)
        if np.isfinite(v) and v < best_score:
            best, best_score = name, v
    if best is None:
        raise ValueError(f"no model has finite train and test RMSE among {list(per_model)}")
    return best


def resolve_fallbacks(periods: Sequence[str], trained: Sequence[str]) -> dict[str, str | None]:
    """Which trained period's model each period uses.

    Parameters
    ----------
    periods
        Every period name, in time order.
    trained
        The periods that have their own model.

    Returns
    -------
    dict
        Period -> the period whose model it uses (itself when trained; the nearest earlier
        trained period; for leading periods the first trained one; None when nothing is
        trained).
    """
    have = set(trained)
    out: dict[str, str | None] = {}
    last: str | None = None
    for p in periods:
        if p in have:
            last = p
        out[p] = last
    first = next((p for p in periods if p in have), None)
    for p in periods:
        if out[p] is None:
            out[p] = first
        else:
            break
    return out
