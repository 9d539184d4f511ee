"""Per-period training on the cluster against the same grid searches run sequentially.

Builds (or reuses) the default twin region (8 x 8 SMAP cells, 2016), then, in interleaved
rounds (``--rounds``, each configuration once per round, in a rotating order):

* ``one_task``: ``dsm.stages.train.train`` on a LocalCluster of 2 single-threaded worker
  processes, each (period, model) grid search one task on a worker (the default for tables up
  to :data:`dsm.models.search.ONE_TASK_MAX_VALUES` values); sample tables computed on the
  workers, periods concurrently (``training.concurrent_periods``), the spatial check's refits on
  the workers; models and cards written to a fresh store;
* ``per_fit``: the same with every candidate x fold fit a task of its own (dask-ml's
  ``GridSearchCV``, ``one_task_max=0``);
* ``sequential``: the same sample tables computed here with numpy over the whole region
  (:func:`dsm.samples.sample_table`, as the workers compute each block's) and the same
  per-period work (split, the same grids with scikit-learn ``GridSearchCV``, n_jobs=1, the
  spatial check) one period after another in this process.

The cluster runs choose the same model with the same cross-validated RMSE in every period
(checked). The pooled model is left out (it has no sequential twin). Prints each wall time,
the ratios sequential / cluster (> 1: the cluster is faster) with their median and range over
the rounds, and ``--json PATH`` writes them.

Run: ``.venv/bin/python bench/train.py [--periods N] [--rounds R] [--workdir DIR] [--grids small|default] [--json PATH]``
(``--periods N``: N consecutive periods from mid-June, where samples are plentiful).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import load_average, machine_facts, ratio_spread, spread_text

from dsm import config as config_mod
from dsm import store
from dsm.models.period import fit_period
from dsm.models.period_cards import TrainedPeriodCard
from dsm.models.search import ONE_TASK_MAX_VALUES, search_local
from dsm.periods import periods
from dsm.samples import sample_table
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


def _train_cluster(cfg: Any, names: list[str], one_task_max: int) -> tuple[float, dict[str, Any]]:
    """Wall time of training ``names`` on a fresh 2-worker LocalCluster, and the chosen models."""
    from distributed import Client

    from dsm.cluster import local_cluster
    from dsm.models.search import search
    from dsm.stages.train import train

    def run_search(client: Any, name: str, X: Any, y: Any, grid: Any, folds: int = 3, seed: int = 0,
                   device: str = "cpu") -> Any:
        return search(client, name, X, y, grid, folds, seed, device, one_task_max=one_task_max)

    shutil.rmtree(str(cfg.stores.models), ignore_errors=True)  # the bench's own store: every run starts empty
    with local_cluster(2, 1, dashboard_address=":0") as cl, Client(cl) as client:
        client.run(lambda: None)  # workers up before timing
        t0 = time.perf_counter()
        report = train(cfg, client, force=True, only=names, search_fn=run_search)
        elapsed = time.perf_counter() - t0
    assert not report.failed, report.failed
    return elapsed, _chosen(report.cards, names)


def _chosen(cards: Any, names: list[str]) -> dict[str, Any]:
    return {c.period: (c.chosen, round(c.models[c.chosen].cv_rmse, 9))
            for c in cards if c.period in names and isinstance(c, TrainedPeriodCard)}


def _train_sequential(cfg: Any, chosen: list[Any]) -> tuple[float, dict[str, Any]]:
    ds = store.open_cached(cfg.stores.ref("cube"), "bench-sequential", "raw")  # numpy on indexing
    t0 = time.perf_counter()
    cards = []
    for p in chosen:
        table = sample_table(ds, p, cfg.predictors, cfg.training.aggregation, cfg.training.min_valid_fraction)
        if len(table) >= cfg.training.min_samples:
            fit = fit_period(None, table, p.name, cfg.predictors, cfg.training, search_fn=_local_search)  # type: ignore[arg-type]
            cards.append(fit.card)
    return time.perf_counter() - t0, _chosen(cards, [p.name for p in chosen])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--periods", type=int, default=6, help="N periods from mid-June (0: all 23 of 2016; default 6)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three configurations (default 3)")
    ap.add_argument("--workdir", default=None, help="folder holding (or to hold) the default twin")
    ap.add_argument("--grids", choices=["small", "default"], default="small")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()

    from dsm.chain import build_twin_stores

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-train-"))
    spec = TwinSpec.of_size("default", 42)
    r = spec.region
    training: dict[str, Any] = {"method": "rao2022", "pooled": False}
    if args.grids == "small":
        training["grids"] = SMALL_GRIDS
    raw = {"region": {"cells": [r.row0, r.col0, r.nrows, r.ncols]},
           "dates": {"start": spec.start.isoformat(), "end": spec.end.isoformat()},
           "stores": {"cube": str(work / "cube.zarr"), "truth": str(work / "truth.zarr"),
                      "stations": str(work / "stations"), "models": str(work / "models-bench")},
           "chunks": {"space": 144, "time": 8}, "training": training,
           "output": {"gap_free": False, "uncertainty": "none"}}  # the period models only, as the sequential run
    cfg = config_mod.from_dict(raw)
    if not (work / "cube.zarr" / "zarr.json").exists():
        t0 = time.perf_counter()
        build_twin_stores(cfg, overwrite=True)
        print(f"built the default twin in {time.perf_counter() - t0:.1f} s at {work}")
    all_p = periods(cfg.dates.start, cfg.dates.end)
    chosen = all_p[10:10 + args.periods] if args.periods else all_p
    names = [p.name for p in chosen]
    for line in machine_facts():
        print(line)
    print(f"periods: {len(names)} ({names[0]}..{names[-1]}); grids: {args.grids}; models: {cfg.training.models}; "
          f"{args.rounds} interleaved rounds")

    runs: dict[str, Any] = {
        "one_task": lambda: _train_cluster(cfg, names, ONE_TASK_MAX_VALUES),
        "per_fit": lambda: _train_cluster(cfg, names, 0),
        "sequential": lambda: _train_sequential(cfg, chosen),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    choices: dict[str, Any] = {}
    order = list(runs)
    for i in range(args.rounds):
        for label in order[i % len(order):] + order[:i % len(order)]:  # rotate: no configuration always first
            elapsed, picked = runs[label]()
            times[label].append(elapsed)
            choices.setdefault(label, picked)
            print(f"round {i + 1} {label:10s} {elapsed:8.1f} s")
    assert choices["one_task"] == choices["per_fit"], (choices["one_task"], choices["per_fit"])
    figures: dict[str, Any] = {"periods": names, "grids": args.grids, "rounds": args.rounds,
                               "machine": machine_facts(), "seconds": times}
    for label in ("one_task", "per_fit"):
        figures[f"sequential/{label}"] = ratio_spread(times["sequential"], times[label])
        print(f"sequential / cluster {label:9s} ratio {spread_text(figures[f'sequential/{label}'])}  "
              f"cluster median {statistics.median(times[label]):7.1f} s")
    figures["per_fit/one_task"] = ratio_spread(times["per_fit"], times["one_task"])
    print(f"per_fit / one_task ratio            {spread_text(figures['per_fit/one_task'])}")
    print(f"load average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
