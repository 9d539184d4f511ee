"""Readers of the real inputs, returning xarray objects on a Region's EASE-Grid 2.0 grids.

========================  ==========================================================
module                    reads
========================  ==========================================================
:mod:`.smap`              SMAP SPL3SMP (36 km, cy, cx) and SPL3SMP_E (9 km) soil moisture,
                          whole granules or Harmony/OPeNDAP subsets
:mod:`.easegrid`          placing SMAP arrays and subsets on the EASE-Grid 2.0 grids
:mod:`.modis`             MODIS HDF4-EOS tiles -> LST, NDVI/EVI, NDWI/LSWI/NSDSI,
                          LAI/FPAR, albedo on the native grid or the 1 km grid
:mod:`.terrain`           SRTM .hgt / GeoTIFF DEMs -> dem, slope, aspect (1 km); given
                          slope/aspect rasters -> 1 km
:mod:`.soil`              sand/silt/clay rasters (percent) -> 1 km; their sum checked
:mod:`.soilgrids`         SoilGrids 2.0 as published (g/kg, Homolosine, VRT or URL) -> 1 km
:mod:`.reflectance`       MOD09A1 band GeoTIFFs (MODIStsp, AppEEARS) -> NDWI/LSWI/NSDSI
:mod:`.rasters`           any GDAL raster; per-date GeoTIFF series -> (time, y, x)
:mod:`.precip`            IMERG, CHIRPS, ERA5-Land daily precipitation (time, lat, lon)
:mod:`.remap`             lon/lat precipitation -> 1 km (conservative or bilinear)
:mod:`.reproject`         warping and mosaicking onto a Region, grid coordinates
:mod:`.base`              InputError subclasses, file-name dates, ``read_many``
:mod:`dsm.stages.ingest`  ``dsm ingest`` on the client: the cube, the tasks on the cluster
:mod:`.plan`              the ingest's plan: each source's files dated, cut into one-writer tasks
:mod:`.source`            the Source protocol; the sources whose files are dated by name
:mod:`.sources`           one class per product family; the table of the configured sources
:mod:`.source_stac`       STAC assets; :mod:`.source_precip`: precipitation;
                          :mod:`.source_static`: DEM, slope, aspect, soil, land mask
:mod:`.work`              plan, tasks and groups: the units of work
:mod:`.tasks`             one ingest task on a worker: its source found, read, written
:mod:`.write`             one task's block merged and written once
:mod:`.report`            the ingest report: assembled, counted, printed, where it lives
:mod:`.inputs`            files, globs and folders of an input; inputs that gave nothing
:mod:`.static`            DEM, soil and land-mask layers; where the land mask comes from
:mod:`.duplicates`        duplicate granules: the newest intact one wins
========================  ==========================================================
"""

from dsm.ingest.base import (
    EmptyGranuleError,
    FileReport,
    GeolocationError,
    IngestInputError,
    InputDateError,
    ManyResult,
    MissingVariableError,
    NoOverlapError,
    UnreadableFileError,
    WrongProductError,
    date_from_name,
    read_many,
)
from dsm.ingest.modis import modis_to_region, read_modis_tile
from dsm.ingest.modis_products import PRODUCTS, QCRule
from dsm.ingest.precip import check_covers, read_chirps, read_era5land, read_imerg, read_precip
from dsm.ingest.rasters import geotiff_series_to_region, read_raster
from dsm.ingest.smap import read_spl3smp, read_spl3smp_e
from dsm.ingest.soil import soil_to_region
from dsm.ingest.terrain import dem_to_region, read_dem, read_hgt
from dsm.remap import remap_to_region

__all__ = [
    "PRODUCTS",
    "EmptyGranuleError",
    "FileReport",
    "GeolocationError",
    "IngestInputError",
    "InputDateError",
    "ManyResult",
    "MissingVariableError",
    "NoOverlapError",
    "QCRule",
    "UnreadableFileError",
    "WrongProductError",
    "check_covers",
    "date_from_name",
    "dem_to_region",
    "geotiff_series_to_region",
    "modis_to_region",
    "read_chirps",
    "read_dem",
    "read_era5land",
    "read_hgt",
    "read_imerg",
    "read_many",
    "read_modis_tile",
    "read_precip",
    "read_raster",
    "read_spl3smp",
    "read_spl3smp_e",
    "remap_to_region",
    "soil_to_region",
]
