"""Daily 1 km maps: the dsm pipeline against the script a user would otherwise write, its
scaling from one worker to two, and the projected wall time of the paper's whole job.

All figures come from one run on identical inputs (the twin region around the Mu Us Sandy
Land, ``--size`` x ``--size`` SMAP cells, ``--days`` days from 2016-06-09) and the same
trained models (XGBoost, 300 trees of depth 6, one per 16-day period, from the dsm model
store). Setup, not timed: build the twin cube, train, export the naive script's inputs.

1. **naive script** (this process): the 14 predictors of every day (daily LST and albedo,
   the 8-day and 16-day composites covering the day, the static layers) were exported from
   the cube to one float32 GeoTIFF per predictor per day, plus one land mask GeoTIFF. Timed:
   for each day, read the 14 GeoTIFFs with rasterio, stack, keep land pixels where all 14
   are valid, ``XGBRegressor.predict`` with the period's model (loaded from the dsm model
   store once per period; xgboost's default threads = every usable CPU), clip to [0, 1],
   write one int16 GeoTIFF (SM x 10000, nodata -9999, DEFLATE) per day.
   **pipeline**: ``dsm.stages.predict.predict`` from the cube store into a fresh output store on a
   LocalCluster of 2 single-threaded worker processes. For the same work as the script it is
   configured ``output.gap_free: false`` (the paper's rule: pixels without all 14 predictors
   stay empty, so the same single model per day and the same pixels) and
   ``output.uncertainty: none``. It still does what the script does not: range checks and
   origin bits, the 36 km consistency record, ``sm_unc``/``sm_origin``/``sm_36km`` and the
   store's run records. Throughput = valid pixel-days / wall time; both must count the same
   pixel-days, and the two products are compared pixel by pixel afterwards.
2. **scaling**: the pipeline on LocalCluster(n_workers=1) against n_workers=2 (1 thread
   each), same days, a fresh output store each run. Speed-up = rate(2) / rate(1);
   efficiency = speed-up / 2.
3. **projection**: the paper's job (3.36e6 km2, daily 2015-03-31 .. 2020-12-31) from the
   per-core throughput of the pipeline on 2 workers (rate / 2), assuming linear scaling in
   the number of cores, at the fraction of land pixel-days predicted on the twin (the
   paper's rule) and at 100 % (gap-free mode, assumed to cost the same per pixel).

Runs are interleaved (naive, pipeline x 2 workers, pipeline x 1 worker) ``--repeat`` times
after one untimed warm-up of each; each figure is the best of its runs, so ratios compare
runs made under the same load. Beside wall time, the CPU seconds (user + system) of every
process involved are counted: on a shared machine they show the cost per pixel-day when the
cores are not the runs' own, and give a second projection "per CPU second". Both clusters
are started before the first run and closed at the end (no process is left behind).

Run: ``.venv/bin/python bench/daily_maps.py [--size 8] [--days 32] [--repeat 3] [--workdir DIR] [--json PATH]``
(the twin, models and exported inputs under ``DIR/c<size>-d<days>`` are reused by later runs;
without ``--workdir`` a temporary folder is used and removed at the end).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from _common import (
    START,
    cores,
    day_predictors,
    describe_config,
    ensure_twin,
    load_average,
    local_cluster,
    machine_facts,
    ratio_spread,
    train_models,
    twin_config,
)
from distributed import Client

from dsm import config as config_mod
from dsm.cube import open_cube
from dsm.grid import CELL_1KM
from dsm.models.store import ModelStore
from dsm.periods import days as day_range
from dsm.periods import julian_name, period_of
from dsm.stages.predict import predict
from dsm.storeref import StoreRef

PAPER_AREA_KM2 = 3.36e6  # Rao et al. 2022: desertification areas of Northern China
PAPER_START, PAPER_END = dt.date(2015, 3, 31), dt.date(2020, 12, 31)  # SMAP L3 from 2015-03-31
CORES = (2, 16, 64, 256)
NODATA = -9999
LABELS = {"naive": "naive", "pipe2": "pipeline 2 workers", "pipe1": "pipeline 1 worker"}


# ------------------------------------------------------------------------------ naive script
def export_inputs(cfg: config_mod.Config, folder: Path) -> int:
    """Setup of the naive script: one float32 GeoTIFF per predictor per day (``YYYYDDD/NAME.tif``)
    and ``land_mask.tif``. Returns the number of files written (0 when already there)."""
    done = folder / "DONE"
    if done.exists():
        return 0
    shutil.rmtree(folder, ignore_errors=True)
    cube = open_cube(cfg.stores.ref("cube"))
    cube = cube[[*cfg.predictors, "land_mask"]].load()
    ny, nx = cfg.grid_region.fine_shape
    profile = {"driver": "GTiff", "height": ny, "width": nx, "count": 1, "crs": "EPSG:6933",
               "transform": cfg.grid_region.fine_transform}
    folder.mkdir(parents=True)
    with rasterio.open(folder / "land_mask.tif", "w", dtype="uint8", **profile) as dst:
        dst.write(cube["land_mask"].values.astype(np.uint8), 1)
    n = 1
    for day in day_range(cfg.dates.start, cfg.dates.end):
        (folder / julian_name(day)).mkdir()
        for name, arr in day_predictors(cube, day, cfg.predictors).items():
            with rasterio.open(folder / julian_name(day) / f"{name}.tif", "w", dtype="float32", nodata=np.nan,
                               **profile) as dst:
                dst.write(arr, 1)
            n += 1
    done.touch()
    return n


def naive_script(inputs: Path, out: Path, days: list[dt.date], predictors: tuple[str, ...], models: StoreRef) -> int:
    """What a user would write: per day, read the GeoTIFFs, stack, predict, write a GeoTIFF.
    Returns the valid pixel-days predicted."""
    store = ModelStore(models)
    loaded: dict[str, Any] = {}
    out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(inputs / "land_mask.tif") as src:
        land = src.read(1) == 1
        profile = dict(src.profile)
    profile.update(dtype="int16", nodata=NODATA, compress="deflate", predictor=2, tiled=True,
                   blockxsize=256, blockysize=256)
    n = 0
    for day in days:
        name = julian_name(day)
        layers = []
        for p in predictors:
            with rasterio.open(inputs / name / f"{p}.tif") as src:
                layers.append(src.read(1))
        stack = np.stack(layers)
        valid = land & np.isfinite(stack).all(axis=0)
        period = period_of(day).name
        if period not in loaded:
            loaded[period] = store.load_model(period)  # follows reused_from
        sm = np.clip(loaded[period].predict(stack[:, valid].T), 0.0, 1.0)
        grid = np.full(land.shape, NODATA, np.int16)
        grid[valid] = np.round(sm * 10000).astype(np.int16)
        with rasterio.open(out / f"SM_1km_{name}.tif", "w", **profile) as dst:
            dst.write(grid, 1)
        n += int(valid.sum())
    return n


# ------------------------------------------------------------------------------ pipeline
def output_config(cfg: config_mod.Config, url: Path) -> config_mod.Config:
    """``cfg`` writing to another output store."""
    return cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"output": str(url)})})


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads (run on workers too)."""
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def pipeline(cfg: config_mod.Config, client: Client, url: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (workers + this process, which holds the scheduler) and valid
    pixel-days of one pipeline run into a fresh store at ``url``."""
    shutil.rmtree(url, ignore_errors=True)
    run_cfg = output_config(cfg, url)
    cpu0 = sum(client.run(cpu_seconds).values()) + cpu_seconds()
    t0 = time.perf_counter()
    rep = predict(run_cfg, client, overwrite=True)
    wall = time.perf_counter() - t0
    cpu = sum(client.run(cpu_seconds).values()) + cpu_seconds() - cpu0
    assert not rep.failed, rep.failed
    return wall, cpu, rep.pixels


def compare(naive_out: Path, store_url: Path, days: list[dt.date]) -> tuple[int, int, int]:
    """(pixels whose validity differs, pixels differing by more than 1e-4, max |difference| in
    1e-4 units) between the naive GeoTIFFs and the pipeline's stored int16 ``sm``."""
    sm = xr.open_zarr(store_url, consolidated=False, mask_and_scale=False)["sm"]
    fill = int(sm.attrs.get("_FillValue", sm.encoding.get("_FillValue", NODATA)))
    masks = big = worst = 0
    for i, day in enumerate(days):
        with rasterio.open(naive_out / f"SM_1km_{julian_name(day)}.tif") as src:
            a = src.read(1).astype(np.int32)
        b = sm.isel(time=i).values.astype(np.int32)
        va, vb = a != NODATA, b != fill
        masks += int((va != vb).sum())
        both = va & vb
        d = np.abs(a[both] - b[both])
        big += int((d > 1).sum())
        worst = max(worst, int(d.max()) if d.size else 0)
    return masks, big, worst


# ------------------------------------------------------------------------------ report
def duration(s: float) -> str:
    """Seconds in the unit that reads best."""
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.0f} min"
    if s < 72 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8, help="SMAP cells per side of the twin region (default 8)")
    ap.add_argument("--days", type=int, default=32, help="days from 2016-06-09 (default 32: two periods)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each (best is kept; default 3)")
    ap.add_argument("--workdir", default=None, help="folder kept between runs (default: a temporary one)")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()
    if args.size < 1 or args.days < 1 or args.repeat < 1:
        ap.error("--size, --days and --repeat must be positive")

    t_all = time.perf_counter()
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="dsm-bench-daily-"))
    root = (base / f"c{args.size}-d{args.days}").resolve()
    root.mkdir(parents=True, exist_ok=True)
    start, end = START, START + dt.timedelta(days=args.days - 1)
    cfg = twin_config(root, args.size, start, end, gap_free=False, uncertainty="none")
    days = list(day_range(start, end))
    facts = describe_config(cfg)
    print("== dsm bench: daily 1 km maps (bench/daily_maps.py)")
    for line in machine_facts():
        print(line)
    print(f"twin: {args.size} x {args.size} SMAP cells = {facts['shape'][0]} x {facts['shape'][1]} pixels at 1 km, "
          f"{len(days)} days {start}..{end} ({len({period_of(d).name for d in days})} periods); "
          f"XGBoost 300 trees depth 6 per period; work in {root}")

    t0 = time.perf_counter()
    built = ensure_twin(cfg, root)
    t1 = time.perf_counter()
    train_models(cfg)
    t2 = time.perf_counter()
    nfiles = export_inputs(cfg, root / "naive" / "in")
    t3 = time.perf_counter()
    print(f"setup (not timed in the figures): twin {'built' if built else 'reused'} {t1 - t0:.1f} s, "
          f"training {t2 - t1:.1f} s, naive inputs {'exported' if nfiles else 'reused'} "
          f"({nfiles or 'existing'} GeoTIFFs) {t3 - t2:.1f} s")

    land_pixels = int((open_cube(cfg.stores.ref("cube"))["land_mask"].values == 1).sum())
    naive_out = root / "naive" / "out"
    runs: dict[str, list[float]] = {"naive": [], "pipe2": [], "pipe1": []}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    counts: dict[str, set[int]] = {k: set() for k in runs}
    with ExitStack() as stack:
        clients = {n: stack.enter_context(local_cluster(n)) for n in (2, 1)}
        # warm-up, untimed: worker imports, store and GDAL first opens, first model loads
        for n, c in clients.items():
            predict(output_config(cfg, root / "runs" / f"warmup{n}.zarr"), c, overwrite=True, only_days=days[:1])
        naive_script(root / "naive" / "in", root / "naive" / "warmup", days[:1], cfg.predictors,
                     cfg.stores.ref("models"))
        for r in range(args.repeat):
            shutil.rmtree(naive_out, ignore_errors=True)
            cpu0, t = cpu_seconds(), time.perf_counter()
            n = naive_script(root / "naive" / "in", naive_out, days, cfg.predictors, cfg.stores.ref("models"))
            runs["naive"].append(time.perf_counter() - t)
            cpus["naive"].append(cpu_seconds() - cpu0)
            counts["naive"].add(n)
            for w in (2, 1):
                wall, cpu, n = pipeline(cfg, clients[w], root / "runs" / f"sm-{w}w.zarr")
                runs[f"pipe{w}"].append(wall)
                cpus[f"pipe{w}"].append(cpu)
                counts[f"pipe{w}"].add(n)
            print(f"round {r + 1}/{args.repeat} (wall s / CPU s): "
                  + ", ".join(f"{label} {runs[k][-1]:.2f} / {cpus[k][-1]:.2f}" for k, label in LABELS.items()),
                  flush=True)
    all_counts = set().union(*counts.values())
    assert len(all_counts) == 1, f"runs predicted different pixel-days: {counts}"
    pixel_days = all_counts.pop()
    masks, big, worst = compare(naive_out, root / "runs" / "sm-2w.zarr", days)

    best = {k: min(v) for k, v in runs.items()}
    rate = {k: pixel_days / s for k, s in best.items()}
    cpu = {k: min(v) for k, v in cpus.items()}
    cpu_rate = {k: pixel_days / s for k, s in cpu.items()}
    _, usable = cores()
    print()
    print(f"pixel-days predicted by every run: {pixel_days:,} of {facts['pixels'] * len(days):,} "
          f"({land_pixels:,} land pixels x {len(days)} days; the rest lack a predictor, mostly LST under clouds)")
    print(f"products agree: {masks} pixel-days differ in validity, {big} differ by more than 1e-4 m3/m3 "
          f"(largest difference {worst} x 1e-4)")
    print(f"figures: best of {args.repeat} interleaved timed runs each; CPU s = user + system seconds of every "
          "process involved (naive: this process with xgboost's threads; pipeline: workers + the process holding "
          "client and scheduler)")

    print("spread under load, per round: pipeline / naive throughput "
          + ", ".join(f"{a / b:.2f}" for a, b in zip(runs["naive"], runs["pipe2"]))
          + "; speed-up 2 / 1 workers " + ", ".join(f"{a / b:.2f}" for a, b in zip(runs["pipe1"], runs["pipe2"])))

    def row(label: str, k: str) -> str:
        return (f"   {label:44} {best[k]:>8.2f} {rate[k]:>13,.0f} {cpu[k]:>7.2f} {cpu_rate[k]:>16,.0f}")

    head = f"   {'':44} {'wall s':>8} {'pixel-days/s':>13} {'CPU s':>7} {'pixel-days/CPU s':>16}"
    print()
    print("1. dsm pipeline against the naive GeoTIFF script (gap_free false, uncertainty none, same models)")
    print(head)
    print(row(f"naive script (1 process, xgboost {usable} threads)", "naive"))
    print(row("dsm pipeline (2 workers x 1 thread)", "pipe2"))
    print(f"   ratio pipeline / naive: throughput {rate['pipe2'] / rate['naive']:.2f}; "
          f"pixel-days per CPU second {cpu_rate['pipe2'] / cpu_rate['naive']:.2f}")
    speedup = rate["pipe2"] / rate["pipe1"]
    print()
    print("2. dsm pipeline from one worker to two (1 thread each)")
    print(head)
    print(row("1 worker", "pipe1"))
    print(row("2 workers", "pipe2"))
    print(f"   speed-up 2 / 1 workers: {speedup:.2f}; efficiency (speed-up / 2): {speedup / 2:.2f}; "
          f"CPU s 2 / 1 workers: {cpu['pipe2'] / cpu['pipe1']:.2f}")

    per_core = rate["pipe2"] / 2
    per_cpu_s = cpu_rate["pipe2"]
    frac = pixel_days / (land_pixels * len(days))
    px_km2 = (CELL_1KM / 1000.0) ** 2
    pixels = PAPER_AREA_KM2 / px_km2
    ndays = (PAPER_END - PAPER_START).days + 1
    jobs = {"paper rule": pixels * ndays * frac, "gap-free": pixels * ndays}
    print()
    print(f"3. projected prediction wall time of the paper's job: {PAPER_AREA_KM2:.3g} km2 = {pixels:.4g} EASE-Grid "
          f"1 km pixels ({px_km2:.4f} km2 each), all land;")
    print(f"   daily {PAPER_START}..{PAPER_END} = {ndays} days; 'paper rule': {frac:.1%} of land pixel-days "
          f"predicted, as on this twin ({jobs['paper rule']:.3g} pixel-days);")
    print(f"   'gap-free': every land pixel-day ({jobs['gap-free']:.3g}), same cost per pixel assumed. Prediction "
          "only (no ingest, training, export); linear in cores.")
    print(f"   measured: per-core rate = 2-worker rate / 2 = {per_core:,.0f} pixel-days/s (this shared machine); "
          f"if cores were not shared: {per_cpu_s:,.0f} pixel-days per CPU second")
    print(f"   {'':6} {'measured per-core rate':>25}   {'per CPU second':>25}")
    print(f"   {'cores':>6} {'paper rule':>12} {'gap-free':>12}   {'paper rule':>12} {'gap-free':>12}")
    for n in CORES:
        print(f"   {n:>6} " + " ".join(f"{duration(jobs[k] / (per_core * n)):>12}" for k in jobs) + "   "
              + " ".join(f"{duration(jobs[k] / (per_cpu_s * n)):>12}" for k in jobs))
    print()
    print(f"whole benchmark: {time.perf_counter() - t_all:.0f} s; load average (1, 5, 15 min) now: {load_average()}")
    if args.json:
        figures = {"size": args.size, "days": args.days, "repeat": args.repeat, "pixel_days": pixel_days,
                   "machine": machine_facts(), "load_average_end": load_average(),
                   "wall_s": runs, "cpu_s": cpus, "rate": rate, "cpu_rate": cpu_rate,
                   "pipeline_over_naive": ratio_spread(runs["naive"], runs["pipe2"]),
                   "speedup_2_over_1": ratio_spread(runs["pipe1"], runs["pipe2"]),
                   "products_agree": {"validity_differs": int(masks), "over_1e-4": int(big)},
                   "projection_hours": {k: {str(n): jobs[k] / (per_core * n) / 3600 for n in CORES} for k in jobs}}
        Path(args.json).write_text(json.dumps(figures, indent=1))
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
