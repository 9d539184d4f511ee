"""Tables from model cards (pure): the per-period table and the paper's Table 4."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dsm.config import MODEL_NAMES
from dsm.models.period_cards import ModelFit, PeriodCard, PooledCard, TrainedPeriodCard

COMBINATION = "combination"
POOLED = "pooled"


def _get(d: Mapping[str, Any] | None, *keys: str) -> float:
    for k in keys:
        if not isinstance(d, Mapping) or d.get(k) is None:
            return float("nan")
        d = d[k]
    return float(d)  # type: ignore[arg-type]


def _mean(values: Sequence[float]) -> float:
    """Mean of the finite values (NaN when there are none)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _scores(fit: ModelFit | None) -> dict[str, Mapping[str, float]]:
    """``{"train", "test"}`` scores of a model (empty for None)."""
    return {} if fit is None else {"train": fit.train, "test": fit.test}


def period_table(cards: Sequence[PeriodCard], failures: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per period: status, samples, chosen model, its train/test R and RMSE, fallback.

    A reused period shows the model and scores of the period it reuses; failures (period ->
    cause) are added as rows with status ``failed``.
    """
    by_period = {c.period: c for c in cards}
    rows = []
    for c in cards:
        src = by_period.get(c.reused_from or c.period, c)
        chosen = src.chosen if isinstance(src, TrainedPeriodCard) else None
        m = _scores(src.models.get(chosen) if isinstance(src, TrainedPeriodCard) and chosen is not None else None)
        split = c.split if isinstance(c, TrainedPeriodCard) else {}
        rows.append({
            "period": c.period, "status": c.status, "n": c.n_samples, "model": chosen,
            "train_r": _get(m, "train", "r"), "train_rmse": _get(m, "train", "rmse"),
            "test_r": _get(m, "test", "r"), "test_rmse": _get(m, "test", "rmse"),
            "ks_p": split.get("ks_pvalue"), "ks_attempts": split.get("attempts"),
            "reused_from": c.reused_from,
        })
    for period, cause in (failures or {}).items():
        rows.append({"period": period, "status": "failed", "reused_from": None, "error": cause})
    frame = pd.DataFrame(rows)
    return frame.sort_values("period").reset_index(drop=True) if len(frame) else frame


def table4(cards: Sequence[PeriodCard], pooled: PooledCard | None = None) -> pd.DataFrame:
    """Mean R and RMSE over trained periods of every model and of the combination.

    Rows: each model in the paper's order, ``combination`` (each period's chosen model),
    and ``pooled`` (the pooled model's scores averaged over the same periods, when given).
    Columns: ``train_r, train_rmse, test_r, test_rmse, n_periods``.
    """
    trained = [c for c in cards if isinstance(c, TrainedPeriodCard) and c.models]
    rows: dict[str, dict[str, float]] = {}

    def _row(entries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        out = {f"{s}_{k}": _mean([_get(e, s, k) for e in entries])
               for s in ("train", "test") for k in ("r", "rmse")}
        out["n_periods"] = len(entries)
        return out

    for name in MODEL_NAMES:
        entries = [_scores(c.models[name]) for c in trained if name in c.models]
        if entries:
            rows[name] = _row(entries)
    rows[COMBINATION] = _row([_scores(c.models[c.chosen]) for c in trained])
    if pooled is not None:
        per = pooled.per_period
        rows[POOLED] = _row([per[c.period] for c in trained if c.period in per])
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "model"
    return frame
