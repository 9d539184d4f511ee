"""Placing SMAP L3 arrays on a global EASE-Grid 2.0 grid, and cutting a region out of them.

SMAP L3 arrays come either as the whole global grid (a granule: 406 x 964 cells at 36 km,
1624 x 3856 at 9 km) or as a rectangular window of it (a Harmony/OPeNDAP spatial subset).
:func:`locate` finds the window's global row and column from the file's own geolocation, in
this order:

1. ``x``/``y``: the 1-D projected coordinates (EPSG:6933 metres, cell centres) that Harmony
   writes in each group. Every value must be a cell centre of the grid within
   :data:`XY_TOLERANCE_CELLS` of a cell, ``x`` stepping one cell east and ``y`` one cell
   south at a time, else :class:`GeolocationError`.
2. the arrays' shape, when it is the whole global grid;
3. ``EASE_row_index``/``EASE_column_index`` (fill 65534): every indexed cell must give the
   same offset;
4. latitude/longitude (fill -9999): each valid cell is projected and rounded to its grid
   cell; every cell must give the same offset.

A file that none of them places raises :class:`GeolocationError`; arrays larger than the
grid, :class:`WrongProductError`. :func:`check_cells` then checks the file's latitude,
longitude and row/column indices of the cells actually used against the grid (within
``tolerance_deg`` degrees; indices exactly), and :func:`paste` puts those cells into the
region's window, NaN where the file does not reach. Everything works on any grid nested in
the 36 km grid (:data:`dsm.grid.EASE2_36KM`, :data:`dsm.grid.EASE2_9KM`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from dsm.grid import Grid, Region, lonlat_to_xy, xy_to_lonlat
from dsm.ingest.base import GeolocationError, WrongProductError
from dsm.ingest.reproject import wrap_on_grid

#: Largest distance (in cells) of a file's ``x``/``y`` from the grid's cell centres.
XY_TOLERANCE_CELLS = 1e-3
LATLON_FILL = -9999.0
INDEX_FILL = 65534


def grid_label(grid: Grid) -> str:
    """``"36 km"``, ``"9 km"``, ``"1 km"``: the grid's nominal cell size."""
    return f"{grid.cell / 1000:.0f} km"


@dataclass(frozen=True)
class Window:
    """A rectangle of cells of a global grid: first row and column, size."""

    row0: int
    col0: int
    nrows: int
    ncols: int

    def __str__(self) -> str:
        return f"rows {self.row0}..{self.row0 + self.nrows - 1}, cols {self.col0}..{self.col0 + self.ncols - 1}"

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.nrows, self.ncols

    def intersection(self, other: Window) -> Window | None:
        """The cells in both windows, None when they do not overlap."""
        r0, c0 = max(self.row0, other.row0), max(self.col0, other.col0)
        r1 = min(self.row0 + self.nrows, other.row0 + other.nrows)
        c1 = min(self.col0 + self.ncols, other.col0 + other.ncols)
        return Window(r0, c0, r1 - r0, c1 - c0) if r0 < r1 and c0 < c1 else None

    def slices(self, inner: Window) -> tuple[slice, slice]:
        """Row and column slices of ``inner`` (inside this window) in this window's arrays."""
        r, c = inner.row0 - self.row0, inner.col0 - self.col0
        return slice(r, r + inner.nrows), slice(c, c + inner.ncols)


@dataclass(frozen=True)
class Geolocation:
    """A group's own geolocation; each an array or an h5py dataset (read lazily), or None."""

    x: Any = None
    y: Any = None
    rows: Any = None
    cols: Any = None
    lat: Any = None
    lon: Any = None


def region_window(region: Region, grid: Grid) -> Window:
    """The region's cells on ``grid``."""
    return Window(*region.window(grid))


def locate(path: str, grid: Grid, shape: tuple[int, int], geo: Geolocation) -> tuple[Window, str]:
    """Where arrays of ``shape`` lie on the global ``grid`` (module docstring for the order).

    Returns
    -------
    (Window, str)
        The arrays' window and how it was found (``"x/y"``, ``"global"``,
        ``"EASE_row_index/EASE_column_index"``, ``"latitude/longitude"``).

    Raises
    ------
    WrongProductError
        The arrays are not 2-D or larger than the grid.
    GeolocationError
        The geolocation is off the grid, inconsistent, or absent.
    """
    label = grid_label(grid)
    if len(shape) != 2 or shape[0] > grid.nrows or shape[1] > grid.ncols:
        raise WrongProductError(
            path, f"arrays of shape {shape} are not the global {label} grid ({grid.nrows} x {grid.ncols}) nor a part of it"
        )
    ny, nx = shape
    if geo.x is not None and geo.y is not None:
        return Window(_axis(path, grid, geo.y, "y", ny), _axis(path, grid, geo.x, "x", nx), ny, nx), "x/y"
    if shape == (grid.nrows, grid.ncols):
        return Window(0, 0, ny, nx), "global"
    if geo.rows is not None and geo.cols is not None:
        r, c = _array(geo.rows, np.int64), _array(geo.cols, np.int64)
        have = (r != INDEX_FILL) & (c != INDEX_FILL) & (r >= 0) & (c >= 0)
        if have.any():
            return _offset(path, grid, shape, have, r[have], c[have], "EASE_row_index/EASE_column_index")
    if geo.lat is not None and geo.lon is not None:
        la, lo = _array(geo.lat, np.float64), _array(geo.lon, np.float64)
        have = _have_latlon(la, lo)
        if have.any():
            x, y = lonlat_to_xy(lo[have], la[have])
            r = np.round((grid.y_max - y) / grid.cell - 0.5).astype(np.int64)
            c = np.round((np.asarray(x) - grid.x_min) / grid.cell - 0.5).astype(np.int64)
            return _offset(path, grid, shape, have, r, c, "latitude/longitude")
    raise GeolocationError(
        path,
        f"arrays of shape {shape} are a part of the global {label} grid ({grid.nrows} x {grid.ncols}) but the file "
        "has no x/y, no EASE_row_index/EASE_column_index and no valid latitude/longitude to place them: request "
        "the subset with its x/y coordinates (Harmony adds them) or use the whole granule",
    )


def _array(v: Any, dtype: type) -> np.ndarray:
    return np.asarray(v[()]).astype(dtype)


def _have_latlon(la: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return (la != LATLON_FILL) & (lo != LATLON_FILL) & np.isfinite(la) & np.isfinite(lo)


def _axis(path: str, grid: Grid, v: Any, name: str, n: int) -> int:
    """First global index of a 1-D ``x`` or ``y`` of cell centres."""
    label = grid_label(grid)
    values = np.asarray(v[()], dtype=np.float64)
    if values.shape != (n,):
        raise GeolocationError(path, f"{name} has shape {values.shape}, not ({n},) as the arrays it locates")
    if not np.isfinite(values).all():
        raise GeolocationError(path, f"{name} has fill (NaN) values: the subset cannot be placed on the {label} grid")
    u = (values - grid.x_min) / grid.cell - 0.5 if name == "x" else (grid.y_max - values) / grid.cell - 0.5
    idx = np.round(u)
    off = np.abs(u - idx)
    if off.max() > XY_TOLERANCE_CELLS:
        i = int(np.argmax(off))
        raise GeolocationError(
            path,
            f"{name}[{i}] = {values[i]:.3f} m is {off[i] * grid.cell:.3f} m from the nearest cell centre of the "
            f"EASE-Grid 2.0 {label} grid (tolerance {XY_TOLERANCE_CELLS * grid.cell:.3f} m): the file is not on this grid",
        )
    idx = idx.astype(np.int64)
    if n > 1 and (np.diff(idx) != 1).any():
        way = "west to east" if name == "x" else "north to south"
        raise GeolocationError(path, f"{name} does not step one {label} cell at a time {way}: not a window of the grid")
    size = grid.ncols if name == "x" else grid.nrows
    if idx[0] < 0 or idx[-1] >= size:
        raise GeolocationError(path, f"{name} reaches cells {idx[0]}..{idx[-1]}, outside the {label} grid (0..{size - 1})")
    return int(idx[0])


def _offset(path: str, grid: Grid, shape, have: np.ndarray, r: np.ndarray, c: np.ndarray, how: str) -> tuple[Window, str]:
    """The one (row, col) offset of array cells ``have`` at global cells ``r``, ``c``."""
    i, j = np.nonzero(have)
    dr, dc = r - i, c - j
    bad = (dr != dr[0]) | (dc != dc[0])
    if bad.any():
        k = int(np.argmax(bad))
        raise GeolocationError(
            path,
            f"{how} do not make a window of the {grid_label(grid)} grid: array cell (0, 0) would be global cell "
            f"({dr[0]}, {dc[0]}) by array cell ({i[0]}, {j[0]}) but ({dr[k]}, {dc[k]}) by array cell ({i[k]}, {j[k]})",
        )
    w = Window(int(dr[0]), int(dc[0]), *shape)
    if w.row0 < 0 or w.col0 < 0 or w.row0 + w.nrows > grid.nrows or w.col0 + w.ncols > grid.ncols:
        raise GeolocationError(path, f"{how} put the arrays at {w}, outside the {grid_label(grid)} grid")
    return w, how


def check_cells(path: str, grid: Grid, where: Window, cut: Window, geo: Geolocation, tolerance_deg: float) -> None:
    """Check the file's latitude/longitude and row/column indices of the ``cut`` cells.

    ``where`` is the file arrays' window; ``cut`` a window inside it. Latitude/longitude must
    be within ``tolerance_deg`` of the grid's cell centres (fill -9999 and NaN are skipped),
    row/column indices (fill 65534 skipped) equal to the cells' global row and column.

    Raises
    ------
    GeolocationError
        Naming the first disagreeing cell by its global row and column.
    """
    rs, cs = where.slices(cut)
    rows, cols = np.arange(cut.row0, cut.row0 + cut.nrows), np.arange(cut.col0, cut.col0 + cut.ncols)
    if geo.lat is not None and geo.lon is not None:
        la, lo = np.asarray(geo.lat[rs, cs], np.float64), np.asarray(geo.lon[rs, cs], np.float64)
        have = _have_latlon(la, lo)
        if have.any():
            glon = xy_to_lonlat(grid.x_centres(cols), np.zeros(cut.ncols))[0]
            glat = xy_to_lonlat(np.zeros(cut.nrows), grid.y_centres(rows))[1]
            dlat = np.abs(la - glat[:, None])
            dlon = np.abs((lo - glon[None, :] + 180.0) % 360.0 - 180.0)
            diff = np.where(have, np.maximum(dlat, dlon), 0.0)
            worst = float(diff.max())
            if worst > tolerance_deg:
                i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
                raise GeolocationError(
                    path,
                    f"latitude/longitude of cell (row {rows[i]}, col {cols[j]}) ({la[i, j]:.5f}, {lo[i, j]:.5f}) "
                    f"differ from the EASE-Grid 2.0 {grid_label(grid)} centre ({glat[i]:.5f}, {glon[j]:.5f}) by "
                    f"{worst:.5f} deg > {tolerance_deg}",
                )
    for idx, expect, what in ((geo.rows, rows[:, None], "row"), (geo.cols, cols[None, :], "column")):
        if idx is None:
            continue
        sub = np.asarray(idx[rs, cs]).astype(np.int64)
        bad = (sub != INDEX_FILL) & (sub != expect)
        if bad.any():
            raise GeolocationError(path, f"EASE_{what}_index disagrees with the cell's position in {int(bad.sum())} cells")


def paste(values: np.ndarray, cut: Window, target: Window) -> np.ndarray:
    """``values`` (the ``cut`` cells) in a float32 array of ``target``'s shape, NaN elsewhere."""
    out = np.full(target.shape, np.nan, dtype=np.float32)
    out[target.slices(cut)] = values
    return out


def grid_dataarray(data: np.ndarray, region: Region, grid: Grid, name: str, attrs: dict, dims: tuple[str, str], mapping: str) -> xr.DataArray:
    """Wrap the region's cells on ``grid`` as a CF DataArray with an exact grid mapping."""
    w = region_window(region, grid)
    x0, _, _, y1 = region.bounds
    ys = grid.y_centres(np.arange(w.row0, w.row0 + w.nrows))
    xs = grid.x_centres(np.arange(w.col0, w.col0 + w.ncols))
    return wrap_on_grid(data, name, attrs, dims, ys, xs, mapping, Affine(grid.cell, 0.0, x0, 0.0, -grid.cell, y1),
                        grid_label(grid))