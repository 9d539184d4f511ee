"""The typed card of the default method's model (``training.method: fusion``).

Written by :mod:`dsm.models.fusion_train` as ``fusion/card.json`` in the model store (last,
after every model it names: its presence marks training done), read by prediction. One
writer, one reader, one schema: :meth:`FusionCard.to_dict` and :meth:`FusionCard.from_dict`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from dsm.errors import StoreError

if TYPE_CHECKING:
    from dsm.models.store import ModelStore

T = TypeVar("T")

FUSION_KEY = "fusion"
CARD_VERSION = 1


def fusion_model_key(variant: str) -> str:
    """Model-store key of one model of the fusion method (``fusion/<variant>``)."""
    return f"{FUSION_KEY}/{variant}"


@dataclass(frozen=True)
class ModelRecord:
    """One stored model of the method: a predictor-set variant or the disaggregation model.

    Attributes
    ----------
    name
        ``full``, ``no-lst``, ..., ``static`` or ``disaggregation``.
    predictors, features
        Cube predictors it needs, and the model's feature columns in order (day-of-year
        terms included).
    key, sha256
        Where it is in the model store, and the digest of its file.
    n_train, n_rounds
        Samples it was refitted on, boosting rounds.
    cv_rmse
        Cross-validated RMSE against SMAP (blocks of days and cells).
    ranges
        ``{feature: [min, max]}`` over the 1 km pixels of its training cell-days (bit 8).
    fit_workers
        Workers that held its rows in its ``xgboost.dask`` refit: 1, the model is the same on any
        cluster (:func:`dsm.models.pooled.fit_workers`); 0 where not recorded (older cards, the
        disaggregation model: one task).
    """

    name: str
    predictors: tuple[str, ...]
    features: tuple[str, ...]
    key: str
    sha256: str
    n_train: int
    n_rounds: int
    cv_rmse: float | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    fit_workers: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelRecord:
        """Inverse of ``asdict``."""
        return cls(d["name"], tuple(d["predictors"]), tuple(d["features"]), d["key"], d["sha256"], int(d["n_train"]),
                   int(d["n_rounds"]), d.get("cv_rmse"), {k: (float(v[0]), float(v[1])) for k, v in d["ranges"].items()},
                   int(d.get("fit_workers", 0)))


@dataclass(frozen=True)
class FusionCard:
    """What the fusion method trained, and the error model prediction applies.

    Attributes
    ----------
    predictors
        The configured predictors.
    params
        The chosen XGBoost hyperparameters (cross-validated).
    search
        Every candidate's CV score (``params``, ``cv_rmse``, ``n_rounds``).
    cv
        The cross-validation set-up (folds, block sizes, samples).
    variants
        The point models in order of preference (``full`` first).
    monotone_increasing
        Predictors every model is constrained to be non-decreasing in
        (``training.fusion.monotone_rain``).
    anomaly_partners
        ``{variant: partner}``: the 1 km within-cell anomaly of a pixel the variant predicts is
        the mean of the variant's and its partner's (the same predictors without the rain ones,
        ``training.fusion.rain_free_anomaly``); empty: the variant's own.
    error_model
        :class:`dsm.fusion.ErrorModel` as a dict (var_S, var_M, w, decay, warnings).
    var_anomaly
        Error variance of the within-cell anomaly in ``sm_unc`` (the configured prior
        ``training.fusion.anomaly_error_sd`` squared: nothing at 36 km observes it).
    anomaly_gain
        k in ``C + k (f - mean_cell f)``.
    interval
        Nominal coverage of ``sm +- sm_unc`` (None: no uncertainty).
    disaggregation
        The disaggregation model, when trained.
    importance
        XGBoost gain of the full model's features, normalised.
    inputs_out_of_range
        Values of the training samples' inputs masked as impossible (:mod:`dsm.ranges`): 1 km
        land pixel-days per predictor, SMAP cell-days under ``smap_sm``.
    """

    predictors: tuple[str, ...]
    params: dict[str, Any]
    search: tuple[dict[str, Any], ...]
    cv: dict[str, Any]
    variants: tuple[ModelRecord, ...]
    error_model: dict[str, Any]
    var_anomaly: float
    anomaly_gain: float
    interval: float | None
    disaggregation: ModelRecord | None = None
    disaggregation_card: dict[str, Any] | None = None
    importance: dict[str, float] = field(default_factory=dict)
    created: str = ""
    method: str = "fusion"
    version: int = CARD_VERSION
    inputs_out_of_range: dict[str, int] = field(default_factory=dict)
    monotone_increasing: tuple[str, ...] = ()
    anomaly_partners: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``card.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FusionCard:
        """Read a stored card."""
        return cls(tuple(d["predictors"]), dict(d["params"]), tuple(d["search"]), dict(d["cv"]),
                   tuple(ModelRecord.from_dict(v) for v in d["variants"]), dict(d["error_model"]),
                   float(d["var_anomaly"]), float(d["anomaly_gain"]), d.get("interval"),
                   ModelRecord.from_dict(d["disaggregation"]) if d.get("disaggregation") else None,
                   d.get("disaggregation_card"), dict(d.get("importance", {})), d.get("created", ""),
                   d.get("method", "fusion"), int(d.get("version", CARD_VERSION)),
                   {k: int(v) for k, v in d.get("inputs_out_of_range", {}).items()},
                   tuple(d.get("monotone_increasing", ())), dict(d.get("anomaly_partners", {})))


def read_fusion_card(store: ModelStore) -> FusionCard | None:
    """The fusion method's card (None when absent); a malformed one is a :class:`StoreError`."""
    return read_typed(store, FUSION_KEY, FusionCard.from_dict)


def write_fusion_card(store: ModelStore, card: FusionCard) -> None:
    """Write the fusion method's card (last: it marks the training done)."""
    store.write_card(FUSION_KEY, card.to_dict())


def read_typed(store: ModelStore, key: str, parse: Callable[[Mapping[str, Any]], T]) -> T | None:
    """``parse`` of the card of ``key`` (None when absent); a malformed card is a StoreError."""
    raw = store.read_card(key)
    if raw is None:
        return None
    try:
        return parse(raw)
    except KeyError as exc:
        problem = f"lacks the key {exc}"
    except (TypeError, ValueError, AttributeError) as exc:
        problem = f"is malformed ({exc})"
    raise StoreError(f"the model card {store.url}/{key}/card.json {problem}: delete it and run "
                     "`dsm train CONFIG` to write it again")


__all__ = ["FUSION_KEY", "fusion_model_key", "ModelRecord", "FusionCard", "read_fusion_card", "write_fusion_card",
           "read_typed"]
