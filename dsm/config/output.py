"""The ``output`` section: prediction and export settings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from dsm.config.base import _Frozen

_SPDX = re.compile(r"^[\w\-.+]+$")  # a license id as STAC's schema allows it (SPDX, or "other")
ExportFormat = Literal["cog", "netcdf"]


class Provider(_Frozen):
    """One organisation that made, processed, licenses or hosts the products (STAC ``providers``).

    The first ``producer`` is also the netCDF files' ACDD ``creator_*``, the first ``host`` their
    ``publisher_*``.
    """

    name: str = Field(min_length=1)
    roles: tuple[Literal["licensor", "producer", "processor", "host"], ...] = ()
    url: str | None = None
    email: str | None = Field(default=None, description="contact address (netCDF creator_email / publisher_email)")
    description: str | None = None


class OutputConfig(_Frozen):
    """Prediction and export: gap-free mode, uncertainty, residual correction, COGs.

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
    formats: tuple[ExportFormat, ...] = Field(
        default=("cog",), min_length=1,
        description="what `dsm export` writes: 'cog' (daily COGs + STAC, stores.cog/stores.stac) and/or "
                    "'netcdf' (CF-1.10/ACDD-1.3 netCDF4 files, stores.netcdf); `dsm export --format` overrides it")
    netcdf_period: Literal["year", "month"] = Field(
        default="year", description="one netCDF file per calendar year (SM_1km_YYYY.nc) or month (SM_1km_YYYYMM.nc)")
    netcdf_complevel: int = Field(default=4, ge=1, le=9, description="zlib level of the netCDF variables")
    license: str = Field(
        default="other",
        description="SPDX id of the products' license (STAC `license`, netCDF `license`); 'other' (the default: "
                    "terms of your own, name them in license_url) until you choose one, e.g. CC-BY-4.0")
    license_url: str | None = Field(default=None, description="where the license terms are (a STAC 'license' link)")
    providers: tuple[Provider, ...] = ()
    keywords: tuple[str, ...] = ("soil moisture", "SMAP", "downscaling", "MODIS", "1 km", "daily")

    @field_validator("license")
    @classmethod
    def _license(cls, v: str) -> str:
        if not _SPDX.match(v):
            raise ValueError(f"license {v!r} is not an SPDX identifier (e.g. CC-BY-4.0, CC0-1.0, or 'other' "
                             "with output.license_url)")
        return v

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v))  # each once, in the order given

    @field_validator("reduced_sets")
    @classmethod
    def _sets(cls, v: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        from dsm.cube import PREDICTOR_NAMES  # noqa: PLC0415 - dsm.cube (dask, xarray) stays out of the light config

        for group in v:
            unknown = [p for p in group if p not in PREDICTOR_NAMES]
            if not group or unknown:
                raise ValueError(f"reduced set {list(group)}: unknown or empty predictor list {unknown}")
        return v
