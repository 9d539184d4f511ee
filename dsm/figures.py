"""Figures of the validation and analysis, written as PNG files (matplotlib, Agg, no pyplot).

Every function takes tables or arrays and where to write (``dest``: a
:class:`~dsm.storeref.StoreRef`, a local path or fsspec URL with its options, or a plain path
or URL that needs none), draws on its own
:class:`matplotlib.figure.Figure` (no global state, no display) and returns the URL written.

=============================  ==========================================================
:func:`model_scores_per_period`  train/test R and RMSE of every model per 16-day period
:func:`table4_figure`            the Table-4 summary (mean over periods) as grouped bars
:func:`site_scatter`             product vs in situ per site, with R, RMSE, ubRMSE, bias
:func:`site_timeseries`          in situ, 1 km, SMAP (and others) at sites, precipitation bars
:func:`map_panels`               monthly (or annual) mean maps, one panel each
:func:`importance_bars`          RF impurity / XGB gain, mean with std error bars
:func:`partial_correlation_map`  significance classes at the weather stations over a map
:func:`skill_periods_figure`     twin skill per period: RMSE and within-cell R of each map
=============================  ==========================================================

Conventions: the bias is always shown as map minus reference (positive: the map is wetter);
maps stay in EASE-Grid 2.0 x/y (equal-area) with a lat/lon graticule in degrees
(:func:`graticule_ticks`); periods are drawn on a date axis (:func:`period_dates`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from dsm import files
from dsm.analysis import (
    INSUFFICIENT,
    NOT_SIGNIFICANT,
    SIGNIFICANT_NEGATIVE,
    SIGNIFICANT_POSITIVE,
)
from dsm.grid import lonlat_to_xy, xy_to_lonlat
from dsm.models.period_cards import PeriodCard, TrainedPeriodCard
from dsm.periods import parse_julian
from dsm.station_scores import map_minus_reference
from dsm.storeref import StoreRef

PRODUCT_COLORS = {"insitu": "black", "sm_1km": "tab:red", "smap_36km": "tab:blue"}
_OTHER_COLORS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
CLASS_STYLE = {SIGNIFICANT_POSITIVE: ("tab:red", "^"), SIGNIFICANT_NEGATIVE: ("tab:blue", "v"),
               NOT_SIGNIFICANT: ("0.5", "o"), INSUFFICIENT: ("white", "o")}
MAX_SITES = 24
DEGREE_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0)
MAX_PERIOD_LABELS = 12
MAX_NAMED_PERIODS = 6


def save(fig: Figure, dest: StoreRef | str, dpi: int = 110) -> str:
    """Write ``fig`` as PNG to ``dest`` (a local path or fsspec URL, with its options); returns its URL."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return files.write_url(StoreRef.of(dest), buf.getvalue())


def _color(name: str, others: Sequence[str]) -> str:
    if name in PRODUCT_COLORS:
        return PRODUCT_COLORS[name]
    return _OTHER_COLORS[list(others).index(name) % len(_OTHER_COLORS)] if name in others else "tab:gray"


def _empty(fig: Figure, text: str) -> None:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def graticule_ticks(lo: float, hi: float, axis: str, max_ticks: int = 5
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Round-degree ticks over an EASE-Grid 2.0 x or y range (pure).

    EASE-Grid 2.0 is cylindrical equal-area: longitude depends on x only and latitude on y
    only, so the graticule is straight lines and ticks on the axes are enough.

    Parameters
    ----------
    lo, hi : float
        The range of x (``axis="lon"``) or y (``axis="lat"``) in metres.
    axis : {"lon", "lat"}
        Which coordinate to tick.
    max_ticks : int
        Most ticks; the step is the smallest of :data:`DEGREE_STEPS` that keeps to it.

    Returns
    -------
    positions : numpy.ndarray
        x or y (m) of each tick, inside ``[lo, hi]``.
    degrees : numpy.ndarray
        Longitude or latitude of each tick: whole multiples of the step.
    labels : list of str
        ``"108.5°E"``, ``"38°N"``, ``"3.25°W"`` ...
    """
    if axis not in ("lon", "lat"):
        raise ValueError(f"axis must be 'lon' or 'lat', got {axis!r}")
    lo, hi = sorted((float(lo), float(hi)))
    ends = np.array([lo, hi])
    if axis == "lon":
        a, b = xy_to_lonlat(ends, np.zeros(2))[0]
    else:
        a, b = xy_to_lonlat(np.zeros(2), ends)[1]
    a, b = sorted((float(a), float(b)))
    step = DEGREE_STEPS[-1]
    for candidate in DEGREE_STEPS:
        if np.floor(b / candidate + 1e-9) - np.ceil(a / candidate - 1e-9) + 1 <= max_ticks:
            step = candidate
            break
    k = np.arange(np.ceil(a / step - 1e-9), np.floor(b / step + 1e-9) + 1)
    degrees = np.round(k * step, 6)
    if axis == "lon":
        positions = np.asarray(lonlat_to_xy(degrees, np.zeros_like(degrees))[0], dtype=np.float64)
    else:
        positions = np.asarray(lonlat_to_xy(np.zeros_like(degrees), degrees)[1], dtype=np.float64)
    decimals = len(f"{step:g}".partition(".")[2])
    hemi = ("E", "W") if axis == "lon" else ("N", "S")
    labels = [f"{abs(d):.{decimals}f}°{hemi[0] if d > 0 else hemi[1] if d < 0 else ''}" for d in degrees]
    return positions, degrees, labels


def graticule(ax: Axes, xlabel: bool = True, ylabel: bool = True, max_ticks: int = 4) -> None:
    """Label a map axis (x/y in km of EASE-Grid 2.0) in degrees of longitude and latitude, with
    dashed graticule lines at the ticks."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    xt, _, xl = graticule_ticks(x0 * 1000.0, x1 * 1000.0, "lon", max_ticks)
    yt, _, yl = graticule_ticks(y0 * 1000.0, y1 * 1000.0, "lat", max_ticks)
    ax.set_xticks(xt / 1000.0, xl)
    ax.set_yticks(yt / 1000.0, yl)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.grid(True, color="0.25", lw=0.5, ls="--", alpha=0.45)
    if xlabel:
        ax.set_xlabel("longitude (°)", fontsize=7)
    if ylabel:
        ax.set_ylabel("latitude (°)", fontsize=7)


def period_dates(periods: Sequence[str]) -> pd.DatetimeIndex | None:
    """First days of periods named ``YYYYDDD``; None when a name is not one."""
    try:
        return pd.DatetimeIndex([pd.Timestamp(parse_julian(str(p))) for p in periods])
    except ValueError:
        return None


def _period_x(periods: Sequence[str]) -> Any:
    dates = period_dates(periods)
    return dates if dates is not None else np.arange(len(periods))


def _period_axis(ax: Axes, periods: Sequence[str]) -> None:
    """A readable period axis: up to :data:`MAX_NAMED_PERIODS` periods ticked with their names and
    first days, more on a date axis with an automatic locator, or at most
    :data:`MAX_PERIOD_LABELS` rotated labels where the periods are not ``YYYYDDD`` names."""
    dates = period_dates(periods)
    if dates is not None and len(dates) <= MAX_NAMED_PERIODS:
        ax.set_xticks(dates, [f"{p}\n{d:%d %b %Y}" for p, d in zip(periods, dates, strict=True)])
        ax.set_xlabel("16-day period (name, first day)", fontsize=8)
    elif dates is not None:
        locator = AutoDateLocator(minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_xlabel("16-day period (first day)", fontsize=8)
    else:
        step = max(1, -(-len(periods) // MAX_PERIOD_LABELS))
        ax.set_xticks(np.arange(len(periods))[::step], [str(p) for p in periods][::step], rotation=45, ha="right")
        ax.set_xlabel("period", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def _score(card: TrainedPeriodCard, model: str, split: str, metric: str) -> float:
    """``metric`` of ``model`` on the ``split`` half in ``card`` (NaN when not there)."""
    fit = card.models.get(model)
    value = None if fit is None else (fit.train if split == "train" else fit.test).get(metric)
    return np.nan if value is None else float(value)


def model_scores_per_period(cards: Sequence[PeriodCard], dest: StoreRef | str) -> str:
    """Train (dashed) and test (solid) R and RMSE of every model per period; chosen ones marked."""
    trained = sorted((c for c in cards if isinstance(c, TrainedPeriodCard) and c.models), key=lambda c: c.period)
    fig = Figure(figsize=(11, 4), layout="constrained")
    if not trained:
        _empty(fig, "no trained period")
        return save(fig, dest)
    axes = fig.subplots(1, 2)
    periods = [c.period for c in trained]
    x = _period_x(periods)
    models = [m for m in ("mlr", "svr", "ann", "rf", "xgb") if any(m in c.models for c in trained)]
    for ax, metric, label in ((axes[0], "r", "R"), (axes[1], "rmse", "RMSE (m³/m³)")):
        for i, m in enumerate(models):
            color = _OTHER_COLORS[i % len(_OTHER_COLORS)]
            for split, style in (("test", "-"), ("train", "--")):
                y = np.array([_score(c, m, split, metric) for c in trained], dtype=float)
                ax.plot(x, y, style, color=color, marker="o" if split == "test" else None, ms=4,
                        label=f"{m.upper()} {split}")
        ax.scatter(x, np.array([_score(c, c.chosen, "test", metric) for c in trained], dtype=float), s=90,
                   facecolors="none", edgecolors="k", zorder=3, label="chosen (test)")
        _period_axis(ax, periods)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, loc="best")
    fig.suptitle("Model R and RMSE per 16-day period (solid: test half, dashed: train half)")
    return save(fig, dest)


def table4_figure(table4: pd.DataFrame, dest: StoreRef | str) -> str:
    """Mean train/test R and RMSE of each model and of the combination (the paper's Table 4)."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    if table4 is None or table4.empty:
        _empty(fig, "no trained period")
        return save(fig, dest)
    axes = fig.subplots(1, 2)
    names = list(table4.index)
    x = np.arange(len(names))
    for ax, metric, label in ((axes[0], "r", "R"), (axes[1], "rmse", "RMSE (m³/m³)")):
        for k, split in enumerate(("train", "test")):
            ax.bar(x + (k - 0.5) * 0.38, table4[f"{split}_{metric}"].to_numpy(float), 0.38, label=split,
                   color=("0.65", "tab:red")[k])
        ax.set_xticks(x, [n.upper() if len(n) <= 4 else n for n in names], rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.suptitle("Table 4: mean over periods of train and test scores")
    return save(fig, dest)


def site_scatter(pairs: pd.DataFrame, scores: pd.DataFrame, dest: StoreRef | str, product: str = "sm_1km",
                 days: str = "own") -> str:
    """One panel per site: product vs in situ with the 1:1 line and R, RMSE, ubRMSE, bias, n.

    The bias is shown as product minus in situ (:func:`dsm.station_scores.map_minus_reference`),
    whatever convention ``scores`` were computed with.
    """
    sites = pairs.loc[:, ["network", "station"]].drop_duplicates().head(MAX_SITES)
    n = len(sites)
    fig = Figure(figsize=(3.0 * min(n, 4) + 0.5, 3.0 * max(1, -(-n // 4)) + 0.4))
    if n == 0 or product not in pairs:
        _empty(fig, f"no station pairs for {product}")
        return save(fig, dest)
    axes = np.atleast_1d(fig.subplots(-(-n // 4), min(n, 4), squeeze=False)).ravel()
    scores = map_minus_reference(scores)
    lim_vals = pairs[[product, "insitu"]].to_numpy(float)
    lim_vals = lim_vals[np.isfinite(lim_vals)]
    hi = float(lim_vals.max()) * 1.05 if lim_vals.size else 0.5
    for ax, (_, s) in zip(axes, sites.iterrows(), strict=False):
        sub = pairs.loc[(pairs["network"] == s["network"]) & (pairs["station"] == s["station"])]
        ax.scatter(sub["insitu"], sub[product], s=8, color=PRODUCT_COLORS.get(product, "tab:green"), alpha=0.7)
        ax.plot([0, hi], [0, hi], "k--", lw=0.8)
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        row = scores.loc[(scores["product"] == product) & (scores["days"] == days) & (scores["level"] == "site")
                         & (scores["network"] == s["network"]) & (scores["station"] == s["station"])]
        if len(row):
            r = row.iloc[0]
            ax.text(0.03, 0.97, f"R {r.r:.3f}\nRMSE {r.rmse:.4f}\nubRMSE {r.ubrmse:.4f}\nbias {r.bias:+.4f}\nn {int(r.n)}",
                    transform=ax.transAxes, va="top", fontsize=7, family="monospace")
        ax.set_title(f"{s['network']}/{s['station']}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.supxlabel("in situ daily mean (m³/m³)", fontsize=9)
    fig.supylabel(f"{product} (m³/m³)", fontsize=9)
    fig.suptitle(f"{product} against in situ per site (bias: {product} − in situ; {days} days)", fontsize=10)
    return save(fig, dest)


def site_timeseries(pairs: pd.DataFrame, dest: StoreRef | str, products: Sequence[str],
                    precip: Mapping[tuple[str, str], pd.Series] | None = None, max_sites: int = 8) -> str:
    """Time series at sites: in situ (dots), products (lines), precipitation bars (right axis).

    Parameters
    ----------
    precip : mapping, optional
        ``(network, station)`` -> daily precipitation (mm) Series indexed by day, with its
        ``name`` naming the weather station it came from.
    """
    sites = pairs.loc[:, ["network", "station"]].drop_duplicates().head(max_sites)
    n = len(sites)
    fig = Figure(figsize=(11, 2.3 * max(n, 1) + 0.5), layout="constrained")
    if n == 0:
        _empty(fig, "no station pairs")
        return save(fig, dest)
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True, squeeze=False)).ravel()
    others = [p for p in products if p not in PRODUCT_COLORS]
    for ax, (_, s) in zip(axes, sites.iterrows(), strict=True):
        sub = pairs.loc[(pairs["network"] == s["network"]) & (pairs["station"] == s["station"])].sort_values("time")
        t = pd.to_datetime(sub["time"])
        ax.plot(t, sub["insitu"], ".", color="black", ms=4, label="in situ")
        for p in products:
            if p in sub and np.isfinite(sub[p].to_numpy(float)).any():
                style = "o" if p == "smap_36km" else "-"
                ax.plot(t, sub[p], style, color=_color(p, others), ms=3, lw=1.1, label=p)
        ax.set_ylabel("SM (m³/m³)", fontsize=8)
        title = f"{s['network']}/{s['station']}"
        rain = (precip or {}).get((s["network"], s["station"]))
        if rain is not None and len(rain):
            ax2 = ax.twinx()
            days = pd.to_datetime(rain.index)
            # one line per day in a single collection (a bar per day is a patch each: slow to draw),
            # 0.8 of a day wide: the axes span about 85 % of the figure's width, 72 points an inch
            day_points = 0.85 * fig.get_figwidth() * 72 / max((days.max() - days.min()).days + 1, 1)
            ax2.vlines(days, 0.0, rain.to_numpy(float), color="tab:cyan", alpha=0.5, lw=max(0.8 * day_points, 0.3))
            top = float(np.nanmax(rain.to_numpy(float))) if np.isfinite(rain.to_numpy(float)).any() else 1.0
            ax2.set_ylim(max(top, 1.0) * 3.0, 0)  # bars hang from the top
            ax2.set_ylabel("precip (mm)", fontsize=8)
            ax2.tick_params(labelsize=7)
            title += f"  (precipitation: {rain.name})"
        ax.set_title(title, fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    locator = AutoDateLocator(minticks=3, maxticks=10)
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes[0].legend(fontsize=7, ncol=len(products) + 1, loc="upper right")
    fig.suptitle("Soil moisture at the sites", fontsize=10)
    return save(fig, dest)


def map_panels(maps: xr.DataArray, dest: StoreRef | str, dim: str, title: str, fmt: str = "%Y-%m",
               points: pd.DataFrame | None = None, vmin: float | None = None, vmax: float | None = None) -> str:
    """One map per entry of ``dim`` (e.g. monthly means), shared colour scale, lat/lon graticule
    (:func:`draw_map_panels`, written as PNG)."""
    return save(draw_map_panels(maps, dim, title, fmt, points, vmin, vmax), dest)


def draw_map_panels(maps: xr.DataArray, dim: str, title: str, fmt: str = "%Y-%m",
                    points: pd.DataFrame | None = None, vmin: float | None = None, vmax: float | None = None
                    ) -> Figure:
    """The figure of :func:`map_panels`: EASE-Grid 2.0 x/y axes ticked in degrees of longitude
    and latitude (:func:`graticule`).

    Parameters
    ----------
    maps : xarray.DataArray
        ``(dim, y, x)`` with x/y in metres (EASE-Grid 2.0), computed.
    points : pandas.DataFrame, optional
        ``x, y`` (m) of stations to mark.
    """
    k = maps.sizes.get(dim, 0)
    ncol = min(max(k, 1), 4)
    nrow = max(1, -(-k // ncol))
    fig = Figure(figsize=(3.2 * ncol + 1.0, 3.0 * nrow + 0.7), layout="constrained")
    if k == 0:
        _empty(fig, "no data")
        return fig
    values = np.asarray(maps.values, dtype=float)
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (float(np.quantile(finite, 0.02)) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(np.quantile(finite, 0.98)) if finite.size else 0.5)
    x, y = maps["x"].values / 1000.0, maps["y"].values / 1000.0
    dx = abs(x[1] - x[0]) if x.size > 1 else 1.0
    dy = abs(y[1] - y[0]) if y.size > 1 else 1.0
    extent = (x.min() - dx / 2, x.max() + dx / 2, y.min() - dy / 2, y.max() + dy / 2)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    im = None
    for i, ax in enumerate(axes):
        if i >= k:
            ax.set_axis_off()
            continue
        im = ax.imshow(values[i], extent=extent, origin="upper", vmin=lo, vmax=hi, cmap="YlGnBu")
        label = maps[dim].values[i]
        try:
            ax.set_title(pd.Timestamp(label).strftime(fmt), fontsize=9)
        except (ValueError, TypeError):
            ax.set_title(str(label), fontsize=9)
        if points is not None and len(points):
            ax.plot(points["x"] / 1000.0, points["y"] / 1000.0, "k^", ms=4, mfc="none")
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
        graticule(ax, xlabel=i + ncol >= k, ylabel=i % ncol == 0)
        ax.tick_params(labelsize=6)
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="soil moisture (m³/m³)")
    fig.suptitle(f"{title} (EASE-Grid 2.0, equal-area; graticule in degrees)", fontsize=10)
    return fig


def importance_bars(summary: pd.DataFrame, dest: StoreRef | str) -> str:
    """Mean importance of each predictor over periods with ± one standard deviation."""
    fig = Figure(figsize=(10, 0.35 * max(len(summary), 4) + 1.2))
    kinds = [k for k in ("rf_impurity", "xgb_gain") if len(summary) and summary[f"{k}_n"].sum() > 0]
    if not kinds:
        _empty(fig, "no RF or XGB importance in the model cards")
        return save(fig, dest)
    axes = np.atleast_1d(fig.subplots(1, len(kinds), squeeze=False)).ravel()
    names = list(summary.index)
    yy = np.arange(len(names))
    for ax, kind in zip(axes, kinds, strict=True):
        mean = summary[f"{kind}_mean"].to_numpy(float)
        std = np.nan_to_num(summary[f"{kind}_std"].to_numpy(float))
        ax.barh(yy, mean, xerr=std, color="tab:green" if kind == "rf_impurity" else "tab:orange", capsize=3)
        ax.set_yticks(yy, names, fontsize=8)
        ax.invert_yaxis()
        n = int(summary[f"{kind}_n"].max())
        ax.set_title(f"{'RF impurity' if kind == 'rf_impurity' else 'XGB gain'} (mean ± std, {n} periods)",
                     fontsize=9)
        ax.set_xlabel("share of total importance")
        ax.grid(axis="x", alpha=0.3)
    return save(fig, dest)


def partial_correlation_map(table: pd.DataFrame, dest: StoreRef | str, background: xr.DataArray | None = None) -> str:
    """Weather stations coloured by significance class of SM-precipitation and SM-temperature.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`dsm.analysis.station_partial_correlations` with ``x, y`` (m) of each station.
    background : xarray.DataArray, optional
        A mean SM map ``(y, x)`` drawn underneath.
    """
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "precip", "SM ~ precipitation | temperature"),
                           (axes[1], "tair", "SM ~ temperature | precipitation")):
        if background is not None:
            x, y = background["x"].values / 1000.0, background["y"].values / 1000.0
            ax.imshow(np.asarray(background.values, float), extent=(x.min(), x.max(), y.min(), y.max()),
                      origin="upper", cmap="Greys", alpha=0.5)
        for cls, (color, marker) in CLASS_STYLE.items():
            sub = table.loc[table[f"class_{key}"] == cls]
            if len(sub):
                ax.scatter(sub["x"] / 1000.0, sub["y"] / 1000.0, c=color, marker=marker, s=80, edgecolors="k",
                           label=f"{cls} ({len(sub)})", zorder=3)
            for _, s in sub.iterrows():
                r = s[f"r_{key}"]
                if np.isfinite(r):
                    ax.annotate(f"{r:+.2f}", (s["x"] / 1000.0, s["y"] / 1000.0), xytext=(4, 4),
                                textcoords="offset points", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
        graticule(ax, ylabel=ax is axes[0])
        ax.tick_params(labelsize=7)
    fig.suptitle("Partial correlation at weather stations (t-test, n − 3 d.o.f.)", fontsize=10)
    return save(fig, dest)


def skill_periods_figure(period_skill: pd.DataFrame, dest: StoreRef | str) -> str:
    """Twin skill against the truth per period: RMSE and mean within-cell R of each map
    (:func:`draw_skill_periods`, written as PNG)."""
    return save(draw_skill_periods(period_skill), dest)


def draw_skill_periods(period_skill: pd.DataFrame) -> Figure:
    """The figure of :func:`skill_periods_figure`: periods on a date axis (:func:`period_dates`)."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    per = period_skill.loc[period_skill["period"] != "all"] if len(period_skill) else period_skill
    if per.empty:
        _empty(fig, "no twin skill")
        return fig
    axes = fig.subplots(1, 2)
    periods = sorted(str(p) for p in per["period"].unique())
    x = _period_x(periods)
    per = per.assign(period=per["period"].astype(str))
    for i, m in enumerate(per["map"].unique()):
        sub = per.loc[per["map"] == m].set_index("period").reindex(periods)
        for ax, col in ((axes[0], "rmse"), (axes[1], "cell_r")):
            ax.plot(x, sub[col].to_numpy(float), marker="o", ms=3, label=m,
                    color=_OTHER_COLORS[i % len(_OTHER_COLORS)])
    for ax, label in ((axes[0], "RMSE vs truth (m³/m³)"), (axes[1], "mean within-cell R")):
        _period_axis(ax, periods)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Twin skill per period (common pixel-days)", fontsize=10)
    return fig


__all__ = ["save", "model_scores_per_period", "table4_figure", "site_scatter", "site_timeseries", "map_panels",
           "draw_map_panels", "importance_bars", "partial_correlation_map", "skill_periods_figure",
           "draw_skill_periods", "graticule", "graticule_ticks", "period_dates"]
