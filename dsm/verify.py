"""``dsm verify CONFIG``: every byte dsm wrote, checked against what it recorded.

* **Cube and products stores**: every chunk of every variable is read and decoded on the
  cluster (one task per variable and chunk row along the first axis). Zarr verifies each
  chunk's CRC32C (:func:`dsm.store.default_compressors`), so a damaged, truncated or foreign
  chunk is found and named; so is a chunk missing from a row recorded written
  (:data:`dsm.store.WRITTEN_ATTR`: the ingest and the twin record the rows they write). A
  missing chunk of the products reads as empty: it is found by the next check.
* **Products, per day**: the valid ``sm`` pixels of each predicted day equal the number
  predict recorded (``day_models[day]["valid_pixels"]``).
* **Models**: each card's model file exists and has the SHA-256 its card records.
* **COGs**: each exported COG exists with the size and SHA-256 recorded at export.

With ``fix=True`` (``dsm verify --fix``) what failed is un-marked, so that the next ``dsm run``
(or the stage named) redoes exactly that: the products' damaged chunks are deleted and their
days un-marked (predict), the bad COGs' records dropped (export), the bad model files deleted
(train). A damaged cube cannot be repaired here: its inputs must be ingested again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import zarr
from distributed import Client

from dsm import products, store
from dsm.config import Config
from dsm.errors import StoreError
from dsm.models.store import ModelStore


@dataclass(frozen=True)
class Finding:
    """One thing that does not match its record."""

    store: str  # cube, products, models or cog
    item: str  # variable/chunk key, day, model key or COG name
    problem: str
    redo: str  # the command that redoes it

    def line(self) -> str:
        """One line for the terminal."""
        return f"{self.store} {self.item}: {self.problem} -> {self.redo}"


@dataclass
class VerifyReport:
    """What was checked (counts per store) and what was found; ``fixed`` after ``fix=True``."""

    checked: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing was found."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "checked": self.checked, "findings": [asdict(f) for f in self.findings],
                "fixed": self.fixed}


def check_chunk_row(url: str, storage_options: str, name: str, row: int, written: bool = False) -> dict[str, Any]:
    """Read every chunk of row ``row`` (along the first axis) of ``url``/``name`` (runs on a worker).

    Returns the keys (``c/i/j/...``) that cannot be read, or that are missing from a row
    recorded ``written`` (:data:`dsm.store.WRITTEN_ATTR`), with the reason, and, per index of
    the first axis in the row, the count of values that are not the fill value.
    """
    so = json.loads(storage_options)
    arr = zarr.open_array(f"{url}/{name}", mode="r", storage_options=so or None)
    chunks, shape = arr.chunks, arr.shape
    lo, hi = row * chunks[0], min((row + 1) * chunks[0], shape[0])
    counts = np.zeros(hi - lo, np.int64)
    bad: dict[str, str] = {}
    present: set[str] = set()
    if written:
        fs, root = fsspec.core.url_to_fs(f"{url.rstrip('/')}/{name}", **so)
        prefix = f"{root.rstrip('/')}/"
        present = {p[len(prefix):] for p in fs.find(f"{prefix}c/{row}")}
    for chunk_key in store.chunk_keys(shape, chunks, row):
        if written and chunk_key not in present:
            bad[chunk_key] = "missing, although the row was written: the data is lost"
            continue
        key = [int(k) for k in chunk_key.split("/")[2:]]
        sel = (slice(lo, hi), *(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(key, chunks[1:], shape[1:])))
        try:
            block = np.asarray(arr[sel])
        except (ValueError, RuntimeError, OSError) as exc:
            bad[chunk_key] = f"{type(exc).__name__}: {exc}"
            continue
        valid = np.isfinite(block) if block.dtype.kind == "f" else block != arr.fill_value
        counts += valid.reshape(hi - lo, -1).sum(axis=1)
    return {"name": name, "row": row, "lo": lo, "bad": bad, "counts": counts.tolist()}


def _scan(client: Client, url: str, so: Mapping[str, Any], names: Sequence[str]) -> list[dict[str, Any]]:
    so_json = json.dumps(dict(so), sort_keys=True)
    group = zarr.open_group(url, mode="r", storage_options=dict(so) or None)
    written = group.attrs.get(store.WRITTEN_ATTR, {})
    jobs = []
    for name in names:
        arr = group[name]
        for r in range(-(-arr.shape[0] // arr.chunks[0])):
            lo = r * arr.chunks[0]
            jobs.append((name, r, any(a <= lo < b for a, b in written.get(name, []))))
    futures = [client.submit(check_chunk_row, url, so_json, n, r, w, pure=False) for n, r, w in jobs]
    return client.gather(futures)


def _data_variables(url: str, so: Mapping[str, Any]) -> list[str]:
    group = zarr.open_group(url, mode="r", storage_options=dict(so) or None)
    return sorted(name for name, arr in group.arrays() if arr.ndim >= 2)


def verify_cube(client: Client, config: Config, report: VerifyReport) -> None:
    """Decode every chunk of the cube's data variables."""
    url, so = config.stores.cube, config.stores.storage_options
    rows = _scan(client, url, so, _data_variables(url, so))
    report.checked["cube chunk rows"] = len(rows)
    for r in rows:
        for key, why in r["bad"].items():
            report.findings.append(Finding("cube", f"{r['name']}/{key}", why,
                                           "rebuild the cube: dsm ingest CONFIG (dsm twin CONFIG --overwrite for a twin)"))


def verify_products(client: Client, config: Config, report: VerifyReport, fix: bool) -> None:
    """Decode every chunk of the products and compare each day's valid pixels with predict's record."""
    url, so = str(config.stores.output), config.stores.storage_options
    ds = products.open_products(url, so)
    days = [str(t)[:10] for t in ds["time"].values.astype("datetime64[D]")]
    done, models = set(ds.attrs.get("days_done", [])), ds.attrs.get("day_models", {})
    rows = _scan(client, url, so, _data_variables(url, so))
    report.checked["products chunk rows"] = len(rows)
    redo = "dsm predict CONFIG (then dsm export CONFIG)"
    undo: set[str] = set()
    damaged: list[str] = []
    for r in rows:
        for key, why in r["bad"].items():
            report.findings.append(Finding("products", f"{r['name']}/{key}", why, redo))
            damaged.append(f"{r['name']}/{key}")
            undo.update(d for d in days[r["lo"]:r["lo"] + len(r["counts"])] if d in done)  # every variable is daily
        if r["name"] != "sm" or r["bad"]:
            continue
        for i, count in enumerate(r["counts"]):
            day = days[r["lo"] + i]
            want = models.get(day, {}).get(products.VALID_PIXELS)
            if day in done and want is not None and count != want:
                report.findings.append(Finding("products", day, f"sm holds {count} valid pixels, predict wrote {want}",
                                               redo))
                undo.add(day)
    report.checked["products days"] = len(done)
    if fix and (undo or damaged):
        fs, root = fsspec.core.url_to_fs(url, **so)
        for key in damaged:  # a damaged chunk must go, or rewriting part of it would decode it again
            fs.rm(f"{root.rstrip('/')}/{key}")
        exported = {k: v for k, v in ds.attrs.get("days_exported", {}).items() if k not in undo}
        store.set_attrs(url, {"days_done": sorted(done - undo), "days_exported": exported}, so)
        report.fixed += [f"products: {len(damaged)} damaged chunk(s) deleted, {len(undo)} day(s) to predict again"]


def verify_models(config: Config, report: VerifyReport, fix: bool) -> None:
    """Each card's model file against the size and SHA-256 in its card."""
    models = ModelStore(str(config.stores.models), config.stores.storage_options)
    checked = 0
    for key in _card_keys(models):
        try:
            card = models.read_card(key)
        except StoreError as exc:
            report.findings.append(Finding("models", key, str(exc), "dsm train CONFIG"))
            continue
        entry = (card or {}).get("model")
        if not entry:
            continue
        checked += 1
        path = f"{models.root}/{key}/{entry['file']}"
        try:
            digest = hashlib.sha256(models.fs.cat_file(path)).hexdigest()
        except FileNotFoundError:
            digest = None
        if digest != entry["sha256"]:
            report.findings.append(Finding("models", key, "model file missing" if digest is None else
                                           "model file does not match the SHA-256 in its card", "dsm train CONFIG"))
            if fix and digest is not None:
                models.fs.rm(path)
                report.fixed.append(f"models: {key}/{entry['file']} deleted (train redoes it)")
    report.checked["models"] = checked


def _card_keys(models: ModelStore) -> list[str]:
    """Every key with a card, nested keys (``variants/full``...) included."""
    if not models.fs.exists(models.root):
        return []
    root = models.root.rstrip("/") + "/"
    return sorted(p[len(root):].rsplit("/", 1)[0] for p in models.fs.find(models.root) if p.endswith("/card.json"))


def verify_cogs(config: Config, report: VerifyReport, fix: bool) -> None:
    """Each exported COG against the size and SHA-256 recorded at export."""
    url, so = str(config.stores.output), config.stores.storage_options
    exported = dict(products.open_products(url, so).attrs.get("days_exported", {}))
    bad = []
    for day, info in sorted(exported.items()):
        fs, path = fsspec.core.url_to_fs(info["url"], **so)
        try:
            raw = fs.cat_file(path)
        except FileNotFoundError:
            raw = None
        want = info.get("sha256")
        if raw is None or len(raw) != info.get("size", len(raw)) or (want and hashlib.sha256(raw).hexdigest() != want):
            report.findings.append(Finding("cog", info.get("name", day), "missing" if raw is None else
                                           "does not match the size or SHA-256 recorded at export", "dsm export CONFIG"))
            bad.append(day)
    report.checked["cogs"] = len(exported)
    if fix and bad:
        store.set_attrs(url, {"days_exported": {k: v for k, v in exported.items() if k not in bad}}, so)
        report.fixed.append(f"cog: {len(bad)} COG record(s) dropped (export redoes them)")


def verify(config: Config, client: Client, fix: bool = False) -> VerifyReport:
    """Check every store ``config`` names that exists; with ``fix``, un-mark what failed."""
    report = VerifyReport()
    stores = config.stores
    if stores.cube and store.exists(f"{stores.cube.rstrip('/')}/zarr.json", stores.storage_options):
        verify_cube(client, config, report)
    if stores.models:
        verify_models(config, report, fix)
    if stores.output and store.exists(f"{stores.output.rstrip('/')}/zarr.json", stores.storage_options):
        verify_cogs(config, report, fix)  # first: fixing the products forgets the COGs of their days
        verify_products(client, config, report, fix)
    return report
