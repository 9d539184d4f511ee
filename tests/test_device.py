"""``cluster.device`` reaches every XGBoost model dsm builds (no GPU needed to check that)."""

from __future__ import annotations

import inspect

import pytest

from dsm.models import pooled, variants
from dsm.models.estimators import make_estimator
from dsm.blocks import BlockJob, load_model


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
