"""Prediction throughput: the pipeline store-to-store against bare ``Booster.inplace_predict``.

For regions of N x N SMAP cells (default 4 x 4 and 8 x 8) over two 16-day periods of the twin
(2016-06-09 .. 2016-07-10), all stored in the same 72 x 72-pixel (``--space``), 8-day blocks (one prediction
task each), so a larger region has more tasks of the same size and peak worker memory should
not grow with it:

1. build the twin and train the chosen method (``--method``): ``fusion`` (the default method:
   the pooled XGBoost, its companions and anomaly partners, its default grid) or ``rao2022``
   (XGBoost per period, 300 trees of depth 6, plus the reduced no-LST models);
2. **pipeline**: ``dsm.stages.predict.predict`` on a fresh LocalCluster of 2 single-threaded worker
   processes (which first import dsm's prediction modules, :func:`warm_up`, as a long-lived
   cluster's workers have them), from the cube store to the output store (for fusion also the fused cell means
   and their pass over the cube; reads, features, models, int16 packing, region writes,
   records); throughput = valid pixel-days predicted / wall time. Dask's statistical profiler
   is off for the timed runs (its history grows with the seconds of work);
3. **bare**: in this process, the same boosters' ``inplace_predict`` on the same float32 feature
   rows the pipeline predicts, held in memory and batched as favourably as the pipeline could:
   recorded by running the blocks' own :func:`dsm.block_models.model_days` with a recording
   model loader over the whole region, 8 days (a time chunk) at a time, so one call per model
   per time chunk of the whole region (the pipeline makes one per model per block)
   (nthread 1 and 2; best of three). Ratio = pipeline / the better of bare at nthread 2 and
   twice bare at nthread 1 (two cores either way; small batches do not scale across threads);
4. ``--rounds R`` interleaves R pipeline runs and R bare runs and reports the median ratio and
   its range;
5. memory: peak RSS of each worker (``VmHWM``) and its increase over the idle worker's RSS
   (after :func:`warm_up`),
   with the profiler on (as by default) and off, and what a second pass over the whole region
   on the same workers adds.

Run: ``.venv/bin/python bench/predict.py [--method fusion|rao2022] [--sizes 4 8] [--rounds 3]
[--uncertainty none|quantile] [--space 72] [--workdir DIR] [--json PATH]``
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    END,
    START,
    day_predictors,
    ensure_twin,
    load_average,
    local_cluster,
    machine_facts,
    ratio_spread,
    spread_text,
    train_models,
    twin_config,
)

from dsm import config as config_mod
from dsm.block_models import apply_model, model_days
from dsm.cube import open_cube
from dsm.dayplans import fusion_card, make_plans
from dsm.models.store import ModelStore
from dsm.products import open_products
from dsm.ranges import SMAP
from dsm.stages.predict import predict


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


class _Recording:
    """A stored model that records every batch it is asked to predict (the pipeline's calls)."""

    def __init__(self, model: Any, key: str, calls: list[tuple[str, np.ndarray]]) -> None:
        self.model, self.key, self.calls = model, key, calls

    def predict(self, X: np.ndarray) -> np.ndarray:
        self.calls.append((self.key, np.ascontiguousarray(X, dtype=np.float32)))
        return apply_model(self.model, X)


DAILY_DIMS = ("time", "time_precip")  # the cache keys (name, dim, day) of daily layers


def model_calls(cfg: config_mod.Config) -> tuple[list[tuple[Any, np.ndarray]], int]:
    """Every model call of the prediction (booster, features), made by the blocks' own
    :func:`dsm.block_models.model_days` over the whole region, a time chunk of days at a time
    (one call per model and chunk), and the pixel-days it predicted."""
    cube = open_cube(cfg.stores.ref("cube"))
    models = ModelStore(cfg.stores.ref("models"))
    days = [d.astype("datetime64[D]").item() for d in open_products(cfg.stores.ref("output"))["time"].values]
    card = fusion_card(models) if cfg.training.method == "fusion" else None
    plans = make_plans(cfg, models, days, card)
    land = day_predictors(cube, days[0], ["land_mask"])["land_mask"] == 1
    stored: dict[str, Any] = {}
    calls: list[tuple[str, np.ndarray]] = []

    def load(key: str, sha: str) -> Any:
        if key not in stored:
            stored[key] = models.load_model(key)
        return _Recording(stored[key], key, calls)

    cache: dict[Any, np.ndarray] = {}
    smap = cube[SMAP]
    pixels = 0
    step = cfg.chunks.time
    for t0 in range(0, len(plans), step):
        chunk = plans[t0:t0 + step]
        names = sorted({p for plan in chunk for v in plan.variants for p in v.predictors})
        per_day = [day_predictors(cube, plan.day, names, cache) for plan in chunk]
        feats = {n: np.stack([d[n] for d in per_day]) for n in names}
        for key in [k for k in cache if len(k) > 1 and k[1] in DAILY_DIMS]:  # not needed again
            del cache[key]
        smaps = smap.sel(time=[np.datetime64(plan.day, "ns") for plan in chunk]).values
        sm = model_days(feats, land, smaps, chunk, load)[0]
        pixels += int(np.isfinite(sm).sum())
    boosters = {k: (m.get_booster() if hasattr(m, "get_booster") else m) for k, m in stored.items()}
    return [(boosters[k], X) for k, X in calls], pixels


def bare(calls: list[tuple[Any, np.ndarray]]) -> dict[int, float]:
    """Seconds of bare ``inplace_predict`` over ``calls`` per nthread (best of three)."""
    times = {}
    for threads in (1, 2):
        for b, _ in calls:
            b.set_param({"nthread": threads})
        best = float("inf")
        for _ in range(3):  # best of three (the first call of a booster pays its setup)
            t0 = time.perf_counter()
            for b, X in calls:
                b.inplace_predict(X)
            best = min(best, time.perf_counter() - t0)
        times[threads] = best
    return times


def profiling(dask_worker: Any) -> bool:
    """Whether Dask's statistical profiler samples this worker."""
    return "profile" in dask_worker.periodic_callbacks


def warm_up() -> None:
    """On a worker: import the modules its prediction tasks run (XGBoost imports scikit-learn
    and SciPy: about a second in a new process), as a long-lived cluster has them, and as this
    process has them for the bare baseline."""
    importlib.import_module("dsm.blocks")
    importlib.import_module("dsm.sample_tables")


def pipeline(cfg: config_mod.Config, profile: bool, passes: int = 1) -> tuple[int, float, list[float], float]:
    """Valid pixel-days and wall seconds of the first of ``passes`` prediction runs on one fresh
    LocalCluster of 2 single-threaded workers, the peak worker RSS (MB) after each pass, and
    the idle worker's RSS (MB)."""
    with local_cluster(2, profile=profile) as c:
        assert set(c.run(profiling).values()) == {profile}
        c.run(warm_up)
        idle = max(c.run(rss_mb).values())
        peaks, walls, pixels = [], [], 0
        for _ in range(passes):
            t0 = time.perf_counter()
            pixels = predict(cfg, c, overwrite=True).pixels
            walls.append(time.perf_counter() - t0)
            peaks.append(max(c.run(peak_rss_mb).values()))
    return pixels, walls[0], peaks, idle


def method_config(root: Path, size: int, method: str, uncertainty: str, space: int = 72) -> config_mod.Config:
    """The twin configuration of a region, in the same ``space`` x ``space`` blocks for every
    size (a task's size is fixed, only their number grows), trained by ``method``."""
    cfg = twin_config(root, size, START, END, uncertainty=uncertainty, space=space)
    if method == "rao2022":
        return cfg
    raw = cfg.model_dump(mode="json")
    raw["training"] = {"method": "fusion", "min_samples": 10}
    return config_mod.from_dict(raw)


def run(size: int, root: Path, method: str, uncertainty: str, rounds: int, space: int = 72) -> dict[str, Any]:
    cfg = method_config(root, size, method, uncertainty, space)
    ensure_twin(cfg, root)
    train_models(cfg)
    pixels, _, (peak,), idle = pipeline(cfg, profile=True)
    _, _, (peak_np, peak_np2), idle_np = pipeline(cfg, profile=False, passes=2)
    calls, n = model_calls(cfg)
    assert n == pixels, (n, pixels)
    walls, bare1, bare2 = [], [], []
    for _ in range(rounds):  # interleaved: the machine's load moves both alike
        walls.append(pipeline(cfg, profile=False)[1])
        b = bare(calls)
        bare1.append(b[1])
        bare2.append(b[2])
    ratios = ratio_spread([min(b2, b1 / 2) for b1, b2 in zip(bare1, bare2, strict=True)], walls)
    wall, b1, b2 = float(np.median(walls)), float(np.median(bare1)), float(np.median(bare2))
    return {"cells": size * size, "pixel_days": n, "model_calls": len(calls),
            "model_rows": int(sum(len(X) for _, X in calls)), "pipeline_s": walls, "pipeline_rate": n / wall,
            "bare1_rate": n / b1, "bare2_rate": n / b2, "ratio": ratios,
            "peak": peak, "increase": peak - idle, "peak_np": peak_np, "increase_np": peak_np - idle_np,
            "second_np": peak_np2 - peak_np}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--method", choices=["fusion", "rao2022"], default="fusion")
    ap.add_argument("--uncertainty", choices=["none", "quantile"], default="none",
                    help="rao2022: quantile models for sm_unc (fusion's sm_unc needs no model)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8],
                    help="regions of N x N SMAP cells, smallest first (default: 4 8)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved pipeline and bare runs per size")
    ap.add_argument("--space", type=int, default=72,
                    help="the blocks' side in pixels, the same for every size (default 72; dsm's default is 144)")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-predict-"))
    suffix = "" if args.space == 72 else f"-{args.space}"  # a twin per block size (its cube's chunks)
    rows = [run(n, base / f"{args.method}-{n}{suffix}", args.method, args.uncertainty, args.rounds, args.space)
            for n in sorted(args.sizes)]
    print(f"method {args.method}, uncertainty {args.uncertainty}; 2 workers x 1 thread; {START}..{END}; "
          f"work in {base}; load average {load_average()}")
    for line in machine_facts():
        print(line)
    print(f"{'':>5} {'':>11} {'':>7} {'':>10} {'':>14} {'':>13} {'':>13} {'':>17} {'peak worker MB':>19} "
          f"{'no profiler: peak MB':>25} {'2nd pass':>8}")
    print(f"{'cells':>5} {'pixel-days':>11} {'calls':>7} {'pipeline s':>10} {'pipeline px/s':>14} "
          f"{'bare 1t px/s':>13} {'bare 2t px/s':>13} {'ratio (range)':>17} {'(over idle)':>19} "
          f"{'(over idle)':>25} {'adds MB':>8}")
    for r in rows:
        rng = spread_text(r["ratio"]).strip()
        print(f"{r['cells']:>5} {r['pixel_days']:>11,} {r['model_calls']:>7} {np.median(r['pipeline_s']):>10.2f} "
              f"{r['pipeline_rate']:>14,.0f} {r['bare1_rate']:>13,.0f} {r['bare2_rate']:>13,.0f} {rng:>17} "
              f"{r['peak']:>12.0f} ({r['increase']:>4.0f}) {r['peak_np']:>18.0f} ({r['increase_np']:>4.0f}) "
              f"{r['second_np']:>8.1f}")
    small, large = rows[0], rows[-1]
    print(f"region {large['cells'] // small['cells']}x the smallest, same {args.space} x {args.space}-pixel blocks of 8 days: peak worker "
          f"memory x{large['peak'] / small['peak']:.2f} (Dask's profiler on, as by default; its history grows "
          f"with the seconds of work, up to distributed.admin.low-level-log-length = 1000 one-second profiles), "
          f"x{large['peak_np'] / small['peak_np']:.2f} with the profiler off; a second pass over the whole region "
          f"on the same workers added {small['second_np']:.1f} and {large['second_np']:.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({"method": args.method, "uncertainty": args.uncertainty, "space": args.space,
                                               "rounds": args.rounds, "load_average": load_average(),
                                               "machine": machine_facts(), "sizes": rows}, indent=1))


if __name__ == "__main__":
    main()
