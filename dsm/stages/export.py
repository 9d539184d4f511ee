"""The ``dsm export`` stage: the predicted days as COGs + STAC and/or CF netCDF files.

``output.formats`` (or ``dsm export --format``) chooses what is written:

``cog`` (default)
    Per predicted day, three COGs (:mod:`dsm.cog`: ``sm``, ``sm_unc``, ``sm_origin``) to
    ``stores.cog``, then a STAC Collection with one Item per day (:mod:`dsm.stac`) to
    ``stores.stac`` (default ``stac/`` under ``stores.cog``). Each exported day is recorded in
    the products store's ledger (:func:`dsm.ledger.write_exported`: each file's URL, size and
    SHA-256); a rerun skips the days whose files all still exist with their size (one listing
    of the folder), and rewrites the Collection and the Items of the days it exported (and any
    Item file gone), not every day's.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import xarray as xr
from distributed import Client

from dsm import files, fingerprint, ledger, products
from dsm.cluster import leased_outcomes
from dsm.cog import EXTRA_LAYERS, ExportJob, blocksize_for, cog_intact, cog_name, export_day, write_cog
from dsm.config import Config
from dsm.daydata import LostDataError
from dsm.errors import ConfigError
from dsm.netcdf import NetcdfJob, global_attrs, period_label, write_period
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
    out = config.stores.ref("output")
    old = st.led.exported
    ledger.write_exported(out, {d: st.exported.get(d) for d in sorted(set(old) | set(st.exported))
                                if st.exported.get(d) != old.get(d)}, fence)
    undone = {d: replace(st.led.day(d), done=False) for d in st.led.done if d not in st.done}
    ledger.write_days(out, undone, fence)
    st.led = replace(st.led, days={**st.led.days, **undone}, exported=dict(st.exported))


def _layers(config: Config) -> tuple[str, ...]:
    return tuple(v for v in EXTRA_LAYERS if v != "sm_unc" or config.output.uncertainty != "none")


def _export_cogs(config: Config, client: Client, st: _State, report: ExportReport, force: bool,
                 progress: Callable[[str], None] | None, check: Callable[[], None], fence: int | None) -> None:
    """The COGs of every predicted day not yet exported, the records, then the STAC catalog."""
    out, cog = config.stores.ref("output"), config.stores.ref("cog")
    settings = fingerprint.record(config, "cog")
    if st.exported and not force:
        fingerprint.check_settings(st.led.cog_settings, config, "cog", cog.url,
                                   "`dsm export CONFIG --force` rewrites every COG")
    layers = _layers(config)
    listed = files.listing(cog) if st.exported and not force else None  # one listing for every day's check
    jobs = []
    for t, day in enumerate(st.times):
        name = day.isoformat()
        if name not in st.done:
            continue
        info = st.exported.get(name)
        if info and not force and cog_intact(info, cog, layers, listed):
            report.skipped.append(name)
            continue
        rec = st.led.day(name)
        jobs.append(ExportJob(out, cog, day, t,
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
    ledger.write_records(out, {"cog_settings": settings}, fence=fence)
    if st.exported:
        stac = config.stores.ref("stac")
        build_catalog(list(st.exported.values()), st.led.days, stac, config.output, config.training.method,
                      unchanged=set(report.skipped))  # their Items stand as written
        report.stac = stac.join("collection.json").url


def _netcdf_settings(config: Config) -> dict[str, Any]:
    """What a netCDF file's bytes depend on beyond its days (a change rewrites it)."""
    out = config.output
    return {"netcdf_period": out.netcdf_period, "netcdf_complevel": out.netcdf_complevel, "license": out.license,
            "license_url": out.license_url, "keywords": list(out.keywords),
            "providers": [p.model_dump(mode="json") for p in out.providers]}


def _export_netcdf(config: Config, client: Client, st: _State, report: ExportReport, force: bool, command: str,
                   check: Callable[[], None], fence: int | None) -> None:
    """One netCDF file per period holding predicted days; files up to date are skipped."""
    out, dest = config.stores.ref("output"), config.stores.ref("netcdf")
    settings = _netcdf_settings(config)
    recorded = st.led.netcdf
    written: dict[str, ledger.NetcdfRecord] = {}
    region = products.region_of(st.ds.attrs)
    periods: dict[str, list[tuple[int, str]]] = {}
    for t, day in enumerate(st.times):
        if day.isoformat() in st.done:
            periods.setdefault(period_label(day, config.output.netcdf_period), []).append((t, day.isoformat()))
    jobs = []
    for label, members in sorted(periods.items()):
        days = [d for _, d in members]
        rec = recorded.get(label)
        if (rec and not force and list(rec.days) == days and rec.settings == settings
                and rec.url == dest.join(rec.name).url and files.has_size(dest.join(rec.name), rec.size)):
            report.netcdf_skipped.append(label)
            continue
        models = [st.led.day(d) for d in days]
        jobs.append(NetcdfJob(out, dest, label, tuple(days),
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
    ledger.write_netcdf(out, written, fence=fence)
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
    if not config.stores.output:
        raise ConfigError("stores.output must be set to export")
    if "cog" in formats and not config.stores.cog:
        raise ConfigError("stores.cog must be set to export COGs (output.formats / --format cog); "
                          "`dsm export CONFIG --format netcdf` writes netCDF files only")
    out = config.stores.ref("output")
    ds = products.open_products(out)
    times = [dt.date.fromisoformat(str(t)[:10]) for t in ds["time"].values.astype("datetime64[D]")]
    led = ledger.read(out, ds.attrs)
    st = _State(ds, led, set(led.done), dict(led.exported), times)
    report = ExportReport()
    check = lease.check if lease is not None else (lambda: None)
    fence = lease.fence if lease is not None else None
    if "cog" in formats:
        _export_cogs(config, client, st, report, force, progress, check, fence)
    if "netcdf" in formats:
        _export_netcdf(config, client, st, report, force, command, check, fence)
    return report
