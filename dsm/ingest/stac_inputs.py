"""Inputs from a STAC catalog (``inputs.stac``): items searched on the client, loaded with odc-stac on the workers.

On the client (:func:`search_items`, called by :mod:`dsm.ingest.plan`) the catalog is opened
once: a static catalog (``catalog.json``/``collection.json``, a path or fsspec URL) is read
with pystac through fsspec (:class:`FsspecStacIO`) and walked, skipping collections not in
``inputs.stac.collections``; a STAC API (a root whose ``conformsTo`` has item search, or with
a ``search`` link) is searched with pystac-client. Either way the items kept are those of the
configured collections whose bounding box meets the region's and whose day (:func:`item_date`)
is on the cube's axes; the plan groups them by cube variable and day (composite start) and
cuts them by time chunk into tasks as it does files. A catalog that cannot be reached raises
:class:`~dsm.errors.TransientIOError` (rerun to resume); one that does not exist, or is not
STAC, a :class:`~dsm.errors.ConfigError` naming ``inputs.stac.catalog``.

On a worker (:func:`read_stac_group`) each day's items are loaded with ``odc.stac.load``, one
time slice per item, onto a :class:`odc.geo.geobox.GeoBox` of the asset's own grid covering
the region (the window a GeoTIFF of that grid is read over, :func:`dsm.ingest.rasters.read_values`),
through a reader driver that opens the COGs in place through fsspec (:class:`dsm.inplace.RemoteFile`,
the input's ``storage_options``) or as local files; items on other grids (another CRS or
resolution) get their own GeoBox and are reprojected like files are. Then each item's raw
numbers get the value rule of the GeoTIFF path (:func:`dsm.ingest.rasters.apply_rule`: the
file's scale/offset/nodata, else the asset's ``raster:bands``, else the configured ones), the
QC rules of the MODIS tiles on the item's own pixels (:func:`dsm.ingest.modis_products.passes_all`),
the GeoTIFF series' checks (integers without a scale, values outside the variable's range,
no value over the region), and the same mosaic and warp to the 1 km grid
(:func:`dsm.ingest.reproject.warp_many_to_region`): the cube gets the values the GeoTIFF and
HDF4 paths give for the same pixels. odc-stac's own warp onto the region's GeoBox is not used:
it warps each item alone and fuses afterwards (first valid pixel), so 1 km pixels along tile
edges take one tile's partial average instead of the mosaic's (measured: 72 of 5184 pixels,
up to 0.15 NDVI, for one raster cut in two items), it reads overviews by default, and it
cannot mask QC bits on the asset's own pixels before resampling.

Per item, what goes wrong is reported under the asset's URL as for files: an item without the
asset or its QC asset (planned as ``failed``, naming the item), an asset that cannot be opened,
has no usable CRS or geotransform (``failed``), or does not cover the region (``skipped``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pystac
from affine import Affine
from rasterio.errors import RasterioError, RasterioIOError

from dsm.config.inputs import StacAssetInput, StacInput
from dsm.errors import (
    ConfigError,
    InputError,
    MissingVariableError,
    NoOverlapError,
    TransientIOError,
    UnreadableFileError,
)
from dsm.files import FileReport
from dsm.grid import CELL_1KM, Region
from dsm.ingest.modis_products import QCRule, passes_all
from dsm.ingest.rasters import (
    ValueRule,
    apply_rule,
    check_crs,
    check_georeferencing,
    check_range,
    open_raster,
    require_scale,
    require_values,
)
from dsm.ingest.reproject import Raster, crop_to_region, region_window, warp_many_to_region
from dsm.inplace import InPlace, input_files

log = logging.getLogger(__name__)

PREFIX = "stac:"
"""Task source of a STAC variable: ``stac:<variable>``."""


def setting_of(var: str) -> str:
    """The configuration key of variable ``var``'s asset: ``inputs.stac.assets.<var>``."""
    return f"inputs.stac.assets.{var}"


def plain(value: Any) -> Any:
    """``value`` with its (frozen) mappings and lists as plain ``dict``/``list``: fsspec backends
    change nested options (botocore's ``config_kwargs``)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# -- the catalog, on the client ---------------------------------------------------------
class FsspecStacIO(pystac.StacIO):
    """pystac reads through fsspec with the input's storage options (read only)."""

    def __init__(self, storage_options: Mapping[str, Any]) -> None:
        super().__init__()
        self.storage_options = plain(storage_options)

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        """The text at ``source`` (an href or a link)."""
        href = source.get_absolute_href() if isinstance(source, pystac.Link) else str(source)
        with fsspec.open(href, "r", **self.storage_options) as f:
            return str(f.read())

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        """Not used: dsm never writes an input catalog."""
        raise NotImplementedError("dsm reads input catalogs only")


def _unreachable(url: str, exc: BaseException) -> Exception:
    """The error of a catalog read that failed: missing or not STAC -> ConfigError, else transient."""
    if isinstance(exc, FileNotFoundError):
        return ConfigError(f"inputs.stac.catalog: there is no STAC catalog at {url} (file does not exist): check "
                           "the URL (a catalog.json, collection.json or STAC API root)")
    if isinstance(exc, (json.JSONDecodeError, pystac.STACError, KeyError, TypeError, ValueError)):
        return ConfigError(f"inputs.stac.catalog: {url} is not a STAC catalog, collection or API root "
                           f"({type(exc).__name__}: {exc})")
    return TransientIOError(f"inputs.stac.catalog: the catalog {url} could not be reached ({type(exc).__name__}: "
                            f"{exc}); rerun to resume")


def _is_api(root: Mapping[str, Any]) -> bool:
    conforms = [str(c) for c in root.get("conformsTo", [])]
    return any(c.rstrip("/").endswith("item-search") for c in conforms) or any(
        link.get("rel") == "search" for link in root.get("links", []))


def search_items(src: StacInput, storage_options: Mapping[str, Any], region: Region, start: dt.date,
                 end: dt.date) -> tuple[str, list[pystac.Item]]:
    """The items of ``src``'s collections over ``region`` between ``start`` and ``end`` (days,
    inclusive; items are kept by bounding box here, by day in the plan).

    Returns
    -------
    (str, list of pystac.Item)
        ``"static"`` or ``"api"``, and the items with absolute asset hrefs.

    Raises
    ------
    TransientIOError
        The catalog (or one of its children) could not be reached: rerun to resume.
    ConfigError
        There is no STAC catalog at ``inputs.stac.catalog``, or pystac-client is missing for an API.
    """
    try:
        import odc.stac  # noqa: F401, PLC0415 - the workers load with it: say so here, before any task runs
    except ImportError as exc:
        raise ConfigError("inputs.stac: loading STAC items needs odc-stac: pip install 'dsm[stac]'") from exc
    url = src.catalog
    io = FsspecStacIO(storage_options)
    try:
        root = json.loads(io.read_text(url))
    except Exception as exc:  # noqa: BLE001 - fsspec backends raise many kinds
        raise _unreachable(url, exc) from exc
    if not isinstance(root, dict) or "type" not in root:
        raise ConfigError(f"inputs.stac.catalog: {url} is not a STAC catalog, collection or API root (no 'type')")
    bbox = region.lonlat_bounds
    if _is_api(root):
        return "api", _search_api(src, bbox, start, end)
    try:
        cat = pystac.read_dict(root, href=url, stac_io=io)
        if not isinstance(cat, pystac.Catalog):
            raise ConfigError(f"inputs.stac.catalog: {url} is a STAC {type(cat).__name__}, not a catalog or collection")
        found = [it for it in _walk(cat, set(src.collections)) if _meets(it.bbox, bbox)]
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a child or item that cannot be read: as the catalog
        raise _unreachable(url, exc) from exc
    for it in found:
        it.make_asset_hrefs_absolute()
    return "static", found


def _walk(cat: pystac.Catalog, collections: set[str]) -> Iterator[pystac.Item]:
    """Items of a static catalog, not descending into collections other than ``collections`` (all when empty)."""
    if isinstance(cat, pystac.Collection) and collections and cat.id not in collections:
        return
    for it in cat.get_items():
        if not collections or (it.collection_id or (cat.id if isinstance(cat, pystac.Collection) else None)) in collections:
            yield it
    for child in cat.get_children():
        yield from _walk(child, collections)


def _meets(item_bbox: Sequence[float] | None, bbox: Sequence[float]) -> bool:
    if not item_bbox:
        return True
    x0, y0, x1, y1 = (item_bbox[0], item_bbox[1], item_bbox[-3], item_bbox[-2]) if len(item_bbox) == 6 else item_bbox
    return not (x1 < bbox[0] or x0 > bbox[2] or y1 < bbox[1] or y0 > bbox[3])


def _search_api(src: StacInput, bbox: Sequence[float], start: dt.date, end: dt.date) -> list[pystac.Item]:
    """Items of a STAC API search (pystac-client): the same code as a static catalog after this."""
    try:
        from pystac_client import Client  # noqa: PLC0415 - optional: only STAC APIs need it
    except ImportError as exc:
        raise ConfigError(f"inputs.stac.catalog: {src.catalog} is a STAC API, which needs pystac-client: "
                          "pip install 'dsm[stac]'") from exc
    try:
        search = Client.open(src.catalog).search(collections=list(src.collections) or None, bbox=list(bbox),
                                                 datetime=f"{start.isoformat()}/{end.isoformat()}T23:59:59Z")
        items = list(search.items())
    except Exception as exc:  # noqa: BLE001 - requests/pystac-client raise many kinds
        raise _unreachable(src.catalog, exc) from exc
    for it in items:
        it.make_asset_hrefs_absolute()
    return items


def item_date(item: pystac.Item) -> dt.date | None:
    """The day of an item: its ``start_datetime`` (a composite's first day), else ``datetime``, in UTC."""
    when = item.common_metadata.start_datetime or item.datetime
    if when is None:
        return None
    return (when.astimezone(dt.timezone.utc) if when.tzinfo else when).date()


def item_name(item: pystac.Item) -> str:
    """How reports name an item: its self href, else ``STAC item <id>``."""
    return item.get_self_href() or f"STAC item {item.id}"


def missing_assets(item: pystac.Item, a: StacAssetInput) -> str | None:
    """Why ``item`` cannot give ``a`` (its asset or QC asset is missing), or None."""
    wanted = [a.asset, *([a.qc.asset] if a.qc else [])]
    absent = [k for k in wanted if k not in item.assets]
    if not absent:
        return None
    return (f"STAC item {item.id} has no asset {', '.join(repr(k) for k in absent)} (its assets: "
            f"{', '.join(sorted(item.assets)) or 'none'}): check the asset key under the collection")


def encode(item: pystac.Item) -> str:
    """An item as JSON text (what a task carries to its worker)."""
    return json.dumps(item.to_dict(include_self_link=True, transform_hrefs=False), sort_keys=True)


# -- one day's items, on a worker -------------------------------------------------------
@dataclass(frozen=True)
class _Head:
    """What the header of an item's asset says: its grid and stored-number metadata."""

    crs: Any
    transform: Affine
    shape: tuple[int, int]
    dtype: str
    scale: float
    offset: float
    nodata: float | None
    window: tuple[int, int, int, int]


def _header(path: str, band: int, region: Region) -> _Head:
    """The grid of an asset and its window over the region (as :func:`dsm.ingest.rasters.read_values` reads it).

    Raises
    ------
    UnreadableFileError, GeolocationError, NoOverlapError
    """
    try:
        with open_raster(path) as src:
            check_crs(path, src.crs)
            check_georeferencing(path, src.transform, bool(src.gcps[0]))
            if not 1 <= band <= src.count:
                raise UnreadableFileError(path, f"band {band} does not exist (the file has {src.count})")
            win = region_window(src.transform, src.crs, (src.height, src.width), region, 3, CELL_1KM)
            if win is None:
                raise NoOverlapError(path, f"does not overlap the region (lon/lat {region.lonlat_bounds})")
            return _Head(src.crs, src.transform, (src.height, src.width), src.dtypes[band - 1],
                         src.scales[band - 1], src.offsets[band - 1], src.nodata, win)
    except RasterioIOError as exc:
        raise UnreadableFileError(path, f"not a readable raster ({exc})") from exc


def _grid_key(h: _Head) -> tuple[Any, ...]:
    """Assets with equal keys share one pixel grid (CRS, pixel size, alignment)."""
    t = h.transform
    return (h.crs.to_wkt(), round(t.a, 9), round(t.e, 9), round((t.c / t.a) % 1, 6) % 1, round((t.f / t.e) % 1, 6) % 1)


def _geobox(heads: Sequence[_Head]) -> Any:
    """The GeoBox on the first asset's grid covering every asset's window over the region."""
    from odc.geo.geobox import GeoBox  # noqa: PLC0415 - odc-stac is the optional 'stac' extra

    t0 = heads[0].transform
    rows, cols = [], []
    for h in heads:
        dc, dr = round((h.transform.c - t0.c) / t0.a), round((h.transform.f - t0.f) / t0.e)
        r0, r1, c0, c1 = h.window
        rows += [r0 + dr, r1 + dr]
        cols += [c0 + dc, c1 + dc]
    r0, c0 = min(rows), min(cols)
    return GeoBox((max(rows) - r0, max(cols) - c0), t0 * Affine.translation(c0, r0), heads[0].crs.to_wkt())


class _Reader:
    """odc-loader reader of one asset: a window of the asset pasted onto an aligned GeoBox."""

    def __init__(self, src: Any, paths: Mapping[str, str]) -> None:
        self._src, self._paths = src, paths

    def read(self, cfg: Any, dst_geobox: Any, *, dst: np.ndarray | None = None, selection: Any = None
             ) -> tuple[tuple[slice, slice], np.ndarray]:
        """``(roi, pixels)``: the part of ``dst_geobox`` the asset covers and its raw numbers there."""
        from odc.geo.converters import rio_geobox  # noqa: PLC0415
        from odc.geo.overlap import compute_reproject_roi  # noqa: PLC0415
        from odc.geo.roi import roi_is_empty, roi_shape, w_  # noqa: PLC0415

        path = self._paths[self._src.uri]
        with open_raster(path) as rdr:
            rr: Any = compute_reproject_roi(rio_geobox(rdr), dst_geobox, ttol=0.01)
            if not roi_is_empty(rr.roi_dst) and not (rr.paste_ok and rr.read_shrink == 1):
                raise RuntimeError(f"{path}: the GeoBox is not on the asset's pixel grid")  # a bug, never input
            out = np.full(roi_shape(rr.roi_dst), np.nan, dtype=cfg.dtype) if dst is None else dst[rr.roi_dst]
            if not roi_is_empty(rr.roi_dst):
                out[...] = rdr.read(self._src.band, window=w_[rr.roi_src])
        return rr.roi_dst, out


def _driver(paths: Mapping[str, str]) -> Any:
    """An odc-loader reader driver that opens assets through what :func:`dsm.inplace.input_files` gave."""
    from odc.loader import RioDriver  # noqa: PLC0415

    class _Driver(RioDriver):
        def open(self, src: Any, ctx: Any) -> Any:
            return _Reader(src, paths)

    return _Driver()


def odc_load(items: Sequence[pystac.Item], bands: Sequence[str], geobox: Any, paths: Mapping[str, str]) -> Any:
    """``odc.stac.load`` of ``items``: one time slice per item (in order), raw numbers as float64,
    NaN where an item has no pixel, on ``geobox`` (one of the assets' own grid)."""
    try:
        import odc.stac  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError("inputs.stac needs odc-stac: pip install 'dsm[stac]'") from exc
    return odc.stac.load(items, bands=list(bands), geobox=geobox, groupby=lambda _item, _parsed, idx: idx,
                         dtype="float64", nodata=np.nan, resampling="nearest", chunks=None, fail_on_error=True,
                         driver=_driver(paths))  # NaN fill: a raster:bands nodata must not pose as a raw number


def _asset_rule(item: pystac.Item, a: StacAssetInput, setting: str) -> ValueRule:
    """The configured rule, under the asset's ``raster:bands`` scale/offset/nodata where it has them."""
    rule = ValueRule.of(a, setting)
    bands = item.assets[a.asset].extra_fields.get("raster:bands") or []
    rb = bands[a.band - 1] if len(bands) >= a.band and isinstance(bands[a.band - 1], dict) else {}
    if not {"scale", "offset", "nodata"} & rb.keys():
        return rule
    has_scale = "scale" in rb or "offset" in rb
    return ValueRule(rb.get("scale", 1.0) if has_scale else rule.scale, rb.get("offset", 0.0) if has_scale else rule.offset,
                     rb.get("nodata", rule.nodata), setting, "the asset's raster:bands" if has_scale else "")


def read_stac_group(var: str, src: StacInput, items_json: Sequence[str], region: Region,
                    storage_options: Mapping[str, Any], how: InPlace) -> tuple[dict[str, np.ndarray] | None, list[FileReport]]:
    """One day's items of variable ``var`` on the region's 1 km grid (module docstring).

    Returns
    -------
    (dict or None, list of FileReport)
        ``{var: 2-D float32}`` (None when no item was usable) and one report per asset URL.
    """
    a = src.assets[var]
    setting = setting_of(var)
    items = sorted((pystac.Item.from_dict(json.loads(s)) for s in items_json), key=lambda it: it.assets[a.asset].href)
    href = {_key(it): it.assets[a.asset].href for it in items}
    qc_href = {_key(it): it.assets[a.qc.asset].href for it in items} if a.qc else {}
    with input_files(sorted({*href.values(), *qc_href.values()}), plain(storage_options), how) as got:
        reports: list[FileReport] = []
        heads: dict[str, _Head] = {}
        for it in items:
            head = _checked_header(it, a, href, qc_href, got.paths, region, reports)
            if head is not None:
                heads[_key(it)] = head
        by_grid: dict[tuple[Any, ...], list[pystac.Item]] = {}
        for it in items:
            if _key(it) in heads:
                by_grid.setdefault(_grid_key(heads[_key(it)]), []).append(it)
        rasters: list[tuple[str, Raster]] = []
        for group in by_grid.values():
            rasters += _load_grid(group, a, setting, heads, href, got.paths, region, reports)
        rasters.sort(key=lambda r: r[0])
        arrays = {var: warp_many_to_region([r for _, r in rasters], region, a.resampling)} if rasters else None
        return arrays, got.reports(reports)


def _key(item: pystac.Item) -> str:
    """An item's key within one day (ids are unique within a collection only)."""
    return f"{item.collection_id}/{item.id}"


def _checked_header(it: pystac.Item, a: StacAssetInput, href: Mapping[str, str], qc_href: Mapping[str, str],
                    paths: Mapping[str, str], region: Region, reports: list[FileReport]) -> _Head | None:
    """The header of an item's asset (and a QC asset on its grid), or None after reporting why not."""
    url = href[_key(it)]
    if url not in paths:
        return None  # could not be had: reported by input_files
    path = paths[url]
    try:
        head = _header(path, a.band, region)
        if a.qc:
            q = qc_href[_key(it)]
            if q not in paths:
                raise MissingVariableError(path, f"its QC asset {a.qc.asset!r} ({q}) could not be read")
            qh = _header(paths[q], 1, region)
            if (qh.crs, qh.transform, qh.shape) != (head.crs, head.transform, head.shape):
                raise MissingVariableError(path, f"its QC asset {a.qc.asset!r} ({q}) is on another grid "
                                                 f"({qh.shape} {qh.transform[:6]}, not {head.shape} {head.transform[:6]})")
    except NoOverlapError as exc:
        reports.append(FileReport(path, "skipped", exc.reason, type(exc).__name__))
        return None
    except InputError as exc:
        reports.append(FileReport(path, "failed", getattr(exc, "reason", str(exc)), type(exc).__name__))
        return None
    return head


def _load_grid(group: list[pystac.Item], a: StacAssetInput, setting: str, heads: Mapping[str, _Head],
               href: Mapping[str, str], paths: Mapping[str, str], region: Region, reports: list[FileReport]
               ) -> list[tuple[str, Raster]]:
    """Load the items of one grid with odc-stac and make each a checked :class:`Raster` of values."""
    bands = [a.asset, *([a.qc.asset] if a.qc else [])]
    gbox = _geobox([heads[_key(it)] for it in group])
    try:
        loaded = [(group, odc_load(group, bands, gbox, paths))]
    except RasterioError:  # find the item(s) that cannot be read: each alone
        loaded = []
        for it in group:
            try:
                loaded.append(([it], odc_load([it], bands, gbox, paths)))
            except RasterioError as exc:
                reports.append(FileReport(paths[href[_key(it)]], "failed", f"not a readable raster ({exc})",
                                          "UnreadableFileError"))
    out = []
    transform = Affine(*gbox.transform[:6])
    for items, ds in loaded:
        for k, it in enumerate(items):
            path, head = paths[href[_key(it)]], heads[_key(it)]
            try:
                raster = _values(it, a, setting, path, head, ds, k, transform, region)
            except NoOverlapError as exc:
                reports.append(FileReport(path, "skipped", exc.reason, type(exc).__name__))
            except InputError as exc:
                empty = type(exc).__name__ == "EmptyGranuleError"
                reports.append(FileReport(path, "skipped" if empty else "failed", getattr(exc, "reason", str(exc)),
                                          type(exc).__name__))
            else:
                reports.append(FileReport(path, "used"))
                out.append((href[_key(it)], raster))
    return out


def _values(it: pystac.Item, a: StacAssetInput, setting: str, path: str, head: _Head, ds: Any, k: int,
            transform: Affine, region: Region) -> Raster:
    """One item's values: the GeoTIFF path's value rule and checks, and the QC rules on its own pixels."""
    raw = np.asarray(ds[a.asset].values[k])
    rule = _asset_rule(it, a, setting)
    data, applied = apply_rule(raw, path, head.scale, head.offset, head.nodata, rule)
    applied = dataclasses.replace(applied, dtype=head.dtype)
    if a.qc:
        qc = np.asarray(ds[a.qc.asset].values[k])
        rules = tuple(QCRule(s, n, tuple(v)) for s, n, v in a.qc.rules)
        keep = np.isfinite(qc) & passes_all(rules, np.nan_to_num(qc, nan=0.0))
        data[~keep] = np.nan
    raster = Raster(data, transform, head.crs)
    require_scale(path, applied, rule)
    if crop_to_region(raster, region, margin=1) is None:
        raise NoOverlapError(path, f"does not cover region {region.to_dict()}")
    require_values(path, raster, " over the region")
    check_range(path, raster, setting.rsplit(".", 1)[1], region, rule, applied)  # the variable's valid range
    return raster


def search_span(indexes: Mapping[str, Any]) -> tuple[dt.date, dt.date]:
    """First and last day of the cube's time axes (composites: to their last day)."""
    first = min(idx[0] for idx in indexes.values()).date()
    last = max(idx[-1] for idx in indexes.values()).date() + dt.timedelta(days=15)
    return first, last


__all__ = ["PREFIX", "FsspecStacIO", "encode", "item_date", "item_name", "missing_assets", "read_stac_group",
           "search_items", "search_span", "setting_of"]
