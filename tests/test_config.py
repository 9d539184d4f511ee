"""The configuration: one YAML file -> one validated, immutable object; errors name the key."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pydantic
import pytest
import yaml

from dsm import config
from dsm.errors import ConfigError


def _raw(**over):
    raw = {
        "region": {"bbox": [108.0, 38.0, 110.0, 40.0]},
        "dates": {"start": "2016-01-01", "end": "2016-03-31"},
        "stores": {"cube": "s3://bucket/cube.zarr", "truth": "truth.zarr",
                   "storage_options": {"endpoint_url": "http://127.0.0.1:9000"}},
    }
    for key, value in over.items():
        section, _, leaf = key.partition("__")
        if leaf:
            raw.setdefault(section, {})[leaf] = value
        else:
            raw[section] = value
    return raw


def _write(tmp_path: Path, raw) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_a_valid_file_loads_into_an_immutable_object(tmp_path):
    cfg = config.load(_write(tmp_path, _raw()))
    assert cfg.dates.start == dt.date(2016, 1, 1)
    assert cfg.grid_region.ncols >= 5
    assert cfg.stores.cube == "s3://bucket/cube.zarr"  # URLs untouched
    assert cfg.stores.truth == str(tmp_path / "truth.zarr")  # paths relative to the file
    assert cfg.predictors == config.PAPER_PREDICTORS and len(cfg.predictors) == 14
    assert cfg.chunks.space % 36 == 0
    with pytest.raises(pydantic.ValidationError):
        cfg.chunks = None  # type: ignore[misc]
    # round trip through YAML
    again = config.from_dict(yaml.safe_load(config.dump(cfg)))
    assert again == cfg


def test_the_configuration_is_immutable_all_the_way_down_and_loading_changes_nothing(tmp_path):
    import copy
    import pickle

    from dsm.config.training import DEFAULT_GRIDS

    raw = _raw()
    before = copy.deepcopy(raw)
    defaults = copy.deepcopy(DEFAULT_GRIDS)
    cfg = config.from_dict(raw, base=tmp_path)
    assert raw == before  # the caller's mapping is not rewritten (paths made absolute on a copy)
    assert cfg.stores.truth == str(tmp_path / "truth.zarr")
    grid = cfg.training.grids["xgb"]
    for change in (lambda: cfg.stores.storage_options.update(endpoint_url="http://elsewhere"),
                   lambda: cfg.training.grids.pop("xgb"),
                   lambda: grid.__setitem__("max_depth", [1]),
                   lambda: grid["max_depth"].append(99)):
        with pytest.raises(TypeError, match="immutable"):
            change()
    assert DEFAULT_GRIDS == defaults  # the module's defaults are not shared with the object
    assert cfg.stores.storage_options == {"endpoint_url": "http://127.0.0.1:9000"}
    assert pickle.loads(pickle.dumps(cfg)) == cfg == copy.deepcopy(cfg)  # to the workers and back
    dumped = cfg.model_dump()
    assert type(dumped["training"]["grids"]) is dict and type(dumped["training"]["grids"]["xgb"]["max_depth"]) is list
    dumped["training"]["grids"]["xgb"]["max_depth"].append(99)  # a dump is the caller's own copy
    assert 99 not in cfg.training.grids["xgb"]["max_depth"]


@pytest.mark.parametrize(
    "over, key, problem",
    [
        ({"chunks": {"space": 100}}, "chunks.space", "not a positive multiple of 36"),
        ({"dates__end": "2015-01-01"}, "dates", "wrong order"),
        ({"region": {"bbox": [0, -89.9, 1, -88]}}, "region", "beyond the EASE-Grid 2.0"),
        ({"region": {"cells": [400, 0, 10, 10]}}, "region", "outside the EASE-Grid 2.0"),
        ({"region": {}}, "region", "exactly one of 'bbox' or 'cells'"),
        ({"predictors": ["lst", "soil_colour"]}, "predictors", "unknown predictor"),
        ({"stores__colour": "red"}, "stores.colour", "unknown key; stores takes: cube (required), truth, models"),
        ({"inputs": {"smpa": {"paths": "s/*.h5"}}}, "inputs.smpa",
         "unknown key; did you mean 'smap'? inputs takes: storage_options, smap, mod11a1, mcd43, mod15a2h"),
        ({"inputs": {"smap": "granules/*.h5"}}, "inputs.smap",
         "Input should be a valid dictionary; inputs.smap takes: paths (required), storage_options, overpass"),
        ({"inputs": {"mcd43": {"paths": "a/*.hdf", "albdo": "wsa"}}}, "inputs.mcd43.albdo",
         "unknown key; did you mean 'albedo'? inputs.mcd43 takes: paths (required)"),
        ({"inputs": {"geotiff": "appeears/*.tif"}}, "inputs.geotiff",
         "inputs.geotiff maps a name to a mapping of: paths (required), storage_options"),
        ({"training": {"fusion": 3}}, "training.fusion", "training.fusion takes: grid, max_rounds, cv_folds"),
        ({"colour": "red"}, "colour", "unknown key; did you mean 'cluster'? the top level takes: region (required)"),
        ({"validation": {"stations": [{"path": "s.csv", "colums": {}}]}}, "validation.stations[0].colums",
         "unknown key; did you mean 'columns'? validation.stations[0] takes: path (required), format, network"),
        ({"validation": {"stations": [{"path": "s.csv", "columns": {"vaule": "SM"}}]}},
         "validation.stations[0].columns", "'vaule' is not one of dsm's column names; did you mean 'value'?"),
        ({"validation": {"stations": [{"path": "s.zip", "format": "ismn", "columns": {"value": "SM"}}]}},
         "validation.stations[0]", "ISMN files have a fixed layout: remove columns or set format: csv"),
        ({"validation": {"weather_columns": {"precip": "PRCP"}}}, "validation.weather_columns",
         "'precip' is not one of dsm's column names; did you mean 'precip_mm'?"),
        ({"cluster": {"address": "localhost:8786"}}, "cluster.address", "tcp://host:port"),
        ({"dates__start": "yesterday"}, "dates.start", "valid date"),
        ({"stores": {}}, "stores.cube", "Field required"),
    ],
)
def test_bad_settings_are_named(tmp_path, over, key, problem):
    path = _write(tmp_path, _raw(**over))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    text = str(info.value)
    assert str(path) in text and key in text and problem in text


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("region: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        config.load(bad)


# The examples of the README section "Your own region from real data", verbatim.
def _readme_yaml_blocks(section: str) -> list[str]:
    """The ```yaml blocks of one README section, in order."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", body, flags=re.S)


README_INPUTS, README_GEOTIFF = _readme_yaml_blocks("Your own region from real data")[:2]


def test_the_readme_inputs_examples_are_valid_configurations(tmp_path):
    from dsm.filedates import date_from_name

    path = _write(tmp_path, yaml.safe_load(README_INPUTS))
    cfg = config.load(path)
    i = cfg.inputs
    unset = [k for k in config.InputsConfig.model_fields if k != "storage_options" and getattr(i, k) in (None, {})]
    # every source but geotiff and reflectance (the second example) and stac (the third) is set: a new one must be added
    assert unset == ["geotiff", "reflectance", "stac"]
    assert i.smap.paths == (str(tmp_path / "granules/smap"),) and i.smap.overpass == "AM"
    assert i.soil.scale == 0.1 and i.soil.clay == str(tmp_path / "soil/clay_0-5cm_mean.tif")
    assert i.precip.product == "imerg" and i.mcd43.albedo == "wsa"
    v = cfg.validation
    assert v.stations[1].columns["value"] == "vwc_5cm" and v.weather_columns["tair_c"] == "TAVG"
    raw = yaml.safe_load(README_INPUTS)
    raw["inputs"].update(yaml.safe_load(README_GEOTIFF)["inputs"])
    alt = config.from_dict(raw, base=tmp_path).inputs
    assert alt.mod13a2 is None and set(alt.geotiff) == {"ndvi", "evi"}
    ndvi = alt.geotiff["ndvi"]
    assert date_from_name("MOD13A2.061__1_km_16_days_NDVI_doy2016161_aid0001.tif", ndvi.date_regex) == dt.date(2016, 6, 9)
    assert ndvi.scale == 0.0001 and ndvi.nodata == -3000
    assert alt.dem.paths[0].startswith("s3://copernicus-dem-30m/") and alt.dem.storage_options == {"anon": True}
    assert alt.precip.product == "chirps"
    assert alt.mod09a1 is None and alt.reflectance.scale == 0.0001 and alt.reflectance.state is not None
    assert alt.soil.soilgrids == "https://files.isric.org/soilgrids/latest/data/" and alt.soil.sand is None
    raw["inputs"]["mod09a1"] = {"paths": "granules/mod09a1/*.hdf"}  # why the example sets mod09a1: null
    with pytest.raises(ConfigError, match="ndwi, lswi and nsdsi already come from mod09a1"):
        config.from_dict(raw, base=tmp_path)
    raw["inputs"]["mod09a1"] = None
    raw["inputs"]["mod13a2"] = {"paths": "granules/mod13a2/*.hdf"}  # why the example sets mod13a2: null
    with pytest.raises(ConfigError, match="already comes from a MODIS source"):
        config.from_dict(raw, base=tmp_path)
