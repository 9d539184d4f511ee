"""Which settings made a store: fingerprints that bind models, products and COGs to a configuration.

A store resumed under another configuration would mix two kinds of output under one set of
attributes (days made with a pooled model beside days made with another, a gap-free store
continued without gap filling). Each store therefore records the settings that determine
its bytes (:func:`settings_of`) and their fingerprint; a resume compares them with the
current configuration's (:func:`check_settings`) and refuses, naming every key that differs
and the command that starts again. Execution settings (cluster, threads, lock timing,
``training.concurrent_periods``) and the dates (a model may predict later days; the
products' time axis is checked by its layout) are not part of any fingerprint.

Pure: configuration in, dictionaries and strings out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from dsm.config import Config
from dsm.errors import StoreError

StoreKind = Literal["models", "products", "cog"]

_MODELS: tuple[str, ...] = ("region", "predictors", "training", "rain.predictors", "output.reduced_sets",
                            "output.uncertainty", "output.interval")
_PRODUCTS: tuple[str, ...] = (*_MODELS, "output.gap_free", "output.residual_correction", "output.clip")
STORE_SETTINGS: dict[str, tuple[str, ...]] = {
    "models": _MODELS,  # gap_free only decides which of the models a product uses
    "products": _PRODUCTS,
    "cog": (*_PRODUCTS, "output.export_crs", "output.cog_blocksize", "output.cog_compress"),
}
"""Per store kind, the configuration sections and keys that determine its bytes."""
EXECUTION_ONLY: frozenset[str] = frozenset({"training.concurrent_periods"})
"""Keys inside those sections that change how, not what, is computed."""
OTHER_METHOD: dict[str, tuple[str, ...]] = {
    "fusion": ("training.models", "training.grids", "training.cv_folds", "training.ks_alpha", "training.ks_attempts",
               "training.spatial_block", "training.pooled", "training.pooled_params"),
    "rao2022": ("training.fusion", "training.disaggregation"),
}
"""Per ``training.method``, the training keys only the other method reads (left out)."""
PREDICTION_ONLY: tuple[str, ...] = ("training.fusion.smooth", "training.fusion.anomaly_window_days",
                                    "training.fusion.gain_from_stations", "training.fusion.min_gain_stations",
                                    "training.fusion.anomaly_gain")
"""Fusion settings applied at prediction, not training: part of the products', not the models', settings."""


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k in sorted(value):
            _flatten(f"{prefix}.{k}", value[k], out)
    elif prefix not in EXECUTION_ONLY:
        out[prefix] = value


def settings_of(config: Config, kind: StoreKind) -> dict[str, Any]:
    """The settings of ``config`` that determine the bytes of a ``kind`` store, flat.

    Parameters
    ----------
    config
        The run configuration.
    kind
        ``"models"``, ``"products"`` or ``"cog"``.

    Returns
    -------
    dict
        ``{"training.fusion.smooth": "none", "region.row0": 72, ...}``: dotted keys, JSON
        values (lists for tuples), sorted by key.
    """
    raw = config.model_dump(mode="json")
    raw["region"] = config.grid_region.to_dict()  # a bbox and its cells are one region
    out: dict[str, Any] = {}
    for key in STORE_SETTINGS[kind]:
        section, _, name = key.partition(".")
        value = raw[section] if not name else raw[section][name]
        _flatten(key, value, out)
    unused = OTHER_METHOD[config.training.method] + (PREDICTION_ONLY if kind == "models" else ())
    return {k: out[k] for k in sorted(out) if not any(k == u or k.startswith(u + ".") for u in unused)}


def fingerprint(settings: Mapping[str, Any]) -> str:
    """SHA-256 (hex, first 16 digits) of the canonical JSON of ``settings``."""
    text = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"key: recorded -> current"`` for every key whose value differs (or exists on one side)."""
    missing = object()
    keys = sorted(set(recorded) | set(current))
    return [f"{k}: {recorded.get(k, '(unset)')!r} -> {current.get(k, '(unset)')!r}" for k in keys
            if recorded.get(k, missing) != current.get(k, missing)]


def record(config: Config, kind: StoreKind) -> dict[str, Any]:
    """``{"fingerprint": ..., "settings": {...}}`` of ``config`` for a ``kind`` store."""
    settings = settings_of(config, kind)
    return {"fingerprint": fingerprint(settings), "settings": settings}


def check_settings(recorded: Mapping[str, Any] | None, config: Config, kind: StoreKind, store: str,
                   remedy: str) -> None:
    """Refuse to resume ``store`` (a ``kind`` store) made with other settings than ``config``'s.

    Parameters
    ----------
    recorded
        The store's :func:`record`, or None for a store that recorded none (written before
        fingerprints existed: accepted).
    config
        The configuration of this run.
    kind
        The store's kind.
    store
        Its URL, for the message.
    remedy
        What starts again, e.g. ``"dsm predict CONFIG --overwrite"``.

    Raises
    ------
    StoreError
        The fingerprints differ; the message lists every differing key.
    """
    if not recorded:
        return
    current = record(config, kind)
    if recorded.get("fingerprint") == current["fingerprint"]:
        return
    diff = differences(recorded.get("settings", {}), current["settings"])
    shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
    raise StoreError(f"the {kind} store {store} was made with other settings than this configuration "
                     f"({shown or 'fingerprint ' + str(recorded.get('fingerprint'))}): resuming would mix them. "
                     f"Restore those settings, choose another store, or start again: {remedy}")


__all__ = ["STORE_SETTINGS", "check_settings", "differences", "fingerprint", "record", "settings_of"]
