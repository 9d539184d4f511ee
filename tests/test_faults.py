"""Faults a run must survive: a write cut short never leaves a partial file under a final
name, and a resume redoes what is truncated or unreadable instead of trusting that it exists."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap

import fsspec
import numpy as np
import pandas as pd
import xarray as xr
import pytest
from sklearn.linear_model import Ridge

from dsm import cube, figures, files, store
from dsm.cube import Layout
from dsm.errors import StoreError
from dsm.grid import Region
from dsm.models.store import ModelStore


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
    files.write_url(url, json.dumps({"outcome": "complete"}), s3.storage_options)
    with fsspec.open(url, "r", **s3.storage_options) as f:
        assert json.load(f) == {"outcome": "complete"}


def _store_with_two_periods(url: str) -> ModelStore:
    store = ModelStore(url)
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
    url = figures.importance_bars(pd.DataFrame(), f"{bucket}/validation/figures/importance.png",
                                  storage_options=s3.storage_options)
    assert s3.filesystem().cat_file(url.removeprefix("s3://"))[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_flipped_bit_in_a_cube_chunk_is_an_error_naming_store_variable_and_chunk(tmp_path):
    url = str(tmp_path / "cube.zarr")
    layout = Layout(Region(74, 772, 4, 4), dt.date(2016, 6, 9), dt.date(2016, 6, 24), 72, 8)
    cube.create_cube(url, layout)
    ds = cube.open_cube(url)
    lst = np.random.default_rng(1).uniform(280, 320, (16, 144, 144)).astype(np.float32)
    part = xr.Dataset({"lst": (("time", "y", "x"), lst)},
                      coords={"time": ds["time"].values, "y": ds["y"].values, "x": ds["x"].values})
    store.write_region(url, part, None, ds)
    raw = xr.open_zarr(url, chunks=None, consolidated=False)
    np.testing.assert_allclose(store.read_values(raw, "lst", url, time=slice(0, 16)), lst, rtol=1e-6)
    chunk = tmp_path / "cube.zarr" / "lst" / "c" / "1" / "0" / "1"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit: still a valid blosc frame, so only the checksum sees it
    chunk.write_bytes(bytes(data))
    raw = xr.open_zarr(url, chunks=None, consolidated=False)
    np.testing.assert_allclose(store.read_values(raw, "lst", url, time=slice(0, 8)), lst[:8], rtol=1e-6)
    with pytest.raises(StoreError, match=rf"{url}/lst: chunk 1/0/1 cannot be read .*checksum"):
        store.read_values(raw, "lst", url, time=slice(4, 12), y=slice(60, 80))
