"""The MODIS products the tile reader knows: which SDS it reads, their packing convention, the
QC rules that mask them (defaults in :mod:`dsm.ingest.modis`), the output variables with their
CF attributes and 1 km resampling, and the product of a file name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dsm import indices
from dsm.ingest.base import PathLike


@dataclass(frozen=True)
class QCRule:
    """Keep a pixel when bits ``start .. start+nbits-1`` of its QC value are in ``allowed``.

    A whole-byte rank (MOD13 pixel reliability) is ``QCRule(0, 8, (0, 1))``; negative ranks
    (fill -1) read as 255 and are rejected.
    """

    start: int
    nbits: int
    allowed: tuple[int, ...]

    def passes(self, qc: np.ndarray) -> np.ndarray:
        """Boolean mask of pixels whose QC field satisfies the rule."""
        field_ = (np.asarray(qc).astype(np.int64) >> self.start) & ((1 << self.nbits) - 1)
        return np.isin(field_, self.allowed)


def passes_all(rules: Sequence[QCRule], qc: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels whose QC values satisfy every rule (all pass when there is none)."""
    ok = np.ones(np.shape(qc), bool)
    for rule in rules:
        ok &= rule.passes(qc)
    return ok


@dataclass(frozen=True)
class Layer:
    """One SDS read from a product: its packing convention and the QC SDS that masks it."""

    sds: str
    convention: str  # "multiply" or "divide"
    qc_sds: str | None = None


@dataclass(frozen=True)
class Output:
    """One output variable of a product (CF attributes and 1 km resampling)."""

    units: str
    long_name: str
    resampling: str
    standard_name: str | None = None


@dataclass(frozen=True)
class ProductSpec:
    """How to read one MODIS product."""

    short_names: tuple[str, ...]
    grid_prefix: str
    layers: Mapping[str, Layer]
    outputs: Mapping[str, Output]
    qc_defaults: Mapping[str, tuple[QCRule, ...]]
    derive: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    name_date_offset: int = 0  #: days from RANGEBEGINNINGDATE to the file-name date
    composite_days: int = 1


def _mod09_indices(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "ndwi": indices.ndwi(b["b2"], b["b4"]),
        "lswi": indices.lswi(b["b2"], b["b6"]),
        "nsdsi": indices.nsdsi(b["b6"], b["b7"]),
    }


_UNIT = "1"
PRODUCTS: dict[str, ProductSpec] = {
    "MOD11A1": ProductSpec(
        short_names=("MOD11A1", "MYD11A1"),
        grid_prefix="MODIS_Grid_Daily_1km_LST",
        layers={"lst": Layer("LST_Day_1km", "multiply", "QC_Day")},
        outputs={"lst": Output("K", "daytime land surface temperature (MOD11A1)", "nearest", "surface_temperature")},
        qc_defaults={"QC_Day": (QCRule(0, 2, (0,)),)},
    ),
    "MOD13A2": ProductSpec(
        short_names=("MOD13A2", "MYD13A2"),
        grid_prefix="MODIS_Grid_16DAY_1km_VI",
        layers={
            "ndvi": Layer("1 km 16 days NDVI", "divide", "1 km 16 days pixel reliability"),
            "evi": Layer("1 km 16 days EVI", "divide", "1 km 16 days pixel reliability"),
        },
        outputs={
            "ndvi": Output(_UNIT, "normalized difference vegetation index (MOD13A2)", "nearest"),
            "evi": Output(_UNIT, "enhanced vegetation index (MOD13A2)", "nearest"),
        },
        qc_defaults={"1 km 16 days pixel reliability": (QCRule(0, 8, (0, 1)),)},
        composite_days=16,
    ),
    "MOD09A1": ProductSpec(
        short_names=("MOD09A1", "MYD09A1"),
        grid_prefix="MOD_Grid_500m_Surface_Reflectance",
        layers={
            f"b{n}": Layer(f"sur_refl_b0{n}", "multiply", "sur_refl_state_500m") for n in (2, 4, 6, 7)
        },
        outputs={
            "ndwi": Output(_UNIT, "normalized difference water index (B4-B2)/(B4+B2), MOD09A1", "average"),
            "lswi": Output(_UNIT, "land surface water index (B2-B6)/(B2+B6), MOD09A1", "average"),
            "nsdsi": Output(_UNIT, "normalized SWIR difference soil-moisture index (B6-B7)/B6, MOD09A1", "average"),
        },
        qc_defaults={"sur_refl_state_500m": (QCRule(0, 2, (0,)), QCRule(2, 1, (0,)))},
        derive=_mod09_indices,
        composite_days=8,
    ),
    "MOD15A2H": ProductSpec(
        short_names=("MOD15A2H", "MYD15A2H", "MCD15A2H"),
        grid_prefix="MOD_Grid_MOD15A2H",
        layers={"lai": Layer("Lai_500m", "multiply", "FparLai_QC"), "fpar": Layer("Fpar_500m", "multiply", "FparLai_QC")},
        outputs={
            "lai": Output("m2 m-2", "leaf area index (MOD15A2H)", "average", "leaf_area_index"),
            "fpar": Output(
                _UNIT,
                "fraction of absorbed photosynthetically active radiation (MOD15A2H)",
                "average",
                "fraction_of_surface_downwelling_photosynthetic_radiative_flux_absorbed_by_vegetation",
            ),
        },
        qc_defaults={"FparLai_QC": (QCRule(0, 1, (0,)), QCRule(3, 2, (0,)))},
        composite_days=8,
    ),
    "MCD43A3": ProductSpec(
        short_names=("MCD43A3",),
        grid_prefix="MOD_Grid_BRDF",
        layers={
            "albedo_wsa": Layer("Albedo_WSA_shortwave", "multiply", "BRDF_Albedo_Band_Mandatory_Quality_shortwave"),
            "albedo_bsa": Layer("Albedo_BSA_shortwave", "multiply", "BRDF_Albedo_Band_Mandatory_Quality_shortwave"),
        },
        outputs={
            "albedo_wsa": Output(_UNIT, "white-sky shortwave albedo (MCD43A3)", "average", "surface_albedo"),
            "albedo_bsa": Output(_UNIT, "black-sky shortwave albedo at local solar noon (MCD43A3)", "average", "surface_albedo"),
        },
        qc_defaults={"BRDF_Albedo_Band_Mandatory_Quality_shortwave": (QCRule(0, 8, (0, 1)),)},
        name_date_offset=8,
    ),
}


def product_of(path: PathLike) -> str | None:
    """Key in :data:`PRODUCTS` of the short name at the start of a file name, or None."""
    short = os.path.basename(os.fspath(path)).split(".")[0].upper()
    for key, spec in PRODUCTS.items():
        if short in spec.short_names:
            return key
    return None


__all__ = ["PRODUCTS", "Layer", "Output", "ProductSpec", "QCRule", "passes_all", "product_of"]
