"""Faults a run must survive: a write cut short never leaves a partial file under a final
name, and a resume redoes what is truncated or unreadable instead of trusting that it exists.

Where each failure of the reliability review is reproduced; the scenarios that need a
module's own fixtures live beside them:

==============================  ==========================================================
case                            tests
==============================  ==========================================================
1 the lock                      ``test_run_lock.py``: every writing command, a lease taken
                                over (exit 1, nothing more written), SIGTERM, ``dsm demo``
                                beside a live run
2 stores mix configurations     ``test_fingerprint.py`` (cube, models, products, the twin);
                                here: models and products follow the cube
3 the model store               ``test_fingerprint.py::test_two_runs_never_train_into_one_model_store``
4 lost data is not cloud        here (lost and flipped cube chunks, ``dsm verify``, empty
                                days redone); ``test_export.py`` (lost or damaged product
                                chunks never published)
5 impossible inputs             ``test_ranges.py``; ``test_ingest_inputs.py`` (refused files)
6 resume trusts files           here (truncated models, cards, COGs, a write cut short)
7 storage options, buckets      here (report figures); ``test_run_lock.py`` (missing bucket)
8 secrets                       ``test_deploy.py`` (credentials only from Secrets, grep of
                                every rendered manifest)
9 messages                      ``test_run_lock.py`` (unreachable endpoint), ``test_train.py``
                                (lost worker in the distributed fit, grid values),
                                here (a damaged chunk named)
10 reproducible models          ``test_train.py::test_the_same_inputs_and_seed_give_byte_identical_model_files``
crashes, killed workers, S3     ``test_predict_resume.py``, ``test_run_chain.py``
==============================  ==========================================================
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner
from sklearn.linear_model import Ridge

from dsm import cube, figures, files, ledger, products, store
from dsm.cli import main
from dsm.cube import Layout
from dsm.errors import StoreError
from dsm.grid import Region
from dsm.models.store import ModelStore
from dsm.runlock import RunLock
from dsm.storeref import StoreRef

pytestmark = pytest.mark.slow  # make test-fast leaves these out


def _write_under_a_file_size_limit(target: str, limit: int, size: int, how: str) -> subprocess.CompletedProcess:
    """Write ``size`` bytes to ``target`` in a process that may not write files over ``limit`` bytes.

    ``RLIMIT_FSIZE`` makes the kernel refuse the write past the limit (EFBIG), as a full disk
    refuses it with ENOSPC: the write fails part-way through.
    """
    code = textwrap.dedent("""
        import resource, signal, sys
        import fsspec
        from dsm import files
        target, limit, size, how = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        data = b"x" * size
        if how == "put":
            src = target + ".source"
            with open(src, "wb") as f:
                f.write(data)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        fs = fsspec.filesystem("file")
        try:
            if how == "put":
                files.put_file(fs, src, target)
            else:
                files.write_bytes(fs, target, data)
        except OSError as exc:
            print("failed", exc.errno)
            sys.exit(3)
    """)
    return subprocess.run([sys.executable, "-c", code, target, str(limit), str(size), how], capture_output=True, text=True, timeout=120)


def test_a_write_cut_short_leaves_the_previous_file_whole_and_no_partial_file(tmp_path):
    for how in ("bytes", "put"):
        target = tmp_path / f"SM_1km_{how}.tif"
        target.write_bytes(b"previous")
        res = _write_under_a_file_size_limit(str(target), limit=64 * 1024, size=1 << 20, how=how)
        assert res.returncode == 3 and res.stdout.startswith("failed"), res.stdout + res.stderr
        assert target.read_bytes() == b"previous"
        assert not list(tmp_path.glob(f"*{files.PARTIAL_SUFFIX}"))
        res = _write_under_a_file_size_limit(str(target), limit=8 << 20, size=1 << 20, how=how)
        assert res.returncode == 0, res.stdout + res.stderr
        assert target.stat().st_size == 1 << 20 and not list(tmp_path.glob(f"*{files.PARTIAL_SUFFIX}"))


@pytest.mark.s3
def test_write_url_writes_text_and_bytes_whole_on_s3(s3):
    url = f"s3://{s3.make_bucket('faults')}/records/run.json"
    files.write_url(StoreRef(url, s3.storage_options), json.dumps({"outcome": "complete"}))
    with fsspec.open(url, "r", **s3.storage_options) as f:
        assert json.load(f) == {"outcome": "complete"}


def _store_with_two_periods(url: str) -> ModelStore:
    store = ModelStore(StoreRef(url))
    rng = np.random.default_rng(0)
    for key in ("2016161", "2016169"):
        model = Ridge().fit(rng.normal(size=(50, 3)), rng.normal(size=50))
        store.write_card(key, {"period": key, "model": store.save_model(key, model)})
    assert store.done("2016161") and store.done("2016169")
    return store


def test_a_truncated_model_or_an_unreadable_card_is_redone_for_its_period_only(tmp_path):
    store = _store_with_two_periods(str(tmp_path / "models"))
    model = tmp_path / "models" / "2016161" / "model.joblib"
    model.write_bytes(model.read_bytes()[:100])
    assert not store.done("2016161") and store.done("2016169")
    store = _store_with_two_periods(str(tmp_path / "again"))
    card = tmp_path / "again" / "2016169" / "card.json"
    card.write_text(card.read_text()[:40])
    assert store.done("2016161") and not store.done("2016169")
    assert store.load_model("2016161") is not None


@pytest.mark.s3
def test_report_figures_reach_object_storage_with_the_configured_options_only(s3, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    bucket = s3.make_bucket("faults-figures")
    url = figures.importance_bars(pd.DataFrame(), StoreRef(f"{bucket}/validation/figures/importance.png",
                                                           s3.storage_options))
    assert s3.filesystem().cat_file(url.removeprefix("s3://"))[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_figure_also_goes_to_a_plain_path_as_in_a_notebook(tmp_path):
    dest = tmp_path / "figures" / "importance.png"
    assert figures.importance_bars(pd.DataFrame(), str(dest)) == str(dest)
    assert dest.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_flipped_bit_in_a_cube_chunk_is_an_error_naming_store_variable_and_chunk(tmp_path):
    url = str(tmp_path / "cube.zarr")
    ref = StoreRef(url)
    layout = Layout(Region(74, 772, 4, 4), dt.date(2016, 6, 9), dt.date(2016, 6, 24), 72, 8)
    cube.create_cube(ref, layout)
    ds = cube.open_cube(ref)
    lst = np.random.default_rng(1).uniform(280, 320, (16, 144, 144)).astype(np.float32)
    part = xr.Dataset({"lst": (("time", "y", "x"), lst)},
                      coords={"time": ds["time"].values, "y": ds["y"].values, "x": ds["x"].values})
    store.write_region(ref, part, ds)
    raw = xr.open_zarr(url, chunks=None, consolidated=False)
    np.testing.assert_allclose(store.read_values(raw, "lst", ref, time=slice(0, 16)), lst, rtol=1e-6)
    chunk = tmp_path / "cube.zarr" / "lst" / "c" / "1" / "0" / "1"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit: still a valid blosc frame, so only the checksum sees it
    chunk.write_bytes(bytes(data))
    raw = xr.open_zarr(url, chunks=None, consolidated=False)
    np.testing.assert_allclose(store.read_values(raw, "lst", ref, time=slice(0, 8)), lst[:8], rtol=1e-6)
    with pytest.raises(StoreError, match=rf"{url}/lst: chunk 1/0/1 cannot be read .*checksum"):
        store.read_values(raw, "lst", ref, time=slice(4, 12), y=slice(60, 80))


@pytest.mark.timeout(240)
def test_verify_names_every_damaged_byte_and_fix_makes_the_rerun_redo_exactly_that(tmp_path, client):
    from test_export import _config, _output

    from dsm.stages.export import export
    from dsm.verify import verify

    out, cog = str(tmp_path / "sm.zarr"), str(tmp_path / "cog")
    sm = _output(out)
    days = ledger.read(StoreRef(out)).days
    ledger.write_days(StoreRef(out), {
        d: replace(r, model={**(r.model or {}), products.VALID_PIXELS: int(np.isfinite(sm[i]).sum())})
        for i, (d, r) in enumerate(sorted(days.items()))})
    cfg = _config(out, cog, str(tmp_path / "stac"))
    assert export(cfg, client).failed == {}
    layout = Layout(Region(74, 772, 4, 4), dt.date(2016, 6, 9), dt.date(2016, 6, 12), 72, 2)
    cube.create_cube(StoreRef(str(tmp_path / "cube.zarr")), layout)
    ds = cube.open_cube(str(tmp_path / "cube.zarr"))
    store.write_region(StoreRef(str(tmp_path / "cube.zarr")), xr.Dataset(
        {"lst": (("time", "y", "x"), np.full((4, 144, 144), 300, np.float32))},
        coords={"time": ds["time"].values, "y": ds["y"].values, "x": ds["x"].values}), ds)
    _store_with_two_periods(str(tmp_path / "models"))
    cfg = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={
        "cube": str(tmp_path / "cube.zarr"), "models": str(tmp_path / "models")})})
    clean = verify(cfg, client)
    assert clean.ok and clean.checked["models"] == 2 and clean.checked["cogs"] == 9, clean.to_dict()  # 3 days x 3 layers

    def flip(path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    flip(tmp_path / "cube.zarr" / "lst" / "c" / "1" / "1" / "1")
    (tmp_path / "sm.zarr" / "sm" / "c" / "1" / "0" / "0").unlink()  # days 2-3: day 2 loses pixels
    flip(tmp_path / "sm.zarr" / "sm_origin" / "c" / "0" / "1" / "0")  # days 0-1
    flip(tmp_path / "models" / "2016169" / "model.joblib")
    (tmp_path / "cog" / "SM_1km_2016162.tif").write_bytes(b"truncated")
    flip(tmp_path / "cog" / "SM_1km_2016161_unc.tif")  # an uncertainty layer counts as much as sm
    found = {(f.store, f.item) for f in verify(cfg, client).findings}
    assert found == {("cube", "lst/c/1/1/1"), ("products", "2016-06-11"), ("products", "sm_origin/c/0/1/0"),
                     ("models", "2016169"), ("cog", "SM_1km_2016162.tif"), ("cog", "SM_1km_2016161_unc.tif")}
    fixed = verify(cfg, client, fix=True)
    assert not fixed.ok and len(fixed.fixed) == 3
    led = ledger.read(StoreRef(out))
    assert led.done == [] and led.exported == {}  # days 0-2 to predict again, all COGs redone
    assert not (tmp_path / "sm.zarr" / "sm_origin" / "c" / "0" / "1" / "0").exists()
    models = ModelStore(StoreRef(str(tmp_path / "models")))
    assert models.done("2016161") and not models.done("2016169")
    # the command: one line per finding with what redoes it, exit status 1
    raw = cfg.model_dump(mode="json", exclude_defaults=True)
    raw["cluster"] = {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"}
    path = tmp_path / "verify.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["verify", str(path)])
    assert res.exit_code == 1, res.output
    assert "cube lst/c/1/1/1: ValueError: Stored and computed checksum do not match" in res.output
    assert "-> rebuild the cube: dsm ingest CONFIG" in res.output
    assert "models 2016169: model file missing -> dsm train CONFIG" in res.output  # until train redoes it
    assert res.output.endswith("2 problem(s) found\n")


@pytest.mark.timeout(180)
def test_a_chunk_lost_from_the_cube_is_an_error_for_predict_and_verify_never_cloud(tiny_twin, tmp_path, client):
    import shutil

    from dsm import blocks
    from dsm.config import from_dict
    from dsm.stages.train import train
    from dsm.verify import verify

    url = str(tmp_path / "cube.zarr")
    shutil.copytree(tiny_twin.cube.url, url)
    ds = blocks._open(StoreRef(url), "lost", "raw")
    assert ds.attrs[store.WRITTEN_ATTR]["lst"] == [[0, 48]] and ds.attrs[store.WRITTEN_ATTR]["dem"] == [[0, 144]]
    assert all(ds.attrs[store.WRITTEN_ATTR][n] == [[0, 48]] for n in cube.RAIN_VARS if n != "precip")  # the indices too
    (tmp_path / "cube.zarr" / "lst" / "c" / "1" / "0" / "1").unlink()  # days 8-15, y 0:72, x 72:144
    (tmp_path / "cube.zarr" / "api_5d" / "c" / "5" / "1" / "1").unlink()  # days 40-47
    with pytest.raises(StoreError, match=rf"{url}/lst: chunk c/1/0/1 is missing although it was written "
                                         r"\(index 8..15 of time\): the data is lost"):
        blocks.read_all(ds, {"dem": ("dem", {}), "lst": ("lst", {"time": slice(8, 16), "y": slice(0, 72),
                                                                 "x": slice(72, 144)})})
    with pytest.raises(StoreError, match=r"lst: chunk c/1/0/1 is missing"):  # read through xarray the same
        store.read_values_checked(ds, "lst", time=slice(8, 16), y=slice(0, 72), x=slice(72, 144))
    assert np.isfinite(blocks.read_all(ds, {0: ("lst", {"time": slice(8, 16), "y": slice(0, 72),
                                                        "x": slice(0, 72)})})[0]).any()
    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
                     "stores": {"cube": url}})
    found = verify(cfg, client).findings
    assert sorted((f.store, f.item) for f in found) == [("cube", "api_5d/c/5/1/1"), ("cube", "lst/c/1/0/1")]
    assert all("the data is lost" in f.problem for f in found)
    # training refuses the cube before it gathers a sample, naming the chunk
    cfg = from_dict({**cfg.model_dump(mode="json", exclude_defaults=True),
                     "stores": {"cube": url, "models": str(tmp_path / "models")}})
    with pytest.raises(StoreError, match=r"chunks missing although they were written \(lst: c/1/0/1 \(1 chunks\); "
                                         r"api_5d: c/5/1/1 \(1 chunks\)\)"):
        train(cfg, client)
    assert not (tmp_path / "models").exists()


@pytest.mark.timeout(300)
def test_days_made_empty_are_redone_once_the_cube_changes_and_models_follow_the_cube(tiny_twin, tmp_path, client):
    import shutil

    from dsm import fingerprint
    from dsm.config import from_dict
    from dsm.stages.predict import predict
    from dsm.stages.train import train

    url = str(tmp_path / "cube.zarr")
    shutil.copytree(tiny_twin.cube.url, url)
    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-06-24"},
                     "stores": {"cube": url, "models": str(tmp_path / "models"), "output": str(tmp_path / "sm.zarr")},
                     "chunks": {"space": 72, "time": 8}, "output": {"gap_free": False},
                     "training": {"min_samples": 30, "fusion": {"grid": {"max_depth": [3]}, "max_rounds": 40,
                                                                "cv_folds": 3}},
                     "rain": {"predictors": "off"}})
    assert train(cfg, client).failed == {}
    # LST lost for one whole day (no file yet): without gap filling the day has nothing to predict
    ds = cube.open_cube(url)
    intact = ds[["lst"]].isel(time=slice(8, 16)).load()
    holed = intact.copy(deep=True)
    holed["lst"][2] = np.nan
    store.write_region(cfg.stores.ref("cube"), holed, ds)
    with RunLock(StoreRef(str(tmp_path / "sm.zarr.lock")), ttl=60, heartbeat=10) as lease:
        first = predict(cfg, client, lease=lease)
    assert products.open_products(cfg.stores.output).attrs[store.FENCE_ATTR] == lease.fence  # its records carry its token
    assert list(first.empty) == ["2016-06-19"] and "missing all day: lst" in first.empty["2016-06-19"]
    assert predict(cfg, client).skipped == first.days  # nothing changed: nothing is made again
    # the file arrives: the ingest writes the day and records the write (the same call as dsm ingest)
    store.write_region(cfg.stores.ref("cube"), intact, ds)
    store.record_written(cfg.stores.ref("cube"), cube.open_cube(url).attrs, {"lst": [8, 16]})
    again = predict(cfg, client)
    assert again.empty == {} and again.predicted == [f"2016-06-{d}" for d in range(17, 25)]
    led = ledger.read(cfg.stores.ref("output"))
    assert led.empty == {} and led.day("2016-06-19").valid_pixels > 0
    assert led.day("2016-06-19").inputs_revision == cube.open_cube(url).attrs[store.REVISION_ATTR]
    # what predict's blocks wrote is what export reads: every day published; then values altered in
    # place (the same pixels valid, so only the digest can tell) are never published
    from dsm.stages.export import export
    from dsm.verify import verify

    published = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={
        "cog": str(tmp_path / "cog"), "stac": str(tmp_path / "stac")})})
    assert len(export(published, client).exported) == 16
    out = products.open_products(cfg.stores.output)
    altered = out[["sm"]].isel(time=slice(8, 16)).load()
    altered["sm"][3] = altered["sm"][3] + 0.01  # 2016-06-20; NaN stays NaN
    store.write_region(cfg.stores.ref("output"), altered, out)
    found = {(f.store, f.item): f.problem for f in verify(published, client).findings}
    assert found == {("products", "2016-06-20"): "sm is not what predict wrote (its digest differs)"}
    report = export(published, client, force=True)
    assert list(report.failed) == ["2016-06-20"] and "is not what predict wrote" in report.failed["2016-06-20"]
    assert "2016-06-20" not in ledger.read(cfg.stores.ref("output")).done
    # the cube rebuilt with other input settings: its models and products are refused, naming the cube
    twin = fingerprint.cube_settings(None, None, cfg.rain) | {"twin.seed": 8}
    store.set_attrs(cfg.stores.ref("cube"), {fingerprint.CUBE_ATTR: {"fingerprint": fingerprint.fingerprint(twin), "settings": twin}})
    with pytest.raises(StoreError, match=r"made from a cube of fingerprint \w+, the cube .*cube.zarr now has \w+ "
                                         r"\(rebuilt, or inputs added since\)"):
        predict(cfg, client)
    with pytest.raises(StoreError, match=r"the models store .* was made with other settings .*rebuilt, or inputs added"):
        train(cfg, client)
