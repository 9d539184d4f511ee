"""Soil texture (sand, silt, clay percent) rasters on a region's 1 km grid.

Any GDAL-readable raster in any CRS (GeoTIFF, VRT, e.g. SoilGrids or HWSD exports) is
averaged onto the 1 km grid; only the window over the region is read. Values must be percent
after ``scale`` (e.g. ``scale=0.1`` for SoilGrids' g/kg; the file's own scale and offset win,
see :mod:`dsm.ingest.rasters`); values outside [0, 100] raise :class:`WrongProductError`
(:func:`check_percent`) so unit mistakes surface at ingest, and a raster without a value over
the region raises :class:`NoOverlapError`. SoilGrids as published: :mod:`dsm.ingest.soilgrids`.

The three fractions together (:func:`texture_sum`): where all three have a value, sand + silt
+ clay should be 100 %. Pixels off by more than :data:`SUM_TOLERANCE` points are counted and
warned about (predicted fractions, as SoilGrids', need not add up exactly); a median sum over
the region off by more than :data:`SUM_REFUSE` points means the rasters are not all percent
(a file in g/kg or in fractions of 1 beside two in percent): the three are refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from dsm.grid import CELL_1KM, Region
from dsm.ingest.base import EmptyGranuleError, PathLike, WrongProductError
from dsm.ingest.rasters import Applied, ValueRule, read_values, require_overlap
from dsm.ingest.reproject import Raster, fine_dataarray, warp_to_region

log = logging.getLogger(__name__)

FRACTIONS = ("sand", "silt", "clay")
#: Percentage points a pixel's sand + silt + clay may differ from 100 before it is counted.
SUM_TOLERANCE = 5.0
#: Percentage points the median sum over the region may differ from 100 before the three are refused.
SUM_REFUSE = 10.0


def check_percent(path: str, data: np.ndarray, applied: Applied, hint: str) -> None:
    """Refuse (:class:`WrongProductError`) values outside [0, 100]; ``hint`` says what to do."""
    lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    if lo < -1e-3 or hi > 100.0 + 1e-3:
        raise WrongProductError(path, f"values {lo:g}..{hi:g} are not percent (0-100) after {applied.describe()}; {hint}")


def read_texture_raster(path: PathLike, scale: float | None = None, band: int = 1, rule: ValueRule | None = None,
                        region: Region | None = None) -> Raster:
    """One texture raster in percent (NaN nodata), checked to lie in [0, 100].

    ``rule`` (default: ``scale``) gives the configured scale, offset and nodata, used where the
    file has none. With ``region`` only the window over the region (and 1 km around) is read
    and checked.
    """
    path = os.fspath(path)
    rule = rule or ValueRule(scale=scale, setting="inputs.soil")
    r, applied = read_values(path, band, rule, region, CELL_1KM)
    if np.isnan(r.data).all():
        raise EmptyGranuleError(path, "every pixel" + (" over the region" if region else "") + " is nodata")
    check_percent(path, r.data, applied, f"set {rule.key('scale')} (e.g. 0.1 for g/kg)")
    return r


@dataclass(frozen=True)
class TextureSum:
    """Sand + silt + clay over a region: pixels with all three, pixels off by more than
    :data:`SUM_TOLERANCE`, and the median sum (None without a pixel)."""

    pixels: int
    off: int
    median: float | None

    @property
    def refused(self) -> bool:
        """Whether the median sum is off by more than :data:`SUM_REFUSE` (the units differ)."""
        return self.median is not None and abs(self.median - 100.0) > SUM_REFUSE

    def describe(self) -> str:
        """``sand + silt + clay: median 99.8 %, 12 of 2592 pixels off by more than 5 points``."""
        med = "no pixel with all three" if self.median is None else f"median {self.median:.4g} %"
        return f"sand + silt + clay: {med}, {self.off} of {self.pixels} pixels off 100 % by more than {SUM_TOLERANCE:g} points"


def texture_sum(fractions: Mapping[str, np.ndarray]) -> TextureSum:
    """:class:`TextureSum` of the three fractions (percent arrays of one shape; pure)."""
    sand, silt, clay = (np.asarray(fractions[f], dtype=np.float64) for f in FRACTIONS)
    total = sand + silt + clay
    ok = np.isfinite(total)
    if not ok.any():
        return TextureSum(0, 0, None)
    return TextureSum(int(ok.sum()), int((np.abs(total[ok] - 100.0) > SUM_TOLERANCE).sum()), float(np.median(total[ok])))


def sum_refusal(check: TextureSum, sources: str) -> str:
    """The reason the three fractions are refused (:attr:`TextureSum.refused`), naming ``sources``."""
    return (f"{check.describe()}: the rasters ({sources}) are not all percent; check each one's units and scale "
            "(SoilGrids: g/kg, scale 0.1)")


def soil_to_region(paths: Mapping[str, PathLike], region: Region, *, scale: float | None = None, band: int = 1,
                   rule: ValueRule | None = None) -> xr.Dataset:
    """Sand, silt and clay (percent) averaged onto a region's 1 km grid.

    Parameters
    ----------
    paths
        ``{"sand": path, "silt": path, "clay": path}`` (any subset).
    scale
        Multiplier bringing stored values to percent where the file has no scale (None: 1).
    rule
        Configured scale, offset and nodata (overrides ``scale``).

    Raises
    ------
    InputError
        A file is unreadable, has no/unknown CRS, is not percent or has no value over the
        region (:class:`NoOverlapError`); the three together are not percent (their median
        sum is off, :class:`WrongProductError` naming the three).
    """
    unknown = set(paths) - set(FRACTIONS)
    if unknown:
        raise ValueError(f"soil fractions must be among {FRACTIONS}, got {sorted(unknown)}")
    out = {}
    for name, path in paths.items():
        raster = read_texture_raster(path, scale, band, rule, region)
        require_overlap(os.fspath(path), raster, region)
        arr = warp_to_region(raster, region, "average")
        out[name] = fine_dataarray(
            arr, region, name, {"units": "%", "long_name": f"{name} content of the soil", "source": os.path.basename(os.fspath(path))}
        )
    ds = xr.Dataset(out)
    if set(FRACTIONS) <= set(out):
        check = texture_sum({f: ds[f].values for f in FRACTIONS})
        if check.refused:
            raise WrongProductError(", ".join(os.fspath(paths[f]) for f in FRACTIONS),
                                    sum_refusal(check, ", ".join(FRACTIONS)))
        if check.off:
            log.warning("%s", check.describe())
        ds.attrs["pixels_sum_off_by_5pct"] = check.off
    return ds
