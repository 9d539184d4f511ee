"""Extending the stores in time: ``dsm run CONFIG --until DATE`` (or ``dates.end: today``).

A run whose ``dates.end`` is later than the end its stores were made for extends them instead of
refusing them or starting again:

* **Zarr stores** (the cube, the twin's truth, the products) are *resized* along their time axes
  (:func:`resize_time`): the arrays' shapes and the time coordinates grow, the recorded ``end``
  moves; no data chunk is read or rewritten. The stages then write the new days only (and the
  last time chunk that was partial, whose missing days now exist).
* **Models**: ``training.method: rao2022`` retrains only the periods whose sample window (the
  period's days within ``dates``) changed; each card records the window it saw (``window``).
  ``training.method: fusion`` keeps its pooled model and the window it was trained on
  (``training_window.json`` in the model store); ``dsm train CONFIG --force`` retrains it over the
  new dates.
* **Products**: predict makes the new days, and again every day whose models changed (the
  recorded model digests differ) or whose centred anomaly window (fusion) reached past the old
  end; each redone day's ledger record names what it replaces (``replaces``).
* **COGs and STAC**: export writes the new and redone days; the STAC collection is rebuilt
  with its temporal extent to the new end.

Nothing is ever shortened: an end earlier than a store's is an error naming both dates
(:func:`check_not_earlier`). A store is extended only by a configuration that made it: the
dates are in no fingerprint, but the grid, the predictors and the method are
(:mod:`dsm.fingerprint`), and :func:`preflight` refuses, naming the differing keys, before
anything is resized.

The IO edge of Zarr resizing and the pure date helpers; the stages call them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr
import zarr
from xarray.coding.times import encode_cf_datetime

from dsm import fingerprint, ledger, products, store
from dsm.config import Config, ConfigError, from_dict
from dsm.config.domain import parse_day
from dsm.dayplans import DayPlan
from dsm.errors import StoreError
from dsm.models.store import ModelStore
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)

TIME_DIMS: tuple[str, ...] = ("time", "time_8d", "time_16d", "time_precip")
"""The dimensions a store may grow along."""


# ------------------------------------------------------------------------------ dates
def parse_until(text: str) -> dt.date:
    """The date of ``--until``: ``YYYY-MM-DD`` or ``today`` (today's UTC date).

    Raises
    ------
    ConfigError
        Naming the value.
    """
    value = parse_day(text)
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"--until {text!r} is not a date: give YYYY-MM-DD or 'today'") from None


def with_end(config: Config, end: dt.date) -> Config:
    """``config`` with ``dates.end`` set to ``end`` (validated again, as a loaded file is).

    Raises
    ------
    ConfigError
        ``end`` is before ``dates.start``.
    """
    raw = config.model_dump(mode="json")
    raw["dates"] = {**raw["dates"], "end": end.isoformat()}
    return from_dict(raw, source=f"the configuration with --until {end}")


def check_not_earlier(what: str, url: str, have: dt.date, want: dt.date) -> None:
    """Refuse to run to ``want`` on the ``what`` store at ``url`` that already ends on ``have``.

    Raises
    ------
    StoreError
        ``want`` is earlier than ``have``: names both dates.
    """
    if want < have:
        raise StoreError(f"the {what} {url} was made by another configuration: it ends on {have}, after this run's "
                         f"end {want} (dates.end or --until), and stores are never shortened. Run with --until {have} "
                         "or later, or choose other stores")


# ------------------------------------------------------------------------------ Zarr stores
def recorded_end(ref: StoreRef) -> dt.date | None:
    """The last day the Zarr store at ``ref`` was made for (its ``end`` attribute); None when
    there is no store or it records no end."""
    return _end_of(store.root_attrs(ref))


def _end_of(attrs: Mapping[str, Any] | None) -> dt.date | None:
    """The ``end`` root attribute of a store (None: no store, or no end recorded)."""
    end = (attrs or {}).get("end")
    return dt.date.fromisoformat(str(end)) if end else None


def _same(key: str, have: Any, want: Any) -> bool:
    """Whether two values of root attribute ``key`` agree (a products store keeps structured
    ones as JSON text: :func:`dsm.products.decode_attrs`)."""
    return bool(products.decode_attrs({key: have}) == products.decode_attrs({key: want}))


def resize_time(ref: StoreRef, template: xr.Dataset, attrs: Mapping[str, Any] | None = None) -> dt.date | None:
    """Grow the Zarr store at ``ref`` along its time axes to the shape of ``template``.

    Every array with a time dimension (:data:`TIME_DIMS`) is resized (metadata only: no data
    chunk is read or written; the new days read as fill values until a stage writes them); the
    time coordinates get their new values, encoded with the store's own units; then, in one
    write, the root attributes ``end`` and ``attrs``. Idempotent: a run killed half way leaves
    ``end`` as it was, and the next run resizes again.

    Parameters
    ----------
    ref
        The store.
    template
        The store's template for the new dates (its sizes, time coordinates, chunks, ``start``,
        ``end`` and ``region`` attributes are used).
    attrs
        Further root attributes to set with ``end``.

    Returns
    -------
    datetime.date or None
        The end the store had before (None: it already reached the template's end, nothing done).

    Raises
    ------
    StoreError
        The store is missing, ends later than the template (:func:`check_not_earlier`), or was
        made for another region, first day or time chunk (the key is named).
    """
    url = ref.url
    have = store.root_attrs(ref)
    if have is None:
        raise StoreError(f"no Zarr store at {url} to extend (no zarr.json found)")
    old_end = dt.date.fromisoformat(str(have["end"]))
    new_end = dt.date.fromisoformat(str(template.attrs["end"]))
    check_not_earlier(str(have.get("dsm_store", "")) + " store", url, old_end, new_end)
    for key in ("region", "start"):
        if not _same(key, have.get(key), template.attrs[key]):
            raise StoreError(f"cannot extend {url}: its {key} is {have.get(key)!r}, the configuration's "
                             f"{template.attrs[key]!r}; only dates.end may change (choose other stores)")
    group = zarr.open_group(url, mode="r+", storage_options=ref.zarr_options)
    sizes = dict(template.sizes)
    grown = []
    for name, array in group.arrays():
        dims = tuple(array.metadata.dimension_names or ())  # type: ignore[union-attr]
        if not set(dims) & set(TIME_DIMS):
            continue
        if name in template.data_vars:
            want_chunks = tuple(template[name].encoding.get("chunks", array.chunks))
            if tuple(array.chunks) != want_chunks:
                raise StoreError(f"cannot extend {url}: '{name}' has chunks {tuple(array.chunks)}, the configuration "
                                 f"gives {want_chunks} (chunks.time and chunks.space must stay as they were)")
        shape = tuple(sizes[d] if d in sizes else n for d, n in zip(dims, array.shape, strict=True))
        if any(s < n for s, n in zip(shape, array.shape, strict=True)):
            raise StoreError(f"cannot extend {url}: '{name}' would shrink from {array.shape} to {shape}")
        if shape != tuple(array.shape):
            array.resize(shape)
            grown.append(name)
        if name in template.coords and np.issubdtype(template[name].dtype, np.datetime64):
            stored = array.attrs.asdict()
            units, calendar = stored.get("units"), stored.get("calendar")
            values, _, _ = encode_cf_datetime(template[name].values, None if units is None else str(units),
                                              None if calendar is None else str(calendar), np.dtype(array.dtype))
            array[...] = np.asarray(values).astype(array.dtype)
    if old_end == new_end and not grown:
        return None
    group.update_attributes(json.loads(json.dumps({**dict(attrs or {}), "end": new_end.isoformat()})))
    log.info("extended %s from %s to %s (%d arrays resized)", url, old_end, new_end, len(grown))
    return old_end if old_end != new_end else None


# ------------------------------------------------------------------------------ before a run
def preflight(config: Config) -> list[str]:
    """Before a run: refuse an end earlier than the products store's and, when a store is to be
    extended, a configuration that differs from the one that made the stores in anything but
    the dates, before anything is resized.

    Checks that the products store does not end after ``dates.end``; then, when the cube or the
    products store ends before it, the model store's settings and the products store's
    (:mod:`dsm.fingerprint`: grid, predictors, method, training and output settings; the cube
    they were made from).

    Returns
    -------
    list of str
        One line per store that will be extended (``"products sm.zarr: 2016-07-02 -> 2016-07-22"``).

    Raises
    ------
    StoreError
        A store ends after ``dates.end`` (both dates named), or was made with other settings
        (every differing key named).
    """
    end = config.dates.end
    lines = []
    stores = config.stores
    cube_ref = stores.ref("cube")
    out_ref = stores.ref("output") if stores.output else None
    cube_attrs = store.root_attrs(cube_ref)  # each store's root attributes read once
    out_attrs = store.root_attrs(out_ref) if out_ref is not None else None
    cube_fp = fingerprint.cube_fingerprint(cube_attrs) if cube_attrs else None
    for what, ref, attrs in (("cube", cube_ref, cube_attrs), ("products", out_ref, out_attrs)):
        have = _end_of(attrs)
        if have is None:
            continue
        if what == "products":
            check_not_earlier("products store", str(ref), have, end)
        if have < end:
            lines.append(f"{what} {ref}: {have} -> {end}")
    if not lines:
        return lines
    if config.stores.models:
        models = ModelStore(config.stores.ref("models"))
        fingerprint.check_settings(models.read_settings(), config, "models", models.url,
                                   "extend with the configuration that trained them, or `dsm train CONFIG --force` "
                                   "retrains every model", cube_fp)
    if out_ref is not None and out_attrs is not None:
        fingerprint.check_settings(ledger.store_records(out_attrs).settings, config,
                                   "products", out_ref.url,
                                   "extend with the configuration that made them, or `dsm predict CONFIG "
                                   "--overwrite` replaces the store", cube_fp)
    return lines


# ------------------------------------------------------------------------------ products
def extend_output(config: Config, old_end: dt.date, template: xr.Dataset, fence: int | None = None) -> list[str]:
    """Extend the output store, made to ``old_end``, to ``template``'s end (:mod:`dsm.extend`).

    First the days whose values depend on days after ``old_end`` are taken back (their COG
    records dropped, then their ``done``), so that this run or, after a crash, the next one
    predicts them again: with the fusion method's centred anomaly window
    (``training.fusion.anomaly_window_days``), the last half window of days before ``old_end``,
    made with a window cut short. Then the arrays are resized (no data chunk is rewritten).
    Returns the days taken back.
    """
    out = config.stores.ref("output")
    half = config.training.fusion.anomaly_window_days // 2 if config.training.method == "fusion" else 0
    led = ledger.read(out)
    names = [(old_end - dt.timedelta(days=k)).isoformat() for k in range(half)]
    back = [n for n in names if led.day(n).done]
    if back:
        take_back(config, led, {n: _WINDOW_CUT for n in back}, fence)
    resize_time(out, template)
    return sorted(back)


_WINDOW_CUT = "made before the store was extended, with its anomaly window cut at the old end"


def digests(model: Mapping[str, Any] | None) -> dict[str, Any]:
    """The digests of the models a day's record (:meth:`dsm.dayplans.DayPlan.record`) names."""
    model = model or {}
    out = {name: v.get("sha256") for name, v in model.get("variants", {}).items()}
    if model.get("disaggregation"):
        out["disaggregation"] = model["disaggregation"].get("sha256")
    return out


def retrained_days(plans: Sequence[DayPlan], led: ledger.ProductsLedger) -> dict[str, str]:
    """Day -> why, for every day done whose recorded models are not the ones its plan now names
    (a period retrained: its sample window grew when the stores were extended, or ``dsm train
    --force``). A record without model digests is not compared."""
    out = {}
    for plan in plans:
        name = plan.day.isoformat()
        rec = led.day(name)
        if not rec.done or plan.error:
            continue
        old, new = digests(rec.model), digests(plan.record())
        if old and old != new:
            out[name] = (f"its models changed (period {plan.period}: "
                         f"{', '.join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))} retrained)")
    return out


def take_back(config: Config, led: ledger.ProductsLedger, why: Mapping[str, str], fence: int | None) -> None:
    """Record the days of ``why`` as not done (their COG records dropped first), with the reason."""
    out = config.stores.ref("output")
    ledger.write_exported(out, {n: None for n in why if n in led.exported}, fence)
    ledger.write_days(out, {n: replace(ledger.taken_back(led.day(n)), failed=f"{REDONE}{r}") for n, r in why.items()},
                      fence)


REDONE = "predicted again: "
"""How the ledger's ``failed`` of a day taken back to be predicted again begins (the landed day's
record then names what it replaces, ``replaces``)."""


__all__ = ["REDONE", "TIME_DIMS", "check_not_earlier", "digests", "extend_output", "parse_until", "preflight", "recorded_end",
           "resize_time", "retrained_days", "take_back", "with_end"]
