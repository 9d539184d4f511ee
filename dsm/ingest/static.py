"""The static layers of one ingest: DEM (with slope and aspect, or those given as rasters of
their own), soil fractions (checked to add up to 100 %, :func:`check_soil_sum`) and the land mask.

Every file must have values over the region: one that does not is skipped
(:class:`~dsm.ingest.base.NoOverlapError`, named in the report) and never "used"; an input
none of whose files is used fails the ingest (:mod:`dsm.ingest.inputs`).

The land mask (report ``land_mask_source``):

- ``land_mask input``: land where the raster's 1 km average is >= 0.5;
- ``dem (sea-level zeros as water)``: land where the DEM has a value and is not sea:
  connected areas of exactly 0 m (SRTM stores the sea as 0 m) that touch the region's edge
  or have at least :data:`SEA_MIN_PIXELS` pixels are water (a warning in the report);
- ``... and soil (where sand, silt, clay have values)``, or that alone without a DEM: also
  every configured soil fraction has a value.

The DEM's sea test runs on the 1 km average, so a coastal pixel with some land in it
(average above 0 m) stays land; give ``inputs.land_mask`` for a better coastline.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from dsm import store
from dsm.grid import Region
from dsm.ingest.base import ManyResult, read_many
from dsm.ingest.blocks import merge, screened
from dsm.ingest.rasters import ValueRule, check_range, read_values, require_overlap
from dsm.ingest.reproject import Raster, warp_many_to_region
from dsm.ingest.soil import FRACTIONS, read_texture_raster, sum_refusal, texture_sum
from dsm.ingest.terrain import dem_to_region
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)

LAND_MASK = "land_mask"  #: written by every static task (from the DEM, or its own input)
STATIC_VARS = ("dem", "slope", "aspect", "sand", "silt", "clay", LAND_MASK)
#: An inland area of exactly 0 m this large (1 km pixels) is taken as sea even off the edge.
SEA_MIN_PIXELS = 5
LAND_MASK_INPUT = "land_mask input"
DEM_SEA = "dem (sea-level zeros as water)"


def soil_rule(soil: Any) -> ValueRule:
    """The value rule of ``inputs.soil`` (:class:`dsm.config.SoilInput`)."""
    return ValueRule(soil.scale, soil.offset, soil.nodata, "inputs.soil")


def read_dem_layers(paths: Sequence[str], region: Region, rule: ValueRule | None = None,
                    keep: Sequence[str] = ("dem", "slope", "aspect")) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
    """``dem``, ``slope`` and ``aspect`` of DEM files (:func:`dsm.ingest.terrain.dem_to_region`),
    those in ``keep`` (slope and aspect given as inputs of their own are not taken from the DEM)."""
    ds, many = dem_to_region(paths, region, rule)
    if not many.results:
        return None, many
    return {k: ds[k].values for k in keep}, many


def _texture_part(path: str, region: Region, rule: ValueRule) -> Raster:
    raster = read_texture_raster(path, rule=rule, region=region)
    require_overlap(path, raster, region)
    return raster


def read_soil_layer(paths: Sequence[str], fraction: str, region: Region, rule: ValueRule
                    ) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
    """One soil fraction (percent) averaged onto the region from one or more rasters."""
    many = read_many(paths, _texture_part, region=region, rule=rule)
    if not many.results:
        return None, many
    return {fraction: warp_many_to_region(list(many.results.values()), region, "average")}, many


def check_soil_sum(results: dict[str, Any]) -> list[str]:
    """Sand + silt + clay of this ingest (:func:`dsm.ingest.soil.texture_sum`), when all three were read.

    A median sum off by more than :data:`~dsm.ingest.soil.SUM_REFUSE` points refuses the three:
    their results are replaced, in ``results``, by failed ones (nothing written, every used file
    ``failed`` with the reason). Returns the report's warnings (pixels off by more than
    :data:`~dsm.ingest.soil.SUM_TOLERANCE` points).
    """
    if not all(f in results and results[f].arrays for f in FRACTIONS):
        return []
    check = texture_sum({f: results[f].arrays[f] for f in FRACTIONS})
    if check.refused:
        used = [r.path for f in FRACTIONS for r in results[f].files if r.status == "used"]
        why = sum_refusal(check, ", ".join(os.path.basename(p) for p in used))
        for f in FRACTIONS:
            files = [dataclasses.replace(r, status="failed", reason=why, error="WrongProductError") if r.status == "used"
                     else r for r in results[f].files]
            results[f] = dataclasses.replace(results[f], arrays=None, files=files)
        return []
    return [f"{check.describe()} (tolerated: predicted fractions need not add up exactly)"] if check.off else []


def _mask_part(path: str, region: Region, rule: ValueRule) -> Raster:
    raster, applied = read_values(path, 1, rule)
    require_overlap(path, raster, region)
    check_range(path, raster, "land_mask", region, rule, applied)
    return raster


def read_mask_layer(paths: Sequence[str], region: Region, rule: ValueRule
                    ) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
    """The land mask of ``land_mask`` rasters: 1 where their 1 km average >= 0.5, NaN where none."""
    many = read_many(paths, _mask_part, region=region, rule=rule)
    if not many.results:
        return None, many
    frac = warp_many_to_region(list(many.results.values()), region, "average")
    return {"land_mask": np.where(np.isnan(frac), np.nan, (frac >= 0.5).astype(np.float32))}, many


def sea_level_water(dem: np.ndarray, min_pixels: int = SEA_MIN_PIXELS) -> np.ndarray:
    """Pixels of connected (4-neighbour) areas of exactly 0 m that touch the array's edge or
    have at least ``min_pixels`` pixels: the sea of an SRTM-like DEM."""
    labels, n = ndimage.label(dem == 0)
    if n == 0:
        return np.zeros(dem.shape, bool)
    water = np.bincount(labels.ravel(), minlength=n + 1) >= min_pixels
    water[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    water[0] = False
    return water[labels]


def derive_land(dem: np.ndarray | None, soil: Mapping[str, np.ndarray], shape: tuple[int, int]
                ) -> tuple[np.ndarray, str, list[str]]:
    """Land (bool) from the DEM's sea-level zeros and where the soil fractions have values;
    returns the mask, its ``land_mask_source`` and warnings for the report."""
    land = np.ones(shape, bool)
    parts, warnings = [], []
    if dem is not None:
        water = sea_level_water(dem)
        land &= np.isfinite(dem) & ~water
        parts.append(DEM_SEA)
        warnings.append(f"land mask from the DEM (no inputs.land_mask): {int(water.sum())} of {water.size} pixels are "
                        f"sea-level zeros taken as water and {int(np.isnan(dem).sum())} have no elevation (not land); "
                        "give inputs.land_mask for a better coastline")
    if soil:
        for a in soil.values():
            land &= np.isfinite(a)
        parts.append(f"soil (where {', '.join(soil)} have values)")
    return land, " and ".join(parts), warnings


def write_static(cube_ref: StoreRef, cube: xr.Dataset, results: Mapping[str, Any], soil_configured: Sequence[str],
                 dem_configured: bool, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Merge the static layers (values outside their valid range masked), make the land mask,
    write what changed.

    Parameters
    ----------
    cube_ref, cube
        The cube, and the cube opened (:func:`dsm.store.open_store`).
    results
        ``{"dem" | fraction | "land_mask": GroupResult}`` of this ingest.
    soil_configured, dem_configured
        The configured soil fractions and whether a DEM is configured (the derived mask
        needs each of them to have a value).
    warnings
        Warnings of the reading (:func:`check_soil_sum`), reported first.

    Returns
    -------
    dict
        ``wrote`` ({variable: "static"}), ``out_of_range`` ({variable: {"static": n}}),
        ``land_mask_source`` and ``warnings``.
    """
    old = cube[list(STATIC_VARS)].load()
    notes = list(warnings)
    merged = {v: old[v].values.astype(np.float32, copy=True) for v in STATIC_VARS if v != "land_mask"}
    masked, touched = _merge_layers(merged, results)
    mask, source = _land_mask(old["land_mask"].values.astype(np.float32), merged, results, touched,
                              soil_configured, dem_configured, notes)
    if not (mask == 1).any():
        notes.append("the land mask has no land pixel: nothing will be trained or predicted")
    part = _changed(old, merged, mask)
    if part.data_vars:
        store.write_region(cube_ref, part, cube)
    for w in notes:
        log.warning("%s", w)
    return {"wrote": {str(v): "static" for v in part.data_vars}, "out_of_range": masked,
            "land_mask_source": source, "warnings": notes}


def _merge_layers(merged: dict[str, np.ndarray], results: Mapping[str, Any]
                  ) -> tuple[dict[str, dict[str, int]], set[str]]:
    """Merge the layers read (values outside their valid range masked) into ``merged`` (in
    place); return the masked counts ({variable: {"static": n}}) and the variables touched."""
    masked: dict[str, dict[str, int]] = {}
    touched: set[str] = set()
    for kind, r in results.items():
        if kind == "land_mask":
            continue
        for v, a in (r.arrays or {}).items():
            a, n = screened(v, a)
            if n:
                masked.setdefault(v, {})["static"] = masked.get(v, {}).get("static", 0) + n
            merge(merged[v], a, r.status)
            touched.add(v)
    return masked, touched


def _land_mask(mask: np.ndarray, merged: Mapping[str, np.ndarray], results: Mapping[str, Any], touched: set[str],
               soil_configured: Sequence[str], dem_configured: bool, notes: list[str]) -> tuple[np.ndarray, str]:
    """The land mask (from ``mask``, the cube's, updated in place by a ``land_mask`` input, else
    derived from the DEM and soil when they changed) and its source; notes appended to ``notes``."""
    if "land_mask" in results:
        a = (results["land_mask"].arrays or {}).get("land_mask")
        source = LAND_MASK_INPUT if a is not None else f"{LAND_MASK_INPUT} (no file used: the mask is unchanged)"
        if a is not None:  # where the raster has a value, it decides
            np.copyto(mask, a, where=~np.isnan(a))
            if np.isnan(a).any():
                notes.append(f"the land_mask input covers {int((~np.isnan(a)).sum())} of {a.size} pixels: the "
                             "others keep the cube's previous mask")
    elif touched & {"dem", *FRACTIONS}:
        land, source, derived = derive_land(merged["dem"] if dem_configured else None,
                                            {f: merged[f] for f in soil_configured}, mask.shape)
        notes += derived
        mask = land.astype(np.float32)
    else:
        source = "unchanged (no dem or soil file used)"
    return mask, source


def _changed(old: xr.Dataset, merged: Mapping[str, np.ndarray], mask: np.ndarray) -> xr.Dataset:
    """The static layers (and the land mask) that differ from the cube's."""
    part = xr.Dataset(coords={"y": old["y"].values, "x": old["x"].values})
    for v, a in merged.items():
        if not np.array_equal(a, old[v].values, equal_nan=True):
            part[v] = (("y", "x"), a)
    if not np.array_equal(mask, old["land_mask"].values):
        part["land_mask"] = (("y", "x"), mask.astype(np.uint8))
    return part
