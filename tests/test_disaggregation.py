"""The disaggregation model: objective against finite differences, recovery of a pixel-level
pattern from cell means, the pixel sample table against the cube, and the model round trip."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import xgboost
from dask.delayed import Delayed

from dsm.cube import open_cube
from dsm.models.disaggregation import (
    cell_mean_loss,
    cell_mean_objective,
    fit_disaggregation,
    pixel_sample_graph,
)
from dsm.models.store import from_bytes, to_bytes

DAYS = [dt.date(2016, 6, 9) + dt.timedelta(days=i) for i in range(20)]
FEATURES = ["lst", "lai", "ndvi", "dem", "aspect_sin", "aspect_cos", "doy_sin", "doy_cos"]


# ------------------------------------------------------------------------------- objective
def _problem(rng: np.random.Generator, n_groups: int = 7):
    sizes = rng.integers(1, 7, n_groups)
    groups = rng.permutation(np.repeat(np.arange(n_groups), sizes))
    target = rng.uniform(0.1, 0.4, n_groups)
    pred = target[groups] + rng.normal(0.0, 0.05, groups.size)
    return pred, groups, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_and_hessian_match_finite_differences(seed):
    pred, groups, target = _problem(np.random.default_rng(seed))
    grad, hess = cell_mean_objective(groups, target)(pred.copy(), None)
    h = 1e-4
    fd_grad, fd_hess = np.empty_like(pred), np.empty_like(pred)
    base = cell_mean_loss(pred, groups, target)
    for i in range(pred.size):
        up, down = pred.copy(), pred.copy()
        up[i] += h
        down[i] -= h
        lu, ld = cell_mean_loss(up, groups, target), cell_mean_loss(down, groups, target)
        fd_grad[i] = (lu - ld) / (2 * h)
        fd_hess[i] = (lu - 2 * base + ld) / h**2
    np.testing.assert_allclose(grad, fd_grad, rtol=1e-5, atol=1e-12)
    # second differences lose ~eps * L / h^2 ~ 1e-9 to rounding: rtol 1e-4 on values >= 1/36
    np.testing.assert_allclose(hess, fd_hess, rtol=1e-4)


def test_bound_hessian_majorises_the_loss():
    rng = np.random.default_rng(3)
    pred, groups, target = _problem(rng)
    grad, hess = cell_mean_objective(groups, target, hessian="bound")(pred, None)
    _, diag = cell_mean_objective(groups, target)(pred, None)
    assert np.all(hess >= diag) and np.any(hess > diag)
    base = cell_mean_loss(pred, groups, target)
    for _ in range(50):
        d = rng.normal(0.0, 0.2, pred.size)
        assert cell_mean_loss(pred + d, groups, target) <= base + grad @ d + 0.5 * hess @ d**2 + 1e-12


def test_groups_out_of_range_are_refused():
    with pytest.raises(ValueError, match="indices"):
        cell_mean_objective(np.array([0, 1, 3]), np.zeros(3))


# ------------------------------------------------------------------------------- fitting
def _truth(X: np.ndarray) -> np.ndarray:
    return 0.25 + 0.08 * np.sin(2.0 * X[:, 0]) + 0.05 * X[:, 1] - 0.03 * np.abs(X[:, 2])


def _within(v: np.ndarray, groups: np.ndarray) -> np.ndarray:
    counts = np.bincount(groups)
    return v - (np.bincount(groups, weights=v) / counts)[groups]


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(11)
    n_groups = 250
    sizes = rng.integers(20, 49, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    X = rng.normal(size=(groups.size, 3))
    X[:, 0] += 1.5 * rng.normal(size=n_groups)[groups]  # cells differ in their feature mix
    truth = _truth(X)
    target = np.bincount(groups, weights=truth) / sizes + rng.normal(0.0, 1e-3, n_groups)
    table = pd.DataFrame({"date": pd.Timestamp("2016-06-09"), "cell": groups,
                          **{f"f{i}": X[:, i].astype(np.float32) for i in range(3)},
                          "sm": target[groups].astype(np.float32)})
    params = {"max_depth": 4, "eta": 1.0, "subsample": 1.0, "min_child_weight": 0.5, "lambda": 0.0}
    model, card = fit_disaggregation(table, ["f0", "f1", "f2"], params, n_rounds=150, seed=0)
    return table, groups, truth, target, model, card


def test_fit_recovers_the_pixel_pattern(synthetic):
    table, groups, truth, target, model, card = synthetic
    X = table[["f0", "f1", "f2"]].to_numpy(np.float32)
    pred = model.predict(X).astype(np.float64)
    r = np.corrcoef(_within(pred, groups), _within(truth, groups))[0, 1]
    assert r > 0.8
    means = np.bincount(groups, weights=pred) / np.bincount(groups)
    rmse = np.sqrt(np.mean((means - target) ** 2))
    rmse_const = np.sqrt(np.mean((target.mean() - target) ** 2))
    assert rmse < 0.25 * rmse_const
    assert card["loss_end"] == pytest.approx(cell_mean_loss(pred, groups, target), rel=1e-4)
    assert card["loss_start"] == pytest.approx(cell_mean_loss(np.full(len(X), target.mean()), groups, target))
    assert card["n_groups"] == len(target) and card["n_pixels"] == len(X)


def test_bound_training_loss_never_rises(synthetic):
    losses = np.asarray(synthetic[5]["loss_per_round"])
    assert len(losses) == 151
    assert np.all(np.diff(losses) <= 1e-6 * losses[0])
    assert losses[-1] < 0.05 * losses[0]


def test_model_round_trips_through_the_store(synthetic):
    table, *_, model, _card = synthetic
    X = table[["f0", "f1", "f2"]].to_numpy(np.float32)
    raw, name, fmt = to_bytes(model)
    assert name == "model.json"
    again = from_bytes(raw, fmt)
    assert isinstance(again, xgboost.XGBRegressor)
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    np.testing.assert_array_equal(model.predict(X), model.get_booster().predict(xgboost.DMatrix(X)))


def test_objective_param_is_refused(synthetic):
    with pytest.raises(ValueError, match="objective"):
        fit_disaggregation(synthetic[0], ["f0"], {"objective": "reg:squarederror"}, 1)


# ------------------------------------------------------------------------------- pixel table
@pytest.fixture(scope="module")
def cube(tiny_twin):
    return open_cube(tiny_twin.cube)


@pytest.fixture(scope="module")
def loaded(cube):
    """The cube in memory, for the independent look-ups."""
    return cube.compute()


@pytest.fixture(scope="module")
def pixels(cube):
    graph = pixel_sample_graph(cube, DAYS, FEATURES, pixels_per_cell=40, seed=5)
    assert isinstance(graph, Delayed)
    return graph.compute(scheduler="sync")


def _fine(cube, name: str, day: dt.date) -> np.ndarray:
    """The 1 km layer of ``name`` on ``day``, looked up without dsm.samples."""
    v = cube[name]
    for axis in ("time", "time_8d", "time_16d"):
        if axis in v.dims:
            starts = pd.DatetimeIndex(cube[axis].values)
            return v.isel({axis: int(np.searchsorted(starts, pd.Timestamp(day), side="right") - 1)}).values
    return v.values


def _expected_cell_days(cube, frac: float) -> dict[tuple[pd.Timestamp, int], int]:
    """(day, cell) -> number of valid pixels, by direct loops over the loaded cube."""
    r = cube.attrs["region"]
    land = cube["land_mask"].values == 1
    out = {}
    for day in DAYS:
        ok = land.copy()
        for p in ("lst", "lai", "ndvi", "dem", "aspect"):
            ok &= np.isfinite(_fine(cube, p, day))
        sm = cube["smap_sm"].sel(time=np.datetime64(day, "ns")).values
        for i in range(r["nrows"]):
            for j in range(r["ncols"]):
                n = int(ok[i * 36:(i + 1) * 36, j * 36:(j + 1) * 36].sum())
                if np.isfinite(sm[i, j]) and n > 0 and n >= frac * 1296:
                    out[(pd.Timestamp(day), (r["row0"] + i) * 964 + r["col0"] + j)] = n
    return out


def test_pixel_table_cell_days_and_counts(loaded, pixels):
    expect = _expected_cell_days(loaded, 0.5)
    assert 0 < len(expect) < 20 * 16  # the twin has SMAP gaps or cloudy cells
    sizes = pixels.groupby(["date", "cell"]).size()
    assert {(pd.Timestamp(d), int(c)) for d, c in sizes.index} == set(expect)
    for (d, c), n in sizes.items():
        assert n == min(40, expect[(pd.Timestamp(d), int(c))])
    assert list(pixels.columns) == ["date", "cell", "group", "fine_row", "fine_col", *FEATURES, "sm"]
    assert all(pixels[f].dtype == np.float32 for f in (*FEATURES, "sm"))
    # group numbers the cell-days 0..G-1 by date then cell
    first = pixels.groupby("group")[["date", "cell"]].first()
    assert list(first.index) == list(range(len(expect)))
    assert first.apply(tuple, axis=1).tolist() == sorted(first.apply(tuple, axis=1).tolist())
    assert not pixels.duplicated(["date", "fine_row", "fine_col"]).any()
    assert ((pixels["fine_row"] // 36) * 964 + pixels["fine_col"] // 36 == pixels["cell"]).all()


def test_pixel_values_equal_the_cube(loaded, pixels):
    cube = loaded
    r = cube.attrs["region"]
    land = cube["land_mask"].values
    rows = pixels.sample(25, random_state=0).to_dict("records")
    for rec in rows:
        day = pd.Timestamp(rec["date"]).date()
        y, x = rec["fine_row"] - r["row0"] * 36, rec["fine_col"] - r["col0"] * 36
        assert land[y, x] == 1
        for p in ("lst", "lai", "ndvi", "dem"):
            assert rec[p] == pytest.approx(float(_fine(cube, p, day)[y, x]), rel=1e-6), p
        aspect = np.deg2rad(float(_fine(cube, "aspect", day)[y, x]))
        assert rec["aspect_sin"] == pytest.approx(np.sin(aspect), abs=1e-6)
        assert rec["aspect_cos"] == pytest.approx(np.cos(aspect), abs=1e-6)
        angle = 2 * np.pi * day.timetuple().tm_yday / 365.25
        assert rec["doy_sin"] == pytest.approx(np.sin(angle), abs=1e-6)
        assert rec["doy_cos"] == pytest.approx(np.cos(angle), abs=1e-6)
        i, j = (rec["fine_row"] // 36) - r["row0"], (rec["fine_col"] // 36) - r["col0"]
        assert rec["sm"] == float(cube["smap_sm"].sel(time=np.datetime64(day, "ns")).values[i, j])


def test_pixel_sample_is_deterministic_and_chunk_free(cube, pixels):
    again = pixel_sample_graph(cube, DAYS, FEATURES, pixels_per_cell=40, seed=5).compute(scheduler="sync")
    pd.testing.assert_frame_equal(again, pixels)
    rechunked = cube.chunk({"time": 5, "y": 36, "x": 108, "cy": 1, "cx": 3})
    other = pixel_sample_graph(rechunked, DAYS, FEATURES, pixels_per_cell=40, seed=5).compute(scheduler="sync")
    pd.testing.assert_frame_equal(other, pixels)
    reseeded = pixel_sample_graph(cube, DAYS, FEATURES, pixels_per_cell=40, seed=6).compute(scheduler="sync")
    assert len(reseeded) == len(pixels)
    key = ["date", "fine_row", "fine_col"]
    assert not reseeded[key].equals(pixels[key])


def test_pixel_table_respects_the_valid_fraction(cube, loaded):
    table = pixel_sample_graph(cube, DAYS, ["lst", "dem"], pixels_per_cell=3, seed=0,
                               min_valid_fraction=0.95).compute(scheduler="sync")
    counts = table.groupby(["date", "cell"]).size()
    assert 0 < len(counts) < len(_expected_cell_days(loaded, 0.5))
    assert (counts <= 3).all()
    r = loaded.attrs["region"]
    land = loaded["land_mask"].values == 1
    for d, c in counts.index[:10]:
        i, j = c // 964 - r["row0"], c % 964 - r["col0"]
        ok = land & np.isfinite(_fine(loaded, "lst", pd.Timestamp(d).date())) & np.isfinite(_fine(loaded, "dem", None))
        assert ok[i * 36:(i + 1) * 36, j * 36:(j + 1) * 36].sum() >= 0.95 * 1296


def test_empty_days_and_missing_predictors(cube):
    empty = pixel_sample_graph(cube, [], FEATURES).compute(scheduler="sync")
    assert len(empty) == 0 and "aspect_sin" in empty.columns
    with pytest.raises(Exception, match="lst"):
        pixel_sample_graph(cube.drop_vars("lst"), DAYS, FEATURES)


def test_fit_on_the_pixel_table(pixels):
    features = ["lst", "lai", "ndvi", "dem", "aspect_sin", "aspect_cos"]
    model, card = fit_disaggregation(pixels, features, {"max_depth": 3, "eta": 0.5}, n_rounds=20)
    assert card["n_groups"] == pixels["group"].nunique()
    assert card["loss_end"] < card["loss_start"]
    assert model.predict(pixels[features].to_numpy(np.float32)).shape == (len(pixels),)
