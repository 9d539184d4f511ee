"""The synthetic twin: deterministic, plausible, and its truth kept out of the cube."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from dsm import cube, grid, store, synthetic
from dsm.storeref import StoreRef
from dsm.testing import make_synthetic_cube

pytestmark = pytest.mark.slow  # make test-fast leaves these out


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def loaded(tiny_twin):
    c = cube.open_cube(tiny_twin.cube).load()
    t = store.open_store(tiny_twin.truth, "truth").load()
    return c, t


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, tiny_twin):
    again = make_synthetic_cube(str(tmp_path / "again"), size="tiny", seed=7)
    first = _tree_digest(Path(tiny_twin.cube.url).parent)
    second = _tree_digest(Path(again.cube.url).parent)
    assert first.keys() == second.keys() and len(first) > 50
    assert first == second
    other = make_synthetic_cube(str(tmp_path / "other"), size="tiny", seed=8)
    third = _tree_digest(Path(other.cube.url).parent)
    changed = [k for k in first if k.endswith(("/0/0/0", "/0/0")) and first[k] != third.get(k)]
    assert len(changed) > 10


def test_the_truth_lives_only_in_its_own_store(tiny_twin, loaded):
    c, t = loaded
    assert "sm_true" not in c and c.attrs["dsm_store"] == "cube"
    assert t.attrs["dsm_store"] == "truth"
    with pytest.raises(Exception, match="dsm truth store, expected a dsm cube"):
        cube.open_cube(tiny_twin.truth)
    # no cube variable is the truth in disguise
    land = c["land_mask"].values == 1
    truth = t["sm_true"].values
    for name in ("lst", "albedo"):
        a = c[name].values[:, land]
        ok = np.isfinite(a)
        assert abs(np.corrcoef(a[ok], truth[:, land][ok])[0, 1]) < 0.95


def test_smap_is_the_block_mean_of_the_truth_plus_its_noise(loaded):
    c, t = loaded
    land = c["land_mask"].values == 1
    block = grid.block_reduce_mean(np.where(land, t["sm_true"].values, np.nan))
    smap = c["smap_sm"].values
    valid = np.isfinite(smap)
    assert 0.2 < valid.mean() < 0.8  # swath gaps
    resid = (smap - block)[valid]
    lo, hi = synthetic.SMAP_VALID
    inside = (smap[valid] > lo) & (smap[valid] < hi)
    assert abs(resid[inside].mean()) < 0.006
    assert 0.8 * synthetic.SMAP_NOISE < resid[inside].std() < 1.2 * synthetic.SMAP_NOISE
    assert np.all((smap[valid] >= lo) & (smap[valid] <= hi))


def test_lst_is_hotter_where_and_when_the_soil_is_drier(loaded):
    c, t = loaded
    land = c["land_mask"].values == 1
    lst = np.where(land, c["lst"].values, np.nan)
    truth = np.where(land, t["sm_true"].values, np.nan)
    per_day = []
    for i in range(lst.shape[0]):
        ok = np.isfinite(lst[i])
        if ok.sum() > 500:
            per_day.append(np.corrcoef(lst[i][ok], truth[i][ok])[0, 1])
    assert np.mean(per_day) < -0.3 and np.mean(np.array(per_day) < 0) > 0.8
    # clouds remove LST on a realistic share of land pixel-days
    cloudy = np.isnan(lst[:, land]).mean()
    assert 0.1 < cloudy < 0.6


def test_physical_ranges_and_soil_fractions(loaded):
    c, t = loaded
    land = c["land_mask"].values == 1
    assert 0.9 < land.mean() < 1.0  # a few lakes
    total = (c["sand"] + c["silt"] + c["clay"]).values[land]
    np.testing.assert_allclose(total, 100.0, atol=1e-3)
    truth = t["sm_true"].values
    assert np.isfinite(truth[:, land]).all() and np.isnan(truth[:, ~land]).all()
    assert truth[:, land].min() >= 0.01 and truth[:, land].max() <= 0.5
    for spec in cube.SCHEMA:
        if spec.name == "land_mask":
            continue
        v = c[spec.name].values
        v = v[np.isfinite(v)]
        assert v.size and v.min() >= spec.valid_range[0] and v.max() <= spec.valid_range[1], spec.name
    # the unexplained part: the truth varies within SMAP cells more than SMAP can show
    within = np.nanstd(np.where(land, truth, np.nan).reshape(truth.shape[0], 4, 36, 4, 36), axis=(2, 4))
    assert np.nanmean(within) > 0.01


def test_slope_and_aspect_come_from_the_dem(loaded):
    from dsm.terrain import ease_spacing, slope_aspect

    c, _ = loaded
    r = cube.layout_of(c).region
    dx, dy = ease_spacing(grid.CELL_1KM, r.fine_lat)
    slope, aspect = slope_aspect(c["dem"].values, dx, dy)
    np.testing.assert_array_equal(slope, c["slope"].values)
    np.testing.assert_array_equal(aspect, c["aspect"].values)
    assert 0.3 < np.median(slope) < 5.0


def test_composites_follow_the_product_rules(tiny_twin, loaded):
    c, _ = loaded
    spec = synthetic.TwinSpec.of_size("tiny", 7)
    first = [d for d, _ in zip(synthetic.simulate(spec), range(16))]
    nd = np.stack([np.where(d.clear, (d.bands[1] - d.bands[0]) / (d.bands[1] + d.bands[0]), -np.inf) for d in first])
    got = c["ndvi"].isel(time_16d=0).values
    land = c["land_mask"].values == 1
    np.testing.assert_allclose(got[land], nd.max(axis=0)[land], rtol=1e-5)  # maximum-value composite
    fv = np.stack([np.where(d.clear, d.fv, -np.inf) for d in first[:8]]).max(axis=0)
    fapar = c["fapar"].isel(time_8d=0).values
    seen = land & np.isfinite(fv)
    assert np.isnan(fapar[land & ~seen]).all()  # no clear day in the window: no value
    assert np.corrcoef(fv[seen], fapar[seen])[0, 1] > 0.99


def test_stations_sample_the_truth(tiny_twin, loaded):
    c, t = loaded
    insitu = pd.read_csv(tiny_twin.insitu_csv.url, parse_dates=["time"])
    weather = pd.read_csv(tiny_twin.weather_csv.url, parse_dates=["time"])
    assert list(insitu.columns) == ["station", "network", "lon", "lat", "depth", "time", "value"]
    assert insitu["station"].nunique() == 12 and weather["station"].nunique() == 6
    r = cube.layout_of(c).region
    for _, s in insitu.groupby("station"):
        row, col = r.pixel_of(s["lon"].values[:1], s["lat"].values[:1])
        assert row[0] >= 0 and c["land_mask"].values[row[0], col[0]] == 1
        truth = t["sm_true"].sel(time=s["time"].values).values[:, row[0], col[0]]
        assert np.corrcoef(truth, s["value"].values)[0, 1] > 0.7
        assert np.abs(s["value"].values - truth).mean() < 0.05
    assert weather["precip_mm"].min() >= 0 and weather["precip_mm"].max() > 1
    assert len(weather) == 6 * c.sizes["time"]


def test_twin_spec_sizes():
    default = synthetic.TwinSpec.of_size("default")
    assert default.region.coarse_shape == (8, 8) and default.region.fine_shape == (288, 288)
    assert (default.start, default.end) == (dt.date(2016, 1, 1), dt.date(2016, 12, 31))
    lon, lat = synthetic.TWIN_CENTRE
    lo0, la0, lo1, la1 = default.region.lonlat_bounds
    assert lo0 < lon < lo1 and la0 < lat < la1
    with pytest.raises(ValueError, match="huge"):
        synthetic.TwinSpec.of_size("huge")


@pytest.mark.s3
@pytest.mark.timeout(300)
def test_twin_writes_to_s3(s3, tiny_twin):
    bucket = s3.make_bucket("twin")
    stores = make_synthetic_cube(StoreRef(f"{bucket}/demo", s3.storage_options), size="tiny", seed=7)
    assert stores.insitu_csv == StoreRef(f"{bucket}/demo/stations/insitu.csv", s3.storage_options)
    remote = cube.open_cube(stores.cube)
    local = cube.open_cube(tiny_twin.cube)
    xr.testing.assert_identical(remote[["lst", "smap_sm", "ndvi"]].load(), local[["lst", "smap_sm", "ndvi"]].load())
    with s3.filesystem().open(stores.insitu_csv.url) as f:
        assert pd.read_csv(f).shape == pd.read_csv(tiny_twin.insitu_csv.url).shape


def test_demo_configurations_put_each_comparison_beside_the_default_run(tmp_path):
    from dsm.config import from_dict
    from dsm.twin import COMPARISONS, demo_config

    main = from_dict(demo_config("tiny", root=str(tmp_path), compare=True))
    assert main.training.method == "fusion" and main.rain.predictors == "auto"
    assert main.validation.compare == {label: f"{tmp_path}/{key}/sm.zarr" for key, (label, _) in COMPARISONS.items()}
    paper = from_dict(demo_config("tiny", root=str(tmp_path), comparison="rao2022"))
    dry = from_dict(demo_config("tiny", root=str(tmp_path), comparison="no-rain"))
    assert paper.training.method == "rao2022" and dry.training.method == "fusion"
    assert dry.rain.predictors == "off" and paper.rain.predictors == "auto"
    for key, cfg in (("rao2022", paper), ("no-rain", dry)):
        assert cfg.stores.cube == main.stores.cube and cfg.stores.truth == main.stores.truth  # one twin
        assert cfg.stores.output == main.validation.compare[COMPARISONS[key][0]]
        assert cfg.stores.models == f"{tmp_path}/{key}/models" and cfg.stores.cog is None
        assert cfg.run.stages == ("cube", "train", "predict")
    with pytest.raises(ValueError, match="not one of"):
        demo_config("tiny", comparison="bogus")
