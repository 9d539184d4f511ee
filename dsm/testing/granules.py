"""Writers of input granules that follow the real product layouts, for tests and users.

* :func:`write_spl3smp` — SMAP L3 radiometer 36 km (SPL3SMP, HDF5) with the variables the
  reader uses, names, dtypes, ``_FillValue``, ``valid_min``/``valid_max``, ``units`` and
  ``long_name`` exactly as in the real version 9 schema (``SC_SPL3SMP_009.dmr``), plus the
  ``/Metadata`` attributes that carry the date and product name; :func:`write_spl3smp_e` the
  same on the 9 km grid (SPL3SMP_E); :func:`write_smap_subset` a Harmony/OPeNDAP spatial
  subset of either, laid out as the real ``hoss_shape_file_*_reference.nc4`` (``x``/``y``
  dimension scales, the ``EASE2_global_projection_<N>km`` grid-mapping variable, -9999 fills,
  the request in ``history``).
* :func:`write_modis_tile` — MODIS HDF4-EOS tiles (SD interface) with a ``StructMetadata.0``
  and ``CoreMetadata.0`` in the real ODL layout; SDS attributes of MOD11A1, MOD13A2 and MOD09A1
  copied from real collection 6/6.1 files, those of MOD15A2H and MCD43A3 from the published
  collection 6.1 layouts (no real sample could be had). The HDF-EOS Vgroup structure is not
  reproduced (readers here use the SD interface plus ``StructMetadata.0``; GDAL has no HDF4).
* :func:`write_srtm_hgt` — SRTM ``.hgt`` tiles; :func:`write_geotiff` — any GeoTIFF.

The SMAP writers live in :mod:`dsm.testing.smap_granules`, the MODIS ones in
:mod:`dsm.testing.modis_tiles`; this module writes the DEM and generic rasters and gathers
every writer under one import.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dsm.testing.modis_tiles import (
    LAYOUTS,
    TILE_SIZE,
    TILE_X0,
    TILE_Y0,
    ModisLayout,
    SdsLayout,
    modis_filename,
    pack,
    write_modis_tile,
)
from dsm.testing.smap_granules import (
    AM_GROUP,
    J2000_UTC,
    PM_GROUP,
    SMAP_PRODUCTS,
    SmapPass,
    SmapProduct,
    ease36_latlon,
    smap_grid_latlon,
    smap_schema,
    spl3smp_filename,
    write_smap_subset,
    write_spl3smp,
    write_spl3smp_e,
)

PathLike = str | os.PathLike


def srtm_name(lat: int, lon: int) -> str:
    """SRTM tile name of the tile whose south-west corner is (lat, lon), e.g. ``N44W072.hgt``."""
    return f"{'N' if lat >= 0 else 'S'}{abs(lat):02d}{'E' if lon >= 0 else 'W'}{abs(lon):03d}.hgt"


def write_srtm_hgt(folder: PathLike, lat: int, lon: int, elevation: np.ndarray) -> Path:
    """Write an SRTM ``.hgt`` tile: big-endian int16, 1201 or 3601 square, void -32768 (NaN)."""
    z = np.asarray(elevation)
    if z.shape not in ((1201, 1201), (3601, 3601)):
        raise ValueError(f"an .hgt tile is 1201 x 1201 or 3601 x 3601, got {z.shape}")
    if np.issubdtype(z.dtype, np.floating):
        z = np.where(np.isnan(z), -32768, np.round(np.nan_to_num(z)))
    path = Path(folder) / srtm_name(lat, lon)
    z.astype(">i2").tofile(path)
    return path


def write_geotiff(path: PathLike, array: np.ndarray, transform, crs, nodata: float | None = None) -> Path:
    """Write a one-band GeoTIFF (any CRS rasterio accepts, or None for no CRS)."""
    import rasterio

    a = np.asarray(array)
    profile = {
        "driver": "GTiff", "width": a.shape[1], "height": a.shape[0], "count": 1, "dtype": a.dtype.name,
        "transform": transform, "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(a, 1)
    return Path(path)


__all__ = [
    # SMAP (dsm.testing.smap_granules)
    "AM_GROUP", "J2000_UTC", "PM_GROUP", "SMAP_PRODUCTS", "SmapPass", "SmapProduct", "ease36_latlon",
    "smap_grid_latlon", "smap_schema", "spl3smp_filename", "write_smap_subset", "write_spl3smp", "write_spl3smp_e",
    # MODIS (dsm.testing.modis_tiles)
    "LAYOUTS", "TILE_SIZE", "TILE_X0", "TILE_Y0", "ModisLayout", "SdsLayout", "modis_filename", "pack",
    "write_modis_tile",
    # DEM and generic rasters
    "PathLike", "srtm_name", "write_geotiff", "write_srtm_hgt",
]
