"""Blocked cross-validation (dsm.models.blockcv) and model features (dsm.features)."""

from __future__ import annotations

import numpy as np
import pytest

from dsm.features import doy_terms, feature_layer, feature_layers, feature_names, source_of
from dsm.models.blockcv import block_folds, candidates, fit_fold, out_of_fold, score_curves
from dsm.samples import aggregate


def _samples(n_days: int = 64, n_rows: int = 6, n_cols: int = 6):
    d, r, c = np.meshgrid(np.arange(n_days), np.arange(n_rows) + 70, np.arange(n_cols) + 770, indexing="ij")
    dates = np.datetime64("2016-01-01") + d.ravel().astype("timedelta64[D]")
    return dates, r.ravel(), c.ravel()


def test_block_folds_keep_every_block_of_days_and_cells_in_one_fold():
    dates, rows, cols = _samples()
    fold = block_folds(dates, rows, cols, n_folds=4, block_days=16, block_cells=2, seed=3)
    day_block = (dates - dates.min()).astype(int) // 16
    blocks = {}
    for key, k in zip(zip(day_block, rows // 2, cols // 2), fold):
        blocks.setdefault(key, set()).add(int(k))
    assert all(len(v) == 1 for v in blocks.values())  # a block never straddles folds
    assert len(blocks) == 4 * 3 * 3
    counts = np.bincount(fold, minlength=4)
    assert counts.min() == counts.max()  # 36 blocks of equal size dealt to 4 folds
    # the same cells on other days, and other cells on the same days, land in other folds
    one = fold[(rows == 70) & (cols == 770)]
    assert len(set(one.tolist())) > 1
    again = block_folds(dates, rows, cols, 4, 16, 2, seed=3)
    other = block_folds(dates, rows, cols, 4, 16, 2, seed=4)
    assert np.array_equal(fold, again) and not np.array_equal(fold, other)


def test_score_curves_pools_folds_by_size_and_finds_the_best_round():
    a = np.array([0.5, 0.3, 0.2, 0.25])
    b = np.array([0.4, 0.4, 0.1, 0.05])
    s = score_curves({"max_depth": 3}, [a, b], [3, 1])
    mse = (3 * a**2 + b**2) / 4
    assert s.n_rounds == int(np.argmin(mse)) + 1
    assert s.rmse == pytest.approx(float(np.sqrt(mse.min())))
    assert s.record()["params"] == {"max_depth": 3}


def test_candidates_enumerate_the_grid():
    grid = candidates({"max_depth": [3, 5], "eta": [0.1]})
    assert grid == [{"eta": 0.1, "max_depth": 3}, {"eta": 0.1, "max_depth": 5}]


def test_fold_fits_give_held_out_predictions_that_match_the_fold_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 + rng.normal(0, 0.1, 600)).astype(np.float32)
    fold = np.arange(600) % 3
    fits = [fit_fold(X, y, fold, k, {"max_depth": 3, "learning_rate": 0.1}, 80) for k in range(3)]
    curves, boosters, sizes = zip(*fits)
    assert sizes == (200, 200, 200) and all(c.shape == (80,) for c in curves)
    best = score_curves({}, list(curves), list(sizes))
    oof = out_of_fold(X, fold, list(boosters), best.n_rounds)
    assert np.isfinite(oof).all()
    held_rmse = float(np.sqrt(np.mean((oof - y) ** 2)))
    assert held_rmse == pytest.approx(best.rmse, rel=0.05)  # pooled curve minimum = the OOF error there
    assert held_rmse < 0.5 * float(np.std(y))


def test_aspect_becomes_sine_and_cosine_averaged_as_vectors():
    assert feature_names(["lst", "aspect", "dem"]) == ("lst", "aspect_sin", "aspect_cos", "dem")
    assert feature_names(["aspect"], circular=False) == ("aspect",)
    assert source_of("aspect_cos") == "aspect" and source_of("lst") == "lst"
    # a cell of north-facing pixels (350 and 10 degrees): the arithmetic mean says south (180)
    aspect = np.where(np.arange(36 * 36).reshape(36, 36) % 2 == 0, 350.0, 10.0).astype(np.float32)
    land = np.ones((36, 36), bool)
    assert aggregate(aspect, land)[0, 0] == pytest.approx(180.0)
    layers = feature_layers({"aspect": aspect}, ["aspect_sin", "aspect_cos"])
    cos = aggregate(layers["aspect_cos"], land)[0, 0]
    sin = aggregate(layers["aspect_sin"], land)[0, 0]
    assert cos == pytest.approx(np.cos(np.deg2rad(10.0)), abs=1e-6) and sin == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(feature_layer("aspect_sin", np.array([np.nan])))[0]


def test_doy_terms_are_a_unit_circle_over_the_year():
    t = doy_terms(np.array(["2016-01-01", "2016-07-01"], dtype="datetime64[ns]"))
    assert t.shape == (2, 2)
    np.testing.assert_allclose((t**2).sum(axis=1), 1.0, rtol=1e-6)
    assert t[0, 1] > 0.99 and t[1, 1] < -0.99
