"""The ``output`` section: prediction and export settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from dsm.config.base import _Frozen


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
