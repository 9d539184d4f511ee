"""The ingest's sources: one class per product family, and the one table of the configured ones.

=============================  ==============================  ========================================
class                          ``inputs:``                     variables
=============================  ==============================  ========================================
:class:`SmapSource`            ``smap``                        ``smap_sm`` (daily, coarse grid)
:class:`ModisSource`           ``mod11a1``, ``mod15a2h``,      ``lst``; ``lai``, ``fapar``; ``ndwi``,
                               ``mod09a1``, ``mod13a2``        ``lswi``, ``nsdsi``; ``ndvi``, ``evi``
:class:`AlbedoSource`          ``mcd43``                       ``albedo`` (``wsa``, ``bsa`` or their mean)
:class:`GeotiffSource`         ``geotiff.<variable>``          the variable, on its own axis
:class:`ReflectanceSource`     ``reflectance``                 ``ndwi``, ``lswi``, ``nsdsi`` (8-day)
:class:`~dsm.ingest.source_stac.StacSource`      ``stac.assets.<variable>``  the variable
:class:`~dsm.ingest.source_precip.PrecipSource`  ``precip``                  ``precip`` (``time_precip``)
:class:`~dsm.ingest.source_static.StaticSource`  ``dem``, ``slope``, ``aspect``, ``soil``, ``land_mask``
=============================  ==============================  ========================================

:func:`configured_sources` builds the table from the configuration (the plan runs each
source's :meth:`~dsm.ingest.source.Source.plan`); a task names its source and the worker
finds it again with :func:`source_named`. Adding a product is adding a class here (or in its
own module) and a line to :data:`FAMILIES`: the plan and the tasks do not change.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import xarray as xr

from dsm.config import Config, InputsConfig
from dsm.cube import SPECS
from dsm.errors import ConfigError
from dsm.files import FileReport, expand_each
from dsm.grid import Region
from dsm.ingest.base import DEFAULT_DATE_REGEX, IngestInputError, NoOverlapError, UnreadableFileError, read_many
from dsm.ingest.inputs import folder_patterns, source_entry
from dsm.ingest.modis import read_modis_tile, tile_raster
from dsm.ingest.modis_products import PRODUCTS, QCRule
from dsm.ingest.rasters import ValueRule, geotiff_series_to_region
from dsm.ingest.reflectance import DATE_REGEX as REFLECTANCE_DATES
from dsm.ingest.reflectance import match_band_dates, reflectance_indices
from dsm.ingest.reproject import crop_to_region, warp_many_to_region
from dsm.ingest.smap import granule_date, product_of, read_smap
from dsm.ingest.source import DatedSource, Source
from dsm.ingest.source_precip import PrecipSource
from dsm.ingest.source_stac import StacSource
from dsm.ingest.source_static import StaticSource
from dsm.ingest.work import Group, Plan, axis_index, chunk_tasks, entry, off_axis, time_chunk, time_indexes

MODIS_DATE = r"\.A(?P<year>\d{4})(?P<doy>\d{3})\."
SMAP_DATE = r"SMAP_L3_SM_P_(?:E_)?(?P<date>\d{8})_"  # SPL3SMP and SPL3SMP_E granule names
_TILE = re.compile(r"\.(h\d{2}v\d{2})\.")

Arrays = tuple[dict[str, np.ndarray] | None, list[FileReport]]


class SmapSource(DatedSource):
    """SMAP L3 granules (``inputs.smap``): ``smap_sm`` on the coarse grid; all granules of one
    day are duplicates (the newest intact one is read); a renamed granule is dated by its content."""

    name, variables, axis, reads = "smap", ("smap_sm",), "daily", "h5py"
    folder_patterns, date_regex = folder_patterns("smap"), SMAP_DATE

    @classmethod
    def configured(cls, inputs: InputsConfig) -> list[Source]:
        """The source of ``inputs.smap``, if given."""
        return [cls(inputs, inputs.smap, "inputs.smap")] if inputs.smap is not None else []

    def slot(self, url: str) -> str:
        """Every granule of a day is a duplicate of the others."""
        return self.name

    def date_from_content(self, cfg: Config, url: str, exc: IngestInputError
                          ) -> tuple[dt.date | None, IngestInputError]:
        """The date from the granule's metadata, granule names in its attributes or acquisition
        times (only the metadata of a remote file is read)."""
        try:
            with fsspec.open(url, "rb", **self.storage_options) as f:
                return granule_date(url, f, overpass=self.conf.overpass,
                                    product=product_of(cfg.grid_region).short_name), exc
        except IngestInputError as err:
            return None, err
        except OSError as err:
            return None, UnreadableFileError(url, f"cannot be opened to find its date ({err})")

    def read(self, paths: Sequence[str], cfg: Config, region: Region, kinds: Mapping[str, str]) -> Arrays:
        """The first usable granule's soil moisture on the region's coarse cells."""
        many = read_many(paths, read_smap, region=region, overpass=self.conf.overpass, qc_mask=self.conf.qc_mask)
        if not many.results:
            return None, many.report
        return {"smap_sm": next(iter(many.results.values()))[0].values}, many.report


def _tile_for_region(path: str, region: Region, product: str, qc: Any) -> xr.Dataset:
    ds, _ = read_modis_tile(path, product, qc=qc)
    if crop_to_region(tile_raster(ds, str(next(iter(ds.data_vars)))), region, margin=1) is None:
        raise NoOverlapError(path, f"tile {ds.attrs['tile']} does not cover region {region.to_dict()}")
    return ds


class ModisSource(DatedSource):
    """MODIS HDF4 tiles of one product (``inputs.<key>``): the tiles of a date mosaicked and
    warped onto the region; tiles of one date and tile number are duplicates."""

    reads, date_regex = "copy", MODIS_DATE

    def __init__(self, inputs: InputsConfig, key: str, product: str, axis: str, outputs: Mapping[str, str]) -> None:
        super().__init__(inputs, getattr(inputs, key), f"inputs.{key}")
        self.name, self.product, self.axis, self.outputs = key, product, axis, dict(outputs)
        self.variables = tuple(outputs.values())
        self.folder_patterns = folder_patterns(key, product)

    @classmethod
    def configured(cls, inputs: InputsConfig) -> list[Source]:
        """The sources of the MODIS products given in ``inputs`` (:data:`MODIS`)."""
        return [kind(inputs, key, product, axis, outputs) for kind, key, product, axis, outputs in MODIS
                if getattr(inputs, key) is not None]

    def slot(self, url: str) -> str:
        """The tile number (``h12v04``)."""
        tile = _TILE.search(os.path.basename(url))
        return tile.group(1) if tile else url

    def warped(self, paths: Sequence[str], region: Region) -> tuple[dict[str, np.ndarray] | None, list[FileReport]]:
        """Each variable of the product's reader, its tiles mosaicked and warped onto the region."""
        qc = self.conf.qc
        rules = None if qc is None else {k: tuple(QCRule(s, n, tuple(a)) for s, n, a in v) for k, v in qc.items()}
        many = read_many(paths, _tile_for_region, region=region, product=self.product, qc=rules)
        if not many.results:
            return None, many.report
        tiles = list(many.results.values())
        spec = PRODUCTS[self.product]
        return {str(v): warp_many_to_region([tile_raster(t, str(v)) for t in tiles], region,
                                            spec.outputs[str(v)].resampling)
                for v in tiles[0].data_vars}, many.report  # fmt: skip

    def read(self, paths: Sequence[str], cfg: Config, region: Region, kinds: Mapping[str, str]) -> Arrays:
        """The product's variables, renamed to the cube's."""
        warped, reports = self.warped(paths, region)
        return (None if warped is None else {self.outputs[k]: a for k, a in warped.items()}), reports


class AlbedoSource(ModisSource):
    """MCD43A3 tiles (``inputs.mcd43``): ``albedo``, the white-sky or black-sky albedo or their mean."""

    def read(self, paths: Sequence[str], cfg: Config, region: Region, kinds: Mapping[str, str]) -> Arrays:
        """``albedo`` as ``inputs.mcd43.albedo`` says."""
        warped, reports = self.warped(paths, region)
        if warped is None:
            return None, reports
        if self.conf.albedo == "mean":
            with np.errstate(invalid="ignore"):
                return {"albedo": ((warped["albedo_wsa"] + warped["albedo_bsa"]) / 2).astype(np.float32)}, reports
        return {"albedo": warped[f"albedo_{self.conf.albedo}"]}, reports


#: MODIS products of ``inputs:``: class, key, product, axis and reader output -> cube variable.
MODIS: tuple[tuple[type[ModisSource], str, str, str, dict[str, str]], ...] = (
    (ModisSource, "mod11a1", "MOD11A1", "daily", {"lst": "lst"}),
    (AlbedoSource, "mcd43", "MCD43A3", "daily", {"albedo": "albedo"}),
    (ModisSource, "mod15a2h", "MOD15A2H", "8day", {"lai": "lai", "fpar": "fapar"}),
    (ModisSource, "mod09a1", "MOD09A1", "8day", {"ndwi": "ndwi", "lswi": "lswi", "nsdsi": "nsdsi"}),
    (ModisSource, "mod13a2", "MOD13A2", "16day", {"ndvi": "ndvi", "evi": "evi"}),
)


class GeotiffSource(DatedSource):
    """Per-date rasters of one cube variable (``inputs.geotiff.<variable>``), on its own axis."""

    folder_patterns = folder_patterns("geotiff")

    def __init__(self, inputs: InputsConfig, var: str) -> None:
        super().__init__(inputs, inputs.geotiff[var], f"inputs.geotiff.{var}")
        self.name, self.variables, self.axis = f"geotiff:{var}", (var,), SPECS[var].axis
        self.date_regex = self.conf.date_regex or DEFAULT_DATE_REGEX

    @classmethod
    def configured(cls, inputs: InputsConfig) -> list[Source]:
        """One source per variable of ``inputs.geotiff``."""
        return [cls(inputs, var) for var in inputs.geotiff]

    def read(self, paths: Sequence[str], cfg: Config, region: Region, kinds: Mapping[str, str]) -> Arrays:
        """The rasters of one date mosaicked and warped onto the region."""
        (var,), src = self.variables, self.conf
        da, many = geotiff_series_to_region(paths, region, var, date_regex=self.date_regex, resampling=src.resampling,
                                            band=src.band, rule=ValueRule.of(src, self.setting))
        return ({var: da.values[0]} if da.sizes["time"] else None), many.report


class ReflectanceSource(DatedSource):
    """MOD09A1 band GeoTIFFs (``inputs.reflectance``): the files of each band dated, the dates
    matched across bands (:func:`~dsm.ingest.reflectance.match_band_dates`), NDWI, LSWI and
    NSDSI computed from each 8-day date's bands."""

    name, variables, axis = "reflectance", ("ndwi", "lswi", "nsdsi"), "8day"
    folder_patterns = folder_patterns("geotiff")

    @classmethod
    def configured(cls, inputs: InputsConfig) -> list[Source]:
        """The source of ``inputs.reflectance``, if given."""
        return [cls(inputs, inputs.reflectance, "inputs.reflectance")] if inputs.reflectance is not None else []

    def plan(self, cfg: Config, cube: xr.Dataset, out: Plan) -> None:
        """Groups of one date's band files, each file tagged with its band (``Group.kinds``); a
        date missing a band is skipped, its files named."""
        src, so, folder, dim = self.conf, self.storage_options, self.folder_patterns, self.dim
        found = {b: expand_each(paths, so, folder) for b, paths in src.bands.items()}
        out.sources[self.name] = source_entry(self.setting, [p for ps in src.bands.values() for p in ps],
                                              {p: us for f in found.values() for p, us in f.items()}, folder)
        matched = match_band_dates({b: sorted({u for us in f.values() for u in us}) for b, f in found.items()},
                                   src.date_regex or REFLECTANCE_DATES)
        out.files += [entry(u, self.name, d, status, why, err) for u, d, status, why, err in matched.problems]
        indexes = time_indexes(cube)
        groups: list[tuple[int, Group]] = []
        for date, pairs in matched.complete.items():
            i = axis_index(indexes, dim, date)
            if i is None:
                out.files += [entry(u, self.name, date, "skipped", off_axis(dim, date)) for _, u in pairs]
                continue
            groups.append((i, Group(date, tuple(u for _, u in pairs), kinds=tuple(b for b, _ in pairs))))
        out.tasks += chunk_tasks(self.name, dim, time_chunk(cube, self.variables[0]), cube.sizes[dim], groups)

    def read(self, paths: Sequence[str], cfg: Config, region: Region, kinds: Mapping[str, str]) -> Arrays:
        """The indices of one date from its bands (``kinds``: local file -> band)."""
        qc = None if self.conf.qc is None else tuple(QCRule(s, n, tuple(a)) for s, n, a in self.conf.qc)
        arrays, many = reflectance_indices(kinds, region, ValueRule.of(self.conf, self.setting), qc)
        return arrays, many.report


#: The product families, in the order they are planned: each gives the sources of a configuration.
FAMILIES: tuple[Callable[[InputsConfig], Iterable[Source]], ...] = (
    SmapSource.configured,
    ModisSource.configured,
    GeotiffSource.configured,
    ReflectanceSource.configured,
    StacSource.configured,
    PrecipSource.configured,
    StaticSource.configured,
)


def configured_sources(cfg: Config) -> dict[str, Source]:
    """Name -> source of every input of ``cfg.inputs`` (none without an ``inputs`` section).

    Raises
    ------
    ConfigError
        Two sources of one name (a bug of a family: names are unique).
    """
    out: dict[str, Source] = {}
    if cfg.inputs is None:
        return out
    for family in FAMILIES:
        for src in family(cfg.inputs):
            if src.name in out:
                raise ConfigError(f"two ingest sources are named {src.name!r}: {out[src.name]!r} and {src!r}")
            out[src.name] = src
    return out


def source_named(cfg: Config, name: str) -> Source:
    """The source ``name`` of the configuration (on a worker: the source of a task).

    Raises
    ------
    ConfigError
        No input of the configuration is ``name``.
    """
    table = configured_sources(cfg)
    if name not in table:
        raise ConfigError(f"no input of the configuration is the ingest source {name!r} (configured: "
                          f"{', '.join(table) or 'none'}): plan and run the ingest with the same configuration")
    return table[name]


__all__ = ["FAMILIES", "MODIS", "MODIS_DATE", "SMAP_DATE", "AlbedoSource", "GeotiffSource", "ModisSource",
           "ReflectanceSource", "SmapSource", "configured_sources", "source_named"]
