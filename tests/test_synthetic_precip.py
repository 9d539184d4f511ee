"""The twin's 0.1 degree precipitation product: its grid, its block means and its errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from dsm.synthetic import TwinSpec, make_static, simulate
from dsm.synthetic_precip import (
    CELL_DEG,
    DETECTION_MM,
    ProductGrid,
    block_mean,
    observe,
    product_days,
)

SPEC = TwinSpec.of_size("tiny")


@pytest.fixture(scope="module")
def grid() -> ProductGrid:
    return ProductGrid.over(SPEC.region)


def test_grid_is_the_global_tenth_degree_grid_over_the_region(grid):
    r = SPEC.region
    lon0, lat0, lon1, lat1 = r.lonlat_bounds
    # centres on k * 0.1 + 0.05, north to south and west to east, one cell apart
    assert np.allclose((grid.lat - CELL_DEG / 2) / CELL_DEG, np.round((grid.lat - CELL_DEG / 2) / CELL_DEG))
    assert np.allclose(np.diff(grid.lat), -CELL_DEG) and np.allclose(np.diff(grid.lon), CELL_DEG)
    assert grid.lat[0] - CELL_DEG / 2 <= lat1 + 1e-9 and grid.lat[-1] + CELL_DEG / 2 >= lat0 - 1e-9
    # every 1 km pixel centre lies inside the cell it is assigned to
    flat, flon = r.fine_lat, r.fine_lon
    assert np.all(np.abs(flat - grid.lat[grid.row_of]) <= CELL_DEG / 2 + 1e-9)
    assert np.all(np.abs(flon - grid.lon[grid.col_of]) <= CELL_DEG / 2 + 1e-9)


def test_block_mean_averages_the_pixels_of_each_cell(grid):
    rng = np.random.default_rng(0)
    rain = rng.gamma(0.5, 4.0, SPEC.region.fine_shape).astype(np.float32)
    means = block_mean(rain, grid)
    i, j = 3, 4
    pixels = rain[np.ix_(grid.row_of == i, grid.col_of == j)]
    assert means[i, j] == pytest.approx(pixels.mean(), rel=1e-6)
    # a constant field stays constant; the pixel-weighted mean of the cells is the field's mean
    assert np.allclose(block_mean(np.full_like(rain, 2.5), grid), 2.5)
    counts = np.bincount((grid.row_of[:, None] * grid.shape[1] + grid.col_of[None, :]).ravel(),
                         minlength=grid.shape[0] * grid.shape[1]).reshape(grid.shape)
    assert np.nansum(means * counts) / counts.sum() == pytest.approx(rain.mean(), rel=1e-6)


def test_observe_errs_like_a_satellite_product():
    rng = np.random.default_rng(1)
    truth = np.where(rng.random((200, 200)) < 0.5, 0.0, rng.gamma(0.8, 8.0, (200, 200)))
    obs = observe(truth, rng)
    heavy = truth > 5.0
    # mean-one multiplicative error: unbiased on heavy rain, with spread
    assert np.mean(obs[heavy]) / np.mean(truth[heavy]) == pytest.approx(1.0, abs=0.05)
    assert np.std(np.log(obs[heavy] / truth[heavy])) == pytest.approx(0.4, abs=0.05)
    # small events are sometimes missed, dry cells sometimes report light rain
    small = (truth > 0) & (truth < DETECTION_MM)
    assert 0.25 < np.mean(obs[small] == 0) < 0.55
    assert 0.005 < np.mean(obs[truth == 0] > 0) < 0.04
    assert np.all(obs >= 0)
    assert np.isnan(observe(np.array([np.nan]), rng)).all()


def test_the_twin_product_follows_the_twin_rain(grid):
    rng_static = np.random.default_rng(SPEC.seed)
    static = make_static(SPEC.region, rng_static)
    days = [d for d, _ in zip(simulate(SPEC, static, rng_static), range(48))]
    product = product_days([d.rain for d in days], [d.date for d in days], grid, np.random.default_rng(5))
    assert product.dims == ("time", "lat", "lon") and product.attrs["units"] == "mm"
    assert product["time"].values[0] == np.datetime64(dt.date(2016, 6, 9), "ns")
    truth = np.stack([block_mean(d.rain, grid) for d in days])
    ok = np.isfinite(truth)
    assert truth[ok].max() > 5.0  # the tiny twin's summer has storms
    r = np.corrcoef(truth[ok], product.values[ok])[0, 1]
    assert 0.7 < r < 0.999
