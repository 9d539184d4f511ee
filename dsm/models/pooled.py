"""One XGBoost model over the samples of every period, with day-of-year terms.

Beyond the paper, which notes that cold-season periods have too few samples for a model of
their own. The pooled model is trained with ``xgboost.dask`` on distributed data: the union
of every period's *train* half (the same date-stratified split as the per-period models)
with two extra features, ``doy_sin = sin(2 pi doy / 365.25)`` and ``doy_cos``. Its scores on
the union of the *test* halves, overall and per period, go in its card beside the
per-period scores, so the two approaches compare on the same held-out samples.

Hyperparameters are fixed (``training.pooled_params``): a ``DaskXGBRegressor`` must not be
nested in a dask-ml search (it hangs).

Every ``xgboost.dask`` fit here (:func:`fit_dask`, also the fusion method's refits) puts the rows
on **one worker** when they fit one (:func:`fit_workers`): XGBoost's distributed histogram
method sketches each worker's rows on its own and merges the sketches, so a model fitted on
rows split across workers depends on how many workers held them (on a 10,848-row table the
predictions of the 1- and 2-worker models differed by up to 0.6 of a target of standard
deviation 1.4), while a model fitted on one worker is the same, bit for bit, on any cluster. On
one worker the fit is also faster for such tables (3.2 s against 5.5 s on two workers, 400
rounds, scratch; the rounds' allreduce between processes costs more than the split saves),
and the other workers are left free for other tasks. Tables larger than
:data:`ONE_WORKER_MAX_BYTES`, or a quarter of a worker's memory limit, are split evenly across
all the workers.

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

ONE_WORKER_MAX_BYTES = 2**30
"""Feature bytes (float32) up to which an ``xgboost.dask`` fit keeps its rows on one worker."""

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


def scattered_rows(client: Client, X: np.ndarray, y: np.ndarray, parts: int,
                   workers: Sequence[str] | None = None) -> tuple[da.Array, da.Array]:
    """``X`` and ``y`` as Dask arrays of ``parts`` even row blocks, scattered to the workers
    (``workers``: to these; data sent once, not embedded in a task graph), in the order of the rows."""
    rows = max(1, -(-len(y) // parts))
    blocks = [(X[i:i + rows], y[i:i + rows]) for i in range(0, len(y), rows)]
    to = list(workers) if workers else None
    xf = client.scatter([bx for bx, _ in blocks], hash=False, workers=to)
    yf = client.scatter([by for _, by in blocks], hash=False, workers=to)
    Xs = [da.from_delayed(f, bx.shape, X.dtype) for f, (bx, _) in zip(xf, blocks, strict=True)]
    ys = [da.from_delayed(f, by.shape, y.dtype) for f, (_, by) in zip(yf, blocks, strict=True)]
    return da.concatenate(Xs), da.concatenate(ys)


def fit_workers(nbytes: int, memory_limits: Sequence[int]) -> int:
    """How many workers an ``xgboost.dask`` fit on ``nbytes`` of features spreads its rows over
    (pure): one while they are at most :data:`ONE_WORKER_MAX_BYTES` and a quarter of the smallest
    worker memory limit (0: none), else all of them (module docstring)."""
    n = max(1, len(memory_limits))
    limits = [m for m in memory_limits if m]
    fits = nbytes <= ONE_WORKER_MAX_BYTES and (not limits or 4 * nbytes <= min(limits))
    return 1 if fits else n


def memory_limits(client: Client) -> list[int]:
    """Each worker's memory limit in bytes (0: none), for :func:`fit_workers`."""
    return [int(w.get("memory_limit") or 0) for w in client.scheduler_info(n_workers=-1).get("workers", {}).values()]


def fit_dask(client: Client, X: np.ndarray, y: np.ndarray, params: Mapping[str, Any], seed: int = 0,
             device: str = "cpu", name: str = "XGBoost model", worker: str | None = None
             ) -> tuple[xgboost.XGBRegressor, int]:
    """Fit an XGBoost regressor with ``xgboost.dask`` on the workers and return it as an
    in-memory ``XGBRegressor``, with the number of workers that held the rows: one when they fit
    one (:func:`fit_workers`; the model is then independent of the cluster; ``worker``: that
    one), else the rows split evenly between all of them. Fits may run side by side from
    several threads (``xgboost.dask`` locks the workers of each fit), with nothing else on their
    workers (see :func:`dsm.models.fusion_train._refit`).

    Raises
    ------
    WorkerLostError
        A worker was lost during the fit (``name`` names the model in its message).
    """
    parts = fit_workers(X.nbytes, memory_limits(client))
    Xd, yd = scattered_rows(client, X, y, parts, [worker] if worker is not None and parts == 1 else None)
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
    return model, parts


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
    model, fit_on = fit_dask(client, Xtr, ytr, params, seed, device, name="pooled model (training.pooled)")
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
        "fit_workers": fit_on,
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
