"""GDAL-readable rasters (GeoTIFF...) in any CRS, and per-date GeoTIFF series on the 1 km grid.

How stored numbers become values (:class:`ValueRule`): ``value = raw * scale + offset`` where
raw is neither the nodata value nor NaN. The file's own band metadata win (GDAL's scale,
offset and nodata, which rasterio exposes as ``scales``, ``offsets``, ``nodata``); the
configured ``scale``/``offset``/``nodata`` apply to files without them. A file "has" a scale
when its scale is not 1 or its offset not 0 (GDAL cannot tell an explicit 1 from none).

Checks, each raising an error that names the file and the setting to change:

- no CRS, or one that cannot be transformed to EPSG:6933: :class:`GeolocationError`;
- a rotated or sheared geotransform, or none at all (GDAL's default identity; ground control
  points only): :class:`GeolocationError` (:func:`check_georeferencing`), warp it first;
- a GeoTIFF series file of integers without any scale: :class:`WrongProductError` (set
  ``inputs.geotiff.<name>.scale``, e.g. 0.0001 for MOD13 NDVI counts);
- values over the region outside the cube variable's valid range (:mod:`dsm.ranges`):
  :class:`WrongProductError` (:func:`check_range`); the file is refused, never stored;
- no overlap with the region (:class:`NoOverlapError`, :func:`require_overlap`).

:func:`read_values` with a ``region`` reads only the window over it (a global SoilGrids VRT,
a large mosaic, a COG); local files, remote files read in place through fsspec
(:class:`dsm.inplace.RemoteFile`, :func:`open_raster`: only the bytes of the header and the
window's tiles are fetched), or ``http(s)://`` URLs GDAL reads itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from pyproj import CRS as PCRS
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from dsm.grid import CELL_1KM, Region
from dsm.ingest.base import (
    DEFAULT_DATE_REGEX,
    EmptyGranuleError,
    GeolocationError,
    ManyResult,
    NoOverlapError,
    PathLike,
    UnreadableFileError,
    WrongProductError,
    date_from_name,
    read_many,
)
from dsm.ingest.reproject import EASE_CRS, Raster, crop_to_region, fine_dataarray, region_window, warp_many_to_region
from dsm.inplace import RemoteFile
from dsm.ranges import outside, valid_range

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValueRule:
    """Configured ``scale``, ``offset`` and ``nodata`` of an input (None: not configured),
    ``setting``, the configuration key named in messages (``inputs.geotiff.ndvi``), and
    ``origin``, where a scale set by dsm rather than by a key comes from (``SoilGrids g/kg``)."""

    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None
    setting: str = ""
    origin: str = ""

    @classmethod
    def of(cls, src: object, setting: str) -> ValueRule:
        """The rule of a configuration section with ``scale``/``offset``/``nodata`` fields."""
        return cls(getattr(src, "scale", None), getattr(src, "offset", None), getattr(src, "nodata", None), setting)

    def key(self, name: str) -> str:
        """``<setting>.<name>``, or ``<name>`` without a setting."""
        return f"{self.setting}.{name}" if self.setting else name


@dataclass(frozen=True)
class Applied:
    """What :func:`read_values` did: the file's dtype, the scale and offset applied, where they
    came from (``file``, ``config`` or ``none``) and the nodata value used."""

    dtype: str
    scale: float
    offset: float
    source: str
    nodata: float | None

    def describe(self) -> str:
        """``scale 0.0001 and offset 0 from the file, nodata -3000``."""
        nd = "no nodata value" if self.nodata is None else f"nodata {self.nodata:g}"
        return f"scale {self.scale:g} and offset {self.offset:g} ({self.source}), {nd}"


def check_crs(path: str, crs) -> None:
    """Raise ``GeolocationError`` unless ``crs`` is set and transformable to EASE-Grid 2.0."""
    if crs is None:
        raise GeolocationError(path, "the raster has no coordinate reference system")
    try:
        pcrs = PCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
        if pcrs.is_engineering or not (pcrs.is_geographic or pcrs.is_projected):
            raise ValueError(f"{pcrs.name!r} is not a geographic or projected CRS")
        Transformer.from_crs(pcrs, EASE_CRS.to_wkt(), always_xy=True)
    except Exception as exc:  # noqa: BLE001 - pyproj raises several kinds
        raise GeolocationError(path, f"unknown or unusable coordinate reference system ({exc})") from exc


def check_georeferencing(path: str, transform: Affine, has_gcps: bool = False) -> None:
    """Raise ``GeolocationError`` unless ``transform`` is a north-up geotransform (no rotation
    or shear terms) that is not GDAL's default identity (a raster without one)."""
    if transform.b != 0 or transform.d != 0:
        raise GeolocationError(path, f"the geotransform is rotated or sheared (terms b={transform.b:g}, d={transform.d:g}): "
                                     "dsm reads north-up rasters only; warp it to a north-up grid first (e.g. gdalwarp "
                                     "in.tif north_up.tif)")
    if transform.is_identity:
        how = "ground control points only (no geotransform)" if has_gcps else "no geotransform (not georeferenced)"
        raise GeolocationError(path, f"the raster has {how}: warp it to a georeferenced grid first (e.g. gdalwarp "
                                     "-t_srs EPSG:4326 in.tif out.tif)")


def open_raster(path: str) -> rasterio.DatasetReader:
    """``rasterio.open(path)``; a remote file read in place (:class:`dsm.inplace.RemoteFile`)
    through its fsspec handles (rasterio's ``opener``), so GDAL fetches only the byte ranges it
    reads (a COG's header and the tiles of a window) with the input's own storage options."""
    if isinstance(path, RemoteFile):
        return rasterio.open(path.fs_path, opener=path.gdal_opener())
    return rasterio.open(path)


def read_values(path: PathLike, band: int = 1, rule: ValueRule | None = None, region: Region | None = None,
                pad_m: float = 0.0) -> tuple[Raster, Applied]:
    """One band of a GDAL-readable raster as float32 values (NaN where nodata), and what was applied.

    Parameters
    ----------
    path
        A local file, a remote file read in place (:class:`dsm.inplace.RemoteFile`), or a URL
        GDAL reads itself (``https://...``: ``/vsicurl/``).
    band
        1-based band number.
    rule
        Configured scale, offset and nodata (module docstring).
    region
        Read only the window over this region (grown by ``pad_m`` metres and a few pixels):
        how a global raster (a SoilGrids VRT) is read; None reads the whole band.

    Raises
    ------
    UnreadableFileError, GeolocationError, NoOverlapError
        The last one only with ``region``: the raster does not overlap it.
    """
    rule = rule or ValueRule()
    path = os.fspath(path)  # a RemoteFile stays one
    if "://" not in path and not os.path.isfile(path):
        raise UnreadableFileError(path, "file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = open_raster(path)
        with src:
            check_crs(path, src.crs)
            check_georeferencing(path, src.transform, bool(src.gcps[0]))
            if not 1 <= band <= src.count:
                raise UnreadableFileError(path, f"band {band} does not exist (the file has {src.count})")
            window = None
            if region is not None:
                win = region_window(src.transform, src.crs, (src.height, src.width), region, 3, pad_m)
                if win is None:
                    raise NoOverlapError(path, _no_overlap("does not overlap", _extent(src.transform, src.shape, src.crs),
                                                           region))
                window = Window(win[2], win[0], win[3] - win[2], win[1] - win[0])
            raw = src.read(band, window=window)
            file_scale, file_offset, file_nodata = src.scales[band - 1], src.offsets[band - 1], src.nodata
            transform = src.window_transform(window) if window is not None else src.transform
            crs = src.crs
    except RasterioIOError as exc:
        raise UnreadableFileError(path, f"not a readable raster ({exc})") from exc
    data, applied = apply_rule(raw, path, file_scale, file_offset, file_nodata, rule)
    return Raster(data, transform, crs), applied


def apply_rule(raw: np.ndarray, path: str, file_scale: float, file_offset: float, file_nodata: float | None,
               rule: ValueRule) -> tuple[np.ndarray, Applied]:
    """Stored numbers ``raw`` as float32 values (NaN where nodata) under the file's own scale,
    offset and nodata (GDAL band metadata: ``file_scale`` 1 and ``file_offset`` 0 mean none)
    and ``rule`` for what the file lacks (module docstring); and what was applied."""
    nodata = file_nodata if file_nodata is not None else rule.nodata
    if file_scale != 1 or file_offset != 0:
        scale, offset, source = float(file_scale), float(file_offset), "from the file"
        if (rule.scale, rule.offset) not in ((None, None), (scale, offset)):
            log.warning("%s: scale %g and offset %g from the file; %s/%s ignored", path, scale, offset,
                        rule.key("scale"), rule.key("offset"))
    elif rule.scale is not None or rule.offset is not None:
        scale, offset, source = float(rule.scale or 1.0), float(rule.offset or 0.0), f"from {rule.origin or rule.key('scale')}"
    else:
        scale, offset, source = 1.0, 0.0, "none given"
    data = raw.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        data[raw == nodata] = np.nan
    if scale != 1 or offset != 0:
        data = data * np.float32(scale) + np.float32(offset)
    applied = Applied(raw.dtype.name, scale, offset, source, None if nodata is None else float(nodata))
    return data, applied


def read_raster(path: PathLike, band: int = 1, rule: ValueRule | None = None) -> Raster:
    """One band of a GDAL-readable raster as float32 with NaN for nodata (:func:`read_values`).

    Raises
    ------
    UnreadableFileError, GeolocationError
    """
    return read_values(path, band, rule)[0]


def require_overlap(path: str, raster: Raster, region: Region, pad_m: float = 0.0) -> Raster:
    """The part of ``raster`` over ``region`` (grown by ``pad_m`` metres); :class:`NoOverlapError`
    naming the raster's and the region's extents when it does not overlap or has no value there."""
    part = crop_to_region(raster, region, margin=0, pad_m=pad_m)
    if part is None or not np.isfinite(part.data).any():
        what = "does not overlap" if part is None else "has only nodata over"
        raise NoOverlapError(path, _no_overlap(what, _extent(raster.transform, raster.data.shape, raster.crs), region))
    return part


def _no_overlap(what: str, extent: str, region: Region) -> str:
    return (f"{what} the region (raster extent {extent}; region lon/lat {_fmt(region.lonlat_bounds)}): use a file "
            "that covers the region")


def check_range(path: str, raster: Raster, var: str, region: Region, rule: ValueRule, applied: Applied,
                bounds: tuple[float, float] | None = None) -> None:
    """Refuse (:class:`WrongProductError`) a raster with values over ``region`` outside
    ``bounds``, by default the valid range of cube variable ``var`` (no check for other names
    without ``bounds``)."""
    bounds = bounds or valid_range(var)
    part = crop_to_region(raster, region, margin=1)
    if bounds is None or part is None:
        return
    bad = outside(part.data, bounds)
    if bad.any():
        v = part.data[np.isfinite(part.data)]
        raise WrongProductError(
            path, f"{int(bad.sum())} values over the region ({v.min():g}..{v.max():g}) are outside the valid range "
                  f"of {var} [{bounds[0]:g}, {bounds[1]:g}] after {applied.describe()}: set {rule.key('scale')}, "
                  f"{rule.key('offset')} or {rule.key('nodata')} to what the file stores")


def require_values(path: str, raster: Raster, where: str = "") -> None:
    """Raise :class:`EmptyGranuleError` when every pixel of ``raster`` is nodata (``where``: e.g. " over the region")."""
    if np.isnan(raster.data).all():
        raise EmptyGranuleError(path, f"every pixel{where} is nodata")


def require_scale(path: str, applied: Applied, rule: ValueRule, example: str = "0.0001 for MOD13 NDVI counts") -> None:
    """Refuse (:class:`WrongProductError`) an integer raster without any scale; ``example``
    names a typical scale in the message."""
    if np.dtype(applied.dtype).kind in "iu" and applied.source == "none given":
        raise WrongProductError(
            path, f"{applied.dtype} values without a scale (no scale in the file, {rule.key('scale')} not set): set "
                  f"{rule.key('scale')} (e.g. {example}; 1 if the integers are the values)")


def _fmt(b: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in b) + ")"


def _extent(t: Affine, shape: tuple[int, int], crs: object) -> str:
    ny, nx = shape
    xs, ys = (t.c, t.c + t.a * nx), (t.f, t.f + t.e * ny)
    name = crs.to_string() if crs is not None and hasattr(crs, "to_string") else "no CRS"
    return f"{_fmt((min(xs), min(ys), max(xs), max(ys)))} in {name}"


def geotiff_series_to_region(
    paths: Sequence[PathLike],
    region: Region,
    name: str,
    *,
    date_regex: str = DEFAULT_DATE_REGEX,
    resampling: str = "average",
    band: int = 1,
    attrs: dict | None = None,
    rule: ValueRule | None = None,
) -> tuple[xr.DataArray, ManyResult]:
    """Per-date rasters (any CRS, several tiles per date allowed) on a region's 1 km grid.

    Parameters
    ----------
    paths
        Raster files; each file's date comes from its name through ``date_regex``
        (:func:`dsm.ingest.base.date_from_name`). Only each file's window over the region
        (and 1 km around: what the warp reads) is read, so a file with values elsewhere but
        only nodata there is skipped (every pixel over the region is nodata).
    region
        Destination region.
    name
        Variable name of the result; for a cube variable, values outside its valid range
        refuse the file (:func:`check_range`).
    resampling
        ``"average"`` for continuous fields coarser than 1 km, ``"nearest"`` for QC-masked 1 km
        fields.
    attrs
        CF attributes (units, long_name...) for the result.
    rule
        Configured scale, offset and nodata (module docstring); integer files need a scale.

    Returns
    -------
    (xarray.DataArray, ManyResult)
        (time, y, x) float32 sorted by date, and the per-file report (files without a date,
        without a scale, with impossible values or outside the region are reported, not raised).
    """
    rule = rule or ValueRule()

    def _one(path: str) -> tuple[dt.date, Raster]:
        date = date_from_name(path, date_regex)
        raster, applied = read_values(path, band, rule, region, CELL_1KM)  # the window the warp uses
        require_scale(path, applied, rule)
        if crop_to_region(raster, region, margin=1) is None:
            raise NoOverlapError(path, f"does not cover region {region.to_dict()}")
        require_values(path, raster, " over the region")
        check_range(path, raster, name, region, rule, applied)
        return date, raster

    many = read_many(paths, _one)
    by_date: dict[dt.date, list[Raster]] = {}
    for date, raster in many.results.values():
        by_date.setdefault(date, []).append(raster)
    dates = sorted(by_date)
    ny, nx = region.fine_shape
    stack = np.full((len(dates), ny, nx), np.nan, dtype=np.float32)
    for i, d in enumerate(dates):
        stack[i] = warp_many_to_region(by_date[d], region, resampling)
    template = fine_dataarray(stack[0] if dates else np.full((ny, nx), np.nan, np.float32), region, name, attrs)
    da = xr.DataArray(
        stack,
        dims=("time", "y", "x"),
        coords={**template.coords, "time": np.array(dates, dtype="datetime64[ns]")},
        name=name,
        attrs={**template.attrs, "resampling_to_1km": resampling},
    )
    return da, many
