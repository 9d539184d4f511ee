"""Day plans of the predict stage: which stored models predict each day (pure given the store).

For the paper's method a day's plan is its period's model (following ``reused_from``), its
reduced (gap-free) and quantile variants and the predictor ranges seen in training; for the
fusion method, the pooled model and its companions from the model card.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from dsm.config import Config
from dsm.errors import ConfigError, StoreError
from dsm.features import DOY_FEATURES
from dsm.models.cards import FUSION_KEY, FusionCard, ModelRecord, read_fusion_card
from dsm.models.period_cards import TrainedPeriodCard, read_period_card
from dsm.models.store import ModelStore
from dsm.models.variant_cards import read_quantile_card, read_variant_card
from dsm.models.variants import FULL, quantile_key, variant_key, variants_of
from dsm.periods import period_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantPlan:
    """One model of a day: its predictors, model-store keys and training ranges."""

    name: str
    predictors: tuple[str, ...]
    point_key: str
    point_sha: str
    quantile_key: str | None = None
    quantile_sha: str | None = None
    ranges: tuple[tuple[float, float], ...] | None = None  # per feature, None: no range check
    doy: bool = False  # pooled model: day-of-year terms appended
    margin: float = 0.0  # conformal margin added to the quantile half width
    features: tuple[str, ...] | None = None  # model columns from the predictors (None: the predictors)

    @property
    def columns(self) -> tuple[str, ...]:
        """The model's feature columns before the day-of-year terms."""
        return self.features if self.features is not None else self.predictors

    def record(self) -> dict[str, Any]:
        """JSON-ready description, stored in the day's :attr:`dsm.ledger.DayRecord.model`."""
        return {"predictors": list(self.predictors), "model": self.point_key, "sha256": self.point_sha,
                "quantile": self.quantile_key}


@dataclass(frozen=True)
class DayPlan:
    """Which models make one day (or why none can)."""

    day: dt.date
    period: str
    model_period: str | None = None
    chosen: str | None = None
    reused: bool = False
    variants: tuple[VariantPlan, ...] = ()
    error: str | None = None
    disaggregation: VariantPlan | None = None  # fusion: averaged with the full variant
    partners: tuple[tuple[str, VariantPlan], ...] = ()  # fusion: variant -> its within-cell anomaly's partner

    def partner_of(self, variant: str) -> VariantPlan | None:
        """The model whose within-cell anomaly is averaged with ``variant``'s (None: its own alone)."""
        return next((p for name, p in self.partners if name == variant), None)

    def record(self) -> dict[str, Any]:
        """JSON-ready description, the day's :attr:`dsm.ledger.DayRecord.model`."""
        rec: dict[str, Any] = {"period": self.period, "model_period": self.model_period, "model": self.chosen,
                               "reused": self.reused, "variants": {v.name: v.record() for v in self.variants}}
        if self.disaggregation is not None:
            rec["disaggregation"] = self.disaggregation.record()
        if self.partners:
            rec["anomaly_partners"] = {name: p.name for name, p in self.partners}
        return rec

    def on(self, day: dt.date) -> DayPlan:
        """The same plan for another day."""
        return replace(self, day=day)


def make_plans(config: Config, models: ModelStore, day_list: Sequence[dt.date],
               card: FusionCard | None = None) -> list[DayPlan]:
    """The plan of every day (pure apart from reading model cards); ``card``: the fusion method's."""
    want_q = config.output.uncertainty == "quantile"
    by_period: dict[str, DayPlan] = {}
    plans = []
    for day in day_list:
        name = period_of(day).name
        if name not in by_period:
            by_period[name] = (_fusion_plan(card, name) if card is not None
                               else _period_plan(config, models, name, want_q))
        plans.append(by_period[name].on(day))
    return plans


def _record_plan(rec: ModelRecord) -> VariantPlan:
    features = tuple(f for f in rec.features if f not in DOY_FEATURES)
    return VariantPlan(rec.name, rec.predictors, rec.key, rec.sha256, doy=True, features=features,
                       ranges=tuple(tuple(rec.ranges[f]) for f in features) if rec.ranges else None)  # type: ignore[misc]


def _fusion_plan(card: FusionCard, name: str) -> DayPlan:
    disagg = _record_plan(card.disaggregation) if card.disaggregation is not None else None
    variants = {r.name: _record_plan(r) for r in card.variants}
    partners = tuple((v, variants[p]) for v, p in card.anomaly_partners.items() if v in variants and p in variants)
    return DayPlan(dt.date.min, name, FUSION_KEY, "xgb (pooled, fused with SMAP)", False,
                   tuple(variants.values()), disaggregation=disagg, partners=partners)


def _period_plan(config: Config, models: ModelStore, name: str, want_q: bool) -> DayPlan:
    try:
        key, _, reused = models.resolve(name)
        card = read_period_card(models, key)
    except StoreError as exc:
        return DayPlan(dt.date.min, name, error=str(exc))
    if not isinstance(card, TrainedPeriodCard) or card.model is None:  # resolve found a stored model
        return DayPlan(dt.date.min, name, error=f"period {key}'s card in {models.url} is no trained period's")
    if card.predictors is not None and list(card.predictors) != list(config.predictors):
        return DayPlan(dt.date.min, name, error=f"period {key}'s model uses predictors {list(card.predictors)}, "
                       f"the configuration has {list(config.predictors)}")
    variants = []
    for vname, preds in variants_of(config).items():
        vcard = read_variant_card(models, variant_key(vname, key))
        if vname == FULL:
            point_key, sha = key, card.model.sha256
        elif vcard is None or vcard.model is None:
            continue  # no reduced model (too few samples or trained by an older dsm): pixels stay empty
        else:
            point_key, sha = variant_key(vname, key), vcard.model.sha256
        ranges = None
        if vcard and vcard.feature_ranges:
            ranges = tuple(vcard.feature_ranges[p] for p in preds)
        qkey = qsha = None
        margin = 0.0
        if want_q:
            qcard = read_quantile_card(models, quantile_key(vname, key))
            if qcard is not None and qcard.model is not None:
                qkey, qsha = quantile_key(vname, key), qcard.model.sha256
                margin = float(qcard.fit.conformal_margin or 0.0)
        variants.append(VariantPlan(vname, preds, point_key, sha, qkey, qsha, ranges,
                                    margin=margin))
    return DayPlan(dt.date.min, name, key, card.chosen, reused, tuple(variants))


def fusion_card(models: ModelStore) -> FusionCard:
    """The fusion method's card, or a :class:`ConfigError` saying to train first."""
    card = read_fusion_card(models)
    if card is None:
        raise ConfigError(f"no fusion model in {models.url}: run `dsm train` first (training.method: fusion)")
    return card
