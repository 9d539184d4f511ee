"""The HDF-EOS metadata of a MODIS tile: its grid geometry from ``StructMetadata.0``, values of
``CoreMetadata.0``, the tile's date (file name checked against the metadata) and the published
sinusoidal tiling.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from affine import Affine

from dsm.ingest.base import GeolocationError, InputDateError, PathLike
from dsm.ingest.modis_products import ProductSpec

#: Published MODIS sinusoidal tiling (metres): tile (h, v) upper-left corner.
TILE_X0 = -20015109.354
TILE_Y0 = 10007554.677
TILE_SIZE = 1111950.5197
SPHERE_RADIUS = 6371007.181


@dataclass(frozen=True)
class TileGeometry:
    """Grid of one HDF-EOS tile, from ``StructMetadata.0``."""

    grid_name: str
    xdim: int
    ydim: int
    upper_left: tuple[float, float]
    lower_right: tuple[float, float]
    radius: float

    @property
    def transform(self) -> Affine:
        """Affine transform (pixel corners) of the tile."""
        (x0, y0), (x1, y1) = self.upper_left, self.lower_right
        return Affine((x1 - x0) / self.xdim, 0.0, x0, 0.0, (y1 - y0) / self.ydim, y0)

    @property
    def pixel_size(self) -> float:
        """Pixel width in metres (926.625 m for 1 km, 463.313 m for 500 m products)."""
        return (self.lower_right[0] - self.upper_left[0]) / self.xdim

    @property
    def tile(self) -> tuple[int, int]:
        """(h, v) of the published tile holding the grid's upper-left corner."""
        x0, y0 = self.upper_left
        return int(np.floor((x0 - TILE_X0) / TILE_SIZE + 1e-6)), int(np.floor((TILE_Y0 - y0) / TILE_SIZE + 1e-6))


def _odl(text: str, key: str) -> str | None:
    m = re.search(rf"^\s*{re.escape(key)}\s*=\s*(.+?)\s*$", text, re.M)
    return m.group(1) if m else None


def _pair(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    nums = re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", value)
    return (float(nums[0]), float(nums[1])) if len(nums) >= 2 else None


def parse_struct_metadata(text: str, path: PathLike = "<StructMetadata.0>") -> TileGeometry:
    """Geometry of the first grid of an HDF-EOS ``StructMetadata.0`` text.

    Raises
    ------
    GeolocationError
        No grid, a missing or malformed corner/size, or a projection other than sinusoidal.
    """
    m = re.search(r"GROUP=GRID_1(.*?)END_GROUP=GRID_1", text, re.S)
    if m is None:
        raise GeolocationError(path, "StructMetadata.0 defines no grid (GROUP=GRID_1)")
    g = m.group(1)
    name = (_odl(g, "GridName") or "").strip('"')
    xdim, ydim = _odl(g, "XDim"), _odl(g, "YDim")
    ul, lr = _pair(_odl(g, "UpperLeftPointMtrs")), _pair(_odl(g, "LowerRightMtrs"))
    proj = _odl(g, "Projection")
    if xdim is None or ydim is None or ul is None or lr is None:
        raise GeolocationError(path, "StructMetadata.0 lacks XDim, YDim, UpperLeftPointMtrs or LowerRightMtrs")
    if proj != "GCTP_SNSOID":
        raise GeolocationError(path, f"projection {proj!r} is not MODIS sinusoidal (GCTP_SNSOID)")
    params = re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", _odl(g, "ProjParams") or "")
    radius = float(params[0]) if params and float(params[0]) > 0 else SPHERE_RADIUS
    if abs(radius - SPHERE_RADIUS) > 1.0:
        raise GeolocationError(path, f"sinusoidal sphere radius {radius} m is not MODIS's {SPHERE_RADIUS} m")
    if not (xdim.isdigit() and ydim.isdigit()):
        raise GeolocationError(path, f"grid size XDim={xdim!r}, YDim={ydim!r} is not a pair of whole numbers")
    geom = TileGeometry(name, int(xdim), int(ydim), ul, lr, radius)
    if not (geom.pixel_size > 0 and geom.transform.e < 0):
        raise GeolocationError(path, f"grid corners {ul} / {lr} are not upper-left / lower-right")
    return geom


def core_metadata_value(text: str, name: str) -> str | None:
    """``VALUE`` of ``OBJECT = name`` in an ECS ``CoreMetadata.0`` (ODL) text, or None."""
    m = re.search(rf"OBJECT\s*=\s*{re.escape(name)}\s*\n(.*?)END_OBJECT\s*=\s*{re.escape(name)}\b", text, re.S)
    if not m:
        return None
    v = re.search(r"^\s*VALUE\s*=\s*(.+?)\s*$", m.group(1), re.M)
    return v.group(1).strip('"') if v else None


def tile_date(path: str, attributes: Mapping[str, object], spec: ProductSpec) -> dt.date:
    """Date of a tile: ``AYYYYDDD`` in the name, cross-checked with ``RANGEBEGINNINGDATE``."""
    name_date = None
    m = re.search(r"\.A(\d{4})(\d{3})\.", os.path.basename(path))
    if m:
        try:
            name_date = dt.date(int(m.group(1)), 1, 1) + dt.timedelta(int(m.group(2)) - 1)
            if name_date.year != int(m.group(1)):
                raise ValueError("day of year past the end of the year")
        except ValueError as exc:
            raise InputDateError(path, f"'A{m.group(1)}{m.group(2)}' in the name is not a date ({exc})") from exc
    meta_date = None
    core = attributes.get("CoreMetadata.0") or attributes.get("OldCoreMetadata.0")
    if isinstance(core, str):
        value = core_metadata_value(core, "RANGEBEGINNINGDATE")
        if value:
            try:
                meta_date = dt.date.fromisoformat(value) + dt.timedelta(spec.name_date_offset)
            except ValueError as exc:
                raise InputDateError(path, f"RANGEBEGINNINGDATE {value!r} is not a date") from exc
    if name_date and meta_date and name_date != meta_date:
        raise InputDateError(path, f"file name date {name_date} disagrees with the metadata date {meta_date}")
    date = name_date or meta_date
    if date is None:
        raise InputDateError(path, "no AYYYYDDD date in the name and no RANGEBEGINNINGDATE in the metadata")
    return date


def tile_corners(h: int, v: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Upper-left and lower-right corners (sinusoidal metres) of tile (h, v), published tiling."""
    x0, y0 = TILE_X0 + h * TILE_SIZE, TILE_Y0 - v * TILE_SIZE
    return (x0, y0), (x0 + TILE_SIZE, y0 - TILE_SIZE)


__all__ = ["SPHERE_RADIUS", "TILE_SIZE", "TILE_X0", "TILE_Y0", "TileGeometry", "core_metadata_value",
           "parse_struct_metadata", "tile_corners", "tile_date"]
