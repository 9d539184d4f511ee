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

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dsm.errors import ConfigError, GridError
from dsm.grid import FINE_PER_COARSE, Region
from dsm.periods import check_dates

PAPER_PREDICTORS: tuple[str, ...] = (
    "lst", "albedo", "lai", "ndwi", "lswi", "nsdsi", "ndvi", "evi",
    "dem", "slope", "aspect", "sand", "silt", "clay",
)  # fmt: skip


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _one_or_many(schema: dict[str, Any]) -> None:
    """JSON schema of a list field that also takes one string (``paths: "a/*.hdf"``)."""
    items = schema.pop("items", {"type": "string"})
    schema.pop("type", None)
    schema["anyOf"] = [items, {"type": "array", "items": items}]


def _one_many_or_none(schema: dict[str, Any]) -> None:
    """JSON schema of an optional list field that also takes one string (``state: "a/*.tif"``)."""
    schema["anyOf"] = [{"type": "string"}, *schema.get("anyOf", [])]


COARSE_PRODUCTS: dict[str, int] = {"spl3smp": 36, "spl3smp_e": 9}
"""The SMAP products a region's coarse grid may follow, and their cell size in km."""


class RegionConfig(_Frozen):
    """Either a lon/lat ``bbox`` snapped outward to whole 36 km cells, or explicit ``cells``;
    ``coarse``: the SMAP product (and so the coarse grid) the 1 km maps are downscaled from."""

    bbox: tuple[float, float, float, float] | None = None
    cells: tuple[int, int, int, int] | None = Field(
        default=None, description="row0, col0, nrows, ncols on the global 36 km grid"
    )
    coarse: Literal["spl3smp", "spl3smp_e"] = Field(
        default="spl3smp", description="SMAP product downscaled: spl3smp (36 km, SPL3SMP) or spl3smp_e (9 km, "
                                       "SPL3SMP_E: samples, training, fusion and the consistency check at 9 km)")

    @model_validator(mode="after")
    def _one_of(self) -> RegionConfig:
        if (self.bbox is None) == (self.cells is None):
            raise ValueError("give exactly one of 'bbox' or 'cells'")
        try:
            self.to_region()
        except GridError as exc:
            raise ValueError(str(exc)) from None
        return self

    def to_region(self) -> Region:
        """The grid region this describes."""
        km = COARSE_PRODUCTS[self.coarse]
        if self.bbox is not None:
            return dataclasses.replace(Region.from_bbox(*self.bbox), coarse_km=km)
        assert self.cells is not None
        return Region(*self.cells, coarse_km=km)


class DatesConfig(_Frozen):
    """Inclusive date range."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> DatesConfig:
        check_dates(self.start, self.end)
        return self


class StoresConfig(_Frozen):
    """Locations (local paths or fsspec URLs) of the stores, and fsspec options for them."""

    cube: str
    truth: str | None = None
    models: str | None = None
    output: str | None = None
    cog: str | None = None
    stations: str | None = None
    stac: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)


class ClusterConfig(_Frozen):
    """Where the work runs: an existing scheduler ``address`` or a new LocalCluster."""

    address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "auto"
    dashboard_address: str | None = ":0"
    device: Literal["cpu", "cuda"] = Field(
        default="cpu",
        description="XGBoost device: 'cuda' on GPU node pools (workers with nvidia.com/gpu and the "
        "xgboost CUDA build, see deploy/README.md); 'cpu' everywhere else",
    )

    @field_validator("address")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and "://" not in v:
            raise ValueError(f"scheduler address {v!r} must look like tcp://host:port")
        return v


class ChunksConfig(_Frozen):
    """Chunk sizes of the cube: ``space`` (1 km pixels, a multiple of 36) and ``time`` (days)."""

    space: int = 720
    time: int = Field(default=8, ge=1)

    @field_validator("space")
    @classmethod
    def _multiple_of_36(cls, v: int) -> int:
        if v <= 0 or v % FINE_PER_COARSE:
            raise ValueError(
                f"chunks.space = {v} is not a positive multiple of {FINE_PER_COARSE}: a 36 km "
                "cell must never straddle two chunks"
            )
        return v


class TwinConfig(_Frozen):
    """The embedded synthetic twin: built over the configured region and dates."""

    seed: int = 42
    n_insitu: int = Field(default=12, ge=0)
    n_weather: int = Field(default=6, ge=0)


MODEL_NAMES: tuple[str, ...] = ("mlr", "svr", "ann", "rf", "xgb")
"""The five regressors of the method, in the paper's order (see :mod:`dsm.models.estimators`)."""

DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    # plain parameter names of the final estimator; scaling steps are not tuned
    "mlr": {"fit_intercept": [True]},
    "svr": {"C": [0.3, 1.0, 3.0], "gamma": ["scale"], "epsilon": [0.005, 0.02]},
    "ann": {"hidden_layer_sizes": [[32], [64, 32]], "alpha": [1e-4, 1e-2]},
    "rf": {"n_estimators": [200], "max_depth": [8, 12], "min_samples_leaf": [1, 5]},
    "xgb": {"n_estimators": [200, 400], "max_depth": [4, 6], "learning_rate": [0.05]},
}
DEFAULT_POOLED_PARAMS: dict[str, Any] = {"n_estimators": 400, "max_depth": 6, "learning_rate": 0.05}
DEFAULT_FUSION_GRID: dict[str, list[Any]] = {
    # regularised boosting; the number of rounds is chosen by the cross-validation (early stopping)
    "max_depth": [3, 5],
    "min_child_weight": [5, 20],
    "subsample": [0.8],
    "colsample_bytree": [0.8],
    "learning_rate": [0.05],
    "reg_lambda": [1.0, 10.0],
}
Method = Literal["fusion", "rao2022"]
METHODS: tuple[Method, ...] = get_args(Method)


class FusionConfig(_Frozen):
    """The default method (``training.method: fusion``): pooled model, cross-validation, fusion.

    See :mod:`dsm.models.fusion_train` (training) and :mod:`dsm.fusion` (the error model and
    the fusion of each cell mean with the day's SMAP).
    """

    grid: dict[str, list[Any]] = Field(default_factory=lambda: dict(DEFAULT_FUSION_GRID),
                                       description="XGBoost hyperparameters searched by cross-validation")
    max_rounds: int = Field(default=600, ge=10, description="most boosting rounds; the CV picks how many")
    cv_folds: int = Field(default=4, ge=2)
    block_days: int = Field(default=16, ge=1, description="days per cross-validation block")
    block_cells: int = Field(default=2, ge=1, description="36 km cells per side of a cross-validation block")
    smap_error_sd: float = Field(default=0.04, gt=0.0, le=0.2,
                                 description="SMAP random error (m3/m3) used when too few triplets estimate it")
    min_triplets: int = Field(default=100, ge=3, description="fewest SMAP triplets to estimate SMAP's error")
    decay_days: float | None = Field(default=None, gt=0.0, description="e-folding of carried increments; "
                                     "null: estimated from the data")
    max_carry_days: int = Field(default=10, ge=0, description="days an increment is carried without SMAP")
    smooth: Literal["none", "increments", "cell_means"] = Field(
        default="cell_means", description="area-to-point smoothing across neighbouring cells, cell means "
        "preserved: of the whole fused cell means (default: no 36 km block edges in the maps), of the fusion "
        "increments only, or none")
    anomaly_gain: float = Field(default=1.0, ge=0.0, le=2.0, description="k in B + k (f - mean_cell f), B the "
                                "(smoothed) fused cell mean; used unless calibrated from stations")
    gain_from_stations: bool = Field(
        default=True, description="calibrate k at prediction from the in situ stations (validation.stations, or "
        "the twin's) when at least min_gain_stations lie in the region: the slope of (station - B) on the "
        "anomaly at the station pixels, used only where it lowers the leave-one-station-out error "
        "(dsm.calibration); recorded in the products store (attribute anomaly_gain)")
    min_gain_stations: int = Field(default=8, ge=3, description="fewest stations (each >= 10 days) to calibrate k")
    anomaly_error_sd: float = Field(
        default=0.03, gt=0.0, le=0.2,
        description="error sd (m3/m3) of the 1 km departure from the cell mean, for sm_unc: nothing at 36 km "
        "observes it, so it is a prior (0.03: the typical spatial sd of surface soil moisture within "
        "~50 km, Famiglietti et al. 2008); check its coverage at stations")
    pixels_per_cell: int = Field(default=64, ge=4, description="disaggregation: 1 km pixels sampled per cell-day")
    anomaly_window_days: int = Field(
        default=1, ge=1, le=61, description="centred running mean of the 1 km within-cell anomaly over this "
        "many days (odd; 1: none): smoother day-to-day detail, for users who prefer temporal to spatial detail")

    @field_validator("anomaly_window_days")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"training.fusion.anomaly_window_days must be odd (centred on the day), got {v}")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if "n_estimators" in v:
            raise ValueError("training.fusion.grid: the number of rounds is chosen by cross-validation; "
                             "set training.fusion.max_rounds instead of n_estimators")
        empty = [k for k, values in v.items() if not values]
        if empty:
            raise ValueError(f"training.fusion.grid has no values for {empty}")
        return {**DEFAULT_FUSION_GRID, **v}


class TrainingConfig(_Frozen):
    """Training: the method, and for ``rao2022`` the per-period samples, split, models, grids,
    selection and fallback.

    ``method: fusion`` (default) trains one pooled, cross-validated XGBoost with reduced
    companions and the fusion error model (``fusion:``); ``method: rao2022`` is the paper's
    per-period method exactly. ``grids`` maps a model name to ``{parameter: [values, ...]}`` of its final estimator
    (no pipeline prefixes); a model given here replaces that model's default grid, the
    others keep theirs (:data:`DEFAULT_GRIDS`).
    """

    models: tuple[str, ...] = MODEL_NAMES
    grids: dict[str, dict[str, list[Any]]] = Field(default_factory=lambda: dict(DEFAULT_GRIDS))
    cv_folds: int = Field(default=3, ge=2)
    min_samples: int = Field(default=100, ge=1, description="fewest samples (SMAP cell-days with valid "
                             "predictors) to train a model: the fusion model, or a period's models (rao2022)")
    aggregation: Literal["mean", "nearest"] = "mean"
    min_valid_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    seed: int = 0
    ks_alpha: float = Field(default=0.05, ge=0.0, le=1.0)
    ks_attempts: int = Field(default=20, ge=1)
    spatial_block: int | None = Field(default=2, ge=1, description="SMAP cells per block side; null: no spatial split")
    method: Method = "fusion"
    disaggregation: bool = Field(default=False, description="fusion: average with a model fitted on 1 km "
                                 "pixels whose loss is on their 36 km mean against SMAP")
    fusion: FusionConfig = FusionConfig()
    pooled: bool = Field(default=True, description="rao2022: also train the pooled comparison model")
    pooled_params: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_POOLED_PARAMS))
    concurrent_periods: int = Field(default=2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "predict_with" in data:
            raise ValueError("training.predict_with was removed: the pooled model predicts with "
                             "training.method: fusion (the default), the per-period models with method: rao2022")
        return data

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in v if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown model name(s) {unknown}; known: {list(MODEL_NAMES)}")
        if not v or len(set(v)) != len(v):
            raise ValueError("models must be a non-empty list without repeats")
        return v

    @field_validator("grids")
    @classmethod
    def _grids(cls, v: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, list[Any]]]:
        unknown = [m for m in v if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"grid(s) for unknown model name(s) {unknown}; known: {list(MODEL_NAMES)}")
        for model, grid in v.items():
            if not grid:
                raise ValueError(f"the grid of model '{model}' is empty: give at least one parameter")
            empty = [k for k, values in grid.items() if not values]
            if empty:
                raise ValueError(f"the grid of model '{model}' has no values for {empty}")
        return {**DEFAULT_GRIDS, **v}


class InputSource(_Frozen):
    """Files of one input: files, globs or folders (a folder is searched recursively for the
    input's own files, e.g. ``SMAP_L3_SM_P_*.h5``), local or fsspec URLs (``s3://b/MOD11A1/``).
    An input that matches no file, or none of whose files is usable, fails ``dsm ingest``.

    ``storage_options`` are fsspec options for these URLs, merged over ``inputs.storage_options``.
    """

    paths: tuple[str, ...] = Field(
        description="one file, glob or fsspec URL glob, or a list of them (e.g. \"MOD11A1/*.hdf\", "
        "\"s3://bucket/SPL3SMP/*.h5\"); relative paths are relative to the YAML file", json_schema_extra=_one_or_many)
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for these URLs, merged over inputs.storage_options")

    @field_validator("paths", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v


class SmapInput(InputSource):
    """SPL3SMP granules: overpass and ``retrieval_qual_flag`` bits that must be clear."""

    overpass: Literal["AM", "PM"] = Field(
        default="AM", description="SPL3SMP retrievals of the AM (descending, 6:00 local) or PM (ascending) overpass")
    qc_mask: int = Field(default=1, ge=0, description="bits of retrieval_qual_flag that must be clear (1: "
                         "'retrieval recommended' only; 0: keep every retrieval)")


class ModisInput(InputSource):
    """Tiles of one MODIS product; ``qc`` replaces the reader's QC rules per QC SDS.

    ``qc: {"QC_Day": [[0, 2, [0, 1]]]}`` keeps pixels whose bits 0-1 are 0 or 1 (see
    :class:`dsm.ingest.modis.QCRule`: start bit, number of bits, allowed values).
    """

    qc: dict[str, tuple[tuple[int, int, tuple[int, ...]], ...]] | None = Field(
        default=None, description="QC SDS name -> rules [start bit, number of bits, allowed values]; "
        "null: the reader's defaults")


class AlbedoInput(ModisInput):
    """MCD43A3 tiles; ``albedo`` picks white-sky, black-sky or their mean for the cube."""

    albedo: Literal["wsa", "bsa", "mean"] = Field(
        default="wsa", description="shortwave white-sky (wsa), black-sky (bsa) albedo or their mean")


class ValueSettings(_Frozen):
    """``scale``, ``offset`` and ``nodata`` of rasters whose files may lack them (GDAL band metadata)."""

    scale: float | None = Field(default=None, description="None: the file's scale, else 1")
    offset: float | None = Field(default=None, description="None: the file's offset, else 0")
    nodata: float | None = Field(default=None, description="None: the file's nodata value, else none")


class RasterInput(ValueSettings, InputSource):
    """Rasters (GeoTIFF or any GDAL format): ``value = raw * scale + offset`` where raw is not ``nodata``.

    The file's own scale, offset and nodata (GDAL band metadata) win; these apply to files
    without them (None: scale 1, offset 0, no nodata value).
    """


class SoilInput(_Frozen):
    """Sand, silt and clay: one raster per fraction (file, glob or folder; path or URL), in percent
    after ``scale``/``offset`` (the file's own scale and offset win, as in :class:`RasterInput`);
    or ``soilgrids``, ISRIC SoilGrids 2.0 as published (g/kg, nodata -32768, any CRS including its
    Homolosine), found by name in a folder or under the SoilGrids URL (:mod:`dsm.ingest.soilgrids`).
    """

    sand: str | None = Field(default=None, description="sand raster(s): a file, glob or folder, path or URL")
    silt: str | None = Field(default=None, description="silt raster(s), as sand")
    clay: str | None = Field(default=None, description="clay raster(s), as sand")
    soilgrids: str | None = Field(
        default=None, description="instead of sand/silt/clay: a folder (searched for sand_0-5cm_mean*.tif/.vrt, "
        "silt_..., clay_..., cut or whole) or the SoilGrids data URL "
        "(https://files.isric.org/soilgrids/latest/data/: the 0-5 cm mean VRTs, of which only the region's "
        "blocks are read); g/kg -> % (scale 0.1), nodata -32768, averaged to 1 km")
    scale: float | None = Field(default=None, description="to percent where the file has no scale (0.1 for SoilGrids g/kg); "
                                 "null: the file's scale, else 1")
    offset: float | None = None
    nodata: float | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> SoilInput:
        if self.soilgrids is None:
            return self
        given = [k for k in ("sand", "silt", "clay", "scale", "offset", "nodata") if getattr(self, k) is not None]
        if given:
            raise ValueError(f"soilgrids reads sand, silt and clay in SoilGrids' own units (g/kg, scale 0.1, nodata "
                             f"-32768): remove {', '.join(given)}, or remove soilgrids and give each fraction's raster")
        return self


Band = Literal["b2", "b4", "b6", "b7"]


class ReflectanceInput(ValueSettings):
    """MOD09A1 surface reflectance bands as per-date rasters, as MODIStsp or AppEEARS deliver them
    (``MOD09A1_sur_refl_b02_2021_193.tif``, ``MOD09A1.061_sur_refl_b02_doy2021193_aid0001.tif``),
    from which NDWI, LSWI and NSDSI are computed exactly as from the MOD09A1 tiles
    (:mod:`dsm.ingest.reflectance`).

    Each band's files are dated by name; a date needs all four bands (and ``state`` when given),
    else it is skipped and named in the report. Reflectance must be 0-1 after ``scale``
    (within MOD09A1's valid range -0.01..1.6): int16 counts need ``scale: 0.0001`` (when the
    files carry no scale), and a file outside the range is refused.
    """

    b2: tuple[str, ...] = Field(description="band 2 (NIR, 841-876 nm) rasters: files, globs or folders, paths or "
                                "URLs", json_schema_extra=_one_or_many)
    b4: tuple[str, ...] = Field(description="band 4 (green, 545-565 nm) rasters, as b2", json_schema_extra=_one_or_many)
    b6: tuple[str, ...] = Field(description="band 6 (SWIR, 1628-1652 nm) rasters, as b2", json_schema_extra=_one_or_many)
    b7: tuple[str, ...] = Field(description="band 7 (SWIR, 2105-2155 nm) rasters, as b2", json_schema_extra=_one_or_many)
    state: tuple[str, ...] | None = Field(
        default=None, description="optional sur_refl_state_500m rasters (integers, unscaled): the MOD09A1 cloud "
        "and shadow screening (qc); null: no screening (the bands as delivered)", json_schema_extra=_one_many_or_none)
    qc: tuple[tuple[int, int, tuple[int, ...]], ...] | None = Field(
        default=None, description="rules [start bit, number of bits, allowed values] on state; null: MOD09A1's "
        "(bits 0-1 clear, bit 2 no cloud shadow)")
    date_regex: str | None = Field(
        default=None, description="regular expression finding the date in each file name (named groups year+doy "
        "or year+month+day); null: YYYY_DDD (MODIStsp), AYYYYDDD, doyYYYYDDD (AppEEARS), YYYY-MM-DD or YYYYMMDD")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for these URLs, merged over inputs.storage_options")

    @field_validator("b2", "b4", "b6", "b7", "state", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @property
    def bands(self) -> dict[str, tuple[str, ...]]:
        """``{"b2": paths, "b4": ..., "b6": ..., "b7": ...}`` plus ``"state"`` when given."""
        out = {b: getattr(self, b) for b in get_args(Band)}
        return {**out, "state": self.state} if self.state else out


class GeotiffSeriesInput(RasterInput):
    """Per-date rasters of one cube variable; the date comes from the file name.

    An integer raster needs a scale (the file's or ``scale``: e.g. 0.0001 for MOD13 NDVI
    counts; ``scale: 1`` when the integers are the values).
    """

    date_regex: str | None = Field(
        default=None, description="regular expression finding the date in each file name, with named groups "
        "year+month+day or year+doy (e.g. \"doy(?P<year>\\d{4})(?P<doy>\\d{3})\"); null: YYYY-MM-DD, "
        "YYYY_MM_DD, YYYYMMDD or YYYYDDD anywhere in the name (dsm.ingest.base.DEFAULT_DATE_REGEX)")
    resampling: Literal["average", "nearest", "bilinear"] = Field(
        default="average", description="how the rasters are put on the 1 km grid")
    band: int = Field(default=1, ge=1, description="band of the raster to read (1-based)")


class OutputConfig(_Frozen):
    """Prediction and export (issue 4): gap-free mode, uncertainty, residual correction, COGs.

    ``reduced_sets`` lists predictor groups that may be missing on a day (default: LST, the
    cloud gap); each gets a reduced model per period trained without them. ``gap_free: false``
    leaves such pixels empty, as in the paper.
    """

    gap_free: bool = True
    reduced_sets: tuple[tuple[str, ...], ...] = (("lst",),)
    uncertainty: Literal["quantile", "none"] = "quantile"
    interval: float = Field(default=0.9, gt=0.0, lt=1.0, description="nominal coverage of sm +- sm_unc")
    residual_correction: bool = False
    clip: tuple[float, float] = (0.0, 1.0)
    predict_threads: int = Field(default=1, ge=1, description="model threads per task")
    export_crs: Literal["EPSG:6933", "EPSG:4326"] = "EPSG:6933"
    cog_blocksize: int = Field(default=512, ge=16)
    cog_compress: Literal["DEFLATE", "ZSTD", "LZW"] = "DEFLATE"

    @field_validator("reduced_sets")
    @classmethod
    def _sets(cls, v: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        from dsm.cube import PREDICTOR_NAMES

        for group in v:
            unknown = [p for p in group if p not in PREDICTOR_NAMES]
            if not group or unknown:
                raise ValueError(f"reduced set {list(group)}: unknown or empty predictor list {unknown}")
        return v


Stage = Literal["cube", "train", "predict", "export", "validate"]
STAGES: tuple[Stage, ...] = get_args(Stage)  # the stages of ``dsm run``, in order


class RunConfig(_Frozen):
    """The one-command job ``dsm run`` (issue 7): stages, lock and run records.

    ``records`` is where each run leaves ``<run id>/run.json`` (stages, timings, results) and
    ``<run id>/dask-performance.html``; default ``runs/`` beside ``stores.output``.
    """

    stages: tuple[Stage, ...] = STAGES
    records: str | None = None
    lock_ttl: float = Field(default=120.0, gt=0.0, description="seconds after its last heartbeat a lock is abandoned")
    lock_heartbeat: float = Field(default=15.0, gt=0.0, description="seconds between lock heartbeats")
    performance_report: bool = True

    @model_validator(mode="after")
    def _beat_within_ttl(self) -> RunConfig:
        if self.lock_heartbeat >= self.lock_ttl:
            raise ValueError(f"lock_heartbeat ({self.lock_heartbeat}) must be shorter than lock_ttl ({self.lock_ttl})")
        return self


PrecipProduct = Literal["imerg", "chirps", "era5land"]


class PrecipInput(InputSource):
    """Gridded daily precipitation files (issue 19), read by :mod:`dsm.ingest.precip`.

    ``product``: ``imerg`` (GPM IMERG daily, netCDF4/HDF5, its day is the UTC day), ``chirps``
    (CHIRPS daily GeoTIFF or netCDF, 0.05 degree) or ``era5land`` (ERA5-Land ``tp`` netCDF,
    hourly accumulations summed to local days). ``utc_offset_hours``: the local day of
    hourly products (null: the region's mean solar time, longitude / 15, rounded).
    ``remap``: how the product is put on the 1 km grid (``bilinear``, the default: a smooth 1 km
    field, which gives the within-cell rain gradients the maps need, measured on the twin;
    ``conservative``: area-weighted, keeps area means exactly but is blocky at the product's
    resolution).
    """

    product: PrecipProduct = Field(description="imerg (GPM IMERG daily), chirps (CHIRPS daily) or era5land "
                                   "(ERA5-Land hourly tp)")
    utc_offset_hours: int | None = Field(default=None, ge=-12, le=14, description="local day of hourly "
                                         "products; null: longitude / 15 of the region's centre, rounded")
    remap: Literal["conservative", "bilinear"] = Field(
        default="bilinear", description="bilinear (default): a smooth 1 km field, with the within-cell rain "
        "gradients the maps need; conservative: area-weighted, keeps area means exactly, blocky at 0.1 degree")


class InputsConfig(_Frozen):
    """The input files of ``dsm ingest`` (every source optional), see :mod:`dsm.ingest.pipeline`."""

    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for every input URL")
    smap: SmapInput | None = Field(default=None, description="SMAP L3 radiometer 36 km daily soil moisture "
                                   "(SPL3SMP, HDF5): the target of training")
    mod11a1: ModisInput | None = Field(default=None, description="MODIS Terra land surface temperature daily "
                                       "1 km tiles (MOD11A1, HDF4): lst")
    mcd43: AlbedoInput | None = Field(default=None, description="MODIS BRDF/albedo daily 500 m tiles (MCD43A3, "
                                      "HDF4): albedo")
    mod15a2h: ModisInput | None = Field(default=None, description="MODIS LAI/FPAR 8-day 500 m tiles (MOD15A2H, "
                                        "HDF4): lai, fapar")
    mod09a1: ModisInput | None = Field(default=None, description="MODIS surface reflectance 8-day 500 m tiles "
                                       "(MOD09A1, HDF4): ndwi, lswi, nsdsi")
    mod13a2: ModisInput | None = Field(default=None, description="MODIS vegetation indices 16-day 1 km tiles "
                                       "(MOD13A2, HDF4): ndvi, evi")
    dem: RasterInput | None = Field(default=None, description="elevation rasters, m (SRTM .hgt, Copernicus DEM "
                                    "GeoTIFF ...): dem, and slope and aspect unless given below")
    slope: RasterInput | None = Field(default=None, description="optional precomputed slope rasters, degrees 0-90 "
                                      "(e.g. from a 30 m DEM), averaged to 1 km: used instead of the slope of the 1 km DEM")
    aspect: RasterInput | None = Field(default=None, description="optional precomputed aspect rasters, degrees 0-360 "
                                       "clockwise from north (flat: nodata, e.g. nodata: -1 for ArcGIS), circular mean "
                                       "to 1 km: used instead of the aspect of the 1 km DEM")
    soil: SoilInput | None = Field(default=None, description="sand, silt and clay rasters, %, or SoilGrids as "
                                   "published (soilgrids: folder or URL)")
    land_mask: RasterInput | None = Field(default=None, description="raster, land where >= 0.5 after averaging")
    geotiff: dict[str, GeotiffSeriesInput] = Field(
        default_factory=dict, description="cube variable -> per-date rasters, for variables no source above makes")
    reflectance: ReflectanceInput | None = Field(
        default=None, description="MOD09A1 surface reflectance bands b2, b4, b6, b7 as per-date GeoTIFFs (MODIStsp, "
        "AppEEARS) instead of mod09a1: ndwi, lswi, nsdsi by the same code")
    precip: PrecipInput | None = Field(default=None, description="daily precipitation (IMERG, CHIRPS or "
                                       "ERA5-Land): precip and the antecedent precipitation indices")

    @model_validator(mode="after")
    def _geotiff_targets(self) -> InputsConfig:
        from dsm.cube import SPECS

        if self.mod09a1 is not None and self.reflectance is not None:
            raise ValueError("reflectance: ndwi, lswi and nsdsi already come from mod09a1 (the HDF tiles); give one "
                             "of the two (mod09a1: null to use the band GeoTIFFs)")
        bands = self.mod09a1 or self.reflectance
        made = {"lst": self.mod11a1, "albedo": self.mcd43, "lai": self.mod15a2h, "fapar": self.mod15a2h,
                "ndwi": bands, "lswi": bands, "nsdsi": bands,
                "ndvi": self.mod13a2, "evi": self.mod13a2}  # fmt: skip
        for name in self.geotiff:
            if name not in SPECS or SPECS[name].axis not in ("daily", "8day", "16day"):
                raise ValueError(f"geotiff.{name}: not a daily, 8-day or 16-day variable of the cube")
            if made.get(name) is not None:
                raise ValueError(f"geotiff.{name}: {name} already comes from a MODIS source (or reflectance); give one "
                                 "of the two")
        return self


def _known_columns(v: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """A column mapping whose keys are all dsm names (``names``), else an error listing them."""
    import difflib

    for name in v:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"{name!r} is not one of dsm's column names; {hint}the names are {list(names)} "
                             "(map each to your file's column name)")
    return v


class StationSourceConfig(_Frozen):
    """One in situ source: an ISMN file, folder or zip (``ismn``) or a plain CSV (``csv``).

    A CSV needs the columns ``station, lon, lat, depth, time, value`` (and may have ``network,
    sensor, flag``); ``columns`` maps those names to the file's own, e.g.
    ``columns: {station: site_id, value: vwc_5cm, time: timestamp_utc}``.
    """

    path: str = Field(description="file, folder, zip or glob; a local path or an fsspec URL (s3://...)")
    format: Literal["auto", "ismn", "csv"] = Field(
        default="auto", description="auto: .csv -> csv; .stm, .zip or a folder -> ismn")
    network: str | None = Field(default=None, description="network name for a CSV without a network column")
    columns: dict[str, str] = Field(
        default_factory=dict, description="CSV only: dsm's column name -> the file's column name, for the names "
        "that differ; dsm's names: station, network, lon, lat, depth (sensor depth, m), time (ISO 8601, UTC when "
        "naive), value (m3/m3), sensor, flag (ISMN flag; G kept)")

    @field_validator("columns")
    @classmethod
    def _column_names(cls, v: dict[str, str]) -> dict[str, str]:
        from dsm.insitu import STATION_CSV_COLUMNS

        return _known_columns(v, STATION_CSV_COLUMNS)

    @model_validator(mode="after")
    def _csv_only(self) -> StationSourceConfig:
        if self.columns and self.format == "ismn":
            raise ValueError("columns maps the columns of a plain CSV; ISMN files have a fixed layout: remove "
                             "columns or set format: csv")
        return self


class GriddedProductConfig(_Frozen):
    """Another gridded product compared at the stations (NetCDF, GeoTIFF series or Zarr, any grid).

    ``value = raw * scale + offset`` must be m3/m3. ``crs`` is only for files that carry none
    (e.g. ``EPSG:4326`` for plain lon/lat NetCDF); a product without any CRS is reported, not guessed.
    """

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    path: str
    variable: str | None = Field(default=None, description="variable name (NetCDF/Zarr); GeoTIFF: band 1")
    scale: float = 1.0
    offset: float = 0.0
    crs: str | None = None
    time_dim: str | None = Field(default=None, description="None: the first datetime dimension")
    date_regex: str | None = Field(default=None, description="GeoTIFF series: date in the file name")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class BootstrapConfig(_Frozen):
    """Percentile bootstrap of the in situ scores (``n_resamples: 0`` switches it off)."""

    n_resamples: int = Field(default=1000, ge=0)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    seed: int = 0
    block_length: int | None = Field(default=None, ge=1, description="days per moving block; None: pairs")


class ValidationConfig(_Frozen):
    """In situ validation, analysis and the report (``dsm validate``, ``dsm report``; issue 6).

    Without ``stations`` the twin's ``stores.stations/insitu.csv`` is used, without ``weather``
    its ``weather.csv``; ``weather_columns`` maps the weather table's column names like
    ``stations[*].columns``. ``out`` defaults to ``validation/`` beside ``stores.output``.
    """

    stations: tuple[StationSourceConfig, ...] = ()
    weather: str | None = Field(default=None, description="CSV: station, lon, lat, time, precip_mm, tair_c "
                                "(daily precipitation, mm, and mean air temperature, deg C)")
    weather_columns: dict[str, str] = Field(
        default_factory=dict, description="dsm's column name of the weather table -> the file's column name, for "
        "the names that differ (e.g. {precip_mm: PRCP, tair_c: TAVG})")
    max_depth: float = Field(default=0.05, gt=0.0, description="deepest sensor bottom kept, m")
    flags: tuple[str, ...] = ("G",)
    min_obs_per_day: int = Field(default=1, ge=1)
    min_n: int = Field(default=10, ge=2, description="fewest paired days to score a site")
    bias_convention: Literal["reference_minus_product", "product_minus_reference"] = "reference_minus_product"
    products: tuple[GriddedProductConfig, ...] = ()
    compare: dict[str, str] = Field(
        default_factory=dict, description="twin skill: other dsm products stores scored beside this run's "
        "on the same pixel-days, label -> store (e.g. {rao2022: rao2022/sm.zarr})")
    bootstrap: BootstrapConfig = BootstrapConfig()
    out: str | None = None
    report: str | None = Field(default=None, description="HTML file; default OUT/report.html")
    box: tuple[float, float, float, float] | None = Field(
        default=None, description="lon_min, lat_min, lon_max, lat_max of the regional subset view")
    partial_correlation_freq: str = Field(default="MS", description="pandas frequency: MS monthly")
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    weather_max_km: float = Field(default=50.0, gt=0.0, description="nearest weather station for rain bars")

    @field_validator("weather_columns")
    @classmethod
    def _weather_column_names(cls, v: dict[str, str]) -> dict[str, str]:
        from dsm.insitu import WEATHER_COLUMNS

        return _known_columns(v, WEATHER_COLUMNS)

    @field_validator("products")
    @classmethod
    def _unique_names(cls, v: tuple[GriddedProductConfig, ...]) -> tuple[GriddedProductConfig, ...]:
        names = [p.name for p in v]
        reserved = {"insitu", "sm_1km", "smap_36km"} & set(names)
        if reserved or len(set(names)) != len(names):
            raise ValueError(f"product names must be unique and not {sorted(reserved) or 'repeated'}: {names}")
        return v


class RainConfig(_Frozen):
    """Antecedent precipitation indices from the cube's daily precipitation (issue 19).

    ``API_t = k API_(t-1) + P_t`` for the e-folding times of :data:`dsm.cube.API_EFOLDING_DAYS`,
    spun up over the ``spinup_days`` before the first day (rounded up to whole time chunks of
    the cube). A run of missing precipitation days no longer than ``max_gap_days`` is bridged
    (the indices decay through it); a longer one restarts them from zero. Pixel-days whose
    record has a missing day within the last ``spinup_days`` are flagged in ``sm_origin``.
    ``predictors``: the default method adds the rain predictors (``precip`` and the indices)
    to its model when the cube has precipitation (``auto``) or never (``off``).
    """

    spinup_days: int = Field(default=45, ge=1, le=255)
    max_gap_days: int = Field(default=3, ge=0)
    predictors: Literal["auto", "off"] = "auto"


class Config(_Frozen):
    """The whole run configuration (immutable)."""

    region: RegionConfig
    dates: DatesConfig
    stores: StoresConfig
    cluster: ClusterConfig = ClusterConfig()
    chunks: ChunksConfig = ChunksConfig()
    predictors: tuple[str, ...] = PAPER_PREDICTORS
    twin: TwinConfig | None = None
    training: TrainingConfig = TrainingConfig()
    inputs: InputsConfig | None = None
    output: OutputConfig = OutputConfig()
    validation: ValidationConfig | None = None
    run: RunConfig = RunConfig()
    rain: RainConfig = RainConfig()

    @field_validator("predictors")
    @classmethod
    def _known_predictors(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from dsm.cube import PREDICTOR_NAMES

        unknown = [p for p in v if p not in PREDICTOR_NAMES]
        if unknown:
            raise ValueError(f"unknown predictor(s) {unknown}; known: {sorted(PREDICTOR_NAMES)}")
        if len(set(v)) != len(v) or not v:
            raise ValueError("predictors must be a non-empty list without repeats")
        return v

    @property
    def grid_region(self) -> Region:
        """The configured region on the EASE-Grid 2.0 grid."""
        return self.region.to_region()


def _absolute(value: Any, base: Path, resolve: bool = True) -> Any:
    """A local path made absolute against ``base`` (the YAML file's folder); URLs and
    non-strings unchanged. ``resolve=False`` keeps glob patterns and links as written."""
    if not isinstance(value, str) or "://" in value:
        return value
    path = base / os.path.expanduser(value)
    return str(path.resolve() if resolve else path)


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    stores = raw.get("stores")
    if isinstance(stores, dict):
        for key, value in stores.items():
            if key != "storage_options":
                stores[key] = _absolute(value, base)
    _resolve_input_paths(raw.get("inputs"), base)
    _resolve_validation_paths(raw.get("validation"), base)
    run = raw.get("run")
    if isinstance(run, dict) and "records" in run:
        run["records"] = _absolute(run["records"], base)
    return raw


def _resolve_validation_paths(section: Any, base: Path) -> None:
    """Make the local paths of ``validation:`` absolute (relative to the YAML folder), in place."""

    def local(v: Any) -> Any:
        return _absolute(v, base)

    if not isinstance(section, dict):
        return
    for key in ("weather", "out", "report"):
        if section.get(key) is not None:
            section[key] = local(section[key])
    if isinstance(section.get("compare"), dict):
        section["compare"] = {k: local(v) for k, v in section["compare"].items()}
    for key in ("stations", "products"):
        for item in section.get(key) or []:
            if isinstance(item, dict) and "path" in item:
                item["path"] = local(item["path"])


def _resolve_input_paths(inputs: Any, base: Path) -> None:
    """Make the local paths/globs of ``inputs:`` absolute (relative to the YAML folder), in place."""

    def local(v: Any) -> Any:
        return _absolute(v, base, resolve=False)

    if not isinstance(inputs, dict):
        return
    sources = [v for k, v in inputs.items() if k not in ("storage_options", "geotiff", "soil")]
    sources += list((inputs.get("geotiff") or {}).values()) if isinstance(inputs.get("geotiff"), dict) else []
    for src in sources:
        for key in ("paths", *get_args(Band), "state"):
            p = src.get(key) if isinstance(src, dict) else None
            if p is not None:
                src[key] = [local(x) for x in p] if isinstance(p, list) else local(p)
    soil = inputs.get("soil")
    if isinstance(soil, dict):
        for k in ("sand", "silt", "clay", "soilgrids"):
            soil[k] = local(soil.get(k)) if soil.get(k) is not None else None


def _format_errors(source: str, exc: ValidationError) -> str:
    """One line per error, ``key: problem``, with the valid keys where a key is unknown or a
    section is not a mapping (:func:`dsm.config_help.explain`)."""
    from dsm.config_help import explain

    return "\n".join([f"invalid configuration {source}:", *(f"  {explain(err)}" for err in exc.errors())])


def from_dict(raw: dict[str, Any], source: str = "<dict>", base: Path | None = None) -> Config:
    """Validate a configuration mapping; raise :class:`ConfigError` naming each bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration {source}: expected a mapping at the top level")
    if base is not None:
        raw = _resolve_paths(dict(raw), base)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
    except ConfigError as exc:  # raised by shared checks such as check_dates
        raise ConfigError(f"invalid configuration {source}: {exc}") from None


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML configuration file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration {path} is not valid YAML: {exc}") from None
    return from_dict(raw, source=str(path), base=path.parent)


def dump(config: Config) -> str:
    """The configuration as YAML text (round-trips through :func:`load`)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
