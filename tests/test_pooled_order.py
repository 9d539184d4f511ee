"""The pooled model of the paper's method is the same whatever order the periods finished in."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dsm.config import TrainingConfig
from dsm.features import design_matrix
from dsm.models.period import period_split
from dsm.models.pooled import train_pooled


def _table(start: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=16).repeat(25)
    x = rng.normal(size=(len(dates), 2)).astype(np.float32)
    sm = 0.2 + 0.05 * x[:, 0] - 0.02 * x[:, 1] + 0.01 * rng.normal(size=len(dates))
    return pd.DataFrame({"date": dates, "a": x[:, 0], "b": x[:, 1], "sm": sm.astype(np.float32)})


def test_the_pooled_model_takes_the_periods_in_period_order_whatever_order_they_finished(client):
    """Periods train concurrently (``training.concurrent_periods``) and finish in any order;
    the pooled model and its card are the same either way (rows in period order)."""
    tables = {name: _table(start, seed) for seed, (name, start) in
              enumerate((("2016161", "2016-06-09"), ("2016177", "2016-06-25"), ("2016193", "2016-07-11")))}
    cfg = TrainingConfig()
    splits = {k: period_split(t, k, cfg) for k, t in tables.items()}
    params = {"n_estimators": 30, "max_depth": 3, "subsample": 0.6, "learning_rate": 0.3}
    model, card = train_pooled(client, tables, splits, ["a", "b"], params, seed=1)
    shuffled = {k: tables[k] for k in ("2016193", "2016161", "2016177")}
    model2, card2 = train_pooled(client, shuffled, splits, ["a", "b"], params, seed=1)
    assert card["periods"] == card2["periods"] == sorted(tables)
    X = np.concatenate([design_matrix(t, ["a", "b"]) for t in tables.values()])
    np.testing.assert_array_equal(model.predict(X), model2.predict(X))
    assert {k: card[k] for k in ("train", "test", "per_period")} == {k: card2[k] for k in ("train", "test", "per_period")}
