"""DEMs (SRTM ``.hgt`` tiles, GeoTIFF DEMs in any CRS) on a region's 1 km grid, with slope
and aspect.

SRTM ``.hgt``: big-endian int16, 1201 x 1201 (3 arc-second) or 3601 x 3601 (1 arc-second)
samples, void -32768 -> NaN. Samples are points on whole-degree lines: the file named
``N44W072`` has its first row on 45 N and its last on 44 N, first column on 72 W; so the
pixel-area grid extends half a sample beyond the degree square (tiles share edge rows).
Geographic WGS 84 (EPSG:4326); heights above the EGM96 geoid, kept as they are.

Elevation is averaged onto the 1 km grid (tiles of one resolution are mosaicked first) with
one extra 1 km pixel on every side; slope and aspect are computed on that padded 1 km DEM by
:func:`dsm.terrain.slope_aspect` with ground spacings :func:`dsm.terrain.ease_spacing`, so
pixels on the region's edge use their true neighbours where the DEM covers them.

A DEM file with no value over the region (and its one-pixel border) is skipped
(:class:`NoOverlapError`), never "used"; a file with elevations over the region outside
[-500, 9000] m (feet, centimetres, a nodata value not declared) is refused
(:class:`WrongProductError`, see :func:`dsm.ingest.rasters.check_range`).

Precomputed slope and aspect (``inputs.slope``, ``inputs.aspect``, e.g. from a 30 m DEM) replace
the ones of the 1 km DEM (:func:`terrain_layer`): degrees, checked against the cube's valid
ranges (slope 0-90, aspect 0-360; a file outside them is refused, so set ``nodata`` to a flat
marker such as ArcGIS' -1), averaged to 1 km; aspect, an angle, by its circular mean (the
direction of the mean unit vector, so 350 and 10 average to 0, not 180).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from dsm.grid import CELL_1KM, EASE2_1KM, Region, xy_to_lonlat
from dsm.ingest.base import EmptyGranuleError, ManyResult, PathLike, UnreadableFileError, read_many
from dsm.ingest.rasters import Applied, ValueRule, check_range, read_values, require_overlap, require_values
from dsm.ingest.reproject import Raster, fine_dataarray, warp_many_to_region
from dsm.terrain import ease_spacing, slope_aspect

log = logging.getLogger(__name__)

HGT_VOID = -32768
_HGT_NAME = re.compile(r"([NS])(\d{2})([EW])(\d{3})", re.I)
_HGT_SIZES = {1201 * 1201 * 2: 1201, 3601 * 3601 * 2: 3601}


def hgt_origin(path: PathLike) -> tuple[int, int]:
    """(lat, lon) of the south-west corner named by an SRTM file name (``N44W072`` -> 44, -72)."""
    m = _HGT_NAME.search(os.path.basename(os.fspath(path)))
    if m is None:
        raise UnreadableFileError(path, "the file name has no SRTM tile name like N44W072")
    lat = int(m.group(2)) * (1 if m.group(1).upper() == "N" else -1)
    lon = int(m.group(4)) * (1 if m.group(3).upper() == "E" else -1)
    if not (-90 <= lat < 90 and -180 <= lon < 180):
        raise UnreadableFileError(path, f"tile name {m.group(0)} is outside the globe")
    return lat, lon


def read_hgt(path: PathLike) -> Raster:
    """An SRTM ``.hgt`` tile as a float32 :class:`Raster` (EPSG:4326), NaN at voids.

    Raises
    ------
    UnreadableFileError
        Missing, a size that is neither 1201^2 nor 3601^2 samples (truncated), or no tile name.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UnreadableFileError(path, "file does not exist")
    lat, lon = hgt_origin(path)
    size = os.path.getsize(path)
    if size not in _HGT_SIZES:
        raise UnreadableFileError(path, f"{size} bytes is not a 1201x1201 or 3601x3601 int16 SRTM tile (truncated?)")
    n = _HGT_SIZES[size]
    raw = np.fromfile(path, dtype=">i2").reshape(n, n)
    data = raw.astype(np.float32)
    data[raw == HGT_VOID] = np.nan
    if np.isnan(data).all():
        raise EmptyGranuleError(path, "every sample is void (-32768)")
    res = 1.0 / (n - 1)
    transform = Affine(res, 0.0, lon - res / 2, 0.0, -res, lat + 1 + res / 2)
    return Raster(data, transform, CRS.from_epsg(4326))


def read_dem(path: PathLike, rule: ValueRule | None = None) -> Raster:
    """A DEM file: ``.hgt`` by :func:`read_hgt`, anything else through GDAL
    (:func:`dsm.ingest.rasters.read_values` with ``rule``)."""
    return _read_dem(os.fspath(path), rule)[0]


def _read_dem(path: str, rule: ValueRule | None) -> tuple[Raster, Applied]:
    if path.lower().endswith(".hgt"):
        return read_hgt(path), Applied("int16", 1.0, 0.0, "SRTM .hgt metres", float(HGT_VOID))
    raster, applied = read_values(path, 1, rule)
    require_values(path, raster)
    return raster, applied


def dem_for_region(path: PathLike, region: Region, rule: ValueRule | None = None) -> Raster:
    """A DEM file checked to have values over ``region`` (or its one-pixel border) within the
    valid range of ``dem``.

    Raises
    ------
    NoOverlapError, WrongProductError
        And the errors of :func:`read_dem`.
    """
    path = os.fspath(path)
    rule = rule or ValueRule(setting="inputs.dem")
    raster, applied = _read_dem(path, rule)
    require_overlap(path, raster, region, pad_m=CELL_1KM)
    check_range(path, raster, "dem", region, rule, applied)
    return raster


def _terrain_part(path: str, var: str, region: Region, rule: ValueRule) -> Raster:
    raster, applied = read_values(path, 1, rule, region, CELL_1KM)
    require_overlap(path, raster, region)
    check_range(path, raster, var, region, rule, applied)
    return raster


def terrain_layer(paths: Sequence[PathLike], var: str, region: Region, rule: ValueRule | None = None
                  ) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
    """A precomputed ``slope`` or ``aspect`` (degrees) on the region's 1 km grid (module docstring).

    Returns
    -------
    (dict or None, ManyResult)
        ``{var: float32 (y, x)}``, None when no file was usable; and the per-file report.
    """
    if var not in ("slope", "aspect"):
        raise ValueError(f"terrain layers are slope and aspect, not {var!r}")
    many = read_many(paths, _terrain_part, var=var, region=region, rule=rule or ValueRule(setting=f"inputs.{var}"))
    rasters = list(many.results.values())
    if not rasters:
        return None, many
    if var == "slope":
        return {var: warp_many_to_region(rasters, region, "average")}, many
    rad = [np.radians(r.data.astype(np.float64)) for r in rasters]
    east = warp_many_to_region([Raster(np.sin(a).astype(np.float32), r.transform, r.crs)
                                for a, r in zip(rad, rasters, strict=True)],
                               region, "average")
    north = warp_many_to_region([Raster(np.cos(a).astype(np.float32), r.transform, r.crs)
                                 for a, r in zip(rad, rasters, strict=True)],
                                region, "average")
    return {var: (np.degrees(np.arctan2(east, north)) % 360.0).astype(np.float32)}, many


def dem_to_region(paths: Sequence[PathLike], region: Region, rule: ValueRule | None = None
                  ) -> tuple[xr.Dataset, ManyResult]:
    """Elevation (average), slope and aspect on a region's 1 km grid from DEM files
    (:func:`dem_for_region`: files without a value over the region are skipped).

    Returns
    -------
    (xarray.Dataset, ManyResult)
        ``dem`` (m), ``slope`` (degrees), ``aspect`` (degrees clockwise from north, downslope;
        0 where flat), all (y, x) float32, NaN where the DEMs have no data; and the report.
    """
    many = read_many(paths, dem_for_region, region=region, rule=rule)
    pad = 1
    dem_p = warp_many_to_region(list(many.results.values()), region, "average", pad=pad)
    rows = np.arange(region.fine_row0 - pad, region.fine_row0 + region.fine_shape[0] + pad)
    lat = xy_to_lonlat(np.zeros(rows.size), EASE2_1KM.y_centres(rows))[1]
    dx, dy = ease_spacing(CELL_1KM, lat)
    slope_p, aspect_p = slope_aspect(dem_p, dx, dy)
    inner = (slice(pad, -pad), slice(pad, -pad))
    srcs = " ".join(os.path.basename(p) for p in many.results)
    ds = xr.Dataset(
        {
            "dem": fine_dataarray(dem_p[inner], region, "dem", {"units": "m", "long_name": "elevation above the geoid", "standard_name": "height_above_geopotential_datum", "sources": srcs}),
            "slope": fine_dataarray(slope_p[inner], region, "slope", {"units": "degree", "long_name": "terrain slope from the 1 km DEM (Horn)"}),
            "aspect": fine_dataarray(aspect_p[inner], region, "aspect", {"units": "degree", "long_name": "terrain aspect, downslope direction clockwise from north (0 where flat)"}),
        }
    )
    return ds, many
