"""CF-1.10 / ACDD-1.3 netCDF4 files of the daily maps (``dsm export --format netcdf``).

One file per calendar year (``SM_1km_YYYY.nc``) or month (``SM_1km_YYYYMM.nc``,
``output.netcdf_period``) holds the predicted days of that period on the 1 km EASE-Grid 2.0:

* ``sm`` and ``sm_unc`` packed as in the products store (int16, ``scale_factor`` 1e-4,
  ``add_offset`` 0, ``_FillValue`` -9999, ``valid_range`` [0, 10000] in packed units), the
  bytes copied as stored (no re-rounding); ``sm_origin`` uint16 bit flags (``flag_masks``,
  ``flag_meanings``), ``ancillary_variables`` of ``sm``;
* coordinates without ``_FillValue``: ``time`` (days since 1970-01-01, with ``time_bnds``, the
  UTC day), ``y``/``x`` (``projection_*_coordinate``, m, ``axis``), auxiliary ``lat``/``lon``
  and the scalar ``depth`` (0.025 m, positive down, ``depth_bnds`` 0-0.05 m);
* the grid mapping ``spatial_ref`` (``lambert_cylindrical_equal_area``, EPSG:6933, ``crs_wkt``
  and GDAL's ``GeoTransform``); ``cell_methods: area: mean``;
* global ACDD discovery attributes: title, summary, keywords, license, references (the
  paper's DOI), creator/publisher (``output.providers``), history (the command and time),
  ``geospatial_*``, ``time_coverage_*``. The products store's run records (its ledger,
  :mod:`dsm.ledger`, and the settings fingerprints) are not copied.

Each file is written on a worker to a local temporary file, internally chunked (the store's
time chunk x 256 x 256) and zlib-compressed (``output.netcdf_complevel``, shuffle), then
uploaded whole with fsspec to ``stores.netcdf`` (default: ``netcdf/`` beside
``stores.output``). Every day is checked against what predict recorded (valid pixels, digest)
as it is copied.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import netCDF4
import numpy as np
import zarr

from dsm import __version__, files, products
from dsm.config import Config
from dsm.daydata import LostDataError, check_day, open_layer, read_block
from dsm.errors import ConfigError, InputError
from dsm.grid import Region
from dsm.storeref import StoreRef

VARIABLES: tuple[str, ...] = ("sm", "sm_unc", "sm_origin")
"""The products variables a netCDF file holds (those the store has)."""
EPOCH = dt.date(1970, 1, 1)
TIME_UNITS = "days since 1970-01-01 00:00:00"
SPATIAL_CHUNK = 256


def period_label(day: dt.date, period: str) -> str:
    """``YYYY`` (``year``) or ``YYYYMM`` (``month``): the file a day goes to."""
    return f"{day.year:04d}" if period == "year" else f"{day.year:04d}{day.month:02d}"


def netcdf_name(label: str) -> str:
    """``SM_1km_<label>.nc``."""
    return f"SM_1km_{label}.nc"


@dataclass(frozen=True)
class NetcdfJob:
    """One file to write, from the products store ``output`` into the folder ``dest``: its
    period's days (ISO), their time indices in the store and what predict recorded for each
    (valid pixels, digest; None where not recorded)."""

    output: StoreRef
    dest: StoreRef
    label: str
    days: tuple[str, ...]
    ts: tuple[int, ...]
    valid_pixels: tuple[int | None, ...]
    digests: tuple[str | None, ...]
    attrs: str  # JSON of the global attributes
    complevel: int = 4


def _provider(config: Config, role: str) -> Any:
    return next((p for p in config.output.providers if role in p.roles), None)


def global_attrs(config: Config, region: Region, days: Sequence[str], label: str, command: str,
                 now: dt.datetime | None = None) -> dict[str, Any]:
    """The global attributes (CF + ACDD-1.3) of the file ``label`` holding ``days``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    lon0, lat0, lon1, lat1 = (float(v) for v in region.lonlat_bounds)  # the region's edges
    lats, lons = np.asarray(region.fine_lat), np.asarray(region.fine_lon)  # the cells' centres
    first, last = dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])
    out = config.output
    license_text = out.license + (f" ({out.license_url})" if out.license_url else "")
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.10, ACDD-1.3",
        "title": f"dsm daily 1 km surface soil moisture (top 5 cm), {label}",
        "summary": "Daily surface soil moisture (0-5 cm, m3 m-3) on the 1 km EASE-Grid 2.0 (EPSG:6933), downscaled "
                   "from SMAP L3 36 km retrievals with MODIS, terrain and soil predictors (method "
                   f"{config.training.method}), with the half width of its {out.interval:.0%} prediction interval "
                   "(sm_unc) and bit flags of each pixel's origin and quality (sm_origin).",
        "keywords": ", ".join(out.keywords),
        "id": f"dsm-sm-1km-{label}",
        "product_version": __version__,
        "history": f"{stamp} {command} (dsm {__version__})",
        "source": products.SOURCE,
        "references": products.REFERENCES,
        "license": license_text,
        "date_created": stamp,
        "cdm_data_type": "Grid",
        "standard_name_vocabulary": "CF Standard Name Table v93",
        "project": "dsm: daily 1 km soil moisture from SMAP",
        "processing_level": "L4: SMAP L3 downscaled with statistical models of 1 km predictors",
        "acknowledgement": "SMAP L3 soil moisture from the NASA NSIDC DAAC; MODIS products from the NASA LP DAAC",
        "platform": "SMAP, Terra, Aqua",
        "instrument": "SMAP L-band radiometer, MODIS",
        "geospatial_lat_min": float(lats.min()), "geospatial_lat_max": float(lats.max()),
        "geospatial_lat_units": "degrees_north",
        "geospatial_lon_min": float(lons.min()), "geospatial_lon_max": float(lons.max()),
        "geospatial_lon_units": "degrees_east",
        "geospatial_bounds": f"POLYGON(({lat0} {lon0}, {lat0} {lon1}, {lat1} {lon1}, {lat1} {lon0}, {lat0} {lon0}))",
        "geospatial_bounds_crs": "EPSG:4326",
        "geospatial_vertical_min": products.DEPTH[0], "geospatial_vertical_max": products.DEPTH[1],
        "geospatial_vertical_units": "m", "geospatial_vertical_positive": "down",
        "time_coverage_start": f"{first.isoformat()}T00:00:00Z",
        "time_coverage_end": f"{(last + dt.timedelta(days=1)).isoformat()}T00:00:00Z",
        "time_coverage_duration": f"P{(last - first).days + 1}D",
        "time_coverage_resolution": "P1D",
        "comment": "Only the days dsm predicted are in the file (time may skip days). sm_36km, the 36 km block "
                   "mean of sm in the products store, is not included.",
        "dsm_method": config.training.method,
        "dsm_region": json.dumps(region.to_dict(), sort_keys=True),
        "grid": "EASE-Grid 2.0 global, EPSG:6933, 1 km",
    }
    for prefix, role in (("creator", "producer"), ("publisher", "host")):
        p = _provider(config, role)
        if p is not None:
            attrs[f"{prefix}_name"] = p.name
            attrs[f"{prefix}_type"] = "institution"
            attrs.update({f"{prefix}_{k}": v for k, v in (("url", p.url), ("email", p.email)) if v})
            if prefix == "creator":
                attrs["institution"] = p.name
    return attrs


# ------------------------------------------------------------------------------ worker side
def _variable_attrs(name: str, store_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """CF attributes of a data variable in the file (typed as the packed variable)."""
    keep = ("long_name", "standard_name", "units", "comment", "flag_meanings", "interval")
    a: dict[str, Any] = {k: store_attrs[k] for k in keep if k in store_attrs}
    a["coverage_content_type"] = "modelResult" if name == "sm" else "qualityInformation"  # ACDD (ISO 19115-1)
    a.update(grid_mapping="spatial_ref", coordinates="lat lon depth", cell_methods=products.CELL_METHODS)
    if name in ("sm", "sm_unc"):
        a.update(scale_factor=np.float32(products.SCALE), add_offset=np.float32(0.0),
                 valid_range=products.PACKED_RANGE.copy())
    if name == "sm":
        a["ancillary_variables"] = "sm_unc sm_origin"
    if name == "sm_origin":
        a.pop("units", None)  # flags have no units
        a.pop("cell_methods")
        a["flag_masks"] = np.array(list(products.ORIGIN_BITS), products.ORIGIN_DTYPE)
        a["valid_range"] = np.array([0, sum(products.ORIGIN_BITS)], products.ORIGIN_DTYPE)
    return a


def _coordinates(nc: Any, group: zarr.Group, job: NetcdfJob, region: Region) -> None:
    """Dimensions, coordinates, bounds and the grid mapping."""
    ny, nx = region.fine_shape
    nc.createDimension("time", len(job.days))
    nc.createDimension("y", ny)
    nc.createDimension("x", nx)
    nc.createDimension("nv", 2)
    days = np.array([(dt.date.fromisoformat(d) - EPOCH).days for d in job.days], np.int32)
    time = nc.createVariable("time", "i4", ("time",))
    time.setncatts({"standard_name": "time", "long_name": "day (UTC)", "units": TIME_UNITS,
                    "calendar": "standard", "axis": "T", "bounds": "time_bnds", "coverage_content_type": "coordinate"})
    time[:] = days
    nc.createVariable("time_bnds", "i4", ("time", "nv"))[:] = np.stack([days, days + 1], axis=1)
    depth = nc.createVariable("depth", "f4", ())
    depth.setncatts({"standard_name": "depth", "long_name": "depth below the soil surface", "units": "m",
                     "positive": "down", "axis": "Z", "bounds": "depth_bnds", "coverage_content_type": "coordinate"})
    depth.assignValue(np.float32(sum(products.DEPTH) / 2))
    nc.createVariable("depth_bnds", "f4", ("nv",))[:] = np.array(products.DEPTH, np.float32)
    for name, values, attrs in (
            ("y", region.fine_y, {"standard_name": "projection_y_coordinate", "long_name": "y of the EASE-Grid 2.0 "
                                  "cell centre", "units": "m", "axis": "Y"}),
            ("x", region.fine_x, {"standard_name": "projection_x_coordinate", "long_name": "x of the EASE-Grid 2.0 "
                                  "cell centre", "units": "m", "axis": "X"})):
        v = nc.createVariable(name, "f8", (name,))
        v.setncatts({**attrs, "coverage_content_type": "coordinate"})
        v[:] = np.asarray(values, np.float64)
    for name, dim, values, attrs in (
            ("lat", "y", region.fine_lat, {"standard_name": "latitude", "long_name": "latitude of the cell centre",
                                          "units": "degrees_north"}),
            ("lon", "x", region.fine_lon, {"standard_name": "longitude", "long_name": "longitude of the cell centre",
                                          "units": "degrees_east"})):
        v = nc.createVariable(name, "f8", (dim,))
        v.setncatts({**attrs, "coverage_content_type": "coordinate"})
        v[:] = np.asarray(values, np.float64)
    crs = nc.createVariable("spatial_ref", "i4", ())
    crs.setncatts({k: (np.float64(v) if isinstance(v, float) else v) for k, v in group["spatial_ref"].attrs.items()
                   if isinstance(v, (str, int, float)) and not isinstance(v, bool)})
    crs.assignValue(np.int32(0))


def _copy(nc: Any, job: NetcdfJob, names: Sequence[str], tchunk: int) -> None:
    """Copy each variable's stored values, time chunk by time chunk and band by band, checking
    every day's ``sm`` against what predict recorded."""
    arrays = {n: open_layer(job.output, n) for n in names}
    sm = arrays["sm"]
    nt, ny, nx = sm.shape
    cy, cx = sm.chunks[1:]
    valid = [0] * len(job.days)
    parts: list[list[int]] = [[] for _ in job.days]
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(job.ts):
        groups.setdefault(t // tchunk, []).append(i)
    for idx in groups.values():
        t0, t1 = job.ts[idx[0]], job.ts[idx[-1]] + 1
        pick = [job.ts[i] - t0 for i in idx]
        for y0 in range(0, ny, cy):
            y1 = min(ny, y0 + cy)
            index = (slice(t0, t1), slice(y0, y1), slice(0, nx))
            for name, arr in arrays.items():
                try:
                    block = read_block(arr, job.output, name, index)[pick]
                except LostDataError as exc:
                    raise LostDataError(str(exc), tuple(job.days[i] for i in idx)) from exc
                nc.variables[name][idx[0]:idx[-1] + 1, y0:y1, :] = block
                if name == "sm":
                    for k, i in enumerate(idx):
                        valid[i] += int((block[k] != products.FILL).sum())
                        parts[i].extend(products.digest_part(block[k][:, x:x + cx], y0, x) for x in range(0, nx, cx))
    for i, day in enumerate(job.days):
        digest = products.combine_digests(parts[i]) if job.digests[i] is not None else None
        check_day(job.output.url, dt.date.fromisoformat(day), job.ts[i], valid[i], digest, job.valid_pixels[i],
                  job.digests[i])


ZlibLevel = Literal[1, 2, 3, 4, 5, 6, 7, 8, 9]


def _array(group: zarr.Group, output: StoreRef, name: str) -> zarr.Array:
    """The products array ``name`` of ``group`` (the store at ``output``)."""
    arr = group.get(name)
    if not isinstance(arr, zarr.Array):
        raise InputError(f"{output}: no array {name!r}; not a products store (`dsm predict CONFIG` writes one)")
    return arr


def _zlib_level(level: int) -> ZlibLevel:
    if level not in range(1, 10):
        raise ConfigError(f"output.netcdf_complevel: {level} is not a zlib level; give 1 to 9")
    return cast(ZlibLevel, level)


def write_period(job: NetcdfJob) -> dict[str, Any]:
    """Write one period's netCDF file and upload it (runs on a worker); returns its record
    (``url``, ``name``, ``size``, ``sha256``, ``days``)."""
    group = zarr.open_group(job.output.url, mode="r", storage_options=job.output.zarr_options)
    region = products.region_of(group.attrs)
    names = [n for n in VARIABLES if n in group]
    tchunk = _array(group, job.output, "sm").chunks[0]
    ny, nx = region.fine_shape
    chunks = (min(len(job.days), tchunk), min(ny, SPATIAL_CHUNK), min(nx, SPATIAL_CHUNK))
    name = netcdf_name(job.label)
    with tempfile.TemporaryDirectory(prefix="dsm-nc-") as tmp:
        path = os.path.join(tmp, name)
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            _coordinates(nc, group, job, region)
            for var in names:
                arr = _array(group, job.output, var)
                store_attrs = dict(arr.attrs)
                packed = var in ("sm", "sm_unc")
                fill: np.int16 | Literal[False] = np.int16(products.FILL) if packed else False
                v = nc.createVariable(var, "i2" if packed else "u2", ("time", "y", "x"), zlib=True,
                                      complevel=_zlib_level(job.complevel), shuffle=True, chunksizes=chunks,
                                      fill_value=fill)
                v.set_auto_maskandscale(False)  # the stored (packed) values go in as they are
                band = arr.chunks[1] + 2 * chunks[1]  # rows a band of the store touches in the file
                v.set_var_chunk_cache(size=max(1 << 22, chunks[0] * band * nx * v.dtype.itemsize))
                v.setncatts(_variable_attrs(var, store_attrs))
            _copy(nc, job, names, tchunk)
            nc.setncatts(json.loads(job.attrs))
        dest = job.dest.join(name)
        fs, target = dest.fs()
        files.put_file(fs, path, target)
        return {"url": dest.url, "name": name, "size": os.path.getsize(path), "sha256": files.file_sha256(path),
                "days": list(job.days)}
