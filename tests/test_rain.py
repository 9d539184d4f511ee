"""The antecedent precipitation index: the pure scan (dsm.rain) and its writer (dsm.antecedent)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from dask.utils import key_split
from distributed import get_task_stream

from dsm import store
from dsm.antecedent import ATTR, AntecedentSummary, write_antecedent
from dsm.config import RainConfig
from dsm.cube import API_EFOLDING_DAYS, API_NAMES, Layout, create_cube, open_cube
from dsm.errors import InputError
from dsm.grid import Region
from dsm.rain import AGE_MAX, ApiState, api_scan, api_step, decay
from dsm.storeref import StoreRef

EF = (2.0, 5.0, 15.0)


def reference(p: np.ndarray, efolding: tuple[float, ...], max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """The semantics written out one pixel and one day at a time."""
    nt, ny, nx = p.shape
    api = np.zeros((len(efolding), nt, ny, nx))
    age = np.zeros((nt, ny, nx), np.int64)
    for y in range(ny):
        for x in range(nx):
            for d, e in enumerate(efolding):
                value, gap, a = 0.0, 0, 0
                for t in range(nt):
                    rain = p[t, y, x]
                    if math.isnan(rain):
                        gap += 1
                        a = 0
                        if gap > max_gap:
                            value = 0.0
                            api[d, t, y, x] = math.nan
                        else:
                            value = value * math.exp(-1.0 / e)
                            api[d, t, y, x] = value
                    else:
                        gap = 0
                        a = min(a + 1, 255)
                        value = value * math.exp(-1.0 / e) + rain
                        api[d, t, y, x] = value
                    age[t, y, x] = a
    return api.astype(np.float32), age.astype(np.uint8)


def series(nt: int = 40, shape: tuple[int, int] = (3, 4), seed: int = 1) -> np.ndarray:
    """Random rain with hand-placed gaps at and across the boundaries of chunks of 3 and 8."""
    rng = np.random.default_rng(seed)
    p = rng.gamma(0.6, 5.0, (nt, *shape)) * (rng.random((nt, *shape)) < 0.6)
    p[7:9, 0, 0] = np.nan  # 2 days across the boundary at 8 (bridged with max_gap 2)
    p[15:19, 0, 1] = np.nan  # 4 days across 16 (longer than max_gap 2)
    p[23:24, 1, 0] = np.nan  # the last day of a chunk of 8
    p[24:27, 1, 1] = np.nan  # 3 days starting a chunk of 8 (one longer than max_gap)
    p[0:5, 2, 2] = np.nan  # a gap at the start of the series
    p[8:20, 2, 3] = np.nan  # a long gap over several chunks
    p[35:, 0, 3] = np.nan  # a gap running to the end
    p[rng.random(p.shape) < 0.05] = np.nan
    return p


def test_decay_values() -> None:
    assert decay(1) == pytest.approx(math.exp(-1))
    assert decay(2) == pytest.approx(0.6065306597)
    assert decay(15) == pytest.approx(0.9355069850)
    for bad in (0, -2, math.inf, math.nan):
        with pytest.raises(ValueError, match="e-folding"):
            decay(bad)


@pytest.mark.parametrize("max_gap", [0, 2, 5])
def test_scan_equals_loop(max_gap: int) -> None:
    p = series()
    api, age, state = api_scan(p, EF, max_gap)
    want_api, want_age = reference(p, EF, max_gap)
    assert api.dtype == np.float32 and age.dtype == np.uint8
    np.testing.assert_array_equal(api, want_api)
    np.testing.assert_array_equal(age, want_age)
    assert state.api.shape == (3, 3, 4) and not np.isnan(state.api).any()


@pytest.mark.parametrize("tchunk", [1, 3, 8, 40])
@pytest.mark.parametrize("max_gap", [0, 2])
def test_scan_split_in_chunks(tchunk: int, max_gap: int) -> None:
    """Carrying the state from chunk to chunk gives the whole series' values exactly."""
    p = series()
    want_api, want_age = reference(p, EF, max_gap)
    state = None
    parts = []
    for t0 in range(0, len(p), tchunk):
        api, age, state = api_scan(p[t0:t0 + tchunk], EF, max_gap, state)
        parts.append((api, age))
    np.testing.assert_array_equal(np.concatenate([a for a, _ in parts], axis=1), want_api)
    np.testing.assert_array_equal(np.concatenate([g for _, g in parts]), want_age)


def test_age_semantics() -> None:
    p = np.zeros((300, 1, 3))
    p[10:12, 0, 0] = np.nan  # 2 missing days
    p[5, 0, 1] = np.nan
    api, age, state = api_scan(p, EF, 1)
    a = age[:, 0, 0]
    assert list(a[:10]) == list(range(1, 11)) and list(a[10:12]) == [0, 0] and list(a[12:15]) == [1, 2, 3]
    assert a[-1] == AGE_MAX and age[-1, 0, 2] == AGE_MAX  # capped
    assert np.isnan(api[:, 11, 0, 0]).all() and not np.isnan(api[:, 10, 0, 0]).any()  # the 2nd day is over max_gap 1
    assert state.age[0, 0] == AGE_MAX and state.gap.tolist() == [[0, 0, 0]]


def test_bridged_gap_decays_and_long_gap_restarts() -> None:
    p = np.array([10.0, np.nan, np.nan, 0.0, np.nan, np.nan, np.nan, 4.0])[:, None, None]
    api, _, _ = api_scan(p, (5.0,), 2)
    k = math.exp(-1 / 5)
    np.testing.assert_allclose(api[0, :4, 0, 0], [10, 10 * k, 10 * k**2, 10 * k**3], rtol=1e-6)
    np.testing.assert_allclose(api[0, 4:6, 0, 0], [10 * k**4, 10 * k**5], rtol=1e-6)
    assert np.isnan(api[0, 6, 0, 0]) and api[0, 7, 0, 0] == 4.0  # restarted at 0


def test_step_and_initial_state() -> None:
    p = series(nt=3)
    api0, age0, s0 = api_step(p[0], EF, 2)
    np.testing.assert_array_equal(api0, np.where(np.isnan(p[0]), 0, p[0]).astype(np.float32)[None].repeat(3, 0))
    before = ApiState.initial(3, p.shape[1:])
    api1, age1, s1 = api_step(p[1], EF, 2, s0)
    scan_api, scan_age, _ = api_scan(p[:2], EF, 2, before)
    np.testing.assert_array_equal(scan_api[:, 1], api1)
    np.testing.assert_array_equal(scan_age[1], age1)
    assert not before.api.any() and not before.age.any()  # the input state is not modified


def test_invalid_precipitation_in_the_cube_is_refused(tmp_path: Path) -> None:
    url, p, _ = make_cube(tmp_path)
    cube = open_cube(url)
    p[20, 5, 40] = -1.0  # a day of the cube (after the 16 spin-up days), in the second block column
    store.write_region(StoreRef(url), xr.Dataset({"precip": (("time_precip", "y", "x"), p)},
                                                 coords={d: cube[d].values for d in ("time_precip", "y", "x")}), cube)
    with pytest.raises(ValueError, match="negative precipitation") as err:
        write_antecedent(StoreRef(url), RainConfig())
    first, last = (str(d) for d in cube["time_precip"].values[[16, 23]].astype("datetime64[D]"))  # its time chunk
    assert url in str(err.value) and "dsm ingest" in str(err.value)
    assert f"'precip' of {first} .. {last}, rows 0:36, columns 36:72:" in str(err.value)
    assert ATTR not in open_cube(url).attrs


@pytest.mark.parametrize("bad, word", [(-0.5, "negative"), (np.inf, "infinite")])
def test_invalid_precipitation_refused(bad: float, word: str) -> None:
    p = series(nt=10)
    p[4, 1, 2] = bad
    with pytest.raises(ValueError, match=f"{word} precipitation"):
        api_scan(p, EF, 2)
    with pytest.raises(ValueError, match=f"{word} precipitation"):
        api_step(p[4], EF, 2)


# ----------------------------------------------------------------------------- the writer

LAYOUT = Layout(Region(72, 770, 2, 3), dt.date(2016, 6, 9), dt.date(2016, 6, 30), 36, 8, 16)


def make_cube(root: Path, precip: bool = True, seed: int = 3) -> tuple[str, np.ndarray, np.ndarray]:
    url = str(root / "cube.zarr")
    create_cube(StoreRef(url), LAYOUT)
    cube = open_cube(url)
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    rng = np.random.default_rng(seed)
    land = (rng.random((ny, nx)) < 0.8).astype(np.uint8)
    store.write_region(StoreRef(url), xr.Dataset({"land_mask": (("y", "x"), land)},
                                                 coords={"y": cube["y"].values, "x": cube["x"].values}), cube)
    nt = cube.sizes["time_precip"]
    p = (rng.gamma(0.6, 5.0, (nt, ny, nx)) * (rng.random((nt, ny, nx)) < 0.6)).astype(np.float32)
    p[rng.random(p.shape) < 0.03] = np.nan
    p[14:20, :10, :10] = np.nan  # a long gap across the end of the spin-up (index 16)
    p[30:33, 40:, 50:] = np.nan  # a short gap across a daily chunk boundary (index 32)
    p[:, :3, :3] = np.nan  # a corner without any record (water or land)
    if precip:  # values over water too (a remapped product spills over the coast): the writer masks them
        store.write_region(StoreRef(url), xr.Dataset({"precip": (("time_precip", "y", "x"), p)},
                                                     coords={"time_precip": cube["time_precip"].values,
                                                             "y": cube["y"].values, "x": cube["x"].values}), cube)
    return url, p, land


def chunk_bytes(url: str) -> dict[str, bytes]:
    root = Path(url)
    return {str(f.relative_to(root)): f.read_bytes()
            for name in (*API_NAMES, "api_age") for f in sorted((root / name).rglob("*")) if f.is_file()}


def check_written(url: str, p: np.ndarray, land: np.ndarray, rain: RainConfig, summary: AntecedentSummary) -> None:
    want_api, want_age = reference(p.astype(np.float64), tuple(float(e) for e in API_EFOLDING_DAYS), rain.max_gap_days)
    spin = LAYOUT.precip_spinup
    cube = open_cube(url)
    water = land == 0
    for d, name in enumerate(API_NAMES):
        got = cube[name].values
        want = np.where(water, np.nan, want_api[d, spin:])
        np.testing.assert_array_equal(got, want)
        assert np.isnan(got[:, water]).all()
    want_age_days = np.where(water, 0, want_age[spin:])
    np.testing.assert_array_equal(cube["api_age"].values, want_age_days)
    settings = cube.attrs[ATTR]
    assert settings["efolding_days"] == list(API_EFOLDING_DAYS)
    assert (settings["spinup_days"], settings["max_gap_days"]) == (rain.spinup_days, rain.max_gap_days)
    assert "written" not in settings  # no time stamp: the same precipitation gives the same bytes
    on_land = np.isnan(want_api[0]) & (land == 1)
    assert summary.days == cube.sizes["time"] and summary.precip_days == cube.sizes["time_precip"]
    assert summary.cube_spinup_days == spin and summary.land_pixels == int(land.sum())
    assert summary.refused_pixel_days == int(on_land[spin:].sum()) > 0
    assert summary.restart_pixels == int(on_land.any(axis=0).sum()) > 0
    assert summary.flagged_pixel_days == int(((want_age_days < rain.spinup_days) & (land == 1)).sum()) > 0
    assert summary.missing_precip_days == int((~(np.isfinite(p) & (land == 1)).any(axis=(1, 2))).sum())
    assert summary.blocks == 3 * 2 * 3  # 3 time chunks x 2 x 3 blocks of 36


def test_write_antecedent_twice_identical(tmp_path: Path) -> None:
    url, p, land = make_cube(tmp_path)
    rain = RainConfig(spinup_days=12, max_gap_days=2)
    first = write_antecedent(StoreRef(url), rain)
    check_written(url, p, land, rain, first)
    before = chunk_bytes(url)
    assert before
    second = write_antecedent(StoreRef(url), rain)
    assert chunk_bytes(url) == before
    assert {k: v for k, v in second.to_dict().items() if k != "written"} == \
        {k: v for k, v in first.to_dict().items() if k != "written"}
    assert first.to_dict()["efolding_days"] == [2, 5, 15]


@pytest.mark.slow
@pytest.mark.cluster
def test_write_antecedent_on_cluster(tmp_path: Path, client) -> None:
    url, p, land = make_cube(tmp_path / "a")
    rain = RainConfig(spinup_days=20, max_gap_days=1)
    with get_task_stream(client) as stream:
        summary = write_antecedent(StoreRef(url), rain, client)
    check_written(url, p, land, rain, summary)
    # one task per spatial block (2 x 3 blocks of 36 pixels) scans the whole series and writes its chunks
    assert sorted(key_split(t["key"]) for t in stream.data) == ["scan_block"] * 6
    local_url, _, _ = make_cube(tmp_path / "b")
    write_antecedent(StoreRef(local_url), rain)
    assert chunk_bytes(local_url) == chunk_bytes(url)


def test_refuses_empty_precipitation(tmp_path: Path) -> None:
    url, _, _ = make_cube(tmp_path, precip=False)
    with pytest.raises(InputError, match="no precipitation values.*inputs.precip.*dsm ingest"):
        write_antecedent(StoreRef(url), RainConfig())
    assert ATTR not in open_cube(url).attrs
    assert not any(zarr.open_array(f"{url}/{n}", mode="r").nchunks_initialized for n in (*API_NAMES, "api_age"))


def test_refuses_precipitation_only_over_water(tmp_path: Path) -> None:
    url, _, land = make_cube(tmp_path, precip=False)
    cube = open_cube(url)
    p = np.full((cube.sizes["time_precip"], *land.shape), np.nan, np.float32)
    p[:, land == 0] = 1.0
    store.write_region(StoreRef(url), xr.Dataset({"precip": (("time_precip", "y", "x"), p)},
                                                 coords={d: cube[d].values for d in ("time_precip", "y", "x")}), cube)
    store.set_attrs(StoreRef(url), {ATTR: {"written": "an earlier run"}})
    with pytest.raises(InputError, match="no precipitation on land"):
        write_antecedent(StoreRef(url), RainConfig())
    assert ATTR not in open_cube(url).attrs  # the indices were rewritten: the earlier record is gone


def test_refuses_cube_without_precip_axis(tmp_path: Path) -> None:
    url = str(tmp_path / "old.zarr")
    old = Layout(LAYOUT.region, LAYOUT.start, LAYOUT.end, 36, 8)
    from dsm.cube import SCHEMA, template

    specs = [s for s in SCHEMA if s.axis != "precip" and not s.name.startswith("api")]
    store.create(StoreRef(url), template(old, specs), "cube")
    with pytest.raises(InputError, match="has no precipitation.*inputs.precip"):
        write_antecedent(StoreRef(url), RainConfig())
