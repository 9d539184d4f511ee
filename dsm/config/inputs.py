"""The ``inputs`` section: the files ``dsm ingest`` reads, one model per kind of source."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from dsm.config.base import _Frozen


def _one_or_many(schema: dict[str, Any]) -> None:
    """JSON schema of a list field that also takes one string (``paths: "a/*.hdf"``)."""
    items = schema.pop("items", {"type": "string"})
    schema.pop("type", None)
    schema["anyOf"] = [items, {"type": "array", "items": items}]


def _one_many_or_none(schema: dict[str, Any]) -> None:
    """JSON schema of an optional list field that also takes one string (``state: "a/*.tif"``)."""
    schema["anyOf"] = [{"type": "string"}, *schema.get("anyOf", [])]


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


class StacQC(_Frozen):
    """The QC asset of a STAC asset and the rules its pixels must pass, as the MODIS tiles' QC SDS
    (:class:`dsm.ingest.modis_products.QCRule`: start bit, number of bits, allowed values)."""

    asset: str = Field(description="key of the QC asset in the items (e.g. \"QC_Day\"), read raw (no scale, no nodata)")
    rules: tuple[tuple[int, int, tuple[int, ...]], ...] = Field(
        min_length=1, description="rules [start bit, number of bits, allowed values]; a pixel is kept when its QC "
        "value passes every rule (e.g. [[0, 2, [0]]]: MOD11A1's 'LST produced, good quality')")


class StacAssetInput(ValueSettings):
    """One cube variable from one asset of a STAC catalog's items (:mod:`dsm.ingest.stac_inputs`).

    ``value = raw * scale + offset`` where raw is not ``nodata``, as for GeoTIFFs: the file's own
    scale, offset and nodata win, then the asset's ``raster:bands``, then these settings.
    """

    asset: str = Field(description="key of the asset in the items (e.g. \"LST_Day_1km\"); an item without it "
                       "is reported failed, naming the item")
    collection: str | None = Field(default=None, description="the collection whose items hold the asset; null: "
                                   "every collection of inputs.stac.collections")
    band: int = Field(default=1, ge=1, description="band of the asset's raster to read (1-based)")
    resampling: Literal["average", "nearest", "bilinear"] = Field(
        default="average", description="how the asset is put on the 1 km grid (nearest for QC-masked 1 km fields, "
        "as MOD11A1 and MOD13A2 are from the tiles)")
    qc: StacQC | None = Field(default=None, description="QC asset and rules applied on the asset's own pixels "
                              "before the warp, as for the MODIS tiles; null: no screening")


class StacInput(_Frozen):
    """Items of a STAC catalog (static, read with pystac, or a STAC API, searched with
    pystac-client) whose assets are rasters (COGs) of cube variables: searched once on the
    client by collection, the region's bounding box and the cube's dates, dated by their
    ``start_datetime`` (composites) or ``datetime`` (UTC day), and loaded by the workers with
    odc-stac onto each asset's own grid, then masked, scaled and warped to the 1 km grid by the
    GeoTIFF and MODIS code.
    """

    catalog: str = Field(description="a static catalog's root (catalog.json or collection.json: a path or "
                         "fsspec URL, e.g. s3://bucket/stac/catalog.json) or a STAC API's root URL (https://..., "
                         "searched with pystac-client)")
    collections: tuple[str, ...] = Field(
        default=(), description="ids of the collections searched; empty: every collection of the catalog",
        json_schema_extra=_one_or_many)
    assets: dict[str, StacAssetInput] = Field(
        min_length=1, description="cube variable -> the asset it comes from, with its value and QC settings")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for the catalog and asset URLs, merged over "
        "inputs.storage_options")

    @field_validator("collections", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _known_collections(self) -> StacInput:
        for var, a in self.assets.items():
            if self.collections and a.collection is not None and a.collection not in self.collections:
                raise ValueError(f"assets.{var}.collection: {a.collection!r} is not one of collections "
                                 f"{list(self.collections)}: add it there or remove it here")
        return self


PrecipProduct = Literal["imerg", "chirps", "era5land"]
ReadMode = Literal["auto", "copy"]


class PrecipInput(InputSource):
    """Gridded daily precipitation files, read by :mod:`dsm.ingest.precip`.

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
    """The input files of ``dsm ingest`` (every source optional), see :mod:`dsm.stages.ingest`."""

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
    stac: StacInput | None = Field(
        default=None, description="items of a STAC catalog (static or API) whose COG assets give cube variables, "
        "for variables no source above makes (loaded with odc-stac: pip install 'dsm[stac]')")
    read: ReadMode = Field(
        default="auto", description="how remote input files (s3://, gs://, https://...) are read: auto reads SMAP "
        "HDF5 granules and GDAL rasters (GeoTIFF, COG) in place, fetching only the byte ranges the readers need, and "
        "copies the rest (MODIS HDF4 tiles, SRTM .hgt tiles, VRTs, precipitation files) to the worker first; copy "
        "copies every remote file whole first. Local files are always read where they are")

    @model_validator(mode="after")
    def _geotiff_targets(self) -> InputsConfig:
        from dsm.cube import SPECS  # noqa: PLC0415 - dsm.cube (dask, xarray) stays out of the light config

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
        for name in self.stac.assets if self.stac is not None else ():
            if name not in SPECS or SPECS[name].axis not in ("daily", "8day", "16day"):
                raise ValueError(f"stac.assets.{name}: not a daily, 8-day or 16-day variable of the cube")
            if made.get(name) is not None or name in self.geotiff:
                other = f"geotiff.{name}" if name in self.geotiff else "a MODIS source (or reflectance)"
                raise ValueError(f"stac.assets.{name}: {name} already comes from {other}; give one of the two")
        return self
