"""Streaming sums that score a 1 km map against its truth, one time chunk at a time (pure numpy).

:class:`ScoreSums` holds the sums for n, RMSE, R, ubRMSE, bias, the within-cell R and the
cell-mean / within-cell-anomaly split of the squared error; :class:`PixelSums` the per-pixel
sums over time for the temporal R and the pixels' time means; :class:`MapScores` everything
:func:`dsm.skill.skill` scores for one map on one kind of pixel-days (overall, by season, with
and without SMAP, the anomalies of a second pass); :class:`CoverageSums` the coverage of
``sm +- sm_unc``. The scores are defined in :mod:`dsm.skill`.

Every class has ``merge(other)``: the sums of two disjoint sets of days added together, so sums
made chunk by chunk (on Dask workers, :mod:`dsm.skill_chunks`) merge into those of one pass.
Merged in time order into empty sums, they are bit for bit those of adding the chunks one after
another (each sum is the same float additions in the same order).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from dsm.grid import FINE_PER_COARSE

MIN_CELL_PIXELS = 30
"""Fewest scored pixels a (cell, day) needs for ``cell_r``, ``rmse_cell_mean`` and ``rmse_anomaly``."""
MIN_PIXEL_DAYS = 10
"""Fewest days a pixel needs for its temporal R and its time mean (``anomaly_cell_r``)."""
SEASONS = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM",
           6: "JJA", 7: "JJA", 8: "JJA", 9: "SON", 10: "SON", 11: "SON"}
_EPS = 1e-12


def json_float(v: Any) -> float | None:
    """A JSON-ready float: None for None, NaN or inf."""
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


@dataclass(frozen=True)
class CellMoments:
    """Per (day, cell of ``factor`` pixels a side) of some days: the masked pixel count ``n``, the
    means of map and truth ``mx``, ``my`` (NaN where ``n`` is 0) and the sums of squared and
    crossed deviations from them ``sxx``, ``syy``, ``sxy``; arrays ``(time, cells y, cells x)``."""

    n: np.ndarray
    mx: np.ndarray
    my: np.ndarray
    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray

    def days(self, index: np.ndarray) -> CellMoments:
        """The moments of the days ``index`` selects (a boolean or integer index on time)."""
        return CellMoments(*(getattr(self, f.name)[index] for f in fields(self)))


def _masked(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x`` in float64 where ``mask``, 0 elsewhere (a new array)."""
    out = np.zeros(x.shape)
    np.copyto(out, x, where=mask)
    return out


def _pixel_sums(xb: np.ndarray, yb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-pixel sums over time ``n, sx, sy, sxx, syy, sxy`` (``(6, y, x)``) of masked arrays
    (:func:`_masked`)."""
    return np.stack([mask.sum(axis=0), xb.sum(axis=0), yb.sum(axis=0), np.einsum("tij,tij->ij", xb, xb),
                     np.einsum("tij,tij->ij", yb, yb), np.einsum("tij,tij->ij", xb, yb)]).astype(np.float64)


def masked_moments(x: np.ndarray, y: np.ndarray, mask: np.ndarray, factor: int, pixels: bool = False
                   ) -> tuple[CellMoments, np.ndarray | None]:
    """The :class:`CellMoments` of map ``x`` and truth ``y`` (``(time, y, x)``) on ``mask`` and,
    with ``pixels``, their per-pixel sums over time (:func:`_pixel_sums`; None without). Each
    masked array is made once, in float64, and serves both."""
    f = factor
    t, ny, nx = x.shape
    xb, yb = _masked(x, mask), _masked(y, mask)
    pix = _pixel_sums(xb, yb, mask) if pixels else None
    shp = (t, ny // f, f, nx // f, f)
    m, xb, yb = mask.reshape(shp), xb.reshape(shp), yb.reshape(shp)  # views
    n = m.sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = xb.sum(axis=(2, 4)) / n, yb.sum(axis=(2, 4)) / n
    # deviations from the cell-day means, in place (0 off the mask; a mean is NaN only where nothing is)
    xb -= np.nan_to_num(mx)[:, :, None, :, None]
    yb -= np.nan_to_num(my)[:, :, None, :, None]
    xb *= m
    yb *= m
    dev = "abcde,abcde->abd"
    return CellMoments(n, mx, my, np.einsum(dev, xb, xb), np.einsum(dev, yb, yb), np.einsum(dev, xb, yb)), pix


class ScoreSums:
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
        """Add the pixel-days of ``mask`` (map ``x``, truth ``y``, ``(time, y, x)``)."""
        self.add_cells(masked_moments(x, y, mask, self.factor)[0])

    def add_cells(self, c: CellMoments) -> None:
        """Add the pixel-days summed in ``c`` (:func:`masked_moments`)."""
        n, mx, my, vx, vy, cov = c.n, c.mx, c.my, c.sxx, c.syy, c.sxy
        has = n > 0
        nh, mxh, myh = n[has], mx[has], my[has]
        # the raw sums from the cells': sum x = n mx, sum x**2 = sxx + n mx**2, sum xy = sxy + n mx my
        self.s += [nh.sum(), (nh * mxh).sum(), (nh * myh).sum(), (vx[has] + nh * mxh * mxh).sum(),
                   (vy[has] + nh * myh * myh).sum(), (cov[has] + nh * mxh * myh).sum()]
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

    def merge(self, other: ScoreSums) -> ScoreSums:
        """Add the sums of ``other`` (other days, the same ``factor``) to these; returns self."""
        self.s += other.s
        self.cell_r_sum += other.cell_r_sum
        self.cell_r_n += other.cell_r_n
        self.cell += other.cell
        self.anom_sse += other.anom_sse
        return self

    def result(self) -> dict[str, Any]:
        n, sx, sy, sxx, syy, sxy = self.s
        ncell, cell_sse, cell_pixels = self.cell
        out: dict[str, Any] = {"n": int(n), "rmse": None, "r": None, "ubrmse": None, "bias": None,
                               "cell_r": self.cell_r_sum / self.cell_r_n if self.cell_r_n else None,
                               "cell_r_pairs": self.cell_r_n,
                               "rmse_cell_mean": json_float(np.sqrt(cell_sse / ncell)) if ncell else None,
                               "rmse_anomaly": (json_float(np.sqrt(self.anom_sse / cell_pixels))
                                                if cell_pixels else None)}
        if n < 2:
            return out
        mse = (sxx - 2 * sxy + syy) / n
        bias = (sx - sy) / n
        vx, vy = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
        cov = sxy / n - sx * sy / n**2
        r = cov / np.sqrt(vx * vy) if vx > _EPS and vy > _EPS else float("nan")
        out.update({"rmse": float(np.sqrt(max(mse, 0))), "r": json_float(r),
                    "ubrmse": float(np.sqrt(max(mse - bias**2, 0))), "bias": float(bias)})
        return out


class PixelSums:
    """Per-pixel streaming sums over time for the temporal R and the per-pixel time means."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.s = np.zeros((6, *shape))  # n, sx, sy, sxx, syy, sxy

    def add(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        """Add the pixel-days of ``mask`` (map ``x``, truth ``y``, ``(time, y, x)``)."""
        self.s += _pixel_sums(_masked(x, mask), _masked(y, mask), mask)

    def merge(self, other: PixelSums) -> PixelSums:
        """Add the sums of ``other`` (other days, the same pixels) to these; returns self."""
        self.s += other.s
        return self

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
        return {"temporal_r_median": json_float(np.median(r)) if r.size else None,
                "temporal_r_mean": json_float(r.mean()) if r.size else None, "temporal_r_pixels": int(r.size)}


class SumsMemo:
    """The moments of one time chunk already made, by map, truth and mask: asked again for the
    same arrays (the same objects) and an equal mask, it returns them instead of summing again
    (the same numbers: the sums are deterministic). Never changed once made."""

    def __init__(self, factor: int, shape: tuple[int, int]) -> None:
        self.factor, self.shape = factor, shape
        self._made: list[tuple[np.ndarray, np.ndarray, np.ndarray, CellMoments, np.ndarray | None]] = []

    def _moments(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, pixels: bool
                 ) -> tuple[CellMoments, np.ndarray | None]:
        for i, (mx, my, m, cells, pix) in enumerate(self._made):
            if mx is x and my is y and (m is mask or np.array_equal(m, mask)):
                if pix is not None or not pixels:
                    return cells, pix
                del self._made[i]  # made without the pixel sums: made again with them
                break
        cells, pix = masked_moments(x, y, mask, self.factor, pixels)
        self._made.append((x, y, mask, cells, pix))
        return cells, pix

    def cells(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> CellMoments:
        """The :class:`CellMoments` of ``x``, ``y`` on ``mask``."""
        return self._moments(x, y, mask, pixels=False)[0]

    def pixels(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The per-pixel sums over time of ``x``, ``y`` on ``mask`` (:class:`PixelSums` ``s``)."""
        pix = self._moments(x, y, mask, pixels=True)[1]
        assert pix is not None
        return pix


class MapScores:
    """Everything scored for one map on one kind of pixel-days."""

    def __init__(self, shape: tuple[int, int], factor: int = FINE_PER_COARSE) -> None:
        self.shape, self.factor = shape, factor
        self.acc, self.pix, self.anom = ScoreSums(factor), PixelSums(shape), ScoreSums(factor)
        self.seasons: dict[str, ScoreSums] = {}
        self.split: dict[str, tuple[ScoreSums, PixelSums]] = {}
        self.means: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, months: np.ndarray,
            smap: np.ndarray | None = None, other: np.ndarray | None = None, memo: SumsMemo | None = None) -> None:
        """Pass 1: ``mask`` the scored pixel-days; ``smap`` / ``other``, when given, the
        pixel-days with / without a SMAP observation for ``smap_days`` / ``other_days``.
        ``memo``: the sums of these days already made for other masks or maps (equal inputs are
        summed once; the result is the same)."""
        memo = memo if memo is not None else SumsMemo(self.factor, self.shape)
        self.pix.s += memo.pixels(x, y, mask)
        cells = memo.cells(x, y, mask)
        self.acc.add_cells(cells)
        seasons = np.array([SEASONS[int(m)] for m in months])
        for s in dict.fromkeys(seasons):
            i = seasons == s
            self.seasons.setdefault(s, ScoreSums(self.factor)).add_cells(cells if i.all() else cells.days(i))
        for name, m in (("smap_days", smap), ("other_days", other)):
            if m is not None:
                acc, pix = self.split.setdefault(name, (ScoreSums(self.factor), PixelSums(self.shape)))
                pix.s += memo.pixels(x, y, m)
                acc.add_cells(memo.cells(x, y, m))

    def merge(self, other: MapScores) -> MapScores:
        """Add the pass-1 and pass-2 sums of ``other`` (other days of the same map and pixels) to
        these; returns self. Merge before the pixels' time means are taken (pass 2)."""
        if self.means is not None:
            raise ValueError("merge the pass-1 sums before the anomalies (the time means are already taken)")
        self.acc.merge(other.acc)
        self.pix.merge(other.pix)
        self.anom.merge(other.anom)
        for s, a in other.seasons.items():
            self.seasons.setdefault(s, ScoreSums(self.factor)).merge(a)
        for name, (acc, pix) in other.split.items():
            mine = self.split.setdefault(name, (ScoreSums(self.factor), PixelSums(self.shape)))
            mine[0].merge(acc)
            mine[1].merge(pix)
        return self

    def add_anomaly(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        """Pass 2: the within-cell correlation of the anomalies from the pixels' time means."""
        if self.means is None:
            self.means = self.pix.means()
        self.anom.merge(anomaly_sums(x, y, mask, self.means, self.factor))

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


def anomaly_sums(x: np.ndarray, y: np.ndarray, mask: np.ndarray, means: tuple[np.ndarray, np.ndarray],
                 factor: int = FINE_PER_COARSE) -> ScoreSums:
    """The pass-2 sums of some days: map and truth minus their pixels' time means ``means``
    (:meth:`PixelSums.means`, NaN where a pixel has too few days) on ``mask``."""
    mx, my = means
    out = ScoreSums(factor)
    out.add(x - mx[None], y - my[None], mask & np.isfinite(mx)[None])
    return out


class CoverageSums:
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
        flags = origin.astype(np.int64)
        for k, b in self.bits.items():
            m = ok & ((flags & b) != 0)
            self.by[k] += [int(inside[m].sum()), int(m.sum())]

    def empty(self) -> CoverageSums:
        """Sums of no day with these bits and nominal interval."""
        out = copy.copy(self)
        out.total = np.zeros(2, np.int64)
        out.by = {k: np.zeros(2, np.int64) for k in self.bits}
        return out

    def merge(self, other: CoverageSums) -> CoverageSums:
        """Add the counts of ``other`` (other days, the same bits) to these; returns self."""
        self.total += other.total
        for k, v in other.by.items():
            self.by[k] += v
        return self

    def result(self) -> dict[str, Any]:
        def frac(a: np.ndarray) -> float | None:
            return float(a[0] / a[1]) if a[1] else None

        return {"nominal": json_float(self.nominal), "empirical": frac(self.total), "n": int(self.total[1]),
                "by_origin": {k: {"bit": b, "n": int(self.by[k][1]), "coverage": frac(self.by[k])}
                              for k, b in self.bits.items()}}


__all__ = ["MIN_CELL_PIXELS", "MIN_PIXEL_DAYS", "SEASONS", "CoverageSums", "MapScores", "PixelSums", "ScoreSums",
           "SumsMemo", "CellMoments", "anomaly_sums", "masked_moments", "json_float"]
