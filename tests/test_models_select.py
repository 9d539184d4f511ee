"""Scores, selection, fallback chain, estimators' grids and the report tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import mean_squared_error

from dsm.config import MODEL_NAMES, from_dict
from dsm.errors import ConfigError
from dsm.models.estimators import make_estimator, param_grid
from dsm.models.period_cards import period_card_from_dict
from dsm.models.report import table4
from dsm.models.select import choose, resolve_fallbacks, scores


def test_scores_equal_scikit_learn_and_scipy():
    rng = np.random.default_rng(0)
    obs = rng.random(200)
    pred = obs + rng.normal(0, 0.1, 200)
    s = scores(pred, obs)
    assert s["rmse"] == pytest.approx(math.sqrt(mean_squared_error(obs, pred)), rel=1e-12)
    assert s["r"] == pytest.approx(pearsonr(pred, obs).statistic, rel=1e-12)
    assert s["n"] == 200


def _m(train, test):
    return {"train": {"rmse": train}, "test": {"rmse": test}}


def test_choose_lowest_mean_of_train_and_test_rmse():
    assert choose({"mlr": _m(0.04, 0.04), "rf": _m(0.01, 0.05), "xgb": _m(0.0, 0.07)}) == "rf"
    assert choose({"mlr": _m(0.02, 0.04), "rf": _m(0.04, 0.02)}) == "mlr"  # tie: earlier
    assert choose({"mlr": _m(float("nan"), 0.01), "rf": _m(0.1, 0.1)}) == "rf"
    with pytest.raises(ValueError):
        choose({"mlr": _m(float("nan"), 0.01)})


def test_fallback_chain():
    ps = ["a", "b", "c", "d", "e", "f"]
    assert resolve_fallbacks(ps, ["c", "e"]) == {"a": "c", "b": "c", "c": "c", "d": "c", "e": "e", "f": "e"}
    assert resolve_fallbacks(ps, ["a"]) == dict.fromkeys(ps, "a")
    assert resolve_fallbacks(ps, []) == dict.fromkeys(ps)


def test_unknown_model_and_empty_grid_are_config_errors():
    base = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-06-10"},
            "stores": {"cube": "/nonexistent"}}
    with pytest.raises(ConfigError, match="unknown model name.*'lasso'"):
        from_dict({**base, "training": {"models": ["mlr", "lasso"]}})
    with pytest.raises(ConfigError, match="grid of model 'svr' is empty"):
        from_dict({**base, "training": {"grids": {"svr": {}}}})
    with pytest.raises(ConfigError, match="no values for"):
        from_dict({**base, "training": {"grids": {"rf": {"max_depth": []}}}})
    with pytest.raises(ConfigError, match="no parameter 'depth'"):
        param_grid("rf", {"depth": [3]})
    with pytest.raises(ConfigError, match="unknown model name"):
        make_estimator("lasso")


def test_default_grids_fit_their_estimators():
    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-06-10"},
                     "stores": {"cube": "/nonexistent"}})
    for name in MODEL_NAMES:
        grid = param_grid(name, cfg.training.grids[name])
        make_estimator(name).set_params(**{k: v[0] for k, v in grid.items()})
    assert cfg.training.min_samples == 100


def test_table4_means_and_combination():
    cards = [
        {"period": "p1", "status": "trained", "chosen": "mlr",
         "models": {"mlr": {"train": {"r": 0.8, "rmse": 0.02}, "test": {"r": 0.6, "rmse": 0.04}},
                    "rf": {"train": {"r": 0.9, "rmse": 0.01}, "test": {"r": 0.5, "rmse": 0.06}}}},
        {"period": "p2", "status": "trained", "chosen": "rf",
         "models": {"mlr": {"train": {"r": 0.6, "rmse": 0.04}, "test": {"r": 0.4, "rmse": 0.06}},
                    "rf": {"train": {"r": 0.7, "rmse": 0.03}, "test": {"r": 0.7, "rmse": 0.03}}}},
        {"period": "p3", "status": "reused", "reused_from": "p2"},
    ]
    t = table4([period_card_from_dict(c) for c in cards])
    assert t.loc["mlr", "train_r"] == pytest.approx(0.7)
    assert t.loc["rf", "test_rmse"] == pytest.approx(0.045)
    assert t.loc["combination", "test_r"] == pytest.approx(0.65)
    assert t.loc["combination", "n_periods"] == 2
