"""The twin skill of the validate stage: on the client (as before) against on the workers.

Builds (or reuses, ``--workdir``) the default twin (8 x 8 SMAP cells, 2016) and a products store
on it (the truth plus N(0, 0.02), :func:`dsm.testing.validation.make_products_store`; ``--days
N``: the first N days done), then times in interleaved rounds (``--rounds``, the order rotating):

* ``client``: what the validate stage did before: :func:`dsm.skill.skill` in this process (one
  time chunk after another, two passes over the truth, the products and SMAP) and then
  :func:`dsm.validate.period_skill` (a third read of the truth), both on the client;
* ``workers``: :func:`dsm.skill.skill` with ``client`` and ``periods=True`` on a LocalCluster of
  ``--workers`` single-threaded worker processes: one task per time chunk and pass, the stores
  read on the workers, the per-period table from the same pass.

Both give the same scores (checked: the skill JSON bit for bit, the period table within 1e-12).
Prints each wall time and the ratio client / workers (> 1: the workers are faster) with its
median and range over the rounds; ``--json PATH`` writes them.

Run: ``.venv/bin/python bench/validate.py [--workdir DIR] [--days N] [--rounds R] [--workers W] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import load_average, local_cluster, machine_facts

from dsm import config as config_mod
from dsm.skill import read_twin_stations, skill
from dsm.synthetic import TwinSpec
from dsm.testing.validation import make_products_store
from dsm.validate import period_skill


def _stores(work: Path, days: int) -> tuple[config_mod.Config, str]:
    """The default twin's configuration under ``work`` (built unless there) and its products store."""
    from dsm.run import build_twin_stores

    spec = TwinSpec.of_size("default", 42)
    r = spec.region
    cfg = config_mod.from_dict({
        "region": {"cells": [r.row0, r.col0, r.nrows, r.ncols]},
        "dates": {"start": spec.start.isoformat(), "end": spec.end.isoformat()},
        "stores": {"cube": str(work / "cube.zarr"), "truth": str(work / "truth.zarr"),
                   "stations": str(work / "stations")},
        "chunks": {"space": 144, "time": 8}})
    if not (work / "cube.zarr" / "zarr.json").exists():
        t0 = time.perf_counter()
        build_twin_stores(cfg, overwrite=True)
        print(f"built the default twin in {time.perf_counter() - t0:.1f} s at {work}")
    out = work / f"sm-bench-validate-{days or 'all'}.zarr"
    if not (out / "zarr.json").exists():
        all_days = pd.date_range(spec.start, spec.end).strftime("%Y-%m-%d").tolist()
        make_products_store(str(out), str(work / "truth.zarr"), noise=0.02, seed=3, space_chunk=144, time_chunk=8,
                            days_done=all_days[:days] if days else None)
    return cfg, str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="folder holding (or to hold) the default twin")
    ap.add_argument("--days", type=int, default=0, help="score the first N days (default 0: all 366)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the two paths (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the cluster (default 2)")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-validate-"))
    cfg, output = _stores(work, args.days)
    truth, cube = str(cfg.stores.truth), cfg.stores.cube
    stations = read_twin_stations(f"{cfg.stores.stations}/insitu.csv")
    for line in machine_facts():
        print(line)
    print(f"products {output}; {args.workers} workers; {args.rounds} interleaved rounds")
    results: dict[str, Any] = {}
    with local_cluster(args.workers) as client:
        def on_client() -> Any:
            s = skill(output, truth, cube, stations=stations)
            return s, period_skill(output, truth, cube)

        def on_workers() -> Any:
            s = skill(output, truth, cube, stations=stations, client=client, periods=True)
            return s, pd.DataFrame(s.pop("periods"))

        runs = {"client": on_client, "workers": on_workers}
        times: dict[str, list[float]] = {k: [] for k in runs}
        order = list(runs)
        for i in range(args.rounds):
            for label in order[i % len(order):] + order[:i % len(order)]:  # rotate: neither always first
                t0 = time.perf_counter()
                results[label] = runs[label]()
                times[label].append(time.perf_counter() - t0)
                print(f"round {i + 1} {label:8s} {times[label][-1]:8.1f} s")
    (s_c, p_c), (s_w, p_w) = results["client"], results["workers"]
    assert json.dumps(s_c) == json.dumps(s_w), "the two paths gave different skill scores"
    assert p_c[["period", "map", "n"]].equals(p_w[["period", "map", "n"]])
    for c in ("rmse", "r", "ubrmse", "bias", "cell_r"):
        np.testing.assert_allclose(p_w[c].to_numpy(float), p_c[c].to_numpy(float), rtol=1e-12, atol=1e-15)
    ratios = [c / w for c, w in zip(times["client"], times["workers"], strict=True)]
    figures: dict[str, Any] = {"days": s_c["days"], "workers": args.workers, "rounds": args.rounds,
                               "machine": machine_facts(), "seconds": times,
                               "client/workers": {"median": statistics.median(ratios), "min": min(ratios),
                                                  "max": max(ratios)}}
    print(f"{s_c['days']} days; client / workers ratio {statistics.median(ratios):5.2f} "
          f"({min(ratios):.2f}..{max(ratios):.2f}); medians: client {statistics.median(times['client']):.1f} s, "
          f"workers {statistics.median(times['workers']):.1f} s")
    print(f"load average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
