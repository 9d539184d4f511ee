"""The one store handle (dsm.storeref.StoreRef) and where the configuration makes it."""

from __future__ import annotations

import pickle

import pytest

from dsm.config import Config, from_dict
from dsm.errors import ConfigError
from dsm.storeref import StoreRef

OPTIONS = {"endpoint_url": "http://127.0.0.1:8333", "client_kwargs": {"region_name": "eu-1"}, "key": "AKIA-SECRET"}


def test_a_ref_is_hashable_picklable_and_equal_by_url_and_options():
    ref = StoreRef("s3://bucket/sm.zarr", OPTIONS)
    same = StoreRef("s3://bucket/sm.zarr", {"key": "AKIA-SECRET", "client_kwargs": {"region_name": "eu-1"},
                                            "endpoint_url": "http://127.0.0.1:8333"})
    assert ref == same and hash(ref) == hash(same) and len({ref, same}) == 1
    assert ref != StoreRef("s3://bucket/sm.zarr", {**OPTIONS, "key": "other"})
    assert ref != StoreRef("s3://bucket/other.zarr", OPTIONS) and ref != "s3://bucket/sm.zarr"
    back = pickle.loads(pickle.dumps(ref))
    assert back == ref and back.options == OPTIONS and isinstance(back, StoreRef)


def test_its_options_cannot_change_nor_does_it_share_the_callers_mapping():
    given = {"anon": False, "client_kwargs": {"region_name": "eu-1"}}
    ref = StoreRef("s3://bucket/cube.zarr", given)
    given["anon"] = True
    given["client_kwargs"]["region_name"] = "us-1"
    assert ref.options == {"anon": False, "client_kwargs": {"region_name": "eu-1"}}
    with pytest.raises(TypeError, match="immutable"):
        ref.options["anon"] = True  # type: ignore[index]
    with pytest.raises(TypeError, match="immutable"):
        ref.options["client_kwargs"]["region_name"] = "x"
    with pytest.raises(AttributeError):
        ref.url = "elsewhere"  # type: ignore[misc]


def test_zarr_gets_no_options_for_a_plain_local_path():
    assert StoreRef("/data/cube.zarr", OPTIONS).zarr_options is None
    assert StoreRef("s3://bucket/cube.zarr", OPTIONS).zarr_options == OPTIONS
    assert StoreRef("s3://bucket/cube.zarr").zarr_options is None
    assert StoreRef("/data/cube.zarr").is_local and StoreRef("file:///data/cube.zarr").is_local
    assert not StoreRef("s3://bucket/cube.zarr").is_local
    assert StoreRef("/data/cube.zarr").local_path == StoreRef("file:///data/cube.zarr").local_path == "/data/cube.zarr"
    with pytest.raises(ValueError, match="not a local path"):
        StoreRef("s3://bucket/cube.zarr").local_path  # noqa: B018


def test_derived_locations_keep_the_options():
    ref = StoreRef("s3://bucket/out/sm.zarr/", OPTIONS)
    assert ref.join("_ledger", "/predict/2016-06-09.json") == StoreRef(
        "s3://bucket/out/sm.zarr/_ledger/predict/2016-06-09.json", OPTIONS)
    assert ref.sibling("skill.json") == StoreRef("s3://bucket/out/skill.json", OPTIONS)
    assert StoreRef("sm.zarr").sibling("netcdf").url == "./netcdf"
    assert ref.at("s3://other/x") == StoreRef("s3://other/x", OPTIONS)
    assert ref.name == "sm.zarr" and str(ref) == ref.url
    assert StoreRef.of("s3://b/c.zarr") == StoreRef("s3://b/c.zarr") and StoreRef.of(ref) is ref


def test_its_repr_never_shows_the_options_which_may_hold_secrets():
    assert "AKIA" not in repr(StoreRef("s3://bucket/sm.zarr", OPTIONS))
    assert "s3://bucket/sm.zarr" in repr(StoreRef("s3://bucket/sm.zarr", OPTIONS))


def test_a_ref_needs_a_location():
    with pytest.raises(TypeError, match="non-empty path or URL"):
        StoreRef("")
    with pytest.raises(TypeError, match="non-empty path or URL"):
        StoreRef(None)  # type: ignore[arg-type]


def test_fs_finds_the_file_system_and_path(tmp_path):
    fs, path = StoreRef(f"{tmp_path}/a/").fs()
    assert path == str(tmp_path / "a") and fs.protocol[0] == "file"


def _config(**stores: str) -> Config:
    return from_dict({"region": {"cells": [74, 772, 2, 2]}, "dates": {"start": "2016-06-09", "end": "2016-06-30"},
                             "stores": {"cube": "s3://b/cube.zarr", **stores, "storage_options": OPTIONS}})


def test_the_configuration_names_each_store_with_its_options():
    config = _config(output="s3://b/run/sm.zarr", cog="s3://b/run/cog", models="s3://b/run/models")
    assert config.stores.ref("cube") == StoreRef("s3://b/cube.zarr", OPTIONS)
    assert config.stores.ref("output") == StoreRef("s3://b/run/sm.zarr", OPTIONS)
    assert config.stores.ref("stac") == StoreRef("s3://b/run/cog/stac", OPTIONS)  # default under stores.cog
    assert config.stores.ref("netcdf") == StoreRef("s3://b/run/netcdf", OPTIONS)  # default beside stores.output
    assert config.stores.at("s3://b/run/skill.json") == StoreRef("s3://b/run/skill.json", OPTIONS)
    explicit = _config(output="s3://b/sm.zarr", stac="s3://c/stac", netcdf="s3://c/nc")
    assert explicit.stores.ref("stac").url == "s3://c/stac" and explicit.stores.ref("netcdf").url == "s3://c/nc"


@pytest.mark.parametrize(("name", "hint"), [("models", "stores.models is not set"),
                                             ("stac", "stores.stac is not set (or stores.cog"),
                                             ("netcdf", "stores.netcdf is not set (or stores.output")])
def test_an_unset_store_is_a_config_error_naming_the_setting(name, hint):
    with pytest.raises(ConfigError, match=hint.replace("(", r"\(").replace(".", r"\.")):
        _config().stores.ref(name)


def test_the_runs_own_store_is_the_output_else_the_cube():
    assert _config(output="s3://b/run/sm.zarr").stores.primary() == StoreRef("s3://b/run/sm.zarr", OPTIONS)
    assert _config().stores.primary() == StoreRef("s3://b/cube.zarr", OPTIONS)


def test_open_reads_the_file_with_its_options(tmp_path):
    (tmp_path / "a.json").write_text('{"x": 1}')
    with StoreRef(str(tmp_path / "a.json")).open("r") as f:
        assert f.read() == '{"x": 1}'
    with pytest.raises(FileNotFoundError), StoreRef(str(tmp_path / "none.json")).open("r"):
        pass
