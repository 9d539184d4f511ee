"""Cloud-Optimized GeoTIFFs and a STAC catalog of the daily maps (the ``dsm export`` stage).

Per predicted day, a worker reads the day's ``sm`` from the output store as stored (int16,
value x 10000, -9999 where empty), writes a COG ``SM_1km_YYYYDDD.tif`` to a local temporary
file (rasterio cannot write ``s3://``), checks it (``rio_cogeo.cog_validate`` plus overviews,
which ``cog_validate`` does not require) and uploads the whole file with fsspec to
``stores.cog`` (a folder or ``s3://`` URL). COGs carry nodata -9999, band scale 0.0001 and
offset 0, internal tiles, overviews and explicit compression; ``output.export_crs:
EPSG:4326`` reprojects them (nearest neighbour) from EASE-Grid 2.0.

The client then writes a STAC Collection and one Item per COG (projection and raster
extensions; provenance: the period, the model, origin-bit statistics) to ``stores.stac``
and records each exported day in the output store (``days_exported``). A rerun skips days
already exported whose COG exists.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pystac
import rasterio
import zarr
from distributed import Client
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from dsm import files, fingerprint, products, store
from dsm.cluster import outcomes
from dsm.config import Config
from dsm.errors import ConfigError, InputError, StoreError
from dsm.grid import EPSG, Region
from dsm.periods import julian_name
from dsm.runlock import Lease, LockLostError

COLLECTION_ID = "dsm-sm-1km"


def cog_name(day: dt.date) -> str:
    """``SM_1km_YYYYDDD.tif``."""
    return f"SM_1km_{julian_name(day)}.tif"


def blocksize_for(shape: tuple[int, int], wanted: int) -> int:
    """The largest power of two <= ``wanted`` that still leaves room for one overview."""
    size = wanted
    while size > 16 and size * 2 > min(shape):
        size //= 2
    return max(16, size)


class LostDataError(StoreError):
    """The products store no longer holds what predict wrote for a day."""


@dataclass(frozen=True)
class ExportJob:
    """One day to export."""

    output: str
    cog_url: str
    storage_options: str
    day: dt.date
    t: int
    crs: str = f"EPSG:{EPSG}"
    blocksize: int = 512
    compress: str = "DEFLATE"
    valid_pixels: int | None = None  # what predict wrote that day (None: a store that did not record it)
    sm_digest: str | None = None  # the digest of the sm predict wrote that day (products.day_digest; None: not recorded)


def write_cog(data: np.ndarray, transform: Any, crs: str, path: str, blocksize: int = 512,
              compress: str = "DEFLATE", dst_crs: str | None = None) -> dict[str, Any]:
    """Write int16 ``data`` (x 10000, nodata -9999) as a validated COG at local ``path``.

    Returns the COG's shape, transform, CRS and overview factors.
    """
    h, w = data.shape
    bs = blocksize_for((h, w), blocksize)
    profile = {"driver": "GTiff", "dtype": "int16", "count": 1, "height": h, "width": w, "crs": crs,
               "transform": transform, "nodata": products.FILL}
    cog = dict(cog_profiles.get(compress.lower() if compress != "DEFLATE" else "deflate"))
    cog.update(blockxsize=bs, blockysize=bs, compress=compress, predictor=2)
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as src:
            src.write(data, 1)
            src.scales = (products.SCALE,)
            src.offsets = (0.0,)
            src.units = ("m3 m-3",)
            src.set_band_description(1, "sm: surface soil moisture (top 5 cm), x 10000")
            src.update_tags(1, units="m3 m-3", long_name="surface soil moisture (top 5 cm)")
        with mem.open() as src:
            source = WarpedVRT(src, crs=dst_crs, resampling=Resampling.nearest, nodata=products.FILL) if dst_crs else src
            try:
                overview_level = max(1, int(math.log2(max(1, min(source.height, source.width) // bs))))
                cog_translate(source, path, cog, nodata=products.FILL, overview_level=overview_level,
                              overview_resampling="average", in_memory=True, quiet=True, add_mask=False,
                              use_cog_driver=False, forward_band_tags=True)  # description, units, tags kept
            finally:
                if dst_crs:
                    source.close()
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


def _day_layer(out: str, name: str, t: int, so: Mapping[str, Any]) -> np.ndarray:
    """Day ``t`` of the products variable ``name``; a damaged chunk is an error naming it."""
    arr = zarr.open_array(f"{out}/{name}", mode="r", storage_options=dict(so) or None)
    try:
        return np.asarray(arr[t])
    except (ValueError, RuntimeError, OSError) as exc:
        index = [slice(t, t + 1)] + [slice(0, n) for n in arr.shape[1:]]
        raise LostDataError(f"{store.damaged_chunks(out, name, arr.shape, arr.chunks, index, arr.__getitem__, exc)}. Nothing was published and the "
                            "day is no longer marked predicted: `dsm predict CONFIG` predicts it again") from exc


def export_day(job: ExportJob) -> dict[str, Any]:
    """Write one day's COG and upload it (runs on a worker); returns its description."""
    so = json.loads(job.storage_options)
    out = job.output.rstrip("/")
    raw = _day_layer(out, "sm", job.t, so)
    origin = _day_layer(out, "sm_origin", job.t, so)
    group = zarr.open_group(out, mode="r", storage_options=so or None)
    r = group.attrs["region"]
    region = Region.from_dict(r)
    data = np.asarray(raw, dtype=np.int16)
    valid = data != products.FILL
    if job.valid_pixels is not None and int(valid.sum()) != job.valid_pixels:
        raise LostDataError(
            f"{out}/sm holds {int(valid.sum())} valid pixels on {job.day} (time index {job.t}) but predict wrote "
            f"{job.valid_pixels}: a chunk of the products store is lost or was replaced. Nothing was published and "
            f"the day is no longer marked predicted: `dsm predict CONFIG` predicts it again, then `dsm export CONFIG`")
    if job.sm_digest is not None and products.day_digest(data, tuple(group["sm"].chunks[1:])) != job.sm_digest:
        raise LostDataError(
            f"{out}/sm on {job.day} (time index {job.t}) is not what predict wrote (its digest differs): a chunk of "
            "the products store was replaced or altered. Nothing was published and the day is no longer marked "
            "predicted: `dsm predict CONFIG` predicts it again, then `dsm export CONFIG`")
    name = cog_name(job.day)
    dst_crs = None if job.crs == f"EPSG:{EPSG}" else job.crs
    with tempfile.TemporaryDirectory(prefix="dsm-cog-") as tmp:
        path = os.path.join(tmp, name)
        info = write_cog(data, region.fine_transform, f"EPSG:{EPSG}", path, job.blocksize, job.compress, dst_crs)
        url = f"{job.cog_url.rstrip('/')}/{name}"
        fs, target = fsspec.core.url_to_fs(url, **so)
        files.put_file(fs, path, target)
        info["size"] = os.path.getsize(path)
        info["sha256"] = files.file_sha256(path)
    info.update(url=url, name=name, day=job.day.isoformat(), valid_pixels=int(valid.sum()),
                origin={products.ORIGIN_BITS[b][0]: n for b, n in products.origin_counts(origin).items()},
                lonlat_bounds=list(region.lonlat_bounds))
    return info


def _cog_intact(info: Mapping[str, Any], storage_options: Mapping[str, Any]) -> bool:
    """Whether the exported COG ``info`` describes still exists with the size it was written with."""
    fs, path = fsspec.core.url_to_fs(info["url"], **storage_options)
    try:
        size = fs.size(path)
    except FileNotFoundError:
        return False
    return "size" not in info or size == info["size"]


# ------------------------------------------------------------------------------ STAC
class FsspecStacIO(pystac.StacIO):
    """pystac IO through fsspec, so catalogs can live on ``s3://`` as well as on disk."""

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.so = dict(storage_options or {})

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:  # noqa: D102
        with fsspec.open(str(source), "r", **self.so) as f:
            return f.read()

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        files.write_url(str(dest), txt, self.so)


def stac_item(info: Mapping[str, Any], day_model: Mapping[str, Any] | None) -> pystac.Item:
    """The STAC Item of one COG (projection + raster extensions, provenance)."""
    lon0, lat0, lon1, lat1 = info["lonlat_bounds"]
    geom = {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}
    day = dt.date.fromisoformat(info["day"])
    start = dt.datetime.combine(day, dt.time(0), dt.timezone.utc)
    props: dict[str, Any] = {"start_datetime": start.isoformat(),
                             "end_datetime": (start + dt.timedelta(days=1, seconds=-1)).isoformat(),
                             "dsm:julian": julian_name(day), "dsm:valid_pixels": info["valid_pixels"],
                             "dsm:origin_pixels": info["origin"]}
    if day_model:
        props.update({"dsm:period": day_model.get("period"), "dsm:model_period": day_model.get("model_period"),
                      "dsm:model": day_model.get("model"), "dsm:reused": day_model.get("reused"),
                      "dsm:variants": sorted(day_model.get("variants", {}))})
    item = pystac.Item(id=info["name"].removesuffix(".tif"), geometry=geom, bbox=[lon0, lat0, lon1, lat1],
                       datetime=start + dt.timedelta(hours=12), properties=props)
    asset = pystac.Asset(href=info["url"], media_type=pystac.MediaType.COG, title="soil moisture x 10000",
                         roles=["data"])
    item.add_asset("sm", asset)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = int(info["crs"].split(":")[1]) if info["crs"].upper().startswith("EPSG:") else None
    proj.epsg = epsg  # proj:code (projection extension v2)
    if epsg is not None:
        item.properties["proj:epsg"] = epsg  # beside it, for the readers of v1 (stackstac)
    proj.shape = info["shape"]
    proj.transform = info["transform"]
    raster = RasterExtension.ext(asset, add_if_missing=True)
    raster.bands = [RasterBand.create(nodata=products.FILL, data_type=DataType.INT16, scale=products.SCALE,
                                      offset=0.0, unit="m3 m-3", spatial_resolution=abs(info["transform"][0]))]
    return item


def build_catalog(infos: list[Mapping[str, Any]], day_models: Mapping[str, Any], stac_url: str,
                  storage_options: Mapping[str, Any] | None = None) -> pystac.Collection:
    """Write the STAC Collection with one Item per COG under ``stac_url``; returns it."""
    items = [stac_item(i, day_models.get(i["day"])) for i in sorted(infos, key=lambda i: i["day"])]
    bbox = [min(i.bbox[0] for i in items), min(i.bbox[1] for i in items),
            max(i.bbox[2] for i in items), max(i.bbox[3] for i in items)]
    times = [i.datetime for i in items]
    coll = pystac.Collection(
        id=COLLECTION_ID,
        description="Daily 1 km surface soil moisture downscaled from SMAP L3 36 km (dsm; Rao et al., ESSD 2022). "
                    "COG values are soil moisture x 10000 (int16, nodata -9999).",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(times), max(times)]])),
        license="proprietary", title="dsm daily 1 km soil moisture",
    )
    for item in items:
        coll.add_item(item)
    root = stac_url.rstrip("/")
    coll.normalize_hrefs(root)
    coll.make_all_asset_hrefs_relative()  # the catalog and the COGs move together (another folder, bucket)
    coll.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=FsspecStacIO(storage_options))
    return coll


@dataclass
class ExportReport:
    """What an export run did."""

    exported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stac: str | None = None


def export(config: Config, client: Client, *, force: bool = False,
           progress: Callable[[str], None] | None = None, lease: Lease | None = None) -> ExportReport:
    """Export every predicted day of ``config`` as a COG, then write the STAC catalog.

    ``lease`` (the run's :class:`dsm.runlock.Lease`) is checked before the COGs are
    submitted, as each one lands (a lost lease cancels the rest) and before the records and
    the catalog are written.
    """
    so = config.stores.storage_options
    if not config.stores.output or not config.stores.cog:
        raise ConfigError("stores.output and stores.cog must be set to export")
    ds = products.open_products(config.stores.output, so)
    done = set(ds.attrs.get("days_done", []))
    day_models = ds.attrs.get("day_models", {})
    exported = dict(ds.attrs.get("days_exported", {}))
    settings = fingerprint.record(config, "cog")
    if exported and not force:
        fingerprint.check_settings(ds.attrs.get("cog_settings"), config, "cog", config.stores.cog,
                                   "`dsm export CONFIG --force` rewrites every COG")
    times = [dt.date.fromisoformat(str(t)[:10]) for t in ds["time"].values.astype("datetime64[D]")]
    report = ExportReport()
    so_json = json.dumps(so, sort_keys=True)
    jobs = []
    for t, day in enumerate(times):
        name = day.isoformat()
        if name not in done:
            continue
        info = exported.get(name)
        if info and not force and _cog_intact(info, so):
            report.skipped.append(name)
            continue
        jobs.append(ExportJob(config.stores.output, config.stores.cog, so_json, day, t, config.output.export_crs,
                              config.output.cog_blocksize, config.output.cog_compress,
                              day_models.get(name, {}).get(products.VALID_PIXELS),
                              day_models.get(name, {}).get(products.SM_DIGEST)))
    check = lease.check if lease is not None else (lambda: None)
    check()
    futures = client.map(export_day, jobs, pure=False)
    for job, result, exc in outcomes(dict(zip(futures, jobs))):
        try:
            check()
        except LockLostError:
            client.cancel(futures)
            raise
        name = job.day.isoformat()
        if exc is None:
            exported[name] = result
            report.exported.append(name)
            if progress:
                progress(f"{name}: {exported[name]['url']}")
        else:
            report.failed[name] = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, LostDataError):  # predict redoes the day; its old COG is no longer trusted
                done.discard(name)
                exported.pop(name, None)
    report.exported.sort()
    check()
    store.set_attrs(config.stores.output, {"days_exported": {k: exported[k] for k in sorted(exported)},
                                        "cog_settings": settings, "days_done": sorted(done)}, so,
                    fence=lease.fence if lease is not None else None)
    if exported:
        stac_url = config.stores.stac or f"{config.stores.cog.rstrip('/')}/stac"
        build_catalog(list(exported.values()), ds.attrs.get("day_models", {}), stac_url, so)
        report.stac = f"{stac_url.rstrip('/')}/collection.json"
    return report
