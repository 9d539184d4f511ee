"""Prediction throughput: the pipeline store-to-store against bare ``Booster.inplace_predict``.

For a region of 4 SMAP cells (2 x 2) and one of 64 (8 x 8), over two 16-day periods of the
twin (2016-06-09 .. 2016-07-10), both stored in the same 72 x 72-pixel, 8-day blocks (one
prediction task each), so the larger region has 16 times the tasks of the same size and peak
worker memory should not grow with it:

1. build the twin and train XGBoost per period (300 trees of depth 6, the reference in
   docs/architecture.md) plus the reduced no-LST models (gap-free mode);
2. **pipeline**: ``dsm.predict.predict`` on a fresh LocalCluster of 2 single-threaded worker
   processes, from the cube store to the output store (reads, features, models, int16
   packing, region writes, records); throughput = valid pixel-days predicted / wall time;
   peak RSS of each worker (``ru_maxrss``) and its increase over the idle worker's RSS;
3. **bare**: in this process, the same valid pixels' float32 features held in memory, and
   the same boosters' ``inplace_predict`` on them (nthread 1 and 2; best of three, features
   built beforehand). Ratio = pipeline / the better of bare at nthread 2 and twice bare at
   nthread 1 (two cores either way; small batches do not scale across threads).

Run: ``.venv/bin/python bench/predict.py [--workdir DIR] [--uncertainty none|quantile]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import END, START, day_predictors, ensure_twin, local_cluster, train_models, twin_config
from dsm import config as config_mod
from dsm.cube import open_cube
from dsm.models.store import ModelStore
from dsm.predict import predict
from dsm.products import open_products


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def bare(cfg: config_mod.Config) -> tuple[int, dict[int, float]]:
    """Valid pixel-days and seconds of bare inplace_predict per nthread."""
    cube = open_cube(cfg.stores.cube).load()
    out = open_products(cfg.stores.output)
    models = ModelStore(cfg.stores.models)
    batches = []
    for t, day in enumerate(d.astype("datetime64[D]").item() for d in out["time"].values):
        origin = out["sm_origin"].isel(time=t).values
        feats = day_predictors(cube, day, cfg.predictors)
        rec = out.attrs["day_models"][day.isoformat()]["variants"]
        for bit, v in ((1, "full"), (2, "no-lst")):
            if v not in rec:
                continue
            key, preds = rec[v]["model"], rec[v]["predictors"]
            sel = (origin & bit) > 0
            X = np.ascontiguousarray(np.stack([feats[n][sel] for n in preds], axis=1), dtype=np.float32)
            batches.append((models.load_model(key).get_booster(), X))
    n = sum(len(X) for _, X in batches)
    times = {}
    for threads in (1, 2):
        for b, _ in batches:
            b.set_param({"nthread": threads})
        best = float("inf")
        for _ in range(3):  # best of three (the first call of a booster pays its setup)
            t0 = time.perf_counter()
            for b, X in batches:
                b.inplace_predict(X)
            best = min(best, time.perf_counter() - t0)
        times[threads] = best
    return n, times


def run(size: int, root: Path, uncertainty: str) -> dict[str, float]:
    # the same 72 x 72 blocks for every region: a task's size is fixed, only their number grows
    cfg = twin_config(root, size, START, END, uncertainty=uncertainty, space=72)
    ensure_twin(cfg, root)
    train_models(cfg)
    with local_cluster(2) as c:
        idle = c.run(rss_mb)
        t0 = time.perf_counter()
        res = predict(cfg, c, overwrite=True)
        wall = time.perf_counter() - t0
        peak = c.run(peak_rss_mb)
    n, bare_s = bare(cfg)
    assert n == res.pixels, (n, res.pixels)
    return {"cells": size * size, "pixel_days": n, "pipeline_s": wall, "pipeline_rate": n / wall,
            "bare1_rate": n / bare_s[1], "bare2_rate": n / bare_s[2],
            "ratio": (n / wall) / max(n / bare_s[2], 2 * n / bare_s[1]),
            "peak_worker_mb": max(peak.values()), "worker_increase_mb": max(peak[k] - idle[k] for k in peak)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--uncertainty", choices=["none", "quantile"], default="none")
    args = ap.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-predict-"))
    rows = [run(n, base / f"r{n}", args.uncertainty) for n in (2, 8)]
    print(f"uncertainty: {args.uncertainty}; 2 workers x 1 thread; {START}..{END}; work in {base}")
    print(f"{'cells':>5} {'pixel-days':>11} {'pipeline s':>10} {'pipeline px/s':>14} {'bare 1t px/s':>13} "
          f"{'bare 2t px/s':>13} {'ratio':>6} {'peak MB/worker':>15} {'increase MB':>12}")
    for r in rows:
        print(f"{r['cells']:>5} {r['pixel_days']:>11,} {r['pipeline_s']:>10.2f} {r['pipeline_rate']:>14,.0f} "
              f"{r['bare1_rate']:>13,.0f} {r['bare2_rate']:>13,.0f} {r['ratio']:>6.2f} "
              f"{r['peak_worker_mb']:>15.0f} {r['worker_increase_mb']:>12.0f}")
    small, large = rows[0], rows[-1]
    print(f"region {large['cells'] // small['cells']}x larger: peak worker memory x"
          f"{large['peak_worker_mb'] / small['peak_worker_mb']:.2f}, increase over idle x"
          f"{large['worker_increase_mb'] / max(small['worker_increase_mb'], 1):.2f} (72 x 72-pixel blocks of 8 days)")


if __name__ == "__main__":
    main()
