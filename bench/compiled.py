"""A compiled tree predictor (Treelite + TL2cgen) against XGBoost's own, on the pipeline's rows.

Issue 16 asks whether XGBoost's ``inplace_predict`` is what limits prediction and, if so, for a
compiled alternative measured on the same work. This benchmark:

1. builds the twin region of ``--size`` x ``--size`` SMAP cells, trains the chosen method
   (``--method``, default the fusion method) and runs the prediction once, as
   ``bench/predict.py`` does (its helpers);
2. records every model call of the blocks' own :func:`dsm.block_models.model_days` over the
   region (booster, float32 feature rows: what the pipeline predicts), a time chunk at a time;
3. compiles each distinct booster to a shared library (``treelite.frontend.from_xgboost``, then
   ``tl2cgen.export_lib`` with gcc) in each of TL2cgen's variants (``--variants``, default all
   of :data:`VARIANTS`: as is; ``quantize``, the thresholds as integer indices; ``annotate``,
   branches annotated with how often the recorded rows take them, the best case for it since
   the timed rows are those rows; both) and checks that each predicts every recorded row within
   ``--tolerance`` (default 1e-6, the issue's bound) of ``inplace_predict``;
4. times, in ``--rounds`` interleaved rounds (order rotating), all the calls with
   ``inplace_predict`` and with each variant's libraries (its ``DMatrix`` made inside the timing,
   as a block would), one thread each (a worker's thread), best of three per round;
5. prints each variant's compile time, its largest difference and the ratio XGBoost seconds /
   compiled seconds (> 1: compiled faster) with its median and range; ``--json PATH`` writes them.

The compiled path is not used by dsm: adopting it would mean compiling every model at training
time and shipping the libraries with the model store. Run ``make bench`` (it installs the
``bench`` extra) or ``.venv/bin/pip install -c constraints.txt -e ".[bench]"`` first.

Run: ``.venv/bin/python bench/compiled.py [--size 4] [--method fusion|rao2022] [--rounds 3]
[--variants plain quantize annotate quantize+annotate] [--workdir DIR] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import END, START, ensure_twin, load_average, machine_facts, ratio_spread, spread_text, train_models
from predict import method_config, model_calls, pipeline

#: TL2cgen's variants: name -> (``export_lib`` parameters, annotate the branches with the recorded rows)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "plain": ({}, False),
    "quantize": ({"quantize": 1}, False),
    "annotate": ({}, True),
    "quantize+annotate": ({"quantize": 1}, True),
}


def compile_boosters(calls: list[tuple[Any, np.ndarray]], root: Path, params: dict[str, Any],
                     annotate: bool) -> tuple[dict[int, Any], float]:
    """A TL2cgen predictor (one thread) for each distinct booster of ``calls``, compiled with
    ``params`` (and, with ``annotate``, its branches annotated by the rows of its calls), and the
    seconds compiling took (annotation included)."""
    import tl2cgen
    import treelite

    rows: dict[int, list[np.ndarray]] = {}
    boosters: dict[int, Any] = {}
    for booster, X in calls:
        boosters[id(booster)] = booster
        rows.setdefault(id(booster), []).append(X)
    out: dict[int, Any] = {}
    t0 = time.perf_counter()
    for key, booster in boosters.items():
        model = treelite.frontend.from_xgboost(booster)
        lib_params = {"parallel_comp": 8, **params}
        if annotate:
            path = root / f"model{len(out)}-branches.json"
            tl2cgen.annotate_branch(model, tl2cgen.DMatrix(np.concatenate(rows[key]), dtype="float32"), path,
                                    nthread=2)
            lib_params["annotate_in"] = str(path)
        lib = root / f"model{len(out)}.so"
        tl2cgen.export_lib(model, toolchain="gcc", libpath=str(lib), params=lib_params, nthread=2)
        out[key] = tl2cgen.Predictor(str(lib), nthread=1)
    return out, time.perf_counter() - t0


def largest_difference(calls: list[tuple[Any, np.ndarray]], compiled: dict[int, Any]) -> float:
    """The largest absolute difference between the compiled and XGBoost's predictions."""
    import tl2cgen

    worst = 0.0
    for booster, X in calls:
        want = booster.inplace_predict(X)
        got = np.asarray(compiled[id(booster)].predict(tl2cgen.DMatrix(X, dtype="float32"))).reshape(want.shape)
        worst = max(worst, float(np.max(np.abs(got - want))) if len(X) else 0.0)
    return worst


def compile_variants(calls: list[tuple[Any, np.ndarray]], root: Path, names: list[str], tolerance: float
                     ) -> tuple[dict[str, dict[int, Any]], dict[str, dict[str, float]]]:
    """Each variant of ``names`` compiled (:func:`compile_boosters`) and checked against XGBoost's
    predictions within ``tolerance``; with its compile seconds and largest difference."""
    compiled: dict[str, dict[int, Any]] = {}
    built: dict[str, dict[str, float]] = {}
    for name in names:
        params, annotate = VARIANTS[name]
        compiled[name], seconds = compile_boosters(calls, Path(tempfile.mkdtemp(prefix=f"dsm-compiled-{name}-", dir=root)),
                                                   params, annotate)
        worst = largest_difference(calls, compiled[name])
        built[name] = {"compile_s": seconds, "largest_difference": worst}
        print(f"{name}: {len(compiled[name])} models compiled in {seconds:.1f} s, largest difference {worst:.2e}")
        if worst > tolerance:
            raise SystemExit(f"the compiled predictions ({name}) differ by up to {worst:.3g} (> {tolerance:g})")
    return compiled, built


def timed(run: Any) -> float:
    """Best of three wall times of ``run()``."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--method", choices=["fusion", "rao2022"], default="fusion")
    ap.add_argument("--size", type=int, default=4, help="a region of N x N SMAP cells (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--tolerance", type=float, default=1e-6, help="largest accepted difference (default 1e-6)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help="TL2cgen's variants to compile and time (default: all)")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()
    import tl2cgen  # here, after --help: the bench extra; missing, it fails before the twin is built

    root = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-compiled-"))
    cfg = method_config(root / f"{args.method}-{args.size}", args.size, args.method, "none")
    ensure_twin(cfg, root / f"{args.method}-{args.size}")
    train_models(cfg)
    pipeline(cfg, profile=False)  # the products store the recorded calls are taken from
    calls, pixel_days = model_calls(cfg)
    for booster, _ in calls:
        booster.set_param({"nthread": 1})
    compiled, built = compile_variants(calls, root, args.variants, args.tolerance)

    def xgb_run() -> None:
        for booster, X in calls:
            booster.inplace_predict(X)

    def compiled_run(name: str) -> Callable[[], None]:
        def run() -> None:
            for booster, X in calls:
                compiled[name][id(booster)].predict(tl2cgen.DMatrix(X, dtype="float32"))
        return run

    paths = {"xgboost": xgb_run, **{name: compiled_run(name) for name in compiled}}
    times: dict[str, list[float]] = {k: [] for k in paths}
    order = list(paths)
    for i in range(args.rounds):
        for label in order[i % len(order):] + order[:i % len(order)]:
            times[label].append(timed(paths[label]))
            print(f"round {i + 1} {label:17s} {times[label][-1]:7.3f} s")
    ratios = {name: ratio_spread(times["xgboost"], times[name]) for name in compiled}
    rows = int(sum(len(X) for _, X in calls))
    print(f"method {args.method}, {args.size} x {args.size} cells, {START}..{END}: {len(calls)} model calls, "
          f"{rows:,} rows, {len(set(id(b) for b, _ in calls))} distinct models; load average {load_average()}")
    for line in machine_facts():
        print(line)
    print(f"xgboost {np.median(times['xgboost']):.3f} s (median, 1 thread)")
    for name in compiled:
        print(f"{name:17s} {np.median(times[name]):.3f} s, xgboost / compiled {spread_text(ratios[name]).strip()}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "method": args.method, "size": args.size, "rounds": args.rounds, "model_calls": len(calls),
            "rows": rows, "pixel_days": pixel_days, "variants": built, "seconds": times,
            "xgboost/compiled": ratios, "load_average": load_average(), "machine": machine_facts()}, indent=1))


if __name__ == "__main__":
    main()
