"""The in situ scores of a large station network: in the client's process against on the workers.

The validate stage scores every product against the stations' daily means with percentile
bootstrap intervals (:func:`dsm.station_scores.score_pairs`); the pooled levels (each network,
all stations) resample every station-day, so a network of hundreds of stations over years is
most of the stage's arithmetic. This benchmark makes a synthetic pairs table (``--stations``
stations in three networks, ``--days`` days, ``--products`` products, 30 % of the in situ days
missing and 10 % more per product) and times, interleaved over ``--rounds`` rounds:

1. **client**: ``score_pairs`` in this process, as the stage does without a cluster;
2. **workers**: the stage's scoring on a LocalCluster of ``--workers`` single-threaded worker
   processes (:func:`dsm.stages.validate._score_stations`: one task per product and day set),
   started once before the rounds.

Both must give the same table (checked every round). Ratio = client / workers, median and range.

Run: ``.venv/bin/python bench/station_scores.py [--stations 100] [--days 1096] [--products 3]
[--workers 2] [--rounds 3] [--resamples 1000] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import pandas as pd

from _common import load_average, local_cluster, machine_facts, ratio_spread, spread_text
from dsm.config import BootstrapConfig, ValidationConfig
from dsm.stages.validate import _score_stations


def pairs_table(n_stations: int, n_days: int, n_products: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """A synthetic :func:`dsm.station_scores.pair_table`: stations in three networks, a seasonal
    soil moisture with noise, 30 % of the in situ days missing, product ``k`` noisier and missing
    ``10 k`` % more of its days."""
    rng = np.random.default_rng(seed)
    n = n_stations * n_days
    truth = 0.2 + 0.05 * np.sin(np.arange(n) / 30) + rng.normal(0, 0.03, n)
    pairs = pd.DataFrame({
        "network": np.repeat([f"net{k % 3}" for k in range(n_stations)], n_days),
        "station": np.repeat([f"s{k:05d}" for k in range(n_stations)], n_days),
        "time": np.tile(pd.date_range("2016-01-01", periods=n_days, freq="D"), n_stations),
        "insitu": np.where(rng.random(n) < 0.3, np.nan, truth),
    })
    names = [f"product{k}" for k in range(n_products)]
    for k, name in enumerate(names):
        values = truth + rng.normal(0, 0.02 + 0.01 * k, n)
        pairs[name] = np.where(rng.random(n) < 0.1 * k, np.nan, values)
    return pairs, names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=100)
    ap.add_argument("--days", type=int, default=1096)
    ap.add_argument("--products", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    pairs, names = pairs_table(args.stations, args.days, args.products)
    v = ValidationConfig(bootstrap=BootstrapConfig(n_resamples=args.resamples, seed=0))
    print(f"{args.stations} stations x {args.days} days, {args.products} products "
          f"({int(pairs['insitu'].notna().sum()):,} in situ station-days), {args.resamples} resamples; "
          f"{args.workers} workers x 1 thread; load average {load_average()}")
    for line in machine_facts():
        print(line)
    times: dict[str, list[float]] = {"client": [], "workers": []}
    with local_cluster(args.workers) as client:
        _score_stations(pairs.head(args.days), names, v, client)  # the workers import what scoring needs
        for r in range(args.rounds):
            order = ("client", "workers") if r % 2 == 0 else ("workers", "client")
            tables = {}
            for way in order:
                t = time.perf_counter()
                tables[way] = _score_stations(pairs, names, v, client if way == "workers" else None)
                times[way].append(time.perf_counter() - t)
            pd.testing.assert_frame_equal(tables["client"], tables["workers"])
            print(f"round {r + 1}: client {times['client'][-1]:.2f} s, workers {times['workers'][-1]:.2f} s "
                  f"({len(tables['client'])} score rows, the same)")
    spread = ratio_spread(times["client"], times["workers"])
    print(f"client {statistics.median(times['client']):.2f} s, workers {statistics.median(times['workers']):.2f} s "
          f"(medians); client / workers {spread_text(spread)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stations": args.stations, "days": args.days, "products": args.products,
                       "workers": args.workers, "resamples": args.resamples, "load_average": load_average(),
                       "machine": machine_facts(), "seconds": times, "client_over_workers": spread}, f, indent=1)


if __name__ == "__main__":
    main()
