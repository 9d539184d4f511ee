"""Which settings made a store: fingerprints that bind models, products and COGs to a configuration.

A store resumed under another configuration would mix two kinds of output under one set of
attributes (days made with a pooled model beside days made with another, a gap-free store
continued without gap filling). Each store therefore records the settings that determine
its bytes (:func:`settings_of`) and their fingerprint; a resume compares them with the
current configuration's (:func:`check_settings`) and refuses, naming every key that differs
and the command that starts again. Execution settings (cluster, threads, lock timing,
``training.concurrent_periods``) and the dates (a model may predict later days; the
products' time axis is checked by its layout) are not part of any fingerprint.

The cube records the settings that decide its *values* (:func:`cube_settings`: each input's
scale, offset, nodata, QC rule, overpass, remap..., or the twin's seed, and the antecedent
indices' settings), not where the files are (``paths``, band and soil rasters,
``storage_options``: files may move, or more may arrive). The models record the fingerprint of
the cube they were trained on, and the products that of the models' cube, so a cube rebuilt
with other settings is never read by models or products made from the old one.

Pure: configuration in, dictionaries and strings out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from dsm.config import Config, InputsConfig, RainConfig, TwinConfig
from dsm.errors import StoreError

StoreKind = Literal["cube", "models", "products", "cog"]

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
CUBE_ATTR = "settings"
"""Cube attribute: the :func:`record` of the settings its values were made with."""
CUBE_KEY = "cube"
"""Key of the models' and products' settings holding the fingerprint of the cube they read."""
_WHERE = frozenset({"paths", "sand", "silt", "clay", "soilgrids", "b2", "b4", "b6", "b7", "state"})
"""Input keys that say where files are: only whether they are given counts."""
_RAIN_VALUES = ("spinup_days", "max_gap_days")
PREDICTION_ONLY: tuple[str, ...] = ("training.fusion.smooth", "training.fusion.anomaly_window_days",
                                    "training.fusion.gain_from_stations", "training.fusion.min_gain_stations",
                                    "training.fusion.anomaly_gain", "training.fusion.interval_from_stations",
                                    "training.fusion.interval_station_offsets")
"""Fusion settings applied at prediction, not training: part of the products', not the models', settings."""


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k in sorted(value):
            _flatten(f"{prefix}.{k}", value[k], out)
    elif prefix not in EXECUTION_ONLY:
        out[prefix] = value


def _inputs_values(value: Any) -> Any:
    """``value`` (the dumped ``inputs``) without storage options, and locations as set/unset."""
    if isinstance(value, Mapping):
        return {k: (bool(v) if k in _WHERE else _inputs_values(v)) for k, v in value.items() if k != "storage_options"}
    return value


def cube_settings(inputs: InputsConfig | None, twin: TwinConfig | None, rain: RainConfig) -> dict[str, Any]:
    """The settings that decide a cube's values, flat: ``inputs`` without locations (an ingested
    cube), else the twin's (``twin`` None: its defaults), and the antecedent indices'."""
    out: dict[str, Any] = {}
    if inputs is not None:
        given = {k: v for k, v in inputs.model_dump(mode="json").items() if v not in (None, {})}
        _flatten("inputs", _inputs_values(given), out)
    else:
        _flatten("twin", (twin or TwinConfig()).model_dump(mode="json"), out)
    for key in _RAIN_VALUES:
        out[f"rain.{key}"] = getattr(rain, key)
    return {k: out[k] for k in sorted(out)}


def cube_record(inputs: InputsConfig | None, twin: TwinConfig | None, rain: RainConfig) -> dict[str, Any]:
    """``{"fingerprint": ..., "settings": {...}}`` of :func:`cube_settings`, for :data:`CUBE_ATTR`."""
    settings = cube_settings(inputs, twin, rain)
    return {"fingerprint": fingerprint(settings), "settings": settings}


def cube_update(recorded: Mapping[str, Any] | None, config: Config, store: str, remedy: str,
                wrote: Sequence[str] = ()) -> dict[str, Any]:
    """The cube's record (:data:`CUBE_ATTR`) once ``config``'s inputs are ingested into it.

    An ingest may bring some sources only (SMAP today, the precipitation next week), and a
    source whose every file was refused wrote nothing: only the settings under the prefixes
    ``wrote`` (``"inputs.smap"``, ``"rain"``...: the sources that wrote values) are added to
    those ``recorded``, which are otherwise kept.

    Raises
    ------
    StoreError
        A source was ingested with other value settings than ``config``'s: the message lists
        every differing key and ``remedy``.
    """
    current = cube_settings(config.inputs, config.twin, config.rain)
    before = dict((recorded or {}).get("settings", {}))
    clash = [d for d in differences(before, current) if d.split(":", 1)[0] in before.keys() & current.keys()]
    if clash:
        raise _refusal("cube", store, clash, "ingesting", remedy)
    added = {k: v for k, v in current.items() if any(k == p or k.startswith(p + ".") for p in wrote)}
    settings = {**before, **added}
    settings = {k: settings[k] for k in sorted(settings)}
    return {"fingerprint": fingerprint(settings), "settings": settings}


def cube_fingerprint(attrs: Mapping[str, Any]) -> str | None:
    """The fingerprint a cube recorded (its attributes ``attrs``), or None (none recorded)."""
    recorded = attrs.get(CUBE_ATTR)
    return recorded.get("fingerprint") if isinstance(recorded, Mapping) else None


def settings_of(config: Config, kind: StoreKind, cube: str | None = None) -> dict[str, Any]:
    """The settings of ``config`` that determine the bytes of a ``kind`` store, flat.

    Parameters
    ----------
    config
        The run configuration.
    kind
        ``"cube"``, ``"models"``, ``"products"`` or ``"cog"``.
    cube
        Models and products: the fingerprint of the cube they read (:func:`cube_fingerprint`),
        recorded under :data:`CUBE_KEY`; None leaves it out (a cube that recorded none).

    Returns
    -------
    dict
        ``{"training.fusion.smooth": "none", "region.row0": 72, ...}``: dotted keys, JSON
        values (lists for tuples), sorted by key.
    """
    if kind == "cube":
        return cube_settings(config.inputs, config.twin, config.rain)
    raw = config.model_dump(mode="json")
    raw["region"] = config.grid_region.to_dict()  # a bbox and its cells are one region
    out: dict[str, Any] = {}
    for key in STORE_SETTINGS[kind]:
        section, _, name = key.partition(".")
        value = raw[section] if not name else raw[section][name]
        _flatten(key, value, out)
    if cube is not None and kind in ("models", "products"):
        out[CUBE_KEY] = cube
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


def record(config: Config, kind: StoreKind, cube: str | None = None) -> dict[str, Any]:
    """``{"fingerprint": ..., "settings": {...}}`` of ``config`` for a ``kind`` store (``cube``:
    as for :func:`settings_of`)."""
    settings = settings_of(config, kind, cube)
    return {"fingerprint": fingerprint(settings), "settings": settings}


def check_settings(recorded: Mapping[str, Any] | None, config: Config, kind: StoreKind, store: str,
                   remedy: str, cube: str | None = None) -> None:
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
    cube
        Models and products: the fingerprint of the cube this run reads (:func:`settings_of`).
        A store recorded without one (its cube recorded none) is not checked against it.

    Raises
    ------
    StoreError
        The fingerprints differ; the message lists every differing key.
    """
    if not recorded:
        return
    if CUBE_KEY not in recorded.get("settings", {}):
        cube = None
    current = record(config, kind, cube)
    if recorded.get("fingerprint") == current["fingerprint"]:
        return
    diff = differences(recorded.get("settings", {}), current["settings"])
    if any(d.startswith(CUBE_KEY + ":") for d in diff):
        diff = [d for d in diff if not d.startswith(CUBE_KEY + ":")] + [
            f"{CUBE_KEY}: made from a cube of fingerprint {recorded['settings'][CUBE_KEY]}, the cube "
            f"{config.stores.cube} now has {cube or 'none'} (rebuilt, or inputs added since)"]
    raise _refusal(kind, store, diff or [f"fingerprint {recorded.get('fingerprint')}"], "resuming", remedy)


def _refusal(kind: str, store: str, diff: Sequence[str], doing: str, remedy: str) -> StoreError:
    """The error refusing to mix settings in ``store``, naming (up to 8 of) the differences ``diff``."""
    shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
    return StoreError(f"the {kind} store {store} was made with other settings than this configuration ({shown}): "
                      f"{doing} would mix them. Restore those settings, choose another store, or start again: {remedy}")


__all__ = ["CUBE_ATTR", "CUBE_KEY", "STORE_SETTINGS", "check_settings", "cube_fingerprint", "cube_record",
           "cube_settings", "cube_update", "differences", "fingerprint", "record", "settings_of"]
