"""Skill of 1 km products on the twin region, against its known 1 km truth.

:func:`skill` judges one or more 1 km products (``maps``: label -> products store) against two
maps without downscaling, on the same pixel-days, streaming one time chunk at a time (memory:
one time chunk of every map plus a few float64 layers per map and pixel).

Maps
----
``<label>``         each product's ``sm``
``smap_repeat``     SMAP 36 km repeated on its 1 km pixels (constant in a cell: its within-cell
                    correlations are undefined)
``smap_bilinear``   SMAP bilinearly interpolated between cell centres to 1 km

Pixel-days
----------
The **common pixel-days**: days in every product's ``days_done``; land pixels where the truth,
EVERY product's ``sm`` and both SMAP baselines (i.e. SMAP in the pixel's own cell that day)
are finite. Every map in ``scores[<label>]``, ``scores["smap_repeat"]`` and
``scores["smap_bilinear"]`` is scored on exactly these. ``scores["<label>_all"]`` scores a
product on all its own pixel-days (land, truth and its ``sm`` finite, SMAP or not).

Scores (JSON floats; None when undefined)
-----------------------------------------
``n, rmse, r, ubrmse, bias``  over the pixel-days (bias = map - truth).
``cell_r``          mean over (36 km cell, day) of the Pearson R between map and truth across the
                    cell's pixels (cells with >= :data:`MIN_CELL_PIXELS` pixels, both non-constant).
``rmse_cell_mean``  RMSE over (cell, day) of the map's cell mean minus the truth's cell mean, the
                    means taken over the cell-day's pixels (cells with >= MIN_CELL_PIXELS pixels),
                    each cell-day counted once.
``rmse_anomaly``    RMSE over the pixels of those cell-days of the within-cell anomaly error
                    ``(map - map cell mean) - (truth - truth cell mean)``.
                    Since the squared error of a cell-day splits exactly into
                    ``n_c * e_c**2 + sum(anomaly error**2)``, ``rmse**2 == (sum_c n_c e_c**2 +
                    sum anomaly**2) / n`` on the qualifying cell-days; ``rmse_cell_mean`` weighs
                    cell-days equally instead of by their pixel count ``n_c``, so
                    ``rmse**2 ~ rmse_cell_mean**2 + rmse_anomaly**2`` holds only up to that
                    weighting (exactly when every cell-day has the same number of pixels, and
                    leaving out the pixels of cells below the threshold).
``temporal_r_median``, ``temporal_r_mean``, ``temporal_r_pixels``
                    per-pixel temporal Pearson R between map and truth over the pixel's days (in
                    the scored set), for pixels with >= :data:`MIN_PIXEL_DAYS` days where neither
                    series is constant; median and mean over those pixels and their count (a map
                    constant in time at a pixel leaves the pixel out).
``anomaly_cell_r``  ``cell_r`` of daily anomalies: map minus its own per-pixel time mean vs truth
                    minus its per-pixel time mean (means over the pixel's days in the scored set,
                    pixels with >= MIN_PIXEL_DAYS days); a second pass over the time chunks.
``seasons``         {"DJF"|"MAM"|"JJA"|"SON": {n, rmse, cell_r}} for the seasons present.
``smap_days``       {n, rmse, temporal_r_median} on the pixel-days where SMAP observed the
                    pixel's cell: for the common scores these are exactly the common pixel-days
                    (the same n and rmse as the headline); for ``<label>_all`` the product's own
                    pixel-days with SMAP.
``other_days``      the same on the pixel-days WITHOUT a SMAP observation of the pixel's cell.
                    The common pixel-days never hold such a day (the baselines have no value
                    there), so for a product (``<label>`` and ``<label>_all`` alike) it is scored
                    over the product's OWN pixel-days (land, truth and its ``sm`` finite) where
                    SMAP is missing: not a common set, the products are not compared on the same
                    pixel-days there. The SMAP baselines get None.

Coverage
--------
``coverage[<label>]``: the fraction of the product's own pixel-days (``sm_unc`` finite too) whose
truth lies within ``sm +- sm_unc`` (``nominal``: the ``sm_unc`` attribute ``interval``), and
``by_origin``: the same over the pixel-days with each bit of ``sm_origin`` (its ``flag_masks``,
keyed by its ``flag_meanings``) set.

Stations
--------
With ``stations`` (columns station, lon, lat, time, sm; :func:`read_twin_stations` reads the
twin's ``insitu.csv``), every map is sampled at each station's 1 km pixel and its temporal
Pearson R with the station's daily observations computed on the station-days where ALL maps
(products and both baselines, so SMAP days only) and the station have values (>=
:data:`MIN_STATION_DAYS` days). Per map: median and mean of R over the stations where every map's
R is defined, with percentile bootstrap intervals (``n_boot`` resamples of those stations with
replacement, the same resamples for every map, ``seed``), and the per-station table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from dsm import files, products, store
from dsm.grid import EASE2_1KM, FINE_PER_COARSE, Region, lonlat_to_xy, repeat_to_fine
from dsm.grid import bilinear as grid_bilinear

MIN_CELL_PIXELS = 30
"""Fewest scored pixels a (cell, day) needs for ``cell_r``, ``rmse_cell_mean`` and ``rmse_anomaly``."""
MIN_PIXEL_DAYS = 10
"""Fewest days a pixel needs for its temporal R and its time mean (``anomaly_cell_r``)."""
MIN_STATION_DAYS = 10
"""Fewest common station-days a station needs for its R."""
CONFIDENCE = 0.95
"""Level of the station bootstrap intervals."""
BASELINES = ("smap_repeat", "smap_bilinear")
SEASONS = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM",
           6: "JJA", 7: "JJA", 8: "JJA", 9: "SON", 10: "SON", 11: "SON"}
_EPS = 1e-12


def bilinear(coarse: np.ndarray, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """SMAP bilinearly interpolated to 1 km (:func:`dsm.grid.bilinear`; ``factor`` pixels per
    cell side), float32."""
    return grid_bilinear(coarse, factor).astype(np.float32)


def repeat(coarse: np.ndarray, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """SMAP repeated on its 1 km pixels (:func:`dsm.grid.repeat_to_fine`, ``factor`` a side)."""
    return repeat_to_fine(coarse, factor)


def _f(v: Any) -> float | None:
    """A JSON-ready float: None for None, NaN or inf."""
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _cells(x: np.ndarray, y: np.ndarray, mask: np.ndarray, factor: int) -> tuple[np.ndarray, ...]:
    """Per (day, cell of ``factor`` pixels a side): pixel count, means of x and y, and the sums
    of squared deviations ``sxx, syy, sxy`` over the masked pixels (inputs (time, y, x))."""
    f = factor
    t, ny, nx = x.shape
    shp = (t, ny // f, f, nx // f, f)
    m = mask.reshape(shp)
    xb = np.where(m, x.reshape(shp), 0.0).astype(np.float64)
    yb = np.where(m, y.reshape(shp), 0.0).astype(np.float64)
    n = m.sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = xb.sum(axis=(2, 4)) / n, yb.sum(axis=(2, 4)) / n
    dx = np.where(m, xb - mx[:, :, None, :, None], 0.0)
    dy = np.where(m, yb - my[:, :, None, :, None], 0.0)
    return n, mx, my, (dx * dx).sum(axis=(2, 4)), (dy * dy).sum(axis=(2, 4)), (dx * dy).sum(axis=(2, 4))


class _Acc:
    """Streaming sums for R, RMSE, ubRMSE, bias, the within-cell correlation and the
    cell-mean / within-cell-anomaly split of the squared error."""

    def __init__(self, factor: int = FINE_PER_COARSE) -> None:
        self.factor = factor  # 1 km pixels per SMAP cell side
        self.s = np.zeros(6)  # n, sx, sy, sxx, syy, sxy (x map, y truth)
        self.cell_r_sum = 0.0
        self.cell_r_n = 0
        self.cell = np.zeros(3)  # cell-days, sum of squared cell-mean errors, their pixels
        self.anom_sse = 0.0

    def add(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        xv, yv = x[mask].astype(np.float64), y[mask].astype(np.float64)
        self.s += [xv.size, xv.sum(), yv.sum(), (xv * xv).sum(), (yv * yv).sum(), (xv * yv).sum()]
        n, mx, my, vx, vy, cov = _cells(x, y, mask, self.factor)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(vx * vy)
        big = n >= MIN_CELL_PIXELS
        ok = big & (vx > _EPS) & (vy > _EPS) & np.isfinite(r)
        self.cell_r_sum += float(r[ok].sum())
        self.cell_r_n += int(ok.sum())
        e = (mx - my)[big]
        self.cell += [e.size, float((e * e).sum()), int(n[big].sum())]
        # sum over a cell of ((x - mx) - (y - my))**2 = sxx + syy - 2 sxy (deviation sums)
        self.anom_sse += float(np.maximum(vx + vy - 2 * cov, 0.0)[big].sum())

    def result(self) -> dict[str, Any]:
        n, sx, sy, sxx, syy, sxy = self.s
        ncell, cell_sse, cell_pixels = self.cell
        out: dict[str, Any] = {"n": int(n), "rmse": None, "r": None, "ubrmse": None, "bias": None,
                               "cell_r": self.cell_r_sum / self.cell_r_n if self.cell_r_n else None,
                               "cell_r_pairs": self.cell_r_n,
                               "rmse_cell_mean": _f(np.sqrt(cell_sse / ncell)) if ncell else None,
                               "rmse_anomaly": _f(np.sqrt(self.anom_sse / cell_pixels)) if cell_pixels else None}
        if n < 2:
            return out
        mse = (sxx - 2 * sxy + syy) / n
        bias = (sx - sy) / n
        vx, vy = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
        cov = sxy / n - sx * sy / n**2
        r = cov / np.sqrt(vx * vy) if vx > _EPS and vy > _EPS else float("nan")
        out.update({"rmse": float(np.sqrt(max(mse, 0))), "r": _f(r),
                    "ubrmse": float(np.sqrt(max(mse - bias**2, 0))), "bias": float(bias)})
        return out


class _PixelR:
    """Per-pixel streaming sums over time for the temporal R and the per-pixel time means."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.s = np.zeros((6, *shape))  # n, sx, sy, sxx, syy, sxy

    def add(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        xv = np.where(mask, x, 0.0).astype(np.float64)
        yv = np.where(mask, y, 0.0).astype(np.float64)
        for k, a in enumerate((mask, xv, yv, xv * xv, yv * yv, xv * yv)):
            self.s[k] += a.sum(axis=0)

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel time means of map and truth; NaN for pixels with < MIN_PIXEL_DAYS days."""
        n, sx, sy = self.s[:3]
        with np.errstate(invalid="ignore", divide="ignore"):
            keep = n >= MIN_PIXEL_DAYS
            return np.where(keep, sx / n, np.nan), np.where(keep, sy / n, np.nan)

    def r(self) -> np.ndarray:
        """Per-pixel temporal R; NaN for pixels with < MIN_PIXEL_DAYS days or a constant series."""
        n, sx, sy, sxx, syy, sxy = self.s
        with np.errstate(invalid="ignore", divide="ignore"):
            vx, vy = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
            r = (sxy / n - sx * sy / n**2) / np.sqrt(vx * vy)
        ok = (n >= MIN_PIXEL_DAYS) & (vx > _EPS) & (vy > _EPS) & np.isfinite(r)
        return np.where(ok, np.clip(r, -1.0, 1.0), np.nan)

    def result(self) -> dict[str, Any]:
        r = self.r()
        r = r[np.isfinite(r)]
        return {"temporal_r_median": _f(np.median(r)) if r.size else None,
                "temporal_r_mean": _f(r.mean()) if r.size else None, "temporal_r_pixels": int(r.size)}


class _Scored:
    """Everything scored for one map on one kind of pixel-days."""

    def __init__(self, shape: tuple[int, int], factor: int = FINE_PER_COARSE) -> None:
        self.shape, self.factor = shape, factor
        self.acc, self.pix, self.anom = _Acc(factor), _PixelR(shape), _Acc(factor)
        self.seasons: dict[str, _Acc] = {}
        self.split: dict[str, tuple[_Acc, _PixelR]] = {}
        self.means: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, months: np.ndarray,
            smap: np.ndarray | None = None, other: np.ndarray | None = None) -> None:
        """Pass 1: ``mask`` the scored pixel-days; ``smap`` / ``other``, when given, the
        pixel-days with / without a SMAP observation for ``smap_days`` / ``other_days``."""
        self.acc.add(x, y, mask)
        self.pix.add(x, y, mask)
        seasons = np.array([SEASONS[int(m)] for m in months])
        for s in dict.fromkeys(seasons):
            i = seasons == s
            self.seasons.setdefault(s, _Acc(self.factor)).add(x[i], y[i], mask[i])
        for name, m in (("smap_days", smap), ("other_days", other)):
            if m is not None:
                acc, pix = self.split.setdefault(name, (_Acc(self.factor), _PixelR(self.shape)))
                acc.add(x, y, m)
                pix.add(x, y, m)

    def add_anomaly(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        """Pass 2: the within-cell correlation of the anomalies from the pixels' time means."""
        if self.means is None:
            self.means = self.pix.means()
        mx, my = self.means
        m = mask & np.isfinite(mx)[None]
        self.anom.add(x - mx[None], y - my[None], m)

    def result(self) -> dict[str, Any]:
        out = self.acc.result()
        out.update(self.pix.result())
        out["anomaly_cell_r"] = self.anom.result()["cell_r"]
        out["seasons"] = {s: {k: a.result()[k] for k in ("n", "rmse", "cell_r")}
                          for s in ("DJF", "MAM", "JJA", "SON") if (a := self.seasons.get(s)) and a.s[0] > 0}
        out["smap_days"] = {"n": out["n"], "rmse": out["rmse"], "temporal_r_median": out["temporal_r_median"]}
        out["other_days"] = None
        for name, (acc, pix) in self.split.items():
            res = acc.result()
            out[name] = {"n": res["n"], "rmse": res["rmse"], "temporal_r_median": pix.result()["temporal_r_median"]}
        return out


class _Cover:
    """Coverage of ``sm +- sm_unc``, overall and by ``sm_origin`` bit."""

    def __init__(self, ds: Any) -> None:
        attrs = ds["sm_origin"].attrs if "sm_origin" in ds else {}
        masks = [int(b) for b in np.atleast_1d(attrs.get("flag_masks", []))]
        names = str(attrs.get("flag_meanings", "")).split()
        self.bits = {(names[i] if i < len(names) else f"bit_{b}"): b for i, b in enumerate(masks)}
        self.nominal = ds["sm_unc"].attrs.get("interval")
        self.total = np.zeros(2, np.int64)
        self.by = {k: np.zeros(2, np.int64) for k in self.bits}

    def add(self, inside: np.ndarray, ok: np.ndarray, origin: np.ndarray | None) -> None:
        self.total += [int(inside[ok].sum()), int(ok.sum())]
        if origin is None:
            return
        for k, b in self.bits.items():
            m = ok & ((origin.astype(np.int64) & b) != 0)
            self.by[k] += [int(inside[m].sum()), int(m.sum())]

    def result(self) -> dict[str, Any]:
        def frac(a: np.ndarray) -> float | None:
            return float(a[0] / a[1]) if a[1] else None

        return {"nominal": _f(self.nominal), "empirical": frac(self.total), "n": int(self.total[1]),
                "by_origin": {k: {"bit": b, "n": int(self.by[k][1]), "coverage": frac(self.by[k])}
                              for k, b in self.bits.items()}}


# ------------------------------------------------------------------------------ stations

def read_twin_stations(url: str, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The twin's in situ table (``insitu.csv``: station, network, lon, lat, depth, time, value)
    as the frame :func:`skill` takes: ``station, lon, lat, time`` (UTC day, naive) ``, sm``."""
    with fsspec.open(url, "r", **dict(storage_options or {})) as f:
        raw = pd.read_csv(f, dtype={"station": str})
    value = "sm" if "sm" in raw.columns else "value"
    missing = [c for c in ("station", "lon", "lat", "time", value) if c not in raw.columns]
    if missing:
        raise ValueError(f"{url}: no column(s) {missing}")
    time = pd.to_datetime(raw["time"], format="ISO8601", utc=True).dt.tz_localize(None).dt.floor("D")
    return pd.DataFrame({"station": raw["station"], "lon": raw["lon"].astype(np.float64),
                         "lat": raw["lat"].astype(np.float64), "time": time,
                         "sm": pd.to_numeric(raw[value]).astype(np.float64)})


def station_pixels(lon: np.ndarray, lat: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column (-1 outside) in a store's 1 km ``y``/``x`` coordinates of the pixels
    holding the points ``lon``/``lat`` (EASE-Grid 2.0 1 km indices, offset by the store's first
    pixel)."""
    px, py = lonlat_to_xy(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    row, col = EASE2_1KM.index(px, py)
    row0, col0 = EASE2_1KM.index(np.array([x[0]]), np.array([y[0]]))
    row, col = row - row0[0], col - col0[0]
    outside = (row < 0) | (row >= len(y)) | (col < 0) | (col >= len(x))
    return np.where(outside, -1, row), np.where(outside, -1, col)


def _station_obs(stations: pd.DataFrame, times: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per station (station, lon, lat) and its daily mean ``sm`` on ``times`` (days, stations)."""
    need = ("station", "lon", "lat", "time", "sm")
    missing = [c for c in need if c not in stations.columns]
    if missing:
        raise ValueError(f"stations has no column(s) {missing}; need {list(need)}")
    st = stations.loc[:, list(need)].copy()
    t = pd.to_datetime(st["time"])
    if getattr(t.dt, "tz", None) is not None:
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
    st["time"] = t.dt.floor("D")
    st["station"] = st["station"].astype(str)
    sites = st.groupby("station", sort=True).agg(lon=("lon", "first"), lat=("lat", "first")).reset_index()
    daily = st.groupby(["time", "station"])["sm"].mean().unstack("station")
    daily = daily.reindex(index=pd.DatetimeIndex(times), columns=sites["station"])
    return sites, daily.to_numpy(np.float64)


def station_scores(series: Mapping[str, np.ndarray], obs: np.ndarray, sites: pd.DataFrame,
                   n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-station temporal R of each map against the station observations, and its summary.

    Parameters
    ----------
    series
        Map label -> its values at the stations' pixels, (days, stations).
    obs
        The stations' daily observations, (days, stations).
    sites
        One row per station (``station``, ``lon``, ``lat``, optional ``row``, ``col``), in the
        column order of ``obs``.
    n_boot, seed
        Bootstrap resamples of the stations (with replacement; the same for every map) and the seed.
    """
    labels = list(series)
    valid = np.isfinite(obs)
    for v in series.values():
        valid &= np.isfinite(v)
    n_days = valid.sum(axis=0)
    r = {k: np.full(obs.shape[1], np.nan) for k in labels}
    for j in np.flatnonzero(n_days >= MIN_STATION_DAYS):
        o = obs[valid[:, j], j]
        for k in labels:
            m = series[k][valid[:, j], j]
            if o.std() > 1e-9 and m.std() > 1e-9:
                r[k][j] = float(np.corrcoef(m, o)[0, 1])
    scored = np.ones(obs.shape[1], bool)
    for k in labels:
        scored &= np.isfinite(r[k])
    idx = np.flatnonzero(scored)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, idx.size, size=(n_boot, idx.size)) if idx.size and n_boot > 0 else None
    alpha = (1 - CONFIDENCE) / 2
    maps: dict[str, Any] = {}
    for k in labels:
        v = r[k][idx]
        res: dict[str, Any] = {"n_stations": int(idx.size), "station_r_median": None, "station_r_median_ci": None,
                               "station_r_mean": None, "station_r_mean_ci": None}
        if idx.size:
            res["station_r_median"], res["station_r_mean"] = _f(np.median(v)), _f(v.mean())
            if draws is not None:
                boot = v[draws]
                for name, stat in (("median", np.median(boot, axis=1)), ("mean", boot.mean(axis=1))):
                    lo, hi = np.quantile(stat, [alpha, 1 - alpha])
                    res[f"station_r_{name}_ci"] = [_f(lo), _f(hi)]
        maps[k] = res
    table = []
    for j in range(obs.shape[1]):
        row = {"station": str(sites["station"].iloc[j]), "lon": _f(sites["lon"].iloc[j]),
               "lat": _f(sites["lat"].iloc[j])}
        for c in ("row", "col"):
            if c in sites.columns:
                row[c] = int(sites[c].iloc[j])
        row["n"] = int(n_days[j])
        row["scored"] = bool(scored[j])
        row.update({f"r_{k}": _f(r[k][j]) for k in labels})
        table.append(row)
    return {"maps": maps, "table": table, "n_boot": int(n_boot), "seed": int(seed), "confidence": CONFIDENCE,
            "min_days": MIN_STATION_DAYS, "n_stations": int(idx.size),
            "note": "temporal Pearson R per station on the station-days where every map and the station have "
                    "values; median/mean over the stations where every map's R is defined, percentile "
                    "bootstrap intervals over stations"}


# ------------------------------------------------------------------------------ the summary

def skill(maps: Mapping[str, str] | str, truth_url: str, cube_url: str,
          storage_options: Mapping[str, Any] | None = None, *,
          stations: pd.DataFrame | None = None, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The twin skill summary of one or more 1 km products (see the module docstring).

    Parameters
    ----------
    maps
        Label -> products store URL; a plain URL is ``{"product": url}``.
    truth_url, cube_url
        The twin's truth store (``sm_true``) and predictor cube (``land_mask``, ``smap_sm``).
    storage_options
        fsspec options of all stores.
    stations
        Optional in situ observations (station, lon, lat, time, sm), e.g.
        :func:`read_twin_stations`.
    n_boot, seed
        Station bootstrap resamples and seed.

    Returns
    -------
    dict
        ``maps`` (labels), ``days``, ``scores`` (label, ``smap_repeat``, ``smap_bilinear``,
        ``<label>_all``), ``coverage`` (label), ``stations`` (or None) and ``note``.
    """
    so = dict(storage_options or {})
    urls = {"product": maps} if isinstance(maps, str) else dict(maps)
    if not urls:
        raise ValueError("no product to score")
    labels = list(urls)
    clash = [k for k in labels if k in BASELINES or k.endswith("_all") and k[:-4] in labels]
    if clash:
        raise ValueError(f"map label(s) {clash} clash with {list(BASELINES)} or another label's _all scores")
    outs = {k: products.open_products(u, so) for k, u in urls.items()}
    truth = store.open_store(truth_url, "truth", so)
    cube = store.open_store(cube_url, "cube", so)
    done = [set(o.attrs.get("days_done", [])) for o in outs.values()]
    days = sorted(set.intersection(*done))
    if not days:
        raise ValueError(f"no day is predicted in every one of {list(urls.values())}")
    times = np.array(days, dtype="datetime64[ns]")
    land = cube["land_mask"].values == 1
    shape = land.shape
    for k, o in outs.items():
        if o["sm"].shape[1:] != shape:
            raise ValueError(f"{urls[k]}: sm is {o['sm'].shape[1:]} pixels, the cube {shape}")
    names = [*labels, *BASELINES]
    f = Region.from_dict(cube.attrs["region"]).fine_per_coarse  # 1 km pixels per SMAP cell side
    common = {k: _Scored(shape, f) for k in names}
    own = {k: _Scored(shape, f) for k in labels}
    cover = {k: _Cover(outs[k]) for k in labels}
    sites = series = obs = None
    outside: list[str] = []
    if stations is not None:
        sites, obs = _station_obs(stations, times)
        row, col = station_pixels(sites["lon"].to_numpy(), sites["lat"].to_numpy(),
                                  cube["x"].values, cube["y"].values)
        inside = row >= 0
        outside = [str(v) for v in sites["station"].loc[~inside]]
        sites = sites.assign(row=row, col=col).loc[inside].reset_index(drop=True)
        obs = obs[:, inside]
        series = {k: np.full(obs.shape, np.nan) for k in names}
    step = int(outs[labels[0]]["sm"].encoding.get("chunks", (8,))[0])

    def read(t: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        tr = truth["sm_true"].sel(time=t).values.astype(np.float32)
        smap = cube["smap_sm"].sel(time=t).values.astype(np.float32)
        vals = {k: outs[k]["sm"].sel(time=t).values.astype(np.float32) for k in labels}
        vals["smap_repeat"], vals["smap_bilinear"] = repeat(smap, f), bilinear(smap, f)
        base = land[None] & np.isfinite(tr)
        smap_obs = np.isfinite(vals["smap_repeat"]) & np.isfinite(vals["smap_bilinear"])
        mask = base & smap_obs
        for k in labels:
            mask &= np.isfinite(vals[k])
        return tr, vals, base, mask

    chunks = [times[i:i + step] for i in range(0, len(times), step)]
    start = 0
    for t in chunks:  # pass 1
        tr, vals, base, mask = read(t)
        months = pd.DatetimeIndex(t).month.to_numpy()
        smap_obs = np.isfinite(vals["smap_repeat"])
        for k in names:
            common[k].add(vals[k], tr, mask, months)
        for k in labels:
            mine = base & np.isfinite(vals[k])
            own[k].add(vals[k], tr, mine, months, smap=mine & smap_obs, other=mine & ~smap_obs)
            unc = outs[k]["sm_unc"].sel(time=t).values.astype(np.float32)
            origin = outs[k]["sm_origin"].sel(time=t).values if "sm_origin" in outs[k] else None
            ok = mine & np.isfinite(unc)
            with np.errstate(invalid="ignore"):
                cover[k].add(np.abs(tr - vals[k]) <= unc, ok, origin)
        if series is not None:
            r, c = sites["row"].to_numpy(), sites["col"].to_numpy()
            for k in names:
                series[k][start:start + len(t)] = vals[k][:, r, c]
        start += len(t)
    for t in chunks:  # pass 2: anomalies from the per-pixel time means of pass 1
        tr, vals, base, mask = read(t)
        for k in names:
            common[k].add_anomaly(vals[k], tr, mask)
        for k in labels:
            own[k].add_anomaly(vals[k], tr, base & np.isfinite(vals[k]))

    scores = {k: common[k].result() for k in names}
    for k in labels:
        scores[f"{k}_all"] = own[k].result()
        scores[k]["other_days"] = dict(scores[f"{k}_all"]["other_days"])  # the same pixel-days (see the module doc)
    st = None
    if series is not None:
        st = {**station_scores(series, obs, sites, n_boot, seed), "outside": outside}
    return {"maps": labels, "days": len(days), "scores": scores,
            "coverage": {k: cover[k].result() for k in labels}, "stations": st,
            "note": "common pixel-days: land, truth, every product and SMAP (repeat and bilinear) all valid on "
                    "the days every product predicted; <label>_all: each product on all its own pixel-days; "
                    "smap_repeat has no within-cell variation (cell_r undefined); other_days: a product on its "
                    "own pixel-days without SMAP (not common to the maps; None for the baselines); "
                    "rmse**2 ~ rmse_cell_mean**2 + rmse_anomaly**2 up to the weighting of cell-days by their "
                    "pixel counts; coverage over each product's own pixel-days"}


def write_skill(result: Mapping[str, Any], url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write the skill summary as JSON."""
    files.write_url(url, json.dumps(result, indent=2), storage_options)


def format_table(result: Mapping[str, Any]) -> str:
    """The skill summary as text: one row per map, the station block and the coverage lines."""

    def f(v: Any, w: int, p: int = 4) -> str:
        return f"{v:>{w}.{p}f}" if isinstance(v, float) else f"{'—':>{w}}"

    width = max([14, *(len(k) + 1 for k in result["scores"])])
    lines = [f"{'map':<{width}} {'n':>10} {'RMSE':>8} {'R':>7} {'ubRMSE':>8} {'bias':>8} {'cell R':>7} "
             f"{'RMSE cm':>8} {'RMSE an':>8} {'temp R':>7} {'an. cell R':>10}"]
    for k, s in result["scores"].items():
        lines.append(f"{k:<{width}} {s['n']:>10d} {f(s['rmse'], 8)} {f(s['r'], 7, 3)} {f(s['ubrmse'], 8)} "
                     f"{f(s['bias'], 8)} {f(s.get('cell_r'), 7, 3)} {f(s.get('rmse_cell_mean'), 8)} "
                     f"{f(s.get('rmse_anomaly'), 8)} {f(s.get('temporal_r_median'), 7, 3)} "
                     f"{f(s.get('anomaly_cell_r'), 10, 3)}")
    lines.append("(RMSE cm: of the SMAP cell means; RMSE an: of the within-cell anomalies; temp R: median "
                 "per-pixel temporal R; an. cell R: within-cell R of the daily anomalies)")
    st = result.get("stations")
    if st:
        pct = f"{100 * st['confidence']:.0f} %"
        lines.append(f"stations: temporal R at {st['n_stations']} stations ({pct} bootstrap intervals, "
                     f"{st['n_boot']} resamples)")
        for k, s in st["maps"].items():
            def ci(v: Any) -> str:
                return f"[{v[0]:.3f}, {v[1]:.3f}]" if v and None not in v else "[—]"

            lines.append(f"  {k:<{width}} median {f(s['station_r_median'], 6, 3)} {ci(s['station_r_median_ci'])}"
                         f"   mean {f(s['station_r_mean'], 6, 3)} {ci(s['station_r_mean_ci'])}")
    coverage = result.get("coverage") or {}
    if "empirical" in coverage:  # a summary of the single-product format before several maps
        coverage = {"product": coverage}
    for k, c in coverage.items():
        if c.get("empirical") is None:
            lines.append(f"{k}: no pixel-day with sm_unc")
            continue
        nominal = f"nominal {100 * c['nominal']:.0f} %" if c.get("nominal") is not None else "nominal unknown"
        lines.append(f"{k}: sm +- sm_unc contains the truth on {100 * c['empirical']:.1f} % of {c['n']} "
                     f"pixel-days ({nominal})")
        for name, b in c.get("by_origin", {}).items():
            if not b["n"]:
                continue
            cov = f"{100 * b['coverage']:.1f} %" if b["coverage"] is not None else "—"
            lines.append(f"    {name:<26} {cov:>7} of {b['n']} pixel-days")
    return "\n".join(lines)


__all__ = ["skill", "write_skill", "format_table", "bilinear", "repeat", "read_twin_stations",
           "station_pixels", "station_scores"]
