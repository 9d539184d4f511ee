"""The dsm command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dsm import cube, ledger
from dsm.cli import main
from dsm.storeref import StoreRef


def _dsm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsm", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_builds_the_tiny_twin_and_prints_its_summary(tiny_demo):
    work, res = tiny_demo.work, tiny_demo.result
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
    # where the prediction's time went, printed and recorded with the run (the demo's twin has stations)
    assert next(line for line in out.splitlines() if line.startswith("time: ")).startswith(
        "time: 36 km cell means ") and ", station calibration " in out and ", blocks " in out
    (run,) = (json.loads(p.read_text()) for p in work.glob("runs/*/run.json"))
    (stage,) = (s for s in run["stages"] if s["stage"] == "predict")
    phases = stage["summary"]["phase_seconds"]
    assert list(phases) == ["cell_means", "calibration", "blocks"]
    assert all(v > 0 for v in phases.values()) and sum(phases.values()) <= stage["seconds"]
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
    res = runner.invoke(main, ["cube", "info", tiny_twin.cube.url, "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["region"]["fine_shape"] == [144, 144]
    assert info["variables"]["lst"]["chunks"] == [8, 72, 72]
    lst_valid = info["variables"]["lst"]["valid_fraction"]
    ds = cube.open_cube(tiny_twin.cube)
    land = ds["land_mask"].values == 1
    expected = np.isfinite(ds["lst"].values[:, land]).mean()
    assert lst_valid == pytest.approx(expected, abs=1e-4)
    res = runner.invoke(main, ["cube", "info", tiny_twin.cube.url])
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if line.startswith("variable"))
    assert header.split()[-1] == "valid"
    assert next(line for line in res.output.splitlines() if line.startswith("lst ")).split()[-1] == f"{lst_valid:.3f}"
    res = runner.invoke(main, ["cube", "info", tiny_twin.cube.url, "--no-valid"])
    assert res.exit_code == 0 and "smap_sm" in res.output and "EPSG:6933" in res.output
    # no empty column: the table ends at the chunks and says how to get the fractions
    header = next(line for line in res.output.splitlines() if line.startswith("variable"))
    assert header.split()[-1] == "chunks" and "valid fractions not computed" in res.output
    assert next(line for line in res.output.splitlines() if line.startswith("lst ")).split()[-1] == "8x72x72"


def test_errors_are_one_clear_line(tmp_path, tiny_twin):
    runner = CliRunner()
    res = runner.invoke(main, ["cube", "info", str(tmp_path / "nope.zarr")])
    assert res.exit_code == 2 and "no Zarr store at" in res.output and "nope.zarr" in res.output
    res = runner.invoke(main, ["cube", "info", tiny_twin.truth.url])
    assert res.exit_code == 2 and "dsm truth store, expected a dsm cube" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"region": {"cells": [0, 0, 2, 2]}, "dates": {"start": "2016-02-01", "end": "2016-01-01"},
                                   "stores": {"cube": "c.zarr"}, "chunks": {"space": 50}}))
    res = runner.invoke(main, ["config", "check", str(bad)])
    assert res.exit_code == 2
    assert "chunks.space" in res.output and "multiple of 36" in res.output and "wrong order" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(main, ["cube", "info", tiny_twin.cube.url, "-o", "novalue"])
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


@pytest.mark.slow
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
    res = runner.invoke(main, ["twin", str(cfg), "--overwrite"])
    # not a terminal: no bar redrawn in the output (a log, a pod's output), the result line says it all
    assert res.exit_code == 0 and "twin days" not in res.stderr and "\r" not in res.stderr
    assert res.stdout.startswith("twin written: cube ")
    res = runner.invoke(main, ["-q", "twin", str(cfg), "--overwrite"])  # quiet: the result line only
    assert res.exit_code == 0 and res.stderr == "" and res.stdout.startswith("twin written: cube ")


def test_version():
    from dsm import __version__

    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and res.output == f"dsm, version {__version__}\n" and __version__[0].isdigit()


def test_only_an_error_in_a_stage_that_writes_products_fails_a_run():
    from dsm.chain import RunResult, StageResult

    done = [StageResult(s, "done") for s in ("cube", "train", "predict", "export")]
    assert RunResult("r", "t", done).outcome == "complete"
    assert RunResult("r", "t", [*done, StageResult("validate", "error")]).outcome == "partial"
    assert RunResult("r", "t", [*done[:2], StageResult("predict", "error")]).outcome == "failed"
    assert RunResult("r", "t", [*done[:3], StageResult("export", "partial")]).outcome == "partial"
    assert RunResult("r", "t", [*done, StageResult("validate", "interrupted")]).outcome == "interrupted"
    from dsm.cli.printing import _one_line

    assert _one_line("KeyError: 'sm'\n  while reading\n\n b.nc ") == "KeyError: 'sm'; while reading; b.nc"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failed_validation_leaves_the_run_partial_and_the_products_done(tmp_path, tiny_twin):
    sites = tmp_path / "my_sites.csv"
    pd.read_csv(tiny_twin.insitu_csv.url, dtype=str).rename(columns={"value": "vwc"}).to_csv(sites, index=False)
    fusion = {"grid": {"max_depth": [3], "min_child_weight": [5], "reg_lambda": [1.0]}, "max_rounds": 40, "cv_folds": 2}
    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-06-24"},  # 16 days
           "stores": {"cube": tiny_twin.cube.url, "models": "models", "output": "sm.zarr", "cog": "cog"},
           "chunks": {"space": 72, "time": 8}, "training": {"min_samples": 40, "fusion": fusion},
           "output": {"gap_free": False, "uncertainty": "none"}, "rain": {"predictors": "off"},  # one model: quick
           "cluster": {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"},
           "run": {"performance_report": False},
           "validation": {"stations": [{"path": str(sites), "columns": {"value": "sm_5cm"}}]}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = _dsm("run", str(path), cwd=tmp_path)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    # not a terminal: one progress line per stage (its bar's final state), no line per period, block or day
    bars = {line.split(":")[0]: line for line in res.stderr.splitlines() if "%|" in line}
    assert set(bars) == {"train", "predict", "export", "validate"}, res.stderr
    assert "16/16" in bars["predict"] and "day/s" in bars["predict"] and "16/16" in bars["export"]
    assert "\r" not in res.stderr and "2016-06-0" not in res.stderr and "got rank" not in res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error in stage")]
    assert len(errors) == 1 and errors[0].startswith(f"error in stage validate: no in situ record could be read ({sites}: "
                                                     "no column 'sm_5cm' (dsm's 'value', set by "
                                                     "validation.stations[0].columns.value)")
    assert "the products are written" in res.stderr and "Traceback" not in res.stderr
    assert ": partial; record " in res.stdout
    record = json.loads(next(tmp_path.glob("runs/*/run.json")).read_text())
    assert record["outcome"] == "partial"
    assert {s["stage"]: s["status"] for s in record["stages"]} == {
        "cube": "done", "train": "done", "predict": "done", "export": "done", "validate": "error"}
    assert len(ledger.read(StoreRef(str(tmp_path / "sm.zarr"))).done) == 16
    assert len(list((tmp_path / "cog").glob("SM_1km_???????.tif"))) == 16  # sm (beside its _origin COGs)
    res = _dsm("-q", "export", str(path), "--force", cwd=tmp_path)  # quiet: the summary, nothing on stderr
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.startswith("exported 16 day(s)") and "%|" not in res.stdout


def test_progress_bars_one_line_per_task_off_a_terminal_none_when_quiet():
    import io

    from dsm.cli.bars import Bars
    from dsm.progress import Steps

    def run(bars: Bars) -> str:
        with bars:
            bars("fusing the model's cell means with SMAP")  # a note
            steps = Steps(bars, "predict", 16, "day")
            steps.start()
            steps.step("2016-06-09..2016-06-16: written", 8)
            steps.step("2016-06-17..2016-06-24: written", 8)
            steps = Steps(bars, "validate", 2, "step")
            steps.start()
            steps.step("station source 0")
            steps.grow(2)  # learned later: two twin periods
            steps.step("twin skill of period 2016161")  # left open: closed on exit
        return bars.stream.getvalue()

    out = run(Bars(stream=io.StringIO()))
    lines = out.splitlines()
    assert lines[0] == "fusing the model's cell means with SMAP" and len(lines) == 3
    assert lines[1].startswith("predict: 100%|") and "16/16" in lines[1] and "day/s" in lines[1]
    assert lines[2].startswith("validate:  50%|") and "2/4" in lines[2]
    assert "\r" not in out and "written" not in out
    verbose = run(Bars(stream=io.StringIO(), verbose=True)).splitlines()
    assert "2016-06-17..2016-06-24: written" in verbose and len(verbose) == 3 + 4
    assert run(Bars(stream=io.StringIO(), quiet=True)) == ""
    live = run(Bars(stream=io.StringIO(), tty=True))  # a terminal: redrawn bars, notes above them
    assert "\r" in live and "predict: 100%" in live and "fusing the model's" in live


def test_fetch_without_credentials_is_one_message_naming_what_to_set(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({"region": {"bbox": [108.0, 38.0, 110.9, 40.4]},
                                        "dates": {"start": "2016-01-05", "end": "2016-01-06"},
                                        "stores": {"cube": "cube.zarr"}}))
    env = {"HOME": str(tmp_path), "NETRC": None, "EARTHDATA_USERNAME": "me", "EARTHDATA_PASSWORD": None,
           "EARTHDATA_TOKEN": None}
    res = CliRunner().invoke(main, ["fetch", str(cfg_path), "--dest", str(tmp_path / "g")], env=env)
    assert res.exit_code == 2 and "Traceback" not in res.output and res.exception is not None
    assert len(res.output.strip().splitlines()) == 1, res.output
    message = res.output
    assert message.startswith("error: no NASA Earthdata login") and f"no netrc file {tmp_path}/.netrc" in message
    assert "EARTHDATA_USERNAME is set without EARTHDATA_PASSWORD" in message
    assert "machine urs.earthdata.nasa.gov login" in message and "~/.netrc" in message
    assert not (tmp_path / "g").exists()
    (tmp_path / ".netrc").write_text("machine example.org login a password b\n")
    res = CliRunner().invoke(main, ["fetch", str(cfg_path), "--dest", str(tmp_path / "g")], env=env)
    assert res.exit_code == 2 and "has no 'machine urs.earthdata.nasa.gov' entry" in res.output


def test_config_check_lists_the_valid_keys_where_a_key_is_wrong(tmp_path):
    raw = {"region": {"cells": [74, 772, 2, 2]}, "dates": {"start": "2016-06-09", "end": "2016-06-10"},
           "stores": {"cube": "c.zarr"}, "inputs": {"smpa": {"paths": "smap/*.h5"}, "mod11a1": "mod11a1/*.hdf"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["config", "check", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = res.output.splitlines()
    assert lines[0] == f"error: invalid configuration {path}:"
    assert ("  inputs.smpa: unknown key; did you mean 'smap'? inputs takes: storage_options, smap, mod11a1, mcd43, "
            "mod15a2h, mod09a1, mod13a2, dem, slope, aspect, soil, land_mask, geotiff, reflectance, precip, stac, read") in lines
    assert any(line.startswith("  inputs.mod11a1: Input should be a valid dictionary; inputs.mod11a1 takes: "
                               "paths (required), storage_options, qc") for line in lines)


def test_config_schema_describes_the_keys_and_checks_a_file_as_dsm_does():
    import jsonschema

    from dsm.config import from_dict
    from dsm.twin import demo_config

    res = CliRunner().invoke(main, ["config", "schema"])
    assert res.exit_code == 0, res.output
    schema = json.loads(res.output)
    props = {name: d.get("properties", {}) for name, d in schema["$defs"].items()}
    assert "relative to the YAML file" in props["SmapInput"]["paths"]["description"]
    assert "year+doy" in props["GeotiffSeriesInput"]["date_regex"]["description"]
    assert "fewest samples" in props["TrainingConfig"]["min_samples"]["description"]
    assert "the file's column name" in props["StationSourceConfig"]["columns"]["description"]
    assert "SPL3SMP" in props["InputsConfig"]["smap"]["description"]
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(demo_config("tiny"))
    raw = {"region": {"cells": [74, 772, 2, 2]}, "dates": {"start": "2016-06-09", "end": "2016-06-10"},
           "stores": {"cube": "c.zarr"}, "inputs": {"smap": {"paths": "smap/*.h5"}, "dem": {"paths": ["d/*.hgt"]}},
           "validation": {"stations": [{"path": "sites.csv", "columns": {"value": "vwc"}}]}}
    validator.validate(raw)  # paths: one string or a list, as dsm takes them
    from_dict(raw)
    raw["inputs"]["smpa"] = raw["inputs"].pop("smap")
    with pytest.raises(jsonschema.ValidationError, match="smpa"):
        validator.validate(raw)


def test_the_demo_summarises_a_cube_once_per_revision(tiny_twin, tmp_path, monkeypatch):
    """The demo's chains share one cube: its valid fractions (a read of the whole cube) are
    computed once, and again only after a write counted a new revision."""
    import shutil

    from dsm import store
    from dsm.cli.chain import _cube_summary

    path = tmp_path / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, path)
    made = []
    summary = cube.summary
    monkeypatch.setattr(cube, "summary", lambda ds, valid_fractions=True: made.append(valid_fractions)
                        or summary(ds, valid_fractions))
    kept: dict = {}
    first = _cube_summary(cube.open_cube(str(path)), str(path), True, kept)
    assert _cube_summary(cube.open_cube(str(path)), str(path), True, kept) is first and made == [True]
    assert "valid_fraction" in first["variables"]["lst"]
    # without valid fractions nothing is kept or reused (the single-stage commands pass no store)
    assert "valid_fraction" not in _cube_summary(cube.open_cube(str(path)), str(path), False, kept)["variables"]["lst"]
    assert _cube_summary(cube.open_cube(str(path)), str(path), True, None) is not first
    # a write recorded in the cube counts a revision: summarised again
    ds = cube.open_cube(str(path))
    store.record_written(StoreRef(str(path)), ds.attrs, {"lst": [0, 8]})
    again = _cube_summary(cube.open_cube(str(path)), str(path), True, kept)
    assert again is not first and again == first and made == [True, False, True, True]
