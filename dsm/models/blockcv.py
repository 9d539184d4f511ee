"""Cross-validation on blocks of days and of cells, with the number of rounds chosen by it (pure).

Samples of neighbouring days and neighbouring cells share their errors (weather, the same
SMAP swath, the same unseen soil), so a random or date-stratified split scores a model on
near-copies of its training rows and rewards overfitting. Here every sample belongs to a
*block*: ``block_days`` consecutive days (counted from the first sampled day) times
``block_cells`` x ``block_cells`` SMAP cells. Whole blocks are dealt to folds at random
(seeded), so a held-out sample's own day-block and cell-block were never seen together.

The boosting rounds are not a grid value: each fold's model is grown to ``max_rounds`` with
its held-out RMSE recorded after every round (stopping early once it has not improved for
``patience`` rounds; the curve is then held at its last value), the folds' mean squared errors
are averaged round by round, and the candidate's score is the minimum of that mean curve, at
the round where it is reached. The final model is refitted on every sample with that many
rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost
from sklearn.model_selection import ParameterGrid

PATIENCE = 50


def block_folds(dates: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_folds: int, block_days: int,
                block_cells: int, seed: int = 0) -> np.ndarray:
    """The fold (``0 .. n_folds - 1``) of every sample, dealt by blocks of days and cells.

    Parameters
    ----------
    dates
        Sample dates (datetime64).
    rows, cols
        Global 36 km row and column of each sample.
    n_folds
        Number of folds.
    block_days, block_cells
        Block size in days and in cells per side.
    seed
        Seed of the deal.
    """
    d = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)
    day_block = (d - d.min()) // block_days if d.size else d
    rb, cb = np.asarray(rows) // block_cells, np.asarray(cols) // block_cells
    keys = np.stack([day_block, rb, cb], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of_block = np.empty(len(uniq), np.int64)
    fold_of_block[order] = np.arange(len(uniq)) % n_folds
    return fold_of_block[inverse.ravel()]


def candidates(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every hyperparameter combination of ``grid``, in a fixed order."""
    return [dict(sorted(p.items())) for p in ParameterGrid({k: list(v) for k, v in grid.items()})]


def make_regressor(params: Mapping[str, Any], n_rounds: int, seed: int, device: str = "cpu",
                   n_jobs: int = 1) -> xgboost.XGBRegressor:
    """The in-memory XGBoost regressor of one candidate."""
    return xgboost.XGBRegressor(**dict(params), n_estimators=n_rounds, tree_method="hist", random_state=seed,
                                device=device, n_jobs=n_jobs)


def fit_fold(X: np.ndarray, y: np.ndarray, fold: np.ndarray, k: int, params: Mapping[str, Any], max_rounds: int,
             seed: int = 0, device: str = "cpu") -> tuple[np.ndarray, bytes, int]:
    """Fit on every fold but ``k`` and record the held-out RMSE after each round (runs on a worker).

    Returns the RMSE curve (length ``max_rounds``, held at its last value after an early
    stop), the booster (XGBoost UBJSON bytes) and the number of held-out samples.
    """
    train, valid = fold != k, fold == k
    reg = make_regressor(params, max_rounds, seed, device)
    reg.set_params(eval_metric="rmse", early_stopping_rounds=PATIENCE)
    reg.fit(X[train], y[train], eval_set=[(X[valid], y[valid])], verbose=False)
    curve = np.asarray(reg.evals_result()["validation_0"]["rmse"], np.float64)
    full = np.full(max_rounds, curve[-1])
    full[: curve.size] = curve
    return full, bytes(reg.get_booster().save_raw("ubj")), int(valid.sum())


@dataclass(frozen=True)
class CvScore:
    """A candidate's cross-validated score: RMSE at the best number of rounds."""

    params: dict[str, Any]
    rmse: float
    n_rounds: int

    def record(self) -> dict[str, Any]:
        """JSON-ready form for the model card."""
        return {"params": self.params, "cv_rmse": round(self.rmse, 6), "n_rounds": self.n_rounds}


def score_curves(params: Mapping[str, Any], curves: Sequence[np.ndarray], sizes: Sequence[int]) -> CvScore:
    """Pool the folds' RMSE curves (as mean squared errors weighted by fold size) and find the best round."""
    w = np.asarray(sizes, np.float64)
    mse = (np.stack(curves) ** 2 * w[:, None]).sum(axis=0) / w.sum()
    best = int(np.argmin(mse))
    return CvScore(dict(params), float(np.sqrt(mse[best])), best + 1)


def out_of_fold(X: np.ndarray, fold: np.ndarray, boosters: Sequence[bytes], n_rounds: int) -> np.ndarray:
    """Held-out predictions of every sample by the fold model that did not see it, at ``n_rounds``."""
    out = np.full(X.shape[0], np.nan, np.float32)
    for k, raw in enumerate(boosters):
        rows = fold == k
        if not rows.any():
            continue
        booster = xgboost.Booster(model_file=bytearray(raw))
        booster.set_param({"nthread": 1})
        # a fold that stopped early holds fewer rounds: its curve was held flat after them
        rounds = min(n_rounds, booster.num_boosted_rounds())
        out[rows] = booster.inplace_predict(X[rows], iteration_range=(0, rounds))
    return out


__all__ = ["block_folds", "candidates", "make_regressor", "fit_fold", "CvScore", "score_curves", "out_of_fold"]
