"""The typed cards of the paper's method (dsm.models.period_cards, dsm.models.variant_cards): one
reader and one writer each, stored bytes unchanged, read-only parts, malformed cards named."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from dsm.config import from_dict
from dsm.errors import StoreError
from dsm.models.period_cards import (
    PooledCard,
    ReusedPeriodCard,
    TrainedPeriodCard,
    read_period_card,
    read_pooled_card,
    write_period_card,
    write_pooled_card,
)
from dsm.models.store import ModelStore
from dsm.models.variant_cards import (
    QuantileCard,
    VariantCard,
    read_quantile_card,
    read_variant_card,
    write_quantile_card,
    write_variant_card,
)
from dsm.stages.predict import status as predict_status
from dsm.stages.report import model_cards
from dsm.stages.train import train
from dsm.storeref import StoreRef

P1, P2, P3 = "2016161", "2016177", "2016193"
# model stores of the paper's method written by the dict-based cards before they were typed (for
# example those of earlier `dsm demo` runs), named by DSM_DEMO_MODEL_STORES (os.pathsep-separated)
DEMO_STORES = sorted(p for p in os.environ.get("DSM_DEMO_MODEL_STORES", "").split(os.pathsep) if p)

# the keys, in order, that the card writers wrote before the cards were typed
TRAINED_KEYS = ["period", "status", "n_samples", "n_dates", "inputs_out_of_range", "predictors", "aggregation", "split",
                "grids", "cv_folds", "models", "model_errors", "chosen", "selection_rule", "reused_from", "importance",
                "created", "spatial_split", "cube", "window", "model"]
REUSED_KEYS = ["period", "status", "n_samples", "reused_from", "fallback", "model", "aggregation", "window", "created"]
POOLED_KEYS = ["period", "status", "model_name", "trained_with", "features", "params", "n_samples", "n_train", "n_test",
               "periods", "train", "test", "per_period", "importance", "created", "predicts", "window", "model",
               "fit_workers"]
VARIANT_KEYS = ["period", "variant", "predictors", "dropped", "n_samples", "feature_ranges", "model", "device",
                "created", "chosen", "best_params", "train", "test", "split", "status", "quantile"]
QUANTILE_KEYS = ["period", "variant", "kind", "levels", "params", "conformal_margin", "test_coverage_raw",
                 "test_coverage", "test_mean_half_width", "model"]
MODEL_KEYS = ["file", "format", "sha256", "size", "class", "versions", "store_format", "linear"]


def _kind(key: str) -> str:
    if key == "pooled":
        return "pooled"
    if key.startswith("variants/"):
        return "quantile" if key.endswith("/quantile") else "variant"
    return "period"


def _rewrite(src: ModelStore, dst: ModelStore, key: str) -> object:
    """Read the card of ``key`` from ``src`` with its typed reader and write it to ``dst`` with its
    typed writer; returns the typed card."""
    kind = _kind(key)
    if kind == "pooled":
        pooled = read_pooled_card(src)
        assert pooled is not None
        write_pooled_card(dst, pooled)
        return pooled
    if kind == "quantile":
        q = read_quantile_card(src, key)
        assert q is not None
        write_quantile_card(dst, key, q)
        return q
    if kind == "variant":
        v = read_variant_card(src, key)
        assert v is not None
        write_variant_card(dst, key, v)
        return v
    card = read_period_card(src, key)
    assert card is not None
    write_period_card(dst, card)
    return card


def _round_trips(url: str, tmp_path: Path) -> dict[type, int]:
    """Assert every card of the store at ``url`` is rewritten byte-identically; count the types."""
    src, dst = ModelStore(StoreRef(url)), ModelStore(StoreRef(str(tmp_path / "rewritten")))
    seen: dict[type, int] = {}
    keys = [k for k in src.card_keys() if not k.startswith("fusion")]
    assert keys, f"no card in {url}"
    for key in keys:
        card = _rewrite(src, dst, key)
        seen[type(card)] = seen.get(type(card), 0) + 1
        raw = (Path(url) / key / "card.json").read_bytes()
        assert (tmp_path / "rewritten" / key / "card.json").read_bytes() == raw, key
        assert json.dumps(card.to_dict()) == json.dumps(json.loads(raw)), key  # type: ignore[attr-defined]
    return seen


@pytest.mark.parametrize("url", DEMO_STORES or [pytest.param(None, marks=pytest.mark.skip(
    reason="no earlier model store of the paper's method named (set DSM_DEMO_MODEL_STORES to a demo's "
           "rao2022/models)"))])
def test_the_cards_of_a_demo_store_round_trip_byte_identically(url, tmp_path):
    seen = _round_trips(url, tmp_path)
    assert {TrainedPeriodCard, PooledCard, VariantCard, QuantileCard} <= set(seen), seen


# ----------------------------------------------------------------------- cards this code writes
@pytest.fixture(scope="module")
def trained_store(tiny_twin, tmp_path_factory, client):
    """The paper's method trained on the tiny twin with the first period's SMAP removed: trained,
    reused, pooled, variant and quantile cards."""
    tmp = tmp_path_factory.mktemp("period_cards")
    cube = tmp / "cube.zarr"
    shutil.copytree(tiny_twin.cube.url, cube)
    sm = zarr.open_array(str(cube / "smap_sm"), mode="r+").with_config({"write_empty_chunks": True})
    sm[0:16] = np.nan  # the first period has no valid sample: it reuses the next one's model
    grids = {"mlr": {"fit_intercept": [True]}, "xgb": {"n_estimators": [20], "max_depth": [2]}}
    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
                     "stores": {"cube": str(cube), "models": str(tmp / "models")},
                     "training": {"method": "rao2022", "min_samples": 30, "models": ["mlr", "xgb"], "grids": grids,
                                  "cv_folds": 2, "pooled_params": {"n_estimators": 20}}})
    report = train(cfg, client)
    assert report.failed == {} and report.trained == [P2, P3] and report.reused == [P1]
    return str(cfg.stores.models), report


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_cards_this_code_writes_round_trip_byte_identically(trained_store, tmp_path):
    url, _ = trained_store
    seen = _round_trips(url, tmp_path)
    assert seen[TrainedPeriodCard] == 2 and seen[ReusedPeriodCard] == 1 and seen[PooledCard] == 1
    assert seen[VariantCard] == 6 and seen[QuantileCard] == 6  # full, no-lst, static per trained period


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_cards_this_code_writes_keep_the_keys_and_order_of_the_dict_cards(trained_store):
    url, _ = trained_store
    for key in ModelStore(StoreRef(url)).card_keys():
        card = json.loads((Path(url) / key / "card.json").read_text())
        kind = _kind(key)
        if kind == "period":
            want = TRAINED_KEYS if card["status"] == "trained" else REUSED_KEYS  # spatial_split: training.spatial_block
        else:
            want = {"pooled": POOLED_KEYS, "variant": VARIANT_KEYS, "quantile": QUANTILE_KEYS}[kind]
        if kind == "variant" and card["variant"] == "full":  # the period's own model: no refit
            want = [k for k in want if k not in ("chosen", "best_params", "train", "test")]
        assert list(card) == want, key
        if card.get("model"):
            assert list(card["model"]) == [k for k in MODEL_KEYS if k in card["model"]], key


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_read_card_is_read_only(trained_store):
    url, report = trained_store
    card = read_period_card(ModelStore(StoreRef(url)), P2)
    assert isinstance(card, TrainedPeriodCard) and card.model is not None and card.chosen in card.models
    assert [c.period for c in report.cards] == [P1, P2, P3] and isinstance(report.pooled, PooledCard)
    assert report.pooled.fit_workers == 1  # its few rows fitted on one worker: the same model on any cluster
    assert isinstance(report.cards[0], ReusedPeriodCard) and report.cards[0].reused_from == P2
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.chosen = "mlr"  # type: ignore[misc]
    with pytest.raises(TypeError):
        card.models["xgb"].best_params["max_depth"] = 9  # type: ignore[index]
    with pytest.raises(TypeError):
        card.split["n_train"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        card.grids["xgb"]["max_depth"].append(3)
    variant = read_variant_card(ModelStore(StoreRef(url)), f"variants/no-lst/{P2}")
    assert variant is not None and variant.model is not None and "lst" in variant.dropped
    with pytest.raises(TypeError):
        variant.feature_ranges["dem"] = (0.0, 1.0)  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_dsm_status_reads_the_typed_period_cards(trained_store):
    url, report = trained_store
    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-07-26"},
                     "stores": {"cube": "unused.zarr", "models": url}, "training": {"method": "rao2022"}})
    chosen = {c.period: c.chosen for c in report.cards if isinstance(c, TrainedPeriodCard)}
    assert predict_status(cfg)["periods"] == {P1: f"reused (from {P2})", P2: f"trained ({chosen[P2]})",
                                              P3: f"trained ({chosen[P3]})"}


# ----------------------------------------------------------------------- malformed cards
def _trained_card(period: str) -> dict:
    fit = {"train": {"r": 0.9, "rmse": 0.02, "n": 10}, "test": {"r": 0.8, "rmse": 0.03, "n": 10}, "cv_rmse": 0.03,
           "best_params": {}, "n_candidates": 1}
    return {"period": period, "status": "trained", "n_samples": 20, "predictors": ["lst", "dem"],
            "models": {"mlr": fit}, "chosen": "mlr", "reused_from": None,
            "model": {"file": "model.joblib", "format": "joblib", "sha256": "0" * 64}}


@pytest.mark.parametrize(("key", "card", "missing"), [
    (P2, _trained_card(P2), "chosen"),
    (P2, _trained_card(P2), "status"),
    (P2, {"period": P2, "status": "reused", "n_samples": 3, "model": None}, "period"),
    (f"variants/no-lst/{P2}", {"period": P2, "variant": "no-lst", "status": "trained"}, "status"),
    (f"variants/no-lst/{P2}/quantile", {"period": P2, "variant": "no-lst", "kind": "quantile", "levels": [0.05, 0.95]},
     "levels"),
    ("pooled", {"period": "pooled", "per_period": {}}, "per_period"),
])
def test_a_card_without_a_key_is_a_store_error_naming_its_file(tmp_path, key, card, missing):
    store = ModelStore(StoreRef(str(tmp_path / "models")))
    card.pop(missing)
    store.write_card(key, card)
    reader = {"period": lambda: read_period_card(store, key), "variant": lambda: read_variant_card(store, key),
              "quantile": lambda: read_quantile_card(store, key), "pooled": lambda: read_pooled_card(store)}[_kind(key)]
    with pytest.raises(StoreError, match=re.escape(f"model card {tmp_path}/models/{key}/card.json lacks the key "
                                                   f"'{missing}'")):
        reader()


def test_a_card_of_another_status_and_a_consumer_of_a_malformed_card_name_the_file(tmp_path):
    url = str(tmp_path / "models")
    store = ModelStore(StoreRef(url))
    store.write_card(P2, {**_trained_card(P2), "status": "too_few_samples"})
    with pytest.raises(StoreError, match=re.escape(f"{url}/{P2}/card.json is malformed (status 'too_few_samples'")):
        read_period_card(store, P2)
    card = _trained_card(P2)
    del card["models"]["mlr"]["train"]
    store.write_card(P2, card)
    with pytest.raises(StoreError, match=re.escape(f"{url}/{P2}/card.json lacks the key 'train'")):
        model_cards(StoreRef(url))  # the report's reader


def test_a_card_with_a_key_no_card_type_knows_is_a_store_error_naming_it(tmp_path):
    """Nothing is dropped silently: a writer that adds a key must add it to the card's type."""
    store = ModelStore(StoreRef(str(tmp_path / "models")))
    store.write_card(P2, {**_trained_card(P2), "colour": "blue"})
    with pytest.raises(StoreError, match=re.escape(f"{P2}/card.json is malformed (unknown key(s) ['colour'] "
                                                   "for a TrainedPeriodCard)")):
        read_period_card(store, P2)
    key = f"variants/full/{P2}/quantile"
    store.write_card(key, {"period": P2, "variant": "full", "kind": "quantile", "levels": [0.05, 0.95],
                           "model": {"file": "model.json", "format": "xgboost-json", "sha256": "0" * 64, "note": 1}})
    with pytest.raises(StoreError, match=re.escape("unknown key(s) ['note'] in a model entry")):
        read_quantile_card(store, key)


def test_a_card_read_without_some_keys_is_written_back_without_them_and_one_built_in_code_has_all(tmp_path):
    store = ModelStore(StoreRef(str(tmp_path / "models")))
    d = _trained_card(P2)
    card = TrainedPeriodCard.from_dict(d)
    write_period_card(store, card)
    text = (tmp_path / "models" / P2 / "card.json").read_text()
    assert text == json.dumps(d, indent=2)  # an older card's keys only, in its order
    assert read_period_card(store, P2) == card
    built = TrainedPeriodCard(period=P2, models=card.models, chosen="mlr")
    assert list(built.to_dict()) == [k for k in TRAINED_KEYS if k != "spatial_split"]  # None: not run
    assert built.to_dict()["window"] is None and built.to_dict()["model"] is None


def test_a_malformed_fusion_card_is_a_store_error_naming_its_file_for_training_prediction_and_status(tmp_path):
    from dsm.dayplans import fusion_card
    from dsm.models.cards import FUSION_KEY, read_fusion_card

    url = str(tmp_path / "models")
    store = ModelStore(StoreRef(url))
    assert read_fusion_card(store) is None
    store.write_card(FUSION_KEY, {"predictors": ["lst"], "params": {}, "search": [], "cv": {}})  # no "variants"
    want = re.escape(f"model card {url}/{FUSION_KEY}/card.json lacks the key 'variants'")
    with pytest.raises(StoreError, match=want):
        fusion_card(store)  # prediction's reader
    cfg = from_dict({"region": {"cells": [74, 772, 4, 4]}, "dates": {"start": "2016-06-09", "end": "2016-06-20"},
                     "stores": {"cube": str(tmp_path / "cube.zarr"), "models": url}})
    with pytest.raises(StoreError, match=want):
        predict_status(cfg)  # dsm status
