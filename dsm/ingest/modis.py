"""MODIS HDF4-EOS tiles (sinusoidal): LST, NDVI/EVI, MOD09A1 indices, LAI/FPAR, albedo.

Geolocation comes from the tile's ``StructMetadata.0`` (``UpperLeftPointMtrs``,
``LowerRightMtrs``: outer corners of the grid in metres, ``XDim``/``YDim``, ``Projection =
GCTP_SNSOID`` with the sphere radius in ``ProjParams``), never from a hard-coded tiling, so
spatial subsets (such as the real MOD09A1 sample cut to 73 x 66 pixels) are placed correctly.
The corners are pixel-corner extents even where a subsetting tool wrote
``PixelRegistration=HDFE_CENTER`` (the real MOD09A1 cut: its corners sit on whole 500 m
pixels of tile h18v04, checked in the tests).

Packing conventions, read from each SDS's attributes (``scale_factor``, ``add_offset`` —
0 when absent, as in MOD11A1 which only has ``add_offset_err`` — ``_FillValue`` and
``valid_range``). Pixels equal to the fill value or outside ``valid_range`` become NaN:

=========  ==============================  ==========  ===================================
product    SDS                             convention  found in the real files
=========  ==============================  ==========  ===================================
MOD11A1    LST_Day_1km (uint16)            multiply    scale 0.02, fill 0, valid 7500-65535
MOD13A2    1 km 16 days NDVI / EVI (int16) divide      scale 10000, fill -3000, valid -2000-10000
MOD09A1    sur_refl_b0N (int16)            multiply    scale 0.0001, fill -28672, valid -100-16000
MOD15A2H   Lai_500m / Fpar_500m (uint8)    multiply    layout: scale 0.1 / 0.01, fill 255, valid
                                                       0-100 (249-254 = land-cover codes -> NaN)
MCD43A3    Albedo_{WSA,BSA}_shortwave      multiply    layout: scale 0.001, fill 32767,
           (int16)                                     valid 0-32766
=========  ==============================  ==========  ===================================

``multiply``: value = raw * scale_factor + add_offset (MOD11 documents "data * scale_factor
+ add_offset"); ``divide``: value = (raw - add_offset) / scale_factor (MOD13). A scale factor
that contradicts the convention (``divide`` with scale < 1, ``multiply`` with scale > 1)
raises ``WrongProductError`` rather than silently mis-scaling. All add_offsets in the real
samples are 0.

Quality control (defaults; every rule is configurable per QC SDS with ``qc=``):

* MOD11A1 ``QC_Day`` bits 0-1 == 00 (LST produced, good quality), as Rao et al. (2022).
* MOD13A2 ``1 km 16 days pixel reliability`` in {0 good, 1 marginal} (2 snow, 3 cloud out).
* MOD09A1 ``sur_refl_state_500m`` bits 0-1 == 00 (clear) and bit 2 == 0 (no cloud shadow);
  NDWI, LSWI and NSDSI are then computed at 500 m by :mod:`dsm.indices`.
* MOD15A2H ``FparLai_QC`` bit 0 == 0 (main algorithm) and bits 3-4 == 00 (clear).
* MCD43A3 ``BRDF_Albedo_Band_Mandatory_Quality_shortwave`` in {0 full, 1 magnitude inversion}.

Date: the ``AYYYYDDD`` field of the file name, checked against ``RANGEBEGINNINGDATE`` of
``CoreMetadata.0`` (or ``OldCoreMetadata.0``) when present (MCD43A3's name date is the middle
of its 16-day window: begin + 8 days); the metadata date alone is used when the name has none.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from affine import Affine

from dsm.errors import InputError
from dsm.grid import Region
from dsm.ingest.base import (
    EmptyGranuleError,
    GeolocationError,
    ManyResult,
    MissingVariableError,
    NoOverlapError,
    PathLike,
    WrongProductError,
    read_many,
)
from dsm.ingest.hdf4 import read_hdf4
from dsm.ingest.modis_metadata import (
    SPHERE_RADIUS,
    TILE_SIZE,
    TILE_X0,
    TILE_Y0,
    TileGeometry,
    core_metadata_value,
    parse_struct_metadata,
    tile_corners,
    tile_date,
)
from dsm.ingest.modis_products import PRODUCTS, Layer, Output, ProductSpec, QCRule, passes_all, product_of
from dsm.ingest.reproject import (
    SINUSOIDAL_CRS,
    SINUSOIDAL_PROJ4,
    Raster,
    crop_to_region,
    fine_dataarray,
    warp_many_to_region,
)

log = logging.getLogger(__name__)


# -- product identification -------------------------------------------------------------
def _identify(path: str, product: str | None, grid_name: str) -> str:
    by_name = product_of(path)
    key: str | None
    if product is not None:
        key = product_of(product) or product.upper()
        if key not in PRODUCTS:
            raise ValueError(f"unknown MODIS product {product!r}; known: {sorted(PRODUCTS)}")
        if by_name is not None and by_name != key:
            raise WrongProductError(path, f"file name says {by_name}, but {key} was asked for")
    else:
        key = by_name or next((k for k, s in PRODUCTS.items() if grid_name.startswith(s.grid_prefix)), None)
        if key is None:
            raise WrongProductError(path, f"grid {grid_name!r} is not one of the supported products {sorted(PRODUCTS)}")
    if not grid_name.startswith(PRODUCTS[key].grid_prefix):
        raise WrongProductError(path, f"grid {grid_name!r} is not the {key} grid ({PRODUCTS[key].grid_prefix})")
    return key


# -- unpacking --------------------------------------------------------------------------
def _number(value: object) -> float | None:
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return None


def unpack(raw: np.ndarray, attrs: Mapping[str, object], convention: str, path: str = "", sds: str = "") -> np.ndarray:
    """Physical values (float32) of a packed SDS; NaN at ``_FillValue`` and outside ``valid_range``.

    Parameters
    ----------
    raw
        Stored integers.
    attrs
        The SDS attributes (``scale_factor``, ``add_offset``, ``_FillValue``, ``valid_range``).
    convention
        ``"multiply"`` (raw * scale + offset) or ``"divide"`` ((raw - offset) / scale).
    """
    scale = _number(attrs.get("scale_factor"))
    offset = _number(attrs.get("add_offset")) or 0.0
    if scale is None or scale == 0:
        raise MissingVariableError(path, f"SDS {sds!r} has no usable scale_factor attribute ({attrs.get('scale_factor')!r})")
    if (convention == "divide" and scale < 1) or (convention == "multiply" and scale > 1):
        raise WrongProductError(path, f"SDS {sds!r} scale_factor {scale} does not fit this product's {convention} convention")
    valid = np.ones(raw.shape, dtype=bool)
    fill = _number(attrs.get("_FillValue"))
    if fill is not None:
        valid &= raw != fill
    vr = attrs.get("valid_range")
    if isinstance(vr, (list, tuple, np.ndarray)) and len(vr) == 2:
        valid &= (raw >= vr[0]) & (raw <= vr[1])
    r = raw.astype(np.float64)
    value = r * scale + offset if convention == "multiply" else (r - offset) / scale
    return np.where(valid, value, np.nan).astype(np.float32)


# -- reading a tile ---------------------------------------------------------------------
def read_modis_tile(
    path: PathLike,
    product: str | None = None,
    *,
    qc: Mapping[str, Sequence[QCRule]] | None = None,
    isolate: bool = True,
) -> tuple[xr.Dataset, dt.date]:
    """Read one MODIS tile on its native sinusoidal grid, scaled and QC-masked.

    Parameters
    ----------
    path
        HDF4-EOS tile (``MOD11A1.A2021227.h11v05.061....hdf``).
    product
        Expected product (``"MOD11A1"``, ``"MYD13A2"``...); None: from the name or grid.
    qc
        QC rules per QC SDS name, replacing the product defaults (module docstring); an
        empty sequence disables that QC layer.
    isolate
        Read the HDF4 file in a child process (see :mod:`dsm.ingest.hdf4`).

    Returns
    -------
    (xarray.Dataset, datetime.date)
        Variables (y, x) in float32 physical units with NaN where missing or rejected, x/y
        pixel-centre coordinates in sinusoidal metres; attributes ``product``, ``tile``,
        ``date``, ``crs`` (PROJ string), ``transform`` (GDAL order) and ``source``.

    Raises
    ------
    UnreadableFileError, WrongProductError, MissingVariableError, GeolocationError,
    InputDateError, EmptyGranuleError
    """
    path = os.fspath(path)
    guess = product_of(product) if product else product_of(path)
    names = _needed(PRODUCTS[guess], qc) if guess else ()
    content = read_hdf4(path, names, isolate=isolate, require=False)
    struct = content.attributes.get("StructMetadata.0")
    if not isinstance(struct, str):
        raise GeolocationError(path, "no StructMetadata.0 attribute: not an HDF-EOS grid file")
    geom = parse_struct_metadata(struct, path)
    key = _identify(path, product, geom.grid_name)
    spec = PRODUCTS[key]
    date = tile_date(path, content.attributes, spec)
    rules = {**spec.qc_defaults, **(qc or {})}
    needed = _needed(spec, qc)
    if set(needed) - set(content.sds):
        content = read_hdf4(path, needed, isolate=isolate)  # product found from the grid name
    layers: dict[str, np.ndarray] = {}
    for name, layer in spec.layers.items():
        raw = content.sds[layer.sds]
        if raw.shape != (geom.ydim, geom.xdim):
            raise GeolocationError(path, f"SDS {layer.sds!r} shape {raw.shape} is not YDim x XDim {(geom.ydim, geom.xdim)}")
        value = unpack(raw, content.sds_attributes[layer.sds], layer.convention, path, layer.sds)
        if layer.qc_sds and rules.get(layer.qc_sds):
            value[~passes_all(rules[layer.qc_sds], content.sds[layer.qc_sds])] = np.nan
        layers[name] = value
    out = spec.derive(layers) if spec.derive else layers
    counts = {k: int(np.count_nonzero(~np.isnan(v))) for k, v in out.items()}
    if not any(counts.values()):
        raise EmptyGranuleError(path, f"no valid {key} pixel after fill and QC masking ({sorted(out)})")
    log.debug("%s: %s %s valid pixels %s", path, key, date, counts)
    t = geom.transform
    x = t.c + (np.arange(geom.xdim) + 0.5) * t.a
    y = t.f + (np.arange(geom.ydim) + 0.5) * t.e
    h, v = geom.tile
    ds = xr.Dataset(
        {
            k: (("y", "x"), a.astype(np.float32), _cf(spec.outputs[k]) | {"valid_pixels": counts[k]})
            for k, a in out.items()
        },
        coords={"x": ("x", x, {"units": "m"}), "y": ("y", y, {"units": "m"})},
        attrs={
            "product": key,
            "grid_name": geom.grid_name,
            "tile": f"h{h:02d}v{v:02d}",
            "date": date.isoformat(),
            "composite_days": spec.composite_days,
            "crs": SINUSOIDAL_PROJ4,
            "transform": tuple(t.to_gdal()),
            "source": os.path.basename(path),
        },
    )
    return ds, date


def _needed(spec: ProductSpec, qc: Mapping[str, Sequence[QCRule]] | None) -> list[str]:
    rules = {**spec.qc_defaults, **(qc or {})}
    names = {layer.sds for layer in spec.layers.values()}
    names |= {layer.qc_sds for layer in spec.layers.values() if layer.qc_sds and rules.get(layer.qc_sds)}
    return sorted(names)


def _cf(o: Output) -> dict[str, str]:
    a = {"units": o.units, "long_name": o.long_name, "resampling_to_1km": o.resampling}
    if o.standard_name:
        a["standard_name"] = o.standard_name
    return a


def tile_raster(ds: xr.Dataset, var: str) -> Raster:
    """A variable of a :func:`read_modis_tile` dataset as a :class:`Raster` (sinusoidal)."""
    return Raster(np.asarray(ds[var].values, dtype=np.float32), Affine.from_gdal(*ds.attrs["transform"]), SINUSOIDAL_CRS)


# -- tiles -> region --------------------------------------------------------------------
def modis_to_region(
    paths: Sequence[PathLike],
    region: Region,
    product: str | None = None,
    *,
    qc: Mapping[str, Sequence[QCRule]] | None = None,
    isolate: bool = True,
) -> tuple[xr.Dataset, dt.date, ManyResult]:
    """Mosaic the tiles of one product and date and reproject them onto a region's 1 km grid.

    Bad tiles are reported, not raised (:func:`dsm.ingest.base.read_many`); tiles that do not
    touch the region are reported as skipped. Resampling per variable is the product's
    (:mod:`dsm.ingest.reproject` table).

    Returns
    -------
    (xarray.Dataset, datetime.date, ManyResult)
        Variables (y, x) on the region's 1 km grid, the date and the per-file report.

    Raises
    ------
    InputError
        No tile could be used, or the tiles mix products or dates.
    """
    many = read_many(paths, _read_for_region, product=product, qc=qc, isolate=isolate, region=region)
    tiles: list[xr.Dataset] = [ds for ds, _ in many.results.values()]
    if not tiles:
        raise InputError(f"no usable {product or 'MODIS'} tile for region {region}: {[(r.path, r.reason) for r in many.report]}")
    products = {t.attrs["product"] for t in tiles}
    dates = {d for _, d in many.results.values()}
    if len(products) > 1 or len(dates) > 1:
        raise InputError(f"tiles mix products {sorted(products)} or dates {sorted(dates)}: mosaic one product and date at a time")
    spec = PRODUCTS[products.pop()]
    date = dates.pop()
    data = {}
    for var in tiles[0].data_vars:
        o = spec.outputs[str(var)]
        arr = warp_many_to_region([tile_raster(t, str(var)) for t in tiles], region, o.resampling)
        da = fine_dataarray(arr, region, str(var), _cf(o))
        data[str(var)] = da.assign_attrs(sources=" ".join(t.attrs["source"] for t in tiles))
    ds = xr.Dataset(data, attrs={"product": tiles[0].attrs["product"], "date": date.isoformat(), "region": str(region.to_dict())})
    return ds, date, many


def _read_for_region(path: str, region: Region, *, product: str | None,
                     qc: Mapping[str, Sequence[QCRule]] | None, isolate: bool) -> tuple[xr.Dataset, dt.date]:
    ds, date = read_modis_tile(path, product, qc=qc, isolate=isolate)
    if crop_to_region(tile_raster(ds, str(next(iter(ds.data_vars)))), region, margin=1) is None:
        raise NoOverlapError(path, f"tile {ds.attrs['tile']} does not cover region {region.to_dict()}")
    return ds, date


__all__ = [
    "modis_to_region", "read_modis_tile", "tile_raster", "unpack",
    # the product specifications (dsm.ingest.modis_products)
    "PRODUCTS", "Layer", "Output", "ProductSpec", "QCRule", "passes_all", "product_of",
    # the tile metadata (dsm.ingest.modis_metadata)
    "SPHERE_RADIUS", "TILE_SIZE", "TILE_X0", "TILE_Y0", "TileGeometry", "core_metadata_value",
    "parse_struct_metadata", "tile_corners", "tile_date",
]
