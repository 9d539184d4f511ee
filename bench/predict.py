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
   peak RSS of each worker (``VmHWM``) and its increase over the idle worker's RSS;
   the run is repeated, twice over, on a cluster with Dask's statistical profiler off: the
   profiler's history (one profile per second of work, up to
   ``distributed.admin.low-level-log-length`` = 1000 of them) grows with the run's duration
   and would otherwise be counted as the pipeline's; the second pass over the whole region
   on the same workers shows whether memory keeps growing with the number of tasks done;
3. **bare**: in this process, the same valid pixels' float32 features held in memory, and
   the same boosters' ``inplace_predict`` on them (nthread 1 and 2; best of three, features
   built beforehand). Ratio = pipeline / the better of bare at nthread 2 and twice bare at
   nthread 1 (two cores either way; small batches do not scale across threads).

Run: ``.venv/bin/python bench/predict.py [--workdir DIR] [--uncertainty none|quantile] [--sizes 2 8 16]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import END, START, day_predictors, ensure_twin, local_cluster, train_models, twin_config
from dsm import config as config_mod
from dsm import ledger
from dsm.cube import open_cube
from dsm.models.store import ModelStore
from dsm.predict import predict
from dsm.products import open_products


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own address space (MB).

    Linux's ``VmHWM``; not ``getrusage``'s ``ru_maxrss``, which carries over fork and exec
    the high-water mark of the process that spawned this one (for a LocalCluster's worker,
    the benchmark's own process) and so would measure the parent rather than the worker.
    Elsewhere ``ru_maxrss`` is all there is.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def bare(cfg: config_mod.Config) -> tuple[int, dict[int, float]]:
    """Valid pixel-days and seconds of bare inplace_predict per nthread."""
    cube = open_cube(cfg.stores.cube).load()
    out = open_products(cfg.stores.output)
    days = ledger.read(cfg.stores.output, None, out.attrs).days
    models = ModelStore(cfg.stores.models)
    batches = []
    for t, day in enumerate(d.astype("datetime64[D]").item() for d in out["time"].values):
        origin = out["sm_origin"].isel(time=t).values
        feats = day_predictors(cube, day, cfg.predictors)
        rec = days[day.isoformat()].model["variants"]
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


def profiling(dask_worker: Any) -> bool:
    """Whether Dask's statistical profiler samples this worker."""
    return "profile" in dask_worker.periodic_callbacks


def pipeline(cfg: config_mod.Config, profile: bool, passes: int = 1) -> tuple[int, float, list[float], float]:
    """Valid pixel-days and wall seconds of the first of ``passes`` prediction runs on one fresh
    LocalCluster of 2 single-threaded workers, the peak worker RSS (MB) after each pass, and
    the idle worker's RSS (MB)."""
    with local_cluster(2, profile=profile) as c:
        assert set(c.run(profiling).values()) == {profile}
        idle = max(c.run(rss_mb).values())
        peaks, walls, pixels = [], [], 0
        for _ in range(passes):
            t0 = time.perf_counter()
            pixels = predict(cfg, c, overwrite=True).pixels
            walls.append(time.perf_counter() - t0)
            peaks.append(max(c.run(peak_rss_mb).values()))
    return pixels, walls[0], peaks, idle


def run(size: int, root: Path, uncertainty: str) -> dict[str, float]:
    # the same 72 x 72 blocks for every region: a task's size is fixed, only their number grows
    cfg = twin_config(root, size, START, END, uncertainty=uncertainty, space=72)
    ensure_twin(cfg, root)
    train_models(cfg)
    pixels, wall, (peak,), idle = pipeline(cfg, profile=True)
    _, _, (peak_np, peak_np2), idle_np = pipeline(cfg, profile=False, passes=2)
    n, bare_s = bare(cfg)
    assert n == pixels, (n, pixels)
    return {"cells": size * size, "pixel_days": n, "pipeline_s": wall, "pipeline_rate": n / wall,
            "bare1_rate": n / bare_s[1], "bare2_rate": n / bare_s[2],
            "ratio": (n / wall) / max(n / bare_s[2], 2 * n / bare_s[1]),
            "peak": peak, "increase": peak - idle, "peak_np": peak_np, "increase_np": peak_np - idle_np,
            "second_np": peak_np2 - peak_np}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--uncertainty", choices=["none", "quantile"], default="none")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 8],
                    help="regions of N x N SMAP cells, smallest first (default: 2 8)")
    args = ap.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-predict-"))
    rows = [run(n, base / f"r{n}", args.uncertainty) for n in sorted(args.sizes)]
    print(f"uncertainty: {args.uncertainty}; 2 workers x 1 thread; {START}..{END}; work in {base}")
    print(f"{'':>5} {'':>11} {'':>10} {'':>14} {'':>13} {'':>13} {'':>6} {'peak worker MB':>19} "
          f"{'no profiler: peak MB':>25} {'2nd pass':>8}")
    print(f"{'cells':>5} {'pixel-days':>11} {'pipeline s':>10} {'pipeline px/s':>14} {'bare 1t px/s':>13} "
          f"{'bare 2t px/s':>13} {'ratio':>6} {'(over idle)':>19} {'(over idle)':>25} {'adds MB':>8}")
    for r in rows:
        print(f"{r['cells']:>5} {r['pixel_days']:>11,} {r['pipeline_s']:>10.2f} {r['pipeline_rate']:>14,.0f} "
              f"{r['bare1_rate']:>13,.0f} {r['bare2_rate']:>13,.0f} {r['ratio']:>6.2f} "
              f"{r['peak']:>12.0f} ({r['increase']:>4.0f}) {r['peak_np']:>18.0f} ({r['increase_np']:>4.0f}) "
              f"{r['second_np']:>8.1f}")
    small, large = rows[0], rows[-1]
    print(f"region {large['cells'] // small['cells']}x the smallest, same 72 x 72-pixel blocks of 8 days: peak worker "
          f"memory x{large['peak'] / small['peak']:.2f} (Dask's profiler on, as by default; its history grows "
          f"with the seconds of work, up to distributed.admin.low-level-log-length = 1000 one-second profiles), "
          f"x{large['peak_np'] / small['peak_np']:.2f} with the profiler off; a second pass over the whole region "
          f"on the same workers added {small['second_np']:.1f} and {large['second_np']:.1f} MB")

if __name__ == "__main__":
    main()
