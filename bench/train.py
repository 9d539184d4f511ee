"""Per-period training on the cluster against the same grid searches run sequentially.

Builds (or reuses) the default twin region (8 x 8 SMAP cells, 2016), then in the same run:

* cluster:    ``dsm.models.train.train`` on a LocalCluster of 2 single-threaded worker
              processes: sample tables computed on the workers, periods concurrently, every
              candidate x fold fit a task (dask-ml ``GridSearchCV``), spatial check refits on
              the workers; models and cards written to a fresh store;
* sequential: the same sample tables computed with dask's synchronous scheduler and the same
              per-period work (split, the same grids with scikit-learn ``GridSearchCV``,
              n_jobs=1, the spatial check) one period after another in this process.

The pooled model is left out of both (it has no sequential twin). Prints both wall times and
their ratio (sequential / cluster: > 1 means the cluster is faster).

Run: ``.venv/bin/python bench/train.py [--periods N] [--workdir DIR] [--grids small|default]``
(``--periods N``: N consecutive periods from mid-June, where samples are plentiful).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import dask

from dsm import config as config_mod
from dsm.cube import open_cube
from dsm.models.period import fit_period
from dsm.models.search import search_local
from dsm.periods import periods
from dsm.samples import sample_graph
from dsm.synthetic import TwinSpec

SMALL_GRIDS = {
    "mlr": {"fit_intercept": [True]},
    "svr": {"C": [0.3, 1.0, 3.0], "epsilon": [0.01]},
    "ann": {"hidden_layer_sizes": [[32]], "alpha": [1e-4, 1e-2]},
    "rf": {"n_estimators": [100], "max_depth": [8, 12]},
    "xgb": {"n_estimators": [200], "max_depth": [4, 6]},
}


def _local_search(client: Any, name: str, X: Any, y: Any, grid: Any, folds: int = 3, seed: int = 0,
                  device: str = "cpu", one_task_max: int = 0) -> Any:
    return search_local(name, X, y, grid, folds=folds, seed=seed, device=device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--periods", type=int, default=0, help="limit to N periods (0: all 23 of 2016)")
    ap.add_argument("--workdir", default=None, help="folder holding (or to hold) the default twin")
    ap.add_argument("--grids", choices=["small", "default"], default="small")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from dsm.run import build_twin_stores
    from dsm.models.train import train

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-train-"))
    spec = TwinSpec.of_size("default", 42)
    r = spec.region
    training: dict[str, Any] = {"pooled": False}
    if args.grids == "small":
        training["grids"] = SMALL_GRIDS
    raw = {"region": {"cells": [r.row0, r.col0, r.nrows, r.ncols]},
           "dates": {"start": spec.start.isoformat(), "end": spec.end.isoformat()},
           "stores": {"cube": str(work / "cube.zarr"), "truth": str(work / "truth.zarr"),
                      "stations": str(work / "stations"), "models": str(work / "models-bench")},
           "chunks": {"space": 144, "time": 8}, "training": training}
    cfg = config_mod.from_dict(raw)
    if not (work / "cube.zarr" / "zarr.json").exists():
        t0 = time.perf_counter()
        build_twin_stores(cfg, overwrite=True)
        print(f"built the default twin in {time.perf_counter() - t0:.1f} s at {work}")
    all_p = periods(cfg.dates.start, cfg.dates.end)
    chosen = all_p[10:10 + args.periods] if args.periods else all_p
    names = [p.name for p in chosen]
    print(f"periods: {len(names)} ({names[0]}..{names[-1]}); grids: {args.grids}; models: {cfg.training.models}")

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cl, \
            Client(cl) as client:
        client.run(lambda: None)  # workers up before timing
        t0 = time.perf_counter()
        report = train(cfg, client, force=True, only=names)
        t_cluster = time.perf_counter() - t0
    assert not report.failed, report.failed

    ds = open_cube(cfg.stores.cube)
    t0 = time.perf_counter()
    n_fit = 0
    for p in chosen:
        with dask.config.set(scheduler="sync"):
            table = sample_graph(ds, p, cfg.predictors, cfg.training.aggregation,
                                 cfg.training.min_valid_fraction).compute()
        if len(table) >= cfg.training.min_samples:
            fit_period(None, table, p.name, cfg.predictors, cfg.training, search_fn=_local_search)  # type: ignore[arg-type]
            n_fit += 1
    t_seq = time.perf_counter() - t0

    print(f"trained periods: cluster {len(report.trained)}, sequential {n_fit}; reused {len(report.reused)}")
    print(f"cluster (2 workers x 1 thread): {t_cluster:8.1f} s")
    print(f"sequential (1 process):         {t_seq:8.1f} s")
    print(f"ratio sequential / cluster:     {t_seq / t_cluster:8.2f}")


if __name__ == "__main__":
    main()
