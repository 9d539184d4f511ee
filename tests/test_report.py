"""The report of the twin region: every listed figure and table, embedded and offline; run on a
real LocalCluster with real model cards."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import pandas as pd
import pytest

from dsm.config import from_dict
from dsm.models.train import train
from dsm.report import FIGURES, TABLES, run_report
from dsm.testing.validation import gridded_field, make_products_store, write_gridded_netcdf
from dsm.validate import run_validate

pytestmark = pytest.mark.slow  # make test-fast leaves these out

GRIDS = {"xgb": {"n_estimators": [20], "max_depth": [3]}}
BOX = [108.6, 38.3, 109.4, 39.0]


@pytest.fixture(scope="module")
def report(tiny_twin, tmp_path_factory, client):
    root = tmp_path_factory.mktemp("report")
    out = make_products_store(str(root / "sm.zarr"), tiny_twin.truth, noise=0.02, seed=5)
    nc = write_gridded_netcdf(root / "other.nc", gridded_field(tiny_twin.truth, (108.2, 38.0, 110.0, 39.6), 0.25))
    cfg = from_dict({
        "region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
        "stores": {"cube": tiny_twin.cube, "truth": tiny_twin.truth, "stations": tiny_twin.stations,
                   "output": out, "models": str(root / "models")},
        "training": {"method": "rao2022", "min_samples": 30, "models": ["mlr", "xgb"], "pooled": False,
                     "grids": GRIDS},
        "validation": {"products": [{"name": "other", "path": nc, "variable": "soil_moisture"}],
                       "bootstrap": {"n_resamples": 200}, "partial_correlation_freq": "W", "box": BOX,
                       "out": str(root / "validation")},
    })
    trained = train(cfg, client)
    assert trained.failed == {} and len(trained.trained) == 3
    path = run_report(cfg, client, run_validate(cfg, client))
    return Path(path), root


@pytest.mark.timeout(240)
def test_report_has_every_figure_and_table_embedded(report):
    path, root = report
    assert path == root / "validation" / "report.html"
    text = path.read_text(encoding="utf-8")
    figs = dict(re.findall(r'<figure data-figure="([a-z_0-9]+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"',
                           text))
    assert set(figs) == set(FIGURES), set(FIGURES) ^ set(figs)
    for key, data in figs.items():
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n", key
        width, height = struct.unpack(">II", png[16:24])
        assert width > 300 and height > 150, key
    tables = set(re.findall(r'<div data-table="([a-z_0-9]+)"', text))
    assert tables == set(TABLES), set(TABLES) ^ tables
    assert "data-missing" not in text
    # offline: nothing fetched from elsewhere
    assert "<script" not in text and not re.search(r'(src|href)="(https?:)?//', text)
    contents = json.loads((root / "validation" / "report_contents.json").read_text())
    assert set(contents["figures"]) == set(FIGURES)


def test_report_numbers_match_the_written_tables(report):
    path, root = report
    text = path.read_text(encoding="utf-8")
    scores = pd.read_csv(root / "validation" / "scores.csv")
    row = scores.loc[(scores["product"] == "sm_1km") & (scores["level"] == "all") & (scores["days"] == "own")].iloc[0]
    assert f"{row['rmse']:.4g}" in text and f"{row['r']:.4g}" in text
    assert 0.015 < row["rmse"] < 0.04 and row["r"] > 0.8
    assert "in situ mean minus product mean" in text
    for period in ("2016161", "2016177", "2016193"):
        assert period in text
    assert (root / "validation" / "means.zarr" / "sm_monthly").is_dir()
    assert (root / "validation" / "timeseries" / "dsm_timeseries.zip").exists()
    pc = re.search(r'<div data-table="partial_correlation".*?</div>', text, re.S).group(0)
    assert pc.count("<tr") == 7  # header + 6 weather stations
