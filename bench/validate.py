"""The twin skill of the validate stage: on the client (as before) against on the workers.

Builds (or reuses, ``--workdir``) the default twin (8 x 8 SMAP cells, 2016) and a products store
on it (the truth plus N(0, 0.02), :func:`dsm.testing.validation.make_products_store`; ``--days
N``: the first N days done), then times in interleaved rounds (``--rounds``, the order rotating):

* ``client``: :func:`dsm.skill.skill` with ``periods=True`` in this process (one time chunk after
  another, two passes over the chunks, the stores opened once and read once: pass 2 scores the
  arrays pass 1 kept);
* ``workers``: :func:`dsm.skill.skill` with ``client`` and ``periods=True`` on a LocalCluster of
  ``--workers`` single-threaded worker processes: one task per time chunk and pass, the stores
  read on the workers (once: each chunk's pass 2 on the worker that read it in pass 1, which
  kept its arrays), the per-period table from the same pass, each chunk's sums folded into
  those before it on the workers (:func:`dsm.skill_workers.on_workers`): only each pass's total
  comes to the client;
* ``reread``: ``workers`` with ``keep_bytes=0``: pass 2 reads the truth, SMAP and the products
  again (as before);
* ``gathered``: the same tasks, but every chunk's sums gathered to the client and merged there,
  in time order, and pass 2 reading again (the scheme before the fold; :func:`gathered_runner`,
  this file's first baseline).

All give the same scores (checked: the skill JSON bit for bit but for ``passes``, the period
table within 1e-12).
With ``--stage``, each round also times the validate stage on the same cluster two ways, the
order alternating: its three steps one after the other, as ``dsm run`` made them before
(:func:`stage_steps`: the run's twin skill with the twin's stations, the in situ validation, the
report with its mean maps and figures), and the stage as ``dsm run`` makes it now
(:func:`stage_overlapped`: the skill beside the station validation, the mean maps started
first); it prints their medians, the ratio sequential / overlapped and the ratio of the
stage to the ``workers`` skill alone.
With ``--means``, each round also times the report's mean maps on the same cluster three ways,
the order alternating (:func:`means_ways`): ``whole``, every day reduced again (as each run did
before), ``anew``, the validate stage's update into a new store (a first run), and ``daily``, the
update after the last day was predicted again (a daily run); it prints their medians, task
counts and the ratios whole / daily and whole / anew, and checks that they wrote the same means.
Prints each wall time, the MB the workers sent to the client (their logs of outgoing
transfers), the ratios client / workers, reread / workers and gathered / workers (> 1:
``workers`` is faster)
with their median and range over the rounds; ``--json PATH`` writes them.

Run: ``.venv/bin/python bench/validate.py [--workdir DIR] [--days N] [--rounds R] [--workers W]
[--paths client,workers,reread,gathered] [--stage] [--means] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from _common import load_average, local_cluster, machine_facts, ratio_spread, spread_text
from distributed import Client, as_completed

from dsm import analysis, ledger, mean_maps, products, skill_workers
from dsm import config as config_mod
from dsm.skill import read_twin_stations, skill
from dsm.skill_chunks import Runner, SkillJob
from dsm.storeref import StoreRef
from dsm.synthetic import TwinSpec
from dsm.testing.validation import make_products_store, record_days_done


def _stores(work: Path, days: int) -> tuple[config_mod.Config, str]:
    """The default twin's configuration under ``work`` (built unless there) and its products store."""
    from dsm.chain import build_twin_stores

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
        make_products_store(cfg.stores.at(str(out)), cfg.stores.ref("truth"), noise=0.02, seed=3, space_chunk=144, time_chunk=8,
                            days_done=all_days[:days] if days else None)
    return cfg, str(out)


def gathered_runner(client: Client, window: int = 0) -> Callable[[SkillJob], AbstractContextManager[Runner]]:
    """The runner of the twin skill before the fold on the workers and before pass 2 scored what
    pass 1 kept: the job sent to the workers for each pass (so pass 2 reads every chunk again),
    each chunk's sums gathered to the client as soon as the chunk is done and yielded in chunk
    order (the client merges)."""

    @contextmanager
    def bound(job: SkillJob) -> Iterator[Runner]:
        def run(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> Iterator[Any]:
            width = window or 2 * max(1, sum(client.nthreads().values())) + 2
            shared = [client.scatter([a], broadcast=True, hash=False)[0]
                      for a in ((job, *args[0][1:]) if args else ())]
            job_f, rest = (shared[0], shared[1:]) if shared else (job, [])
            pending = iter(enumerate(args))
            done: dict[int, Any] = {}
            queue = as_completed()
            index: dict[Any, int] = {}

            def submit() -> None:
                item = next(pending, None)
                if item is not None:
                    i, a = item
                    f = client.submit(fn, job_f, a[0], *rest, key=f"skill-{fn.__name__}-{i}-{uuid.uuid4().hex}")
                    index[f.key] = i
                    queue.add(f)

            for _ in range(width):
                submit()
            nxt = 0
            for fut in queue:
                done[index.pop(fut.key)] = fut.result()
                submit()
                while nxt in done:
                    yield done.pop(nxt)
                    nxt += 1
            client.cancel(shared)

        yield run

    return bound


@contextmanager
def runner(make: Callable[..., Callable[[SkillJob], AbstractContextManager[Runner]]]) -> Iterator[None]:
    """:func:`dsm.skill.skill` uses ``make`` instead of :func:`dsm.skill_workers.on_workers` inside."""
    kept = skill_workers.on_workers
    skill_workers.on_workers = make
    try:
        yield
    finally:
        skill_workers.on_workers = kept


def _with_output(cfg: config_mod.Config, output: str) -> config_mod.Config:
    """``cfg`` with ``stores.output`` set to ``output``."""
    raw = cfg.model_dump(mode="json")
    raw["stores"]["output"] = output
    return config_mod.from_dict(raw)


def stage_steps(cfg: config_mod.Config, output: str, client: Client) -> dict[str, float]:
    """Seconds of the validate stage's steps (``skill``, ``stations``, ``report``) and their
    ``total`` for the products store ``output``, on ``client``'s cluster."""
    from dsm.chain import twin_skill
    from dsm.stages.report import run_report
    from dsm.stages.validate import run_validate

    cfg = _with_output(cfg, output)
    t0 = time.perf_counter()
    scores = twin_skill(cfg, cfg.stores.at(f"{Path(output).parent}/skill-bench.json"), client)
    t1 = time.perf_counter()
    validation = run_validate(cfg, client, twin=scores)
    t2 = time.perf_counter()
    run_report(cfg, client, validation, twin=scores)
    t3 = time.perf_counter()
    return {"skill": t1 - t0, "stations": t2 - t1, "report": t3 - t2, "total": t3 - t0}


def stage_overlapped(cfg: config_mod.Config, output: str, client: Client) -> float:
    """Seconds of the validate stage as ``dsm run`` runs it (:data:`dsm.chain.STAGE_FUNCTIONS`)
    for the products store ``output``, on ``client``'s cluster."""
    from dsm.chain import STAGE_FUNCTIONS

    cfg = _with_output(cfg, output)
    t0 = time.perf_counter()
    result = STAGE_FUNCTIONS["validate"](cfg, client, lambda line: None, None)
    assert result.status == "done", result.message
    return time.perf_counter() - t0


def sent_to_client(client: Client, since: float) -> int:
    """Bytes the workers have sent to a client or the scheduler (not to another worker) in the
    transfers they started after ``since`` (``time.time()``), from their outgoing transfer logs."""
    def sent(dask_worker: Any) -> int:
        return sum(t["total"] for t in dask_worker.transfer_outgoing_log if t["who"] is None and t["start"] >= since)

    return sum(client.run(sent).values())


def check_same(results: dict[str, Any]) -> dict[str, Any]:
    """Check that every path gave the first one's skill JSON (bit for bit, but for ``passes``:
    what was read again) and period table (within 1e-12); the first one's skill."""
    first, *others = list(results)
    s_c, p_c = results[first]
    for label in others:
        s_w, p_w = results[label]
        assert json.dumps({**s_c, "passes": None}) == json.dumps({**s_w, "passes": None}), \
            f"{label} gave other skill scores than {first}"
        assert p_c[["period", "map", "n"]].equals(p_w[["period", "map", "n"]])
        for c in ("rmse", "r", "ubrmse", "bias", "cell_r"):
            np.testing.assert_allclose(p_w[c].to_numpy(float), p_c[c].to_numpy(float), rtol=1e-12, atol=1e-15)
    return s_c


MEANS_WAYS = ("whole", "anew", "daily")


def means_ways(output: str, work: Path, client: Client) -> dict[str, Callable[[], int]]:
    """The report's mean maps of ``output`` written under ``work`` on ``client``'s cluster three
    ways; each returns its task count: ``whole``, every day reduced again as one lazy xarray
    graph (:func:`dsm.analysis.means_job`, read in tasks of 4 stored time chunks and the whole
    extent, as each run made them before); ``anew``, the
    validate stage's update into a new store (:func:`dsm.mean_maps.means_update`: a first run);
    ``daily``, the same update after the last day done was predicted again (its record
    changed, as a daily run finds it: untimed, the day is first taken back and updated)."""
    ref = StoreRef(output)
    daily = StoreRef(str(work / "means-daily.zarr"))

    def whole() -> int:
        sm = products.open_products(ref, chunks=None)["sm"]
        # as the stage read them before: tasks of 4 stored time chunks and (this region) the whole extent
        sm = sm.chunk({"time": 4 * sm.encoding["chunks"][0], "y": -1, "x": -1})
        job = analysis.means_job(sm, StoreRef(str(work / "means-whole.zarr")))
        client.compute(job).result()
        return len(job.__dask_graph__())

    def update(dest: StoreRef) -> int:
        job = mean_maps.means_update(ref, dest)[1]
        if job is None:
            return 0
        client.compute(job).result()
        return len(job.__dask_graph__())

    def anew() -> int:
        shutil.rmtree(work / "means-anew.zarr", ignore_errors=True)
        return update(StoreRef(str(work / "means-anew.zarr")))

    update(daily)  # the store a daily run finds
    return {"whole": whole, "anew": anew, "daily": lambda: update(daily)}


def before_daily(output: str, work: Path) -> None:
    """Untimed, before each ``daily`` of :func:`means_ways`: take the last day back and update the
    mean maps, then record it again (as predict would: done, with its digest)."""
    ref = StoreRef(output)
    last = ledger.read(ref).done[-1]
    ledger.write_days(ref, {last: ledger.DayRecord()})
    job = mean_maps.means_update(ref, StoreRef(str(work / "means-daily.zarr")))[1]
    if job is not None:
        job.compute()
    record_days_done(ref, [last])


def check_same_means(work: Path) -> None:
    """The three ways of :func:`means_ways` wrote the same mean maps: ``anew`` and ``daily`` bit
    for bit; ``whole`` within 1e-6 (float32 sums in another order), on the days of the year it has."""
    whole, anew, daily = (xr.open_zarr(work / f"means-{k}.zarr", consolidated=False).load()
                          for k in ("whole", "anew", "daily"))
    for name in anew.data_vars:
        np.testing.assert_array_equal(daily[name].values, anew[name].values, err_msg=str(name))
    for name in whole.data_vars:
        have = anew[name].sel(dayofyear=whole["dayofyear"]) if "dayofyear" in whole[name].dims else anew[name]
        np.testing.assert_allclose(have.values, whole[name].values, rtol=1e-6, atol=1e-9, err_msg=str(name))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="folder holding (or to hold) the default twin")
    ap.add_argument("--days", type=int, default=0, help="score the first N days (default 0: all 366)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the paths (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the cluster (default 2)")
    ap.add_argument("--paths", default="client,workers,reread,gathered",
                    help="the paths to time, comma-separated, at least two (default client,workers,reread,gathered)")
    ap.add_argument("--stage", action="store_true", help="also time the validate stage's steps in each round")
    ap.add_argument("--means", action="store_true", help="also time the report's mean maps two ways in each round")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-validate-"))
    cfg, output = _stores(work, args.days)
    truth, cube, maps = cfg.stores.ref("truth"), cfg.stores.ref("cube"), cfg.stores.at(output)
    stations = read_twin_stations(cfg.stores.ref("stations").join("insitu.csv"))
    for line in machine_facts():
        print(line)
    print(f"products {output}; {args.workers} workers; {args.rounds} interleaved rounds")
    results: dict[str, Any] = {}
    with local_cluster(args.workers) as client:
        def on_client() -> Any:
            s = skill(maps, truth, cube, stations=stations, periods=True)
            return s, pd.DataFrame(s.pop("periods"))

        def on_workers() -> Any:
            s = skill(maps, truth, cube, stations=stations, client=client, periods=True)
            return s, pd.DataFrame(s.pop("periods"))

        def reread() -> Any:
            s = skill(maps, truth, cube, stations=stations, client=client, periods=True, keep_bytes=0)
            return s, pd.DataFrame(s.pop("periods"))

        def gathered() -> Any:
            with runner(gathered_runner):
                return on_workers()

        paths = {"client": on_client, "workers": on_workers, "reread": reread, "gathered": gathered}
        wanted = args.paths.split(",")
        if len(wanted) < 2 or not set(wanted) <= set(paths):
            ap.error(f"--paths: two or more of {', '.join(paths)}")
        runs = {k: paths[k] for k in wanted}
        times: dict[str, list[float]] = {k: [] for k in runs}
        stage: dict[str, list[float]] = {}
        means: dict[str, list[float]] = {}
        means_tasks: dict[str, int] = {}
        ways = means_ways(output, work, client)
        received: dict[str, list[float]] = {k: [] for k in runs}
        order = list(runs)
        for i in range(args.rounds):
            for label in order[i % len(order):] + order[:i % len(order)]:  # rotate: none always first
                since, t0 = time.time(), time.perf_counter()
                results[label] = runs[label]()
                times[label].append(time.perf_counter() - t0)
                time.sleep(0.5)  # a worker logs a transfer once the client has acknowledged it
                received[label].append(sent_to_client(client, since) / 1e6)
                print(f"round {i + 1} {label:8s} {times[label][-1]:8.1f} s, {received[label][-1]:8.1f} MB "
                      "from the workers")
            if args.stage:
                for way in (("sequential", "overlapped") if i % 2 == 0 else ("overlapped", "sequential")):
                    if way == "sequential":
                        steps = stage_steps(cfg, output, client)
                        for k, v in steps.items():
                            stage.setdefault(k, []).append(v)
                        print(f"round {i + 1} stage, steps one after the other: "
                              + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
                    else:
                        stage.setdefault("overlapped", []).append(stage_overlapped(cfg, output, client))
                        print(f"round {i + 1} stage as dsm run makes it: {stage['overlapped'][-1]:.1f} s")
            if args.means:
                for way in (MEANS_WAYS if i % 2 == 0 else MEANS_WAYS[::-1]):
                    if way == "daily":
                        before_daily(output, work)
                    t0 = time.perf_counter()
                    means_tasks[way] = ways[way]()
                    means.setdefault(way, []).append(time.perf_counter() - t0)
                    print(f"round {i + 1} mean maps, {way:5s}: {means[way][-1]:.2f} s, {means_tasks[way]} tasks")
    s_c = check_same(results)

    figures: dict[str, Any] = {"days": s_c["days"], "workers": args.workers, "rounds": args.rounds,
                               "machine": machine_facts(), "seconds": times, "mb_sent_to_client": received,
                               **{f"{a}/{b}": ratio_spread(times[a], times[b]) for a, b in
                                  (("client", "workers"), ("reread", "workers"), ("gathered", "workers"),
                                   ("client", "gathered"))
                                  if a in runs and b in runs}}
    print("pass 2 read again: " + ", ".join(f"{k} {results[k][0]['passes']['read_again']} of "
                                            f"{results[k][0]['passes']['chunks']} chunks" for k in runs))
    print(f"{s_c['days']} days; medians: " + ", ".join(
        f"{k} {statistics.median(v):.1f} s ({statistics.median(received[k]):.1f} MB to the client)"
        for k, v in times.items()))
    for k, f in figures.items():
        if "/" in k:
            print(f"ratio {k:16s} {spread_text(f)}")
    if stage:
        figures["stage_seconds"] = stage
        print("validate stage, medians: " + ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in stage.items()))
        figures["stage sequential/overlapped"] = ratio_spread(stage["total"], stage["overlapped"])
        print(f"ratio stage sequential/overlapped {spread_text(figures['stage sequential/overlapped'])}")
        if "workers" in runs:
            figures["stage/workers"] = ratio_spread(stage["total"], times["workers"])
            print(f"ratio stage/workers      {spread_text(figures['stage/workers'])}")
    if means:
        check_same_means(work)
        figures["means_seconds"], figures["means_tasks"] = means, means_tasks
        figures["means whole/daily"] = ratio_spread(means["whole"], means["daily"])
        figures["means whole/anew"] = ratio_spread(means["whole"], means["anew"])
        print("mean maps, medians: " + ", ".join(f"{k} {statistics.median(v):.2f} s ({means_tasks[k]} tasks)"
                                                 for k, v in means.items()))
        print(f"ratio means whole/daily {spread_text(figures['means whole/daily'])}, "
              f"whole/anew {spread_text(figures['means whole/anew'])}")
    print(f"load average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
