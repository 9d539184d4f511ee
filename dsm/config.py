"""The run configuration: one YAML file -> one validated, immutable :class:`Config`.

This is the only place a configuration is parsed. Every stage receives the ``Config`` (or
the part it needs); nothing else reads YAML or environment settings.

Example
-------
.. code-block:: yaml

    region:
      bbox: [108.0, 38.0, 110.9, 40.4]    # lon_min, lat_min, lon_max, lat_max; snapped outward
    dates: {start: 2016-01-01, end: 2016-12-31}
    stores:
      cube: s3://my-bucket/dsm/cube.zarr
      truth: null
      storage_options: {endpoint_url: "http://127.0.0.1:8333"}
    cluster: {address: null, n_workers: 2, threads_per_worker: 1}
    chunks: {space: 720, time: 8}
    predictors: [lst, albedo, lai, ndwi, lswi, nsdsi, ndvi, evi, dem, slope, aspect, sand, silt, clay]

Relative local paths are taken relative to the YAML file's folder. Credentials belong in the
environment (``AWS_ACCESS_KEY_ID`` ...), not in the file, though ``storage_options`` accepts
any fsspec option.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

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


class RegionConfig(_Frozen):
    """Either a lon/lat ``bbox`` snapped outward to whole 36 km cells, or explicit ``cells``."""

    bbox: tuple[float, float, float, float] | None = None
    cells: tuple[int, int, int, int] | None = Field(
        default=None, description="row0, col0, nrows, ncols on the global 36 km grid"
    )

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
        if self.bbox is not None:
            return Region.from_bbox(*self.bbox)
        assert self.cells is not None
        return Region(*self.cells)


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
    storage_options: dict[str, Any] = Field(default_factory=dict)


class ClusterConfig(_Frozen):
    """Where the work runs: an existing scheduler ``address`` or a new LocalCluster."""

    address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "auto"
    dashboard_address: str | None = ":0"

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


class Config(_Frozen):
    """The whole run configuration (immutable)."""

    region: RegionConfig
    dates: DatesConfig
    stores: StoresConfig
    cluster: ClusterConfig = ClusterConfig()
    chunks: ChunksConfig = ChunksConfig()
    predictors: tuple[str, ...] = PAPER_PREDICTORS
    twin: TwinConfig | None = None

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


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    stores = raw.get("stores")
    if isinstance(stores, dict):
        for key, value in stores.items():
            if key != "storage_options" and isinstance(value, str) and "://" not in value:
                stores[key] = str((base / os.path.expanduser(value)).resolve())
    return raw


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = [f"invalid configuration {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


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
