"""An ``xgboost.dask`` fit keeps a table that fits one worker on one worker, so its model is the
one a plain fit gives, whatever the cluster; a larger table is split across all the workers."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost

from dsm.models import pooled
from dsm.models.pooled import ONE_WORKER_MAX_BYTES, fit_dask, fit_workers

PARAMS = {"n_estimators": 40, "max_depth": 4, "learning_rate": 0.2}


def _table(rows: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(rows, 6)).astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 1] ** 2 + 0.3 * rng.normal(size=rows)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan  # missing predictors, as in the samples
    return X, y


def _plain(X: np.ndarray, y: np.ndarray) -> xgboost.XGBRegressor:
    return xgboost.XGBRegressor(**PARAMS, tree_method="hist", random_state=7, n_jobs=1).fit(X, y)


def test_the_rows_stay_on_one_worker_while_they_fit_one():
    assert fit_workers(1000, []) == 1  # no limit known
    assert fit_workers(1000, [4000, 8000]) == 1  # a quarter of the smallest limit
    assert fit_workers(1001, [4000, 8000]) == 2
    assert fit_workers(ONE_WORKER_MAX_BYTES, [0, 0, 0]) == 1  # 0: no memory limit
    assert fit_workers(ONE_WORKER_MAX_BYTES + 1, [0, 0, 0]) == 3


def test_a_table_that_fits_one_worker_gives_the_model_of_a_plain_fit(client):
    """On the two workers the fit is the plain single-process fit, tree for tree and bit for bit
    in its predictions: the model does not depend on the cluster it was trained on."""
    X, y = _table()
    model, workers = fit_dask(client, X, y, PARAMS, seed=7)
    plain = _plain(X, y)
    assert workers == 1
    assert model.get_booster().get_dump() == plain.get_booster().get_dump()
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))


def test_a_table_too_large_for_one_worker_is_split_across_all_of_them(client, monkeypatch):
    X, y = _table()
    monkeypatch.setattr(pooled, "ONE_WORKER_MAX_BYTES", X.nbytes - 1)
    model, workers = fit_dask(client, X, y, PARAMS, seed=7)
    assert workers == 2
    # each worker sketched its own rows: other split candidates than the plain fit's
    assert model.get_booster().get_dump() != _plain(X, y).get_booster().get_dump()
    assert np.corrcoef(model.predict(X), y)[0, 1] > 0.8  # still a fit of the same table


def test_the_workers_log_routing_runs_once_per_worker_process():
    """Each fit routes XGBoost's native log of the workers not routed before: a second fit waits
    for no task on them; a restarted worker (a new process) is routed again."""
    from distributed import Client, get_task_stream

    from dsm.cluster import local_cluster
    from dsm.models.xgblog import route_worker_logs

    def routed(c: Client) -> int:
        with get_task_stream(c) as stream:
            route_worker_logs(c)
        return sum(str(t["key"]).startswith("dsm-xgboost-log") for t in stream.data)

    with local_cluster(1, 2, dashboard_address=":0") as cluster, Client(cluster) as c:
        assert routed(c) == 2  # one task per thread
        assert routed(c) == 0
        c.restart()
        assert routed(c) == 2


def test_a_variant_knows_its_design_matrix_bytes_before_making_it():
    """The refits choose their workers from :meth:`Variant.design_bytes`, before any matrix is made."""
    import pandas as pd

    from dsm.models.fusion_train import Variant

    rng = np.random.default_rng(5)
    table = pd.DataFrame({"date": pd.date_range("2016-06-01", periods=50).repeat(4), "a": rng.normal(size=200),
                          "b": rng.normal(size=200), "sm": rng.random(200)})
    v = Variant("full", ("a", "b"), ("a", "b"), rng.random(200) < 0.7, {}, {})
    X, y = v.design(table)
    assert v.design_bytes() == X.nbytes and X.dtype == np.float32 and len(y) == v.rows.sum()
