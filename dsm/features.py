"""Model features derived from the cube's predictors (pure).

The paper's method (``training.method: rao2022``) feeds the predictors as they are. The
default method (``fusion``) feeds *features*:

* circular predictors (aspect, degrees clockwise from north) enter as ``aspect_sin`` and
  ``aspect_cos``: an arithmetic mean of angles is meaningless (the mean of 350 and 10 degrees
  is not 180), so the 1 km pixels are turned into sine and cosine *before* they are averaged
  to 36 km, and a pixel facing north is never "outside the range" of the training cells;
* the day of the year enters as ``doy_sin`` and ``doy_cos`` (:func:`doy_terms`), so one
  model serves every season.

Every function here works on numpy and dask arrays alike (only ufuncs are used).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

CIRCULAR: frozenset[str] = frozenset({"aspect"})
"""Predictors measured as angles in degrees."""

DOY_FEATURES: tuple[str, str] = ("doy_sin", "doy_cos")


def with_rain(predictors: Sequence[str], rain: Sequence[str], use: bool) -> tuple[str, ...]:
    """``predictors`` followed by the ``rain`` predictors they lack, when ``use``; else unchanged."""
    return tuple(predictors) + (tuple(r for r in rain if r not in predictors) if use else ())


def rain_reduced_sets(reduced_sets: Sequence[Sequence[str]], rain: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The reduced predictor groups plus one that drops the ``rain`` predictors alone (a gap in
    the precipitation record on a clear day; also the rain-free partner of the within-cell
    anomaly, :func:`rain_free_partners`) and one that drops them with every other group:
    ``[[lst]]`` -> ``[[lst], [precip, api_...], [lst, precip, api_...]]``."""
    dropped = tuple(dict.fromkeys(p for group in reduced_sets for p in group))
    rain_only = tuple(r for r in rain if r not in dropped)
    return (*map(tuple, reduced_sets), rain_only, (*dropped, *rain_only))


def rain_free_partners(variants: Mapping[str, Sequence[str]], rain: Collection[str]) -> dict[str, str]:
    """``{variant: partner}``: for each variant that uses a ``rain`` predictor, the variant
    whose predictors are the same without them (when there is one)."""
    by_predictors = {tuple(p): name for name, p in variants.items()}
    out = {}
    for name, preds in variants.items():
        if any(p in rain for p in preds):
            partner = by_predictors.get(tuple(p for p in preds if p not in rain))
            if partner is not None:
                out[name] = partner
    return out


def feature_names(predictors: Sequence[str], circular: bool = True) -> tuple[str, ...]:
    """Feature columns of ``predictors``: each circular one becomes ``<name>_sin``, ``<name>_cos``."""
    out: list[str] = []
    for p in predictors:
        out += [f"{p}_sin", f"{p}_cos"] if circular and p in CIRCULAR else [p]
    return tuple(out)


def source_of(feature: str) -> str:
    """The predictor a feature is computed from (``aspect_sin`` -> ``aspect``)."""
    for suffix in ("_sin", "_cos"):
        if feature.endswith(suffix) and feature[: -len(suffix)] in CIRCULAR:
            return feature[: -len(suffix)]
    return feature


def feature_layer(feature: str, layer: Any) -> Any:
    """One feature from its predictor's layer (numpy or dask; NaN stays NaN)."""
    name = source_of(feature)
    if name == feature:
        return layer
    angle = np.deg2rad(layer)
    return np.sin(angle) if feature.endswith("_sin") else np.cos(angle)


def feature_layers(layers: Mapping[str, Any], features: Sequence[str]) -> dict[str, Any]:
    """``{feature: array}`` from ``{predictor: array}``."""
    return {f: feature_layer(f, layers[source_of(f)]) for f in features}


def monotone_constraints(features: Sequence[str], increasing: Collection[str]) -> dict[str, tuple[int, ...]]:
    """XGBoost parameters that make a model on ``features`` (in order) non-decreasing in each
    feature of ``increasing``: ``{"monotone_constraints": (1 or 0 per feature)}``, or ``{}``
    when no feature is constrained."""
    signs = tuple(int(f in increasing) for f in features)
    return {"monotone_constraints": signs} if any(signs) else {}


def doy_terms(dates: Any) -> np.ndarray:
    """``(n, 2)`` float32 array of ``sin`` and ``cos`` of ``2 pi doy / 365.25``."""
    doy = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates))).day_of_year.to_numpy(dtype=np.float64)
    angle = 2.0 * np.pi * doy / 365.25
    return np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)


def design_matrix(table: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A table's ``columns`` then the day-of-year terms of its ``date`` column (float32): the
    matrix every pooled model is fitted and applied on."""
    X = table.loc[:, list(columns)].to_numpy(dtype=np.float32)
    return np.concatenate([X, doy_terms(table["date"].to_numpy()).reshape(len(table), 2)], axis=1)


__all__ = ["design_matrix", "monotone_constraints", "CIRCULAR", "DOY_FEATURES", "feature_names", "source_of", "feature_layer", "feature_layers", "doy_terms",
           "rain_free_partners", "rain_reduced_sets", "with_rain"]
