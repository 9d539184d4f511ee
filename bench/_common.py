"""Setup shared by the prediction benchmarks (``bench/predict.py``, ``bench/daily_maps.py``).

The twin region around :data:`dsm.synthetic.TWIN_CENTRE`, its configuration, XGBoost
training (one grid point: 300 trees of depth 6, the reference in docs/architecture.md),
LocalClusters of single-threaded worker processes, the predictors of one day as arrays, and
the machine facts every benchmark prints beside its figures.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from distributed import Client, LocalCluster

from dsm import cluster as dsm_cluster
from dsm import config as config_mod
from dsm.blocks import block_features
from dsm.grid import Region
from dsm.stages.train import train
from dsm.storeref import StoreRef
from dsm.synthetic import TWIN_CENTRE, TwinSpec
from dsm.twin import TwinStores, build_twin

# two whole 16-day periods of the twin (day of year 161..192 of 2016), plenty of samples
START, END = dt.date(2016, 6, 9), dt.date(2016, 7, 10)
XGB_GRID = {"n_estimators": [300], "max_depth": [6], "learning_rate": [0.05]}


def space_chunk(size: int) -> int:
    """Spatial chunk of the bench stores: 144 pixels (4 x 4 cells), 72 for tiny regions."""
    return 144 if size > 2 else 72


def twin_config(root: Path, size: int, start: dt.date = START, end: dt.date = END, *,
                output: str | None = None, uncertainty: str = "none",
                gap_free: bool = True, space: int | None = None) -> config_mod.Config:
    """The configuration of a ``size x size``-cell twin under ``root``: the paper's method
    (``training.method: rao2022``), XGBoost only.

    ``output``: the output store (default ``root/sm.zarr``); ``space``: the spatial chunk
    (default :func:`space_chunk`).
    """
    r = Region.around(*TWIN_CENTRE, size, size)
    return config_mod.from_dict({
        "region": {"cells": [r.row0, r.col0, r.nrows, r.ncols]},
        "dates": {"start": str(start), "end": str(end)},
        "stores": {"cube": str(root / "cube.zarr"), "models": str(root / "models"),
                   "output": output or str(root / "sm.zarr")},
        "chunks": {"space": space or space_chunk(size), "time": 8},
        "training": {"method": "rao2022", "models": ["xgb"], "grids": {"xgb": XGB_GRID},
                     "pooled": False, "min_samples": 10, "spatial_block": None},
        "output": {"uncertainty": uncertainty, "gap_free": gap_free},
    })


def ensure_twin(cfg: config_mod.Config, root: Path) -> bool:
    """Build the twin cube of ``cfg`` under ``root`` unless it is there; True if built."""
    if (root / "cube.zarr" / "zarr.json").exists():
        return False
    stores = TwinStores(*(StoreRef(str(root / n)) for n in ("cube.zarr", "truth.zarr", "stations")))
    build_twin(stores, TwinSpec(cfg.grid_region, cfg.dates.start, cfg.dates.end, 42, 2, 1),
               cfg.chunks.space, cfg.chunks.time, overwrite=True, progress=False)
    return True


@contextmanager
def local_cluster(n_workers: int = 2, profile: bool = True, environ: str = "dsm") -> Iterator[Client]:
    """A LocalCluster of ``n_workers`` single-threaded worker processes and its client; both
    are closed (workers terminated) on exit. ``profile=False`` turns off Dask's statistical
    profiler on the workers (``distributed.worker.profile.enabled``). ``environ``: ``"dsm"``
    starts the workers as dsm does (:func:`dsm.cluster.local_cluster`), ``"dask"`` with Dask's
    own worker environment only (without :data:`dsm.cluster.WORKER_ENVIRON`, also removed from
    this process's environment, where an earlier nanny put it and which a worker inherits)."""
    if environ not in ("dsm", "dask"):
        raise ValueError(f"environ must be 'dsm' or 'dask', got {environ!r}")
    if environ == "dask":
        for name in dsm_cluster.WORKER_ENVIRON:
            os.environ.pop(name, None)
    start = (functools.partial(dsm_cluster.local_cluster, n_workers, 1) if environ == "dsm" else
             functools.partial(LocalCluster, n_workers=n_workers, threads_per_worker=1, processes=True))
    with dask.config.set({"distributed.worker.profile.enabled": profile}), \
            start(dashboard_address=":0") as cl, Client(cl) as c:
        yield c


def train_models(cfg: config_mod.Config) -> None:
    """Train the periods of ``cfg`` (and the variants its ``output`` asks for) on a fresh
    LocalCluster of 2 workers; periods already in the model store are skipped."""
    with local_cluster(2) as c:
        rep = train(cfg, c)
    assert not rep.failed, rep.failed


def day_predictors(cube: xr.Dataset, day: dt.date, names: Sequence[str],
                   cache: dict[Any, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Each predictor of ``day`` over the whole region as a float32 array, read as the
    prediction blocks read it (:func:`dsm.blocks.block_features`): the day's daily and
    precipitation layers, the 8-day and 16-day composites covering it, the static layers (NaN
    where missing). ``cache`` keeps the composites and static layers between days."""
    whole = slice(0, cube.sizes["y"]), slice(0, cube.sizes["x"])
    return block_features(cube, day, names, *whole, {} if cache is None else cache)


def ratio_spread(num: Sequence[float], den: Sequence[float]) -> dict[str, float]:
    """Median, min and max of the per-round ratios ``num[i] / den[i]`` (rounds interleaved)."""
    r = [a / b for a, b in zip(num, den, strict=True)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


def spread_text(s: dict[str, float]) -> str:
    """``"1.23 (0.98..1.40)"``: a :func:`ratio_spread` as printed."""
    return f"{s['median']:5.2f} ({s['min']:.2f}..{s['max']:.2f})"


def cores() -> tuple[int, int]:
    """(logical CPUs of the machine, CPUs this process may run on)."""
    n = os.cpu_count() or 1
    try:
        return n, len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return n, n


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (the machine may be shared: say how busy it was)."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def machine_facts() -> list[str]:
    """Lines describing the machine and the library versions."""
    import distributed
    import rasterio
    import xgboost
    import zarr

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    total, usable = cores()
    load = load_average()
    return [
        f"machine: {cpu}; {total} logical CPUs, {usable} usable; load average (1, 5, 15 min): {load}",
        f"python {platform.python_version()} on {platform.system()} {platform.release()}; numpy {np.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}, xarray {xr.__version__}, "
        f"zarr {zarr.__version__}, xgboost {xgboost.__version__}, rasterio {rasterio.__version__} "
        f"(GDAL {rasterio.__gdal_version__})",
    ]


def describe_config(cfg: config_mod.Config) -> dict[str, Any]:
    """The facts of a bench configuration worth printing."""
    ny, nx = cfg.grid_region.fine_shape
    return {"cells": cfg.grid_region.nrows * cfg.grid_region.ncols, "pixels": ny * nx, "shape": (ny, nx),
            "days": (cfg.dates.end - cfg.dates.start).days + 1}
