"""Daily precipitation on a regular longitude/latitude grid -> a Region's 1 km EASE-Grid 2.0 grid.

Conservative (default)
    Each 1 km pixel takes the area-weighted mean of the source cells its footprint overlaps.
    EASE-Grid 2.0 global (EPSG:6933) is a *cylindrical equal-area* projection: x depends on
    longitude only, y on latitude only, and projected area is true area. A source cell
    ``[lon0, lon1] x [lat0, lat1]`` is therefore the rectangle ``[x(lon0), x(lon1)] x
    [y(lat0), y(lat1)]`` in EASE metres, and the area of its intersection with a pixel is the
    product of the overlap lengths along x and along y. The weights are separable,
    ``W = Wy (rows x source latitudes)`` times ``Wx (columns x source longitudes)``, and the
    remap is ``Wy @ field @ Wx.T`` for every day. This is *exact* (no sub-sampling; float64
    rounding only): the remapped field integrated over any set of whole source cells equals
    the source's area integral, so area means are preserved.
Bilinear
    Linear interpolation between the source cell centres in longitude and latitude (separable),
    evaluated at each pixel centre; beyond the outermost centres (but inside the grid) the edge
    values are held. Exact for fields linear in longitude and latitude.

Missing values are never filled: a pixel is NaN when any source cell with a non-zero weight is
NaN. A pixel whose centre lies outside the source grid is NaN; one whose centre is inside but
whose footprint pokes out of the grid takes the mean over its covered part (conservative).

Longitudes may be in -180..180 or 0..360 (or run across the antimeridian, e.g. 179.95,
180.05); the region is shifted by a multiple of 360 degrees onto the source's longitudes.

The readers of :mod:`dsm.ingest.precip` read only the cells around a region
(:func:`lon_window`, :func:`lat_window`, :func:`load_block`: two cells of margin, wrapping
around a global grid), so a yearly global file costs a small block per day.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr

from dsm.grid import CELL_1KM, EASE2_1KM, Region, lonlat_to_xy, xy_to_lonlat

RemapMethod = Literal["conservative", "bilinear"]
BBox = tuple[float, float, float, float]  #: lon_min, lat_min, lon_max, lat_max (degrees)


def grid_spacing(values: np.ndarray, nominal: float | None = None, what: str = "coordinate") -> float:
    """Positive spacing of a regular 1-D coordinate (``nominal`` when it has one value).

    Raises
    ------
    ValueError
        Fewer than two values and no ``nominal``, or the spacing is not constant (within 1e-3
        of a cell).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        if nominal is None:
            raise ValueError(f"{what} has a single value and no known resolution")
        return float(nominal)
    step = (v[-1] - v[0]) / (v.size - 1)
    if step == 0 or np.max(np.abs(np.diff(v) - step)) > 1e-3 * abs(step):
        raise ValueError(f"{what} is not a regular grid (spacing varies from {np.min(np.diff(v)):.6g} "
                         f"to {np.max(np.diff(v)):.6g})")
    return abs(float(step))


# -- reading only the cells around a region ----------------------------------------------
def grid_runs(idx: np.ndarray) -> list[slice]:
    """Contiguous runs of sorted-by-position integer indices, as slices."""
    if idx.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    return [slice(int(p[0]), int(p[-1]) + 1) for p in np.split(idx, cuts)]


def lon_window(lon: np.ndarray, bbox: BBox | None, res: float, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Column indices covering the bbox (``margin`` cells more on each side, wrapping a global
    grid) and their longitudes, increasing from the bbox's west edge (they may pass 180)."""
    if bbox is None:
        order = np.argsort(lon, kind="stable")
        return order, lon[order]
    lo = bbox[0] - margin * res
    width = bbox[2] - bbox[0] + 2 * margin * res
    off = (lon - lo) % 360.0
    idx = np.flatnonzero(off <= width)
    idx = idx[np.argsort(off[idx], kind="stable")]
    return idx, lo + off[idx]


def lat_window(lat: np.ndarray, bbox: BBox | None, res: float, margin: int = 2) -> np.ndarray:
    """Row indices covering the bbox (``margin`` cells more on each side), north to south."""
    if bbox is None:
        return np.argsort(-lat, kind="stable")
    idx = np.flatnonzero((lat >= bbox[1] - margin * res) & (lat <= bbox[3] + margin * res))
    return idx[np.argsort(-lat[idx], kind="stable")]


def gather_block(read: Any, yidx: np.ndarray, xidx: np.ndarray, lead: int) -> np.ndarray:
    """Block (lead, len(yidx), len(xidx)) from ``read(row slice, column slice)``, indices in output order."""
    if yidx.size == 0 or xidx.size == 0:
        return np.empty((lead, yidx.size, xidx.size), np.float64)
    ys, xs = np.sort(yidx), np.sort(xidx)
    rows = [np.concatenate([np.asarray(read(r, c), np.float64) for c in grid_runs(xs)], axis=-1)
            for r in grid_runs(ys)]
    block = np.concatenate(rows, axis=-2).reshape(lead, ys.size, xs.size)
    return block[:, np.searchsorted(ys, yidx), :][:, :, np.searchsorted(xs, xidx)]


def load_block(var: xr.DataArray, tdim: str | None, tidx: np.ndarray | None, lat: str, lon: str,
               yidx: np.ndarray, xidx: np.ndarray) -> np.ndarray:
    """Read only the needed block of ``var`` (dims time?, lat, lon) as (time, lat, lon) float64."""
    v = var.transpose(*([tdim] if tdim else []), lat, lon)
    tsel = {tdim: np.asarray(tidx, dtype=np.int64)} if tdim else {}
    lead = len(tsel[tdim]) if tdim else 1
    if lead == 0:
        return np.empty((0, yidx.size, xidx.size), np.float64)
    return gather_block(lambda r, c: v.isel({**tsel, lat: r, lon: c}).values, yidx, xidx, lead)


# -- remap --------------------------------------------------------------------------------
def _source_axes(field: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(values (t, lat north->south, lon west->east), lat, lon, dlat, dlon) of a reader's field."""
    if set(field.dims) != {"time", "lat", "lon"}:
        raise ValueError(f"the field must have dims (time, lat, lon), not {field.dims}")
    f = field.transpose("time", "lat", "lon").sortby("lat", ascending=False).sortby("lon")
    res = field.attrs.get("res_deg")
    lat, lon = f["lat"].values.astype(np.float64), f["lon"].values.astype(np.float64)
    dlat = grid_spacing(lat, None if res is None else float(res[0]), "latitude")
    dlon = grid_spacing(lon, None if res is None else float(res[1]), "longitude")
    return np.asarray(f.values, dtype=np.float64), lat, lon, dlat, dlon


def _region_lon_shift(region: Region, west: float, east: float) -> float:
    """Multiple of 360 that moves the region's longitudes onto the source's ``[west, east]``."""
    lon0, _, lon1, _ = region.lonlat_bounds
    best, shift = -1.0, 0.0
    for k in (-360.0, 0.0, 360.0):
        overlap = min(lon1 + k, east) - max(lon0 + k, west)
        if overlap > best:
            best, shift = overlap, k
    return shift


def _overlap(fine_lo: np.ndarray, fine_hi: np.ndarray, src_lo: np.ndarray, src_hi: np.ndarray) -> np.ndarray:
    """Overlap lengths (n_fine, n_src) of 1-D intervals."""
    lo = np.maximum(fine_lo[:, None], src_lo[None, :])
    hi = np.minimum(fine_hi[:, None], src_hi[None, :])
    return np.clip(hi - lo, 0.0, None)


def conservative_weights(region: Region, lat: np.ndarray, lon: np.ndarray, dlat: float,
                         dlon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Separable area weights of the region's 1 km pixels on a lon/lat grid.

    Returns
    -------
    (wy, wx, inside_y, inside_x)
        ``wy`` (rows, len(lat)) and ``wx`` (cols, len(lon)): fraction of each pixel's height
        (width) in each source row (column), in EASE metres; ``inside_*``: pixel centres inside
        the grid.
    """
    ny, nx = region.fine_shape
    # rows: EASE y of pixel edges; source latitude edges -> y (y depends on latitude only)
    y_top = EASE2_1KM.y_centres(np.arange(region.fine_row0, region.fine_row0 + ny)) + CELL_1KM / 2
    y_bot = y_top - CELL_1KM
    lat_n = np.clip(lat + dlat / 2, -90.0, 90.0)
    lat_s = np.clip(lat - dlat / 2, -90.0, 90.0)
    _, ys_n = lonlat_to_xy(np.zeros_like(lat_n), lat_n)
    _, ys_s = lonlat_to_xy(np.zeros_like(lat_s), lat_s)
    wy = _overlap(y_bot, y_top, np.asarray(ys_s), np.asarray(ys_n)) / CELL_1KM
    # columns: x is proportional to longitude, so overlap fractions in longitude are fractions in x
    x_left = EASE2_1KM.x_centres(np.arange(region.fine_col0, region.fine_col0 + nx)) - CELL_1KM / 2
    lon_l, _ = xy_to_lonlat(x_left, np.zeros(nx))
    lon_r, _ = xy_to_lonlat(x_left + CELL_1KM, np.zeros(nx))
    shift = _region_lon_shift(region, lon[0] - dlon / 2, lon[-1] + dlon / 2)
    lon_l, lon_r = np.asarray(lon_l) + shift, np.asarray(lon_r) + shift
    wx = _overlap(lon_l, lon_r, lon - dlon / 2, lon + dlon / 2) / (lon_r - lon_l)[:, None]
    lat_c, lon_c = region.fine_lat, region.fine_lon + shift
    inside_y = (lat_c <= lat[0] + dlat / 2) & (lat_c >= lat[-1] - dlat / 2)
    inside_x = (lon_c >= lon[0] - dlon / 2) & (lon_c <= lon[-1] + dlon / 2)
    return wy, wx, inside_y, inside_x


def _linear_matrix(points: np.ndarray, centres: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """(n_points, n_centres) linear interpolation weights, edge values held; points within the grid."""
    n = centres.size
    a = np.zeros((points.size, n))
    rows = np.arange(points.size)
    if n == 1:
        a[:, 0] = 1.0
    else:
        u = np.clip((points - centres[0]) / (centres[1] - centres[0]), 0.0, n - 1.0)
        i0 = np.minimum(np.floor(u).astype(np.int64), n - 2)
        frac = u - i0
        a[rows, i0] = 1.0 - frac
        a[rows, i0 + 1] += frac
    lo, hi = min(centres[0], centres[-1]) - half, max(centres[0], centres[-1]) + half
    return a, (points >= lo) & (points <= hi)


def bilinear_weights(region: Region, lat: np.ndarray, lon: np.ndarray, dlat: float,
                     dlon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Separable bilinear weights ``(ay, ax, inside_y, inside_x)`` at the 1 km pixel centres."""
    shift = _region_lon_shift(region, lon[0] - dlon / 2, lon[-1] + dlon / 2)
    ay, inside_y = _linear_matrix(region.fine_lat, lat, dlat / 2)
    ax, inside_x = _linear_matrix(region.fine_lon + shift, lon, dlon / 2)
    return ay, ax, inside_y, inside_x


def remap_to_region(field: xr.DataArray, region: Region, method: RemapMethod = "conservative") -> np.ndarray:
    """Put daily precipitation on a regular lon/lat grid onto the region's 1 km grid.

    Parameters
    ----------
    field
        ``(time, lat, lon)`` with 1-D cell-centre coordinates in degrees (any order; a grid of
        one row or column needs ``attrs["res_deg"] = (dlat, dlon)``), NaN where missing.
    region
        The destination region (its 1 km EASE-Grid 2.0 pixels).
    method
        ``"conservative"`` (area-weighted, preserves area means) or ``"bilinear"`` (module
        docstring).

    Returns
    -------
    numpy.ndarray
        float32 ``(time, ny, nx)``; NaN where a contributing source cell is NaN or the pixel
        centre is outside the source grid.
    """
    values, lat, lon, dlat, dlon = _source_axes(field)
    if method == "conservative":
        wy, wx, iy, ix = conservative_weights(region, lat, lon, dlat, dlon)
    elif method == "bilinear":
        wy, wx, iy, ix = bilinear_weights(region, lat, lon, dlat, dlon)
    else:
        raise ValueError(f"remap method must be 'conservative' or 'bilinear', not {method!r}")
    valid = np.isfinite(values)
    num = wy @ np.where(valid, values, 0.0) @ wx.T
    bad = wy @ (~valid).astype(np.float64) @ wx.T
    cover = (wy.sum(axis=1)[:, None] * wx.sum(axis=1)[None, :])[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / cover
    keep = (bad <= 0.0) & (cover > 0.0) & (iy[:, None] & ix[None, :])[None]
    return np.where(keep, out, np.nan).astype(np.float32)
