"""``dsm fetch --in-place``: Earthdata Cloud s3:// URLs written into a configuration, credentials by profile.

NASA's endpoints cannot be reached from here, so only the three earthaccess calls that go to the
network are replaced (``login``, ``search_data``, ``get_s3_credentials``); the granules they return
are earthaccess's own ``DataGranule`` objects built from CMR UMM-JSON records shaped as CMR returns
them, so ``data_links(access="direct")`` and the s3credentials endpoint lookup are earthaccess's.
The credentials path (an AWS profile whose ``credential_process`` prints what
``dsm earthdata-credentials`` prints) is exercised for real against the loopback S3 server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import warnings
from pathlib import Path

import earthaccess
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dsm import config as config_mod
from dsm.cli import main
from dsm.errors import ConfigError
from dsm.grid import Region
from dsm.ingest import fetch_cloud
from dsm.ingest.smap import read_smap
from dsm.ingest.work import options
from dsm.inplace import input_files
from dsm.testing.granules import SmapPass, spl3smp_filename, write_spl3smp

REGION = Region.around(109.0, 38.9, 2, 2)
DAYS = [dt.date(2016, 1, 5), dt.date(2016, 1, 6)]
NSIDC_CREDS = "https://data.nsidc.earthdatacloud.nasa.gov/s3credentials"
LP_CREDS = "https://data.lpdaac.earthdatacloud.nasa.gov/s3credentials"
LOGIN = {"EARTHDATA_USERNAME": "me", "EARTHDATA_PASSWORD": "pw-not-in-any-file", "EARTHDATA_TOKEN": None, "NETRC": None}


def _granule(provider: str, name: str, s3_folder: str | None, https_folder: str, creds: str,
             extra: tuple[str, ...] = ()) -> earthaccess.DataGranule:  # fmt: skip
    """An earthaccess DataGranule from a UMM-JSON record as CMR returns it (data, metadata and QA links)."""
    urls = [{"URL": f"{https_folder}/{name}", "Type": "GET DATA"}]
    urls += [{"URL": f"{https_folder}/{name}{x}", "Type": "EXTENDED METADATA"} for x in extra]
    if s3_folder is not None:
        urls += [{"URL": f"{s3_folder}/{n}", "Type": "GET DATA VIA DIRECT ACCESS"} for n in (name, *(name + x for x in extra))]
    urls.append({"URL": creds, "Type": "VIEW RELATED INFORMATION", "Description": "api endpoint to retrieve temporary credentials"})
    record = {"meta": {"concept-id": f"G1-{provider}", "provider-id": provider, "native-id": name},
              "umm": {"GranuleUR": name, "RelatedUrls": urls,
                      "DataGranule": {"ArchiveAndDistributionInformation": [{"Name": name, "SizeInBytes": 1000}]}}}  # fmt: skip
    with warnings.catch_warnings():  # earthaccess 0.17's own constructor calls its deprecated size()
        warnings.filterwarnings("ignore", "As of version 1.0", FutureWarning)
        return earthaccess.DataGranule(record, cloud_hosted=s3_folder is not None)


def _smap_granules(bucket: str = "s3://nsidc-cumulus-prod-protected/SMAP/SPL3SMP/009/2016/01") -> list:
    return [_granule("NSIDC_CPRD", spl3smp_filename(d), bucket, "https://data.nsidc.earthdatacloud.nasa.gov/x",
                     NSIDC_CREDS, extra=(".qa", ".xml")) for d in DAYS]  # fmt: skip


def _lst_granules(s3: bool = True) -> list:
    names = [f"MOD11A1.A2016{d.timetuple().tm_yday:03d}.h26v04.061.2021.hdf" for d in DAYS]
    folder = "s3://lp-prod-protected/MOD11A1.061" if s3 else None
    return [_granule("LPCLOUD", n, folder, "https://data.lpdaac.earthdatacloud.nasa.gov/x", LP_CREDS, (".xml",))
            for n in names]


@pytest.fixture
def network(monkeypatch):
    """earthaccess with its network calls replaced: what was asked is recorded in ``calls``."""
    calls: dict[str, list] = {"login": [], "search": [], "creds": []}
    answers = {"SPL3SMP": _smap_granules(), "MOD11A1": _lst_granules(), "creds": {}}

    class Auth:
        authenticated = True

    def login(strategy="all", **_):
        calls["login"].append(strategy)
        return Auth()

    def search_data(**params):
        calls["search"].append(params)
        return answers.get(params["short_name"], [])

    def get_s3_credentials(daac=None, provider=None, results=None):
        calls["creds"].append(provider)
        return answers["creds"]

    monkeypatch.setattr(earthaccess, "login", login)
    monkeypatch.setattr(earthaccess, "search_data", search_data)
    monkeypatch.setattr(earthaccess, "get_s3_credentials", get_s3_credentials)
    return calls, answers


def _write_config(folder: Path, **inputs) -> Path:
    raw = {"region": {"cells": [REGION.row0, REGION.col0, REGION.nrows, REGION.ncols]},
           "dates": {"start": DAYS[0].isoformat(), "end": DAYS[-1].isoformat()},
           "stores": {"cube": "cube.zarr"},
           "inputs": {"smap": {"paths": "granules/smap/*.h5", "overpass": "PM"}, "mod11a1": {"paths": "lst/*.hdf"},
                      "dem": {"paths": "dem/*.hgt"}, "soil": {"sand": "soil/sand.tif", "silt": "soil/silt.tif",
                                                               "clay": "soil/clay.tif"}, **inputs}}  # fmt: skip
    path = folder / "region.yaml"
    path.write_text("# my notes\n" + yaml.safe_dump(raw, sort_keys=False))
    return path


def test_in_place_writes_the_s3_urls_into_a_new_config_beside_the_given_one(tmp_path, network):
    calls, _ = network
    path = _write_config(tmp_path)
    before = path.read_bytes()
    res = CliRunner().invoke(main, ["fetch", str(path), "--in-place"], env=LOGIN)
    assert res.exit_code == 0, res.output
    out = tmp_path / "region.earthdata.yaml"
    smap_urls = [f"s3://nsidc-cumulus-prod-protected/SMAP/SPL3SMP/009/2016/01/{spl3smp_filename(d)}" for d in DAYS]
    # printed: the URLs (data files only, not .qa/.xml), the credentials call and the profiles
    assert all(u in res.output for u in smap_urls) and ".qa" not in res.output and ".xml" not in res.output
    assert "earthaccess.get_s3_credentials(provider='NSIDC_CPRD')" in res.output
    assert "credential_process = dsm earthdata-credentials LPCLOUD" in res.output
    assert "# dem: not written: SRTMGL3 tiles are zip files" in res.output
    assert f"wrote {out} (new; {path} unchanged)" in res.output
    assert [c["short_name"] for c in calls["search"]] == ["SPL3SMP", "MOD11A1"]  # dem is not searched
    assert path.read_bytes() == before
    # the written file: dsm's Config, pointing at the URLs, with the other settings kept
    cfg = config_mod.load(out)
    assert cfg.inputs.smap.paths == tuple(smap_urls) and cfg.inputs.smap.overpass == "PM"
    assert cfg.inputs.mod11a1.paths[0] == "s3://lp-prod-protected/MOD11A1.061/MOD11A1.A2016005.h26v04.061.2021.hdf"
    assert dict(cfg.inputs.smap.storage_options) == {"profile": "earthdata-nsidc-cprd",
                                                     "client_kwargs": {"region_name": "us-west-2"}}
    assert cfg.inputs.mod11a1.storage_options["profile"] == "earthdata-lpcloud"
    original = config_mod.load(path)
    assert cfg.inputs.dem == original.inputs.dem and cfg.inputs.soil == original.inputs.soil  # same files
    assert cfg.stores.cube == original.stores.cube and cfg.dates == original.dates
    text = out.read_text()
    assert text.startswith(f"# Written by `dsm fetch {path} --in-place`") and "# my notes" not in text
    assert "[profile earthdata-nsidc-cprd]" in text and "pw-not-in-any-file" not in text
    # never replaced silently; never CONFIG itself; only in CONFIG's folder
    again = CliRunner().invoke(main, ["fetch", str(path), "--in-place"], env=LOGIN)
    assert again.exit_code == 2 and f"{out} exists: add --overwrite" in again.output
    assert len(calls["search"]) == 2, "refused before any search"
    replaced = CliRunner().invoke(main, ["fetch", str(path), "--in-place", "--overwrite"], env=LOGIN)
    assert replaced.exit_code == 0 and "replaced" in replaced.output
    same = CliRunner().invoke(main, ["fetch", str(path), "--in-place", "--output", str(path)], env=LOGIN)
    assert same.exit_code == 2 and "never rewrites CONFIG" in same.output and path.read_bytes() == before
    (tmp_path / "elsewhere").mkdir()
    other = CliRunner().invoke(main, ["fetch", str(path), "--in-place", "--output", str(tmp_path / "elsewhere" / "c.yaml")],
                               env=LOGIN)  # fmt: skip
    assert other.exit_code == 2 and "relative paths" in other.output
    assert CliRunner().invoke(main, ["fetch", str(path)], env=LOGIN).exit_code == 2  # neither --dest nor --in-place
    summary = fetch_cloud.CloudSummary({"smap": fetch_cloud.CloudSource("smap", "NSIDC_CPRD", None, smap_urls)})
    with pytest.raises(ConfigError, match="exists: add --overwrite"):  # the library refuses too, not only the CLI
        fetch_cloud.write_cloud_config(str(path), summary)


def test_shared_storage_options_for_another_store_are_cancelled(tmp_path, network):
    path = _write_config(tmp_path, storage_options={"endpoint_url": "https://s3.example.org", "key": "K", "anon": True,
                                                    "default_block_size": 1024})  # fmt: skip
    res = CliRunner().invoke(main, ["fetch", str(path), "--in-place", "-s", "smap"], env=LOGIN)
    assert res.exit_code == 0, res.output
    cfg = config_mod.load(tmp_path / "region.earthdata.yaml")
    merged = options(cfg.inputs, cfg.inputs.smap)  # what the ingest passes to fsspec
    assert merged["endpoint_url"] is None and merged["key"] is None and merged["anon"] is False
    assert merged["profile"] == "earthdata-nsidc-cprd" and merged["default_block_size"] == 1024
    assert cfg.inputs.mod11a1.paths == (str(tmp_path / "lst" / "*.hdf"),)  # not asked for: unchanged


def test_a_collection_not_in_the_cloud_and_dem_are_named(tmp_path, network):
    _, answers = network
    answers["MOD11A1"] = _lst_granules(s3=False)
    path = _write_config(tmp_path)
    res = CliRunner().invoke(main, ["fetch", str(path), "--in-place"], env=LOGIN)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "mod11a1: granule MOD11A1.A2016005.h26v04.061.2021.hdf of MOD11A1 v061 has no s3:// link" in res.output
    assert not (tmp_path / "region.earthdata.yaml").exists()
    res = CliRunner().invoke(main, ["fetch", str(path), "--in-place", "-s", "dem"], env=LOGIN)
    assert res.exit_code == 2 and "--in-place -s dem: SRTMGL3 tiles are zip files" in res.output
    answers["SPL3SMP"], answers["MOD11A1"] = [], []
    res = CliRunner().invoke(main, ["fetch", str(path), "--in-place"], env=LOGIN)
    assert res.exit_code == 2 and "no granule of" in res.output and not (tmp_path / "region.earthdata.yaml").exists()


def test_without_a_login_one_message_names_the_variables_and_netrc(tmp_path, network):
    calls, _ = network
    path = _write_config(tmp_path)
    env = {"HOME": str(tmp_path), "NETRC": None, "EARTHDATA_USERNAME": None, "EARTHDATA_PASSWORD": None,
           "EARTHDATA_TOKEN": None}  # fmt: skip
    for args in (["fetch", str(path), "--in-place"], ["earthdata-credentials", "NSIDC_CPRD"]):
        res = CliRunner().invoke(main, args, env=env)
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert res.output.startswith("error: no NASA Earthdata login")
        assert "EARTHDATA_USERNAME and EARTHDATA_PASSWORD" in res.output and "~/.netrc" in res.output
    assert calls == {"login": [], "search": [], "creds": []}, "nothing asked of Earthdata"


def test_credentials_are_printed_for_credential_process_or_refused_clearly(network):
    calls, answers = network
    res = CliRunner().invoke(main, ["earthdata-credentials", "NSIDC_CPRD"], env=LOGIN)
    assert res.exit_code == 2 and "gave no S3 credentials for provider 'NSIDC_CPRD'" in res.output
    assert "EARTHDATA_USERNAME and EARTHDATA_PASSWORD" in res.output and "EULA" in res.output
    answers["creds"] = {"accessKeyId": "ASIAEXAMPLE", "secretAccessKey": "s", "sessionToken": "t",
                        "expiration": "2026-12-04 23:45:00+00:00"}  # the s3credentials endpoint's answer
    res = CliRunner().invoke(main, ["earthdata-credentials", "NSIDC_CPRD"], env=LOGIN)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s",
                                      "SessionToken": "t", "Expiration": "2026-12-04T23:45:00Z"}  # fmt: skip
    assert calls["creds"] == ["NSIDC_CPRD", "NSIDC_CPRD"] and calls["login"] == ["environment", "environment"]
    with pytest.raises(ConfigError, match="no S3 credentials"):
        fetch_cloud.process_credentials({"accessKeyId": "", "secretAccessKey": "s"}, "LPCLOUD")


@pytest.mark.slow
def test_the_written_profile_reads_the_granules_in_place(tmp_path, network, s3, monkeypatch):
    """The written config read by dsm's in-place reader, its credentials from a credential_process
    that prints what `dsm earthdata-credentials` printed (here: the loopback server's keys)."""
    _, answers = network
    bucket = s3.make_bucket("nsidc-cloud")
    fs = s3.filesystem()
    rng = np.random.default_rng(3)
    for d in DAYS:
        sm = (0.05 + 0.4 * rng.random((406, 964))).astype(np.float32)
        write_spl3smp(tmp_path / spl3smp_filename(d), d, SmapPass(sm))
        fs.put_file(str(tmp_path / spl3smp_filename(d)), f"nsidc-cloud/SPL3SMP/{spl3smp_filename(d)}")
    answers["SPL3SMP"] = _smap_granules(f"{bucket}/SPL3SMP")
    path = _write_config(tmp_path)
    assert CliRunner().invoke(main, ["fetch", str(path), "--in-place", "-s", "smap"], env=LOGIN).exit_code == 0
    cfg = config_mod.load(tmp_path / "region.earthdata.yaml")
    answers["creds"] = {"accessKeyId": s3.key, "secretAccessKey": s3.secret, "expiration": "2099-01-01 00:00:00+00:00"}
    printed = CliRunner().invoke(main, ["earthdata-credentials", "NSIDC_CPRD"], env=LOGIN)
    assert printed.exit_code == 0, printed.output
    (tmp_path / "creds.json").write_text(printed.output)
    ran = tmp_path / "ran"
    script = tmp_path / "process.py"
    script.write_text(f"import pathlib, sys\nsys.stdout.write(pathlib.Path({str(tmp_path / 'creds.json')!r}).read_text())\n"
                      f"with open({str(ran)!r}, 'a') as f:\n    f.write('x')\n")  # fmt: skip
    profile = [line for line in fetch_cloud.aws_profile_lines(["NSIDC_CPRD"]) if not line.startswith("credential_process")]
    profile.insert(1, f"credential_process = {sys.executable} {script}")
    (tmp_path / "aws_config").write_text("\n".join(profile) + "\n")
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws_config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)  # the only change a real run in us-west-2 does not need
    so = {**options(cfg.inputs, cfg.inputs.smap), "skip_instance_cache": True}
    assert "key" not in so and "secret" not in so
    with input_files(list(cfg.inputs.smap.paths), so, in_place=True) as files:
        assert not files.failed, files.failed
        assert set(files.remote) == set(cfg.inputs.smap.paths)
        for url, d in zip(cfg.inputs.smap.paths, DAYS, strict=True):
            local = tmp_path / spl3smp_filename(d)
            remote, day = read_smap(files.paths[url], REGION, overpass="AM")
            expected, _ = read_smap(local, REGION, overpass="AM")
            assert day == d and np.array_equal(remote.values, expected.values, equal_nan=True)
    assert ran.read_text().startswith("x"), "the credentials came from the profile's credential_process"
