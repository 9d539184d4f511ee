"""Workers started as dsm starts them against workers with Dask's own environment only.

Dask starts its worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``, which stops glibc from
adapting its malloc thresholds: every array over 128 KiB is then mapped, zero-filled page by page
and unmapped again, and the heap's free top is handed back after every task. dsm starts its
workers (:func:`dsm.cluster.local_cluster`, ``dsm deploy``) with ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` at the largest values glibc's adaptation reaches, 32 and 64 MiB
(:data:`dsm.cluster.WORKER_ENVIRON`).
This benchmark runs the same work on fresh LocalClusters of ``--workers`` single-threaded
workers started both ways (``dsm`` and ``dask``), in interleaved rounds, the order alternating:

* **skill**: :func:`dsm.skill.skill` on the workers, with the twin's stations and the
  per-period table, of a products store on the default twin (8 x 8 SMAP cells, 366 days; the
  truth plus N(0, 0.02), as ``bench/validate.py`` makes it): the validate stage's heaviest step;
* **tables**: the default method's training sample table of the same twin (every SMAP cell-day
  of the year with its aggregated features, one task per 16-day period and 144 x 144 block);
* **predict**: the prediction stage (the default method, fusion) over ``bench/predict.py``'s
  region of ``--size`` x ``--size`` SMAP cells (32 days, 72 x 72-pixel blocks).

Each cluster's workers first import the modules their tasks run. Prints each run's seconds, the
ratio dask / dsm of each (> 1: dsm's workers are faster) with its median and range over the
rounds, and each worker's RSS when idle (after the imports) and at its peak (``VmHWM``). Checks
that both give the same results: the skill's scores bit for bit, the tables, the products' ``sm`` bytes.

Run: ``.venv/bin/python bench/worker_environ.py [--workdir DIR] [--rounds 3] [--size 8]
[--workers 2] [--json PATH]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ensure_twin, load_average, local_cluster, machine_facts, ratio_spread, spread_text, train_models
from predict import method_config, peak_rss_mb, rss_mb, warm_up
from validate import _stores

from dsm import config as config_mod
from dsm.cube import open_cube
from dsm.features import feature_names
from dsm.models.fusion_train import model_predictors, sample_table
from dsm.products import open_products
from dsm.skill import skill
from dsm.skill_stations import read_twin_stations
from dsm.stages.predict import predict

ENVIRONS = ("dsm", "dask")


def products_digest(cfg: config_mod.Config) -> str:
    """SHA-256 of the products store's ``sm`` values (int16 as stored, fill included)."""
    ds = open_products(cfg.stores.ref("output"))
    return hashlib.sha256(np.ascontiguousarray(ds["sm"].values).tobytes()).hexdigest()


def one_round(environ: str, workers: int, skill_args: dict[str, Any], scfg: config_mod.Config,
              predictors: tuple[str, ...], pcfg: config_mod.Config) -> dict[str, Any]:
    """Seconds of the skill, the tables and the prediction on one fresh cluster started
    ``environ``'s way, the workers' largest idle and peak RSS (MB), and what each produced."""
    with local_cluster(workers, profile=False, environ=environ) as c:
        c.run(warm_up)
        c.run(lambda: __import__("dsm.skill_workers"))
        idle = max(c.run(rss_mb).values())
        t0 = time.perf_counter()
        scores = skill(client=c, periods=True, **skill_args)
        t_skill = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = sample_table(scfg, c, open_cube(scfg.stores.ref("cube")), predictors, feature_names(predictors))
        t_tables = time.perf_counter() - t0
        t0 = time.perf_counter()
        predict(pcfg, c, overwrite=True)
        t_predict = time.perf_counter() - t0
        peak = max(c.run(peak_rss_mb).values())
    scores.pop("passes")  # which chunks pass 2 read again depends on where the tasks ran
    return {"skill_s": t_skill, "tables_s": t_tables, "predict_s": t_predict, "idle_mb": idle, "peak_mb": peak,
            "skill": json.dumps(scores, sort_keys=True, default=str), "sm": products_digest(pcfg),
            "tables": hashlib.sha256(table.to_csv().encode()).hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="folder holding (or to hold) the twins")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--size", type=int, default=8, help="SMAP cells a side of the prediction region (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of each cluster (default 2)")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-environ-"))
    scfg, output = _stores(work / "validate", 0)
    skill_args = {"maps": scfg.stores.at(output), "truth": scfg.stores.ref("truth"), "cube": scfg.stores.ref("cube"),
                  "stations": read_twin_stations(scfg.stores.ref("stations").join("insitu.csv"))}
    predictors = model_predictors(scfg, open_cube(scfg.stores.ref("cube")))[0]
    pcfg = method_config(work / "predict", args.size, "fusion", "none")
    ensure_twin(pcfg, work / "predict")
    train_models(pcfg)
    for line in machine_facts():
        print(line)
    print(f"{args.workers} workers x 1 thread; {args.rounds} interleaved rounds; skill of {output} (366 days); "
          f"its training sample table; prediction of {args.size} x {args.size} cells (fusion, 32 days); "
          f"load average {load_average()}")
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in ENVIRONS}
    for i in range(args.rounds):
        for environ in (ENVIRONS if i % 2 == 0 else ENVIRONS[::-1]):
            r = one_round(environ, args.workers, skill_args, scfg, predictors, pcfg)
            runs[environ].append(r)
            print(f"round {i + 1} {environ:4s}  skill {r['skill_s']:6.1f} s  tables {r['tables_s']:6.1f} s  "
                  f"predict {r['predict_s']:6.1f} s  "
                  f"worker RSS idle {r['idle_mb']:6.0f} MB, peak {r['peak_mb']:6.0f} MB", flush=True)
    results = {(r["skill"], r["tables"], r["sm"]) for e in ENVIRONS for r in runs[e]}
    if len(results) != 1:
        raise SystemExit(f"the runs differ: {len(results)} distinct results (skill scores, tables, products' sm)")
    figures: dict[str, Any] = {"machine": machine_facts(), "workers": args.workers, "rounds": args.rounds,
                               "size": args.size, "load_average": load_average(),
                               **{f"{e}_{k}": [r[k] for r in runs[e]] for e in ENVIRONS
                                  for k in ("skill_s", "tables_s", "predict_s", "idle_mb", "peak_mb")}}
    for k in ("skill_s", "tables_s", "predict_s"):
        figures[f"dask/dsm {k[:-2]}"] = ratio_spread(figures[f"dask_{k}"], figures[f"dsm_{k}"])
    print("the same skill scores, tables and products in every run")
    for e in ENVIRONS:
        print(f"{e:4s} medians: skill {statistics.median(figures[f'{e}_skill_s']):.1f} s, tables "
              f"{statistics.median(figures[f'{e}_tables_s']):.1f} s, predict "
              f"{statistics.median(figures[f'{e}_predict_s']):.1f} s, worker RSS idle "
              f"{statistics.median(figures[f'{e}_idle_mb']):.0f} MB, peak {statistics.median(figures[f'{e}_peak_mb']):.0f} MB")
    for k in ("skill", "tables", "predict"):
        print(f"dask / dsm seconds, {k:8s} {spread_text(figures[f'dask/dsm {k}'])}")
    print(f"load average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
