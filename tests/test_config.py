"""The configuration: one YAML file -> one validated, immutable object; errors name the key."""

from __future__ import annotations

import datetime as dt
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


@pytest.mark.parametrize(
    "over, key, problem",
    [
        ({"chunks": {"space": 100}}, "chunks.space", "not a positive multiple of 36"),
        ({"dates__end": "2015-01-01"}, "dates", "wrong order"),
        ({"region": {"bbox": [0, -89.9, 1, -88]}}, "region", "beyond the EASE-Grid 2.0"),
        ({"region": {"cells": [400, 0, 10, 10]}}, "region", "outside the EASE-Grid 2.0"),
        ({"region": {}}, "region", "exactly one of 'bbox' or 'cells'"),
        ({"predictors": ["lst", "soil_colour"]}, "predictors", "unknown predictor"),
        ({"stores__colour": "red"}, "stores.colour", "Extra inputs are not permitted"),
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
