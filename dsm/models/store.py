"""The model store: one folder per period at a local path or any fsspec URL (``s3://...``).

Layout::

    URL/<YYYYDDD>/card.json     the model card (written last: its presence marks the period done)
    URL/<YYYYDDD>/model.json    XGBoost model (when XGB was chosen)
    URL/<YYYYDDD>/model.joblib  scikit-learn model (any other choice)
    URL/pooled/...              the pooled model, same files
    URL/run.json                the report of the latest ``dsm train`` run
    URL/settings.json           the settings the models were trained with (:mod:`dsm.fingerprint`)
    URL/training_window.json    per model kept across extensions in time (the fusion method's),
                                the first and last day it was trained on (:mod:`dsm.extend`)

Formats, and why
----------------
* XGBoost models are saved as XGBoost's own JSON (``Booster.save_raw("json")``): a documented
  format that later XGBoost versions load, and that round-trips bit for bit.
* scikit-learn has no portable format in the installed stack (``skops`` is not installed),
  so fitted estimators are pickled with joblib. The card records the versions of Python,
  scikit-learn, numpy, scipy, joblib and xgboost that wrote the file and its SHA-256;
  :meth:`ModelStore.load_model` verifies the digest and refuses a file written by another
  scikit-learn minor version (``allow_version_mismatch=True`` overrides). Pickles execute
  code when loaded: only load model stores you trust. Linear models also get their
  coefficients in the card, readable without unpickling.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
from collections.abc import Callable, Mapping
from typing import Any

import joblib
import numpy as np
import scipy
import sklearn
import xgboost
from sklearn.base import BaseEstimator

from dsm import files
from dsm.errors import StoreError
from dsm.models.estimators import final_step
from dsm.runlock import Lease
from dsm.storeref import StoreRef

CARD = "card.json"
REPORT = "run.json"
SETTINGS = "settings.json"
WINDOWS = "training_window.json"
POOLED = "pooled"
log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    """Versions of the libraries that define the stored models."""
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "joblib": joblib.__version__,
            "xgboost": xgboost.__version__}


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def to_bytes(estimator: BaseEstimator) -> tuple[bytes, str, str]:
    """Serialise a fitted model: ``(bytes, file name, format)``."""
    if isinstance(estimator, xgboost.XGBModel):
        return bytes(estimator.get_booster().save_raw("json")), "model.json", "xgboost-json"
    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    return buf.getvalue(), "model.joblib", "joblib"


def from_bytes(raw: bytes, fmt: str) -> BaseEstimator:
    """Inverse of :func:`to_bytes`."""
    if fmt == "xgboost-json":
        model = xgboost.XGBRegressor()
        model.load_model(bytearray(raw))
        return model
    if fmt == "joblib":
        return joblib.load(io.BytesIO(raw))
    raise StoreError(f"unknown model format {fmt!r}")


def linear_coefficients(estimator: BaseEstimator) -> dict[str, Any] | None:
    """Coefficients and intercept of a linear model (JSON-ready), else None."""
    est = final_step(estimator)
    if hasattr(est, "coef_") and hasattr(est, "intercept_") and np.ndim(est.coef_) == 1:
        return {"coef": [float(c) for c in est.coef_], "intercept": float(est.intercept_)}
    return None


class ModelStore:
    """Models and cards of every period at ``ref`` (local path or fsspec URL).

    Parameters
    ----------
    ref
        Root of the store (``config.stores.ref("models")``); ``self.url`` is its URL.
    lease
        The writing run's lease (:class:`dsm.runlock.Lease`): checked before every write, so
        a run that lost the output store's lock stops before it replaces a model or a card.
    """

    def __init__(self, ref: StoreRef, lease: Lease | None = None) -> None:
        self.ref = ref
        self.url = ref.url.rstrip("/")
        self.lease = lease
        try:
            self.fs, self.root = ref.fs()
        except (ValueError, ImportError) as exc:
            raise StoreError(f"cannot open the model store {ref}: {exc}") from exc

    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def _write(self, path: str, data: bytes) -> None:
        if self.lease is not None:
            self.lease.check()
        try:
            files.write_bytes(self.fs, path, data)
        except OSError as exc:
            raise StoreError(f"cannot write {path} in the model store {self.url}: {exc}") from exc

    def _read(self, path: str) -> bytes:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            raise StoreError(f"{path} is not in the model store {self.url}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path} from the model store {self.url}: {exc}") from exc

    def _read_json(self, path: str, what: str) -> dict[str, Any] | None:
        """The JSON object at ``path``, None when absent; ``what`` names it in the error."""
        if not self.fs.exists(path):
            return None
        try:
            return json.loads(self._read(path))
        except json.JSONDecodeError as exc:
            raise StoreError(f"{what} {path} is not valid JSON: {exc}") from exc

    # -- cards ---------------------------------------------------------------------------
    def read_card(self, key: str) -> dict[str, Any] | None:
        """The card of ``key`` (a period name or ``"pooled"``), or None when absent."""
        return self._read_json(self._path(key, CARD), "model card")

    def write_card(self, key: str, card: Mapping[str, Any]) -> None:
        """Write the card of ``key`` (after its model: the card marks the key done)."""
        text = json.dumps(_jsonable(card), indent=2, sort_keys=False, allow_nan=True)
        self._write(self._path(key, CARD), text.encode())

    def done(self, key: str, schema: Callable[[Mapping[str, Any]], Any] | None = None) -> bool:
        """Whether ``key`` is trained and whole (:meth:`done_card`)."""
        return self.done_card(key, schema) is not None

    def done_card(self, key: str, schema: Callable[[Mapping[str, Any]], Any] | None = None) -> Any:
        """``key``'s card when it is readable and, if it holds its own model, the whole model file
        is there: typed by ``schema`` (the card kind's reader, e.g. ``PooledCard.from_dict``), else
        the JSON dict; None when the key is not done.

        A card that is not valid JSON, one that ``schema`` rejects, or a model file missing or of
        another size than its card records, makes the key not done (so it is trained again),
        never the whole store; so does a card recording models that failed to fit
        (``model_errors``): a rerun tries them again rather than report the period done.
        """
        try:
            card = self.read_card(key)
        except StoreError as exc:
            log.warning("%s: retraining %s", exc, key)
            return None
        if card is None or card.get("model_errors"):
            return None
        typed = card
        if schema is not None:
            try:
                typed = schema(card)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("the model card %s/%s/%s does not match its schema (%s: %s): retraining %s",
                            self.url, key, CARD, type(exc).__name__, exc, key)
                return None
        model = card.get("model")
        if model is None:
            return typed
        path = self._path(key, model["file"])
        try:
            size = self.fs.size(path)
        except FileNotFoundError:
            return None
        if "size" in model and size != model["size"]:
            log.warning("%s in %s has %d bytes, its card records %d: retraining %s",
                        path, self.url, size, model["size"], key)
            return None
        return typed

    def keys(self) -> list[str]:
        """Every key with a card, sorted."""
        if not self.fs.exists(self.root):
            return []
        out = []
        for entry in self.fs.ls(self.root, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if self.fs.exists(self._path(name, CARD)):
                out.append(name)
        return sorted(out)

    def card_keys(self) -> list[str]:
        """Every key with a card, nested ones (``variants/full/...``) included, sorted."""
        if not self.fs.exists(self.root):
            return []
        root = f"{self.root}/"
        return sorted(p[len(root):].rsplit("/", 1)[0] for p in self.fs.find(self.root) if p.endswith(f"/{CARD}"))

    # -- models --------------------------------------------------------------------------
    def save_model(self, key: str, estimator: BaseEstimator) -> dict[str, Any]:
        """Write a fitted model; returns the card's ``model`` entry (file, format, digest, versions)."""
        raw, name, fmt = to_bytes(estimator)
        self._write(self._path(key, name), raw)
        entry: dict[str, Any] = {"file": name, "format": fmt, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw),
                                 "class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
                                 "versions": library_versions(), "store_format": FORMAT_VERSION}
        coefs = linear_coefficients(estimator)
        if coefs is not None:
            entry["linear"] = coefs
        return entry

    def resolve(self, key: str) -> tuple[str, dict[str, Any], bool]:
        """The key whose stored model ``key`` uses (following ``reused_from``), its card, and
        whether that is another key's model.

        Raises
        ------
        StoreError
            When ``key`` or a key it reuses has no card, the chain has no stored model, or the
            cards form a cycle; the message names the keys and the store.
        """
        chain = [key]
        card = self.read_card(key)
        while card is not None and card.get("model") is None and card.get("reused_from"):
            key = card["reused_from"]
            if key in chain:
                raise StoreError(f"the model cards of {chain[0]} in {self.url} form a cycle: {' -> '.join([*chain, key])}")
            chain.append(key)
            card = self.read_card(key)
        via = f", reused through {' -> '.join(chain)}" if len(chain) > 1 else ""
        if card is None:
            raise StoreError(f"{key} has no model card in {self.url}{via} (run dsm train)")
        if card.get("model") is None:
            raise StoreError(f"{key} has no stored model in {self.url}{via} (run dsm train)")
        return key, card, len(chain) > 1

    def load_model(self, key: str, allow_version_mismatch: bool = False) -> BaseEstimator:
        """The model that ``key`` uses, following ``reused_from``; checks digest and versions.

        Raises
        ------
        StoreError
            When the card or model is missing, the digest differs, or the model was pickled
            by another scikit-learn minor version (unless ``allow_version_mismatch``).
        """
        key, card, _ = self.resolve(key)
        entry = card["model"]
        raw = self._read(self._path(key, entry["file"]))
        if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            raise StoreError(f"{key}/{entry['file']} in {self.url} does not match the SHA-256 in its card")
        if entry["format"] == "joblib" and not allow_version_mismatch:
            wrote = entry["versions"]["scikit-learn"]
            if _minor(wrote) != _minor(sklearn.__version__):
                raise StoreError(f"{key}/{entry['file']} was written by scikit-learn {wrote}; this is "
                                 f"{sklearn.__version__} (pass allow_version_mismatch=True to load anyway)")
        return from_bytes(raw, entry["format"])

    # -- run report ----------------------------------------------------------------------
    def write_report(self, report: Mapping[str, Any]) -> None:
        """Write the report of the latest run (``run.json``)."""
        self._write(self._path(REPORT), json.dumps(_jsonable(report), indent=2).encode())

    def read_report(self) -> dict[str, Any] | None:
        """The latest run report, or None."""
        path = self._path(REPORT)
        return json.loads(self._read(path)) if self.fs.exists(path) else None

    # -- the settings the models were trained with (dsm.fingerprint) ---------------------------
    def read_settings(self) -> dict[str, Any] | None:
        """The recorded ``{"fingerprint", "settings"}`` of the store, or None (none recorded)."""
        return self._read_json(self._path(SETTINGS), "settings record (delete it and retrain with --force)")

    def write_settings(self, record: Mapping[str, Any]) -> None:
        """Record the settings the store's models are trained with (before the first model)."""
        self._write(self._path(SETTINGS), json.dumps(_jsonable(record), indent=1, sort_keys=True).encode())

    # -- the days a model was trained on (dsm.extend) --------------------------------------------
    def read_window(self, key: str) -> list[str] | None:
        """``[first, last]`` (ISO days) that ``key``'s model was trained on, None when not recorded."""
        recorded = self._read_json(self._path(WINDOWS), "training windows record") or {}
        window = recorded.get(key)
        return list(window) if window else None

    def write_window(self, key: str, window: list[str] | None) -> None:
        """Record the days ``[first, last]`` that ``key``'s model was trained on (after the model)."""
        recorded = self._read_json(self._path(WINDOWS), "training windows record") or {}
        recorded[key] = window
        self._write(self._path(WINDOWS), json.dumps(_jsonable(recorded), indent=1, sort_keys=True).encode())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
