"""``dsm fetch`` offline: the searches it would make, retries, unzipping, credentials."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dsm import config as config_mod
from dsm.cli import main
from dsm.errors import ConfigError, TransientIOError
from dsm.ingest import fetch
from dsm.ingest.terrain import read_hgt


def _cfg(inputs=None, start="2016-01-05", end="2016-02-20"):
    raw = {"region": {"bbox": [108.0, 38.0, 110.9, 40.4]}, "dates": {"start": start, "end": end},
           "stores": {"cube": "/tmp/never/cube.zarr"}}  # fmt: skip
    if inputs is not None:
        raw["inputs"] = inputs
    return config_mod.from_dict(raw)


def test_search_parameters_cover_the_snapped_region_and_the_composites():
    cfg = _cfg({"smap": {"paths": "s/*.h5"}, "mod09a1": {"paths": "m/*.hdf"}, "mod13a2": {"paths": "v/*.hdf"},
                "mcd43": {"paths": "a/*.hdf"}, "dem": {"paths": "d/*.hgt"}, "soil": {"sand": "sand.tif"}})  # fmt: skip
    params = {p["short_name"]: p for p in fetch.search_parameters(cfg)}
    assert list(params) == ["SPL3SMP", "MCD43A3", "MOD09A1", "MOD13A2", "SRTMGL3"]  # soil is not on Earthdata
    w, s, e, n = params["SPL3SMP"]["bounding_box"]
    assert w <= 108.0 and s <= 38.0 and e >= 110.9 and n >= 40.4  # snapped outward to 36 km cells
    assert (e - w) < 2.9 + 2 * 0.38 and (n - s) < 2.4 + 2 * 0.5
    assert all(p["bounding_box"] == (w, s, e, n) and p["count"] == -1 for p in params.values())
    assert params["SPL3SMP"] == {"short_name": "SPL3SMP", "version": "009", "bounding_box": (w, s, e, n), "count": -1,
                                 "temporal": ("2016-01-05T00:00:00Z", "2016-02-20T23:59:59Z")}  # fmt: skip
    assert params["MOD09A1"]["temporal"][0] == "2016-01-01T00:00:00Z"  # 8-day composite holding 01-05
    assert params["MOD13A2"]["temporal"][0] == "2016-01-01T00:00:00Z"  # 16-day period holding 01-05
    assert params["MCD43A3"]["version"] == "061" and "temporal" not in params["SRTMGL3"]
    cfg2 = _cfg(start="2016-01-20", end="2016-01-21")
    assert {p["short_name"]: p.get("temporal", (None,))[0] for p in fetch.search_parameters(cfg2)} == {
        "SPL3SMP": "2016-01-20T00:00:00Z", "MOD11A1": "2016-01-20T00:00:00Z", "MCD43A3": "2016-01-20T00:00:00Z",
        "MOD15A2H": "2016-01-17T00:00:00Z", "MOD09A1": "2016-01-17T00:00:00Z", "MOD13A2": "2016-01-17T00:00:00Z",
        "SRTMGL3": None,
    }  # fmt: skip
    assert [p["short_name"] for p in fetch.search_parameters(cfg, ["dem"])] == ["SRTMGL3"]
    with pytest.raises(ConfigError, match="unknown source"):
        fetch.search_parameters(cfg, ["modis"])


def test_mcd43_granules_outside_the_dates_are_dropped():
    cfg = _cfg(start="2016-01-05", end="2016-01-10")
    assert fetch.wanted(cfg, "mcd43", "MCD43A3.A2016005.h26v04.061.2021.hdf")
    assert not fetch.wanted(cfg, "mcd43", "MCD43A3.A2016011.h26v04.061.2021.hdf")
    assert not fetch.wanted(cfg, "mcd43", "MCD43A3.A2015365.h26v04.061.2021.hdf")
    assert fetch.wanted(cfg, "mod09a1", "MOD09A1.A2016001.h26v04.061.2021.hdf")  # composite holding 01-05
    assert fetch.wanted(cfg, "mcd43", "oddly_named.hdf")  # kept: the ingest report will name it


def test_credentials_never_come_from_the_command_line():
    assert fetch.credential_strategy({"EARTHDATA_USERNAME": "u", "EARTHDATA_PASSWORD": "p"}) == "environment"
    assert fetch.credential_strategy({"EARTHDATA_TOKEN": "t"}) == "environment"
    assert fetch.credential_strategy({"EARTHDATA_USERNAME": "u"}) == "netrc"
    assert fetch.credential_strategy({}) == "netrc"
    res = CliRunner().invoke(main, ["fetch", "--help"])
    assert res.exit_code == 0 and "password" not in res.output.replace("EARTHDATA_PASSWORD", "").lower()


def test_retries_back_off_then_give_up():
    waits: list[float] = []
    calls = iter([OSError("reset"), TimeoutError("slow"), "ok"])

    def flaky():
        v = next(calls)
        if isinstance(v, Exception):
            raise v
        return v

    assert fetch.with_retries(flaky, "granule x", retries=3, backoff=2.0, sleep=waits.append) == "ok"
    assert waits == [1.0, 2.0]

    def broken():
        raise ConnectionError("refused")

    waits.clear()
    with pytest.raises(TransientIOError, match=r"granule y: failed 3 times, last error ConnectionError: refused"):
        fetch.with_retries(broken, "granule y", retries=2, sleep=waits.append)
    assert waits == [1.0, 2.0]


def test_srtm_zips_are_unpacked_and_broken_zips_removed(tmp_path, shared_data):
    z = tmp_path / "N44W072.SRTMGL3.hgt.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
        f.write(shared_data / "dem" / "N44W072.hgt", "N44W072.hgt")
    (out,) = fetch.unzip_hgt(str(z), str(tmp_path))
    np.testing.assert_array_equal(read_hgt(out).data, read_hgt(shared_data / "dem" / "N44W072.hgt").data)
    bad = tmp_path / "N45W072.SRTMGL3.hgt.zip"
    bad.write_bytes(z.read_bytes()[:5000])
    with pytest.raises(TransientIOError, match="not a complete zip"):
        fetch.unzip_hgt(str(bad), str(tmp_path))
    assert not bad.exists()


def test_dry_run_prints_the_searches_and_the_inputs_block_is_a_valid_config(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({"region": {"bbox": [108.0, 38.0, 110.9, 40.4]},
                                        "dates": {"start": "2016-01-05", "end": "2016-01-06"},
                                        "stores": {"cube": "cube.zarr"}}))  # fmt: skip
    res = CliRunner().invoke(main, ["fetch", str(cfg_path), "--dest", str(tmp_path / "g"), "--dry-run", "-s", "smap", "-s", "dem"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [(p["source"], p["short_name"]) for p in out] == [("smap", "SPL3SMP"), ("dem", "SRTMGL3")]
    assert not (tmp_path / "g").exists()
    block = fetch.inputs_block(str(tmp_path / "g"), fetch.COLLECTIONS)
    raw = yaml.safe_load(cfg_path.read_text()) | {"inputs": block}
    cfg = config_mod.from_dict(raw)
    assert cfg.inputs.mod13a2.paths == (str(tmp_path / "g" / "mod13a2" / "*.hdf"),)
    assert cfg.inputs.dem.paths == (str(tmp_path / "g" / "dem" / "*.hgt"),)


def test_the_searches_are_valid_earthaccess_cmr_queries():
    """The real earthaccess query builder (no network) accepts every search dsm makes."""
    import inspect

    import earthaccess
    from earthaccess.search import DataGranules

    cfg = _cfg()
    params = fetch.search_parameters(cfg)
    assert {p["short_name"] for p in params} >= {"SPL3SMP", "MOD11A1", "MOD13A2", "SRTMGL3"}
    for p in params:
        query = DataGranules()
        for key, value in p.items():
            if key == "count":
                continue
            method = getattr(query, key)
            method(*value) if key in ("bounding_box", "temporal") else method(value)
        cmr = query.params
        assert cmr["short_name"] == p["short_name"]
        west, south, east, north = (float(v) for v in cmr["bounding_box"].split(","))
        lo0, la0, lo1, la1 = cfg.grid_region.lonlat_bounds
        assert (west, south, east, north) == pytest.approx((lo0, la0, lo1, la1), abs=1e-5)
    # the calls fetch makes exist with these keywords
    assert "strategy" in inspect.signature(earthaccess.login).parameters
    assert "show_progress" in inspect.signature(earthaccess.download).parameters
    assert fetch.credential_strategy({}) in ("netrc", "environment")


def test_credentials_are_checked_before_earthaccess_is_asked(tmp_path, monkeypatch):
    netrc = tmp_path / "my.netrc"
    env = {"HOME": str(tmp_path)}
    assert fetch.credentials_problem({**env, "EARTHDATA_USERNAME": "u", "EARTHDATA_PASSWORD": "p"}) is None
    assert fetch.credentials_problem({**env, "EARTHDATA_TOKEN": "t"}) is None
    assert f"there is no netrc file {tmp_path}/.netrc" in fetch.credentials_problem(env)
    netrc.write_text("machine urs.earthdata.nasa.gov login me\n")  # no password
    problem = fetch.credentials_problem({**env, "NETRC": str(netrc)})
    assert f"{netrc} has no 'machine urs.earthdata.nasa.gov' entry with a login and a password" in problem
    netrc.write_text("machine urs.earthdata.nasa.gov login me password secret\n")
    assert fetch.credentials_problem({**env, "NETRC": str(netrc)}) is None
    (tmp_path / ".netrc").write_text("machine urs.earthdata.nasa.gov\n  login me\n  password secret\n")
    assert fetch.credentials_problem(env) is None
    assert fetch.netrc_path({"NETRC": str(netrc), "HOME": "/nowhere"}) == str(netrc)
    for name in ("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "EARTHDATA_TOKEN", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="no NASA Earthdata login.*EARTHDATA_USERNAME and EARTHDATA_PASSWORD"):
        fetch.fetch(_cfg(), str(tmp_path / "g"))
    assert not (tmp_path / "g").exists()

