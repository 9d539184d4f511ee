"""The run configuration: one YAML file -> one validated, immutable :class:`Config`.

This is the only place a configuration is parsed. Every stage receives the ``Config`` (or
the part it needs); nothing else reads YAML or environment settings.

Example
-------
.. code-block:: yaml

    region:
      bbox: [108.0, 38.0, 110.9, 40.4]    # lon_min, lat_min, lon_max, lat_max; snapped outward
      coarse: spl3smp                     # or spl3smp_e: downscale the 9 km SPL3SMP_E
    dates: {start: 2016-01-01, end: 2016-12-31}
    stores:
      cube: s3://my-bucket/dsm/cube.zarr
      truth: null
      storage_options: {endpoint_url: "http://127.0.0.1:8333"}
    cluster: {address: null, n_workers: 2, threads_per_worker: 1, device: cpu}   # device: cuda on GPU pools
    chunks: {space: 720, time: 8}
    predictors: [lst, albedo, lai, ndwi, lswi, nsdsi, ndvi, evi, dem, slope, aspect, sand, silt, clay]
    inputs:                               # for `dsm ingest` (every source optional)
      storage_options: {}                 # fsspec options for every input URL
      smap: {paths: "granules/smap/*.h5", overpass: AM, qc_mask: 1}
      mod11a1: {paths: "s3://my-bucket/MOD11A1/*.hdf", storage_options: {anon: true}}
      mcd43: {paths: "granules/mcd43/*.hdf", albedo: wsa}    # wsa | bsa | mean
      mod15a2h: {paths: "granules/mod15a2h/*.hdf"}
      mod09a1: {paths: "granules/mod09a1/*.hdf"}   # or reflectance: {b2: ..., b4: ..., b6: ..., b7: ..., scale: 0.0001}
      mod13a2: {paths: "granules/mod13a2/*.hdf", qc: {"1 km 16 days pixel reliability": [[0, 8, [0]]]}}
      dem: {paths: ["granules/dem/*.hgt"]}
      soil: {sand: soil/sand.tif, silt: soil/silt.tif, clay: soil/clay.tif, scale: 1.0}
      slope: {paths: terrain/slope.tif}   # optional, degrees: instead of the 1 km DEM's (aspect: likewise)
      geotiff: {}                         # variables no source above makes, e.g. {fapar: {paths: "appeears/*.tif", date_regex: "doy(?P<year>\\d{4})(?P<doy>\\d{3})"}}
      precip: {paths: "imerg/3B-DAY.MS.MRG.3IMERG.*.nc4", product: imerg}   # imerg | chirps | era5land
    rain: {spinup_days: 45, max_gap_days: 3, predictors: auto}   # antecedent precipitation indices
    validation:                           # for `dsm validate` / `dsm report` (all optional; twin: defaults)
      stations: [{path: ismn/Data_separate_files.zip}, {path: my_sites.csv, format: csv, network: MINE,
                  columns: {station: site_id, value: vwc_5cm}}]   # dsm's column name -> yours
      max_depth: 0.05                     # surface layer: sensor bottom <= 5 cm
      products: [{name: ERA5-Land, path: era5_swvl1.nc, variable: swvl1, crs: "EPSG:4326"}]
      bootstrap: {n_resamples: 1000, confidence: 0.95, seed: 0}
      box: [108.5, 38.5, 109.5, 39.5]     # regional subset view

Relative local paths are taken relative to the YAML file's folder. Credentials belong in the
environment (``AWS_ACCESS_KEY_ID`` ...), not in the file, though ``storage_options`` accepts
any fsspec option.
"""

from __future__ import annotations

from dsm.config.domain import (
    COARSE_PRODUCTS,
    PAPER_PREDICTORS,
    ChunksConfig,
    DatesConfig,
    RainConfig,
    RegionConfig,
    TwinConfig,
)
from dsm.config.inputs import (
    AlbedoInput,
    Band,
    GeotiffSeriesInput,
    InputsConfig,
    InputSource,
    ModisInput,
    PrecipInput,
    PrecipProduct,
    RasterInput,
    ReadMode,
    ReflectanceInput,
    SmapInput,
    SoilInput,
    ValueSettings,
)
from dsm.config.loading import dump, from_dict, load
from dsm.config.output import OutputConfig
from dsm.config.root import Config
from dsm.config.runtime import STAGES, ClusterConfig, RunConfig, Stage, StoresConfig
from dsm.config.training import (
    DEFAULT_FUSION_GRID,
    DEFAULT_GRIDS,
    DEFAULT_POOLED_PARAMS,
    METHODS,
    MODEL_NAMES,
    FusionConfig,
    Method,
    TrainingConfig,
)
from dsm.config.validation import (
    BootstrapConfig,
    GriddedProductConfig,
    StationSourceConfig,
    ValidationConfig,
)
from dsm.errors import ConfigError

__all__ = [
    "COARSE_PRODUCTS",
    "DEFAULT_FUSION_GRID",
    "DEFAULT_GRIDS",
    "DEFAULT_POOLED_PARAMS",
    "METHODS",
    "MODEL_NAMES",
    "PAPER_PREDICTORS",
    "STAGES",
    "AlbedoInput",
    "Band",
    "BootstrapConfig",
    "ChunksConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DatesConfig",
    "FusionConfig",
    "GeotiffSeriesInput",
    "GriddedProductConfig",
    "InputSource",
    "InputsConfig",
    "Method",
    "ModisInput",
    "OutputConfig",
    "PrecipInput",
    "PrecipProduct",
    "RainConfig",
    "RasterInput",
    "ReadMode",
    "ReflectanceInput",
    "RegionConfig",
    "RunConfig",
    "SmapInput",
    "SoilInput",
    "Stage",
    "StationSourceConfig",
    "StoresConfig",
    "TrainingConfig",
    "TwinConfig",
    "ValidationConfig",
    "ValueSettings",
    "dump",
    "from_dict",
    "load",
]
