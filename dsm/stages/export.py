"""The ``dsm export`` stage: the predicted days as COGs + STAC and/or CF netCDF files.

``output.formats`` (or ``dsm export --format``) chooses what is written:

``cog`` (default)
    Per predicted day, three COGs (:mod:`dsm.cog`: ``sm``, ``sm_unc``, ``sm_origin``) to
    ``stores.cog``, then a STAC Collection with one Item per day (:mod:`dsm.stac`) to
    ``stores.stac`` (default ``stac/`` under ``stores.cog``). Each exported day is recorded in
    the products store's ledger (:func:`dsm.ledger.write_exported`: each file's URL, size and
    SHA-256); a rerun skips the days whose files all still exist with their size.
``netcdf``
    One CF-1.10/ACDD-1.3 netCDF4 file per year or month (:mod:`dsm.netcdf`) to
    ``stores.netcdf``, recorded in the ledger (:class:`dsm.ledger.NetcdfRecord`: file, size,
    SHA-256, the days it holds, the settings it was written with); a rerun rewrites only the
    files whose days or settings changed or whose file is gone.

A day whose stored ``sm`` is no longer what predict wrote (:class:`LostDataError`) is never
published: its COG records are dropped and it is no longer done, so that predict writes it again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import fsspec
import xarray as xr
from distributed import Client

from dsm import fingerprint, ledger, products
from dsm.cluster import leased_outcomes
from dsm.cog import EXTRA_LAYERS, ExportJob, blocksize_for, cog_intact, cog_name, export_day, write_cog
from dsm.config import Config
from dsm.daydata import LostDataError
from dsm.errors import ConfigError
from dsm.netcdf import NetcdfJob, global_attrs, netcdf_url, period_label, write_period
from dsm.runlock import Lease
from dsm.stac import COLLECTION_ID, FsspecStacIO, build_catalog, stac_item

__all__ = ["COLLECTION_ID", "ExportJob", "ExportReport", "FsspecStacIO", "LostDataError", "blocksize_for",
           "build_catalog", "cog_name", "export", "export_day", "stac_item", "write_cog"]

FORMATS = ("cog", "netcdf")


@dataclass
class ExportReport:
    """What an export run did: COG days exported / skipped / failed, the STAC collection, and
    the netCDF files written (URLs) / skipped (period labels) / failed (label -> why)."""

    exported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stac: str | None = None
    netcdf: list[str] = field(default_factory=list)
    netcdf_skipped: list[str] = field(default_factory=list)
    netcdf_failed: dict[str, str] = field(default_factory=dict)


@dataclass
class _State:
    """The products store's records as this run changes them (``led``: as last recorded)."""

    ds: xr.Dataset
    led: ledger.ProductsLedger
    done: set[str]
    exported: dict[str, Any]
    times: list[dt.date]

    def take_back(self, day: str) -> None:
        """Day ``day``'s data is not what predict wrote: not done, its COG records no longer trusted."""
        self.done.discard(day)
        self.exported.pop(day, None)


def _record(config: Config, st: _State, fence: int | None) -> None:
    """Record the COG records and the days taken back that changed since ``st.led``: the COG
    records first, so a crash in between never leaves a record of a day predict will redo."""
    url, so = str(config.stores.output), config.stores.storage_options
    old = st.led.exported
    ledger.write_exported(url, {d: st.exported.get(d) for d in sorted(set(old) | set(st.exported))
                                if st.exported.get(d) != old.get(d)}, so, fence)
    undone = {d: replace(st.led.day(d), done=False) for d in st.led.done if d not in st.done}
    ledger.write_days(url, undone, so, fence)
    st.led = replace(st.led, days={**st.led.days, **undone}, exported=dict(st.exported))


def _layers(config: Config) -> tuple[str, ...]:
    return tuple(v for v in EXTRA_LAYERS if v != "sm_unc" or config.output.uncertainty != "none")


def _export_cogs(config: Config, client: Client, st: _State, report: ExportReport, force: bool,
                 progress: Callable[[str], None] | None, check: Callable[[], None], fence: int | None) -> None:
    """The COGs of every predicted day not yet exported, the records, then the STAC catalog."""
    so = config.stores.storage_options
    settings = fingerprint.record(config, "cog")
    if st.exported and not force:
        fingerprint.check_settings(st.led.cog_settings, config, "cog", str(config.stores.cog),
                                   "`dsm export CONFIG --force` rewrites every COG")
    layers = _layers(config)
    so_json = json.dumps(so, sort_keys=True)
    jobs = []
    for t, day in enumerate(st.times):
        name = day.isoformat()
        if name not in st.done:
            continue
        info = st.exported.get(name)
        if info and not force and cog_intact(info, so, layers):
            report.skipped.append(name)
            continue
        rec = st.led.day(name)
        jobs.append(ExportJob(str(config.stores.output), str(config.stores.cog), so_json, day, t,
                              config.output.export_crs, config.output.cog_blocksize, config.output.cog_compress,
                              rec.valid_pixels, rec.sm_digest, layers))
    check()
    futures = client.map(export_day, jobs, pure=False)
    for job, result, exc in leased_outcomes(client, dict(zip(futures, jobs, strict=True)), check):
        name = job.day.isoformat()
        if exc is None:
            st.exported[name] = result
            report.exported.append(name)
            if progress:
                progress(f"{name}: {result['url']}")
        else:
            report.failed[name] = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, LostDataError):  # predict redoes the day; its old COGs are no longer trusted
                st.take_back(name)
    report.exported.sort()
    check()
    _record(config, st, fence)
    ledger.write_records(str(config.stores.output), {"cog_settings": settings}, so, fence=fence)
    if st.exported:
        stac_url = config.stores.stac or f"{str(config.stores.cog).rstrip('/')}/stac"
        build_catalog(list(st.exported.values()), st.led.days, stac_url, so, config.output, config.training.method)
        report.stac = f"{stac_url.rstrip('/')}/collection.json"


def _netcdf_settings(config: Config) -> dict[str, Any]:
    """What a netCDF file's bytes depend on beyond its days (a change rewrites it)."""
    out = config.output
    return {"netcdf_period": out.netcdf_period, "netcdf_complevel": out.netcdf_complevel, "license": out.license,
            "license_url": out.license_url, "keywords": list(out.keywords),
            "providers": [p.model_dump(mode="json") for p in out.providers]}


def _netcdf_intact(record: ledger.NetcdfRecord, so: Mapping[str, Any]) -> bool:
    """Whether the recorded netCDF file still exists with its size."""
    fs, path = fsspec.core.url_to_fs(record.url, **so)
    try:
        return fs.size(path) == record.size
    except FileNotFoundError:
        return False


def _export_netcdf(config: Config, client: Client, st: _State, report: ExportReport, force: bool, command: str,
                   check: Callable[[], None], fence: int | None) -> None:
    """One netCDF file per period holding predicted days; files up to date are skipped."""
    so = config.stores.storage_options
    dest = netcdf_url(config)
    settings = _netcdf_settings(config)
    recorded = st.led.netcdf
    written: dict[str, ledger.NetcdfRecord] = {}
    region = products.region_of(st.ds.attrs)
    periods: dict[str, list[tuple[int, str]]] = {}
    for t, day in enumerate(st.times):
        if day.isoformat() in st.done:
            periods.setdefault(period_label(day, config.output.netcdf_period), []).append((t, day.isoformat()))
    so_json = json.dumps(so, sort_keys=True)
    jobs = []
    for label, members in sorted(periods.items()):
        days = [d for _, d in members]
        rec = recorded.get(label)
        if (rec and not force and list(rec.days) == days and rec.settings == settings
                and rec.url == f"{dest}/{rec.name}" and _netcdf_intact(rec, so)):
            report.netcdf_skipped.append(label)
            continue
        models = [st.led.day(d) for d in days]
        jobs.append(NetcdfJob(str(config.stores.output), dest, so_json, label, tuple(days),
                              tuple(t for t, _ in members), tuple(m.valid_pixels for m in models),
                              tuple(m.sm_digest for m in models),
                              json.dumps(global_attrs(config, region, days, label, command)),
                              config.output.netcdf_complevel))
    check()
    futures = client.map(write_period, jobs, pure=False)
    for job, result, exc in leased_outcomes(client, dict(zip(futures, jobs, strict=True)), check):
        if exc is None:
            written[job.label] = ledger.NetcdfRecord.from_dict({**result, "settings": settings})
            report.netcdf.append(result["url"])
        else:
            report.netcdf_failed[job.label] = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, LostDataError):
                for iso in exc.days:
                    st.take_back(iso)
    report.netcdf.sort()
    check()
    ledger.write_netcdf(str(config.stores.output), written, so, fence=fence)
    _record(config, st, fence)


def export(config: Config, client: Client, *, force: bool = False, progress: Callable[[str], None] | None = None,
           lease: Lease | None = None, formats: Sequence[str] | None = None,
           command: str = "dsm.stages.export.export (Python)") -> ExportReport:
    """Export every predicted day of ``config`` in each of ``formats`` (default ``output.formats``).

    Parameters
    ----------
    config
        The run configuration (``stores.output``; ``stores.cog`` for COGs).
    client
        The Dask client; each day (COG) or period (netCDF) is one task.
    force
        Rewrite what is already exported.
    progress
        Called with one line per day of COGs written.
    lease
        The run's :class:`dsm.runlock.Lease`: checked before the tasks are submitted, as each
        one lands (a lost lease cancels the rest) and before the records are written.
    formats
        ``"cog"`` and/or ``"netcdf"``.
    command
        The command line, for the netCDF files' ``history``.

    Raises
    ------
    ConfigError
        An unknown format, or a store the formats need is not set.
    """
    formats = tuple(dict.fromkeys(formats or config.output.formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"export format(s) {unknown} unknown: output.formats / --format take {list(FORMATS)}")
    so = config.stores.storage_options
    if not config.stores.output:
        raise ConfigError("stores.output must be set to export")
    if "cog" in formats and not config.stores.cog:
        raise ConfigError("stores.cog must be set to export COGs (output.formats / --format cog); "
                          "`dsm export CONFIG --format netcdf` writes netCDF files only")
    ds = products.open_products(config.stores.output, so)
    times = [dt.date.fromisoformat(str(t)[:10]) for t in ds["time"].values.astype("datetime64[D]")]
    led = ledger.read(config.stores.output, so, ds.attrs)
    st = _State(ds, led, set(led.done), dict(led.exported), times)
    report = ExportReport()
    check = lease.check if lease is not None else (lambda: None)
    fence = lease.fence if lease is not None else None
    if "cog" in formats:
        _export_cogs(config, client, st, report, force, progress, check, fence)
    if "netcdf" in formats:
        _export_netcdf(config, client, st, report, force, command, check, fence)
    return report
