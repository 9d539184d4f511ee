"""The one-process grid search (dsm.models.search.search_local): scikit-learn's choice, and its failures named."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV, KFold

from dsm.models.estimators import make_estimator, param_grid
from dsm.models.search import SCORING, SearchError, search_local


def _table(n: int = 61) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.random((n, 3)).astype(np.float32)  # folds of 21, 20 and 20
    return X, X @ np.array([0.2, -0.1, 0.3]) + rng.normal(0, 0.02, n)


@pytest.mark.parametrize(("name", "grid", "some_fail"), [
    ("xgb", {"n_estimators": [10], "max_depth": [1, 3, 6]}, False),
    ("rf", {"n_estimators": [8, 16], "max_depth": [2, 4]}, False),
    ("svr", {"kernel": ["precomputed", "rbf", "linear"], "C": [0.5, 2.0]}, True),  # precomputed fails in fit
])  # fmt: skip
def test_search_local_chooses_as_sklearn_grid_search(name: str, grid: dict, some_fail: bool) -> None:
    """Same folds, the same scores, the same choice and the same refitted model as scikit-learn's
    GridSearchCV(error_score=nan), failed candidates included."""
    X, y = _table()
    ours = search_local(name, X, y, grid, folds=3, seed=2)
    ref = GridSearchCV(make_estimator(name, 2), param_grid(name, grid), scoring=SCORING, error_score=np.nan,
                       cv=KFold(n_splits=3, shuffle=True, random_state=2), refit=True, n_jobs=1)  # fmt: skip
    if some_fail:
        with pytest.warns(FitFailedWarning), pytest.warns(UserWarning, match="non-finite"):
            ref.fit(X, y)
        assert np.isnan(ref.cv_results_["mean_test_score"]).any()  # the grid does have failed candidates
    else:
        ref.fit(X, y)
    assert ours.best_params == ref.best_params_
    assert ours.cv_rmse == -ref.best_score_
    assert ours.n_candidates == len(ref.cv_results_["params"])
    np.testing.assert_array_equal(ours.estimator.predict(X), ref.best_estimator_.predict(X))


@pytest.mark.parametrize("grid", [{"kernel": ["precomputed"]}, {"kernel": ["precomputed"], "C": [0.5, 2.0]}])
def test_a_grid_whose_every_fit_fails_names_the_model_and_the_cause(grid: dict) -> None:
    X, y = _table()
    with pytest.raises(SearchError, match=r"every candidate of model 'svr' failed to fit") as info:
        search_local("svr", X, y, grid, folds=3, seed=2)
    assert "ValueError" in str(info.value) and "square matrix" in str(info.value)  # what the first candidate raises
