"""Scores of products against the in situ daily means (pure).

:func:`pair_table` joins the station daily means with each product's samples;
:func:`score_pairs` scores every product per site, per network, pooled over all sites
(``all``) and as the mean of the per-site scores (``site_mean``), on the common days and on
its own days, with percentile bootstrap confidence intervals (:mod:`dsm.metrics`);
:func:`overlap_problems` names the stations and products without overlapping days.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from dsm import metrics
from dsm.config import BootstrapConfig
from dsm.stations import INSITU, SITE_KEYS, Problems

SCORE_COLUMNS = ("product", "days", "level", "network", "station", "n", "r", "r_lo", "r_hi", "rmse", "rmse_lo",
                 "rmse_hi", "ubrmse", "ubrmse_lo", "ubrmse_hi", "bias", "bias_lo", "bias_hi", "bias_convention",
                 "confidence")


def pair_table(daily: pd.DataFrame, samples: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Join the in situ daily means with each product's samples on (network, station, day).

    Returns
    -------
    pandas.DataFrame
        ``network, station, time, insitu`` and one column per product; only days with an in
        situ mean; sorted by station and day.
    """
    pairs = daily.loc[:, [*SITE_KEYS, "time", INSITU]].copy()
    for s in samples:
        pairs = pairs.merge(s, on=[*SITE_KEYS, "time"], how="left")
    return pairs.sort_values([*SITE_KEYS, "time"]).reset_index(drop=True)


def common_mask(pairs: pd.DataFrame, products: Sequence[str]) -> np.ndarray:
    """Station-days where the in situ mean and every product in ``products`` are valid."""
    cols = [INSITU, *products]
    return np.isfinite(pairs.loc[:, cols].to_numpy(np.float64)).all(axis=1)


def _ci_row(p: np.ndarray, q: np.ndarray, boot: BootstrapConfig, convention: metrics.BiasConvention, min_n: int,
            block: bool) -> dict[str, float]:
    out = {f"{k}_{b}": np.nan for k in ("r", "rmse", "ubrmse", "bias") for b in ("lo", "hi")}
    if boot.n_resamples < 1 or np.isfinite(p + q).sum() < min_n:
        return out
    if block and boot.block_length is not None:
        length = min(boot.block_length, p.size)
        res = metrics.bootstrap_scores(p, q, n_resamples=boot.n_resamples, confidence=boot.confidence,
                                       seed=boot.seed, block_length=length, bias_convention=convention,
                                       min_n=min_n)
    else:
        keep = np.isfinite(p + q)
        res = metrics.bootstrap_scores(p[keep], q[keep], n_resamples=boot.n_resamples,
                                       confidence=boot.confidence, seed=boot.seed, bias_convention=convention,
                                       min_n=min_n)
    for k in ("r", "rmse", "ubrmse", "bias"):
        out[f"{k}_lo"], out[f"{k}_hi"] = getattr(res, k)
    return out


def _regular(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A station's product and in situ series on a regular daily axis (NaN gaps)."""
    s = frame.set_index("time")[[column, INSITU]]
    full = s.reindex(pd.date_range(s.index.min(), s.index.max(), freq="D"))
    return full[column].to_numpy(np.float64), full[INSITU].to_numpy(np.float64)


#: the station-days each product is scored on: those every product covers, and its own
DAY_SETS = ("common", "own")
#: the levels of the scores, in the order of a product's rows: each station, each network, all
#: stations pooled, and the mean of the stations' scores
LEVELS = ("site", "network", "all", "site_mean")


def score_pairs(pairs: pd.DataFrame, products: Sequence[str], *, boot: BootstrapConfig | None = None,
                bias_convention: metrics.BiasConvention = "reference_minus_product", min_n: int = 10,
                common_products: Sequence[str] | None = None, days: Sequence[str] = DAY_SETS,
                levels: Sequence[str] = LEVELS) -> pd.DataFrame:
    """Score every product against the in situ means per site, per network and overall (pure).

    Parameters
    ----------
    pairs : pandas.DataFrame
        :func:`pair_table` output.
    products : sequence of str
        Product columns to score.
    boot : BootstrapConfig, optional
        Bootstrap settings (default: 1000 resamples, 95 %, seed 0). Sites use the moving-block
        bootstrap when ``block_length`` is set; the pooled levels always resample pairs.
    bias_convention : str
        Sign of the bias (:mod:`dsm.metrics`).
    min_n : int
        Fewest pairs for a score.
    common_products : sequence of str, optional
        Products that define the common days (default: ``products``).
    days : sequence of str
        The day sets to score (:data:`DAY_SETS`), each product's rows in this order.
    levels : sequence of str
        The levels to score (:data:`LEVELS`), each day set's rows in this order.

    Returns
    -------
    pandas.DataFrame
        :data:`SCORE_COLUMNS`; the rows of each product, day set and level in turn, so scoring
        them apart and concatenating gives the same table.
    """
    boot = boot or BootstrapConfig()
    for what, asked, known in (("day sets", days, DAY_SETS), ("levels", levels, LEVELS)):
        unknown = [a for a in asked if a not in known]
        if unknown:
            raise ValueError(f"score_pairs: unknown {what} {unknown}; the {what} are {list(known)}")
    common = common_mask(pairs, list(common_products if common_products is not None else products))
    rows: list[dict[str, Any]] = []
    for name in products:
        for which in days:
            mask = (common if which == "common"
                    else np.isfinite(pairs[[name, INSITU]].to_numpy(np.float64)).all(axis=1))
            frame = pairs.loc[:, [*SITE_KEYS, "time", INSITU, name]].copy()
            frame.loc[~mask, [INSITU, name]] = np.nan
            scores = _ProductDays(frame, name, boot, bias_convention, min_n,
                                  {"product": name, "days": which, "bias_convention": bias_convention,
                                   "confidence": boot.confidence})
            for part in levels:
                rows += scores.rows(part)
    table = pd.DataFrame(rows)
    for c in SCORE_COLUMNS:
        if c not in table.columns:
            table[c] = np.nan
    return table.loc[:, list(SCORE_COLUMNS)]


@dataclass(frozen=True)
class _ProductDays:
    """The score rows of one product and day set (``frame``: its pairs, the other days NaN) at
    each level of :data:`LEVELS` (:meth:`rows`)."""

    frame: pd.DataFrame
    name: str
    boot: BootstrapConfig
    convention: metrics.BiasConvention
    min_n: int
    base: dict[str, Any]

    def rows(self, level: str) -> list[dict[str, Any]]:
        """The rows of ``level`` (one of :data:`LEVELS`)."""
        return {"site": self.sites, "network": self.networks, "all": self.pooled, "site_mean": self.site_mean}[level]()

    def _table(self, by: str | list[str]) -> pd.DataFrame:
        return metrics.score_table(self.frame, self.name, INSITU, by, bias_convention=self.convention, min_n=self.min_n)

    @functools.cached_property
    def _site_table(self) -> pd.DataFrame:
        """The stations' scores (the site rows and the stations' mean both take them)."""
        return self._table(list(SITE_KEYS))

    def _interval(self, p: np.ndarray, q: np.ndarray, block: bool) -> dict[str, float]:
        return _ci_row(p, q, self.boot, self.convention, self.min_n, block)

    def _pairs(self, sub: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return sub[self.name].to_numpy(np.float64), sub[INSITU].to_numpy(np.float64)

    def sites(self) -> list[dict[str, Any]]:
        """Each station's scores, with the moving-block bootstrap of its daily series when
        ``block_length`` is set."""
        rows = []
        groups = self.frame.groupby(list(SITE_KEYS), sort=True, dropna=False, observed=True)
        for (_, s), (_, sub) in zip(self._site_table.iterrows(), groups, strict=True):  # both sorted
            p, q = _regular(sub, self.name) if self.boot.block_length is not None and len(sub) else self._pairs(sub)
            rows.append({**self.base, "level": "site", "network": s["network"], "station": s["station"],
                         **{k: s[k] for k in metrics.METRIC_NAMES}, **self._interval(p, q, block=True)})
        return rows

    def networks(self) -> list[dict[str, Any]]:
        """Each network's scores over its stations' pairs pooled."""
        groups = self.frame.groupby("network", sort=True, dropna=False, observed=True)
        return [{**self.base, "level": "network", "network": s["network"], "station": "",
                 **{k: s[k] for k in metrics.METRIC_NAMES}, **self._interval(*self._pairs(sub), block=False)}
                for (_, s), (_, sub) in zip(self._table("network").iterrows(), groups, strict=True)]

    def pooled(self) -> list[dict[str, Any]]:
        """The scores of every station's pairs pooled."""
        p, q = self._pairs(self.frame)
        overall = metrics.score(p, q, bias_convention=self.convention, min_n=self.min_n)
        return [{**self.base, "level": "all", "network": "", "station": "", **overall.as_dict(),
                 **self._interval(p, q, block=False)}]

    def site_mean(self) -> list[dict[str, Any]]:
        """The mean of the scores of the stations with ``min_n`` pairs (no interval)."""
        scored = self._site_table.loc[self._site_table["n"] >= self.min_n]
        mean = {k: float(scored[k].mean()) if len(scored) else np.nan for k in ("r", "rmse", "ubrmse", "bias")}
        return [{**self.base, "level": "site_mean", "network": "", "station": f"{len(scored)} sites",
                 "n": int(scored["n"].sum()), **mean}]


def map_minus_reference(scores: pd.DataFrame) -> pd.DataFrame:
    """The scores with the bias as product minus reference, whatever ``bias_convention`` they carry (pure).

    Rows scored as ``reference_minus_product`` get ``bias`` negated and ``bias_lo``/``bias_hi``
    negated and swapped (a percentile interval of ``-b`` is the mirrored interval of ``b``);
    ``bias_convention`` then reads ``product_minus_reference`` on every row. R, RMSE and ubRMSE
    do not depend on the sign. For display: the tables :func:`dsm.stages.validate.write_validation`
    writes keep the configured convention.
    """
    out = scores.copy()
    if "bias_convention" not in out.columns or out.empty:
        return out
    flip = (out["bias_convention"] == "reference_minus_product").to_numpy()
    if "bias" in out.columns:
        out.loc[flip, "bias"] = -out.loc[flip, "bias"].to_numpy(np.float64)
    if "bias_lo" in out.columns and "bias_hi" in out.columns:
        lo = out.loc[flip, "bias_lo"].to_numpy(np.float64)
        hi = out.loc[flip, "bias_hi"].to_numpy(np.float64)
        out.loc[flip, "bias_lo"], out.loc[flip, "bias_hi"] = -hi, -lo
    out["bias_convention"] = "product_minus_reference"
    return out


def overlap_problems(pairs: pd.DataFrame, products: Sequence[str], problems: Problems, min_n: int) -> list[str]:
    """Name stations and products without overlapping days; return the products that overlap."""
    usable = []
    for name in products:
        ok = np.isfinite(pairs[[name, INSITU]].to_numpy(np.float64)).all(axis=1)
        if not ok.any():
            t = pairs["time"]
            span = f"{t.min():%Y-%m-%d}..{t.max():%Y-%m-%d}" if len(t) else "none"
            problems.add("product", name, f"no overlapping days with any station (in situ days {span}); "
                                          "left out of the common days")
            continue
        usable.append(name)
        n = pd.Series(ok).groupby([pairs["network"], pairs["station"]]).sum()
        for key, k in n.items():
            net, sta = cast(tuple[str, str], key)  # grouped by (network, station)
            if k == 0:
                problems.add("station", f"{net}/{sta}", f"no overlapping days with {name}")
            elif k < min_n:
                problems.add("station", f"{net}/{sta}", f"only {int(k)} day(s) overlap {name} (min_n {min_n}): "
                                                        "not scored")
    return usable


@dataclass
class ValidationResult:
    """Everything :func:`validate` found.

    Attributes
    ----------
    stations : pandas.DataFrame
        One row per station: ``network, station, lon, lat, row, col, cy, cx, n_days, status``
        (row/col: 1 km pixel in the region; cy/cx: 36 km cell; -1 when outside).
    pairs : pandas.DataFrame
        One row per station-day: ``network, station, time, insitu`` and one column per product
        (``sm_1km``, ``smap_36km``, then the configured products), m3/m3, NaN where missing.
    scores : pandas.DataFrame
        Tidy scores (:data:`~dsm.station_scores.SCORE_COLUMNS`).
    problems : pandas.DataFrame
        ``kind, name, problem`` of every input that was left out, and why.
    products : list of str
        The product columns of ``pairs``, in order.
    period_skill : pandas.DataFrame or None
        Twin only: skill against the 1 km truth per 16-day period (the ``periods`` of :func:`dsm.skill.skill`).
    """

    stations: pd.DataFrame
    pairs: pd.DataFrame
    scores: pd.DataFrame
    problems: pd.DataFrame
    products: list[str] = field(default_factory=list)
    period_skill: pd.DataFrame | None = None
