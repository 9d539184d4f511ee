"""Scaling of the prediction stage (or training) over worker processes, and where the wall time goes.

The work: ``dsm.stages.predict.predict`` of the default method (``fusion``: the 36 km pass of
the fused cell means, the calibration at the stations, then one task per 72 x 72-pixel (``--space``),
8-day block) over a twin region of N x N SMAP cells (``--size``, default 14 x 14: about 40 s on
one worker here) and two 16-day periods (2016-06-09 .. 2016-07-10), sized so that one run on ONE single-threaded worker
takes at least 30 s (a warning says when it did not). The twin and its models are built once
(``--workdir`` keeps them for the next call); every run rewrites the output store from scratch
(``overwrite=True``) and must predict the same number of pixel-days.

1. **configurations**: a fresh LocalCluster of N single-threaded worker processes for each run
   (``--workers``, default 1 and 2, and 4, 8, ... where ``os.cpu_count()`` has them), Dask's
   statistical profiler off. Start-up is not timed: the clock starts once all N workers are up
   and stops when the stage returns (so each run pays the workers' cold start in the stage
   itself: imports, the first model loads);
2. **rounds** (``--rounds``, default 3): each configuration once per round, the order rotating
   from round to round (1, 2 / 2, 1 / 1, 2 ...), so that the machine's load moves all alike;
3. **speed-up** T(1) / T(N) of each round (the 1-worker and N-worker runs of the same round),
   its median and range, and the parallel efficiency speed-up / N;
4. **where the time goes**: the N x wall worker-seconds of each run are split, from Dask's task
   stream (``distributed.get_task_stream``) and a sampler of this process's main thread (every
   ``--sample-ms``: blocked in a ``threading`` wait under ``distributed``'s API, i.e. waiting on
   the cluster, or working; zarr's synchronous IO, a wait on zarr's own IO thread, is working;
   the sampler costs about 1 % of a core), into

   * ``compute``: tasks computing on the workers;
   * ``client``: no task runs anywhere while the client's main thread works (dsm's planning,
     opening stores, building graphs, pickling the block jobs, the ledger writes);
   * ``sched``: no task runs anywhere while the client waits on the cluster (the scheduler
     receiving the graph, a result coming back, the next task or data being sent; on 1 worker
     every gap between two tasks is here);
   * ``dispatch``: a worker idle between two consecutive tasks of the same kind (task prefix)
     while another worker computes (the next task not yet there, or in a graph a dependency);
   * ``imbalance``: the rest, a worker idle while another computes at the ends of the phases
     (a phase's last tasks, before a worker's first and after its last task).

   **Scheduler overhead = sched + dispatch**: the worker-time lost to handing tasks and results
   between the client, the scheduler and the workers, as a fraction of N x wall (the issue's
   target: under 5 %). ``loop CPU`` is, beside it, the CPU time of this process's threads
   other than the main thread and the sampler (the scheduler and the client's event loop, which
   LocalCluster runs here, and zarr's IO thread for the client's own reads and writes) over
   N x wall: on a machine with no more cores than workers it is taken from them. Dependency
   transfers between workers are in the JSON (seconds) but not in the split (they overlap
   computing);
5. **the tasks themselves**: ``task s`` is the compute seconds of all tasks summed over the
   workers, beside its ratio to 1 worker's: above 1, the same tasks ran slower side by side
   (cores shared with other work, hyper-threads, memory bandwidth), which bounds the speed-up
   at N x compute share / that ratio whatever the scheduler does; ``CPU/task s`` is the workers'
   CPU seconds (user + system, from each worker process) per task second: under 1, tasks waited
   for a core (or for IO); ``worker CPU s`` the workers' CPU seconds of the run against 1
   worker's: near x1, the same work was done, it only waited longer for the cores.

``--stage train`` times the fusion training instead (``train(force=True)`` into a model store
of its own, emptied before each run), the same way.

Run: ``.venv/bin/python bench/scaling.py [--stage predict|train] [--size 14] [--days 32] [--space 72] [--workers 1 2]
[--rounds 3] [--sample-ms 5] [--workdir DIR] [--json PATH]``

Reading it: on a machine shared with other work the walls move with its load (the load average
is printed at the start, before each run and at the end, and written to the JSON); the speed-up
of a round compares runs made a minute apart, its range says how far to trust it. A speed-up
well under N with ``task s`` well above x1 and ``CPU/task s`` well under 1 is the machine
(too few free cores), with a large ``client`` share Amdahl's serial part on the client, with a
large ``imbalance`` too few or too uneven tasks per phase, with a large ``sched`` or ``dispatch``
the scheduler.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from types import FrameType
from typing import Any

import distributed
import psutil
from _common import (
    END,
    START,
    cores,
    describe_config,
    ensure_twin,
    load_average,
    local_cluster,
    machine_facts,
    ratio_spread,
    spread_text,
    train_models,
    twin_config,
)
from dask.utils import key_split
from distributed import Client, get_task_stream

from dsm import config as config_mod
from dsm.stages.predict import predict
from dsm.stages.train import train

Intervals = list[tuple[float, float]]
DISTRIBUTED = str(Path(distributed.__file__).parent) + os.sep
PARTS = ("compute", "client", "sched", "dispatch", "imbalance")


# ------------------------------------------------------------------ intervals (sorted, disjoint)
def merged(iv: Sequence[tuple[float, float]]) -> Intervals:
    """The union of ``iv`` as sorted disjoint intervals."""
    out: Intervals = []
    for a, b in sorted(x for x in iv if x[1] > x[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def length(iv: Intervals) -> float:
    """The total length of sorted disjoint intervals."""
    return sum(b - a for a, b in iv)


def intersection(p: Intervals, q: Intervals) -> Intervals:
    """The intersection of two sorted disjoint interval lists."""
    out, i, j = [], 0, 0
    while i < len(p) and j < len(q):
        a, b = max(p[i][0], q[j][0]), min(p[i][1], q[j][1])
        if b > a:
            out.append((a, b))
        if p[i][1] < q[j][1]:
            i += 1
        else:
            j += 1
    return out


def complement(iv: Intervals, lo: float, hi: float) -> Intervals:
    """``[lo, hi)`` less the sorted disjoint ``iv``."""
    out, t = [], lo
    for a, b in iv:
        if a > t:
            out.append((t, min(a, hi)))
        t = max(t, b)
    if t < hi:
        out.append((t, hi))
    return [(a, b) for a, b in out if b > a]


# ------------------------------------------------------------------ the client's main thread
def on_cluster(frame: FrameType | None) -> bool:
    """Whether a thread whose innermost frame is ``frame`` waits on the cluster: blocked in a
    ``threading`` wait called from ``distributed`` (``Event.wait`` in ``distributed.utils.sync``,
    ``Condition.wait`` in ``as_completed``). A wait elsewhere, such as zarr's synchronous API
    waiting on its IO thread, is the client's own work."""
    if frame is None or frame.f_code.co_name != "wait" or not frame.f_code.co_filename.endswith("threading.py"):
        return False
    f: FrameType | None = frame
    while f is not None:
        if DISTRIBUTED in f.f_code.co_filename:
            return True
        f = f.f_back
    return False


class MainThreadSampler:
    """Samples every ``interval`` seconds whether the main thread works or waits on the cluster
    (:func:`on_cluster`)."""

    def __init__(self, interval: float) -> None:
        self.interval, self.main = interval, threading.main_thread().ident or 0
        self.samples: list[tuple[float, bool]] = []
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="main-thread-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            f = sys._current_frames().get(self.main)  # the one way to see another thread's frame
            self.samples.append((time.time(), not on_cluster(f)))
            self._stop.wait(self.interval)
        self.cpu = time.thread_time()

    def __enter__(self) -> MainThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def busy(self, lo: float, hi: float) -> Intervals:
        """The intervals of ``[lo, hi)`` in which the main thread worked (each sample holds until
        the next)."""
        s = self.samples + [(hi, False)]
        return merged([(max(t, lo), min(u, hi)) for (t, b), (u, _) in pairwise(s) if b])


# ------------------------------------------------------------------ one run
def split(records: Sequence[dict[str, Any]], workers: Sequence[str], t0: float, t1: float,
          client_busy: Intervals) -> dict[str, float]:
    """The worker-seconds N x (t1 - t0) of a run split into :data:`PARTS` (see the module's
    docstring), and the seconds of dependency transfers and other non-compute actions."""
    own: dict[str, list[tuple[float, float, str]]] = {w: [] for w in workers}
    other = 0.0
    for r in records:
        for s in r["startstops"]:
            a, b = max(s["start"], t0), min(s["stop"], t1)
            if s["action"] == "compute":
                own.setdefault(r["worker"], []).append((a, b, key_split(r["key"])))
            else:
                other += max(0.0, b - a)
    n, wall = len(own), t1 - t0
    busy = {w: merged([(a, b) for a, b, _ in tasks]) for w, tasks in own.items()}  # a worker's own tasks may
    computing = merged([x for iv in busy.values() for x in iv])  # overlap by some ms in the task stream
    none_runs = complement(computing, t0, t1)
    client = length(intersection(none_runs, client_busy))
    dispatch = 0.0
    for w, tasks in own.items():  # a worker's gaps between tasks of one kind, while another worker computes
        tasks.sort()
        gaps = merged([(p[1], q[0]) for p, q in pairwise(tasks) if p[2] == q[2]])
        dispatch += length(intersection(intersection(gaps, complement(busy[w], t0, t1)), computing))
    parts = {"compute": sum(length(iv) for iv in busy.values()),
             "client": n * client, "sched": n * (length(none_runs) - client), "dispatch": dispatch}
    parts["imbalance"] = n * wall - sum(parts.values())
    return {**parts, "transfer_s": other, "tasks": float(len(records))}


def process_cpu() -> float:
    """CPU seconds (user + system) this process has used."""
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def run_predict(cfg: config_mod.Config, client: Client) -> Any:
    """The prediction stage, the output store made anew; the pixel-days it predicted."""
    rep = predict(cfg, client, overwrite=True)
    assert not rep.failed, rep.failed
    return rep.pixels


def run_train(cfg: config_mod.Config, client: Client) -> Any:
    """The training stage (fusion: the pooled models and their companions), every model fitted
    anew (``force``; :func:`run_once` empties the store first); what it trained."""
    rep = train(cfg, client, force=True)
    assert not rep.failed, rep.failed
    return sorted(rep.trained)


STAGES: dict[str, Callable[[config_mod.Config, Client], Any]] = {"predict": run_predict, "train": run_train}


def run_once(stage: str, cfg: config_mod.Config, n: int, interval: float) -> dict[str, Any]:
    """One run of ``stage`` on a fresh LocalCluster of ``n`` single-threaded workers."""
    proc = psutil.Process()
    if stage == "train":  # the bench's own model store, emptied before the clock starts
        shutil.rmtree(str(cfg.stores.models), ignore_errors=True)
    with local_cluster(n, profile=False) as c:
        c.wait_for_workers(n)
        workers = list(c.scheduler_info()["workers"])
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        wcpu0 = c.run(process_cpu)
        with MainThreadSampler(interval) as sampler, get_task_stream(c) as ts:
            cpu0, main0, t0 = sum(proc.cpu_times()[:2]), time.thread_time(), time.time()
            result = STAGES[stage](cfg, c)
            t1, main_cpu, cpu = time.time(), time.thread_time() - main0, sum(proc.cpu_times()[:2]) - cpu0
        loop_cpu = cpu - main_cpu - sampler.cpu  # the sampler's CPU is all within the run, near enough
        wcpu = sum(c.run(process_cpu).values()) - sum(wcpu0.values())
    parts = split(ts.data, workers, t0, t1, sampler.busy(t0, t1))
    ws = n * (t1 - t0)
    return {"workers": n, "wall_s": t1 - t0, "result": result, "load_1min_before": load,
            "fractions": {k: parts[k] / ws for k in PARTS}, "seconds": parts,
            "worker_cpu_s": wcpu, "cpu_per_compute": wcpu / parts["compute"], "client_cpu_s": main_cpu,
            "sampler_cpu_s": sampler.cpu, "loop_cpu_s": loop_cpu, "loop_cpu": loop_cpu / ws,
            "scheduler_overhead": (parts["sched"] + parts["dispatch"]) / ws}


def fusion_config(root: Path, size: int, end: dt.date = END, space: int = 72) -> config_mod.Config:
    """The default method on the twin region of ``size`` x ``size`` cells from :data:`START` to
    ``end``, in ``space`` x ``space`` blocks (cube and products)."""
    raw = twin_config(root, size, START, end, space=space).model_dump(mode="json")
    raw["training"] = {"method": "fusion", "min_samples": 10}
    return config_mod.from_dict(raw)


def default_workers() -> list[int]:
    """1 and 2 workers, and 4, 8, ... as far as the CPUs this process may use go."""
    total, usable = cores()
    return [1, 2] + [n for n in (4, 8, 16, 32, 64) if n <= min(total, usable)]


def pct(x: float) -> str:
    """A fraction as a percentage, 5 characters wide."""
    return f"{100 * x:5.1f}"


def summarise(runs: Sequence[dict[str, Any]], workers: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per number of workers: the wall times, the speed-up over 1 worker and the efficiency
    (median and range over the rounds), the medians of the split, the task seconds against
    1 worker's, the workers' CPU per task second, the workers' CPU seconds against 1 worker's."""
    walls = {n: [r["wall_s"] for r in runs if r["workers"] == n] for n in workers}
    task_s = {n: statistics.median(r["seconds"]["compute"] for r in runs if r["workers"] == n) for n in workers}
    cpu_s = {n: statistics.median(r["worker_cpu_s"] for r in runs if r["workers"] == n) for n in workers}
    summary: dict[int, dict[str, Any]] = {}
    for n in workers:
        mine = [r for r in runs if r["workers"] == n]
        speed = ratio_spread(walls[1], walls[n])
        summary[n] = {"wall_s": {"median": statistics.median(walls[n]), "min": min(walls[n]), "max": max(walls[n])},
                      "speedup": speed, "efficiency": {k: v / n for k, v in speed.items()},
                      "fractions": {k: statistics.median(r["fractions"][k] for r in mine) for k in PARTS},
                      "scheduler_overhead": {"median": statistics.median(r["scheduler_overhead"] for r in mine),
                                             "max": max(r["scheduler_overhead"] for r in mine)},
                      "loop_cpu": statistics.median(r["loop_cpu"] for r in mine),
                      "task_s": task_s[n], "task_s_vs_1": task_s[n] / task_s[1],
                      "worker_cpu_s": cpu_s[n], "worker_cpu_s_vs_1": cpu_s[n] / cpu_s[1],
                      "cpu_per_compute": statistics.median(r["cpu_per_compute"] for r in mine)}
    return summary


def print_summary(summary: dict[int, dict[str, Any]]) -> None:
    """The table of :func:`summarise`."""
    print(f"{'workers':>7} {'wall s median (range)':>22} {'speed-up (range)':>18} {'effic.':>6} "
          + " ".join(f"{k:>9}" for k in PARTS) + f" {'sched+disp max':>14} {'loop CPU':>8} "
          f"{'task s (x 1 worker)':>19} {'CPU/task s':>10} {'worker CPU s (x 1)':>18}")
    for n, s in summary.items():
        w = s["wall_s"]
        print(f"{n:>7} {w['median']:>8.1f} ({w['min']:.1f}..{w['max']:.1f}) {spread_text(s['speedup']):>18} "
              f"{s['efficiency']['median']:>6.2f} " + " ".join(f"{pct(s['fractions'][k]):>9}" for k in PARTS)
              + f" {pct(s['scheduler_overhead']['max']):>14} {pct(s['loop_cpu']):>8} "
              f"{s['task_s']:>10.1f} (x{s['task_s_vs_1']:.2f}) {s['cpu_per_compute']:>10.2f} "
              f"{s['worker_cpu_s']:>9.1f} (x{s['worker_cpu_s_vs_1']:.2f})")
    print("(split, sched+disp and loop CPU: % of N x wall, medians over the rounds; sched+disp: the worst run)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=list(STAGES), default="predict",
                    help="the stage timed (default predict; train: the fusion training, force, into an emptied store)")
    ap.add_argument("--size", type=int, default=14, help="a region of N x N SMAP cells (default 14)")
    ap.add_argument("--days", type=int, default=(END - START).days + 1,
                    help=f"days from {START} (default {(END - START).days + 1}: two 16-day periods); another "
                         "number of days has its twin in a folder of its own under --workdir")
    ap.add_argument("--space", type=int, default=72,
                    help="the blocks' side in pixels, of the cube and the products (default 72; dsm's own default "
                         "is 144); another size has its twin in a folder of its own under --workdir")
    ap.add_argument("--workers", type=int, nargs="+", default=None,
                    help="worker processes per configuration (default: 1 2, and 4, 8, ... up to the CPUs)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--sample-ms", type=float, default=5.0, help="the main-thread sampler's period (default 5 ms)")
    ap.add_argument("--workdir", default=None, help="folder holding (or to hold) the twin and its models")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()
    began, load_start = time.perf_counter(), load_average()
    workers = sorted(set(args.workers or default_workers()))
    if workers[0] != 1:
        ap.error("--workers must include 1 (the baseline of the speed-up)")
    root = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-scaling-"))
    end = START + dt.timedelta(days=args.days - 1)
    if end != END:  # a twin of other days
        root = root / f"days-{args.days}"
    if args.space != 72:  # a twin in other blocks
        root = root / f"space-{args.space}"
    cfg = fusion_config(root, args.size, end, args.space)
    t = time.perf_counter()
    if ensure_twin(cfg, root) or not (root / "models").exists():
        train_models(cfg)
        print(f"built the twin and trained fusion in {time.perf_counter() - t:.0f} s at {root}")
    if args.stage == "train":  # the timed runs train into a store of their own
        raw = cfg.model_dump(mode="json")
        raw["stores"]["models"] = str(root / "models-scaling")
        cfg = config_mod.from_dict(raw)
    facts = describe_config(cfg)
    for line in machine_facts():
        print(line)
    print(f"{args.stage}, method fusion: {args.size} x {args.size} cells, {facts['pixels']:,} pixels, "
          f"{facts['days']} days ({START}..{end}); workers {workers} x 1 thread, a fresh LocalCluster per run "
          f"(start-up not timed); {args.rounds} rounds, order rotating")
    runs: list[dict[str, Any]] = []
    for i in range(args.rounds):
        for n in workers[i % len(workers):] + workers[:i % len(workers)]:
            r = run_once(args.stage, cfg, n, args.sample_ms / 1000)
            r["round"] = i + 1
            runs.append(r)
            f = r["fractions"]
            print(f"round {i + 1} workers {n}: {r['wall_s']:6.1f} s (load {r['load_1min_before']:.2f}); % of N x wall: "
                  + ", ".join(f"{k} {pct(f[k]).strip()}" for k in PARTS)
                  + f"; loop CPU {pct(r['loop_cpu']).strip()}", flush=True)
    assert all(r["result"] == runs[0]["result"] for r in runs), [r["result"] for r in runs]
    summary = summarise(runs, workers)
    print_summary(summary)
    worst = max(r["scheduler_overhead"] for r in runs)
    print(f"scheduler overhead (sched + dispatch), worst run: {100 * worst:.1f} % of N x wall "
          f"({'under' if worst < 0.05 else 'OVER'} the 5 % target)")
    if summary[1]["wall_s"]["median"] < 30:
        print(f"note: one worker took {summary[1]['wall_s']['median']:.1f} s, under the 30 s of work asked for: "
              f"raise --size (or --days)")
    load_end, runtime = load_average(), time.perf_counter() - began
    print(f"load average (1, 5, 15 min) at start {load_start}, at end {load_end}; benchmark took {runtime:.0f} s")
    if args.json:
        total, usable = cores()
        Path(args.json).write_text(json.dumps({
            "stage": args.stage, "method": "fusion", "size": args.size, "start": str(START), "end": str(end), **facts, "result": runs[0]["result"],
            "workers": workers, "rounds": args.rounds, "sample_ms": args.sample_ms, "cpu_count": total,
            "usable_cpus": usable, "load_average_start": load_start, "load_average_end": load_end,
            "runtime_s": runtime, "machine": machine_facts(), "summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
