"""Soil texture (sand, silt, clay percent) rasters on a region's 1 km grid.

Any GDAL-readable raster in any CRS (GeoTIFF, e.g. SoilGrids or HWSD exports) is averaged
onto the 1 km grid. Values must be percent after ``scale`` (e.g. ``scale=0.1`` for
SoilGrids' g/kg; the file's own scale and offset win, see :mod:`dsm.ingest.rasters`); values
outside [0, 100] raise :class:`WrongProductError` so unit mistakes surface at ingest, and a
raster without a value over the region raises :class:`NoOverlapError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import numpy as np
import xarray as xr

from dsm.grid import Region
from dsm.ingest.base import EmptyGranuleError, PathLike, WrongProductError
from dsm.ingest.rasters import ValueRule, read_values, require_overlap
from dsm.ingest.reproject import Raster, fine_dataarray, warp_to_region

log = logging.getLogger(__name__)

FRACTIONS = ("sand", "silt", "clay")


def read_texture_raster(path: PathLike, scale: float | None = None, band: int = 1, rule: ValueRule | None = None) -> Raster:
    """One texture raster in percent (NaN nodata), checked to lie in [0, 100].

    ``rule`` (default: ``scale``) gives the configured scale, offset and nodata, used where the
    file has none.
    """
    path = os.fspath(path)
    rule = rule or ValueRule(scale=scale, setting="inputs.soil")
    r, applied = read_values(path, band, rule)
    data = r.data
    if np.isnan(data).all():
        raise EmptyGranuleError(path, "every pixel is nodata")
    lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    if lo < -1e-3 or hi > 100.0 + 1e-3:
        raise WrongProductError(path, f"values {lo:g}..{hi:g} are not percent (0-100) after {applied.describe()}; "
                                      f"set {rule.key('scale')} (e.g. 0.1 for g/kg)")
    return Raster(data, r.transform, r.crs)


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
        region (:class:`NoOverlapError`).
    """
    unknown = set(paths) - set(FRACTIONS)
    if unknown:
        raise ValueError(f"soil fractions must be among {FRACTIONS}, got {sorted(unknown)}")
    out = {}
    for name, path in paths.items():
        raster = read_texture_raster(path, scale, band, rule)
        require_overlap(os.fspath(path), raster, region)
        arr = warp_to_region(raster, region, "average")
        out[name] = fine_dataarray(
            arr, region, name, {"units": "%", "long_name": f"{name} content of the soil", "source": os.path.basename(os.fspath(path))}
        )
    ds = xr.Dataset(out)
    if set(FRACTIONS) <= set(out):
        total = sum(ds[f] for f in FRACTIONS)
        off = int((np.abs(total - 100.0) > 5.0).sum())
        if off:
            log.warning("sand + silt + clay differs from 100 %% by more than 5 in %d pixels", off)
        ds.attrs["pixels_sum_off_by_5pct"] = off
    return ds
