"""The products store's run ledger: what each run recorded, beside the arrays, one object per time chunk.

Layout, inside the store (so it travels with it, on disk or object storage)::

    sm.zarr/zarr.json                    root attributes: the store's description, the settings
                                         fingerprint, the calibrations, ``cog_settings`` and the
                                         writers' lease token (FENCE_ATTR): constant in size
    sm.zarr/_ledger/zarr.json            an empty Zarr group, so that Zarr and xarray see a group
                                         (which ``xr.open_zarr`` ignores) and no stray objects
    sm.zarr/_ledger/predict/<day>.json   predict's record of the days of one time chunk
                                         (``<day>``: the chunk's first day)
    sm.zarr/_ledger/cog/<day>.json       export's COG records of the days of one time chunk
    sm.zarr/_ledger/netcdf/<label>.json  export's record of one netCDF file (a year or a month)

Each object is written whole (:func:`dsm.files.write_bytes`: one PUT on object storage, write
then rename on a local disk), so a reader sees an object before or after a write, never half
of one; the ledger is read with one listing and one concurrent fetch. A write by a lease
(``fence``, :attr:`dsm.runlock.RunLock.fence`) first checks the token the store records
(:func:`dsm.store.check_fence`): a writer whose lease was taken over writes nothing.

Each stage writes its own objects: predict ``predict/``, export ``cog/`` and ``netcdf/``. A day
taken back (its stored data is not what predict wrote) loses its COG record first, then its
``done``, so that no crash in between leaves a published COG of data that predict will redo.

Stores written before the ledger kept these records in their root attributes (``days_done``,
``day_models``, ``days_exported``...): they are read from there, and the first write moves them
into the ledger (:func:`migrate`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import fsspec
import zarr

from dsm import files, products, store
from dsm.errors import StoreError, StoreNotFoundError
from dsm.storeref import StoreRef

__all__ = ["FOLDER", "DayRecord", "NetcdfRecord", "ProductsLedger", "migrate", "read", "store_records", "taken_back",
           "write_days", "write_exported", "write_netcdf", "write_records"]

FOLDER = "_ledger"  #: the ledger's folder (a Zarr group) inside the store
FORMAT = 1  #: ``dsm_ledger`` of every object
PREDICT, COG, NETCDF = "predict", "cog", "netcdf"
RECORDS = ("settings", "cog_settings", "anomaly_gain", "anomaly_error")
"""Store-level records (root attributes, constant in size, JSON text: :func:`dsm.products.netcdf_safe`)."""
LEGACY = ("days_done", "days_empty", "days_failed", "day_models", "consistency", "inputs_out_of_range",
          "days_exported", "netcdf_exported")
"""Root attributes of stores written before the ledger (``days_done`` marks such a store)."""


@dataclass(frozen=True)
class DayRecord:
    """Predict's record of one day.

    Attributes
    ----------
    done
        Every block of the day landed and it has predicted pixels.
    empty
        Why the day has nothing to predict (None: not empty).
    failed
        Why the day failed (None: it did not); retried by the next run.
    model
        Which models made the day (:meth:`dsm.dayplans.DayPlan.record`) with the valid pixel
        count, the digest of the stored ``sm`` and the cube's revision it was made from.
    consistency
        R, RMSE, bias and n of ``sm_36km`` against SMAP.
    out_of_range
        Predictor -> values masked as impossible (:mod:`dsm.ranges`).
    """

    done: bool = False
    empty: str | None = None
    failed: str | None = None
    model: Mapping[str, Any] | None = None
    consistency: Mapping[str, Any] | None = None
    out_of_range: Mapping[str, int] | None = None

    @property
    def valid_pixels(self) -> int | None:
        """The valid ``sm`` pixels predict wrote (None: not recorded)."""
        return (self.model or {}).get(products.VALID_PIXELS)

    @property
    def sm_digest(self) -> str | None:
        """The digest of the stored ``sm`` predict wrote (:func:`dsm.products.day_digest`)."""
        return (self.model or {}).get(products.SM_DIGEST)

    @property
    def inputs_revision(self) -> Any:
        """The cube's revision (:data:`dsm.store.REVISION_ATTR`) the day was made from."""
        return (self.model or {}).get(store.REVISION_ATTR)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (unset fields left out)."""
        d: dict[str, Any] = {"done": True} if self.done else {}
        d.update({k: v for k, v in (("empty", self.empty), ("failed", self.failed), ("model", self.model),
                                    ("consistency", self.consistency), ("out_of_range", self.out_of_range))
                  if v is not None})
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DayRecord:
        """The record of :meth:`to_dict`."""
        return cls(bool(d.get("done", False)), d.get("empty"), d.get("failed"), d.get("model"), d.get("consistency"),
                   d.get("out_of_range"))


@dataclass(frozen=True)
class NetcdfRecord:
    """Export's record of one netCDF file: where it is, its size and SHA-256, its days, and the
    settings it was written with."""

    url: str
    name: str
    size: int
    sha256: str
    days: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"url": self.url, "name": self.name, "size": self.size, "sha256": self.sha256, "days": list(self.days),
                "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetcdfRecord:
        """The record of :meth:`to_dict` (or of :func:`dsm.netcdf.write_period` plus ``settings``)."""
        return cls(str(d["url"]), str(d["name"]), int(d["size"]), str(d["sha256"]), tuple(d.get("days", ())),
                   dict(d.get("settings", {})))


@dataclass(frozen=True)
class ProductsLedger:
    """Everything the runs recorded in a products store.

    Attributes
    ----------
    days
        ISO day -> predict's :class:`DayRecord`.
    exported
        ISO day -> its COG record (:func:`dsm.cog.export_day`: URL, size, SHA-256... and ``layers``).
    netcdf
        Period label -> :class:`NetcdfRecord`.
    settings, cog_settings
        The fingerprints (:func:`dsm.fingerprint.record`) of the products and of the COGs.
    anomaly_gain, anomaly_error
        The fusion method's calibrations (:mod:`dsm.station_calibration`).
    fence
        The token of the lease that last wrote (:data:`dsm.store.FENCE_ATTR`).
    legacy
        Read from the root attributes of a store written before the ledger.
    """

    days: Mapping[str, DayRecord] = field(default_factory=dict)
    exported: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    netcdf: Mapping[str, NetcdfRecord] = field(default_factory=dict)
    settings: Mapping[str, Any] | None = None
    cog_settings: Mapping[str, Any] | None = None
    anomaly_gain: Mapping[str, Any] | None = None
    anomaly_error: Mapping[str, Any] | None = None
    fence: int | None = None
    legacy: bool = False

    def day(self, name: str) -> DayRecord:
        """The record of day ``name`` (an empty one when none)."""
        return self.days.get(name, DayRecord())

    @property
    def done(self) -> list[str]:
        """The days done, sorted."""
        return sorted(d for d, r in self.days.items() if r.done)

    @property
    def empty(self) -> dict[str, str]:
        """Day -> why it has nothing to predict."""
        return {d: r.empty for d, r in sorted(self.days.items()) if r.empty is not None}

    @property
    def failed(self) -> dict[str, str]:
        """Day -> why it failed."""
        return {d: r.failed for d, r in sorted(self.days.items()) if r.failed is not None}

    def stored_records(self) -> dict[str, Mapping[str, Any]]:
        """The store-level records that are set (``settings``, ``cog_settings``, ``anomaly_gain``, ``anomaly_error``)."""
        return {k: v for k in RECORDS if (v := getattr(self, k)) is not None}


# ------------------------------------------------------------------------------ pure parts
def _is_legacy(attrs: Mapping[str, Any]) -> bool:
    return "days_done" in attrs


def _records_of(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The store-level records and the fence of root attributes (JSON text decoded)."""
    decoded = products.decode_attrs({k: attrs[k] for k in RECORDS if k in attrs})
    fence = attrs.get(store.FENCE_ATTR)
    return {**{k: decoded.get(k) or None for k in RECORDS}, "fence": None if fence is None else int(fence)}


def store_records(attrs: Mapping[str, Any]) -> ProductsLedger:
    """The store-level records of root attributes ``attrs`` alone (no days read): a ledger whose
    ``days``, ``exported`` and ``netcdf`` are empty."""
    return ProductsLedger(**_records_of(attrs), legacy=_is_legacy(attrs))


def from_attrs(attrs: Mapping[str, Any]) -> ProductsLedger:
    """The ledger of a store written before the ledger, from its root attributes."""
    done = set(attrs.get("days_done", []))
    parts = [dict(attrs.get(k, {})) for k in ("days_empty", "days_failed", "day_models", "consistency",
                                                "inputs_out_of_range")]
    names = done.union(*parts)
    empty, failed, models, cons, oor = parts
    days = {d: DayRecord(d in done, empty.get(d), failed.get(d), models.get(d), cons.get(d), oor.get(d))
            for d in sorted(names)}
    netcdf = {k: NetcdfRecord.from_dict(v) for k, v in sorted(dict(attrs.get("netcdf_exported", {})).items())}
    return ProductsLedger(days, dict(sorted(dict(attrs.get("days_exported", {})).items())), netcdf,
                          **_records_of(attrs), legacy=True)


def from_objects(attrs: Mapping[str, Any], objects: Mapping[str, bytes]) -> ProductsLedger:
    """The ledger from the root attributes and the ledger's objects (path under the ledger
    folder, e.g. ``predict/2016-06-09.json`` -> bytes)."""
    days: dict[str, DayRecord] = {}
    exported: dict[str, Mapping[str, Any]] = {}
    netcdf: dict[str, NetcdfRecord] = {}
    for path, raw in objects.items():
        kind = path.split("/", 1)[0]
        entries = json.loads(raw)["records"]
        if kind == PREDICT:
            days.update((k, DayRecord.from_dict(v)) for k, v in entries.items())
        elif kind == COG:
            exported.update(entries)
        elif kind == NETCDF:
            netcdf.update((k, NetcdfRecord.from_dict(v)) for k, v in entries.items())
    return ProductsLedger(dict(sorted(days.items())), dict(sorted(exported.items())), dict(sorted(netcdf.items())),
                          **_records_of(attrs))


def chunk_key(day: str, start: str, time_chunk: int) -> str:
    """The name of the object holding ``day``'s record: the first day of its time chunk."""
    first = dt.date.fromisoformat(start)
    t = (dt.date.fromisoformat(day) - first).days
    return (first + dt.timedelta(days=t // time_chunk * time_chunk)).isoformat()


def _encode(entries: Mapping[str, Any]) -> bytes:
    return json.dumps({"dsm_ledger": FORMAT, "records": {k: entries[k] for k in sorted(entries)}},
                      sort_keys=True, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------ IO edge
def _objects(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, bytes]:
    """Every record object under ``folder`` (path relative to it -> bytes): one listing, one
    concurrent fetch. Partial files of a local write in progress are not records.

    The cached listings of ``folder`` and of every folder under it are dropped first: s3fs
    sizes an object from its folder's cached listing before reading it, so a listing cached
    before another process added a record object would make that read fail as a missing
    object, and the record would be left out."""
    fs.invalidate_cache(folder)
    for cached in [k for k in getattr(fs, "dircache", {}) if str(k).startswith(f"{folder}/")]:
        fs.invalidate_cache(cached)
    paths = [p for p in fs.find(folder) if p.endswith(".json") and p != f"{folder}/zarr.json"]
    if not paths:
        return {}
    got = fs.cat(paths, on_error="return")
    failed = {p: v for p, v in got.items() if isinstance(v, Exception) and not isinstance(v, FileNotFoundError)}
    if failed:  # never a ledger silently short of records
        p, exc = next(iter(failed.items()))
        raise StoreError(f"cannot read the run ledger's record {p} ({len(failed)} unreadable): "
                         f"{type(exc).__name__}: {exc}; rerun to resume")
    # an object deleted since the listing (FileNotFoundError) is no record
    return {p[len(folder) + 1:]: v for p, v in got.items() if isinstance(v, bytes)}


def _root_attrs(ref: StoreRef) -> dict[str, Any]:
    attrs = store.root_attrs(ref)
    if attrs is None:
        raise StoreNotFoundError(f"no Zarr store at {ref} (no zarr.json found): no products store, no run "
                                 "ledger; dsm predict CONFIG makes it")
    return attrs


def read(ref: StoreRef, attrs: Mapping[str, Any] | None = None) -> ProductsLedger:
    """The ledger of the products store at ``ref``.

    Parameters
    ----------
    attrs
        The store's root attributes when already read (:func:`dsm.products.open_products`),
        else they are read.

    Raises
    ------
    StoreNotFoundError
        No store at ``ref``.
    """
    fs, root = ref.fs()
    attrs = dict(attrs) if attrs is not None else _root_attrs(ref)
    if _is_legacy(attrs):
        return from_attrs(attrs)
    return from_objects(attrs, _objects(fs, f"{root}/{FOLDER}"))


def _write_objects(fs: fsspec.AbstractFileSystem, blobs: Mapping[str, bytes | None]) -> None:
    """Write (None: delete) each object whole; on object storage in one concurrent batch."""
    gone = [p for p, b in blobs.items() if b is None]
    files.write_all(fs, {p: b for p, b in blobs.items() if b is not None})  # each object one PUT: all-or-nothing
    for p in gone:
        if fs.exists(p):
            fs.rm(p)


def _begin(ref: StoreRef, fence: int | None) -> tuple[fsspec.AbstractFileSystem, str, zarr.Group]:
    """Before a write: the fence check (a taken-over lease writes nothing), a legacy store
    moved into the ledger (:func:`migrate`), the ledger's group created, the token recorded."""
    group = zarr.open_group(ref.url, mode="r+", storage_options=ref.zarr_options)
    attrs = group.attrs.asdict()
    if fence is not None:
        store.check_fence(ref.url, attrs.get(store.FENCE_ATTR), fence)
    fs, root = ref.fs()
    if _is_legacy(attrs):
        _migrate(fs, root, group, attrs, fence)
    else:
        _ensure_group(fs, root)
        if fence is not None and attrs.get(store.FENCE_ATTR) != fence:
            group.update_attributes({store.FENCE_ATTR: int(fence)})
    return fs, root, group


def _time_chunk(group: zarr.Group) -> int:
    """Days per time chunk of the products (``sm``'s first chunk size): the days of one ledger object."""
    sm = group.get("sm")
    if not isinstance(sm, zarr.Array):
        raise StoreError(f"{group.store_path}: no 'sm' array; not a products store")
    return int(sm.chunks[0])


def _ensure_group(fs: fsspec.AbstractFileSystem, root: str) -> None:
    path = f"{root}/{FOLDER}/zarr.json"
    if not fs.exists(path):
        files.write_bytes(fs, path, json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
            "dsm_ledger": FORMAT, "description": "dsm run ledger (dsm.ledger): records of the runs, not data"}},
            sort_keys=True).encode())


def _migrate(fs: fsspec.AbstractFileSystem, root: str, group: zarr.Group, attrs: Mapping[str, Any],
             fence: int | None) -> None:
    """Move a legacy store's records from its root attributes into the ledger; the root
    attributes are rewritten last, in one write, so a crash before leaves the store legacy."""
    old = from_attrs(attrs)
    _ensure_group(fs, root)
    tchunk = _time_chunk(group)
    blobs: dict[str, bytes | None] = {}
    for kind, entries in ((PREDICT, {k: v.to_dict() for k, v in old.days.items()}), (COG, dict(old.exported))):
        by_key: dict[str, dict[str, Any]] = {}
        for day, entry in entries.items():
            by_key.setdefault(chunk_key(day, str(attrs["start"]), tchunk), {})[day] = entry
        blobs.update({f"{root}/{FOLDER}/{kind}/{k}.json": _encode(v) for k, v in by_key.items()})
    blobs.update({f"{root}/{FOLDER}/{NETCDF}/{k}.json": _encode({k: v.to_dict()}) for k, v in old.netcdf.items()})
    _write_objects(fs, blobs)
    kept = {k: v for k, v in attrs.items() if k not in LEGACY}
    if fence is not None:
        kept[store.FENCE_ATTR] = int(fence)
    group.attrs.put(products.netcdf_safe(kept))


def migrate(ref: StoreRef) -> bool:
    """Move the records of a store written before the ledger out of its root attributes
    (nothing for a store that has its ledger); returns whether it did."""
    legacy = _is_legacy(_root_attrs(ref))
    if legacy:
        _begin(ref, None)
    return legacy


def _update(ref: StoreRef, kind: str, entries: Mapping[str, Any | None], fence: int | None) -> None:
    """Replace (None: remove) the given days' entries of ``kind`` in their time chunks' objects."""
    if not entries:
        return
    fs, root, group = _begin(ref, fence)
    start, tchunk = str(group.attrs["start"]), _time_chunk(group)
    by_key: dict[str, dict[str, Any | None]] = {}
    for day, entry in entries.items():
        by_key.setdefault(chunk_key(day, start, tchunk), {})[day] = entry
    _merge(fs, f"{root}/{FOLDER}/{kind}", by_key)


def _merge(fs: fsspec.AbstractFileSystem, folder: str, by_key: Mapping[str, Mapping[str, Any | None]]) -> None:
    """Read the objects ``by_key`` names (concurrently), change their entries, write them back."""
    paths = [f"{folder}/{k}.json" for k in sorted(by_key)]
    fs.invalidate_cache(folder)
    current = fs.cat(paths, on_error="omit")
    blobs: dict[str, bytes | None] = {}
    for key, path in zip(sorted(by_key), paths, strict=True):
        have = dict(json.loads(current[path])["records"]) if path in current else {}
        for name, entry in by_key[key].items():
            if entry is None:
                have.pop(name, None)
            else:
                have[name] = entry
        blob = _encode(have) if have else None
        if blob != current.get(path):
            blobs[path] = blob
    _write_objects(fs, blobs)


def write_days(ref: StoreRef, days: Mapping[str, DayRecord], fence: int | None = None) -> None:
    """Record predict's :class:`DayRecord` of each day of ``days`` (other days are kept).

    Raises
    ------
    LockLostError
        A later lease than ``fence`` has written the store's records: nothing is written.
    """
    _update(ref, PREDICT, {k: v.to_dict() or None for k, v in days.items()}, fence)


def write_exported(ref: StoreRef, exported: Mapping[str, Mapping[str, Any] | None], fence: int | None = None) -> None:
    """Record the COG record of each day of ``exported`` (None: drop the day's record).

    Raises
    ------
    LockLostError
        As :func:`write_days`.
    """
    _update(ref, COG, {k: None if v is None else dict(v) for k, v in exported.items()}, fence)


def write_netcdf(ref: StoreRef, records: Mapping[str, NetcdfRecord], fence: int | None = None) -> None:
    """Record each netCDF file of ``records`` (period label -> record), one object per label.

    Raises
    ------
    LockLostError
        As :func:`write_days`.
    """
    if not records:
        return
    fs, root, _ = _begin(ref, fence)
    _merge(fs, f"{root}/{FOLDER}/{NETCDF}", {k: {k: v.to_dict()} for k, v in records.items()})


def write_records(ref: StoreRef, records: Mapping[str, Mapping[str, Any]], fence: int | None = None) -> None:
    """Record store-level records (keys of :data:`RECORDS`) in the root attributes, as JSON
    text, in one write with the lease token (:func:`dsm.store.set_attrs`).

    Raises
    ------
    LockLostError
        As :func:`write_days`.
    ValueError
        A key that is no store-level record.
    """
    unknown = sorted(set(records) - set(RECORDS))
    if unknown:
        raise ValueError(f"{unknown} are not store-level records of the ledger ({list(RECORDS)})")
    _begin(ref, fence)
    store.set_attrs(ref, products.netcdf_safe({k: dict(v) for k, v in records.items()}), fence=fence)


def taken_back(record: DayRecord) -> DayRecord:
    """``record`` no longer done (predict writes the day again)."""
    return replace(record, done=False)
