"""The typed period cards of the paper's method (``training.method: rao2022``).

Written by :mod:`dsm.stages.train` (periods, the pooled comparison model), read by training
reruns, prediction (:mod:`dsm.dayplans`), ``dsm status`` and the report; the variants' cards are
in :mod:`dsm.models.variant_cards`. One schema per card, one writer and one reader each:
``write_*_card`` stores ``Card.to_dict()`` through
:meth:`dsm.models.store.ModelStore.write_card`, ``read_*_card`` parses what
:meth:`~dsm.models.store.ModelStore.read_card` returns with ``Card.from_dict`` and turns a
malformed card into a :class:`~dsm.errors.StoreError` naming its file.

``to_dict`` gives back the keys, order and values that were read: a stored card re-serialised is
byte-identical (keys a card written by an older dsm lacks stay out, :func:`absent_keys`; a key no
field knows is refused, never dropped). Keys that only some cards hold are omitted when the
attribute is None (or empty, for ``convergence_warnings``). Nested mappings and lists are
read-only (:class:`~dsm.frozen.FrozenDict` / :class:`~dsm.frozen.FrozenList`).

Model store keys::

    <YYYYDDD>                          PeriodCard: TrainedPeriodCard or ReusedPeriodCard
    pooled                             PooledCard
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from dsm.frozen import FrozenDict, frozen
from dsm.models.cards import read_typed

if TYPE_CHECKING:
    from dsm.models.store import ModelStore

TRAINED = "trained"
REUSED = "reused"
TOO_FEW = "too_few_samples"
ABSENT = "absent"
MODEL_KEYS = ("file", "format", "sha256", "size", "class", "versions", "store_format", "linear")
T = TypeVar("T")


def json_form(value: Any) -> Any:
    """``value`` with every card part its ``to_dict()``, every mapping a ``dict`` and every list or
    tuple a ``list`` (JSON-ready)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: json_form(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_form(v) for v in value]
    return value


def absent_keys(cls: Any, d: Mapping[str, Any], inner: tuple[str, ...] = ()) -> frozenset[str]:
    """The fields of the card class ``cls`` (but ``inner``) that the stored ``d`` lacks (a card
    written by an older dsm): ``to_dict`` leaves them out again, so a stored card re-serialised is
    byte-identical. A card read from the store keeps them in :func:`dataclasses.replace`: build a
    new card rather than set one of them.

    Raises
    ------
    ValueError
        ``d`` has a key that is no field of ``cls`` (nothing is dropped silently).
    """
    names = [f.name for f in fields(cls) if f.name not in (ABSENT, *inner)]
    unknown = [k for k in d if k not in names]
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for a {cls.__name__}")
    return frozenset(n for n in names if n not in d)


def fields_json(card: Any, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON form of a card, keys in the order of its fields but those it was read without;
    those named in ``omit`` only when set (not None, not empty)."""
    out: dict[str, Any] = {}
    for f in fields(card):
        value = getattr(card, f.name)
        if f.name == ABSENT or f.name in card.absent:
            continue
        if f.name not in omit or (value is not None and value != ()):
            out[f.name] = json_form(value)
    return out


def tuple_or_none(value: Any) -> tuple[Any, ...] | None:
    """A JSON list as a tuple (None stays None)."""
    return None if value is None else tuple(value)


def frozen_mapping(value: Any) -> Mapping[str, Any]:
    """A read-only copy of a JSON object (an empty one for None)."""
    return frozen(dict(value)) if value is not None else FrozenDict()


def frozen_mapping_or_none(value: Any) -> Mapping[str, Any] | None:
    """A read-only copy of a JSON object (None stays None)."""
    return None if value is None else frozen_mapping(value)


@dataclass(frozen=True, kw_only=True)
class StoredModel:
    """A card's ``model`` entry (:meth:`dsm.models.store.ModelStore.save_model`).

    Attributes
    ----------
    file, format, sha256, size
        File name beside the card, ``xgboost-json`` or ``joblib``, its digest and size.
    class_name
        The estimator's class (key ``class``).
    versions
        Library versions that wrote it; ``store_format``: the store's format version.
    linear
        Coefficients and intercept of a linear model.
    """

    file: str
    format: str
    sha256: str
    size: int | None = None
    class_name: str | None = None
    versions: Mapping[str, str] | None = None
    store_format: int | None = None
    linear: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StoredModel:
        """Read a stored entry."""
        unknown = [k for k in d if k not in MODEL_KEYS]
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in a model entry")
        return cls(file=d["file"], format=d["format"], sha256=d["sha256"], size=d.get("size"),
                   class_name=d.get("class"), versions=frozen_mapping_or_none(d.get("versions")),
                   store_format=d.get("store_format"), linear=frozen_mapping_or_none(d.get("linear")))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (optional keys only when set)."""
        out = {"file": self.file, "format": self.format, "sha256": self.sha256, "size": self.size,
               "class": self.class_name, "versions": self.versions, "store_format": self.store_format,
               "linear": self.linear}
        return {k: json_form(v) for k, v in out.items() if v is not None or k in ("file", "format", "sha256")}


def stored_model_or_none(value: Any) -> StoredModel | None:
    """A card's ``model`` entry (None: no model of its own)."""
    return None if value is None else StoredModel.from_dict(value)


@dataclass(frozen=True, kw_only=True)
class ModelFit:
    """One tuned regressor of a period (an entry of :attr:`TrainedPeriodCard.models`).

    Attributes
    ----------
    train, test
        ``{"r", "rmse", "n"}`` on the split's halves (:func:`dsm.models.select.scores`).
    cv_rmse, best_params, n_candidates
        The grid search's best CV RMSE, its parameters, and the candidates it tried.
    importance
        RF impurity or XGB gain per predictor (normalised), None for other models.
    convergence_warnings
        The MLP's convergence messages (empty: none).
    """

    train: Mapping[str, float]
    test: Mapping[str, float]
    cv_rmse: float | None = None
    best_params: Mapping[str, Any] = field(default_factory=FrozenDict)
    n_candidates: int | None = None
    importance: Mapping[str, float] | None = None
    convergence_warnings: tuple[str, ...] = ()
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # see absent_keys

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelFit:
        """Read a stored entry."""
        return cls(absent=absent_keys(cls, d), train=frozen_mapping(d["train"]), test=frozen_mapping(d["test"]),
                   cv_rmse=d.get("cv_rmse"),
                   best_params=frozen_mapping(d.get("best_params")), n_candidates=d.get("n_candidates"),
                   importance=frozen_mapping_or_none(d.get("importance")),
                   convergence_warnings=tuple(d.get("convergence_warnings") or ()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return fields_json(self, omit=("importance", "convergence_warnings"))


@dataclass(frozen=True, kw_only=True)
class Importance:
    """A period's importance per predictor: RF impurity and XGB gain (None: model not tuned)."""

    rf_impurity: Mapping[str, float] | None = None
    xgb_gain: Mapping[str, float] | None = None
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # see absent_keys

    def of(self, kind: str) -> Mapping[str, float] | None:
        """The importance of ``kind``: ``rf_impurity`` or ``xgb_gain``."""
        return self.rf_impurity if kind == "rf_impurity" else self.xgb_gain if kind == "xgb_gain" else None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Importance:
        """Read a stored entry (None: no importance)."""
        d = d or {}
        return cls(absent=absent_keys(cls, d), rf_impurity=frozen_mapping_or_none(d.get("rf_impurity")),
                   xgb_gain=frozen_mapping_or_none(d.get("xgb_gain")))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return fields_json(self)


@dataclass(frozen=True, kw_only=True)
class TrainedPeriodCard:
    """A period trained on its own samples (``status: trained``), key ``YYYYDDD``.

    Attributes
    ----------
    period, n_samples, n_dates
        The period, its samples and the days they come from.
    inputs_out_of_range
        Values masked as impossible while the samples were made (:mod:`dsm.ranges`).
    predictors
        Predictor columns in order (None: not recorded).
    aggregation
        The sample settings (how cells were aggregated).
    split, grids, cv_folds
        The date split's record, the grids searched and the CV folds.
    models, model_errors, chosen, selection_rule
        Every tuned model, the models that failed to fit, the chosen one and why.
    importance
        RF impurity and XGB gain.
    spatial_split
        The spatial-block check (``training.spatial_block``), None when not run.
    cube, window, model
        The cube trained on, the days sampled and the stored chosen model (None before it is
        saved).
    """

    period: str
    status: str = TRAINED
    n_samples: int = 0
    n_dates: int = 0
    inputs_out_of_range: Mapping[str, int] = field(default_factory=FrozenDict)
    predictors: tuple[str, ...] | None = None
    aggregation: Mapping[str, Any] | None = None
    split: Mapping[str, Any] = field(default_factory=FrozenDict)
    grids: Mapping[str, Any] = field(default_factory=FrozenDict)
    cv_folds: int | None = None
    models: Mapping[str, ModelFit]
    model_errors: Mapping[str, str] = field(default_factory=FrozenDict)
    chosen: str
    selection_rule: str = ""
    reused_from: None = None
    importance: Importance = field(default_factory=Importance)
    created: str = ""
    spatial_split: Mapping[str, Any] | None = None
    cube: str | None = None
    window: tuple[str, ...] | None = None
    model: StoredModel | None = None
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # see absent_keys

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainedPeriodCard:
        """Read a stored card."""
        return cls(absent=absent_keys(cls, d), period=d["period"], status=d["status"],
                   n_samples=d.get("n_samples", 0), n_dates=d.get("n_dates", 0),
                   inputs_out_of_range=frozen_mapping(d.get("inputs_out_of_range")),
                   predictors=tuple_or_none(d.get("predictors")),
                   aggregation=frozen_mapping_or_none(d.get("aggregation")), split=frozen_mapping(d.get("split")),
                   grids=frozen_mapping(d.get("grids")), cv_folds=d.get("cv_folds"),
                   models=FrozenDict({k: ModelFit.from_dict(v) for k, v in d["models"].items()}),
                   model_errors=frozen_mapping(d.get("model_errors")), chosen=d["chosen"],
                   selection_rule=d.get("selection_rule", ""), importance=Importance.from_dict(d.get("importance")),
                   created=d.get("created", ""), spatial_split=frozen_mapping_or_none(d.get("spatial_split")),
                   cube=d.get("cube"), window=tuple_or_none(d.get("window")),
                   model=stored_model_or_none(d.get("model")))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``card.json``)."""
        return fields_json(self, omit=("spatial_split",))


@dataclass(frozen=True, kw_only=True)
class ReusedPeriodCard:
    """A period with too few samples, using another period's model (``status: reused``).

    Attributes
    ----------
    period, n_samples
        The period and its (too few) samples.
    reused_from
        The trained period whose model it uses.
    fallback
        Why, in words.
    aggregation, window, created
        The sample settings, the days sampled, when the card was written.
    """

    period: str
    status: str = REUSED
    n_samples: int = 0
    reused_from: str
    fallback: str = ""
    model: None = None
    aggregation: Mapping[str, Any] | None = None
    window: tuple[str, ...] | None = None
    created: str = ""
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # see absent_keys

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReusedPeriodCard:
        """Read a stored card."""
        return cls(absent=absent_keys(cls, d), period=d["period"], status=d["status"],
                   n_samples=d.get("n_samples", 0), reused_from=d["reused_from"], fallback=d.get("fallback", ""),
                   aggregation=frozen_mapping_or_none(d.get("aggregation")), window=tuple_or_none(d.get("window")),
                   created=d.get("created", ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``card.json``)."""
        return fields_json(self)


PeriodCard = TrainedPeriodCard | ReusedPeriodCard


def period_card_from_dict(d: Mapping[str, Any]) -> PeriodCard:
    """The card of a period, by its ``status``.

    Raises
    ------
    KeyError, ValueError
        A key missing, or a status other than ``trained`` / ``reused``.
    """
    status = d["status"]
    if status == TRAINED:
        return TrainedPeriodCard.from_dict(d)
    if status == REUSED:
        return ReusedPeriodCard.from_dict(d)
    raise ValueError(f"status {status!r} is neither {TRAINED!r} nor {REUSED!r}")


@dataclass(frozen=True, kw_only=True)
class PooledCard:
    """The pooled XGBoost model over all periods (key ``pooled``), a comparison never used to predict.

    Attributes
    ----------
    features, params
        Its feature columns (day-of-year terms included) and XGBoost parameters.
    n_samples, n_train, n_test, periods
        Samples of the periods pooled, the train and test halves, the periods.
    train, test, per_period
        Scores on the union of the halves, and per period (``{"train", "test"}``).
    importance
        ``{"xgb_gain": {feature: share}}``.
    predicts, window, model
        Whether prediction uses it, the days sampled, the stored model.
    fit_workers
        Workers that held its rows in the ``xgboost.dask`` fit: 1, the model is the same on any
        cluster (:func:`dsm.models.pooled.fit_workers`); 0 in cards written before it was recorded.
    """

    period: str = "pooled"
    status: str = TRAINED
    model_name: str = "xgb"
    trained_with: str = ""
    features: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=FrozenDict)
    n_samples: int = 0
    n_train: int = 0
    n_test: int = 0
    periods: tuple[str, ...] = ()
    train: Mapping[str, float] | None = None
    test: Mapping[str, float] | None = None
    per_period: Mapping[str, Mapping[str, Any]]
    importance: Mapping[str, Mapping[str, float]] = field(default_factory=FrozenDict)
    created: str = ""
    predicts: bool = False
    window: tuple[str, ...] | None = None
    model: StoredModel | None = None
    fit_workers: int = 0
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # see absent_keys

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PooledCard:
        """Read a stored card."""
        return cls(absent=absent_keys(cls, d), period=d.get("period", "pooled"), status=d.get("status", TRAINED),
                   model_name=d.get("model_name", "xgb"), trained_with=d.get("trained_with", ""),
                   features=tuple(d.get("features") or ()), params=frozen_mapping(d.get("params")),
                   n_samples=d.get("n_samples", 0), n_train=d.get("n_train", 0), n_test=d.get("n_test", 0),
                   periods=tuple(d.get("periods") or ()), train=frozen_mapping_or_none(d.get("train")),
                   test=frozen_mapping_or_none(d.get("test")), per_period=frozen_mapping(d["per_period"]),
                   importance=frozen_mapping(d.get("importance")), created=d.get("created", ""),
                   predicts=bool(d.get("predicts", False)), window=tuple_or_none(d.get("window")),
                   model=stored_model_or_none(d.get("model")), fit_workers=int(d.get("fit_workers", 0)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``card.json``)."""
        return fields_json(self)


# -- the one reader and writer of each card ------------------------------------------------------
def read_period_card(store: ModelStore, key: str) -> PeriodCard | None:
    """The card of period ``key`` (``YYYYDDD``), None when absent.

    Raises
    ------
    StoreError
        The card is not valid JSON, lacks a key or has another status (the message names it).
    """
    return read_typed(store, key, period_card_from_dict)


def write_period_card(store: ModelStore, card: PeriodCard) -> None:
    """Write the card of ``card.period`` (after its model: the card marks the period done)."""
    store.write_card(card.period, card.to_dict())


def read_pooled_card(store: ModelStore, key: str = "pooled") -> PooledCard | None:
    """The pooled model's card, None when absent (StoreError when malformed)."""
    return read_typed(store, key, PooledCard.from_dict)


def write_pooled_card(store: ModelStore, card: PooledCard, key: str = "pooled") -> None:
    """Write the pooled model's card (after the model)."""
    store.write_card(key, card.to_dict())


__all__ = ["TRAINED", "REUSED", "TOO_FEW", "StoredModel", "ModelFit", "Importance", "TrainedPeriodCard",
           "ReusedPeriodCard", "PeriodCard", "period_card_from_dict", "PooledCard", "read_period_card",
           "write_period_card", "read_pooled_card", "write_pooled_card", "json_form", "fields_json",
           "frozen_mapping", "frozen_mapping_or_none", "tuple_or_none", "stored_model_or_none",
           "absent_keys"]
