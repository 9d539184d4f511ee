"""``dsm verify CONFIG``: every byte dsm wrote, checked against what it recorded.

* **Cube and products stores**: every chunk of every variable is read and decoded on the
  cluster (one task per variable and chunk row along the first axis). Zarr verifies each
  chunk's CRC32C (:func:`dsm.store.default_compressors`), so a damaged, truncated or foreign
  chunk is found and named; so is a chunk missing from a row recorded written
  (:data:`dsm.store.WRITTEN_ATTR`: the ingest and the twin record the rows they write). A
  missing chunk of the products reads as empty: it is found by the next check.
* **Products, per day**: the valid ``sm`` pixels of each predicted day equal the number
  predict recorded (:attr:`dsm.ledger.DayRecord.valid_pixels`), and its digest the digest.
* **Models**: each card's model file exists and has the SHA-256 its card records.
* **COGs**: each exported COG (``sm`` and its ``sm_unc``/``sm_origin`` layers) exists with the
  size and SHA-256 recorded at export.

With ``fix=True`` (``dsm verify --fix``) what failed is un-marked, so that the next ``dsm run``
(or the stage named) redoes exactly that: the products' damaged chunks are deleted and their
days un-marked (predict), the bad COGs' records dropped (export), the bad model files deleted
(train). A damaged cube cannot be repaired here: its inputs must be ingested again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import zarr
from distributed import Client

from dsm import files, ledger, products, store
from dsm.config import Config
from dsm.errors import StoreError
from dsm.models.store import ModelStore
from dsm.storeref import StoreRef


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


def check_chunk_row(ref: StoreRef, name: str, row: int, written: bool = False) -> dict[str, Any]:
    """Read every chunk of row ``row`` (along the first axis) of ``ref``/``name`` (runs on a worker).

    Returns the keys (``c/i/j/...``) that cannot be read, or that are missing from a row
    recorded ``written`` (:data:`dsm.store.WRITTEN_ATTR`), with the reason, and, per index of
    the first axis in the row, the count of values that are not the fill value (and, for the
    products' ``sm``, the day's digest, :func:`dsm.products.day_digest`).
    """
    arr = zarr.open_array(ref.join(name).url, mode="r", storage_options=ref.zarr_options)
    chunks, shape = arr.chunks, arr.shape
    lo, hi = row * chunks[0], min((row + 1) * chunks[0], shape[0])
    counts = np.zeros(hi - lo, np.int64)
    parts = [0] * (hi - lo)  # the products' sm: each day's digest (products.day_digest)
    missing = set(store.missing_chunks(ref, name, shape, chunks, [row] if written else []))
    bad: dict[str, str] = {}
    for chunk_key in store.chunk_keys(shape, chunks, row):
        if chunk_key in missing:
            bad[chunk_key] = "missing, although the row was written: the data is lost"
            continue
        key = [int(k) for k in chunk_key.split("/")[2:]]
        sel = (slice(lo, hi),
               *(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(key, chunks[1:], shape[1:], strict=True)))
        try:
            block = np.asarray(arr[sel])
        except (ValueError, RuntimeError, OSError) as exc:
            bad[chunk_key] = f"{type(exc).__name__}: {exc}"
            continue
        valid = np.isfinite(block) if block.dtype.kind == "f" else block != arr.fill_value
        counts += valid.reshape(hi - lo, -1).sum(axis=1)
        if name == "sm" and block.ndim == 3:
            parts = [p + products.digest_part(day, key[0] * chunks[1], key[1] * chunks[2])
                     for p, day in zip(parts, block, strict=True)]
    return {"name": name, "row": row, "lo": lo, "bad": bad, "counts": counts.tolist(),
            "digests": [products.combine_digests([p]) for p in parts] if name == "sm" else []}


def _scan(client: Client, ref: StoreRef) -> list[dict[str, Any]]:
    """:func:`check_chunk_row` of every chunk row of every data variable (2-D or more) of a store."""
    group = zarr.open_group(ref.url, mode="r", storage_options=ref.zarr_options)
    written = cast(dict[str, Any], group.attrs.get(store.WRITTEN_ATTR) or {})
    jobs = [(name, r, store.row_written(written.get(name, []), r, arr.chunks[0]))
            for name, arr in sorted(group.arrays()) if arr.ndim >= 2
            for r in range(-(-arr.shape[0] // arr.chunks[0]))]
    futures = [client.submit(check_chunk_row, ref, n, r, w, pure=False) for n, r, w in jobs]
    return client.gather(futures)


def verify_cube(client: Client, config: Config, report: VerifyReport) -> None:
    """Decode every chunk of the cube's data variables."""
    rows = _scan(client, config.stores.ref("cube"))
    report.checked["cube chunk rows"] = len(rows)
    for r in rows:
        for key, why in r["bad"].items():
            report.findings.append(Finding("cube", f"{r['name']}/{key}", why,
                                           "rebuild the cube: dsm ingest CONFIG (dsm twin CONFIG --overwrite for a twin)"))


def verify_products(client: Client, config: Config, report: VerifyReport, fix: bool) -> None:
    """Decode every chunk of the products and compare each day's valid pixels with predict's record."""
    out = config.stores.ref("output")
    ds = products.open_products(out)
    days = [str(t)[:10] for t in ds["time"].values.astype("datetime64[D]")]
    led = ledger.read(out, ds.attrs)
    done = set(led.done)
    rows = _scan(client, out)
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
            want, digest = led.day(day).valid_pixels, led.day(day).sm_digest
            if day in done and want is not None and count != want:
                report.findings.append(Finding("products", day, f"sm holds {count} valid pixels, predict wrote {want}",
                                               redo))
                undo.add(day)
            elif day in done and digest is not None and r["digests"][i] != digest:
                report.findings.append(Finding("products", day, "sm is not what predict wrote (its digest differs)",
                                               redo))
                undo.add(day)
    report.checked["products days"] = len(done)
    if fix and (undo or damaged):
        fs, root = out.fs()
        for key in damaged:  # a damaged chunk must go, or rewriting part of it would decode it again
            fs.rm(f"{root}/{key}")
        # the COG records first: a crash in between never leaves a record of a day predict redoes
        ledger.write_exported(out, {d: None for d in sorted(undo) if d in led.exported})
        ledger.write_days(out, {d: ledger.taken_back(led.day(d)) for d in sorted(undo & done)})
        report.fixed += [f"products: {len(damaged)} damaged chunk(s) deleted, {len(undo)} day(s) to predict again"]


def _digests(client: Client, refs: list[StoreRef]) -> list[tuple[int, str] | None]:
    """``(size, SHA-256)`` of each file, read and hashed on the workers (None: missing)."""
    return client.gather(client.map(files.url_digest, refs, pure=False))


def verify_models(client: Client, config: Config, report: VerifyReport, fix: bool) -> None:
    """Each card's model file against the SHA-256 in its card."""
    models = ModelStore(config.stores.ref("models"))
    entries: list[tuple[str, dict[str, Any]]] = []
    for key in models.card_keys():
        try:
            card = models.read_card(key)
        except StoreError as exc:
            report.findings.append(Finding("models", key, str(exc), "dsm train CONFIG"))
            continue
        if card and card.get("model"):
            entries.append((key, card["model"]))
    found = _digests(client, [models.ref.join(key, entry["file"]) for key, entry in entries])
    for (key, entry), got in zip(entries, found, strict=True):
        if got is not None and got[1] == entry["sha256"]:
            continue
        report.findings.append(Finding("models", key, "model file missing" if got is None else
                                       "model file does not match the SHA-256 in its card", "dsm train CONFIG"))
        if fix and got is not None:
            models.fs.rm(f"{models.root}/{key}/{entry['file']}")
            report.fixed.append(f"models: {key}/{entry['file']} deleted (train redoes it)")
    report.checked["models"] = len(entries)


def verify_cogs(client: Client, config: Config, report: VerifyReport, fix: bool) -> None:
    """Each exported COG of each day (``sm`` and the layers recorded with it: ``sm_unc``,
    ``sm_origin``) against the size and SHA-256 recorded at export."""
    out = config.stores.ref("output")
    exported = ledger.read(out).exported
    files_of = [(day, rec) for day in sorted(exported)
                for rec in (exported[day], *exported[day].get("layers", {}).values())]
    bad: list[str] = []
    for (day, rec), got in zip(files_of, _digests(client, [config.stores.at(r["url"]) for _, r in files_of]), strict=True):
        if got is not None and got[0] == rec.get("size", got[0]) and got[1] == rec.get("sha256", got[1]):
            continue
        report.findings.append(Finding("cog", rec.get("name", day), "missing" if got is None else
                                       "does not match the size or SHA-256 recorded at export", "dsm export CONFIG"))
        if day not in bad:
            bad.append(day)
    report.checked["cogs"] = len(files_of)
    if fix and bad:
        ledger.write_exported(out, {d: None for d in bad})
        report.fixed.append(f"cog: the COG records of {len(bad)} day(s) dropped (export redoes them)")


def verify(config: Config, client: Client, fix: bool = False) -> VerifyReport:
    """Check every store ``config`` names that exists; with ``fix``, un-mark what failed."""
    report = VerifyReport()
    stores = config.stores
    if stores.cube and store.is_store(stores.ref("cube")):
        verify_cube(client, config, report)
    if stores.models:
        verify_models(client, config, report, fix)
    if stores.output and store.is_store(stores.ref("output")):
        verify_cogs(client, config, report, fix)  # first: fixing the products forgets the COGs of their days
        verify_products(client, config, report, fix)
    return report
