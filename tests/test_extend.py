"""Extending the stores in time (``dsm run CONFIG --until DATE``, :mod:`dsm.extend`) on the tiny twin.

One module-scoped scenario on a LocalCluster: the paper's method (rao2022) run to day N (2016-07-03,
25 days: the second 16-day period partial, the last 4-day time chunk holding one day), then
extended with ``--until`` N+20 (2016-07-23), then the same ``--until`` again, and a single run
straight to N+20 in other stores. Compared, file by file:

* cube and truth: every data chunk and every data array's metadata byte for byte; the time
  coordinates by value (their chunking follows the first length);
* models: every model file byte for byte; the cards equal but for ``created`` and the cube's path;
* products: every data chunk (``sm``, ``sm_unc``, ``sm_origin``, ``sm_36km``) byte for byte; the
  days done; the COG files byte for byte; the STAC items as JSON; the collection's extent.

The default method (fusion) keeps its pooled model on extension: checked on its own stores.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from affine import Affine

from dsm import config as config_mod
from dsm import ledger
from dsm.chain import run
from dsm.cube import Layout, cube_template
from dsm.errors import StoreError
from dsm.extend import parse_until, recorded_end, with_end
from dsm.fusion import ErrorModel
from dsm.ingest.plan import Group, Plan, Task, changing
from dsm.ingest.report import format_report
from dsm.models.cards import read_fusion_card
from dsm.models.store import ModelStore
from dsm.stages import predict as predict_stage
from dsm.stages.ingest import run_ingest
from dsm.storeref import StoreRef
from dsm.testing.granules import write_geotiff
from dsm.testing.precip import imerg_filename, write_imerg_day
from dsm.testing.smap_granules import SmapPass, spl3smp_filename, write_spl3smp

pytestmark = pytest.mark.slow  # a LocalCluster and whole runs: make test-fast leaves these out

N, N20 = dt.date(2016, 7, 3), dt.date(2016, 7, 23)
STAGES = ["cube", "train", "predict", "export"]
TRAINING = {"min_samples": 40, "models": ["mlr", "xgb"], "cv_folds": 2, "pooled": False,
            "fusion": {"grid": {"max_depth": [3]}, "max_rounds": 30, "cv_folds": 2},
            "grids": {"xgb": {"n_estimators": [30], "max_depth": [3], "learning_rate": [0.2]}}}
DATA = ("lst", "albedo", "smap_sm", "lai", "ndvi", "precip", "api_2d", "api_age", "sm_true", "sm", "sm_unc",
        "sm_origin", "sm_36km", "dem")


def _raw(root: Path, name: str, end: dt.date, method: str = "rao2022", cube: str | None = None,
         **training: object) -> dict:
    where = {k: str(root / name / v) for k, v in {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations",
                                                  "models": "models", "output": "sm.zarr", "cog": "cog",
                                                  "stac": "stac"}.items()}
    if cube is not None:
        where.update(cube=str(root / cube / "cube.zarr"), truth=str(root / cube / "truth.zarr"),
                     stations=str(root / cube / "stations"))
    return {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": end.isoformat()},
            "stores": where, "chunks": {"space": 144, "time": 4}, "twin": {"seed": 3},
            "training": {**TRAINING, "method": method, **training},
            "run": {"stages": STAGES, "performance_report": False}}


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: relative path -> (mtime in ns, bytes)."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for n in names:
            p = Path(dirpath) / n
            out[str(p.relative_to(folder))] = (p.stat().st_mtime_ns, p.read_bytes())
    return out


def _chunk(key: str) -> tuple[str, int] | None:
    """``(variable, first chunk index)`` of a data chunk key ``var/c/i/...`` of :data:`DATA`, else None."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] in DATA and parts[1] == "c":
        return parts[0], int(parts[2])
    return None


def _summary(result, stage: str) -> dict:
    return next(s for s in result.stages if s.stage == stage).summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory, client):
    """The rao2022 scenario: N, the extension to N+20, the same again, and a single run to N+20."""
    root = tmp_path_factory.mktemp("extend")
    quiet = lambda line: None  # noqa: E731
    first = config_mod.from_dict(_raw(root, "a", N))
    r_first = run(first, client, progress=quiet)
    before = {s: _files(root / "a" / s) for s in ("cube.zarr", "truth.zarr", "sm.zarr", "models")}
    extended = with_end(first, N20)
    lines: list[str] = []
    r_ext = run(extended, client, progress=lines.append)
    middle = {s: _files(root / "a" / s) for s in ("cube.zarr", "truth.zarr", "sm.zarr", "models")}
    r_again = run(extended, client, progress=quiet)
    after = {s: _files(root / "a" / s) for s in ("cube.zarr", "truth.zarr", "sm.zarr", "models")}
    single = config_mod.from_dict(_raw(root, "b", N20))
    r_single = run(single, client, progress=quiet)
    return {"root": root, "first": r_first, "ext": r_ext, "again": r_again, "single": r_single, "before": before,
            "middle": middle, "after": after, "lines": lines, "extended": extended}


def test_every_run_completes(runs):
    for key in ("first", "ext", "again", "single"):
        assert runs[key].outcome == "complete", (key, [(s.stage, s.status, s.message) for s in runs[key].stages])
    assert any("extending products" in line and f"{N} -> {N20}" in line for line in runs["lines"])


def test_extended_cube_and_truth_equal_a_single_run(runs):
    root = runs["root"]
    for store in ("cube.zarr", "truth.zarr"):
        a, b = _files(root / "a" / store), _files(root / "b" / store)
        data = [k for k in b if _chunk(k) or (k.split("/")[0] in DATA and k.endswith("zarr.json"))]
        assert data and [k for k in data if a.get(k, (0, b""))[1] != b[k][1]] == []
        with xr.open_zarr(root / "a" / store, consolidated=False) as da_, \
                xr.open_zarr(root / "b" / store, consolidated=False) as db_:
            for t in ("time", "time_8d", "time_16d", "time_precip"):
                if t in db_.coords:
                    np.testing.assert_array_equal(da_[t].values, db_[t].values)
            assert da_.attrs["end"] == db_.attrs["end"] == N20.isoformat()
    assert _files(root / "a" / "stations").keys() == _files(root / "b" / "stations").keys()
    assert all(v[1] == _files(root / "b" / "stations")[k][1] for k, v in _files(root / "a" / "stations").items())


def test_extension_never_rewrites_an_existing_chunk_but_the_partial_and_redone_ones(runs):
    tchunk, n_old = 4, (N - dt.date(2016, 6, 9)).days + 1  # 25 days: chunk 6 holds one day
    partial = n_old // tchunk
    before, middle = runs["before"], runs["middle"]
    led = ledger.read(StoreRef(str(runs["root"] / "a" / "sm.zarr")))
    redone = sorted(d for d, r in led.days.items() if (r.model or {}).get("replaces"))
    redone_rows = {((dt.date.fromisoformat(d) - dt.date(2016, 6, 9)).days) // tchunk for d in redone}
    with xr.open_zarr(runs["root"] / "a" / "cube.zarr", consolidated=False) as cube:
        spin = cube.sizes["time_precip"] - cube.sizes["time"]  # precipitation days before the first day
    for store in ("cube.zarr", "truth.zarr", "sm.zarr"):
        touched = set()
        for key, (mtime, raw) in before[store].items():
            c = _chunk(key)
            if c is None:
                continue
            if middle[store][key] != (mtime, raw):
                touched.add(c)
        allowed = {partial} | (redone_rows if store == "sm.zarr" else set())
        assert {row for v, row in touched if v not in ("lai", "ndvi", "dem", "precip")} <= allowed, store
        assert {row for v, row in touched if v == "precip"} <= {(spin + n_old) // tchunk}, store
        assert not {c for c in touched if c[0] in ("lai", "ndvi", "dem")}, (store, sorted(touched))
    # the rao2022 partial period (2016177, 06-25..07-03) was retrained and its days made again
    assert redone == [(dt.date(2016, 6, 25) + dt.timedelta(k)).isoformat() for k in range(9)]
    why = led.days[redone[0]].model["replaces"]["why"]
    assert "2016177" in why and "retrained" in why


def test_only_periods_whose_window_changed_are_retrained(runs):
    root = runs["root"]
    train = _summary(runs["ext"], "train")
    assert train["trained"] == 1 and train["periods"] == 3
    before, middle = runs["before"]["models"], runs["middle"]["models"]
    assert middle["2016161/card.json"] == before["2016161/card.json"]  # completed period: untouched
    assert middle["2016177/card.json"] != before["2016177/card.json"]
    cards = {p: json.loads((root / "a" / "models" / p / "card.json").read_text()) for p in ("2016161", "2016177")}
    assert cards["2016161"]["window"] == ["2016-06-09", "2016-06-24"]
    assert cards["2016177"]["window"] == ["2016-06-25", "2016-07-10"]
    old = json.loads(before["2016177/card.json"][1])
    assert old["window"] == ["2016-06-25", "2016-07-03"]


def test_models_and_products_equal_a_single_run(runs):
    root = runs["root"]
    ma, mb = _files(root / "a" / "models"), _files(root / "b" / "models")
    models = [k for k in mb if k.endswith(("model.json", "model.joblib"))]
    assert models and ma.keys() == mb.keys() and all(ma[k][1] == mb[k][1] for k in models)
    for key in (k for k in mb if k.endswith("card.json")):
        ca, cb = json.loads(ma[key][1]), json.loads(mb[key][1])
        for c in (ca, cb):
            c.pop("created", None)
            c.pop("cube", None)
        assert ca == cb, key
    pa, pb = _files(root / "a" / "sm.zarr"), _files(root / "b" / "sm.zarr")
    chunks = [k for k in pb if _chunk(k)]
    assert len(chunks) > 40 and [k for k in chunks if pa.get(k, (0, b""))[1] != pb[k][1]] == []
    la, lb = ledger.read(StoreRef(str(root / "a" / "sm.zarr"))), ledger.read(StoreRef(str(root / "b" / "sm.zarr")))
    assert la.done == lb.done and len(la.done) == 45
    ga, gb = _files(root / "a" / "cog"), _files(root / "b" / "cog")
    assert ga.keys() == gb.keys() and all(ga[k][1] == gb[k][1] for k in gb)
    sa, sb = _files(root / "a" / "stac"), _files(root / "b" / "stac")
    assert sa.keys() == sb.keys() and all(json.loads(sa[k][1]) == json.loads(sb[k][1]) for k in sb)
    extent = json.loads(sa["collection.json"][1])["extent"]["temporal"]["interval"][0]
    assert extent[0].startswith("2016-06-09") and extent[1].startswith(N20.isoformat())


def test_the_same_until_again_does_nothing_new(runs):
    r = runs["again"]
    assert _summary(r, "cube") == {"built": False}
    assert _summary(r, "train")["trained"] == 0
    assert _summary(r, "predict")["predicted"] == 0 and _summary(r, "export")["exported"] == 0
    for store in ("cube.zarr", "truth.zarr", "sm.zarr"):
        changed = [k for k, v in runs["middle"][store].items() if _chunk(k) and runs["after"][store][k] != v]
        assert changed == [], store


def test_an_until_before_the_stores_end_names_both_dates(runs, client):
    early = with_end(runs["extended"], dt.date(2016, 7, 13))
    with pytest.raises(StoreError, match="ends on 2016-07-23, after this run's end 2016-07-13"):
        run(early, client, progress=lambda line: None)
    assert recorded_end(StoreRef(str(runs["root"] / "a" / "sm.zarr"))) == N20


def test_extending_with_other_predictors_is_refused_naming_the_key(runs, client):
    raw = _raw(runs["root"], "a", dt.date(2016, 7, 26))
    raw["predictors"] = [p for p in config_mod.from_dict(raw).predictors if p != "evi"]
    with pytest.raises(StoreError, match=r"predictors: \[") as err:
        run(config_mod.from_dict(raw), client, progress=lambda line: None)
    assert "models store" in str(err.value)
    for store in ("cube.zarr", "truth.zarr", "sm.zarr"):  # refused before anything was resized
        assert recorded_end(StoreRef(str(runs["root"] / "a" / store))) == N20


def test_until_parses_dates_and_today():
    assert parse_until("2016-07-23") == N20
    assert parse_until("today") == dt.datetime.now(dt.timezone.utc).date()
    raw = _raw(Path("/x"), "a", N)
    raw["dates"]["end"] = "today"
    assert config_mod.from_dict(raw).dates.end == dt.datetime.now(dt.timezone.utc).date()
    with pytest.raises(config_mod.ConfigError, match="'yesterday' is not a date"):
        parse_until("yesterday")


def test_fusion_keeps_its_model_and_redoes_the_days_its_window_cut(runs, client):
    """The default method on the single run's twin (a cube longer than the run is read as is,
    so the model samples the whole last period, to 07-10: its recorded window says so): to N,
    then --until N+20 with a centred anomaly window of 3 days."""
    root = runs["root"]
    raw = _raw(root, "fusion", N, "fusion", cube="b", fusion={**TRAINING["fusion"], "anomaly_window_days": 3})
    raw["run"]["stages"] = ["cube", "train", "predict"]
    cfg = config_mod.from_dict(raw)
    assert run(cfg, client, progress=lambda line: None).outcome == "complete"
    models = _files(root / "fusion" / "models")
    products = _files(root / "fusion" / "sm.zarr")
    shutil.copytree(root / "fusion", root / "fusion-full")  # the same stores, extended with a whole 36 km pass
    lines: list[str] = []
    result = run(with_end(cfg, N20), client, progress=lines.append)
    assert result.outcome == "complete"
    # the 36 km pass fused the days to predict (from N's time chunk) and the max_carry_days before them only
    card = read_fusion_card(ModelStore(cfg.stores.ref("models")))
    lead = ErrorModel.from_dict(card.error_model).max_carry_days
    first = dt.date(2016, 6, 9) + dt.timedelta(days=24)  # N's time chunk: days 24..27
    assert lead > 0 and _summary(result, "predict")["cell_days"] == (
        (first - dt.timedelta(days=lead)).isoformat(), N20.isoformat())
    assert f"fusing the model's cell means with SMAP for {first}..{N20}" in "\n".join(map(str, lines))
    full = config_mod.from_dict(_raw(root, "fusion-full", N20, "fusion", cube="b",
                                     fusion={**TRAINING["fusion"], "anomaly_window_days": 3}) | {"run": raw["run"]})
    with pytest.MonkeyPatch.context() as mp:  # as if the calibration were still to be made: every day fused
        mp.setattr(predict_stage, "calibrated", lambda stored: False)
        whole = run(full, client, progress=lambda line: None)
    assert whole.outcome == "complete" and _summary(whole, "predict")["cell_days"][0] == "2016-06-09"
    ours, theirs = _files(root / "fusion" / "sm.zarr"), _files(root / "fusion-full" / "sm.zarr")
    data = [k for k in ours if _chunk(k)]
    assert len(data) > 20 and all(ours[k][1] == theirs[k][1] for k in data)  # the same products, byte for byte
    train = next(s for s in result.stages if s.stage == "train")
    assert train.summary["trained"] == 0
    assert "kept the pooled model trained on 2016-06-09..2016-07-10" in train.report.kept
    assert "--force` retrains it over 2016-06-09..2016-07-23" in train.report.kept
    after = _files(root / "fusion" / "models")
    assert all(after[k] == v for k, v in models.items() if k != "run.json")  # the pooled model kept
    window = json.loads((root / "fusion" / "models" / "training_window.json").read_text())
    assert window == {"fusion": ["2016-06-09", "2016-07-10"]}
    assert _summary(result, "predict")["predicted"] == 21  # the 20 new days and N, in N's time chunk
    led = ledger.read(StoreRef(str(root / "fusion" / "sm.zarr")))
    assert len(led.done) == 45
    assert "anomaly window" in led.days[N.isoformat()].model["replaces"]["why"]
    now = _files(root / "fusion" / "sm.zarr")
    rows = {_chunk(k)[1] for k, v in products.items() if _chunk(k) and now[k] != v}
    assert rows == {6}  # only the partial time chunk (days 24..27) was written again


def _imerg_grid(region, margin: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Centres of IMERG's 0.1 degree grid around ``region``."""
    lon0, lat0, lon1, lat1 = region.lonlat_bounds
    i = np.arange(int(np.floor(lat0 * 10)) - margin, int(np.ceil(lat1 * 10)) + margin)
    j = np.arange(int(np.floor(lon0 * 10)) - margin, int(np.ceil(lon1 * 10)) + margin)
    return np.round((i[::-1] + 0.5) / 10, 2), np.round((j + 0.5) / 10, 2)


def test_an_ingested_cube_extends_to_the_bytes_of_a_single_ingest(tmp_path, client):
    """SMAP granules and IMERG files for 2016-06-03..09 (and the spin-up days): a cube ingested to
    06-07 then extended to 06-09 holds the chunks of a cube ingested to 06-09 at once, and the
    extension rewrote only the last partial time chunk of each daily variable."""
    start, mid, end = dt.date(2016, 6, 3), dt.date(2016, 6, 7), dt.date(2016, 6, 9)
    rng = np.random.default_rng(5)
    (tmp_path / "smap").mkdir()
    (tmp_path / "imerg").mkdir()
    raw = {"region": {"cells": [74, 772, 2, 2]}, "dates": {"start": start.isoformat(), "end": mid.isoformat()},
           "stores": {"cube": str(tmp_path / "x.zarr")}, "chunks": {"space": 72, "time": 2}, "rain": {"spinup_days": 3},
           "inputs": {"smap": {"paths": str(tmp_path / "smap/*.h5")},
                      "precip": {"paths": str(tmp_path / "imerg/*.nc4"), "product": "imerg"},
                      "land_mask": {"paths": str(tmp_path / "land.tif")}}}
    region = config_mod.from_dict(raw).grid_region
    lat, lon = _imerg_grid(region)
    for k in range(-4, 7):
        day = start + dt.timedelta(k)
        write_imerg_day(tmp_path / "imerg" / imerg_filename(day), day, lat, lon,
                        (rng.random((lat.size, lon.size)) * 20).astype(np.float32))
        if k >= 0:
            write_spl3smp(tmp_path / "smap" / spl3smp_filename(day), day,
                          SmapPass((0.1 + 0.3 * rng.random((406, 964))).astype(np.float32)))
    lon0, lat0, lon1, lat1 = region.lonlat_bounds
    t = Affine(0.01, 0, np.floor(lon0) - 0.5, 0, -0.01, np.ceil(lat1) + 0.5)
    n = (int((np.ceil(lat1) - np.floor(lat0) + 1) * 100), int((np.ceil(lon1) - np.floor(lon0) + 1) * 100))
    write_geotiff(tmp_path / "land.tif", np.ones(n, np.float32), t, "EPSG:4326")

    def ingest(name: str, until: dt.date) -> dict:
        cfg = with_end(config_mod.from_dict({**raw, "stores": {"cube": str(tmp_path / name)}}), until)
        rep = run_ingest(cfg, client, progress=False)
        assert rep["summary"]["task_errors"] == 0, rep["task_errors"]
        return rep

    first = ingest("a.zarr", mid)
    before = _files(tmp_path / "a.zarr")
    rep = ingest("a.zarr", end)
    single = ingest("b.zarr", end)
    # only the tasks of the chunks the new days change ran: daily chunks 2 (partial) and 3,
    # precipitation (4 spin-up days) chunks 4 (partial) and 5; no static task
    assert sorted(rep["task_seconds"]) == ["ingest-precip-time_precip-10", "ingest-precip-time_precip-8",
                                           "ingest-smap-time-4", "ingest-smap-time-6"]
    assert sorted(rep["not_run"]["tasks"]) == sorted(set(first["task_seconds"]) - set(rep["task_seconds"]))
    assert rep["not_run"]["extended_from"] == mid.isoformat() and "ingest-static-static-0" in rep["not_run"]["tasks"]
    # the files of the tasks not run are listed kept (not used), and with the used ones make the single ingest's
    assert rep["summary"]["kept"] == 8 + 4 + 1 and rep["summary"]["used"] == 3 + 3  # precip, smap, land mask
    assert {(f["path"], f["date"]) for f in rep["files"] if f["status"] in ("used", "kept")} == {
        (f["path"], f["date"]) for f in single["files"] if f["status"] == "used"}
    lines = format_report(rep)
    assert "extended from 2016-06-07: 7 tasks of chunks complete before it not run, their 13 files kept (ingested " \
           "earlier)" in lines
    assert not [line for line in lines if "kept " in line and ".h5" in line]  # kept files are not listed as bad
    saved = json.loads((tmp_path / "a.ingest_report.json").read_text())
    assert saved["provenance"] == json.loads((tmp_path / "b.ingest_report.json").read_text())["provenance"]
    a, b = _files(tmp_path / "a.zarr"), _files(tmp_path / "b.zarr")
    chunks = [k for k in b if _chunk(k)]
    assert len(chunks) > 10 and [k for k in chunks if a.get(k, (0, b""))[1] != b[k][1]] == []
    assert recorded_end(StoreRef(str(tmp_path / "a.zarr"))) == end
    touched = {_chunk(k) for k, v in before.items() if _chunk(k) and a[k] != v}
    # 5 days to 06-07: the daily chunk 2 (06-07, 06-08) was partial; precip: 4 spin-up days first
    assert touched and {row for v, row in touched if v != "precip"} == {2} and {
        row for v, row in touched if v == "precip"} <= {4}
    assert rep["antecedent"]["blocks"] == 2  # only the partial chunk and the new one were written


def test_an_extension_plans_only_the_chunks_its_new_days_change():
    """Extended from 06-12 to 06-20: a daily chunk complete by 06-12 and recorded written is not
    run, one not recorded (its task failed before) is; an 8-day composite is run when its days
    reach past 06-12 (06-09..06-16), and the static task only while a layer is not recorded."""
    old_end = dt.date(2016, 6, 12)
    raw = {"region": {"cells": [74, 772, 2, 2]}, "dates": {"start": "2016-06-03", "end": "2016-06-20"},
           "stores": {"cube": "/nowhere/x.zarr"}, "chunks": {"space": 72, "time": 2},
           "inputs": {"smap": {"paths": "/nowhere/smap/*.h5"}, "mod15a2h": {"paths": "/nowhere/m/*.hdf"},
                      "dem": {"paths": "/nowhere/dem.tif"}}}
    cfg = config_mod.from_dict(raw)
    cube = cube_template(Layout.from_config(cfg))
    assert [str(d)[:10] for d in cube.indexes["time_8d"]] == ["2016-06-01", "2016-06-09", "2016-06-17"]
    day = dt.date(2016, 6, 3)
    tasks = [Task("smap", "time", i, i + 2, (Group(day + dt.timedelta(i), (f"s{i}.h5",)),)) for i in range(0, 18, 2)]
    tasks += [Task("mod15a2h", "time_8d", i, i + 1, (Group(None, (f"m{i}.hdf",)),)) for i in range(3)]
    tasks.append(Task("static", None, 0, 0, (Group(None, ("dem.tif",), kinds=("dem",)),)))
    cube.attrs["chunks_written"] = {"smap_sm": [[0, 4], [6, 10]], "lai": [[0, 2]], "fapar": [[0, 2]],
                                    "dem": [[0, 2]], "land_mask": [[0, 2]]}
    p, not_run = changing(cfg, cube, Plan(tasks=tasks), old_end)
    assert [t.key for t in p.tasks] == [*(f"ingest-smap-time-{i}" for i in (4, 10, 12, 14, 16)),
                                        "ingest-mod15a2h-time_8d-1", "ingest-mod15a2h-time_8d-2"]
    assert not_run == [*(f"ingest-smap-time-{i}" for i in (0, 2, 6, 8)), "ingest-mod15a2h-time_8d-0",
                       "ingest-static-static-0"]
    assert [(f["path"], f["source"], f["status"]) for f in p.files] == [
        ("s0.h5", "smap", "kept"), ("s2.h5", "smap", "kept"), ("s6.h5", "smap", "kept"), ("s8.h5", "smap", "kept"),
        ("m0.hdf", "mod15a2h", "kept"), ("dem.tif", "dem", "kept")]
    cube.attrs["chunks_written"] = {"smap_sm": [[0, 10]], "lai": [[0, 2]]}  # fapar, land mask never written
    p, not_run = changing(cfg, cube, Plan(tasks=tasks), old_end)
    assert not_run == [f"ingest-smap-time-{i}" for i in (0, 2, 4, 6, 8)]
