"""SPL3SMP_E as the coarse input (``region.coarse: spl3smp_e``): a twin run at 9 km, end to end.

The twin's SMAP is then a 9 km product (the 9 km means of its truth plus the 36 km retrieval
error spread smoothly, :mod:`dsm.synthetic`); samples, training, the fusion with SMAP and the
consistency of the products work on its 9 km cells, 9 x 9 one-km pixels each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dsm import ledger, products
from dsm.cli import main
from dsm.cube import open_cube
from dsm.grid import EASE2_9KM, Region, block_reduce_mean
from dsm.models.cards import FUSION_KEY
from dsm.models.store import ModelStore
from dsm.samples import sample_graph
from dsm.skill import skill
from dsm.storeref import StoreRef
from dsm.twin import demo_config

pytestmark = pytest.mark.slow  # make test-fast leaves these out


@pytest.fixture(scope="module")
def run_9km(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin9")
    raw = demo_config("tiny", seed=5, root=str(root))
    raw["region"]["coarse"] = "spl3smp_e"
    raw["dates"] = {"start": "2016-06-09", "end": "2016-06-24"}
    raw["rain"] = {"predictors": "off"}
    raw["training"] = {"min_samples": 40, "fusion": {"grid": {"max_depth": [3]}, "max_rounds": 60, "cv_folds": 3}}
    raw["run"] = {"stages": ["cube", "train", "predict"]}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["run", str(path)], catch_exceptions=False)
    return raw, res


@pytest.mark.timeout(600)
def test_a_twin_runs_end_to_end_on_the_9km_grid(run_9km):
    raw, res = run_9km
    assert res.exit_code == 0, res.output
    cube = open_cube(raw["stores"]["cube"])
    region = Region.from_dict(cube.attrs["region"])
    assert region.coarse_km == 9 and cube["smap_sm"].shape == (16, 16, 16)
    w = region.window(EASE2_9KM)
    np.testing.assert_allclose(cube["cx"].values, EASE2_9KM.x_centres(np.arange(w[1], w[1] + w[3])))
    smap = cube["smap_sm"].values
    assert np.isfinite(smap).mean() > 0.3
    # training samples are 9 km cell-days: ids on the 9 km grid, SMAP as the target
    table = sample_graph(cube, [pd.Timestamp(t).date() for t in cube["time"].values[:4]], ["dem", "sand"]).compute()
    assert len(table) and set(table["row"]) <= set(range(w[0], w[0] + w[2]))
    for row in table.head(20).itertuples():
        assert row.sm == smap[(row.date - pd.Timestamp("2016-06-09")).days, row.row - w[0], row.col - w[1]]
        rows = slice((row.row - w[0]) * 9, (row.row - w[0] + 1) * 9)
        cols = slice((row.col - w[1]) * 9, (row.col - w[1] + 1) * 9)
        np.testing.assert_allclose(row.dem, np.nanmean(cube["dem"].values[rows, cols]), rtol=1e-5)
    # the cross-validation blocks keep their size in 36 km cells: 4 x as many 9 km cells a side
    card = ModelStore(StoreRef(raw["stores"]["models"])).read_card(FUSION_KEY)
    assert card["cv"]["block_cells"] == 2 and card["cv"]["block_smap_cells"] == 8
    # every day predicted; the stored cell means are those of the 1 km map on the 9 km cells
    out = products.open_products(raw["stores"]["output"])
    led = ledger.read(StoreRef(raw["stores"]["output"]))
    assert len(led.done) == 16
    sm = out["sm"].values
    np.testing.assert_allclose(out["sm_36km"].values, block_reduce_mean(sm, factor=9), atol=5e-5)  # sm: int16 x 1e-4
    # the map follows SMAP at 9 km: its cell means agree with the day's SMAP where it observed
    cons = [led.day(d).consistency for d in led.done]
    assert np.median([c["r"] for c in cons if c.get("r") is not None]) > 0.8
    scores = skill(*(StoreRef(raw["stores"][k]) for k in ("output", "truth", "cube")))["scores"]
    assert scores["product"]["n"] > 0 and scores["product"]["rmse"] < scores["smap_repeat"]["rmse"] * 1.2
