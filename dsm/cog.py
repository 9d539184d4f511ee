"""Cloud-Optimized GeoTIFFs of the daily maps: one per day and layer.

Per predicted day a worker reads the day's layers from the products store as stored and writes
one COG each to a local temporary file (rasterio cannot write ``s3://``), checks it
(``rio_cogeo.cog_validate`` plus overviews, which ``cog_validate`` does not require) and uploads
it whole with fsspec to ``stores.cog``:

``SM_1km_YYYYDDD.tif``
    ``sm``: int16 = soil moisture x 10000 (band scale 0.0001, offset 0), nodata -9999.
``SM_1km_YYYYDDD_unc.tif``
    ``sm_unc``: the half width of the prediction interval, packed like ``sm``.
``SM_1km_YYYYDDD_origin.tif``
    ``sm_origin``: uint16 bit flags (:data:`dsm.products.ORIGIN_BITS`), no scale, no nodata
    (0: not predicted); its overviews take the nearest pixel, never a mean of flags.

Each band keeps its description, units (GDAL's unit type), scale, offset, nodata and tags
(``units``, ``long_name``, ``variable``); the COGs are written by GDAL's COG driver, tiled, with
overviews and explicit compression; ``output.export_crs: EPSG:4326`` reprojects them (nearest neighbour).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import zarr
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rio_cogeo.cogeo import cog_validate

from dsm import files, products
from dsm.daydata import check_day, day_layer, valid_count
from dsm.errors import InputError
from dsm.grid import EPSG, Region
from dsm.periods import julian_name
from dsm.storeref import StoreRef


@dataclass(frozen=True)
class CogLayer:
    """How one products variable becomes a COG band."""

    variable: str
    suffix: str  # after SM_1km_YYYYDDD
    dtype: str
    nodata: int | None
    scale: float
    units: str
    description: str
    title: str  # of its STAC asset
    roles: tuple[str, ...]  # of its STAC asset
    overview_resampling: str = "average"


LAYERS: dict[str, CogLayer] = {
    "sm": CogLayer("sm", "", "int16", products.FILL, products.SCALE, "m3 m-3",
                   "sm: surface soil moisture (top 5 cm), x 10000", "soil moisture x 10000", ("data",)),
    "sm_unc": CogLayer("sm_unc", "_unc", "int16", products.FILL, products.SCALE, "m3 m-3",
                       "sm_unc: half width of the central prediction interval of sm, x 10000",
                       "uncertainty of soil moisture (interval half width) x 10000", ("uncertainty",)),
    "sm_origin": CogLayer("sm_origin", "_origin", "uint16", None, 1.0, "1",
                          "sm_origin: origin and quality bit flags of sm (0: not predicted)",
                          "origin and quality bit flags", ("quality",), "nearest"),
}
"""The COG of each exported products variable; ``sm`` first."""
EXTRA_LAYERS: tuple[str, ...] = ("sm_unc", "sm_origin")
"""The layers exported beside ``sm`` (``sm_unc`` only with ``output.uncertainty`` on)."""


def cog_name(day: dt.date, layer: str = "sm") -> str:
    """``SM_1km_YYYYDDD.tif`` (``sm``), ``SM_1km_YYYYDDD_unc.tif``, ``SM_1km_YYYYDDD_origin.tif``."""
    return f"SM_1km_{julian_name(day)}{LAYERS[layer].suffix}.tif"


def blocksize_for(shape: tuple[int, int], wanted: int) -> int:
    """The largest power of two <= ``wanted`` that still leaves room for one overview."""
    size = wanted
    while size > 16 and size * 2 > min(shape):
        size //= 2
    return max(16, size)


@dataclass(frozen=True)
class ExportJob:
    """One day to export: from the products store ``output`` to the COG folder ``cog``."""

    output: StoreRef
    cog: StoreRef
    day: dt.date
    t: int
    crs: str = f"EPSG:{EPSG}"
    blocksize: int = 512
    compress: str = "DEFLATE"
    valid_pixels: int | None = None  # what predict wrote that day (None: a store that did not record it)
    sm_digest: str | None = None  # the digest of the sm predict wrote that day (products.day_digest; None: not recorded)
    layers: tuple[str, ...] = EXTRA_LAYERS  # exported beside sm


def _write_source(mem: rasterio.MemoryFile, data: np.ndarray, profile: Mapping[str, Any], layer: CogLayer,
                  blocksize: int) -> None:
    """Write ``data`` to the in-memory GeoTIFF ``mem`` with ``layer``'s band metadata and overviews.

    The overviews (factors 2, 4, ... down to about one block, ``layer.overview_resampling``,
    nodata excluded) are built here, on the full resolution, the way rio-cogeo builds them.
    """
    with mem.open(**profile) as dst:
        dst.write(np.asarray(data, dtype=layer.dtype), 1)
        dst.scales = (layer.scale,)
        dst.offsets = (0.0,)
        dst.units = (layer.units,)
        dst.set_band_description(1, layer.description)
        dst.update_tags(1, units=layer.units, long_name=layer.description.split(": ", 1)[1], variable=layer.variable)
        dst.update_tags(OVERVIEW_RESAMPLING=layer.overview_resampling.upper())
        levels = max(1, int(math.log2(max(1, min(dst.height, dst.width) // blocksize))))
        dst.build_overviews([2 ** j for j in range(1, levels + 1)], Resampling[layer.overview_resampling])


def write_cog(data: np.ndarray, transform: Any, crs: str, path: str, blocksize: int = 512,
              compress: str = "DEFLATE", dst_crs: str | None = None, layer: CogLayer = LAYERS["sm"]) -> dict[str, Any]:
    """Write ``data`` (stored values of ``layer``) as a validated COG at local ``path``.

    The band's values, scale, offset, nodata, units, description, tags and overviews are
    written to an in-memory GeoTIFF (reprojected first to ``dst_crs``, nearest neighbour, when
    given) that GDAL's COG driver copies whole. rio-cogeo's ``cog_translate`` would drop the
    band's units (it copies descriptions, tags, scales and offsets only), hence the driver.

    Returns the COG's shape, transform, CRS, overview factors, scale, offset and nodata.

    Raises
    ------
    InputError
        The written file is not a valid COG or has no overviews.
    """
    h, w = data.shape
    bs = blocksize_for((h, w), blocksize)
    profile = {"driver": "GTiff", "dtype": layer.dtype, "count": 1, "height": h, "width": w, "crs": crs,
               "transform": transform, "nodata": layer.nodata}
    with rasterio.MemoryFile() as mem:
        if dst_crs:
            with rasterio.MemoryFile() as native:
                with native.open(**profile) as src:
                    src.write(np.asarray(data, dtype=layer.dtype), 1)
                with native.open() as src, WarpedVRT(src, crs=dst_crs, resampling=Resampling.nearest,
                                                      nodata=layer.nodata) as vrt:
                    data = vrt.read(1)
                    profile.update(height=vrt.height, width=vrt.width, crs=vrt.crs, transform=vrt.transform)
        _write_source(mem, data, profile, layer, bs)
        with mem.open() as src:
            rasterio.shutil.copy(src, path, driver="COG", BLOCKSIZE=bs, COMPRESS=compress, PREDICTOR="YES",
                                 OVERVIEWS="FORCE_USE_EXISTING")
    valid, errors, warnings = cog_validate(path, quiet=True)
    with rasterio.open(path) as dst:
        overviews = dst.overviews(1)
        info = {"shape": [dst.height, dst.width], "transform": list(dst.transform)[:6], "crs": dst.crs.to_string(),
                "overviews": overviews, "bounds": list(dst.bounds), "blocksize": bs,
                "scale": dst.scales[0], "offset": dst.offsets[0], "nodata": dst.nodata}
    if not valid or not overviews:
        raise InputError(f"COG {path} is not valid: {errors or []} {warnings or []}"
                         + ("" if overviews else " (no overviews)"))
    return info


def _publish(data: np.ndarray, job: ExportJob, region: Region, layer: str, tmp: str) -> dict[str, Any]:
    """Write one layer's COG locally, upload it to ``job.cog``; its description."""
    name = cog_name(job.day, layer)
    path = os.path.join(tmp, name)
    dst_crs = None if job.crs == f"EPSG:{EPSG}" else job.crs
    info = write_cog(data, region.fine_transform, f"EPSG:{EPSG}", path, job.blocksize, job.compress, dst_crs,
                     LAYERS[layer])
    dest = job.cog.join(name)
    fs, target = dest.fs()
    files.put_file(fs, path, target)
    info.update(url=dest.url, name=name, size=os.path.getsize(path), sha256=files.file_sha256(path))
    return info


def export_day(job: ExportJob) -> dict[str, Any]:
    """Write one day's COGs and upload them (runs on a worker); returns their description.

    The record is ``sm``'s (``url``, ``name``, ``size``, ``sha256``, shape, transform...) with
    ``layers``: the same for each other layer written.
    """
    out = job.output
    data = np.asarray(day_layer(out, "sm", job.t), dtype=np.int16)
    origin = day_layer(out, "sm_origin", job.t)
    group = zarr.open_group(out.url, mode="r", storage_options=out.zarr_options)
    region = products.region_of(group.attrs)
    sm = group.get("sm")
    if not isinstance(sm, zarr.Array):
        raise InputError(f"{out}: no array 'sm'; not a products store (`dsm predict CONFIG` writes one)")
    digest = products.day_digest(data, (sm.chunks[1], sm.chunks[2])) if job.sm_digest is not None else None
    check_day(out.url, job.day, job.t, valid_count(data), digest, job.valid_pixels, job.sm_digest)
    stored = {"sm": data, "sm_origin": origin}
    with tempfile.TemporaryDirectory(prefix="dsm-cog-") as tmp:
        info = _publish(data, job, region, "sm", tmp)
        info["layers"] = {}
        for layer in job.layers:
            values = stored[layer] if layer in stored else day_layer(out, layer, job.t)
            if layer == "sm_unc":
                values = np.where(data == products.FILL, products.FILL, values)  # no uncertainty without sm
            info["layers"][layer] = {k: v for k, v in _publish(values, job, region, layer, tmp).items()
                                     if k in ("url", "name", "size", "sha256", "nodata", "scale")}
    info.update(day=job.day.isoformat(), valid_pixels=valid_count(data),
                origin={products.ORIGIN_BITS[b][0]: n for b, n in products.origin_counts(origin).items()},
                lonlat_bounds=list(region.lonlat_bounds), gsd=abs(region.fine_transform.a))
    return info


def cog_intact(info: Mapping[str, Any], cog: StoreRef, layers: tuple[str, ...] = EXTRA_LAYERS,
               listed: files.Listing | None = None) -> bool:
    """Whether every COG of the day ``info`` records (``sm`` and each of ``layers``) still
    exists with the size it was written with; a record without one of ``layers`` (an export
    made before they were written) is not intact. The recorded URLs are opened with the
    options of ``cog``, the COG folder they were written to; ``listed``: the sizes from one
    listing of that folder (:func:`dsm.files.listing`) instead of a request per file."""
    recorded = info.get("layers", {})
    if any(layer not in recorded for layer in layers):
        return False
    has_size = files.has_size if listed is None else listed.has_size
    return all(has_size(cog.at(i["url"]), i.get("size")) for i in (info, *(recorded[layer] for layer in layers)))
