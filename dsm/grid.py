"""EASE-Grid 2.0 global grids (EPSG:6933) and regions on them.

The 36 km SMAP grid is 964 x 406 cells of 36032.220840584 m with its upper-left corner at
x = -17367530.44516138 m, y = 7314540.830638 m. The 1 km grid is the same extent cut 36 x 36
per coarse cell (cell 1000.89502334956 m, 34704 x 14616), so every 1 km pixel lies in exactly
one SMAP cell and 1 km -> 36 km is a pure block operation. The 9 km grid of SPL3SMP_E is the
same extent cut 4 x 4 per coarse cell (cell 9008.055210146 m, 3856 x 1624): 9 x 9 one-km
pixels nest in one 9 km cell and 4 x 4 nine-km cells in one 36 km cell.

The projection is cylindrical equal-area (standard parallel 30 deg, WGS 84): x depends on
longitude only and y on latitude only, so cell-centre longitudes and latitudes are 1-D.

Everything here is pure: no file or network access.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from numpy.typing import ArrayLike
from pyproj import CRS, Transformer

from dsm.errors import GridError

EPSG = 6933
CRS_WKT = CRS.from_epsg(EPSG).to_wkt()
CELL_36KM = 36032.220840584
FINE_PER_COARSE = 36
CELL_1KM = CELL_36KM / FINE_PER_COARSE
KM9_PER_COARSE = 4
CELL_9KM = CELL_36KM / KM9_PER_COARSE
NCOLS_36KM = 964
NROWS_36KM = 406
X_MIN = -17367530.44516138
Y_MAX = 7314540.830638

# WGS 84 and the EASE-Grid 2.0 standard parallel, for the scale factors.
_A = 6378137.0
_E2 = 0.0066943799901413165
_PHI1 = math.radians(30.0)
_K0 = math.cos(_PHI1) / math.sqrt(1.0 - _E2 * math.sin(_PHI1) ** 2)


@dataclass(frozen=True)
class Grid:
    """A global EASE-Grid 2.0 raster: cell size, shape and upper-left corner (metres)."""

    cell: float
    ncols: int
    nrows: int
    x_min: float = X_MIN
    y_max: float = Y_MAX

    @property
    def transform(self) -> Affine:
        """Affine transform of the whole global grid (pixel corner convention)."""
        return Affine(self.cell, 0.0, self.x_min, 0.0, -self.cell, self.y_max)

    def x_centres(self, cols: np.ndarray | int) -> np.ndarray:
        """Projected x (m) of the centres of global columns ``cols``."""
        return self.x_min + (np.asarray(cols, dtype=np.float64) + 0.5) * self.cell

    def y_centres(self, rows: np.ndarray | int) -> np.ndarray:
        """Projected y (m) of the centres of global rows ``rows``."""
        return self.y_max - (np.asarray(rows, dtype=np.float64) + 0.5) * self.cell

    def index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global (row, col) of the cells containing projected points; -1 where outside."""
        col = np.floor((np.asarray(x, dtype=np.float64) - self.x_min) / self.cell).astype(np.int64)
        row = np.floor((self.y_max - np.asarray(y, dtype=np.float64)) / self.cell).astype(np.int64)
        outside = (col < 0) | (col >= self.ncols) | (row < 0) | (row >= self.nrows)
        return np.where(outside, -1, row), np.where(outside, -1, col)


EASE2_36KM = Grid(CELL_36KM, NCOLS_36KM, NROWS_36KM)
EASE2_1KM = Grid(CELL_1KM, NCOLS_36KM * FINE_PER_COARSE, NROWS_36KM * FINE_PER_COARSE)
EASE2_9KM = Grid(CELL_9KM, NCOLS_36KM * KM9_PER_COARSE, NROWS_36KM * KM9_PER_COARSE)


def cells_per_coarse(grid: Grid) -> int:
    """How many cells of ``grid`` span one 36 km cell along each axis (36 km: 1, 9 km: 4, 1 km: 36).

    Raises
    ------
    GridError
        ``grid`` is not a global EASE-Grid 2.0 grid nested in the 36 km grid.
    """
    n = round(CELL_36KM / grid.cell)
    if (
        n < 1
        or abs(n * grid.cell - CELL_36KM) > 1e-6
        or (grid.nrows, grid.ncols) != (NROWS_36KM * n, NCOLS_36KM * n)
        or (grid.x_min, grid.y_max) != (X_MIN, Y_MAX)
    ):
        raise GridError(f"{grid} is not a global EASE-Grid 2.0 grid nested in the 36 km grid")
    return n


@functools.lru_cache(maxsize=1)
def _to_ease() -> Transformer:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{EPSG}", always_xy=True)


@functools.lru_cache(maxsize=1)
def _from_ease() -> Transformer:
    return Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True)


def lonlat_to_xy(lon: ArrayLike, lat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Project longitude/latitude (degrees, WGS 84) to EASE-Grid 2.0 x/y (m)."""
    return _to_ease().transform(np.asarray(lon, np.float64), np.asarray(lat, np.float64))


def xy_to_lonlat(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Unproject EASE-Grid 2.0 x/y (m) to longitude/latitude (degrees, WGS 84)."""
    return _from_ease().transform(np.asarray(x, np.float64), np.asarray(y, np.float64))


def scale_factors(lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map scale factors of EASE-Grid 2.0 at latitude ``lat`` (degrees).

    Returns ``(k, h)``: the scale along the parallel and along the meridian (``h = 1/k``
    since the projection is equal-area). A projected distance ``d`` corresponds to a
    ground distance ``d / k`` east-west and ``d / h`` north-south.
    """
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    k = _K0 * np.sqrt(1.0 - _E2 * np.sin(phi) ** 2) / np.cos(phi)
    return k, 1.0 / k


def land_point_index(row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Point index of a 36 km cell as used by ``ease36land.nc`` (rows counted from the south)."""
    return (NROWS_36KM - 1 - np.asarray(row)) * NCOLS_36KM + np.asarray(col)


def cell_id(row: np.ndarray, col: np.ndarray, ncols: int = NCOLS_36KM) -> np.ndarray:
    """Global linear id of a coarse cell, row-major from the north-west corner of a global grid
    of ``ncols`` columns (the 36 km grid's by default)."""
    return np.asarray(row, dtype=np.int64) * ncols + np.asarray(col, dtype=np.int64)


def fine_to_coarse(row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 36 km (row, col) containing 1 km pixel (row, col); both global indices."""
    return np.asarray(row) // FINE_PER_COARSE, np.asarray(col) // FINE_PER_COARSE


def coarse_to_fine(row: int, col: int) -> tuple[slice, slice]:
    """Global 1 km row and column slices covered by 36 km cell (row, col)."""
    f = FINE_PER_COARSE
    return slice(row * f, (row + 1) * f), slice(col * f, (col + 1) * f)


COARSE_KM: tuple[int, ...] = (36, 9)
"""Coarse grids a region's SMAP may come on: 36 km (SPL3SMP) or 9 km (SPL3SMP_E)."""


@dataclass(frozen=True)
class Region:
    """A rectangle of whole 36 km cells on the global grid, with the coarse grid its SMAP is on.

    Parameters
    ----------
    row0, col0
        Global 36 km row and column of the upper-left cell.
    nrows, ncols
        Size in 36 km cells.
    coarse_km
        The coarse (SMAP) grid: 36 (SPL3SMP) or 9 (SPL3SMP_E, 4 x 4 cells per 36 km cell).
        The ``coarse_*`` properties and :attr:`fine_per_coarse` follow it; the extent and the
        1 km grid do not.
    """

    row0: int
    col0: int
    nrows: int
    ncols: int
    coarse_km: int = 36

    def __post_init__(self) -> None:
        for name in ("row0", "col0", "nrows", "ncols"):
            if not isinstance(getattr(self, name), (int, np.integer)):
                raise GridError(f"Region.{name} must be an integer, got {getattr(self, name)!r}")
        if self.coarse_km not in COARSE_KM:
            raise GridError(f"coarse grid of {self.coarse_km!r} km: dsm knows the EASE-Grid 2.0 {COARSE_KM} km grids")
        if self.nrows < 1 or self.ncols < 1:
            raise GridError(f"region size must be at least 1 x 1 cells, got {self.nrows} x {self.ncols}")
        if (
            self.row0 < 0
            or self.col0 < 0
            or self.row0 + self.nrows > NROWS_36KM
            or self.col0 + self.ncols > NCOLS_36KM
        ):
            raise GridError(
                f"region rows {self.row0}..{self.row0 + self.nrows - 1}, cols "
                f"{self.col0}..{self.col0 + self.ncols - 1} fall outside the EASE-Grid 2.0 "
                f"36 km grid ({NROWS_36KM} rows x {NCOLS_36KM} cols)"
            )

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_bbox(cls, lon_min: float, lat_min: float, lon_max: float, lat_max: float) -> Region:
        """The smallest region of whole 36 km cells covering a lon/lat bounding box."""
        if not (lon_min < lon_max and lat_min < lat_max):
            raise GridError(
                f"bounding box must have lon_min < lon_max and lat_min < lat_max, got "
                f"({lon_min}, {lat_min}, {lon_max}, {lat_max})"
            )
        if not (-180 <= lon_min and lon_max <= 180 and -90 <= lat_min and lat_max <= 90):
            raise GridError(f"bounding box ({lon_min}, {lat_min}, {lon_max}, {lat_max}) is not in degrees")
        (x0, x1), (y0, y1) = lonlat_to_xy([lon_min, lon_max], [lat_min, lat_max])
        g = EASE2_36KM
        eps = 1e-6 / g.cell  # 1e-6 m in cells: a box edge on a cell edge does not take the next cell
        col0 = math.floor((x0 - g.x_min) / g.cell + eps)
        col1 = math.ceil((x1 - g.x_min) / g.cell - eps)
        row0 = math.floor((g.y_max - y1) / g.cell + eps)
        row1 = math.ceil((g.y_max - y0) / g.cell - eps)
        if not all(np.isfinite([x0, x1, y0, y1])) or row0 < 0 or row1 > NROWS_36KM:
            raise GridError(
                f"bounding box ({lon_min}, {lat_min}, {lon_max}, {lat_max}) extends beyond the "
                f"EASE-Grid 2.0 global grid (latitudes about -86.7 to 86.7)"
            )
        return cls(row0, col0, row1 - row0, col1 - col0)

    @classmethod
    def around(cls, lon: float, lat: float, nrows: int, ncols: int) -> Region:
        """A region of ``nrows x ncols`` cells whose upper-left part holds the given point.

        The cell containing (lon, lat) is placed at row ``(nrows - 1) // 2`` and column
        ``(ncols - 1) // 2`` of the region.
        """
        x, y = lonlat_to_xy(lon, lat)
        row, col = EASE2_36KM.index(x, y)
        if int(row) < 0:
            raise GridError(f"point ({lon}, {lat}) is outside the EASE-Grid 2.0 grid")
        return cls(int(row) - (nrows - 1) // 2, int(col) - (ncols - 1) // 2, nrows, ncols)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Region:
        """The region of :meth:`to_dict`'s form (as stored in store attributes)."""
        return cls(int(d["row0"]), int(d["col0"]), int(d["nrows"]), int(d["ncols"]), int(d.get("coarse_km", 36)))

    # -- shapes and transforms ----------------------------------------------------------
    @property
    def coarse_grid(self) -> Grid:
        """The global coarse grid: :data:`EASE2_36KM` or :data:`EASE2_9KM`."""
        return EASE2_36KM if self.coarse_km == 36 else EASE2_9KM

    @property
    def fine_per_coarse(self) -> int:
        """1 km pixels per coarse cell along each axis (36, or 9 on the 9 km grid)."""
        return self.coarse_km

    @property
    def coarse_shape(self) -> tuple[int, int]:
        """(rows, cols) on the coarse grid."""
        n = 36 // self.coarse_km
        return self.nrows * n, self.ncols * n

    @property
    def fine_shape(self) -> tuple[int, int]:
        """(rows, cols) on the 1 km grid."""
        return self.nrows * FINE_PER_COARSE, self.ncols * FINE_PER_COARSE

    @property
    def fine_row0(self) -> int:
        """Global 1 km row of the region's first row."""
        return self.row0 * FINE_PER_COARSE

    @property
    def fine_col0(self) -> int:
        """Global 1 km column of the region's first column."""
        return self.col0 * FINE_PER_COARSE

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) in metres, outer cell edges."""
        g = EASE2_36KM
        x0 = g.x_min + self.col0 * g.cell
        y1 = g.y_max - self.row0 * g.cell
        return x0, y1 - self.nrows * g.cell, x0 + self.ncols * g.cell, y1

    @property
    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(lon_min, lat_min, lon_max, lat_max) of the outer cell edges."""
        x0, y0, x1, y1 = self.bounds
        (lon0, lon1), (lat0, lat1) = xy_to_lonlat([x0, x1], [y0, y1])
        return float(lon0), float(lat0), float(lon1), float(lat1)

    @property
    def coarse_transform(self) -> Affine:
        """Affine transform of the region on the coarse grid."""
        x0, _, _, y1 = self.bounds
        cell = self.coarse_grid.cell
        return Affine(cell, 0.0, x0, 0.0, -cell, y1)

    @property
    def fine_transform(self) -> Affine:
        """Affine transform of the region on the 1 km grid."""
        x0, _, _, y1 = self.bounds
        return Affine(CELL_1KM, 0.0, x0, 0.0, -CELL_1KM, y1)

    # -- coordinates --------------------------------------------------------------------
    @property
    def coarse_x(self) -> np.ndarray:
        """x (m) of coarse cell centres."""
        row0, col0, nrows, ncols = self.window(self.coarse_grid)
        return self.coarse_grid.x_centres(np.arange(col0, col0 + ncols))

    @property
    def coarse_y(self) -> np.ndarray:
        """y (m) of coarse cell centres (north to south)."""
        row0, col0, nrows, ncols = self.window(self.coarse_grid)
        return self.coarse_grid.y_centres(np.arange(row0, row0 + nrows))

    @property
    def fine_x(self) -> np.ndarray:
        """x (m) of 1 km pixel centres."""
        n = self.fine_shape[1]
        return EASE2_1KM.x_centres(np.arange(self.fine_col0, self.fine_col0 + n))

    @property
    def fine_y(self) -> np.ndarray:
        """y (m) of 1 km pixel centres (north to south)."""
        n = self.fine_shape[0]
        return EASE2_1KM.y_centres(np.arange(self.fine_row0, self.fine_row0 + n))

    @property
    def coarse_lon(self) -> np.ndarray:
        """Longitude (deg) of coarse cell centres; 1-D because the projection is cylindrical."""
        return xy_to_lonlat(self.coarse_x, np.zeros(self.coarse_shape[1]))[0]

    @property
    def coarse_lat(self) -> np.ndarray:
        """Latitude (deg) of coarse cell centres (north to south)."""
        return xy_to_lonlat(np.zeros(self.coarse_shape[0]), self.coarse_y)[1]

    @property
    def fine_lon(self) -> np.ndarray:
        """Longitude (deg) of 1 km pixel centres."""
        return xy_to_lonlat(self.fine_x, np.zeros(self.fine_shape[1]))[0]

    @property
    def fine_lat(self) -> np.ndarray:
        """Latitude (deg) of 1 km pixel centres (north to south)."""
        return xy_to_lonlat(np.zeros(self.fine_shape[0]), self.fine_y)[1]

    @property
    def cell_ids(self) -> np.ndarray:
        """Global linear ids (``row * ncols + col`` of the coarse grid) of the region's coarse cells, 2-D."""
        row0, col0, nrows, ncols = self.window(self.coarse_grid)
        rows = np.arange(row0, row0 + nrows)[:, None]
        cols = np.arange(col0, col0 + ncols)[None, :]
        return cell_id(rows, cols, self.coarse_grid.ncols)

    # -- relations ----------------------------------------------------------------------
    def contains(self, other: Region) -> bool:
        """Whether ``other`` lies entirely inside this region."""
        return (
            self.row0 <= other.row0
            and self.col0 <= other.col0
            and other.row0 + other.nrows <= self.row0 + self.nrows
            and other.col0 + other.ncols <= self.col0 + self.ncols
        )

    def coarse_slices(self, sub: Region) -> tuple[slice, slice]:
        """Row and column slices of ``sub`` in this region's coarse arrays."""
        if not self.contains(sub):
            raise GridError(f"{sub} is not inside {self}")
        n = 36 // self.coarse_km
        r, c = (sub.row0 - self.row0) * n, (sub.col0 - self.col0) * n
        return slice(r, r + sub.nrows * n), slice(c, c + sub.ncols * n)

    def fine_slices(self, sub: Region) -> tuple[slice, slice]:
        """Row and column slices of ``sub`` in this region's 1 km arrays."""
        rs, cs = self.coarse_slices(sub)
        f = self.fine_per_coarse
        return slice(rs.start * f, rs.stop * f), slice(cs.start * f, cs.stop * f)

    def pixel_of(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Region-relative 1 km (row, col) of points; -1 where outside the region."""
        x, y = lonlat_to_xy(lon, lat)
        row, col = EASE2_1KM.index(x, y)
        row, col = row - self.fine_row0, col - self.fine_col0
        nr, nc = self.fine_shape
        outside = (row < 0) | (row >= nr) | (col < 0) | (col >= nc)
        return np.where(outside, -1, row), np.where(outside, -1, col)

    def window(self, grid: Grid) -> tuple[int, int, int, int]:
        """``(row0, col0, nrows, ncols)`` of the region's cells on a global grid nested in the
        36 km grid (:data:`EASE2_36KM`, :data:`EASE2_9KM`, :data:`EASE2_1KM`)."""
        n = cells_per_coarse(grid)
        return self.row0 * n, self.col0 * n, self.nrows * n, self.ncols * n

    def to_dict(self) -> dict[str, int]:
        """Plain-dict form, as stored in store attributes (``coarse_km`` only when not 36)."""
        d = {"row0": int(self.row0), "col0": int(self.col0), "nrows": int(self.nrows), "ncols": int(self.ncols)}
        return d if self.coarse_km == 36 else {**d, "coarse_km": int(self.coarse_km)}


def _interp_matrix(n: int, factor: int) -> np.ndarray:
    """``(n * factor, n)`` linear interpolation between cell centres, edge values held."""
    u = (np.arange(n * factor) + 0.5) / factor - 0.5  # fine centres in cell-index units
    i0 = np.floor(u).astype(np.int64)
    frac = u - i0
    a = np.zeros((n * factor, n))
    rows = np.arange(n * factor)
    np.add.at(a, (rows, np.clip(i0, 0, n - 1)), 1.0 - frac)
    np.add.at(a, (rows, np.clip(i0 + 1, 0, n - 1)), frac)
    return a


def repeat_to_fine(coarse: np.ndarray, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """A coarse field (last two axes) repeated onto the ``factor`` x ``factor`` fine pixels of each cell."""
    return np.repeat(np.repeat(coarse, factor, -2), factor, -1)


def bilinear(coarse: np.ndarray, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """Bilinear interpolation of a coarse field (last two axes) to the fine pixel centres.

    Interpolates between cell centres, holding edge values beyond the outer centres; NaN
    neighbours are left out and the weights of the others renormalised; pixels whose own
    cell is NaN are NaN. Returns float64 of shape ``(..., ny * factor, nx * factor)``.
    """
    v = np.asarray(coarse, dtype=np.float64)
    ay, ax = _interp_matrix(v.shape[-2], factor), _interp_matrix(v.shape[-1], factor)
    valid = np.isfinite(v)
    num = ay @ np.where(valid, v, 0.0) @ ax.T
    den = ay @ valid.astype(np.float64) @ ax.T
    out = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
    own = repeat_to_fine(valid, factor)
    return np.where(own, out, np.nan)


def block_reduce_mean(fine: np.ndarray, valid_fraction: float = 0.0, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """Mean of the valid (non-NaN) 1 km pixels of each coarse cell.

    Parameters
    ----------
    fine
        Array whose last two axes are multiples of ``factor`` (1 km rows, cols).
    valid_fraction
        Minimum fraction of valid pixels for a cell to get a value; below it the cell is NaN.
    factor
        1 km pixels per coarse cell along each axis (:attr:`Region.fine_per_coarse`).
    """
    f = factor
    *lead, ny, nx = fine.shape
    if ny % f or nx % f:
        raise GridError(f"1 km array shape {fine.shape} is not a multiple of {f} in its last two axes")
    blocks = fine.reshape(*lead, ny // f, f, nx // f, f)
    valid = ~np.isnan(blocks)
    n = valid.sum(axis=(-3, -1))
    total = np.where(valid, blocks, 0).sum(axis=(-3, -1), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
    mean[(n == 0) | (n < valid_fraction * f * f)] = np.nan
    return mean.astype(fine.dtype if np.issubdtype(fine.dtype, np.floating) else np.float64)
