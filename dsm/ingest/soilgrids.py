"""ISRIC SoilGrids 2.0 sand, silt and clay (0-5 cm mean) as published -> percent on the 1 km grid.

SoilGrids 2.0 (https://files.isric.org/soilgrids/latest/data/) publishes each property as
``<property>/<property>_<depth>_<statistic>.vrt`` over 250 m GeoTIFF tiles in the Interrupted
Goode Homolosine projection (``+proj=igh``, ESRI:54052): sand, silt and clay in **g/kg**,
int16, nodata -32768. ``inputs.soil.soilgrids`` names either

- a folder (or a glob, or an fsspec URL of one): searched recursively for
  ``sand_0-5cm_mean*.tif``, ``.tiff`` or ``.vrt`` (and silt, clay), so whole VRTs with their tiles,
  ``gdal_translate -projwin`` cuts and cuts reprojected to any CRS all work; several files
  of one fraction are mosaicked; or
- the SoilGrids data URL (``http(s)://...``): the three 0-5 cm mean VRTs under it, read
  remotely by GDAL (``/vsicurl/``), of which only the blocks over the region are fetched.

Every file is read in its window over the region only (a global VRT is 160,000 x 58,000
pixels), converted to percent with SoilGrids' own scale (:data:`SCALE`; a scale the file
itself declares wins) and averaged onto the 1 km grid (:func:`soilgrids_layer`). A file whose
values are not 0-1000 g/kg (a file already in percent reads as 0-10 %: the sum check of
:func:`dsm.ingest.soil.texture_sum` refuses it; a file over 1000 g/kg is refused here) is
refused with the reason.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dsm.files import expand_each, is_local
from dsm.grid import CELL_1KM, Region
from dsm.ingest.base import ManyResult, read_many
from dsm.ingest.rasters import ValueRule, read_values, require_overlap, require_values
from dsm.ingest.reproject import Raster, warp_many_to_region
from dsm.ingest.soil import check_percent

SETTING = "inputs.soil.soilgrids"
#: g/kg -> percent.
SCALE = 0.1
NODATA = -32768.0
DEPTH, STATISTIC = "0-5cm", "mean"
RULE = ValueRule(scale=SCALE, nodata=NODATA, setting=SETTING, origin="SoilGrids g/kg -> %")
_HINT = (f"SoilGrids sand, silt and clay are 0-1000 g/kg (int16, nodata {NODATA:g}); this file is not SoilGrids "
         f"texture in g/kg: give such files as inputs.soil.sand/silt/clay with their own scale instead of {SETTING}")


def layer_name(fraction: str) -> str:
    """``sand_0-5cm_mean``: the SoilGrids layer of a fraction."""
    return f"{fraction}_{DEPTH}_{STATISTIC}"


def file_patterns(fraction: str) -> tuple[str, ...]:
    """File names searched for a fraction in a folder: the layer's GeoTIFFs and VRTs."""
    name = layer_name(fraction)
    return f"{name}*.tif", f"{name}*.tiff", f"{name}*.vrt"


def is_web(location: str) -> bool:
    """Whether ``location`` is an ``http(s)://`` URL (read by GDAL, not searched)."""
    return location.startswith(("http://", "https://"))


def read_in_place(url: str) -> bool:
    """Whether GDAL reads ``url`` itself (a local path or http(s)), so it is not copied first:
    a VRT copied alone would lose its tiles."""
    return is_local(url) or is_web(url)


def soilgrids_files(location: str, fraction: str, storage_options: Mapping[str, Any]) -> dict[str, list[str]]:
    """The files of one fraction under ``location`` (module docstring), as
    :func:`dsm.files.expand_each` gives them: ``{location: files}``."""
    if is_web(location):
        return {location: [posixpath.join(location.rstrip("/"), fraction, f"{layer_name(fraction)}.vrt")]}
    return {location: sorted({u for urls in expand_each([location], storage_options, file_patterns(fraction)).values()
                              for u in urls})}


def read_soilgrids(path: str, region: Region) -> Raster:
    """One SoilGrids texture file over ``region`` (and 1 km around), in percent.

    Raises
    ------
    InputError
        Unreadable, no or unknown CRS, not north-up, off the region (:class:`NoOverlapError`),
        all nodata there (:class:`EmptyGranuleError`), or not 0-1000 g/kg (:class:`WrongProductError`).
    """
    raster, applied = read_values(path, 1, RULE, region, CELL_1KM)
    require_values(path, raster, " over the region")
    check_percent(path, raster.data, applied, _HINT)
    require_overlap(path, raster, region)
    return raster


def soilgrids_layer(paths: Sequence[str], fraction: str, region: Region) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
    """One fraction (percent) averaged onto the region from its SoilGrids files."""
    many = read_many(paths, read_soilgrids, region=region)
    if not many.results:
        return None, many
    return {fraction: warp_many_to_region(list(many.results.values()), region, "average")}, many


__all__ = ["NODATA", "RULE", "SCALE", "file_patterns", "layer_name", "read_in_place", "read_soilgrids",
           "soilgrids_files", "soilgrids_layer"]
