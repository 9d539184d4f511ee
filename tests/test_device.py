"""``cluster.device`` reaches every XGBoost model dsm builds (no GPU needed to check that)."""

from __future__ import annotations

import inspect

import pytest

from dsm.blocks import BlockJob, load_model
from dsm.models import pooled, variants
from dsm.models.estimators import make_estimator


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_xgboost_estimators_take_the_configured_device(device):
    assert make_estimator("xgb", 3, device).get_params()["device"] == device
    assert variants.quantile_model((0.05, 0.95), 3, device).get_params()["device"] == device
    assert variants.refit_chosen("xgb", {"max_depth": 3}, 3, device).get_params()["device"] == device
    assert make_estimator("rf", 3, device).get_params()["n_jobs"] == 1  # scikit-learn models stay on the CPU


def test_cpu_is_the_default_everywhere():
    assert make_estimator("xgb").get_params()["device"] == "cpu"
    for fn in (pooled.train_pooled, variants.fit_variant, load_model):
        assert inspect.signature(fn).parameters["device"].default == "cpu"
    assert BlockJob.__dataclass_fields__["device"].default == "cpu"


def test_prediction_applies_boosters_in_place_without_a_dmatrix(monkeypatch):
    """The 1 km kernel predicts with ``Booster.inplace_predict`` straight from the float32 block
    (no DMatrix: a copy of every block's features, and XGBoost's slower path)."""
    import numpy as np
    import xgboost

    from dsm.block_models import apply_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4)).astype(np.float32)
    X[::7, 1] = np.nan  # missing values go through as NaN
    booster = xgboost.train({"max_depth": 3}, xgboost.DMatrix(X, label=X[:, 0] - X[:, 2]), num_boost_round=5)
    expected = booster.predict(xgboost.DMatrix(X))

    def refuse(*args, **kwargs):
        raise AssertionError("prediction built a DMatrix")

    monkeypatch.setattr(xgboost.DMatrix, "__init__", refuse)
    np.testing.assert_allclose(apply_model(booster, X), expected, rtol=1e-6)
