"""SoilGrids 2.0 texture files as ISRIC publishes them, over a region (for tests and examples).

:func:`write_soilgrids` lays out ``<root>/data/<fraction>/<fraction>_0-5cm_mean.vrt`` over two
GeoTIFF tiles per fraction (``<fraction>_0-5cm_mean/tileSG-.../tileSG-..._1-1.tif``), on the
SoilGrids 250 m grid in the Interrupted Goode Homolosine (ESRI:54052), int16 g/kg with nodata
-32768, like https://files.isric.org/soilgrids/latest/data/. :func:`write_cut` writes one
GeoTIFF, as ``gdal_translate -projwin`` cuts it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from dsm.grid import Region

__all__ = ["IGH", "NODATA", "grid_window", "texture", "write_cut", "write_soilgrids"]

IGH = CRS.from_user_input("ESRI:54052")
X0, Y0, RES = -19949000.0, 8361000.0, 250.0  # the SoilGrids 2.0 grid
NODATA = -32768


def grid_window(region: Region, margin: int = 20) -> tuple[int, int, int, int]:
    """Row, column, rows and columns of the SoilGrids grid over ``region`` plus ``margin`` pixels."""
    from rasterio.warp import transform_bounds

    from dsm.ingest.reproject import EASE_CRS

    left, bottom, right, top = transform_bounds(EASE_CRS, IGH, *region.bounds, densify_pts=51)
    c0, r0 = math.floor((left - X0) / RES) - margin, math.floor((Y0 - top) / RES) - margin
    return r0, c0, math.ceil((Y0 - bottom) / RES) + margin - r0, math.ceil((right - X0) / RES) + margin - c0


def texture(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Sand, silt, clay in g/kg adding up to 1000, sand varying west to east (200-599), silt
    400; a 4 x 4 nodata hole in every fraction."""
    cols = np.arange(shape[1])
    sand = np.broadcast_to(200 + (cols * 7) % 400, shape).astype(np.int16)
    silt = np.full(shape, 400, np.int16)
    out = {"sand": sand.copy(), "silt": silt, "clay": (1000 - sand - silt).astype(np.int16)}
    for a in out.values():
        a[5:9, 5:9] = NODATA
    return out


def write_cut(path: str | Path, array: np.ndarray, row: int, col: int, crs: CRS = IGH) -> Path:
    """One int16 GeoTIFF on the SoilGrids grid, its upper-left pixel at (``row``, ``col``)."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": array.shape[1], "height": array.shape[0], "count": 1, "dtype": "int16",
               "crs": crs, "transform": Affine(RES, 0, X0 + col * RES, 0, -RES, Y0 - row * RES), "nodata": NODATA}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(np.int16), 1)
    return path


def _vrt(path: Path, tiles: list[tuple[str, int, tuple[int, int]]], row: int, col: int, shape: tuple[int, int]) -> Path:
    """A VRT over tiles side by side (relative names, column offsets in the VRT's pixels)."""
    sources = "".join(
        f'<SimpleSource><SourceFilename relativeToVRT="1">{name}</SourceFilename><SourceBand>1</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{s[1]}" ySize="{s[0]}"/><DstRect xOff="{c}" yOff="0" xSize="{s[1]}" '
        f'ySize="{s[0]}"/></SimpleSource>' for name, c, s in tiles)
    path.write_text(
        f'<VRTDataset rasterXSize="{shape[1]}" rasterYSize="{shape[0]}"><SRS>{IGH.to_wkt()}</SRS>'
        f"<GeoTransform>{X0 + col * RES}, {RES}, 0, {Y0 - row * RES}, 0, {-RES}</GeoTransform>"
        f'<VRTRasterBand dataType="Int16" band="1"><NoDataValue>{NODATA}</NoDataValue>{sources}</VRTRasterBand>'
        "</VRTDataset>")
    return path


def write_soilgrids(root: str | Path, region: Region, fractions: Mapping[str, np.ndarray] | None = None) -> Path:
    """``root/data/<fraction>/<fraction>_0-5cm_mean.vrt`` over two tiles each (module docstring);
    ``fractions`` (g/kg on :func:`grid_window`'s shape) default to :func:`texture`. Returns ``root/data``."""
    r0, c0, nr, nc = grid_window(region)
    fractions = fractions if fractions is not None else texture((nr, nc))
    half = nc // 2
    for f, a in fractions.items():
        folder = Path(root) / "data" / f
        tiles = []
        for k, (lo, hi) in enumerate(((0, half), (half, nc))):
            name = f"{f}_0-5cm_mean/tileSG-001-00{k}/tileSG-001-00{k}_1-1.tif"
            write_cut(folder / name, np.ascontiguousarray(a[:, lo:hi]), r0, c0 + lo)
            tiles.append((name, lo, (nr, hi - lo)))
        _vrt(folder / f"{f}_0-5cm_mean.vrt", tiles, r0, c0, (nr, nc))
    return Path(root) / "data"
