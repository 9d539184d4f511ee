"""What a run covers and how its cube is laid out: region, dates, chunks, predictors, the
antecedent-rain indices and the synthetic twin (sections ``region``, ``dates``, ``chunks``,
``predictors``, ``rain`` and ``twin``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

from pydantic import Field, field_validator, model_validator

from dsm.config.base import _Frozen
from dsm.errors import GridError
from dsm.grid import FINE_PER_COARSE, Region
from dsm.periods import check_dates

PAPER_PREDICTORS: tuple[str, ...] = (
    "lst", "albedo", "lai", "ndwi", "lswi", "nsdsi", "ndvi", "evi",
    "dem", "slope", "aspect", "sand", "silt", "clay",
)  # fmt: skip


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


def parse_day(value: object) -> object:
    """``"today"`` as today's UTC date (read once, when the configuration is validated); any
    other value unchanged, for pydantic's own date parsing."""
    if isinstance(value, str) and value.strip().lower() == "today":
        return dt.datetime.now(dt.timezone.utc).date()
    return value


class DatesConfig(_Frozen):
    """Inclusive date range; ``end: today`` is today's UTC date (an operational run that
    extends its stores each day, :mod:`dsm.extend`)."""

    start: dt.date
    end: dt.date

    @field_validator("end", mode="before")
    @classmethod
    def _today(cls, v: object) -> object:
        return parse_day(v)

    @model_validator(mode="after")
    def _ordered(self) -> DatesConfig:
        check_dates(self.start, self.end)
        return self


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


class RainConfig(_Frozen):
    """Antecedent precipitation indices from the cube's daily precipitation.

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
