"""Store fingerprints: the settings that determine a store's bytes, and the refusal to mix them."""

from __future__ import annotations

import pytest

from dsm import config as config_mod
from dsm import ledger
from dsm.errors import StoreError
from dsm.fingerprint import check_settings, differences, fingerprint, record, settings_of
from dsm.storeref import StoreRef
from dsm.twin import demo_config


def _config(**changes):
    raw = demo_config("tiny")
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return config_mod.from_dict(raw)


def test_the_same_settings_give_the_same_fingerprint_and_execution_settings_do_not_count():
    a = _config()
    b = _config(cluster__n_workers=7, training__concurrent_periods=5, run__lock_ttl=999.0,
                dates__end="2016-07-20", output__predict_threads=4)
    for kind in ("models", "products", "cog"):
        assert record(a, kind) == record(b, kind)


@pytest.mark.parametrize(("change", "kind", "key"), [
    ({"output__gap_free": False}, "products", "output.gap_free"),
    ({"output__residual_correction": True}, "products", "output.residual_correction"),
    ({"output__uncertainty": "none"}, "models", "output.uncertainty"),
    ({"training__fusion__smooth": "none"}, "products", "training.fusion.smooth"),
    ({"training__fusion__max_rounds": 50}, "models", "training.fusion.max_rounds"),
    ({"training__method": "rao2022"}, "models", "training.method"),
    ({"output__cog_compress": "ZSTD"}, "cog", "output.cog_compress"),
    ({"rain__predictors": "off"}, "products", "rain.predictors"),
])
def test_a_setting_that_changes_the_bytes_changes_the_fingerprint(change, kind, key):
    a, b = _config(), _config(**change)
    assert fingerprint(settings_of(a, kind)) != fingerprint(settings_of(b, kind))
    assert any(line.startswith(key + ":") for line in differences(settings_of(a, kind), settings_of(b, kind)))


def test_the_other_methods_settings_do_not_count():
    fusion = _config(training__grids={"rf": {"n_estimators": [7]}})
    assert record(fusion, "models") == record(_config(), "models")
    paper = _config(training__method="rao2022")
    assert record(paper, "models") == record(_config(training__method="rao2022", training__fusion__max_rounds=50),
                                             "models")
    assert not any(k.startswith("training.fusion") for k in settings_of(paper, "models"))


def test_a_cog_setting_does_not_touch_the_products_fingerprint():
    assert record(_config(output__export_crs="EPSG:4326"), "products") == record(_config(), "products")


def test_resuming_with_other_settings_is_refused_naming_every_key():
    made = record(_config(), "products")
    check_settings(made, _config(), "products", "sm.zarr", "dsm predict C --overwrite")  # same: accepted
    check_settings(None, _config(output__gap_free=False), "products", "sm.zarr", "x")  # nothing recorded: accepted
    with pytest.raises(StoreError) as err:
        check_settings(made, _config(output__gap_free=False, output__residual_correction=True), "products", "sm.zarr",
                       "dsm predict C --overwrite")
    msg = str(err.value)
    assert "output.gap_free: True -> False" in msg and "output.residual_correction: False -> True" in msg
    assert "sm.zarr" in msg and "dsm predict C --overwrite" in msg


def _stores(cfg, tmp_path):
    stores = {**cfg.stores.model_dump(), "cube": str(tmp_path / "cube.zarr"), "models": str(tmp_path / "models"),
              "output": str(tmp_path / "sm.zarr")}
    return cfg.model_copy(update={"stores": cfg.stores.model_copy(update=stores)})


def test_an_output_store_is_not_resumed_with_other_settings(tmp_path):
    from dsm.stages.predict import open_or_create_output

    made = _stores(_config(), tmp_path)
    open_or_create_output(made)
    open_or_create_output(made)  # the same settings resume
    with pytest.raises(StoreError, match=r"output.residual_correction: False -> True.*dsm predict CONFIG --overwrite"):
        open_or_create_output(_stores(_config(output__residual_correction=True), tmp_path))
    other = _stores(_config(output__gap_free=False), tmp_path)
    ds = open_or_create_output(other, overwrite=True)  # starting again records the new settings
    assert ledger.store_records(ds.attrs).settings == record(other, "products")


def test_a_model_store_is_bound_to_the_settings_it_was_trained_with(tmp_path):
    from dsm.models.store import ModelStore
    from dsm.stages.train import bind_settings

    store = ModelStore(StoreRef(str(tmp_path / "models")))
    bind_settings(store, _config(), replace=False)
    assert store.read_settings() == record(_config(), "models")
    bind_settings(store, _config(cluster__n_workers=9), replace=False)  # execution settings: the same store
    bind_settings(store, _config(training__fusion__anomaly_window_days=5), replace=False)  # applied at prediction
    with pytest.raises(StoreError, match=r"training.fusion.max_rounds: 600 -> 50.*--force"):
        bind_settings(store, _config(training__fusion__max_rounds=50), replace=False)
    bind_settings(store, _config(training__fusion__max_rounds=50), replace=True)
    assert store.read_settings() == record(_config(training__fusion__max_rounds=50), "models")


def test_two_runs_never_train_into_one_model_store(tmp_path):
    from dsm.runlock import LockError, RunLock
    from dsm.stages.train import train

    cfg = _stores(_config(), tmp_path)
    with RunLock(StoreRef(str(tmp_path / "models.lock")), ttl=60, heartbeat=10, run_id="other-config"):
        with pytest.raises(LockError, match="locked by run other-config"):
            train(cfg, None)
    assert not (tmp_path / "models").exists()


_INPUTS = {"smap": {"paths": ["/data/smap/"], "qc_mask": 1},
           "geotiff": {"ndvi": {"paths": ["/data/ndvi/*.tif"], "scale": 0.0001}},
           "soil": {"sand": "/data/sand.tif", "silt": "/data/silt.tif", "clay": "/data/clay.tif"}}


def test_the_cube_fingerprint_counts_value_settings_not_where_the_files_are():
    base = _config(inputs=_INPUTS)
    moved = _config(inputs={**_INPUTS, "storage_options": {"anon": True},
                            "smap": {**_INPUTS["smap"], "paths": ["s3://bucket/smap/"]},
                            "soil": {"sand": "s3://b/sand.tif", "silt": "s3://b/silt.tif", "clay": "s3://b/clay.tif"}})
    assert record(moved, "cube") == record(base, "cube")
    assert record(_config(inputs=_INPUTS, training__fusion__max_rounds=50), "cube") == record(base, "cube")
    for change, key in (({"smap": {**_INPUTS["smap"], "qc_mask": 0}}, "inputs.smap.qc_mask: 1 -> 0"),
                        ({"geotiff": {"ndvi": {"paths": ["/d/*.tif"], "scale": 1.0}}}, "inputs.geotiff.ndvi.scale"),
                        ({"soil": {"soilgrids": "/data/soilgrids/"}}, "inputs.soil.soilgrids: False -> True")):
        other = _config(inputs={**_INPUTS, **change})
        assert record(other, "cube") != record(base, "cube")
        assert any(d.startswith(key) for d in differences(settings_of(base, "cube"), settings_of(other, "cube")))
    assert record(_config(rain__max_gap_days=9), "cube") != record(_config(), "cube")
    assert settings_of(_config(), "cube")["twin.seed"] == 42  # no inputs: the twin's settings, defaults included
    assert record(_config(twin={"seed": 42}), "cube") == record(_config(), "cube")


def test_sources_are_recorded_as_they_write_and_held_to_their_settings():
    from dsm.fingerprint import cube_update

    cfg = _config(inputs=_INPUTS)
    first = cube_update(None, cfg, "cube.zarr", "x", wrote=["inputs.smap"])  # the GeoTIFFs wrote nothing
    assert first["settings"]["inputs.smap.qc_mask"] == 1 and not any("geotiff" in k for k in first["settings"])
    fixed = _config(inputs={**_INPUTS, "geotiff": {"ndvi": {"paths": ["/d/"], "scale": 0.001}}})
    both = cube_update(first, fixed, "cube.zarr", "x", wrote=["inputs.geotiff.ndvi"])  # not refused: never written
    assert both["settings"]["inputs.geotiff.ndvi.scale"] == 0.001 and both["settings"]["inputs.smap.qc_mask"] == 1
    assert cube_update(both, _config(inputs={"smap": {"paths": ["/x/"]}}), "c", "x") == both  # a source alone: kept
    with pytest.raises(StoreError, match=r"cube store c.zarr .*inputs.smap.qc_mask: 1 -> 0.*ingesting would mix "
                                         r"them.*dsm ingest CONFIG --overwrite"):
        cube_update(both, _config(inputs={"smap": {"paths": ["/x/"], "qc_mask": 0}}), "c.zarr",
                    "dsm ingest CONFIG --overwrite")
    assert cube_update(None, cfg, "c", "x", wrote=["rain"])["settings"] == {"rain.max_gap_days": 3, "rain.spinup_days": 45}


def test_models_and_products_are_bound_to_the_cube_they_were_made_from(tmp_path):
    from dsm.models.store import ModelStore
    from dsm.stages.predict import open_or_create_output
    from dsm.stages.train import bind_settings

    store = ModelStore(StoreRef(str(tmp_path / "models")))
    bind_settings(store, _config(), replace=False, cube="aaaa")
    bind_settings(store, _config(), replace=False, cube="aaaa")
    with pytest.raises(StoreError, match=r"cube: made from a cube of fingerprint aaaa, the cube .* now has bbbb \("
                                         r"rebuilt, or inputs added since\).*dsm train CONFIG --force"):
        bind_settings(store, _config(), replace=False, cube="bbbb")
    with pytest.raises(StoreError, match=r"fingerprint aaaa, the cube .* now has bbbb"):
        check_settings(store.read_settings(), _config(), "models", store.url, "retrain", "bbbb")
    old = {**record(_config(), "models")}  # recorded before cubes had fingerprints: not checked against one
    check_settings(old, _config(), "models", store.url, "retrain", "bbbb")
    made = _stores(_config(), tmp_path)
    open_or_create_output(made, cube="aaaa")
    with pytest.raises(StoreError, match=r"fingerprint aaaa, the cube .* now has bbbb.*dsm predict CONFIG --overwrite"):
        open_or_create_output(made, cube="bbbb")


def test_a_built_twin_is_not_reused_for_another_twin_configuration(tiny_twin):
    from dsm.chain import _stage_cube

    raw = {"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
           "stores": {"cube": tiny_twin.cube.url, "truth": tiny_twin.truth.url, "stations": tiny_twin.stations.url}}
    same = config_mod.from_dict({**raw, "twin": {"seed": 7}})
    assert _stage_cube(same, None, print, None).message == "twin already built"
    with pytest.raises(StoreError, match=r"twin.seed: 7 -> 8.*dsm twin CONFIG --overwrite"):
        _stage_cube(config_mod.from_dict({**raw, "twin": {"seed": 8}}), None, print, None)
