"""Skill of the 1 km product on the twin region, against its known 1 km truth.

Scores over land pixel-days (streamed one time chunk at a time, so memory stays bounded):
RMSE, R, ubRMSE, bias, and the **mean within-cell spatial correlation**: the Pearson
correlation between a map and the truth across the 1 km pixels of one 36 km cell on one day,
averaged over (cell, day) pairs; it measures the part of the signal SMAP cannot see.

Compared on the same pixel-days (where the truth, the product and SMAP all exist):

``product``             the downscaled 1 km map (``sm``)
``product_rc``          the product after the residual correction (each cell's mean set to
                        SMAP on days SMAP observed it; :func:`dsm.predict.residual_correct`)
``smap_repeat``         SMAP 36 km repeated on its 1 km pixels (within-cell correlation is
                        undefined: the map is constant in a cell)
``smap_bilinear``       SMAP bilinearly interpolated between cell centres to 1 km

``product_all`` scores the product on every pixel-day it covers (gap-free days and days
without SMAP included). ``coverage`` is the fraction of those pixel-days whose truth lies
within ``sm +- sm_unc`` (nominal: the store's ``sm_unc`` interval).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import fsspec
import numpy as np

from dsm import products, store
from dsm.grid import FINE_PER_COARSE
from dsm.predict import residual_correct

MIN_CELL_PIXELS = 30


def bilinear(coarse: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a 36 km field (last two axes) to 1 km pixel centres.

    Interpolates between cell centres, holding edge values beyond the outer centres; NaN
    neighbours are left out and the weights of the others renormalised; pixels whose own
    cell is NaN stay NaN (as in the repeated baseline).
    """
    f = FINE_PER_COARSE
    ny, nx = coarse.shape[-2:]

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n * f) + 0.5) / f - 0.5, 0, n - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        return i0, i1, (pos - i0).astype(np.float64)

    y0, y1, wy = axis(ny)
    x0, x1, wx = axis(nx)
    num = np.zeros((*coarse.shape[:-2], ny * f, nx * f))
    den = np.zeros_like(num)
    for yi, wyv in ((y0, 1 - wy), (y1, wy)):
        for xi, wxv in ((x0, 1 - wx), (x1, wx)):
            v = coarse[..., yi[:, None], xi[None, :]]
            w = wyv[:, None] * wxv[None, :] * np.isfinite(v)
            num += np.where(np.isfinite(v), v, 0.0) * w
            den += w
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan).astype(np.float32)
    out[np.isnan(repeat(coarse))] = np.nan  # no SMAP in the pixel's own cell: no baseline value
    return out


def repeat(coarse: np.ndarray) -> np.ndarray:
    """A 36 km field repeated on its 1 km pixels."""
    return np.repeat(np.repeat(coarse, FINE_PER_COARSE, -2), FINE_PER_COARSE, -1)


class _Acc:
    """Streaming sums for R, RMSE, ubRMSE, bias and the within-cell correlation."""

    def __init__(self) -> None:
        self.s = np.zeros(6)  # n, sx, sy, sxx, syy, sxy (x product, y truth)
        self.cell_r_sum = 0.0
        self.cell_r_n = 0

    def add(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        xv, yv = x[mask].astype(np.float64), y[mask].astype(np.float64)
        self.s += [xv.size, xv.sum(), yv.sum(), (xv * xv).sum(), (yv * yv).sum(), (xv * yv).sum()]
        # within-cell correlation per (day, cell)
        f = FINE_PER_COARSE
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
            cov = (dx * dy).sum(axis=(2, 4))
            vx, vy = (dx * dx).sum(axis=(2, 4)), (dy * dy).sum(axis=(2, 4))
            r = cov / np.sqrt(vx * vy)
        ok = (n >= MIN_CELL_PIXELS) & (vx > 1e-12) & (vy > 1e-12) & np.isfinite(r)
        self.cell_r_sum += float(r[ok].sum())
        self.cell_r_n += int(ok.sum())

    def result(self) -> dict[str, Any]:
        n, sx, sy, sxx, syy, sxy = self.s
        if n < 2:
            return {"n": int(n), "rmse": None, "r": None, "ubrmse": None, "bias": None, "cell_r": None}
        mse = (sxx - 2 * sxy + syy) / n
        bias = (sx - sy) / n
        vx, vy = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
        cov = sxy / n - sx * sy / n**2
        r = cov / np.sqrt(vx * vy) if vx > 0 and vy > 0 else float("nan")
        return {"n": int(n), "rmse": float(np.sqrt(max(mse, 0))), "r": float(r),
                "ubrmse": float(np.sqrt(max(mse - bias**2, 0))), "bias": float(bias),
                "cell_r": self.cell_r_sum / self.cell_r_n if self.cell_r_n else None,
                "cell_r_pairs": self.cell_r_n}


def skill(output_url: str, truth_url: str, cube_url: str,
          storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The twin skill summary (see the module docstring)."""
    so = dict(storage_options or {})
    out = products.open_products(output_url, so)
    truth = store.open_store(truth_url, "truth", so)
    cube = store.open_store(cube_url, "cube", so)
    days = sorted(out.attrs.get("days_done", []))
    if not days:
        raise ValueError(f"{output_url} has no predicted day to score")
    times = np.array(days, dtype="datetime64[ns]")
    land = cube["land_mask"].values == 1
    names = ("product", "product_rc", "smap_repeat", "smap_bilinear")
    acc = {k: _Acc() for k in names}
    acc_all = _Acc()
    cover = np.zeros(2)
    step = int(out["sm"].encoding.get("chunks", (8,))[0])
    for i in range(0, len(times), step):
        t = times[i:i + step]
        sm = out["sm"].sel(time=t).values.astype(np.float32)
        unc = out["sm_unc"].sel(time=t).values.astype(np.float32)
        tr = truth["sm_true"].sel(time=t).values.astype(np.float32)
        smap = cube["smap_sm"].sel(time=t).values.astype(np.float32)
        rep, bil = repeat(smap), bilinear(smap)
        rc = np.stack([residual_correct(s, c) for s, c in zip(sm, smap)])
        base = land[None] & np.isfinite(tr) & np.isfinite(sm)
        acc_all.add(sm, tr, base)
        ok_u = base & np.isfinite(unc)
        cover += [int((np.abs(tr - sm) <= unc)[ok_u].sum()), int(ok_u.sum())]
        common = base & np.isfinite(rep) & np.isfinite(bil)
        for k, v in zip(names, (sm, rc, rep, bil)):
            acc[k].add(v, tr, common)
    result = {k: acc[k].result() for k in names}
    result["product_all"] = acc_all.result()
    interval = out["sm_unc"].attrs.get("interval")
    return {"scores": result, "days": len(days),
            "coverage": {"nominal": interval, "empirical": float(cover[0] / cover[1]) if cover[1] else None,
                         "n": int(cover[1])},
            "note": "common pixel-days: truth, product and SMAP all valid; smap_repeat has no within-cell "
                    "variation (cell_r undefined)"}


def write_skill(result: Mapping[str, Any], url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write the skill summary as JSON."""
    with fsspec.open(url, "w", **dict(storage_options or {})) as f:
        json.dump(result, f, indent=2)


def format_table(result: Mapping[str, Any]) -> str:
    """The skill summary as a text table."""
    lines = [f"{'map':<14} {'n':>10} {'RMSE':>8} {'R':>7} {'ubRMSE':>8} {'bias':>8} {'cell R':>7}"]

    def f(v: Any, w: int, p: int = 4) -> str:
        return f"{v:>{w}.{p}f}" if isinstance(v, float) else f"{'—':>{w}}"

    for k, s in result["scores"].items():
        lines.append(f"{k:<14} {s['n']:>10d} {f(s['rmse'], 8)} {f(s['r'], 7, 3)} {f(s['ubrmse'], 8)} "
                     f"{f(s['bias'], 8)} {f(s['cell_r'], 7, 3)}")
    c = result["coverage"]
    if c["empirical"] is not None:
        lines.append(f"sm +- sm_unc contains the truth on {100 * c['empirical']:.1f} % of {c['n']} pixel-days "
                     f"(nominal {100 * (c['nominal'] or 0):.0f} %)")
    return "\n".join(lines)


__all__ = ["skill", "write_skill", "format_table", "bilinear", "repeat"]
