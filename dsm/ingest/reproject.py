"""Reprojection of rasters in any CRS onto a Region's EASE-Grid 2.0 grids, and the grid's
xarray coordinates.

Resampling per variable (chosen by the readers, documented there too):

=====================================  ==========  ==============================================
variable (source)                      resampling  why
=====================================  ==========  ==============================================
LST (MOD11A1, 1 km, QC-masked)         nearest     1 km -> 1 km; keeps each retained pixel as is
NDVI, EVI (MOD13A2, 1 km)              nearest     likewise
NDWI, LSWI, NSDSI (MOD09A1, 500 m)     average     indices computed at 500 m on QC-masked bands
LAI, FPAR (MOD15A2H, 500 m)            average     continuous 500 m -> 1 km
albedo WSA/BSA (MCD43A3, 500 m)        average     continuous 500 m -> 1 km
DEM (SRTM 90/30 m, GeoTIFF)            average     fine -> 1 km; slope/aspect from the 1 km DEM
sand/silt/clay (soil rasters)          average     usually 250 m -> 1 km
=====================================  ==========  ==============================================

NaN is nodata on both sides: a NaN source pixel never contributes and a 1 km pixel with no
valid source pixel is NaN (no gap filling). Average resampling gives a value when at least
one valid source pixel touches the 1 km pixel (GDAL weights partial pixels by area).

The warp is exact (GDAL approximation tolerance 0) so nearest resampling picks the source
pixel containing each 1 km pixel centre.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from dsm.cube import FINE_GRID_MAPPING, spatial_ref
from dsm.grid import EPSG, Region

log = logging.getLogger(__name__)

#: MODIS sinusoidal projection (sphere of radius 6371007.181 m), as in the tiles' StructMetadata.
SINUSOIDAL_PROJ4 = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
SINUSOIDAL_CRS = CRS.from_proj4(SINUSOIDAL_PROJ4)
EASE_CRS = CRS.from_epsg(EPSG)


@dataclass(frozen=True)
class Raster:
    """A 2-D array (rows north to south) with its affine transform and CRS."""

    data: np.ndarray
    transform: Affine
    crs: CRS

    @property
    def res(self) -> tuple[float, float]:
        """Pixel width and height (positive)."""
        return abs(self.transform.a), abs(self.transform.e)


# -- xarray on the region's grids (grid mappings as in the cube) ----------------------
def wrap_on_grid(data: np.ndarray, name: str, attrs: dict | None, dims: tuple[str, str], ys: np.ndarray,
                 xs: np.ndarray, mapping: str, transform: Affine, level: str) -> xr.DataArray:
    """``data`` (rows, cols) as a CF DataArray on the cells centred at ``ys`` x ``xs``, with the
    grid mapping variable ``mapping`` of ``transform`` (``level`` names the grid in errors)."""
    if data.shape != (len(ys), len(xs)):
        raise ValueError(f"{name}: array shape {data.shape} is not the region's {level} shape {(len(ys), len(xs))}")
    return xr.DataArray(
        data,
        dims=dims,
        coords={
            dims[0]: (dims[0], ys, {"units": "m", "standard_name": "projection_y_coordinate"}),
            dims[1]: (dims[1], xs, {"units": "m", "standard_name": "projection_x_coordinate"}),
            mapping: spatial_ref(transform),
        },
        name=name,
        attrs={**(attrs or {}), "grid_mapping": mapping},
    )


def fine_dataarray(data: np.ndarray, region: Region, name: str, attrs: dict | None = None) -> xr.DataArray:
    """Wrap a (rows, cols) array on the region's 1 km grid as a CF DataArray (y, x)."""
    return wrap_on_grid(data, name, attrs, ("y", "x"), region.fine_y, region.fine_x, FINE_GRID_MAPPING,
                        region.fine_transform, "1 km")


# -- cropping and mosaicking ------------------------------------------------------------
def region_window(transform: Affine, crs: CRS, shape: tuple[int, int], region: Region, margin: int = 3,
                  pad_m: float = 0.0) -> tuple[int, int, int, int] | None:
    """Rows ``r0:r1`` and columns ``c0:c1`` of a raster grid (``transform``, ``crs``, ``shape``)
    covering ``region`` (grown by ``pad_m`` metres, plus ``margin`` pixels), clipped to the
    grid; None when they do not overlap. The whole grid when the region's outline cannot be
    transformed to ``crs``.

    The region's outline is transformed to the raster's CRS with densified edges, so the
    window is safe for curved outlines (sinusoidal, geographic, Homolosine).
    """
    try:
        x0, y0, x1, y1 = region.bounds
        left, bottom, right, top = transform_bounds(
            EASE_CRS, crs, x0 - pad_m, y0 - pad_m, x1 + pad_m, y1 + pad_m, densify_pts=51
        )
    except Exception as exc:  # noqa: BLE001 - PROJ errors have no common class
        log.debug("cannot transform region bounds to %s: %s", crs, exc)
        return 0, shape[0], 0, shape[1]
    if not all(map(math.isfinite, (left, bottom, right, top))):
        return 0, shape[0], 0, shape[1]
    inv = ~transform
    cols, rows = zip(*(inv * (x, y) for x in (left, right) for y in (bottom, top)), strict=True)
    r0 = max(math.floor(min(rows)) - margin, 0)
    r1 = min(math.ceil(max(rows)) + margin, shape[0])
    c0 = max(math.floor(min(cols)) - margin, 0)
    c1 = min(math.ceil(max(cols)) + margin, shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    return r0, r1, c0, c1


def crop_to_region(raster: Raster, region: Region, margin: int = 3, pad_m: float = 0.0) -> Raster | None:
    """The part of ``raster`` covering ``region`` (grown by ``pad_m`` metres, plus ``margin``
    source pixels), or None when they do not overlap (:func:`region_window`)."""
    win = region_window(raster.transform, raster.crs, raster.data.shape, region, margin, pad_m)
    if win is None:
        return None
    r0, r1, c0, c1 = win
    if (r0, r1, c0, c1) == (0, raster.data.shape[0], 0, raster.data.shape[1]):
        return raster
    return Raster(raster.data[r0:r1, c0:c1], raster.transform * Affine.translation(c0, r0), raster.crs)


def mosaic_aligned(pieces: Sequence[Raster], rtol: float = 1e-6) -> Raster:
    """Paste rasters that share one CRS and one pixel grid into their union.

    Where pieces overlap, the first non-NaN value wins (SRTM tiles share their edge rows).

    Raises
    ------
    ValueError
        The pieces differ in CRS or pixel size, or are not aligned on a common pixel grid.
    """
    if not pieces:
        raise ValueError("nothing to mosaic")
    first = pieces[0]
    xres, yres = first.res
    for p in pieces[1:]:
        if p.crs != first.crs or not np.allclose(p.res, first.res, rtol=rtol, atol=0):
            raise ValueError("rasters to mosaic differ in CRS or pixel size")
    offsets = []
    for p in pieces:
        c = (p.transform.c - first.transform.c) / xres
        r = (first.transform.f - p.transform.f) / yres
        if abs(c - round(c)) > 1e-3 or abs(r - round(r)) > 1e-3:
            raise ValueError("rasters to mosaic are not aligned on one pixel grid")
        offsets.append((round(r), round(c)))
    r_min = min(r for r, _ in offsets)
    c_min = min(c for _, c in offsets)
    nrows = max(r + p.data.shape[0] for (r, _), p in zip(offsets, pieces, strict=True)) - r_min
    ncols = max(c + p.data.shape[1] for (_, c), p in zip(offsets, pieces, strict=True)) - c_min
    out = np.full((nrows, ncols), np.nan, dtype=np.float32)
    for (r, c), p in zip(offsets, pieces, strict=True):
        dst = out[r - r_min : r - r_min + p.data.shape[0], c - c_min : c - c_min + p.data.shape[1]]
        np.copyto(dst, p.data, where=np.isnan(dst))
    transform = first.transform * Affine.translation(c_min, r_min)
    return Raster(out, transform, first.crs)


# -- warping ----------------------------------------------------------------------------
def _target(region: Region, grid: str, pad: int) -> tuple[tuple[int, int], Affine]:
    if grid == "fine":
        (ny, nx), t = region.fine_shape, region.fine_transform
    elif grid == "coarse":
        (ny, nx), t = region.coarse_shape, region.coarse_transform
    else:
        raise ValueError(f"grid must be 'fine' or 'coarse', got {grid!r}")
    return (ny + 2 * pad, nx + 2 * pad), t * Affine.translation(-pad, -pad)


def warp_to_region(raster: Raster, region: Region, resampling: str, grid: str = "fine", pad: int = 0) -> np.ndarray:
    """Reproject one raster onto the region's 1 km (``grid="fine"``) or 36 km grid.

    Parameters
    ----------
    raster
        Source values; NaN is nodata. Converted to float32.
    region
        Destination region.
    resampling
        A :class:`rasterio.enums.Resampling` name: ``"average"``, ``"nearest"``...
    grid
        ``"fine"`` (1 km) or ``"coarse"`` (36 km).
    pad
        Extra pixels on every side (e.g. 1 so slopes at the region's edge see neighbours).

    Returns
    -------
    numpy.ndarray
        float32 array of the region's shape (plus ``pad``); NaN where no valid source pixel.
    """
    shape, transform = _target(region, grid, pad)
    out = np.full(shape, np.nan, dtype=np.float32)
    cell = abs(transform.a)
    cropped = crop_to_region(raster, region, margin=3, pad_m=(pad + 1) * cell)
    if cropped is None or cropped.data.size == 0:
        return out
    src = np.ascontiguousarray(cropped.data, dtype=np.float32)
    reproject(
        src,
        out,
        src_transform=cropped.transform,
        src_crs=cropped.crs,
        src_nodata=np.nan,
        dst_transform=transform,
        dst_crs=EASE_CRS,
        dst_nodata=np.nan,
        resampling=Resampling[resampling],
        tolerance=0.0,
        num_threads=1,
    )
    return out


def warp_many_to_region(
    rasters: Sequence[Raster], region: Region, resampling: str, grid: str = "fine", pad: int = 0
) -> np.ndarray:
    """Mosaic rasters and reproject them onto a region's grid.

    Rasters that share a CRS and pixel grid (tiles of one MODIS product, SRTM tiles of one
    resolution) are pasted together first and warped once, so pixels along tile edges are
    averaged over both tiles. Groups on different grids are warped separately and combined
    by the mean of their valid values.
    """
    groups: list[list[Raster]] = []
    for r in rasters:
        for g in groups:
            try:
                mosaic_aligned([g[0], r])
            except ValueError:
                continue
            g.append(r)
            break
        else:
            groups.append([r])
    outs = []
    for g in groups:
        pieces = _cropped(g, region, (pad + 1) * (region.fine_transform.a if grid == "fine" else region.coarse_transform.a))
        if pieces:
            outs.append(warp_to_region(mosaic_aligned(pieces), region, resampling, grid, pad))
    if not outs:
        return np.full(_target(region, grid, pad)[0], np.nan, dtype=np.float32)
    if len(outs) == 1:
        return outs[0]
    stack = np.stack(outs)
    n = np.sum(~np.isnan(stack), axis=0)
    total = np.nansum(stack, axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan).astype(np.float32)


def _cropped(group: Sequence[Raster], region: Region, pad_m: float) -> list[Raster]:
    return [c for c in (crop_to_region(r, region, 3, pad_m) for r in group) if c is not None and c.data.size]
