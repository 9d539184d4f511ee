"""The STAC catalog of the exported COGs: one Collection, one Item per day.

Each Item has an asset per COG of the day: ``sm`` (roles ``data``), ``sm_unc``
(``uncertainty``) and ``sm_origin`` (``quality``, with the bit flags as
``classification:bitfields``), each with ``raster:bands`` (data type, nodata, scale, offset,
unit, spatial resolution); the projection extension gives ``proj:code`` and, beside it for the
readers of v1 (stackstac), ``proj:epsg``, the shape and the transform; provenance properties
(``dsm:period``, ``dsm:model``, ``dsm:origin_pixels``...) say which model made the day.

The Collection carries the license (``output.license``, an SPDX id, with a ``license`` link
to ``output.license_url``), ``output.providers`` and ``output.keywords``, ``item_assets``
(what every Item's assets are) and ``summaries`` (``proj:code``, ``gsd``, ``raster:bands``,
``dsm:method``). Asset hrefs are relative and the catalog is self-contained: the catalog
folder and the COG folder move together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

import pystac
from pystac.extensions.classification import Bitfield, Classification, ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension

from dsm import files, products
from dsm.cog import LAYERS, CogLayer
from dsm.config.output import OutputConfig
from dsm.ledger import DayRecord
from dsm.periods import julian_name
from dsm.storeref import StoreRef

COLLECTION_ID = "dsm-sm-1km"


class FsspecStacIO(pystac.StacIO):
    """pystac IO through fsspec, so catalogs can live on ``s3://`` as well as on disk.

    Parameters
    ----------
    catalog
        The catalog's folder (``stores.stac``): every href read or written is opened with its
        fsspec options. None: local files, no options.
    """

    def __init__(self, catalog: StoreRef | None = None) -> None:
        super().__init__()
        self.catalog = catalog

    def _ref(self, href: Any) -> StoreRef:
        return self.catalog.at(str(href)) if self.catalog is not None else StoreRef(str(href))

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:  # noqa: D102
        with self._ref(source).open("r") as f:
            return str(f.read())

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        files.write_url(self._ref(dest), txt)


def _band(layer: CogLayer, resolution: float | None) -> dict[str, Any]:
    """The ``raster:bands`` entry of a layer's COG."""
    band = RasterBand.create(data_type=DataType(layer.dtype), nodata=layer.nodata, scale=layer.scale, offset=0.0,
                             unit=layer.units, spatial_resolution=resolution)
    return band.to_dict()


def _bitfields() -> list[Bitfield]:
    """``sm_origin``'s flags as ``classification:bitfields`` (one bit each)."""
    return [Bitfield.create(offset=bit.bit_length() - 1, length=1, name=meaning, description=text,
                            classes=[Classification.create(0, name="not_set", description=f"{meaning} not set"),
                                     Classification.create(1, name="set", description=text)])
            for bit, (meaning, text) in products.ORIGIN_BITS.items()]


def _asset_fields(layer: CogLayer, resolution: float | None) -> dict[str, Any]:
    """The fields every Item's asset of ``layer`` shares (also its ``item_assets`` entry)."""
    fields: dict[str, Any] = {"type": pystac.MediaType.COG, "title": layer.title, "roles": list(layer.roles),
                              "description": layer.description, "raster:bands": [_band(layer, resolution)]}
    if layer.variable == "sm_origin":
        fields["classification:bitfields"] = [b.to_dict() for b in _bitfields()]
    return fields


def _gsd(info: Mapping[str, Any]) -> float:
    """The COGs' pixel size in metres (the EASE-Grid 2.0 cell, also when reprojected to EPSG:4326)."""
    return float(info.get("gsd") or abs(info["transform"][0]))


def stac_item(info: Mapping[str, Any], day_model: Mapping[str, Any] | None) -> pystac.Item:
    """The STAC Item of one day's COGs (projection, raster, classification; provenance:
    ``day_model``, the models of the day, :attr:`dsm.ledger.DayRecord.model`). The same bytes
    whether ``info`` comes from the export or read back from the ledger: the origin counts in the
    order of their names, the assets in :data:`dsm.cog.LAYERS`' order."""
    lon0, lat0, lon1, lat1 = info["lonlat_bounds"]
    geom = {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}
    day = dt.date.fromisoformat(info["day"])
    start = dt.datetime.combine(day, dt.time(0), dt.timezone.utc)
    props: dict[str, Any] = {"start_datetime": start.isoformat(),
                             "end_datetime": (start + dt.timedelta(days=1, seconds=-1)).isoformat(),
                             "dsm:julian": julian_name(day), "dsm:valid_pixels": info["valid_pixels"],
                             "dsm:origin_pixels": dict(sorted(info["origin"].items()))}
    if day_model:
        props.update({"dsm:period": day_model.get("period"), "dsm:model_period": day_model.get("model_period"),
                      "dsm:model": day_model.get("model"), "dsm:reused": day_model.get("reused"),
                      "dsm:variants": sorted(day_model.get("variants", {}))})
    item = pystac.Item(id=info["name"].removesuffix(".tif"), geometry=geom, bbox=[lon0, lat0, lon1, lat1],
                       datetime=start + dt.timedelta(hours=12), properties=props)
    resolution = _gsd(info)
    layers = sorted(info.get("layers", {}).items(), key=lambda kv: list(LAYERS).index(kv[0]))
    for key, href in (("sm", info["url"]), *((k, v["url"]) for k, v in layers)):
        fields = _asset_fields(LAYERS[key], resolution)
        asset = pystac.Asset(href=href, media_type=fields.pop("type"), title=fields.pop("title"),
                             description=fields.pop("description"), roles=fields.pop("roles"), extra_fields=fields)
        item.add_asset(key, asset)
    RasterExtension.add_to(item)
    if "sm_origin" in item.assets:
        ClassificationExtension.add_to(item)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = int(info["crs"].split(":")[1]) if info["crs"].upper().startswith("EPSG:") else None
    proj.epsg = epsg  # proj:code (projection extension v2)
    if epsg is not None:
        item.properties["proj:epsg"] = epsg  # beside it, for the readers of v1 (stackstac)
    proj.shape = info["shape"]
    proj.transform = info["transform"]
    return item


def _providers(output: OutputConfig) -> list[pystac.Provider]:
    return [pystac.Provider(name=p.name, description=p.description, roles=[pystac.ProviderRole(r) for r in p.roles],
                            url=p.url) for p in output.providers]


def build_catalog(infos: list[Mapping[str, Any]], days: Mapping[str, DayRecord], stac: StoreRef,
                  output: OutputConfig | None = None, method: str | None = None,
                  unchanged: Collection[str] | None = None) -> pystac.Collection:
    """Write the STAC Collection with one Item per day under ``stac``; returns it.

    With ``unchanged`` (days, ISO), the Items of those days are not written again where one listing
    of ``stac`` finds their file (a daily run writes its new days' Items and the Collection, not
    every day's: the same files as a whole save).

    Parameters
    ----------
    infos
        The records of the exported days (:func:`dsm.cog.export_day`).
    days
        The products store's record of each day (:attr:`dsm.ledger.ProductsLedger.days`: the
        models that made it, its provenance).
    stac
        Folder (or ``s3://`` prefix) of ``collection.json`` (``stores.stac``).
    output
        The ``output`` settings: license, providers, keywords (defaults when None).
    method
        ``training.method``, summarised as ``dsm:method``.
    unchanged
        Days whose Item is the one already written, when its file is there (their COGs and
        records did not change since: :func:`dsm.stages.export.export` passes the days it
        skipped).
    """
    output = output or OutputConfig()
    ordered = sorted(infos, key=lambda i: i["day"])
    items = [stac_item(i, days[i["day"]].model if i["day"] in days else None) for i in ordered]
    boxes = [i.bbox for i in items if i.bbox is not None]  # every item has one (stac_item)
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    times = [i.datetime for i in items if i.datetime is not None]
    keys = sorted({k for i in items for k in i.assets}, key=list(LAYERS).index)
    resolutions = sorted({_gsd(i) for i in infos})
    coll = pystac.Collection(
        id=COLLECTION_ID,
        description="Daily 1 km surface soil moisture downscaled from SMAP L3 36 km (dsm; Rao et al., ESSD 2022, "
                    "https://doi.org/10.5194/essd-14-3053-2022). Assets: sm (soil moisture x 10000, int16, nodata "
                    "-9999), sm_unc (prediction interval half width, same packing), sm_origin (uint16 bit flags).",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(times), max(times)]])),
        license=output.license, title="dsm daily 1 km soil moisture", keywords=list(output.keywords),
        providers=_providers(output) or None,
    )
    if output.license_url:
        coll.add_link(pystac.Link(pystac.RelType.LICENSE, output.license_url, title=f"license ({output.license})"))
    one = resolutions[0] if len(resolutions) == 1 else None
    coll.item_assets = {k: pystac.ItemAssetDefinition(_asset_fields(LAYERS[k], one)) for k in keys}
    codes = sorted({i.properties["proj:code"] for i in items if "proj:code" in i.properties})
    coll.summaries.add("proj:code", codes)
    epsgs = sorted({i.properties["proj:epsg"] for i in items if "proj:epsg" in i.properties})
    if epsgs:
        coll.summaries.add("proj:epsg", epsgs)
    coll.summaries.add("gsd", resolutions)
    coll.summaries.add("raster:bands", [_band(LAYERS["sm"], one)])
    if method:
        coll.summaries.add("dsm:method", [method])
    coll.stac_extensions = sorted({*coll.stac_extensions, RasterExtension.get_schema_uri(),
                                   ProjectionExtension.get_schema_uri()}
                                  | ({ClassificationExtension.get_schema_uri()} if "sm_origin" in keys else set()))
    for item in items:
        coll.add_item(item)
    root = stac.url.rstrip("/")
    coll.normalize_hrefs(root)
    coll.make_all_asset_hrefs_relative()  # the catalog and the COGs move together (another folder, bucket)
    # what Collection.save(SELF_CONTAINED) writes (no self links), less the Items already there
    coll.catalog_type = pystac.CatalogType.SELF_CONTAINED
    io = FsspecStacIO(stac)
    kept = set(unchanged or ())
    there = files.listing(stac) if kept else None
    for item, info in zip(items, ordered, strict=True):
        if there is None or info["day"] not in kept or not there.has_size(stac.at(item.self_href), None):
            item.save_object(include_self_link=False, stac_io=io)
    coll.save_object(include_self_link=False, stac_io=io)
    return coll
