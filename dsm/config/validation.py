"""The ``validation`` section: in situ sources, other gridded products, the bootstrap and
the settings of ``dsm validate`` and ``dsm report``."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dsm.config.base import _Frozen


def _known_columns(v: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """A column mapping whose keys are all dsm names (``names``), else an error listing them."""
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
        from dsm.insitu import STATION_CSV_COLUMNS  # noqa: PLC0415 - dsm.insitu (pandas) stays out of the light config

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
    """In situ validation, analysis and the report (``dsm validate``, ``dsm report``).

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
        from dsm.insitu import WEATHER_COLUMNS  # noqa: PLC0415 - dsm.insitu (pandas) stays out of the light config

        return _known_columns(v, WEATHER_COLUMNS)

    @field_validator("products")
    @classmethod
    def _unique_names(cls, v: tuple[GriddedProductConfig, ...]) -> tuple[GriddedProductConfig, ...]:
        names = [p.name for p in v]
        reserved = {"insitu", "sm_1km", "smap_36km"} & set(names)
        if reserved or len(set(names)) != len(names):
            raise ValueError(f"product names must be unique and not {sorted(reserved) or 'repeated'}: {names}")
        return v
