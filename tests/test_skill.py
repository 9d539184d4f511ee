"""The twin skill summary: baselines, within-cell and temporal scores, stations, coverage, on
constructed stores (products built from the tiny twin's truth), checked against direct numpy."""

from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed.diagnostics.plugin import SchedulerPlugin

from dsm import ledger, products, store
from dsm.cube import Layout, open_cube
from dsm.errors import ConfigError, StoreError
from dsm.grid import FINE_PER_COARSE, Region
from dsm.skill import (
    MIN_CELL_PIXELS,
    MIN_PIXEL_DAYS,
    MIN_STATION_DAYS,
    bilinear,
    format_table,
    read_twin_stations,
    repeat,
    skill,
    station_pixels,
    station_scores,
    write_skill,
)
from dsm.skill_sums import MapScores, PixelSums, ScoreSums
from dsm.storeref import StoreRef

REGION = Region(74, 772, 4, 4)
F = FINE_PER_COARSE


def test_bilinear_and_repeat():
    c = np.array([[0.1, 0.2], [0.3, 0.4]], np.float32)
    r = repeat(c)
    assert r.shape == (72, 72) and r[0, 0] == pytest.approx(0.1) and r[71, 71] == pytest.approx(0.4)
    b = bilinear(c)
    assert b.shape == (72, 72)
    assert b[0, 0] == pytest.approx(0.1) and b[71, 71] == pytest.approx(0.4)  # edges held
    assert b[35:37, 35:37].mean() == pytest.approx(0.25, abs=1e-6)  # between the four centres
    ramp = np.arange(4, dtype=np.float32)[None, :].repeat(3, 0)  # linear in x: reproduced between centres
    bx = bilinear(ramp)
    x = (np.arange(144) + 0.5) / 36 - 0.5
    inside = (x >= 0) & (x <= 3)
    np.testing.assert_allclose(bx[50, inside], x[inside], atol=1e-6)
    holes = c.copy()
    holes[0, 1] = np.nan  # a missing neighbour is left out, not spread
    bh = bilinear(holes)
    assert np.isnan(bh[:36, 36:]).all() and np.isfinite(bh[36:]).all() and np.isfinite(bh[:36, :36]).all()
    assert bh[35, 35] == pytest.approx(np.nanmean([0.1, 0.3, 0.4]), abs=0.02)


# ------------------------------------------------------------------------------ helpers

@pytest.fixture(scope="module")
def twin(tiny_twin):
    cube = open_cube(tiny_twin.cube)
    truth = store.open_store(tiny_twin.truth, "truth")
    smap = cube["smap_sm"].values.astype(np.float32)
    return {"stores": tiny_twin, "truth": truth["sm_true"].values.astype(np.float32),
            "land": cube["land_mask"].values == 1, "smap": smap, "times": cube["time"].values,
            "x": cube["x"].values, "y": cube["y"].values}


def make_product(path, sm, unc=None, origin=None, days=None, interval=0.9):
    """A products store on the tiny twin's grid holding ``sm`` (read back: int16 packing): its
    location and ``sm`` as stored."""
    ref = StoreRef(str(path))
    layout = Layout(REGION, dt.date(2016, 6, 9), dt.date(2016, 7, 26), 72, 8)
    products.create_products(ref, layout, interval)
    out = products.open_products(ref)
    arrays = {"sm": (("time", "y", "x"), sm.astype(np.float32)),
              "sm_unc": (("time", "y", "x"), (np.full_like(sm, 0.01) if unc is None else unc).astype(np.float32))}
    if origin is not None:
        arrays["sm_origin"] = (("time", "y", "x"), origin.astype(products.ORIGIN_DTYPE))
    part = xr.Dataset(arrays, coords={"time": out["time"].values, "y": out["y"].values, "x": out["x"].values})
    store.write_region(ref, part, out)
    all_days = [str(d)[:10] for d in out["time"].values]
    done = all_days if days is None else [all_days[i] for i in days]
    ledger.write_days(ref, {d: ledger.DayRecord(done=True) for d in done})
    return ref, products.open_products(ref)["sm"].values.astype(np.float32)


def basic(x, y):
    e = x - y
    return {"n": x.size, "rmse": np.sqrt(np.mean(e**2)), "r": np.corrcoef(x, y)[0, 1], "bias": e.mean(),
            "ubrmse": np.sqrt(np.mean((e - e.mean()) ** 2))}


def cell_days(x, y, mask):
    """(day, cell) -> x and y over the masked pixels, cells with >= MIN_CELL_PIXELS pixels."""
    for t in range(x.shape[0]):
        for i in range(x.shape[1] // F):
            for j in range(x.shape[2] // F):
                s = (t, slice(i * F, (i + 1) * F), slice(j * F, (j + 1) * F))
                m = mask[s]
                if m.sum() >= MIN_CELL_PIXELS:
                    yield x[s][m].astype(np.float64), y[s][m].astype(np.float64)


def direct_cell_r(x, y, mask):
    rs = [np.corrcoef(a, b)[0, 1] for a, b in cell_days(x, y, mask) if a.std() > 1e-6 and b.std() > 1e-6]
    return np.mean(rs) if rs else None


def direct_cell_split(x, y, mask):
    e_cell, anom = [], []
    for a, b in cell_days(x, y, mask):
        e_cell.append(a.mean() - b.mean())
        anom.append((a - a.mean()) - (b - b.mean()))
    anom = np.concatenate(anom)
    return np.sqrt(np.mean(np.square(e_cell))), np.sqrt(np.mean(anom**2)), np.array(e_cell), anom


def direct_temporal_r(x, y, mask, check=60):
    """Per-pixel temporal R (centred two-pass sums), pixels with >= MIN_PIXEL_DAYS days and both
    series varying; ``check`` of the pixels are also compared with np.corrcoef."""
    n = mask.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = np.where(mask, x - np.where(mask, x, 0).sum(0, dtype=np.float64) / n, 0.0)
        dy = np.where(mask, y - np.where(mask, y, 0).sum(0, dtype=np.float64) / n, 0.0)
        vx, vy = (dx * dx).sum(0), (dy * dy).sum(0)
        r = (dx * dy).sum(0) / np.sqrt(vx * vy)
    ok = (n >= MIN_PIXEL_DAYS) & (vx / np.maximum(n, 1) > 1e-12) & (vy / np.maximum(n, 1) > 1e-12)
    pix = np.argwhere(ok)
    for i, j in pix[np.random.default_rng(0).choice(len(pix), min(check, len(pix)), replace=False)]:
        m = mask[:, i, j]
        assert r[i, j] == pytest.approx(np.corrcoef(x[m, i, j], y[m, i, j])[0, 1], abs=1e-9)
    return r[ok]


def direct_anomaly_cell_r(x, y, mask):
    n = mask.sum(0)
    keep = n >= MIN_PIXEL_DAYS
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(mask, x, 0).sum(0) / n
        my = np.where(mask, y, 0).sum(0) / n
    return direct_cell_r(x - mx, y - my, mask & keep[None])


# ------------------------------------------------------------------------------ tests

@pytest.mark.timeout(120)
def test_perfect_product_scores_perfectly_and_baselines_do_not(twin, tmp_path):
    t, land = twin["truth"], twin["land"]
    url, _ = make_product(tmp_path / "sm.zarr", t)
    res = skill(url, twin["stores"].truth, twin["stores"].cube)  # a single store: the label "product"
    assert res["maps"] == ["product"] and res["stations"] is None
    s = res["scores"]
    assert set(s) == {"product", "smap_repeat", "smap_bilinear", "product_all"}
    p = s["product"]
    assert p["rmse"] < 1e-4 and p["r"] > 0.9999 and p["cell_r"] > 0.9999
    assert p["rmse_cell_mean"] < 1e-4 and p["rmse_anomaly"] < 1e-4
    assert p["temporal_r_median"] > 0.9999 and p["anomaly_cell_r"] > 0.9999
    assert s["product_all"]["n"] > p["n"] > 0  # product_all also covers days without SMAP
    assert s["smap_repeat"]["cell_r"] is None and s["smap_repeat"]["anomaly_cell_r"] is None
    assert s["smap_repeat"]["rmse"] > 0.01 and s["smap_bilinear"]["cell_r"] < 0.9
    assert s["smap_repeat"]["n"] == s["smap_bilinear"]["n"] == p["n"]
    assert s["product_all"]["n"] == int(np.isfinite(t[:, land]).sum())
    c = res["coverage"]["product"]
    assert c["empirical"] == pytest.approx(1.0) and c["nominal"] == 0.9 and c["n"] == s["product_all"]["n"]
    write_skill(res, StoreRef(str(tmp_path / "skill.json")))
    assert json.loads((tmp_path / "skill.json").read_text())["days"] == 48
    table = format_table(res)
    lines = table.splitlines()
    for k in ("product", "smap_repeat", "smap_bilinear", "product_all"):
        assert sum(line.split()[0] == k for line in lines if line.strip()) == 1
    assert "RMSE cm" in lines[0] and "an. cell R" in lines[0] and "product_rc" not in table
    assert "—" in table and "nominal 90 %" in table


@pytest.fixture(scope="module")
def three(twin, tmp_path_factory):
    """Three products on the tiny twin and the direct numpy view of their common pixel-days."""
    t, land, smap = twin["truth"], twin["land"], twin["smap"]
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("three")
    noisy_in = np.clip(t + rng.normal(0, 0.02, t.shape), 0.001, None).astype(np.float32)
    offset = repeat(rng.uniform(0.0, 0.05, (1, 4, 4))).astype(np.float32)  # a constant per cell
    cellc_in = t + offset
    cellc_in[:, :5, :] = np.nan  # some pixels the other products have: the common set shrinks
    static_in = t.copy()
    west = t[:, :, :72]
    with np.errstate(invalid="ignore", divide="ignore"):  # water pixels: no truth, NaN
        static_in[:, :, :72] = np.nansum(west, 0) / np.isfinite(west).sum(0)  # constant in time in the west
    days = list(range(0, 45))  # the noisy product misses the last 3 days: the intersection is 45 days
    noisy_url, noisy = make_product(root / "noisy.zarr", noisy_in, days=days)
    cellc_url, cellc = make_product(root / "cellc.zarr", cellc_in)
    static_url, static = make_product(root / "static.zarr", static_in)
    res = skill({"noisy": noisy_url, "cellc": cellc_url, "static": static_url},
                twin["stores"].truth, twin["stores"].cube)
    sl = slice(0, 45)
    t, smap = t[sl], smap[sl]
    maps = {"noisy": noisy[sl], "cellc": cellc[sl], "static": static[sl],
            "smap_repeat": repeat(smap), "smap_bilinear": bilinear(smap)}
    common = land[None] & np.isfinite(t)
    for v in maps.values():
        common &= np.isfinite(v)
    return {"res": res, "maps": maps, "t": t, "common": common, "land": land,
            "urls": {"noisy": noisy_url, "cellc": cellc_url, "static": static_url},
            "full": {"noisy": noisy, "truth": twin["truth"], "smap": twin["smap"]}}


def test_common_pixel_days_and_basic_scores_match_numpy(three):
    res, maps, t, common = three["res"], three["maps"], three["t"], three["common"]
    assert res["maps"] == ["noisy", "cellc", "static"] and res["days"] == 45
    s = res["scores"]
    assert set(s) == {"noisy", "cellc", "static", "smap_repeat", "smap_bilinear", "noisy_all", "cellc_all",
                      "static_all"}
    for k, x in maps.items():
        d = basic(x[common].astype(np.float64), t[common].astype(np.float64))
        assert s[k]["n"] == d["n"] == int(common.sum())
        for m in ("rmse", "r", "bias", "ubrmse"):
            assert s[k][m] == pytest.approx(d[m], rel=1e-6, abs=1e-9), (k, m)
        assert s[k]["smap_days"]["n"] == d["n"] and s[k]["smap_days"]["rmse"] == pytest.approx(d["rmse"])
    assert s["noisy"]["cell_r"] == pytest.approx(direct_cell_r(maps["noisy"], t, common), rel=1e-6)
    assert s["smap_bilinear"]["cell_r"] == pytest.approx(direct_cell_r(maps["smap_bilinear"], t, common), rel=1e-6)
    # _all: each product on its own pixel-days (all 45 days, SMAP or not)
    own = three["land"][None] & np.isfinite(t) & np.isfinite(maps["cellc"])
    assert s["cellc_all"]["n"] == int(own.sum()) > s["cellc"]["n"]
    assert s["cellc_all"]["rmse"] == pytest.approx(basic(maps["cellc"][own], t[own])["rmse"], rel=1e-6)
    # seasons: June and July only
    assert set(s["noisy"]["seasons"]) == {"JJA"}
    assert s["noisy"]["seasons"]["JJA"]["n"] == s["noisy"]["n"]
    assert s["noisy"]["seasons"]["JJA"]["rmse"] == pytest.approx(s["noisy"]["rmse"])


def test_cell_mean_and_anomaly_split(three):
    res, maps, t, common = three["res"], three["maps"], three["t"], three["common"]
    s = res["scores"]
    for k in ("noisy", "cellc", "smap_repeat", "smap_bilinear"):
        cm, an, e_cell, anom = direct_cell_split(maps[k], t, common)
        assert s[k]["rmse_cell_mean"] == pytest.approx(cm, rel=1e-5), k
        assert s[k]["rmse_anomaly"] == pytest.approx(an, rel=1e-5), k
    # a map = truth + a constant per cell: all its error is in the cell means
    assert s["cellc"]["rmse_anomaly"] < 1e-4 and s["cellc"]["rmse_cell_mean"] > 0.005
    assert s["cellc"]["anomaly_cell_r"] > 0.9999 and s["cellc"]["cell_r"] > 0.9999
    # the pixel-weighted split is exact: sum of squared errors = sum_c n_c e_c^2 + sum anomaly^2
    cm, an, e_cell, anom = direct_cell_split(maps["noisy"], t, common)
    n_c = np.array([a.size for a, _ in cell_days(maps["noisy"], t, common)])
    sse = sum(((a - b) ** 2).sum() for a, b in cell_days(maps["noisy"], t, common))
    assert sse == pytest.approx((n_c * e_cell**2).sum() + (anom**2).sum(), rel=1e-9)
    assert s["noisy"]["rmse"] ** 2 == pytest.approx(cm**2 + an**2, rel=0.05)  # up to the weighting


def test_temporal_r_and_anomaly_cell_r(three):
    res, maps, t, common = three["res"], three["maps"], three["t"], three["common"]
    s = res["scores"]
    for k in ("noisy", "smap_repeat"):
        rs = direct_temporal_r(maps[k], t, common)
        assert s[k]["temporal_r_pixels"] == rs.size > 1000
        assert s[k]["temporal_r_median"] == pytest.approx(np.median(rs), rel=1e-6)
        assert s[k]["temporal_r_mean"] == pytest.approx(rs.mean(), rel=1e-6)
    # constant in time on the western half: those pixels have no temporal R and are left out
    rs_static = direct_temporal_r(maps["static"], t, common)
    n_east = int(((common.sum(0) >= MIN_PIXEL_DAYS) & (np.arange(144) >= 72)[None, :]).sum())
    assert s["static"]["temporal_r_pixels"] == rs_static.size == n_east
    assert s["static"]["temporal_r_median"] > 0.9999  # the eastern half is the truth
    for k in ("noisy", "smap_bilinear", "static"):
        assert s[k]["anomaly_cell_r"] == pytest.approx(direct_anomaly_cell_r(maps[k], t, common), rel=1e-6), k
    assert s["noisy"]["anomaly_cell_r"] < s["cellc"]["anomaly_cell_r"]


def test_other_days_are_the_products_own_days_without_smap(three):
    res, full = three["res"], three["full"]
    s = res["scores"]
    t, x, smap = full["truth"][:45], full["noisy"][:45], full["smap"][:45]
    no_smap = np.isnan(repeat(smap))
    other = three["land"][None] & np.isfinite(t) & np.isfinite(x) & no_smap
    assert other.sum() > 1000
    d = basic(x[other], t[other])
    assert s["noisy"]["other_days"]["n"] == s["noisy_all"]["other_days"]["n"] == d["n"]
    assert s["noisy"]["other_days"]["rmse"] == pytest.approx(d["rmse"], rel=1e-6)
    rs = direct_temporal_r(x, t, other)
    assert s["noisy"]["other_days"]["temporal_r_median"] == pytest.approx(np.median(rs), rel=1e-6)
    assert s["smap_repeat"]["other_days"] is None and s["smap_bilinear"]["other_days"] is None
    mine = three["land"][None] & np.isfinite(t) & np.isfinite(x) & ~no_smap
    assert s["noisy_all"]["smap_days"]["n"] == int(mine.sum())
    assert s["noisy_all"]["n"] == s["noisy_all"]["smap_days"]["n"] + s["noisy_all"]["other_days"]["n"]


def test_seasons_split_by_month():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.1, 0.4, (4, 36, 36))
    x = y + rng.normal(0, 0.01, y.shape) * np.array([1, 1, 3, 3])[:, None, None]
    mask = np.ones(y.shape, bool)
    sc = MapScores((36, 36))
    sc.add(x, y, mask, np.array([5, 5, 6, 6]))
    res = sc.result()
    assert set(res["seasons"]) == {"MAM", "JJA"}
    for season, days in (("MAM", [0, 1]), ("JJA", [2, 3])):
        assert res["seasons"][season]["n"] == 2 * 36 * 36
        assert res["seasons"][season]["rmse"] == pytest.approx(np.sqrt(np.mean((x[days] - y[days]) ** 2)))
        assert res["seasons"][season]["cell_r"] == pytest.approx(direct_cell_r(x[days], y[days], mask[days]))


def test_pixel_temporal_r_needs_days_and_variation():
    rng = np.random.default_rng(1)
    nt = MIN_PIXEL_DAYS + 2
    y = rng.uniform(0.1, 0.4, (nt, 36, 36))
    x = y + rng.normal(0, 0.05, y.shape)
    x[:, :, 30:] = 0.3 + 1e-8 * rng.normal(size=(nt, 36, 6))  # constant up to float noise
    mask = np.ones(y.shape, bool)
    mask[3:, 20:25, :] = False  # 3 days: too few
    mask[: nt - MIN_PIXEL_DAYS, 25:30, :] = False  # exactly MIN_PIXEL_DAYS days: kept
    acc = PixelSums((36, 36))
    acc.add(x[:5], y[:5], mask[:5])  # two time chunks
    acc.add(x[5:], y[5:], mask[5:])
    r = acc.r()
    assert np.isnan(r[20:25]).all() and np.isnan(r[:, 30:]).all()
    for i, j in ((0, 0), (10, 29), (27, 3), (35, 29)):
        m = mask[:, i, j]
        assert r[i, j] == pytest.approx(np.corrcoef(x[m, i, j], y[m, i, j])[0, 1], abs=1e-9)
    res = acc.result()
    assert res["temporal_r_pixels"] == int(np.isfinite(r).sum()) == 31 * 30
    assert res["temporal_r_median"] == pytest.approx(np.median(r[np.isfinite(r)]))


def test_small_cells_are_left_out_of_the_cell_scores():
    rng = np.random.default_rng(6)
    y = rng.uniform(0.1, 0.4, (1, 36, 72))
    x = y + rng.normal(0, 0.02, y.shape)
    x[:, :, 36:] = rng.uniform(0.1, 0.4, (1, 36, 36)) + 0.1  # the second cell: unrelated and biased
    mask = np.ones(y.shape, bool)
    mask[:, :, 36:] = False
    assert MIN_CELL_PIXELS == 30
    mask[:, :5, 36:42] = True  # 30 pixels: kept
    acc = ScoreSums()
    acc.add(x, y, mask)
    a, b = x[0, :, :36].ravel(), y[0, :, :36].ravel()
    a2, b2 = x[0, :5, 36:42].ravel(), y[0, :5, 36:42].ravel()
    res = acc.result()
    assert res["cell_r"] == pytest.approx((np.corrcoef(a, b)[0, 1] + np.corrcoef(a2, b2)[0, 1]) / 2)
    e1, e2 = a.mean() - b.mean(), a2.mean() - b2.mean()
    assert res["rmse_cell_mean"] == pytest.approx(np.sqrt((e1**2 + e2**2) / 2))
    mask[:, 4, 41] = False  # 29 pixels: the second cell no longer counts
    acc = ScoreSums()
    acc.add(x, y, mask)
    res = acc.result()
    assert res["cell_r"] == pytest.approx(np.corrcoef(a, b)[0, 1]) and res["cell_r_pairs"] == 1
    assert res["rmse_cell_mean"] == pytest.approx(abs(a.mean() - b.mean()))
    anom = (a - a.mean()) - (b - b.mean())
    assert res["rmse_anomaly"] == pytest.approx(np.sqrt(np.mean(anom**2)))
    assert res["n"] == mask.sum() and res["rmse"] == pytest.approx(np.sqrt(np.mean((x[mask] - y[mask]) ** 2)))


def test_coverage_by_origin(twin, tmp_path):
    t = twin["truth"]
    rng = np.random.default_rng(5)
    err = rng.normal(0, 0.02, t.shape).astype(np.float32)
    origin = np.zeros(t.shape, products.ORIGIN_DTYPE)
    for b in products.ORIGIN_BITS:  # every bit of the store's flag_masks, in random combinations
        origin |= np.where(rng.random(t.shape) < 0.3, b, 0).astype(products.ORIGIN_DTYPE)
    unc = np.where(origin & 2, 0.01, 0.04).astype(np.float32)  # bit 2: too narrow an interval
    url, sm = make_product(tmp_path / "sm.zarr", np.clip(t + err, 0.001, None), unc=unc, origin=origin,
                           interval=0.8)
    unc_read = products.open_products(url)["sm_unc"].values
    res = skill({"p": url}, twin["stores"].truth, twin["stores"].cube)
    c = res["coverage"]["p"]
    ok = twin["land"][None] & np.isfinite(t) & np.isfinite(sm) & np.isfinite(unc_read)
    inside = np.abs(t - sm) <= unc_read
    assert c["nominal"] == 0.8 and c["n"] == int(ok.sum())
    assert c["empirical"] == pytest.approx(inside[ok].mean())
    assert list(c["by_origin"]) == [m for m, _ in products.ORIGIN_BITS.values()]
    for name, b in zip(c["by_origin"], products.ORIGIN_BITS):
        m = ok & ((origin & b) != 0)
        assert c["by_origin"][name]["bit"] == b and c["by_origin"][name]["n"] == int(m.sum()) > 0
        assert c["by_origin"][name]["coverage"] == pytest.approx(inside[m].mean())
    assert c["by_origin"]["reduced_model"]["coverage"] < c["by_origin"]["all_same_day_predictors"]["coverage"]
    table = format_table(res)
    assert "reduced_model" in table and "nominal 80 %" in table


def test_station_pixels_and_twin_stations(tiny_twin, twin):
    from dsm.synthetic import TwinSpec, make_static, place_stations

    rows, cols = np.array([0, 5, 143, 70]), np.array([0, 100, 143, 3])
    lon, lat = REGION.fine_lon[cols], REGION.fine_lat[rows]
    r, c = station_pixels(lon, lat, twin["x"], twin["y"])
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(c, cols)
    r, c = station_pixels(np.array([lon[0] - 1.0]), np.array([lat[0]]), twin["x"], twin["y"])
    assert r[0] == -1 and c[0] == -1
    st = read_twin_stations(tiny_twin.insitu_csv)
    assert list(st.columns) == ["station", "lon", "lat", "time", "sm"]
    raw = pd.read_csv(tiny_twin.insitu_csv.url)
    np.testing.assert_allclose(st["sm"], raw["value"])
    assert st["time"].min() == pd.Timestamp("2016-06-09")
    spec = TwinSpec.of_size("tiny", 7)
    placed = place_stations(spec, make_static(spec.region, np.random.default_rng(spec.seed)), spec.seed)
    sites = st.drop_duplicates("station").sort_values("station")
    r, c = station_pixels(sites["lon"].to_numpy(), sites["lat"].to_numpy(), twin["x"], twin["y"])
    idx = sites["station"].str[2:].astype(int).to_numpy() - 1
    np.testing.assert_array_equal(np.stack([r, c], 1), placed.insitu_pixels[idx])


def test_station_scores_match_corrcoef(twin, tmp_path):
    t, smap = twin["truth"], twin["smap"]
    rng = np.random.default_rng(11)
    url_a, a = make_product(tmp_path / "a.zarr", np.clip(t + rng.normal(0, 0.01, t.shape), 0.001, None))
    url_b, b = make_product(tmp_path / "b.zarr", np.clip(t + rng.normal(0, 0.04, t.shape), 0.001, None))
    land = twin["land"]
    cand = np.argwhere(land & np.isfinite(t).all(0))
    pick = cand[rng.choice(len(cand), 9, replace=False)]
    days = pd.DatetimeIndex(twin["times"])
    rows = []
    for i, (r, c) in enumerate(pick):
        obs = t[:, r, c] + rng.normal(0, 0.01, len(days))
        keep = rng.random(len(days)) > 0.1  # some station days missing
        for d, v in zip(days[keep], obs[keep]):
            rows.append((f"S{i}", REGION.fine_lon[c], REGION.fine_lat[r], d + pd.Timedelta(hours=6), v))
    rows.append(("OUT", REGION.fine_lon[0] - 2.0, REGION.fine_lat[0], days[0], 0.2))  # outside: dropped
    frame = pd.DataFrame(rows, columns=["station", "lon", "lat", "time", "sm"])
    res = skill({"a": url_a, "b": url_b}, twin["stores"].truth, twin["stores"].cube, stations=frame,
                n_boot=300, seed=1)
    st = res["stations"]
    assert [row["station"] for row in st["table"]] == [f"S{i}" for i in range(9)] and st["outside"] == ["OUT"]
    maps = {"a": a, "b": b, "smap_repeat": repeat(smap), "smap_bilinear": bilinear(smap)}
    direct = {k: [] for k in maps}
    for i, (r, c) in enumerate(pick):
        obs = frame.loc[frame["station"] == f"S{i}"].set_index("time")["sm"]
        obs.index = obs.index.floor("D")
        o = obs.reindex(days).to_numpy()
        valid = np.isfinite(o)
        for v in maps.values():
            valid &= np.isfinite(v[:, r, c])
        row = st["table"][i]
        assert (row["row"], row["col"], row["n"]) == (r, c, int(valid.sum()))
        assert valid.sum() >= MIN_STATION_DAYS
        for k, v in maps.items():
            rr = np.corrcoef(v[valid, r, c], o[valid])[0, 1]
            direct[k].append(rr)
            assert row[f"r_{k}"] == pytest.approx(rr, rel=1e-6)
    assert st["n_stations"] == 9
    for k in maps:
        s = st["maps"][k]
        assert s["n_stations"] == 9
        assert s["station_r_median"] == pytest.approx(np.median(direct[k]))
        assert s["station_r_mean"] == pytest.approx(np.mean(direct[k]))
        lo, hi = s["station_r_median_ci"]
        assert lo <= s["station_r_median"] <= hi and lo < hi
        lo, hi = s["station_r_mean_ci"]
        assert lo <= s["station_r_mean"] <= hi and lo < hi
    assert st["maps"]["a"]["station_r_mean"] > st["maps"]["b"]["station_r_mean"]
    # each product on all its own station-days, SMAP or not (days without SMAP count here)
    for k in ("a", "b"):
        own = []
        for i, (r, c) in enumerate(pick):
            obs = frame.loc[frame["station"] == f"S{i}"].set_index("time")["sm"]
            obs.index = obs.index.floor("D")
            o = obs.reindex(days).to_numpy()
            valid = np.isfinite(o) & np.isfinite(maps[k][:, r, c])
            own.append(np.corrcoef(maps[k][valid, r, c], o[valid])[0, 1])
        assert st["all_days"][k]["station_r_mean"] == pytest.approx(np.mean(own), rel=1e-9)
        assert st["all_days"][k]["station_r_median"] == pytest.approx(np.median(own), rel=1e-9)
    assert not np.isfinite(smap).all()  # so all days are more days than the common ones
    table = format_table(res)
    assert "stations: temporal R at 9 stations" in table and "smap_bilinear" in table and "a_all" in table


def test_station_bootstrap_interval():
    rng = np.random.default_rng(2)
    n_days, n_st = 40, 25
    obs = rng.normal(size=(n_days, n_st))
    series = {"m": obs + rng.normal(0, 1.0, obs.shape) * rng.uniform(0.2, 2, n_st)}
    series["const"] = series["m"].copy()
    series["const"][:, 0] = 1.0  # constant at station 0: R undefined there, station 0 not scored for any map
    sites = pd.DataFrame({"station": [f"s{i}" for i in range(n_st)], "lon": 0.0, "lat": 0.0})
    res = station_scores(series, obs, sites, n_boot=2000, seed=4)
    r = np.array([np.corrcoef(series["m"][:, j], obs[:, j])[0, 1] for j in range(n_st)])
    assert res["n_stations"] == n_st - 1 and res["table"][0]["scored"] is False
    s = res["maps"]["m"]
    assert s["station_r_mean"] == pytest.approx(r[1:].mean())
    # the percentile interval of the bootstrap means, recomputed with the same draws
    draws = np.random.default_rng(4).integers(0, n_st - 1, size=(2000, n_st - 1))
    lo, hi = np.quantile(r[1:][draws].mean(axis=1), [0.025, 0.975])
    assert s["station_r_mean_ci"] == pytest.approx([lo, hi])
    assert lo < s["station_r_mean"] < hi
    se = r[1:].std(ddof=1) / np.sqrt(n_st - 1)  # about +- 2 standard errors
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)
    again = station_scores(series, obs, sites, n_boot=2000, seed=4)
    assert again["maps"]["m"]["station_r_median_ci"] == s["station_r_median_ci"]


def test_skill_rejects_clashing_labels_and_no_common_day(twin, tmp_path):
    url, _ = make_product(tmp_path / "a.zarr", twin["truth"], days=[0, 1])
    url2, _ = make_product(tmp_path / "b.zarr", twin["truth"], days=[2, 3])
    with pytest.raises(ConfigError, match="clash"):
        skill({"smap_repeat": url}, twin["stores"].truth, twin["stores"].cube)
    with pytest.raises(StoreError, match=r"no day is predicted in every one of .*a\.zarr.*b\.zarr.*run dsm predict"):
        skill({"a": url, "b": url2}, twin["stores"].truth, twin["stores"].cube)


# ------------------------------------------------------------------------------ chunk sums and the workers


def _sums_state(obj):
    """Every number a sums object holds (for exact comparison), nested."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: _sums_state(v) for k, v in sorted(obj.items())}
    if isinstance(obj, tuple | list):
        return [_sums_state(v) for v in obj]
    if hasattr(obj, "__dict__"):
        return {k: _sums_state(v) for k, v in sorted(vars(obj).items())}
    return obj


def test_merged_chunk_sums_equal_one_pass():
    from dsm.skill_sums import CoverageSums, anomaly_sums

    rng = np.random.default_rng(8)
    nt = 3 * MIN_PIXEL_DAYS
    y = rng.uniform(0.1, 0.4, (nt, 72, 72))
    x = y + rng.normal(0, 0.03, y.shape)
    mask = rng.random(y.shape) > 0.2
    smap = rng.random(y.shape) > 0.4
    months = np.repeat([5, 6, 9], MIN_PIXEL_DAYS)  # MAM, JJA, SON
    origin = rng.integers(0, 4, y.shape)
    ds = xr.Dataset({"sm_unc": (("t",), [0.0], {"interval": 0.9}),
                     "sm_origin": (("t",), [0], {"flag_masks": [1, 2], "flag_meanings": "a b"})})
    inside = np.abs(x - y) < 0.03
    cuts = [0, 7, 8, 19, nt]  # uneven chunks
    seq, merged, whole = MapScores((72, 72)), MapScores((72, 72)), MapScores((72, 72))
    cseq, cmerged = CoverageSums(ds), CoverageSums(ds)
    whole.add(x, y, mask, months, smap=mask & smap, other=mask & ~smap)
    for a, b in zip(cuts[:-1], cuts[1:]):
        i = slice(a, b)
        seq.add(x[i], y[i], mask[i], months[i], smap=mask[i] & smap[i], other=mask[i] & ~smap[i])
        part = MapScores((72, 72))
        part.add(x[i], y[i], mask[i], months[i], smap=mask[i] & smap[i], other=mask[i] & ~smap[i])
        merged.merge(part)
        cseq.add(inside[i], mask[i], origin[i])
        cmerged.merge(_coverage_part(ds, inside[i], mask[i], origin[i]))
    assert _sums_state(merged) == _sums_state(seq)  # bit for bit: the same additions in the same order
    assert _sums_state(cmerged) == _sums_state(cseq) and cmerged.total[1] == mask.sum()
    means = seq.pix.means()
    for a, b in zip(cuts[:-1], cuts[1:]):  # pass 2
        seq.add_anomaly(x[a:b], y[a:b], mask[a:b])
        merged.anom.merge(anomaly_sums(x[a:b], y[a:b], mask[a:b], means))
    assert _sums_state(merged.anom) == _sums_state(seq.anom)
    assert json.dumps(merged.result()) == json.dumps(seq.result())
    whole.add_anomaly(x, y, mask)  # one pass over all days: the same up to float rounding
    got, want = merged.result(), whole.result()
    for k in ("n", "rmse", "r", "ubrmse", "bias", "cell_r", "rmse_cell_mean", "rmse_anomaly", "temporal_r_median",
              "anomaly_cell_r"):
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), k
    for s in ("MAM", "JJA", "SON"):
        assert got["seasons"][s]["rmse"] == pytest.approx(want["seasons"][s]["rmse"], rel=1e-12)
    assert got["other_days"]["rmse"] == pytest.approx(want["other_days"]["rmse"], rel=1e-12)
    with pytest.raises(ValueError, match="before the anomalies"):
        seq.merge(part)


def _coverage_part(ds, inside, ok, origin):
    from dsm.skill_sums import CoverageSums

    part = CoverageSums(ds)
    part.add(inside, ok, origin)
    return part


class _Restrictions(SchedulerPlugin):
    """Records the workers each skill chunk task asked for, as the scheduler sees it."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.workers: dict[tuple[str, ...], set[str] | None] = {}

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "processing" and str(key).startswith("skill-pass"):
            ts = self.scheduler.tasks[key]
            self.workers[tuple(str(key).split("-")[1:3])] = (
                None if ts.worker_restrictions is None else set(ts.worker_restrictions))


@contextmanager
def _placed(client):
    """Records, while the block runs, where each skill chunk task asked to run (``asked``, as the
    LocalCluster's scheduler, in this process, saw it) and ran (``ran``, from the task stream):
    ``(pass, chunk) -> workers`` and ``-> worker``."""
    from distributed import get_task_stream

    scheduler = client.cluster.scheduler
    asked = _Restrictions(scheduler)
    name = f"skill-restrictions-{id(asked)}"
    scheduler.add_plugin(asked, name=name)
    placed = SimpleNamespace(asked=asked.workers, ran={}, keys=[])
    try:
        with get_task_stream(client) as ts:
            yield placed
    finally:
        scheduler.remove_plugin(name=name)
    placed.keys = [str(t["key"]) for t in ts.data]
    placed.ran = {tuple(k.split("-")[1:3]): t["worker"] for k, t in zip(placed.keys, ts.data, strict=True)
                  if k.startswith("skill-pass")}


def _pass_two_followed_pass_one(placed, res) -> None:
    """Each chunk's pass-2 task asked for the worker that ran its pass 1 (where its arrays are
    kept); Dask may still move a task (work stealing, on a loaded machine), and then its pass 2
    reads the chunk again: ``read_again`` says exactly how many did."""
    chunks = range(res["passes"]["chunks"])
    assert all(placed.asked["pass2", str(i)] == {placed.ran["pass1", str(i)]} for i in chunks), placed
    assert res["passes"]["read_again"] == sum(placed.ran["pass2", str(i)] != placed.ran["pass1", str(i)] for i in chunks)


def test_skill_on_the_workers_equals_skill_in_process(three, twin, client):
    urls = three["urls"]
    stations = read_twin_stations(twin["stores"].insitu_csv)
    here = skill(urls, twin["stores"].truth, twin["stores"].cube, stations=stations, n_boot=200, periods=True)
    with _placed(client) as placed:
        there = skill(urls, twin["stores"].truth, twin["stores"].cube, stations=stations, n_boot=200, periods=True,
                      client=client)
    # bit for bit (passes: where the chunks were read, below)
    assert json.dumps({**there, "passes": None}) == json.dumps({**here, "passes": None})
    assert json.dumps({k: v for k, v in here.items() if k not in ("periods", "stations")}) == \
        json.dumps({k: v for k, v in three["res"].items() if k != "stations"})
    assert here["stations"]["n_stations"] > 0 and len(here["periods"]) == 3 * 4  # 3 periods and all, 3 maps
    # one task per time chunk and pass, and one fold of its sums into those before it, nothing
    # else; each chunk's pass 2 where its pass 1 ran, on the arrays pass 1 kept there: the truth
    # and the products are read once
    n_chunks = -(-45 // 8)
    for kind in ("pass1", "pass2", "fold1", "fold2"):
        assert sum(k.startswith(f"skill-{kind}-") for k in placed.keys) == n_chunks, kind
    assert len(placed.keys) == 4 * n_chunks, placed.keys
    assert len({placed.ran["pass1", str(i)] for i in range(n_chunks)}) == 2  # both workers scored
    _pass_two_followed_pass_one(placed, there)
    assert here["passes"] == {"chunks": n_chunks, "read_again": 0} and there["passes"]["chunks"] == n_chunks


def test_pass_two_goes_where_pass_one_ran_when_dask_moved_it(three, twin, client):
    """One worker is busy when the skill starts, so Dask moves pass-1 tasks planned for it to the
    other; each chunk's pass 2 asks for the worker that ran its pass 1, and the scores are those
    of one process."""
    import time

    urls, stores = three["urls"], twin["stores"]
    busy = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
    with _placed(client) as placed:
        blocker = client.submit(time.sleep, 4, workers=[busy], pure=False)
        there = skill(urls, stores.truth, stores.cube, periods=True, client=client)
        blocker.result()
    here = skill(urls, stores.truth, stores.cube, periods=True)
    assert json.dumps({**there, "passes": None}) == json.dumps({**here, "passes": None})
    _pass_two_followed_pass_one(placed, there)


def test_pass_two_reads_again_what_pass_one_could_not_keep(three, twin, client):
    urls, stores = three["urls"], twin["stores"]
    kept = skill(urls, stores.truth, stores.cube, periods=True)
    n_chunks = kept["passes"]["chunks"]
    one_chunk = twin["truth"][:8].nbytes * (1 + len(urls)) + twin["smap"][:8].nbytes  # float32, as kept
    for budget, again, where in ((0, n_chunks, None), (one_chunk, n_chunks - 1, None), (0, n_chunks, client)):
        res = skill(urls, stores.truth, stores.cube, periods=True, keep_bytes=budget, client=where)
        assert res["passes"] == {"chunks": n_chunks, "read_again": again}, (budget, where)
        assert json.dumps({**res, "passes": None}) == json.dumps({**kept, "passes": None})  # the same sums


def test_a_damaged_chunk_fails_the_skill_on_the_workers_as_in_process(twin, client, tmp_path):
    from dsm import skill_chunks

    url, _ = make_product(tmp_path / "bad.zarr", twin["truth"])
    (tmp_path / "bad.zarr" / "sm" / "c" / "2" / "0" / "0").write_bytes(b"\x00garbage" * 64)  # days 16-23
    with pytest.raises(Exception) as here:  # noqa: PT011 - whatever zarr raises, the workers raise the same
        skill(url, twin["stores"].truth, twin["stores"].cube)
    with pytest.raises(type(here.value)) as there:
        skill(url, twin["stores"].truth, twin["stores"].cube, client=client)
    assert str(there.value) == str(here.value)
    # the chunks pass 1 kept before the damaged one are not left behind, here or on the workers
    assert skill_chunks._HELD == {}
    assert set(client.run(lambda: len(skill_chunks._HELD)).values()) == {0}


def test_the_arrays_pass_one_kept_outlast_the_copy_of_the_job_that_kept_them(three, twin):
    """Between the passes Dask's active memory manager may drop a worker's copy of the job (no
    task waits for it); the copy the worker fetches again for pass 2 finds what pass 1 kept."""
    import pickle

    from dsm import skill_chunks

    cube = store.open_store(twin["stores"].cube, "cube", chunks=None)
    job = skill_chunks.SkillJob(three["urls"], twin["stores"].truth, twin["stores"].cube,
                                cube["land_mask"].values == 1, FINE_PER_COARSE, {}, keep_bytes=1 << 30)
    t = cube["time"].values[:8]
    data = skill_chunks.read_chunk(job, t, uncertainty=False)
    assert job.keep(t, {k: data[k] for k in ("truth", "smap", "sm")})
    fetched = pickle.loads(pickle.dumps(job))  # the copy a worker receives again
    assert fetched is not job and skill_chunks.held_chunks(fetched.token) == [skill_chunks.days_key(t)]
    held = fetched.take(t)
    assert held is not None and job.take(t) is None  # taken once, by whichever copy asks
    np.testing.assert_array_equal(held["truth"], data["truth"])
    other = skill_chunks.SkillJob(three["urls"], twin["stores"].truth, twin["stores"].cube, job.land, FINE_PER_COARSE,
                                  {}, keep_bytes=1 << 30)
    assert other.token != job.token and skill_chunks.held_chunks(other.token) == []  # another job keeps apart
    job.release()
    assert job.token not in skill_chunks._HELD


def _sent_to_clients(client) -> dict[str, list[tuple[str, int]]]:
    """Per worker, the results it has sent to a client or the scheduler (not to another worker),
    (key, bytes) in order, from the worker's own log of outgoing transfers."""
    def sent(dask_worker):
        return [kv for t in dask_worker.transfer_outgoing_log if t["who"] is None for kv in t["keys"].items()]

    return client.run(sent)


def test_the_client_receives_only_the_final_sums_of_each_pass(three, twin, client):
    urls = three["urls"]
    before = _sent_to_clients(client)
    there = skill(urls, twin["stores"].truth, twin["stores"].cube, n_boot=200, periods=True, client=client)
    here = skill(urls, twin["stores"].truth, twin["stores"].cube, n_boot=200, periods=True)
    n_chunks = -(-45 // 8)
    # the same sums; which chunks pass 2 read again depends on where Dask ran them (a stolen task reads again)
    assert json.dumps({**there, "passes": None}) == json.dumps({**here, "passes": None})
    assert there["passes"]["chunks"] == here["passes"]["chunks"] == n_chunks
    sent = [kv for w, log in _sent_to_clients(client).items() for kv in log[len(before.get(w, [])):]]
    # the last fold of each pass, nothing of the chunks: pass 1's are per-pixel sums of every map
    assert sorted(k.split("-")[1] for k, _ in sent) == ["fold1", "fold2"], sent
    assert all(k.split("-")[2] == str(n_chunks - 1) for k, _ in sent), sent


def test_a_skill_job_opens_its_stores_once_and_travels_without_them(three, twin):
    import pickle

    from dsm import skill_chunks

    cube = store.open_store(twin["stores"].cube, "cube", chunks=None)
    job = skill_chunks.SkillJob(three["urls"], twin["stores"].truth, twin["stores"].cube,
                                cube["land_mask"].values == 1, FINE_PER_COARSE, {})
    stores = job.opened()
    assert job.opened() is stores  # every chunk task of a process reuses them
    copy = pickle.loads(pickle.dumps(job))  # what a worker receives
    assert "_opened" not in vars(copy) and len(pickle.dumps(job)) < len(pickle.dumps(stores))
    t = cube["time"].values[:8]
    here, there = skill_chunks.read_chunk(job, t, uncertainty=False), skill_chunks.read_chunk(copy, t, False)
    assert copy.opened() is not stores
    np.testing.assert_array_equal(here["truth"], there["truth"])
    for k in three["urls"]:
        np.testing.assert_array_equal(here["sm"][k], there["sm"][k])


def test_the_default_keep_budget_is_a_share_of_each_workers_memory(client):
    import psutil
    from distributed import Client, LocalCluster

    from dsm.skill_chunks import KEEP_SHARE
    from dsm.skill_workers import keep_budget

    limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
    assert all(limits) and keep_budget(client) == int(KEEP_SHARE * min(limits))
    # workers without a limit share their host's available memory
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=0, dashboard_address=":0") as cluster, \
            Client(cluster) as unlimited:
        budget = keep_budget(unlimited)
    share = KEEP_SHARE * psutil.virtual_memory().available / 2
    assert 0.7 * share < budget < 1.3 * share
