"""The report of the twin region: every listed figure and table, embedded and offline; run on a
real LocalCluster with real model cards."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import os
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import get_task_stream
from matplotlib.backends.backend_agg import FigureCanvasAgg

from dsm.config import from_dict
from dsm.figures import draw_map_panels, draw_skill_periods, graticule_ticks
from dsm.grid import lonlat_to_xy, xy_to_lonlat
from dsm.periods import periods
from dsm.skill import twin_skill_of
from dsm.stages.report import BIAS_HEADER, BIAS_STATEMENT, FIGURES, TABLES, run_report
from dsm.stages.train import train
from dsm.stages.validate import run_validate
from dsm.storeref import StoreRef
from dsm.testing.validation import gridded_field, make_products_store, write_gridded_netcdf

pytestmark = pytest.mark.slow  # make test-fast leaves these out

GRIDS = {"xgb": {"n_estimators": [20], "max_depth": [3]}}
BOX = [108.6, 38.3, 109.4, 39.0]


def _config(tiny_twin, root: Path, out: str, nc: str, validation_out: str, storage_options=None):
    return from_dict({
        "region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
        "stores": {"cube": tiny_twin.cube.url, "truth": tiny_twin.truth.url, "stations": tiny_twin.stations.url,
                   "output": out, "models": str(root / "models"), "storage_options": storage_options or {}},
        "training": {"method": "rao2022", "min_samples": 30, "models": ["mlr", "xgb"], "pooled": False,
                     "grids": GRIDS},
        "validation": {"products": [{"name": "other", "path": nc, "variable": "soil_moisture"}],
                       "bootstrap": {"n_resamples": 200}, "partial_correlation_freq": "W", "box": BOX,
                       "out": validation_out},
    })


@pytest.fixture(scope="module")
def report(tiny_twin, tmp_path_factory, client):
    root = tmp_path_factory.mktemp("report")
    out = make_products_store(StoreRef(str(root / "sm.zarr")), tiny_twin.truth, noise=0.02, seed=5)
    nc = write_gridded_netcdf(root / "other.nc", gridded_field(tiny_twin.truth, (108.2, 38.0, 110.0, 39.6), 0.25))
    cfg = _config(tiny_twin, root, out.url, nc, str(root / "validation"))
    trained = train(cfg, client)
    assert trained.failed == {} and len(trained.trained) == 3
    twin = twin_skill_of(cfg, client)  # once, on the workers: the validation's period table and the report's
    validation = run_validate(cfg, client, twin=twin)
    with get_task_stream(client) as stream:
        path = run_report(cfg, client, validation, twin=twin)
    drawn = [t["key"] for t in stream.data if str(t["key"]).startswith("draw_png-")]
    assert len(drawn) == len(FIGURES), "every figure drawn by a task on the workers"
    return Path(path), root


@pytest.mark.s3
@pytest.mark.timeout(300)
def test_a_report_on_object_storage_reaches_it_through_the_configured_storage_options(report, tiny_twin, s3,
                                                                                        monkeypatch):
    """Tables, mean maps, figures and the report written to and read back from an S3 endpoint
    named only in ``stores.storage_options`` (no AWS_* variables: nothing else can reach it)."""
    path, root = report
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    out = f"{s3.make_bucket('report-s3')}/validation"  # s3://...
    cfg = _config(tiny_twin, root, str(root / "sm.zarr"), str(root / "other.nc"), out, s3.storage_options)
    written = run_report(cfg, None, run_validate(cfg, None))
    assert written == f"{out}/report.html"
    fs = s3.filesystem()
    text = fs.cat(f"{out}/report.html").decode()
    assert text.count("data:image/png;base64,") == len(FIGURES)
    assert fs.exists(f"{out}/means.zarr/sm_monthly/zarr.json") and fs.exists(f"{out}/scores.csv")
    # the same figures and tables as the local report, from the same products
    local = json.loads((root / "validation" / "report_contents.json").read_text())
    remote = json.loads(fs.cat(f"{out}/report_contents.json"))
    assert (set(remote["figures"]), remote["tables"]) == (set(local["figures"]), local["tables"])


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
    for key, data in figs.items():  # the PNG files the workers wrote are those embedded
        assert (root / "validation" / "figures" / f"{key}.png").read_bytes() == base64.b64decode(data), key


def test_report_numbers_match_the_written_tables(report):
    path, root = report
    text = path.read_text(encoding="utf-8")
    scores = pd.read_csv(root / "validation" / "scores.csv")
    row = scores.loc[(scores["product"] == "sm_1km") & (scores["level"] == "all") & (scores["days"] == "own")].iloc[0]
    assert f"{row['rmse']:.4g}" in text and f"{row['r']:.4g}" in text
    assert 0.015 < row["rmse"] < 0.04 and row["r"] > 0.8
    assert "validation.bias_convention = reference_minus_product" in text  # the stored files' sign, named
    for period in ("2016161", "2016177", "2016193"):
        assert period in text
    assert (root / "validation" / "means.zarr" / "sm_monthly").is_dir()
    assert (root / "validation" / "timeseries" / "dsm_timeseries.zip").exists()
    pc = re.search(r'<div data-table="partial_correlation".*?</div>', text, re.S).group(0)
    assert pc.count("<tr") == 7  # header + 6 weather stations


class _Tables(HTMLParser):
    """The ``<div data-table=KEY>`` tables of a report: header cells and rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[list[str], list[list[str]]]] = {}
        self._key: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and "data-table" in a:
            self._key = a["data-table"]
            self.tables[self._key] = ([], [])
        elif self._key and tag == "tr":
            self.tables[self._key][1].append([])
        elif self._key and tag in ("th", "td"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if self._key and tag in ("th", "td") and self._cell is not None:
            text = "".join(self._cell).strip()
            heads, rows = self.tables[self._key]
            (heads if tag == "th" else rows[-1]).append(text)
            self._cell = None
        elif tag == "div":
            self._key = None


def test_the_regional_mean_tables_are_the_mean_of_the_products_maps(report):
    """The monthly and the box tables: per month, the mean over the pixels of each pixel's mean
    over the month's valid days (numpy on the products store as the oracle)."""
    path, root = report
    tables = _tables(path.read_text(encoding="utf-8"))
    sm = xr.open_zarr(root / "sm.zarr", consolidated=False)["sm"].load()
    months = pd.DatetimeIndex(sm["time"].values).to_period("M")
    want, valid, box = [], [], []
    x0, y0 = lonlat_to_xy(BOX[0], BOX[1])
    x1, y1 = lonlat_to_xy(BOX[2], BOX[3])
    for m in months.unique():
        v = sm.values[months == m]
        with np.errstate(invalid="ignore", divide="ignore"):
            pixel = np.nansum(v, axis=0) / np.isfinite(v).sum(axis=0)  # NaN where the month has no valid day
        want.append(np.nanmean(pixel))
        valid.append(int(np.isfinite(pixel).sum()))
        inside = (sm["x"].values >= min(x0, x1)) & (sm["x"].values <= max(x0, x1))
        rows = (sm["y"].values >= min(y0, y1)) & (sm["y"].values <= max(y0, y1))
        box.append(np.nanmean(pixel[np.ix_(rows, inside)]))
    got = tables["monthly_means"]
    assert list(got["month"]) == [str(m) for m in months.unique()]
    np.testing.assert_allclose(_num(got, "mean_sm"), want, rtol=1e-3)  # the report prints 4 significant digits
    assert list(_num(got, "valid_pixels").astype(int)) == valid
    np.testing.assert_allclose(_num(tables["subset"], "mean_sm"), box, rtol=1e-3)


def _tables(text: str) -> dict[str, pd.DataFrame]:
    parser = _Tables()
    parser.feed(text)
    return {k: pd.DataFrame([r for r in rows if r], columns=heads) for k, (heads, rows) in parser.tables.items()}


def _num(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column].replace("—", np.nan)).to_numpy(float)


def test_report_prints_whole(report):
    path, root = report
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"overflow(-[xy])?\s*:\s*(auto|scroll|hidden)", text)
    assert "max-height" not in text and 'class="scroll"' not in text
    css = re.search(r"@media print\s*\{(.*?)\n\}", text, re.S)
    assert css, "no print style sheet"
    assert "thead{display:table-header-group}" in css.group(1)
    assert re.search(r"figure[^{]*\{[^}]*break-inside:avoid", css.group(1))
    # every row of the long tables is in the document
    tables = _tables(text)
    stations = pd.read_csv(root / "validation" / "stations.csv")
    assert len(tables["stations"]) == len(stations) > 0
    scores = pd.read_csv(root / "validation" / "scores.csv")
    assert len(tables["insitu_sites"]) == (scores["level"] == "site").sum() > 10
    assert len(tables["twin_skill_periods"]) == len(pd.read_csv(root / "validation" / "skill_periods.csv"))


def test_report_bias_is_map_minus_reference_everywhere(report):
    path, root = report
    text = path.read_text(encoding="utf-8")
    assert "bias = map − reference: positive means the map is wetter" in BIAS_STATEMENT
    assert text.count(html.escape(BIAS_STATEMENT)) == 1
    assert text.count("bias = ") == 1, "the sign of the bias is stated once, at the top"
    assert text.index(html.escape(BIAS_STATEMENT)) < text.index("<h2>")
    tables = _tables(text)
    bias_heads = {k: [h for h in t.columns if "bias" in h] for k, t in tables.items()}
    for key in ("twin_skill", "twin_skill_periods", "insitu_summary", "insitu_sites"):
        assert f"bias ({BIAS_HEADER})" in bias_heads[key], key
    for key, heads in bias_heads.items():
        assert all(h.endswith(f"({BIAS_HEADER})") for h in heads), (key, heads)
    # in situ: the stored scores keep the paper's sign; the report shows mean(map) - mean(in situ)
    pairs = pd.read_csv(root / "validation" / "pairs.csv")
    ok = pairs[["sm_1km", "insitu"]].notna().all(axis=1)
    expected = pairs.loc[ok, "sm_1km"].mean() - pairs.loc[ok, "insitu"].mean()
    summary = tables["insitu_summary"]
    row = summary.loc[(summary["product"] == "sm_1km") & (summary["level"] == "all") & (summary["days"] == "own")]
    shown = _num(row, f"bias ({BIAS_HEADER})")[0]
    lo, hi = _num(row, f"bias_lo ({BIAS_HEADER})")[0], _num(row, f"bias_hi ({BIAS_HEADER})")[0]
    assert abs(expected) > 1e-4
    assert shown == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert lo <= shown <= hi
    scores = pd.read_csv(root / "validation" / "scores.csv")
    stored = scores.loc[(scores["product"] == "sm_1km") & (scores["level"] == "all") & (scores["days"] == "own")]
    assert stored["bias_convention"].iloc[0] == "reference_minus_product"
    assert stored["bias"].iloc[0] == pytest.approx(-expected, rel=1e-3, abs=1e-6)
    # twin: map minus truth, as stored
    periods_csv = pd.read_csv(root / "validation" / "skill_periods.csv")
    shown = _num(tables["twin_skill_periods"], f"bias ({BIAS_HEADER})")
    np.testing.assert_allclose(shown, periods_csv["bias"].to_numpy(float), rtol=1e-3)


def test_graticule_ticks_are_round_degrees():
    x0, y0 = lonlat_to_xy(108.2, 38.0)
    x1, y1 = lonlat_to_xy(110.0, 39.6)
    xs, lons, xlabels = graticule_ticks(x0, x1, "lon", max_ticks=5)
    ys, lats, ylabels = graticule_ticks(y1, y0, "lat", max_ticks=5)  # either order
    assert 2 <= len(xs) <= 5 and 2 <= len(ys) <= 5
    assert np.all((xs >= x0) & (xs <= x1)) and np.all((ys >= y0) & (ys <= y1))
    back_lon = xy_to_lonlat(xs, np.full_like(xs, y0))[0]
    back_lat = xy_to_lonlat(np.full_like(ys, x0), ys)[1]
    np.testing.assert_allclose(back_lon, lons, atol=1e-6)
    np.testing.assert_allclose(back_lat, lats, atol=1e-6)
    for deg in (lons, lats):  # round: whole multiples of one step from the list of steps
        step = np.diff(deg)[0]
        np.testing.assert_allclose(np.diff(deg), step)
        np.testing.assert_allclose(deg / step, np.round(deg / step), atol=1e-6)
        assert step in (0.25, 0.5, 1.0)
    assert xlabels == [f"{v:.1f}°E" for v in lons] and ylabels == [f"{v:.1f}°N" for v in lats]
    # western and southern hemispheres, and a 20 km range gets finer steps
    _, d, labels = graticule_ticks(*lonlat_to_xy([-10.0, 10.0], [0.0, 0.0])[0], "lon")
    assert labels == ["10°W", "5°W", "0°", "5°E", "10°E"] and list(d) == [-10, -5, 0, 5, 10]
    _, d, labels = graticule_ticks(*lonlat_to_xy([0.0, 0.0], [-35.0, -34.8])[1], "lat")
    assert labels[0].endswith("°S") and len(d) >= 2
    with pytest.raises(ValueError):
        graticule_ticks(0.0, 1.0, "x")


def test_map_figures_are_labelled_in_degrees():
    x0, y0 = lonlat_to_xy(108.6, 39.0)
    maps = xr.DataArray(np.random.default_rng(0).random((5, 40, 60)), dims=("month", "y", "x"),
                        coords={"month": pd.date_range("2016-01-01", periods=5, freq="MS"),
                                "y": y0 - 500.0 - 1000.0 * np.arange(40), "x": x0 + 500.0 + 1000.0 * np.arange(60)})
    fig = draw_map_panels(maps, "month", "test")
    FigureCanvasAgg(fig).draw()
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 5
    assert any("°" in ax.get_xlabel() and "longitude" in ax.get_xlabel() for ax in panels)
    assert any("°" in ax.get_ylabel() and "latitude" in ax.get_ylabel() for ax in panels)
    for ax in panels:
        xl = [t.get_text() for t in ax.get_xticklabels()]
        yl = [t.get_text() for t in ax.get_yticklabels()]
        assert len(xl) >= 2 and all(t.endswith("°E") for t in xl), xl
        assert len(yl) >= 2 and all(t.endswith("°N") for t in yl), yl
        lon = xy_to_lonlat(np.asarray(ax.get_xticks()) * 1000.0, np.zeros(len(xl)))[0]
        np.testing.assert_allclose(lon, [float(t[:-2]) for t in xl], atol=1e-6)


def _overlapping_xlabels(fig) -> list[tuple[str, str]]:
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        x0, x1 = sorted(ax.get_xlim())
        labels = [t for t, v in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
                  if t.get_visible() and t.get_text() and x0 <= v <= x1]
        boxes = [t.get_window_extent(renderer) for t in labels]
        pairs = zip(labels, labels[1:], boxes, boxes[1:], strict=False)
        bad += [(a.get_text(), b.get_text()) for a, b, ba, bb in pairs if ba.overlaps(bb)]
    return bad


@pytest.mark.parametrize("end", [dt.date(2016, 2, 10), dt.date(2016, 4, 30), dt.date(2016, 12, 31),
                                 dt.date(2020, 12, 31)])
def test_twin_skill_per_period_has_readable_x_labels(end):
    names = [p.name for p in periods(dt.date(2016, 1, 1), end)]
    rng = np.random.default_rng(1)
    skill = pd.DataFrame([{"period": p, "map": m, "rmse": rng.random(), "cell_r": rng.random()}
                          for p in [*names, "all"] for m in ("product", "smap_repeat", "smap_bilinear")])
    fig = draw_skill_periods(skill)
    assert _overlapping_xlabels(fig) == []
    ticks = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and 2 <= len(ticks) // 2 <= 12
