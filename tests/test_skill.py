"""The twin skill summary: baselines, within-cell correlation, coverage, on constructed stores."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import xarray as xr

from dsm import products, store
from dsm.cube import Layout, open_cube
from dsm.grid import Region
from dsm.predict import record_attrs
from dsm.skill import bilinear, format_table, repeat, skill, write_skill


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


@pytest.mark.timeout(120)
def test_perfect_product_scores_perfectly_and_baselines_do_not(tiny_twin, tmp_path):
    cube = open_cube(tiny_twin.cube)
    truth = store.open_store(tiny_twin.truth, "truth")
    start = dt.date(2016, 6, 9)
    layout = Layout(Region(74, 772, 4, 4), start, dt.date(2016, 7, 26), 72, 8)
    url = str(tmp_path / "sm.zarr")
    products.create_products(url, layout, 0.9)
    out = products.open_products(url)
    t = truth["sm_true"].values
    part = xr.Dataset({"sm": (("time", "y", "x"), t), "sm_unc": (("time", "y", "x"), np.full_like(t, 0.01))},
                      coords={"time": out["time"].values, "y": out["y"].values, "x": out["x"].values})
    store.write_region(url, part, None, out)
    days = [str(d)[:10] for d in out["time"].values]
    record_attrs(url, {"days_done": days})
    res = skill(url, tiny_twin.truth, tiny_twin.cube)
    s = res["scores"]
    assert s["product"]["rmse"] < 1e-4 and s["product"]["r"] > 0.9999 and s["product"]["cell_r"] > 0.9999
    assert s["product_all"]["n"] > s["product"]["n"] > 0  # product_all also covers days without SMAP
    assert s["smap_repeat"]["cell_r"] is None and s["smap_repeat"]["rmse"] > 0.01
    assert s["smap_bilinear"]["cell_r"] < 0.9
    assert s["smap_repeat"]["n"] == s["smap_bilinear"]["n"] == s["product"]["n"]
    land = cube["land_mask"].values == 1
    assert s["product_all"]["n"] == int(np.isfinite(t[:, land]).sum())
    assert res["coverage"]["empirical"] == pytest.approx(1.0) and res["coverage"]["nominal"] == 0.9
    write_skill(res, str(tmp_path / "skill.json"))
    assert json.loads((tmp_path / "skill.json").read_text())["days"] == 48
    table = format_table(res)
    assert "smap_bilinear" in table and "—" in table and "nominal 90 %" in table
