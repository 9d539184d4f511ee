"""The whole run configuration, :class:`Config`: the top-level model composing the sections."""

from __future__ import annotations

from pydantic import field_validator

from dsm.config.base import _Frozen
from dsm.config.domain import (
    PAPER_PREDICTORS,
    ChunksConfig,
    DatesConfig,
    RainConfig,
    RegionConfig,
    TwinConfig,
)
from dsm.config.inputs import InputsConfig
from dsm.config.output import OutputConfig
from dsm.config.runtime import ClusterConfig, RunConfig, StoresConfig
from dsm.config.training import TrainingConfig
from dsm.config.validation import ValidationConfig
from dsm.grid import Region


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
        from dsm.cube import PREDICTOR_NAMES  # noqa: PLC0415 - dsm.cube (dask, xarray) stays out of the light config

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
