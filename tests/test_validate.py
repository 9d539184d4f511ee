"""In situ validation on the tiny twin: stations -> pixel/cell, scores checked independently,
bootstrap intervals, other gridded products, bad input, exports, twin skill per period, CLI."""

from __future__ import annotations

import os
import shutil
import zipfile
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner
from pyproj import Transformer

from dsm.config import BootstrapConfig, from_dict
from dsm.grid import CELL_1KM, X_MIN, Y_MAX
from dsm.skill import skill
from dsm.stages import validate as val
from dsm.storeref import StoreRef
from dsm.testing.validation import gridded_field, make_products_store, write_gridded_geotiffs, write_gridded_netcdf

REGION = [74, 772, 4, 4]
BOX = (108.2, 38.0, 110.0, 39.6)  # lon/lat grid of the "other" products; TW06 (lat 37.999) lies outside


@pytest.fixture(scope="module")
def twin(tiny_twin, tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    out = make_products_store(StoreRef(str(root / "sm.zarr")), tiny_twin.truth, noise=0.02, seed=3)
    field = gridded_field(tiny_twin.truth, BOX, 0.25)
    other = {
        "nc": write_gridded_netcdf(root / "other.nc", field, scale=0.01),  # stored in percent
        "nocrs": write_gridded_netcdf(root / "nocrs.nc", field, with_crs=False),
    }
    write_gridded_geotiffs(root / "tifs", field)
    zarr_path = root / "other.zarr"
    import rioxarray  # noqa: F401

    field.to_dataset(name="sm").rio.write_crs("EPSG:4326").to_zarr(zarr_path, zarr_format=3, consolidated=False)
    other.update(tif=str(root / "tifs" / "*.tif"), zarr=str(zarr_path))
    return {"root": root, "out": out, "field": field, "other": other, "stores": tiny_twin}


def _config(twin, **validation):
    s = twin["stores"]
    raw = {"region": {"cells": REGION}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": s.cube.url, "truth": s.truth.url, "stations": s.stations.url, "output": twin["out"].url},
           "validation": {"bootstrap": {"n_resamples": 300, "seed": 1}, "out": str(twin["root"] / "val"),
                          **validation}}
    return from_dict(raw)


def _pixel(lon, lat):
    """Independent: global 1 km row/col by pyproj and the grid constants, then region-relative."""
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True).transform(lon, lat)
    col = np.floor((np.asarray(x) - X_MIN) / CELL_1KM).astype(int) - REGION[1] * 36
    row = np.floor((Y_MAX - np.asarray(y)) / CELL_1KM).astype(int) - REGION[0] * 36
    return row, col


@pytest.fixture(scope="module")
def result(twin):
    return val.validate(_config(twin), None)


def test_stations_map_to_their_pixel_and_cell(result, twin):
    raw = pd.read_csv(twin["stores"].insitu_csv.url).drop_duplicates("station").sort_values("station")
    st = result.stations.sort_values("station")
    row, col = _pixel(raw["lon"].to_numpy(), raw["lat"].to_numpy())
    assert st["row"].tolist() == row.tolist() and st["col"].tolist() == col.tolist()
    assert st["cy"].tolist() == (row // 36).tolist() and st["cx"].tolist() == (col // 36).tolist()
    assert (st["status"] == "scored").all() and len(st) == 12


def test_scores_equal_an_independent_computation(result, twin):
    raw = pd.read_csv(twin["stores"].insitu_csv.url, parse_dates=["time"])
    sm = xr.open_zarr(twin["out"].url, consolidated=False)["sm"].values  # CF-decoded int16 -> float
    smap = xr.open_zarr(twin["stores"].cube.url, consolidated=False)["smap_sm"].values
    t0 = np.datetime64("2016-06-09")
    got = result.scores.set_index(["product", "days", "level", "station"])
    for name, g in raw.groupby("station"):
        row, col = _pixel(g["lon"].iloc[0], g["lat"].iloc[0])
        t = ((g["time"].values - t0) // np.timedelta64(1, "D")).astype(int)
        q = g["value"].to_numpy()
        for product, p in (("sm_1km", sm[t, row, col]), ("smap_36km", smap[t, row // 36, col // 36])):
            ok = np.isfinite(p)
            if ok.sum() < 10:
                assert got.loc[(product, "own", "site", name), "n"] == ok.sum()
                continue
            pp, qq = p[ok].astype(np.float64), q[ok]
            s = got.loc[(product, "own", "site", name)]
            assert s["n"] == ok.sum()
            assert s["r"] == pytest.approx(np.corrcoef(pp, qq)[0, 1], abs=1e-9)
            assert s["rmse"] == pytest.approx(np.sqrt(np.mean((pp - qq) ** 2)), abs=1e-9)
            assert s["bias"] == pytest.approx(qq.mean() - pp.mean(), abs=1e-9)  # in situ minus product
            assert s["ubrmse"] == pytest.approx(np.sqrt(np.mean(((pp - pp.mean()) - (qq - qq.mean())) ** 2)), abs=1e-9)
    # pooled 'all' = every valid pair of every site
    pairs = result.pairs
    ok = pairs[["sm_1km", "insitu"]].notna().all(axis=1)
    allrow = got.loc[("sm_1km", "own", "all", "")]
    assert allrow["n"] == ok.sum()
    assert allrow["rmse"] == pytest.approx(np.sqrt(((pairs.sm_1km - pairs.insitu)[ok] ** 2).mean()), abs=1e-9)
    # 'common': the same station-days for every product
    common = result.scores.loc[(result.scores["days"] == "common") & (result.scores["level"] == "all")]
    assert common["n"].nunique() == 1 and common["n"].iloc[0] < allrow["n"]
    assert set(result.scores["bias_convention"]) == {"reference_minus_product"}


def test_scores_on_the_workers_are_those_made_in_process(result, twin, client):
    # one task per product, day set and level, the table concatenated in the order made in process
    v = val.stations_config(_config(twin))
    scored = list(dict.fromkeys(result.scores["product"]))
    on_workers = val._score_stations(result.pairs, scored, v, client)
    assert len(scored) >= 2 and set(on_workers["days"]) == {"common", "own"}
    pd.testing.assert_frame_equal(on_workers, result.scores)
    with pytest.raises(ValueError, match="unknown day sets"):
        val.score_pairs(result.pairs, scored, days=("all",))
    with pytest.raises(ValueError, match="unknown levels"):
        val.score_pairs(result.pairs, scored, levels=("station",))


def test_sites_take_the_moving_block_bootstrap_of_their_daily_series_the_pooled_levels_pairs(result, twin, client):
    from dsm.metrics import bootstrap_scores
    from dsm.station_scores import score_pairs

    scored = list(dict.fromkeys(result.scores["product"]))
    iid, block = (BootstrapConfig(n_resamples=200, seed=1, block_length=b) for b in (None, 10))
    v = val.stations_config(_config(twin, bootstrap=block.model_dump()))
    by_block = val._score_stations(result.pairs, scored, v, client)  # on the workers as in process
    pd.testing.assert_frame_equal(by_block, score_pairs(result.pairs, scored, boot=block))
    by_pairs = score_pairs(result.pairs, scored, boot=iid)
    pooled = by_block["level"] != "site"
    pd.testing.assert_frame_equal(by_block.loc[pooled], by_pairs.loc[pooled])
    sites = by_block.loc[~pooled & (by_block["product"] == "sm_1km") & (by_block["days"] == "own")]
    assert (sites["r_lo"].to_numpy() != by_pairs.loc[sites.index, "r_lo"].to_numpy()).any()
    site = sites.loc[sites["n"] >= 20].iloc[0]  # its own days on a daily axis, gaps kept as NaN
    own = result.pairs.loc[(result.pairs["station"] == site["station"])].set_index("time")
    own = own.reindex(pd.date_range(own.index.min(), own.index.max(), freq="D"))
    want = bootstrap_scores(own["sm_1km"], own["insitu"], n_resamples=200, seed=1, block_length=10)
    assert (site["r_lo"], site["r_hi"]) == pytest.approx(want.r, rel=1e-12)
    assert (site["bias_lo"], site["bias_hi"]) == pytest.approx(want.bias, rel=1e-12)


def test_bootstrap_intervals_contain_the_estimate_and_bias_sign_flips(result, twin):
    s = result.scores.loc[result.scores["level"].isin(["site", "network", "all"]) & result.scores["r"].notna()]
    assert len(s) > 20
    for k in ("r", "rmse", "ubrmse", "bias"):
        assert (s[f"{k}_lo"] <= s[k] + 1e-12).all() and (s[k] <= s[f"{k}_hi"] + 1e-12).all(), k
        assert (s[f"{k}_lo"] < s[f"{k}_hi"]).all()
    flipped = val.score_pairs(result.pairs, ["sm_1km"], boot=BootstrapConfig(n_resamples=300, seed=1),
                              bias_convention="product_minus_reference", min_n=10,
                              common_products=["sm_1km", "smap_36km"])
    base = result.scores.loc[result.scores["product"] == "sm_1km"].reset_index(drop=True)
    np.testing.assert_allclose(flipped["bias"], -base["bias"], atol=1e-12)
    np.testing.assert_allclose(flipped["bias_lo"], -base["bias_hi"], atol=1e-12)


def test_other_gridded_products_are_sampled_at_the_station_lonlat(twin):
    o = twin["other"]
    cfg = _config(twin, products=[
        {"name": "nc", "path": o["nc"], "variable": "soil_moisture", "scale": 0.01},
        {"name": "tif", "path": o["tif"]},
        {"name": "zarr", "path": o["zarr"], "variable": "sm"},
        {"name": "nocrs", "path": o["nocrs"], "variable": "soil_moisture"},
        {"name": "nocrs_fixed", "path": o["nocrs"], "variable": "soil_moisture", "crs": "EPSG:4326"},
    ])
    res = val.validate(cfg, None)
    field = twin["field"]
    raw = pd.read_csv(twin["stores"].insitu_csv.url, parse_dates=["time"])
    first = raw.loc[raw["station"] == "TW01"].iloc[0]
    i = int(np.floor((first["lon"] - BOX[0]) / 0.25))
    j = int(np.floor((BOX[3] - first["lat"]) / 0.25))
    expected = float(field.sel(time=first["time"]).values[j, i])
    row = res.pairs.loc[(res.pairs["station"] == "TW01") & (res.pairs["time"] == first["time"])].iloc[0]
    for name in ("nc", "tif", "zarr", "nocrs_fixed"):
        assert row[name] == pytest.approx(expected, abs=1e-6), name
    probs = res.problems
    nocrs = probs.loc[probs["name"] == "nocrs", "problem"].str.cat()
    assert "has no CRS" in nocrs and "nocrs.nc" in nocrs
    assert "nocrs" not in res.products and {"nc", "tif", "zarr", "nocrs_fixed"} <= set(res.products)
    assert probs["problem"].str.contains("TW06.*outside the product's grid").any()
    scored = set(res.scores.loc[res.scores["level"] == "all", "product"])
    assert scored == {"sm_1km", "smap_36km", "nc", "tif", "zarr", "nocrs_fixed"}


@pytest.mark.shared_data
def test_bad_inputs_are_named_and_the_rest_is_scored(twin, shared_data, tmp_path):
    ismn = shared_data / "insitu"
    junk = tmp_path / "stations.txt"
    junk.write_text("this is not a station file\n1 2 3\n")
    other_year = twin["field"].assign_coords(time=twin["field"]["time"].values - np.timedelta64(3650, "D"))
    old = write_gridded_netcdf(tmp_path / "old.nc", other_year)
    cfg = _config(twin, stations=[
        {"path": twin["stores"].insitu_csv.url},
        {"path": str(ismn / "ismn_header_values")},                 # Narbonne, France: outside the region
        {"path": str(ismn / "ismn_header_values_station")},         # COSMOS 0-0.19 m: depth not available
        {"path": str(junk)},
        {"path": str(tmp_path / "missing.csv")},
    ], products=[{"name": "old", "path": old, "variable": "soil_moisture"},
                 {"name": "nocrs", "path": twin["other"]["nocrs"], "variable": "soil_moisture"}])
    res = val.validate(cfg, None)
    p = res.problems
    text = "\n".join(f"{k} {n}: {m}" for k, n, m in p.itertuples(index=False))
    assert "unknown station file format" in text and "stations.txt" in text
    assert "missing.csv" in text
    assert "SMOSMANIA/Narbonne: outside the region" in text
    assert "COSMOS/ARM-1: depth not available" in text and "0-0.19 m" in text
    assert "old: no overlapping days" in text
    assert "nocrs" in text and "has no CRS" in text
    # the twin stations and the 1 km product are still scored
    all_1km = res.scores.loc[(res.scores["product"] == "sm_1km") & (res.scores["level"] == "all")
                             & (res.scores["days"] == "own")].iloc[0]
    assert all_1km["n"] > 500 and all_1km["r"] > 0.7
    assert "old" not in set(res.scores["product"])
    assert (res.stations.loc[res.stations["station"] == "Narbonne", "status"] == "outside region").all()


def test_no_overlapping_days_at_all_is_named(twin, tmp_path):
    csv = tmp_path / "late.csv"
    pd.DataFrame({"station": "L1", "lon": 109.0, "lat": 38.6, "depth": 0.05,
                  "time": pd.date_range("2019-01-01", periods=20).strftime("%Y-%m-%d"),
                  "value": 0.2}).to_csv(csv, index=False)
    res = val.validate(_config(twin, stations=[{"path": str(csv), "network": "LATE"}]), None)
    assert res.scores["n"].max() == 0 or res.scores.empty
    assert res.problems["problem"].str.contains("sm_1km: no overlapping days|no overlapping days with any station",
                                                regex=True).any()


def test_outputs_and_pytesmo_qa4sm_timeseries(result, tmp_path):
    written = val.write_validation(result, StoreRef(str(tmp_path / "val")))
    scores = pd.read_csv(written["scores"])
    assert len(scores) == len(result.scores)
    ts = val.export_timeseries(result.pairs, result.stations, StoreRef(str(tmp_path / "ts")), depth=0.05)
    assert len(ts["files"]) == 12
    name = Path(ts["files"][0]).name
    assert name.startswith("dsm_gpi=0_lat=") and "_lon=" in name and name.endswith(".csv")
    frame = pd.read_csv(ts["files"][0], index_col=0, parse_dates=True)  # how pytesmo/QA4SM read it
    assert isinstance(frame.index, pd.DatetimeIndex) and list(frame.columns) == ["insitu", "sm_1km", "smap_36km"]
    st = pd.read_csv(ts["stations"])
    first = result.pairs.loc[result.pairs["station"] == st.loc[0, "station"]]
    np.testing.assert_allclose(frame["insitu"].to_numpy(), first["insitu"].to_numpy(), atol=1e-5)
    meta = yaml.safe_load(Path(ts["metadata"]).read_text())
    assert meta["sm_1km"]["units"] == "m3 m-3"
    assert len(zipfile.ZipFile(ts["zip"]).namelist()) == 14


def test_period_skill_matches_the_skill_summary(result, twin):
    ps = result.period_skill
    assert sorted(ps["period"].unique()) == ["2016161", "2016177", "2016193", "all"]
    s = skill(twin["out"], twin["stores"].truth, twin["stores"].cube)
    for m in ("product", "smap_repeat", "smap_bilinear"):
        row = ps.loc[(ps["period"] == "all") & (ps["map"] == m)].iloc[0]
        assert row["n"] == s["scores"][m]["n"]
        assert row["rmse"] == pytest.approx(s["scores"][m]["rmse"], rel=1e-6)
    per = ps.loc[(ps["period"] != "all") & (ps["map"] == "product")]
    assert per["n"].sum() == s["scores"]["product"]["n"]
    # the product is truth + N(0, 0.02): RMSE ~ 0.02 in every period (clipping at 0 aside)
    np.testing.assert_allclose(per["rmse"], 0.02, rtol=0.03)


def test_the_period_table_comes_from_the_twin_skill_without_reading_the_truth_again(result, twin, tmp_path):
    from dsm.skill import twin_skill_of

    truth = tmp_path / "truth.zarr"  # a copy of the truth, removed once the skill is computed
    shutil.copytree(twin["stores"].truth.url, truth)
    cfg = _config(twin)
    cfg = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"truth": str(truth)})})
    s = twin_skill_of(cfg)
    shutil.rmtree(truth)
    with pytest.raises(Exception, match="truth.zarr"):  # the truth is gone: reading it fails
        skill(twin["out"], StoreRef(str(truth)), twin["stores"].cube)
    got = val.validate(cfg, None, twin=s).period_skill  # so this one read no truth
    want = result.period_skill  # validate without the twin skill: its own skill pass, from the truth
    assert got[["period", "map", "n"]].equals(want[["period", "map", "n"]])
    for c in ("rmse", "r", "ubrmse", "bias", "cell_r"):
        np.testing.assert_allclose(got[c].to_numpy(float), want[c].to_numpy(float), rtol=1e-12, atol=1e-15)
    # the skill may still be computing beside the validation (as the validate stage runs them): it is
    # awaited for the table, after the stations are scored, and still no truth is read
    pending: Future = Future()
    steps: list[str] = []

    def progress(step) -> None:
        steps.append(str(step))
        if "scored" in str(step):
            pending.set_result(s)

    later = val.validate(cfg, None, progress, twin=pending).period_skill
    assert later.equals(got) and any("from the twin skill" in m for m in steps)


@pytest.mark.timeout(120)
def test_cli_skill_scores_on_the_cluster_as_in_process(twin, tmp_path):
    import json

    from dsm.cli import main
    from dsm.skill import read_twin_stations

    s = twin["stores"]
    cfg = {"region": {"cells": REGION}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": s.cube.url, "truth": s.truth.url, "stations": s.stations.url, "output": twin["out"].url},
           "cluster": {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["skill", str(path), "--out", str(tmp_path / "skill.json")])
    assert res.exit_code == 0, res.output
    assert "skill of the 1 km maps" in res.output
    written = json.loads((tmp_path / "skill.json").read_text())
    here = skill({"fusion": twin["out"]}, s.truth, s.cube, stations=read_twin_stations(s.insitu_csv),
                 periods=True)
    assert written == json.loads(json.dumps(here)) and written["periods"]


@pytest.mark.timeout(120)
def test_cli_validate(twin, tmp_path):
    from dsm.cli import main

    s = twin["stores"]
    cfg = {"region": {"cells": REGION}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": s.cube.url, "stations": s.stations.url, "output": twin["out"].url},
           "cluster": {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"},
           "validation": {"bootstrap": {"n_resamples": 50}, "out": "val"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    assert "sm_1km" in res.output and "site_mean" in res.output
    assert (tmp_path / "val" / "scores.json").exists() and (tmp_path / "val" / "timeseries").is_dir()
    # no readable station: one clear error naming the file (exit status 2)
    bad = tmp_path / "bad.yaml"
    cfg["validation"]["stations"] = [{"path": "nowhere.csv"}]
    bad.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["validate", str(bad)])
    assert res.exit_code == 2 and "no in situ record could be read" in res.output
    assert "nowhere.csv: no such file or folder" in res.output
    shutil.rmtree(tmp_path / "val")


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_station_files_are_read_from_object_storage_and_bad_ones_named(s3, tiny_twin):
    from dsm.config import StationSourceConfig, StoresConfig

    bucket = s3.make_bucket("dsm-stations")
    fs = s3.filesystem()
    fs.put_file(tiny_twin.insitu_csv.url, f"{bucket.removeprefix('s3://')}/st/insitu.csv")
    fs.pipe_file(f"{bucket.removeprefix('s3://')}/st/broken.csv", b"this,is\nnot,a station table\n")
    stores = StoresConfig(cube="unused.zarr", storage_options=s3.storage_options)
    remote, failures = val.read_source(StationSourceConfig(path=f"{bucket}/st/*.csv"), stores)
    local, none = val.read_source(StationSourceConfig(path=tiny_twin.insitu_csv.url))
    assert none == {} and len(local) > 100
    pd.testing.assert_frame_equal(remote, local)
    assert list(failures) == [f"{bucket}/st/broken.csv"]
    assert failures[f"{bucket}/st/broken.csv"].startswith("no column 'station': set columns.station")
    nowhere = f"{bucket}/nowhere/*.csv"
    missing, why = val.read_source(StationSourceConfig(path=nowhere), stores)
    assert len(missing) == 0 and why == {f"{bucket}/nowhere/*.csv": "no file matches this path"}


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_twin_station_tables_on_object_storage_are_found_and_read_with_the_stores_options(s3, tiny_twin, monkeypatch):
    """The twin's weather and in situ tables in a bucket named only in ``stores.storage_options``
    (no AWS_* variables: nothing else reaches it) read as from the local folder."""
    from dsm.skill import read_twin_stations

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    bucket = s3.make_bucket("dsm-twin-tables")
    fs = s3.filesystem()
    for name in ("insitu.csv", "weather.csv"):
        fs.put_file(tiny_twin.stations.join(name).url, f"{bucket.removeprefix('s3://')}/st/{name}")

    def config(stations, options):
        return from_dict({"region": {"cells": REGION}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
                          "stores": {"cube": tiny_twin.cube.url, "stations": stations, "storage_options": options}})

    remote = config(f"{bucket}/st", s3.storage_options)
    v = val.stations_config(remote)
    assert v.weather == f"{bucket}/st/weather.csv"  # found in the bucket: the default weather table
    local = config(tiny_twin.stations.url, {})
    pd.testing.assert_frame_equal(val.weather_table(v, remote.stores),
                                  val.weather_table(val.stations_config(local), local.stores))
    pd.testing.assert_frame_equal(read_twin_stations(remote.stores.ref("stations").join("insitu.csv")),
                                  read_twin_stations(tiny_twin.insitu_csv))


def test_no_readable_station_is_one_clear_error(twin, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("no,stations\nhere,at all\n")
    with pytest.raises(val.InputError, match=r"no in situ record could be read \(.*bad\.csv"):
        val.validate(_config(twin, stations=[{"path": str(bad)}]), None)


RENAMED = {"station": "site_id", "network": "net", "lon": "longitude", "lat": "latitude", "depth": "depth_m",
           "time": "timestamp_utc", "value": "vwc_5cm"}


def test_station_columns_read_a_csv_under_its_own_names(twin, result, tmp_path):
    mine = tmp_path / "my_sites.csv"
    pd.read_csv(twin["stores"].insitu_csv.url, dtype=str).rename(columns=RENAMED).to_csv(mine, index=False)
    res = val.validate(_config(twin, stations=[{"path": str(mine), "columns": RENAMED}], bootstrap={"n_resamples": 0}),
                       None)
    pd.testing.assert_frame_equal(res.pairs, result.pairs)  # the same pairs as the twin's own CSV gives
    pd.testing.assert_frame_equal(res.problems, result.problems)  # and nothing more left out


def test_a_missing_mapped_column_names_the_file_column_and_key(twin, tmp_path):
    mine = tmp_path / "my_sites.csv"
    pd.read_csv(twin["stores"].insitu_csv.url, dtype=str).rename(columns=RENAMED).to_csv(mine, index=False)
    wrong = {**RENAMED, "value": "sm_5cm"}
    stations = [{"path": twin["stores"].insitu_csv.url}, {"path": str(mine), "columns": wrong}]
    res = val.validate(_config(twin, stations=stations, bootstrap={"n_resamples": 0}), None)
    bad = res.problems.loc[res.problems["name"] == str(mine), "problem"].tolist()
    assert len(bad) == 1 and bad[0].startswith("no column 'sm_5cm' (dsm's 'value', set by "
                                               "validation.stations[1].columns.value); the file's columns are")
    assert (res.stations["status"] == "scored").sum() == 12  # the other source is still scored
    with pytest.raises(val.InputError) as info:  # the only source: nothing to score, one error
        val.validate(_config(twin, stations=[{"path": str(mine), "columns": wrong}]), None)
    text = str(info.value)
    assert str(mine) in text and "'sm_5cm'" in text and "validation.stations[0].columns.value" in text
    assert f"{mine}: {mine}" not in text  # the file is named once


def test_weather_columns_read_a_weather_table_under_its_own_names(twin, tmp_path):
    names = {"station": "id", "time": "date", "precip_mm": "PRCP", "tair_c": "TAVG"}
    mine = tmp_path / "weather.csv"
    pd.read_csv(twin["stores"].weather_csv.url, dtype=str).rename(columns=names).to_csv(mine, index=False)
    twins = val.weather_table(val.stations_config(_config(twin)))  # the twin's weather.csv by default
    w = val.weather_table(val.stations_config(_config(twin, weather=str(mine), weather_columns=names)))
    pd.testing.assert_frame_equal(w, twins)
    assert len(w) > 100 and w["station"].str.startswith("WX").all()
    with pytest.raises(val.InputError) as info:
        val.weather_table(val.stations_config(_config(twin, weather=str(mine), weather_columns={**names, "tair_c": "T"})))
    text = str(info.value)
    assert text.startswith(f"weather file {mine}: no column 'T' (dsm's 'tair_c', set by validation.weather_columns.tair_c)")


def test_point_series_reads_each_sites_pixel_and_cell(twin, monkeypatch):
    """Sites sharing rows, columns and cells: each gets its own pixel's ``sm`` (CF-decoded, as
    xarray reads it) and its cell's SMAP, every day of the products store; each selection read
    stays inside one chunk of its array (far-apart sites do not read the chunks between them)."""
    from dsm import station_sampling
    from dsm.station_sampling import PRODUCT_1KM, SMAP_36KM, point_series

    spans: list[tuple[str, int, int]] = []  # (variable, chunks its rows span, chunks its columns span)
    read = station_sampling.read_selections

    def recording(ds, reads):
        for name, index in reads.values():
            (ych, xch), (ys, xs) = ds[name].encoding["chunks"][1:], list(index.values())
            spans.append((name, len(set(np.asarray(ys) // ych)), len(set(np.asarray(xs) // xch))))
        return read(ds, reads)

    monkeypatch.setattr(station_sampling, "read_selections", recording)
    sm = xr.open_zarr(twin["out"].url, consolidated=False)["sm"].values
    smap = xr.open_zarr(twin["stores"].cube.url, consolidated=False)["smap_sm"].values
    rows, cols = np.array([40, 40, 100, 3]), np.array([7, 90, 7, 140])
    sites = pd.DataFrame({"row": rows, "col": cols, "cy": rows // 36, "cx": cols // 36})
    got = point_series(twin["out"], twin["stores"].cube, sites)
    np.testing.assert_array_equal(got[PRODUCT_1KM], sm[:, rows, cols])
    np.testing.assert_array_equal(got[SMAP_36KM], smap[:, rows // 36, cols // 36])
    assert np.isfinite(got[PRODUCT_1KM]).any() and np.isfinite(got[SMAP_36KM]).any()
    assert {n for n, _, _ in spans} == {"sm", "smap_sm"} and all(ny == nx == 1 for _, ny, nx in spans), spans
    assert sum(n == "sm" for n, _, _ in spans) == 3  # the four sites lie in three chunks of sm
    assert set(point_series(twin["out"], None, sites)) == {PRODUCT_1KM}
