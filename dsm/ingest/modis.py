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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from affine import Affine

from dsm import indices
from dsm.errors import InputError
from dsm.grid import Region
from dsm.ingest.base import (
    EmptyGranuleError,
    GeolocationError,
    InputDateError,
    ManyResult,
    MissingVariableError,
    NoOverlapError,
    PathLike,
    WrongProductError,
    read_many,
)
from dsm.ingest.hdf4 import read_hdf4
from dsm.ingest.reproject import (
    SINUSOIDAL_CRS,
    SINUSOIDAL_PROJ4,
    Raster,
    crop_to_region,
    fine_dataarray,
    warp_many_to_region,
)

log = logging.getLogger(__name__)

#: Published MODIS sinusoidal tiling (metres): tile (h, v) upper-left corner.
TILE_X0 = -20015109.354
TILE_Y0 = 10007554.677
TILE_SIZE = 1111950.5197
SPHERE_RADIUS = 6371007.181


# -- product specifications -------------------------------------------------------------
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


# -- StructMetadata / CoreMetadata ------------------------------------------------------
@dataclass(frozen=True)
class TileGeometry:
    """Grid of one HDF-EOS tile, from ``StructMetadata.0``."""

    grid_name: str
    xdim: int
    ydim: int
    upper_left: tuple[float, float]
    lower_right: tuple[float, float]
    radius: float

    @property
    def transform(self) -> Affine:
        """Affine transform (pixel corners) of the tile."""
        (x0, y0), (x1, y1) = self.upper_left, self.lower_right
        return Affine((x1 - x0) / self.xdim, 0.0, x0, 0.0, (y1 - y0) / self.ydim, y0)

    @property
    def pixel_size(self) -> float:
        """Pixel width in metres (926.625 m for 1 km, 463.313 m for 500 m products)."""
        return (self.lower_right[0] - self.upper_left[0]) / self.xdim

    @property
    def tile(self) -> tuple[int, int]:
        """(h, v) of the published tile holding the grid's upper-left corner."""
        x0, y0 = self.upper_left
        return int(np.floor((x0 - TILE_X0) / TILE_SIZE + 1e-6)), int(np.floor((TILE_Y0 - y0) / TILE_SIZE + 1e-6))


def _odl(text: str, key: str) -> str | None:
    m = re.search(rf"^\s*{re.escape(key)}\s*=\s*(.+?)\s*$", text, re.M)
    return m.group(1) if m else None


def _pair(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    nums = re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", value)
    return (float(nums[0]), float(nums[1])) if len(nums) >= 2 else None


def parse_struct_metadata(text: str, path: PathLike = "<StructMetadata.0>") -> TileGeometry:
    """Geometry of the first grid of an HDF-EOS ``StructMetadata.0`` text.

    Raises
    ------
    GeolocationError
        No grid, a missing corner/size, or a projection other than sinusoidal.
    """
    m = re.search(r"GROUP=GRID_1(.*?)END_GROUP=GRID_1", text, re.S)
    if m is None:
        raise GeolocationError(path, "StructMetadata.0 defines no grid (GROUP=GRID_1)")
    g = m.group(1)
    name = (_odl(g, "GridName") or "").strip('"')
    xdim, ydim = _odl(g, "XDim"), _odl(g, "YDim")
    ul, lr = _pair(_odl(g, "UpperLeftPointMtrs")), _pair(_odl(g, "LowerRightMtrs"))
    proj = _odl(g, "Projection")
    if None in (xdim, ydim, ul, lr):
        raise GeolocationError(path, "StructMetadata.0 lacks XDim, YDim, UpperLeftPointMtrs or LowerRightMtrs")
    if proj != "GCTP_SNSOID":
        raise GeolocationError(path, f"projection {proj!r} is not MODIS sinusoidal (GCTP_SNSOID)")
    params = re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", _odl(g, "ProjParams") or "")
    radius = float(params[0]) if params and float(params[0]) > 0 else SPHERE_RADIUS
    if abs(radius - SPHERE_RADIUS) > 1.0:
        raise GeolocationError(path, f"sinusoidal sphere radius {radius} m is not MODIS's {SPHERE_RADIUS} m")
    geom = TileGeometry(name, int(xdim), int(ydim), ul, lr, radius)
    if not (geom.pixel_size > 0 and geom.transform.e < 0):
        raise GeolocationError(path, f"grid corners {ul} / {lr} are not upper-left / lower-right")
    return geom


def core_metadata_value(text: str, name: str) -> str | None:
    """``VALUE`` of ``OBJECT = name`` in an ECS ``CoreMetadata.0`` (ODL) text, or None."""
    m = re.search(rf"OBJECT\s*=\s*{re.escape(name)}\s*\n(.*?)END_OBJECT\s*=\s*{re.escape(name)}\b", text, re.S)
    if not m:
        return None
    v = re.search(r"^\s*VALUE\s*=\s*(.+?)\s*$", m.group(1), re.M)
    return v.group(1).strip('"') if v else None


# -- product and date identification ----------------------------------------------------
def product_of(path: PathLike) -> str | None:
    """Key in :data:`PRODUCTS` of the short name at the start of a file name, or None."""
    short = os.path.basename(os.fspath(path)).split(".")[0].upper()
    for key, spec in PRODUCTS.items():
        if short in spec.short_names:
            return key
    return None


def _identify(path: str, product: str | None, grid_name: str) -> str:
    by_name = product_of(path)
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


def tile_date(path: str, attributes: Mapping[str, object], spec: ProductSpec) -> dt.date:
    """Date of a tile: ``AYYYYDDD`` in the name, cross-checked with ``RANGEBEGINNINGDATE``."""
    name_date = None
    m = re.search(r"\.A(\d{4})(\d{3})\.", os.path.basename(path))
    if m:
        try:
            name_date = dt.date(int(m.group(1)), 1, 1) + dt.timedelta(int(m.group(2)) - 1)
            if name_date.year != int(m.group(1)):
                raise ValueError("day of year past the end of the year")
        except ValueError as exc:
            raise InputDateError(path, f"'A{m.group(1)}{m.group(2)}' in the name is not a date ({exc})") from exc
    meta_date = None
    core = attributes.get("CoreMetadata.0") or attributes.get("OldCoreMetadata.0")
    if isinstance(core, str):
        value = core_metadata_value(core, "RANGEBEGINNINGDATE")
        if value:
            try:
                meta_date = dt.date.fromisoformat(value) + dt.timedelta(spec.name_date_offset)
            except ValueError as exc:
                raise InputDateError(path, f"RANGEBEGINNINGDATE {value!r} is not a date") from exc
    if name_date and meta_date and name_date != meta_date:
        raise InputDateError(path, f"file name date {name_date} disagrees with the metadata date {meta_date}")
    date = name_date or meta_date
    if date is None:
        raise InputDateError(path, "no AYYYYDDD date in the name and no RANGEBEGINNINGDATE in the metadata")
    return date


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


def _read_for_region(path: str, region: Region, **kw: object) -> tuple[xr.Dataset, dt.date]:
    ds, date = read_modis_tile(path, **kw)  # type: ignore[arg-type]
    if crop_to_region(tile_raster(ds, next(iter(ds.data_vars))), region, margin=1) is None:
        raise NoOverlapError(path, f"tile {ds.attrs['tile']} does not cover region {region.to_dict()}")
    return ds, date


def tile_corners(h: int, v: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Upper-left and lower-right corners (sinusoidal metres) of tile (h, v), published tiling."""
    x0, y0 = TILE_X0 + h * TILE_SIZE, TILE_Y0 - v * TILE_SIZE
    return (x0, y0), (x0 + TILE_SIZE, y0 - TILE_SIZE)
