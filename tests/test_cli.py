"""The dsm command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dsm import cube
from dsm.cli import main


def _dsm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsm", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.timeout(300)
def test_demo_builds_the_tiny_twin_and_prints_its_summary(tmp_path):
    work = tmp_path / "demo"
    res = _dsm("demo", "--workdir", str(work), "--size", "tiny", "--seed", "3", "--no-compare")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "dashboard http://" in out and "2 workers" in out
    for name in ("lst", "ndvi", "smap_sm", "land_mask", "clay"):
        assert f"\n{name} " in out
    assert "2016-06-09 .. 2016-07-26" in out
    assert (work / "cube.zarr" / "zarr.json").exists() and (work / "truth.zarr" / "zarr.json").exists()
    assert (work / "stations" / "insitu.csv").exists()
    assert (work / "validation" / "report.html").stat().st_size > 10_000  # the chain ends with the report
    for stage in ("cube", "train", "predict", "export", "validate"):
        assert f"== {stage}: done" in out
    assert "skill of the 1 km maps" in out and (work / "skill.json").exists()
    assert len(list(work.glob("runs/*/run.json"))) == 1 and len(list(work.glob("runs/*/dask-performance.html"))) == 1
    assert "INFO distributed" not in res.stdout + res.stderr
    ds = cube.open_cube(str(work / "cube.zarr"))
    assert ds.attrs["twin_seed"] == 3 and ds.sizes["time"] == 48
    # the config it leaves drives the other commands
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    assert cfg["twin"]["seed"] == 3
    res = _dsm("config", "check", str(work / "config.yaml"))
    assert res.returncode == 0 and "4 x 4 SMAP cells" in res.stdout


def test_cube_info_json_and_table(tiny_twin):
    runner = CliRunner()
    res = runner.invoke(main, ["cube", "info", tiny_twin.cube, "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["region"]["fine_shape"] == [144, 144]
    assert info["variables"]["lst"]["chunks"] == [8, 72, 72]
    lst_valid = info["variables"]["lst"]["valid_fraction"]
    ds = cube.open_cube(tiny_twin.cube)
    land = ds["land_mask"].values == 1
    expected = np.isfinite(ds["lst"].values[:, land]).mean()
    assert lst_valid == pytest.approx(expected, abs=1e-4)
    res = runner.invoke(main, ["cube", "info", tiny_twin.cube, "--no-valid"])
    assert res.exit_code == 0 and "smap_sm" in res.output and "EPSG:6933" in res.output


def test_errors_are_one_clear_line(tmp_path, tiny_twin):
    runner = CliRunner()
    res = runner.invoke(main, ["cube", "info", str(tmp_path / "nope.zarr")])
    assert res.exit_code == 2 and "no Zarr store at" in res.output and "nope.zarr" in res.output
    res = runner.invoke(main, ["cube", "info", tiny_twin.truth])
    assert res.exit_code == 2 and "dsm truth store, expected a dsm cube" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"region": {"cells": [0, 0, 2, 2]}, "dates": {"start": "2016-02-01", "end": "2016-01-01"},
                                   "stores": {"cube": "c.zarr"}, "chunks": {"space": 50}}))
    res = runner.invoke(main, ["config", "check", str(bad)])
    assert res.exit_code == 2
    assert "chunks.space" in res.output and "multiple of 36" in res.output and "wrong order" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(main, ["cube", "info", tiny_twin.cube, "-o", "novalue"])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output


def test_config_check_tries_every_grid_value_on_its_estimator(tmp_path):
    raw = {"region": {"cells": [74, 772, 2, 2]}, "dates": {"start": "2016-06-09", "end": "2016-06-10"},
           "stores": {"cube": "c.zarr"}, "training": {"grids": {"rf": {"n_estimators": [-5]}}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    res = runner.invoke(main, ["config", "check", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    line = res.output.strip()
    assert "\n" not in line and line.startswith("error: training.grids.rf.n_estimators: the value -5 cannot be used")
    assert "must be an int in the range [1, inf)" in line and "fix or remove it" in line
    raw["training"] = {"fusion": {"grid": {"max_depth": [4, -2]}}}
    path.write_text(yaml.safe_dump(raw))
    res = runner.invoke(main, ["config", "check", str(path)])
    assert res.exit_code == 2 and "training.fusion.grid.max_depth: the value -2" in res.output
    raw["training"] = {"fusion": {"grid": {"max_depth": [4, 2]}}, "grids": {"rf": {"n_estimators": [5]}}}
    path.write_text(yaml.safe_dump(raw))
    res = runner.invoke(main, ["config", "check", str(path)])
    assert res.exit_code == 0, res.output
    assert "n_estimators:\n      - 5" in res.output


def test_twin_command_refuses_to_overwrite(tmp_path, tiny_twin):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"region": {"cells": [72, 770, 1, 1]},
                                   "dates": {"start": "2016-07-01", "end": "2016-07-03"},
                                   "stores": {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "st"},
                                   "chunks": {"space": 36, "time": 2}, "twin": {"seed": 1, "n_insitu": 2, "n_weather": 1}}))
    runner = CliRunner()
    assert runner.invoke(main, ["twin", str(cfg)]).exit_code == 0
    assert cube.open_cube(str(tmp_path / "cube.zarr")).sizes["time"] == 3
    res = runner.invoke(main, ["twin", str(cfg)])
    assert res.exit_code == 2 and "already exists" in res.output
    assert runner.invoke(main, ["twin", str(cfg), "--overwrite"]).exit_code == 0
