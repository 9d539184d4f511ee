"""One XGBoost model over the samples of every period, with day-of-year terms.

Beyond the paper, which notes that cold-season periods have too few samples for a model of
their own. The pooled model is trained with ``xgboost.dask`` on distributed data: the union
of every period's *train* half (the same date-stratified split as the per-period models)
with two extra features, ``doy_sin = sin(2 pi doy / 365.25)`` and ``doy_cos``. Its scores on
the union of the *test* halves, overall and per period, go in its card beside the
per-period scores, so the two approaches compare on the same held-out samples.

Hyperparameters are fixed (``training.pooled_params``): a ``DaskXGBRegressor`` must not be
nested in a dask-ml search (it hangs).

A worker lost during an ``xgboost.dask`` fit breaks XGBoost's collective (a C++ "Ring
allgather failed" error on the surviving workers) or kills the task: :func:`fit_dask` raises
:class:`~dsm.errors.WorkerLostError` instead, one line naming the model (see
:func:`worker_lost`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xgboost
import xgboost.dask  # noqa: F401  (not loaded by ``import xgboost``)
from distributed import Client
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from dsm.errors import WorkerLostError
from dsm.features import DOY_FEATURES, design_matrix
from dsm.models.estimators import library_reason
from dsm.models.select import scores
from dsm.models.split import Split
from dsm.models.xgblog import route_worker_logs
from dsm.samples import TARGET

# words of XGBoost's collective (allreduce / allgather over the workers' sockets) errors
_COLLECTIVE = ("/collective/", "allgather", "allreduce", "scatter reduce", "broadcast failed", "tracker",
               "socket error", "connection reset", "broken pipe", "failed to connect to other workers")


def worker_lost(exc: BaseException, model: str) -> WorkerLostError | None:
    """The :class:`WorkerLostError` that ``exc`` stands for, when it is the failure of a
    distributed XGBoost fit whose worker was lost (else None: a different error).

    Parameters
    ----------
    exc
        What the fit raised: XGBoost's error from a broken collective (the surviving workers'
        "Ring allgather failed", a closed socket), distributed's ``KilledWorker`` or
        ``CommClosedError``.
    model
        The model being fitted, for the message.
    """
    if isinstance(exc, xgboost.core.XGBoostError):
        if not any(word in str(exc).lower() for word in _COLLECTIVE):
            return None
    elif not isinstance(exc, (KilledWorker, CommClosedError)):
        return None
    return WorkerLostError(f"{model}: a Dask worker was lost during the distributed xgboost.dask fit "
                           f"({type(exc).__name__}: {library_reason(exc, 200)}); rerun to resume: what is "
                           "already stored is kept and this fit starts again")


def scattered_rows(client: Client, X: np.ndarray, y: np.ndarray, parts: int) -> tuple[da.Array, da.Array]:
    """``X`` and ``y`` as Dask arrays of ``parts`` even row blocks, scattered to the workers
    (data sent once, not embedded in a task graph), in the order of the rows."""
    rows = max(1, -(-len(y) // parts))
    blocks = [(X[i:i + rows], y[i:i + rows]) for i in range(0, len(y), rows)]
    xf = client.scatter([bx for bx, _ in blocks], hash=False)
    yf = client.scatter([by for _, by in blocks], hash=False)
    Xs = [da.from_delayed(f, bx.shape, X.dtype) for f, (bx, _) in zip(xf, blocks, strict=True)]
    ys = [da.from_delayed(f, by.shape, y.dtype) for f, (_, by) in zip(yf, blocks, strict=True)]
    return da.concatenate(Xs), da.concatenate(ys)


def fit_dask(client: Client, X: np.ndarray, y: np.ndarray, params: Mapping[str, Any], seed: int = 0,
             device: str = "cpu", name: str = "XGBoost model") -> xgboost.XGBRegressor:
    """Fit an XGBoost regressor with ``xgboost.dask`` on the workers (the rows split evenly
    between them) and return it as an in-memory ``XGBRegressor``.

    Raises
    ------
    WorkerLostError
        A worker was lost during the fit (``name`` names the model in its message).
    """
    n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
    Xd, yd = scattered_rows(client, X, y, n_workers)
    route_worker_logs(client)  # the collective's "got rank" lines to logging, not the terminal
    reg = xgboost.dask.DaskXGBRegressor(**dict(params), tree_method="hist", random_state=seed, device=device)
    reg.client = client
    try:
        reg.fit(Xd, yd)
    except Exception as exc:
        lost = worker_lost(exc, name)
        if lost is None:
            raise
        raise lost from exc
    model = xgboost.XGBRegressor()
    model.load_model(bytearray(reg.get_booster().save_raw("json")))
    return model


def train_pooled(client: Client, tables: Mapping[str, pd.DataFrame], splits: Mapping[str, Split],
                 predictors: Sequence[str], params: Mapping[str, Any], seed: int = 0, device: str = "cpu"
                 ) -> tuple[xgboost.XGBRegressor, dict[str, Any]]:
    """Fit the pooled model with ``xgboost.dask`` and score it.

    Parameters
    ----------
    client
        Cluster client; training runs on its workers.
    tables, splits
        Every period's sample table and date split, keyed by period name; the rows are taken in
        period order, so the model does not depend on the order the periods finished in.
    predictors
        Predictor columns, in order.
    params
        XGBoost parameters (``n_estimators``, ``max_depth``, ...).
    seed
        XGBoost's random state.
    device
        XGBoost's device on the workers (``cluster.device``: ``"cuda"`` on GPU workers).

    Returns
    -------
    model, card
        An in-memory ``XGBRegressor`` holding the trained booster, and the pooled card.
    """
    keys = sorted(k for k in tables if len(tables[k]))  # period order, whatever order they finished in
    if not keys:
        raise ValueError("no period has samples: the pooled model cannot be trained")
    parts = {k: (design_matrix(tables[k], predictors), tables[k][TARGET].to_numpy(np.float32)) for k in keys}
    Xtr = np.concatenate([parts[k][0][splits[k].train] for k in keys])
    ytr = np.concatenate([parts[k][1][splits[k].train] for k in keys])
    model = fit_dask(client, Xtr, ytr, params, seed, device, name="pooled model (training.pooled)")
    per_period: dict[str, Any] = {}
    for k in keys:
        X, y = parts[k]
        s = splits[k]
        per_period[k] = {"train": scores(model.predict(X[s.train]), y[s.train]) if s.train.size else None,
                         "test": scores(model.predict(X[s.test]), y[s.test]) if s.test.size else None}
    Xte = np.concatenate([parts[k][0][splits[k].test] for k in keys])
    yte = np.concatenate([parts[k][1][splits[k].test] for k in keys])
    features = [*predictors, *DOY_FEATURES]
    gain = model.get_booster().get_score(importance_type="gain")
    imp = np.array([gain.get(f"f{i}", 0.0) for i in range(len(features))], dtype=np.float64)
    imp = imp / imp.sum() if imp.sum() > 0 else imp
    card = {
        "period": "pooled",
        "status": "trained",
        "model_name": "xgb",
        "trained_with": "xgboost.dask.DaskXGBRegressor",
        "features": features,
        "params": dict(params),
        "n_samples": int(sum(len(tables[k]) for k in keys)),
        "n_train": int(len(ytr)),
        "n_test": int(len(yte)),
        "periods": keys,
        "train": scores(model.predict(Xtr), ytr),
        "test": scores(model.predict(Xte), yte) if len(yte) else None,
        "per_period": per_period,
        "importance": {"xgb_gain": dict(zip(features, map(float, imp), strict=True))},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return model, card
