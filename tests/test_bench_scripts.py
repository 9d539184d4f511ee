"""The benchmark scripts stay runnable: every name they import from dsm exists, and each
prints its usage (their figures are measured by running them, never in the test suite; the
in-place benchmark runs one small round here, for what it counts, not for its times)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # make test-fast leaves these out

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def _dsm_imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dsm"
            for alias in node.names]


@pytest.mark.parametrize("path", [*SCRIPTS, BENCH / "_common.py"], ids=lambda p: p.name)
def test_every_dsm_name_a_benchmark_imports_exists(path):
    missing = []
    for module, name in _dsm_imports(path):
        mod = importlib.import_module(module)
        submodule = hasattr(mod, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None
        if not hasattr(mod, name) and not submodule:
            missing.append(f"{module}.{name}")
    assert missing == [], f"{path.name} imports names dsm no longer has"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_a_benchmark_prints_its_usage(path):
    res = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120,
                         cwd=BENCH)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage:" in res.stdout


def test_the_sequential_training_baseline_takes_the_searchs_arguments(monkeypatch):
    import inspect

    from dsm.models.search import search

    monkeypatch.syspath_prepend(str(BENCH))
    bench_train = importlib.import_module("train")
    assert list(inspect.signature(bench_train._local_search).parameters) == list(inspect.signature(search).parameters)


@pytest.mark.s3
def test_the_in_place_benchmark_runs_and_counts_fewer_bytes_in_place(tmp_path):
    """One small round on the loopback S3 server: both paths give identical arrays (the script
    checks) and the in-place path receives fewer bytes than the copies (counted by its proxy)."""
    out = tmp_path / "inplace.json"
    res = subprocess.run([sys.executable, str(BENCH / "inplace_reads.py"), "--granules", "1", "--cogs", "1",
                          "--rounds", "1", "--cells", "2", "--cog-pixels", "1536", "--json", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(out.read_text())
    for kind in ("smap", "cog"):
        f = figures[kind]
        assert f["copy_bytes"] >= f["file_bytes"] > f["in_place_bytes"] > 0, (kind, f)
        assert f["in_place_requests"] > 0


def test_the_station_scores_benchmark_runs_and_scores_the_same_table_both_ways(tmp_path):
    """One small round: the scores made in process and on the workers are the same table (the
    script checks), and it writes its figures."""
    out = tmp_path / "stations.json"
    res = subprocess.run([sys.executable, str(BENCH / "station_scores.py"), "--stations", "7", "--days", "60",
                          "--products", "2", "--workers", "1", "--rounds", "1", "--resamples", "50",
                          "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["stations"] == 7 and len(figures["seconds"]["client"]) == len(figures["seconds"]["workers"]) == 1
    assert "the same" in res.stdout


def test_the_prediction_benchmarks_bare_baseline_predicts_the_pipelines_pixels(tiny_demo, monkeypatch):
    """``bench/predict.py``'s baseline replays the blocks' model calls over the whole region: on
    the tiny demo's fusion run it predicts exactly the pixel-days the pipeline wrote."""
    import numpy as np

    from dsm.config import load
    from dsm.products import open_products

    assert tiny_demo.result.returncode == 0, tiny_demo.result.stderr[-2000:]
    monkeypatch.chdir(tiny_demo.work)
    monkeypatch.syspath_prepend(str(BENCH))
    cfg = load(tiny_demo.work / "config.yaml")
    calls, pixels = importlib.import_module("predict").model_calls(cfg)
    sm = open_products(cfg.stores.ref("output"))["sm"].values
    assert pixels == int(np.isfinite(sm).sum()) > 0
    assert calls and all(len(X) for _, X in calls)


def test_the_benchmarks_method_option_trains_the_method_it_names(tmp_path, monkeypatch):
    """``bench/predict.py --method rao2022`` and ``bench/daily_maps.py`` (the paper's per-period
    XGBoost) must not follow dsm's default method (``fusion``), as they did once it changed."""
    monkeypatch.syspath_prepend(str(BENCH))
    common, bench_predict = importlib.import_module("_common"), importlib.import_module("predict")
    assert common.twin_config(tmp_path, 4).training.method == "rao2022"
    for method in ("rao2022", "fusion"):
        assert bench_predict.method_config(tmp_path, 4, method, "none").training.method == method


def test_the_object_store_benchmarks_serial_baseline_swaps_the_stores_concurrent_io_and_restores_it(tmp_path, tiny_twin,
                                                                                                      monkeypatch):
    """``bench/object_store.py`` measures against dsm with its concurrent reads and writes undone
    (patched by name on the workers): the names exist, the baseline reads and writes the same."""
    import numpy as np
    import xarray as xr

    import datetime as dt

    from dsm import store, zarr_reads
    from dsm.periods import periods
    from dsm.sample_tables import block_table
    from dsm.storeref import StoreRef

    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("object_store")
    period = periods(dt.date(2016, 6, 9), dt.date(2016, 6, 24))[0]
    table = block_table(tiny_twin.cube, "bench-serial", period, ["lst", "ndvi", "dem"], 72, 144, 0, 72, {})
    concurrent = (zarr_reads.read_selections, store.write_together)
    url = tmp_path / "s.zarr"
    xr.Dataset({n: (("y", "x"), np.zeros((4, 4), np.float32)) for n in "ab"},
               coords={"y": np.arange(4.0), "x": np.arange(4.0)}).to_zarr(url, zarr_format=3, consolidated=False)
    part = xr.Dataset({n: (("y", "x"), np.full((4, 4), i + 1, np.float32)) for i, n in enumerate("ab")},
                      coords={"y": np.arange(4.0), "x": np.arange(4.0)})
    try:
        bench.set_serial(True)
        assert (zarr_reads.read_selections, store.write_together) != concurrent
        store.write_region(StoreRef.of(str(url)), part)
        ds = store.open_cached(StoreRef.of(str(url)), "bench-serial", "raw")
        serial = zarr_reads.read_selections(ds, {n: (n, {}) for n in "ab"})
        assert len(table) and block_table(tiny_twin.cube, "bench-serial", period, ["lst", "ndvi", "dem"], 72, 144, 0,
                                          72, {}).equals(table)  # a sample table's reads one by one: the same
    finally:
        bench.set_serial(False)
    assert (zarr_reads.read_selections, store.write_together) == concurrent
    again = zarr_reads.read_selections(ds, {n: (n, {}) for n in "ab"})
    for i, n in enumerate("ab"):
        np.testing.assert_array_equal(serial[n], i + 1)
        np.testing.assert_array_equal(again[n], serial[n])
