"""The typed cards of a period's predictor-set variants and quantile models (``training.method:
rao2022``, :mod:`dsm.models.variants`).

Written by :func:`dsm.models.variants.train_variants`, read by training reruns and prediction
(:mod:`dsm.dayplans`). One writer and one reader each, as for the period cards
(:mod:`dsm.models.period_cards`): a stored card read and written again is byte-identical.

Model store keys::

    variants/<variant>/<YYYYDDD>           VariantCard
    variants/<variant>/<YYYYDDD>/quantile  QuantileCard
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from dsm.frozen import FrozenDict
from dsm.models.cards import read_typed
from dsm.models.period_cards import (
    StoredModel,
    absent_keys,
    fields_json,
    frozen_mapping,
    frozen_mapping_or_none,
    stored_model_or_none,
)

if TYPE_CHECKING:
    from dsm.models.store import ModelStore


@dataclass(frozen=True, kw_only=True)
class QuantileFit:
    """The quantile model's levels and its conformalised coverage on the test half.

    Attributes
    ----------
    levels, params
        The two quantile levels and the XGBoost parameters.
    conformal_margin
        Added to the half width so that the interval covers held-out samples.
    test_coverage_raw, test_coverage, test_mean_half_width
        Coverage on the test half before and after the margin, and the mean half width (None:
        no test half).
    """

    levels: tuple[float, ...]
    params: Mapping[str, Any] = field(default_factory=FrozenDict)
    conformal_margin: float = 0.0
    test_coverage_raw: float | None = None
    test_coverage: float | None = None
    test_mean_half_width: float | None = None
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # see absent_keys

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantileFit:
        """Read a stored entry."""
        return cls(absent=absent_keys(cls, d), levels=tuple(d["levels"]), params=frozen_mapping(d.get("params")),
                   conformal_margin=d.get("conformal_margin", 0.0), test_coverage_raw=d.get("test_coverage_raw"),
                   test_coverage=d.get("test_coverage"), test_mean_half_width=d.get("test_mean_half_width"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return fields_json(self)


@dataclass(frozen=True, kw_only=True)
class VariantCard:
    """A period's predictor-set variant (key ``variants/<variant>/<YYYYDDD>``).

    Attributes
    ----------
    period, variant, predictors, dropped
        The period, the variant's name, its predictors and those of the period it drops.
    n_samples, feature_ranges
        Its samples, and ``{predictor: (min, max)}`` over them (prediction flags extrapolation).
    model
        The reduced point model (None for ``full``, which is the period's model, or with too
        few samples).
    device, created
        XGBoost's device, when it was written.
    chosen, best_params, train, test
        The period's regressor refitted without the dropped predictors, and its scores (reduced
        variants only).
    split
        The split's record (None with too few samples).
    status
        ``trained`` or ``too_few_samples``.
    quantile
        The quantile model's summary (``output.uncertainty: quantile``).
    """

    period: str
    variant: str
    predictors: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    n_samples: int = 0
    feature_ranges: Mapping[str, tuple[float, float]] = field(default_factory=FrozenDict)
    model: StoredModel | None = None
    device: str = "cpu"
    created: str = ""
    chosen: str | None = None
    best_params: Mapping[str, Any] | None = None
    train: Mapping[str, float] | None = None
    test: Mapping[str, float] | None = None
    split: Mapping[str, Any] | None = None
    status: str
    quantile: QuantileFit | None = None
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # see absent_keys

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariantCard:
        """Read a stored card."""
        ranges = d.get("feature_ranges") or {}
        return cls(absent=absent_keys(cls, d), period=d["period"], variant=d["variant"],
                   predictors=tuple(d.get("predictors") or ()), dropped=tuple(d.get("dropped") or ()),
                   n_samples=d.get("n_samples", 0),
                   feature_ranges=FrozenDict({k: (v[0], v[1]) for k, v in ranges.items()}),
                   model=stored_model_or_none(d.get("model")), device=d.get("device", "cpu"),
                   created=d.get("created", ""),
                   chosen=d.get("chosen"), best_params=frozen_mapping_or_none(d.get("best_params")),
                   train=frozen_mapping_or_none(d.get("train")), test=frozen_mapping_or_none(d.get("test")),
                   split=frozen_mapping_or_none(d.get("split")), status=d["status"],
                   quantile=QuantileFit.from_dict(d["quantile"]) if d.get("quantile") is not None else None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``card.json``); keys after ``created`` only when set."""
        return fields_json(self, omit=("chosen", "best_params", "train", "test", "split", "quantile"))


@dataclass(frozen=True, kw_only=True)
class QuantileCard:
    """A variant's quantile model (key ``variants/<variant>/<YYYYDDD>/quantile``).

    ``fit`` holds the keys between ``kind`` and ``model`` (they are the variant card's
    ``quantile`` entry).
    """

    period: str
    variant: str
    kind: str = "quantile"
    fit: QuantileFit
    model: StoredModel | None = None
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # see absent_keys

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantileCard:
        """Read a stored card."""
        fit_keys = [f.name for f in fields(QuantileFit) if f.name != "absent"]
        own = {k: v for k, v in d.items() if k not in fit_keys}
        return cls(absent=absent_keys(cls, own, inner=("fit",)), period=d["period"], variant=d["variant"],
                   kind=d.get("kind", "quantile"), fit=QuantileFit.from_dict({k: d[k] for k in fit_keys if k in d}),
                   model=stored_model_or_none(d.get("model")))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``card.json``)."""
        head = fields_json(self)  # the fit's keys go between kind and model
        fit = head.pop("fit")
        tail = {"model": head.pop("model")} if "model" in head else {}
        return {**head, **fit, **tail}


# -- the one reader and writer of each card ------------------------------------------------------
def read_variant_card(store: ModelStore, key: str) -> VariantCard | None:
    """The variant card at ``key`` (:func:`dsm.models.variants.variant_key`), None when absent."""
    return read_typed(store, key, VariantCard.from_dict)


def write_variant_card(store: ModelStore, key: str, card: VariantCard) -> None:
    """Write a variant card at ``key`` (after its model)."""
    store.write_card(key, card.to_dict())


def read_quantile_card(store: ModelStore, key: str) -> QuantileCard | None:
    """The quantile card at ``key`` (:func:`dsm.models.variants.quantile_key`), None when absent."""
    return read_typed(store, key, QuantileCard.from_dict)


def write_quantile_card(store: ModelStore, key: str, card: QuantileCard) -> None:
    """Write a quantile card at ``key`` (after its model)."""
    store.write_card(key, card.to_dict())


__all__ = ["QuantileFit", "VariantCard", "QuantileCard", "read_variant_card", "write_variant_card",
           "read_quantile_card", "write_quantile_card"]
