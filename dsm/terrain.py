"""Slope and aspect of a DEM on a projected grid (pure).

Method: Horn (1981) 3 x 3 finite differences, as ``gdaldem slope/aspect``, with the ground
spacing of each row corrected for the EASE-Grid 2.0 scale factors (the projection is
equal-area, not conformal: a projected metre east-west is ``1/k`` ground metres and
north-south ``1/h``). Edges use the nearest valid neighbour (edge replication); a NaN
elevation gives NaN slope and aspect in the pixels whose window it touches.

Slope is in degrees from horizontal. Aspect is the downslope direction in degrees clockwise
from north, in [0, 360); a flat pixel (zero gradient) gets aspect 0, as ``gdaldem
-zero_for_flat``.
"""

from __future__ import annotations

import numpy as np

from dsm.grid import scale_factors


def horn_gradient(
    dem: np.ndarray, dx: float | np.ndarray, dy: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Elevation gradient (dz/dx east, dz/dy north) by Horn's method.

    Parameters
    ----------
    dem
        Elevation (m), 2-D, rows north to south.
    dx, dy
        Ground spacing (m) of columns and rows: scalars or per-row arrays of shape (nrows,).
    """
    z = np.pad(np.asarray(dem, dtype=np.float64), 1, mode="edge")
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    dx = np.asarray(dx, dtype=np.float64).reshape(-1, 1) if np.ndim(dx) else float(dx)
    dy = np.asarray(dy, dtype=np.float64).reshape(-1, 1) if np.ndim(dy) else float(dy)
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * dx)
    # rows run north to south, so "north minus south" is top row minus bottom row
    dzdy = ((a + 2 * b + c) - (g + 2 * h + i)) / (8.0 * dy)
    return dzdx, dzdy


def slope_aspect(
    dem: np.ndarray, dx: float | np.ndarray, dy: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Slope (degrees) and aspect (degrees clockwise from north, downslope) of a DEM.

    See the module docstring for the method and conventions.
    """
    dzdx, dzdy = horn_gradient(dem, dx, dy)
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    # downslope direction: the vector (-dzdx east, -dzdy north); azimuth from north, clockwise
    aspect = np.degrees(np.arctan2(-dzdx, -dzdy)) % 360.0
    aspect = np.where((dzdx == 0) & (dzdy == 0), 0.0, aspect)
    return slope.astype(np.float32), aspect.astype(np.float32)


def ease_spacing(cell: float, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground spacing (dx, dy) in metres of EASE-Grid 2.0 rows at latitudes ``lat``."""
    k, h = scale_factors(lat)
    return cell / k, cell / h
