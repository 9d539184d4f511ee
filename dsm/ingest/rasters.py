"""GDAL-readable rasters (GeoTIFF...) in any CRS, and per-date GeoTIFF series on the 1 km grid.

A raster's nodata value (and NaN) become NaN; band ``scale``/``offset`` metadata, when set,
are applied (value = raw * scale + offset). A raster without a CRS, or with one that cannot
be transformed to EPSG:6933, raises :class:`GeolocationError`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence

import numpy as np
import xarray as xr

from dsm.grid import Region
from dsm.ingest.base import (
    DEFAULT_DATE_REGEX,
    EmptyGranuleError,
    GeolocationError,
    ManyResult,
    NoOverlapError,
    PathLike,
    UnreadableFileError,
    date_from_name,
    read_many,
)
from dsm.ingest.reproject import EASE_CRS, Raster, crop_to_region, fine_dataarray, warp_many_to_region

log = logging.getLogger(__name__)


def check_crs(path: str, crs) -> None:
    """Raise ``GeolocationError`` unless ``crs`` is set and transformable to EASE-Grid 2.0."""
    from pyproj import CRS as PCRS
    from pyproj import Transformer

    if crs is None:
        raise GeolocationError(path, "the raster has no coordinate reference system")
    try:
        pcrs = PCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
        if pcrs.is_engineering or not (pcrs.is_geographic or pcrs.is_projected):
            raise ValueError(f"{pcrs.name!r} is not a geographic or projected CRS")
        Transformer.from_crs(pcrs, EASE_CRS.to_wkt(), always_xy=True)
    except Exception as exc:  # noqa: BLE001 - pyproj raises several kinds
        raise GeolocationError(path, f"unknown or unusable coordinate reference system ({exc})") from exc


def read_raster(path: PathLike, band: int = 1) -> Raster:
    """One band of a GDAL-readable raster as float32 with NaN for nodata.

    Raises
    ------
    UnreadableFileError, GeolocationError
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UnreadableFileError(path, "file does not exist")
    try:
        with rasterio.open(path) as src:
            check_crs(path, src.crs)
            if not 1 <= band <= src.count:
                raise UnreadableFileError(path, f"band {band} does not exist (the file has {src.count})")
            if src.transform.b != 0 or src.transform.d != 0:
                raise GeolocationError(path, "rotated rasters are not supported")
            raw = src.read(band)
            data = raw.astype(np.float32)
            if src.nodata is not None and not np.isnan(src.nodata):
                data[raw == src.nodata] = np.nan
            scale, offset = src.scales[band - 1], src.offsets[band - 1]
            if scale != 1 or offset != 0:
                data = data * np.float32(scale) + np.float32(offset)
            return Raster(data, src.transform, src.crs)
    except RasterioIOError as exc:
        raise UnreadableFileError(path, f"not a readable raster ({exc})") from exc


def geotiff_series_to_region(
    paths: Sequence[PathLike],
    region: Region,
    name: str,
    *,
    date_regex: str = DEFAULT_DATE_REGEX,
    resampling: str = "average",
    band: int = 1,
    attrs: dict | None = None,
) -> tuple[xr.DataArray, ManyResult]:
    """Per-date rasters (any CRS, several tiles per date allowed) on a region's 1 km grid.

    Parameters
    ----------
    paths
        Raster files; each file's date comes from its name through ``date_regex``
        (:func:`dsm.ingest.base.date_from_name`).
    region
        Destination region.
    name
        Variable name of the result.
    resampling
        ``"average"`` for continuous fields coarser than 1 km, ``"nearest"`` for QC-masked 1 km
        fields.
    attrs
        CF attributes (units, long_name...) for the result.

    Returns
    -------
    (xarray.DataArray, ManyResult)
        (time, y, x) float32 sorted by date, and the per-file report (files without a date
        or outside the region are reported, not raised).
    """

    def _one(path: str) -> tuple[dt.date, Raster]:
        date = date_from_name(path, date_regex)
        raster = read_raster(path, band)
        if crop_to_region(raster, region, margin=1) is None:
            raise NoOverlapError(path, f"does not cover region {region.to_dict()}")
        if np.isnan(raster.data).all():
            raise EmptyGranuleError(path, "every pixel is nodata")
        return date, raster

    many = read_many(paths, _one)
    by_date: dict[dt.date, list[Raster]] = {}
    for date, raster in many.results.values():
        by_date.setdefault(date, []).append(raster)
    dates = sorted(by_date)
    ny, nx = region.fine_shape
    stack = np.full((len(dates), ny, nx), np.nan, dtype=np.float32)
    for i, d in enumerate(dates):
        stack[i] = warp_many_to_region(by_date[d], region, resampling)
    template = fine_dataarray(stack[0] if dates else np.full((ny, nx), np.nan, np.float32), region, name, attrs)
    da = xr.DataArray(
        stack,
        dims=("time", "y", "x"),
        coords={**template.coords, "time": np.array(dates, dtype="datetime64[ns]")},
        name=name,
        attrs={**template.attrs, "resampling_to_1km": resampling},
    )
    return da, many
