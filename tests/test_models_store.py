"""The model store: bit-for-bit round trips (local and S3), digests, versions, reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsm.config import MODEL_NAMES
from dsm.errors import StoreError
from dsm.models.estimators import make_estimator
from dsm.models.store import ModelStore
from dsm.storeref import StoreRef


def _fitted():
    rng = np.random.default_rng(0)
    X = rng.random((300, 5)).astype(np.float32)
    y = (X @ np.array([0.1, -0.2, 0.05, 0.0, 0.3]) + rng.normal(0, 0.01, 300)).astype(np.float64)
    small = {"rf": {"n_estimators": 20, "max_depth": 5}, "xgb": {"n_estimators": 20},
             "ann": {"model__hidden_layer_sizes": (8,), "model__max_iter": 300}}
    out = {}
    for name in MODEL_NAMES:
        out[name] = make_estimator(name, seed=1).set_params(**small.get(name, {})).fit(X, y)
    return X, out


def _round_trip(store: ModelStore):
    X, models = _fitted()
    Xnew = np.random.default_rng(9).random((400, 5)).astype(np.float32)
    for name, est in models.items():
        entry = store.save_model(name, est)
        store.write_card(name, {"period": name, "status": "trained", "model": entry})
        assert store.done(name)
        loaded = store.load_model(name)
        assert type(loaded) is type(est) or name == "xgb"
        a, b = est.predict(Xnew), loaded.predict(Xnew)
        assert a.dtype == b.dtype and np.array_equal(a, b), name  # bit for bit
        card = store.read_card(name)
        assert card["model"]["versions"]["scikit-learn"]
        assert card["model"]["format"] == ("xgboost-json" if name == "xgb" else "joblib")
    assert "linear" in store.read_card("mlr")["model"]
    assert store.keys() == sorted(MODEL_NAMES)


def test_round_trip_local_bit_for_bit(tmp_path):
    _round_trip(ModelStore(StoreRef(str(tmp_path / "models"))))


@pytest.mark.s3
def test_round_trip_on_s3_bit_for_bit(s3):
    bucket = s3.make_bucket("models-rt")
    _round_trip(ModelStore(StoreRef(f"s3://{bucket}/run1", s3.storage_options)))


def test_digest_version_reuse_and_missing(tmp_path):
    store = ModelStore(StoreRef(str(tmp_path / "m")))
    X, models = _fitted()
    entry = store.save_model("2016161", models["rf"])
    store.write_card("2016161", {"period": "2016161", "status": "trained", "model": entry})
    store.write_card("2016177", {"period": "2016177", "status": "reused", "reused_from": "2016161", "model": None})
    assert np.array_equal(store.load_model("2016177").predict(X), models["rf"].predict(X))
    assert store.done("2016177")
    # a model written by another scikit-learn minor version is refused unless allowed
    card = store.read_card("2016161")
    card["model"]["versions"]["scikit-learn"] = "0.24.2"
    store.write_card("2016161", card)
    with pytest.raises(StoreError, match="0.24.2"):
        store.load_model("2016161")
    store.load_model("2016161", allow_version_mismatch=True)
    # a changed file is caught by its digest
    (tmp_path / "m" / "2016161" / "model.joblib").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="SHA-256"):
        store.load_model("2016161")
    with pytest.raises(StoreError, match="2016193 has no model card in .*run dsm train"):
        store.load_model("2016193")
    (tmp_path / "m" / "2016161" / "model.joblib").unlink()
    assert not store.done("2016161")
    (tmp_path / "m" / "2016161" / "card.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        store.read_card("2016161")
    assert json.loads((tmp_path / "m" / "2016177" / "card.json").read_text())["reused_from"] == "2016161"


def test_resolve_follows_reused_from_and_names_a_broken_chain(tmp_path):
    store = ModelStore(StoreRef(str(tmp_path / "m")))
    entry = store.save_model("2016161", _fitted()[1]["mlr"])
    store.write_card("2016161", {"period": "2016161", "status": "trained", "model": entry})
    for period, src in [("2016177", "2016161"), ("2016193", "2016177"), ("2016209", "2016225"),
                        ("2016225", "2016209"), ("2016241", "2016257")]:
        store.write_card(period, {"period": period, "status": "reused", "reused_from": src, "model": None})
    assert store.resolve("2016161") == ("2016161", store.read_card("2016161"), False)
    key, card, reused = store.resolve("2016193")  # two steps back
    assert (key, card["model"]["sha256"], reused) == ("2016161", entry["sha256"], True)
    with pytest.raises(StoreError, match="2016209 .* form a cycle: 2016209 -> 2016225 -> 2016209"):
        store.resolve("2016209")
    with pytest.raises(StoreError, match="2016257 has no model card in .*, reused through 2016241 -> 2016257"):
        store.resolve("2016241")
    store.write_card("2016257", {"period": "2016257", "status": "too_few_samples", "model": None})
    with pytest.raises(StoreError, match="2016257 has no stored model in .*, reused through 2016241 -> 2016257"):
        store.load_model("2016241")


def test_a_card_its_schema_rejects_is_not_done_so_training_writes_it_again(tmp_path, caplog):
    from dsm.models.period_cards import PooledCard, period_card_from_dict

    store = ModelStore(StoreRef(str(tmp_path / "m")))
    entry = store.save_model("2016161", _fitted()[1]["mlr"])
    store.write_card("2016161", {"period": "2016161", "status": "trained", "model": entry})  # no fit records
    store.write_card("pooled", {"status": "trained", "model": None})
    assert store.done("2016161") and store.done("pooled")  # valid JSON, whole model file: done for any kind
    with caplog.at_level("WARNING", logger="dsm.models.store"):
        assert not store.done("2016161", period_card_from_dict)
        assert not store.done("pooled", PooledCard.from_dict)
    assert "2016161/card.json does not match its schema" in caplog.text and "retraining pooled" in caplog.text
    store.write_card("2016177", {"period": "2016177", "status": "reused", "reused_from": "2016161", "model": None})
    assert store.done("2016177", period_card_from_dict)  # a card its schema takes stays done
