"""The predicted days read back from the products store for export, checked against what
predict recorded (the number of valid pixels and the digest of the stored ``sm``).

Both exporters (:mod:`dsm.cog`, :mod:`dsm.netcdf`) read through here, so neither publishes a
day whose chunks were lost or replaced since predict wrote them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import zarr

from dsm import products, store
from dsm.errors import StoreError
from dsm.storeref import StoreRef


class LostDataError(StoreError):
    """The products store no longer holds what predict wrote for a day.

    ``days`` lists the ISO days concerned: the exporter records them no longer done
    (:class:`dsm.ledger.DayRecord`) so that predict writes them again.
    """

    def __init__(self, message: str, days: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.days = days

    def __reduce__(self) -> tuple[Any, ...]:  # survives the trip from a worker
        return (type(self), (str(self), self.days))


_REDO = ("Nothing was published and the day is no longer marked predicted: `dsm predict CONFIG` predicts it "
         "again, then `dsm export CONFIG`")


def open_layer(out: StoreRef, name: str) -> zarr.Array:
    """The Zarr array of the products variable ``name`` (stored values: packed, unmasked)."""
    return zarr.open_array(out.join(name).url, mode="r", storage_options=out.zarr_options)


def read_block(arr: zarr.Array, out: StoreRef, name: str, index: tuple[slice, ...]) -> np.ndarray:
    """``arr[index]`` as stored; a damaged chunk is a :class:`LostDataError` naming it."""
    try:
        return np.asarray(arr[index])
    except (ValueError, RuntimeError, OSError) as exc:
        raise LostDataError(f"{store.damaged_chunks(out, name, arr.shape, arr.chunks, list(index), arr.__getitem__, exc)}"
                            f". {_REDO}") from exc


def day_layer(out: StoreRef, name: str, t: int) -> np.ndarray:
    """Day ``t`` of the products variable ``name`` as stored; a damaged chunk is an error naming it."""
    arr = open_layer(out, name)
    return read_block(arr, out, name, (slice(t, t + 1), *(slice(0, n) for n in arr.shape[1:])))[0]


def check_day(out: str, day: dt.date, t: int, valid: int, digest: str | None,
              valid_pixels: int | None, sm_digest: str | None) -> None:
    """Refuse a day whose stored ``sm`` is not what predict wrote.

    Parameters
    ----------
    out
        The products store, for the message.
    day, t
        The day and its time index.
    valid, digest
        What the store holds now: valid ``sm`` pixels and :func:`dsm.products.day_digest`
        (None: not computed).
    valid_pixels, sm_digest
        What predict recorded (None: a store that did not record it; not checked).

    Raises
    ------
    LostDataError
        Naming the day, the store and the remedy.
    """
    name = day.isoformat()
    if valid_pixels is not None and valid != valid_pixels:
        raise LostDataError(
            f"{out}/sm holds {valid} valid pixels on {day} (time index {t}) but predict wrote {valid_pixels}: a "
            f"chunk of the products store is lost or was replaced. {_REDO}", (name,))
    if sm_digest is not None and digest is not None and digest != sm_digest:
        raise LostDataError(
            f"{out}/sm on {day} (time index {t}) is not what predict wrote (its digest differs): a chunk of the "
            f"products store was replaced or altered. {_REDO}", (name,))


def valid_count(stored_sm: np.ndarray) -> int:
    """Valid pixels of a stored (packed) ``sm``."""
    return int((np.asarray(stored_sm) != products.FILL).sum())
