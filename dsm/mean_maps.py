"""The report's mean maps, kept current: a run redoes only the months, years and days of the year
whose days changed.

The mean maps store (``means.zarr`` in ``validation.out``) holds, on the products' 1 km grid,

``sm_monthly (month, y, x)``, ``sm_annual (year, y, x)``, ``sm_daily_mean (dayofyear, y, x)``
    The mean of the valid daily 1 km maps of each calendar month, year, and day of the year over
    all years (float32, m3/m3, NaN where a pixel has no valid day); ``month`` and ``year`` span
    the products' time axis, ``dayofyear`` is 1..366.
``sm_daily_mean_regional (dayofyear)``
    The mean over its valid pixels of each ``sm_daily_mean`` map (float64, NaN without any).
``sm_monthly_sum``, ``sm_monthly_n (month, y, x)``
    The integer sums of the stored ``sm`` codes (int16 packing, :data:`dsm.products.SCALE`) and
    the valid days of each month: the annual means are made from them. Integer sums are exact,
    so a mean is the same bytes whatever the order its days were added in.

The days summed are those predict recorded done (:mod:`dsm.ledger`), each with the digest of its
stored ``sm`` (:attr:`dsm.ledger.DayRecord.sm_digest`); the store's attribute
:data:`DAYS_ATTR` records them as they were summed. A run compares the two: a day added, redone
(another digest), taken back, or without a digest dirties its month, its year and its day of the
year, and only those are computed again, from all of their days (a daily run reads the days of the
current month and those of today's day of the year in earlier years, not the whole record). The
record is written last: a run cut off in between leaves the old record, and the next run redoes
the same groups. A store of another layout (grid, first day, chunks, time axis that no longer
starts on the same day) or without the record is made again whole.

One task per stored spatial chunk of the products reads its codes and writes its own chunks of
every map (the maps' spatial chunks are the products'), so tasks never write the same object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from dask.delayed import Delayed, delayed

from dsm import ledger, products
from dsm.remap import grid_runs
from dsm.storeref import StoreRef

DAYS_ATTR = "dsm_means_days"
"""Root attribute of the mean maps store: JSON ``{"layout": ..., "days": {day: digest}}``."""
DOY = np.arange(1, 367)
_DIMS = {"sm_monthly": "month", "sm_monthly_sum": "month", "sm_monthly_n": "month", "sm_annual": "year",
         "sm_daily_mean": "dayofyear"}
_SUMS = ("sm_monthly_sum", "sm_monthly_n")
_ALONG = {"month": 1, "year": 1, "dayofyear": 8}
"""The maps' chunks along their first axis (a task writes runs of consecutive days of the year at once)."""
_ATTRS: dict[str, dict[str, Any]] = {
    "sm_monthly": {"units": "m3 m-3", "long_name": "monthly mean of the 1 km soil moisture"},
    "sm_annual": {"units": "m3 m-3", "long_name": "annual mean of the 1 km soil moisture"},
    "sm_daily_mean": {"units": "m3 m-3", "long_name": "multi-year daily mean of the 1 km soil moisture"},
    "sm_daily_mean_regional": {"units": "m3 m-3",
                               "long_name": "regional mean of the multi-year daily mean of the 1 km soil moisture"},
    "sm_monthly_sum": {"units": "1", "scale_factor_of_codes": products.SCALE,
                       "long_name": "sum of the stored sm codes of the valid days of the month"},
    "sm_monthly_n": {"units": "1", "long_name": "valid days of the month"},
}


@dataclass(frozen=True)
class MeansPlan:
    """What one update of the mean maps computes again: month, year and day-of-year indices (of
    the store's axes) and the days record to write once done; ``rebuild``: the store is made anew."""

    months: list[int]
    years: list[int]
    doys: list[int]
    record: dict[str, Any]
    rebuild: bool

    @property
    def nothing(self) -> bool:
        """Nothing changed since the last update."""
        return not (self.months or self.years or self.doys or self.rebuild)


# --------------------------------------------------------------------------- pure


def group_axes(times: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """The month and year axes (first days) spanning ``times``."""
    months = pd.date_range(times[0].to_period("M").start_time, times[-1], freq="MS")
    years = pd.date_range(times[0].to_period("Y").start_time, times[-1], freq="YS")
    return months, years


def group_of(axis: pd.DatetimeIndex, times: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """The index in ``axis`` (first days of months, ``freq`` "M", or years, "Y") of each of ``times``."""
    return np.asarray(axis.get_indexer(times.to_period(freq).start_time))


def dirty_days(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> set[str]:
    """The days whose sums changed between the days records ``old`` and ``new`` (day -> digest):
    added, removed, of another digest, or without a digest (it cannot be told unchanged)."""
    return {d for d in set(old) | set(new) if d not in old or d not in new or new[d] is None or old[d] != new[d]}


def plan(months: pd.DatetimeIndex, years: pd.DatetimeIndex, layout: Mapping[str, Any],
         done: Mapping[str, str | None], stored: Mapping[str, Any] | None) -> MeansPlan:
    """The groups to compute again, given the month and year axes of the products' time axis
    (:func:`group_axes`), their layout (spatial shape and chunks, first day, packing), the days
    done (day -> digest) and the record stored with the maps (None: no store, or none there)."""
    record: dict[str, Any] = {"layout": dict(layout), "days": dict(done), "n_months": len(months),
                              "n_years": len(years)}
    if stored is None or stored.get("layout") != record["layout"]:
        return MeansPlan(list(range(len(months))), list(range(len(years))), list(range(len(DOY))), record, True)
    stamps = pd.DatetimeIndex(sorted(dirty_days(stored["days"], done)))
    # the days' groups, and the months and years the axes grew by (an extended products store)
    dirty_m = set(group_of(months, stamps, "M").tolist()) | set(range(stored["n_months"], len(months)))
    dirty_y = set(group_of(years, stamps, "Y").tolist()) | set(range(stored["n_years"], len(years)))
    return MeansPlan(sorted(dirty_m), sorted(dirty_y), sorted({int(d) - 1 for d in stamps.day_of_year}), record, False)


def mean_of(sums: np.ndarray, counts: np.ndarray, scale: float) -> np.ndarray:
    """The mean in m3/m3 (float32) of code sums and counts (NaN where there is no valid day)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums.astype(np.float64) * scale / counts, np.nan).astype(np.float32)


# --------------------------------------------------------------------------- the update (IO)


READ_CHUNKS = 4
"""Stored time chunks a task reads at a time."""


@dataclass(frozen=True)
class _Job:
    """What each spatial chunk task needs: the products' ``sm`` array and the means store, the
    days to read (time index -> the month and day-of-year indices they count in, -1: none of the
    plan's), the months of each year and the plan."""

    sm: StoreRef
    dest: StoreRef
    fill: int
    scale: float
    time_chunk: int
    days: dict[int, tuple[int, int]]
    year_months: dict[int, list[int]]
    plan: MeansPlan


def _array(dest: StoreRef, name: str) -> zarr.Array:
    return zarr.open_array(dest.join(name).url, mode="r+", storage_options=dest.zarr_options)


def _batches(days: Sequence[int], time_chunk: int) -> Iterable[list[int]]:
    """``days`` (sorted time indices) in groups of :data:`READ_CHUNKS` stored time chunks."""
    group: list[int] = []
    for i in days:
        if group and i // time_chunk - group[0] // time_chunk >= READ_CHUNKS:
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def _block(job: _Job, ys: slice, xs: slice) -> dict[int, tuple[float, int]]:
    """Compute and write the planned groups of one spatial chunk; returns, per day of the year
    written, the float64 sum of its mean map's valid pixels here and their count."""
    sm = zarr.open_array(job.sm.url, mode="r", storage_options=job.sm.zarr_options)
    arrays = {name: _array(job.dest, name) for name in _DIMS}
    shape = (ys.stop - ys.start, xs.stop - xs.start)
    sums = {("m", m): np.zeros(shape, np.int32) for m in job.plan.months}
    sums.update({("d", d): np.zeros(shape, np.int32) for d in job.plan.doys})
    counts = {k: np.zeros(shape, np.int32) for k in sums}
    for batch in _batches(sorted(job.days), job.time_chunk):
        codes = np.asarray(sm.get_orthogonal_selection((np.asarray(batch), ys, xs)))
        for i, day in zip(batch, codes, strict=True):
            valid = day != job.fill
            value = np.where(valid, day, 0)
            for key in zip(("m", "d"), job.days[i], strict=True):
                if key[1] >= 0:
                    sums[key] += value
                    counts[key] += valid
    for run in grid_runs(np.asarray(job.plan.months)):
        s = np.stack([sums["m", m] for m in range(run.start, run.stop)])
        n = np.stack([counts["m", m] for m in range(run.start, run.stop)])
        where = (run, ys, xs)
        arrays["sm_monthly_sum"][where] = s
        arrays["sm_monthly_n"][where] = n
        arrays["sm_monthly"][where] = mean_of(s, n, job.scale)
    for yi in job.plan.years:
        total = np.zeros(shape, np.int32)
        count = np.zeros_like(total)
        for m in job.year_months.get(yi, []):
            if ("m", m) in sums:
                total += sums["m", m]
                count += counts["m", m]
            else:
                total += np.asarray(arrays["sm_monthly_sum"][m, ys, xs])
                count += np.asarray(arrays["sm_monthly_n"][m, ys, xs])
        arrays["sm_annual"][yi, ys, xs] = mean_of(total, count, job.scale)
    regional: dict[int, tuple[float, int]] = {}
    for run in grid_runs(np.asarray(job.plan.doys)):
        doys = range(run.start, run.stop)
        means = mean_of(np.stack([sums["d", d] for d in doys]), np.stack([counts["d", d] for d in doys]), job.scale)
        arrays["sm_daily_mean"][run, ys, xs] = means
        for d, mean in zip(doys, means, strict=True):
            ok = np.isfinite(mean)
            regional[d] = (float(mean[ok].astype(np.float64).sum()), int(ok.sum()))
    return regional


def _placeholders(ds: xr.Dataset, axes: Mapping[str, pd.DatetimeIndex | np.ndarray], names: Iterable[str],
                  chunks: tuple[int, int]) -> xr.Dataset:
    """The maps ``names`` of the store along their ``axes``, lazily at their fill (NaN, sums 0)
    with the spatial coordinates of ``ds``: written with ``compute=False``, only the
    coordinates and the metadata land (a chunk never written reads as the fill)."""
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    coords = {c: ds[c] for c in ("y", "x", "spatial_ref") if c in ds.coords}
    out = {}
    for name in names:
        dim = _DIMS[name]
        dtype, fill = (np.int32, 0) if name in _SUMS else (np.float32, np.nan)
        data = dask.array.full((len(axes[dim]), ny, nx), fill, dtype=dtype, chunks=(_ALONG[dim], *chunks))
        out[name] = xr.DataArray(data, dims=(dim, "y", "x"), coords={dim: axes[dim], **coords},
                                 attrs=dict(_ATTRS[name]))
    return xr.Dataset(out)


def _create(dest: StoreRef, ds: xr.Dataset, months: pd.DatetimeIndex, years: pd.DatetimeIndex,
            chunks: tuple[int, int]) -> None:
    """Make the mean maps store anew, every map at its fill, with the coordinates of ``ds``."""
    out = _placeholders(ds, {"month": months, "year": years, "dayofyear": DOY}, _DIMS, chunks)
    out["sm_daily_mean_regional"] = xr.DataArray(np.full(len(DOY), np.nan), dims=("dayofyear",),
                                                 attrs=dict(_ATTRS["sm_daily_mean_regional"]))
    out.to_zarr(dest.url, mode="w", zarr_format=3, consolidated=False, storage_options=dest.zarr_options,
                compute=False)


def _extend(dest: StoreRef, ds: xr.Dataset, months: pd.DatetimeIndex, years: pd.DatetimeIndex,
            chunks: tuple[int, int]) -> None:
    """Grow the month and year axes of the store to ``months`` and ``years`` (the products' time
    axis grew at its end), the new entries at their fill: the update's tasks write them."""
    have = xr.open_zarr(dest.url, chunks=None, consolidated=False, storage_options=dest.zarr_options)
    for dim, axis in (("month", months), ("year", years)):
        old = have.sizes[dim]
        if len(axis) > old:
            names = [n for n, d in _DIMS.items() if d == dim]
            _placeholders(ds, {dim: axis[old:]}, names, chunks).to_zarr(
                dest.url, append_dim=dim, consolidated=False, storage_options=dest.zarr_options, compute=False)


def means_update(products_ref: StoreRef, dest: StoreRef, ds: xr.Dataset | None = None,
                 led: ledger.ProductsLedger | None = None) -> tuple[MeansPlan, Delayed | None]:
    """Plan the update of the mean maps of the products at ``products_ref`` into ``dest`` and
    return the plan with its lazy work (None: nothing changed), to compute on a cluster.
    ``ds`` (opened with ``chunks=None``) and ``led``: the products store and its ledger when the
    caller has them already (read here otherwise)."""
    ds = ds if ds is not None else products.open_products(products_ref, chunks=None)
    led = led if led is not None else ledger.read(products_ref, ds.attrs)
    done = {d: led.day(d).sm_digest for d in led.done}
    sm = ds["sm"]
    _, by, bx = (int(c) for c in sm.encoding["chunks"])
    times = pd.DatetimeIndex(ds["time"].values)
    layout = {"shape": list(sm.shape[1:]), "chunks": [by, bx], "first_day": str(times[0].date()),
              "scale": products.SCALE, "fill": products.FILL}
    months, years = group_axes(times)
    p = plan(months, years, layout, done, _stored_record(dest))
    if p.nothing:
        return p, None
    if p.rebuild:
        _create(dest, ds, months, years, (by, bx))
    else:
        _extend(dest, ds, months, years, (by, bx))
    month_of, doy_of = group_of(months, times, "M"), times.day_of_year - 1
    dirty_m, dirty_d = set(p.months), set(p.doys)
    days: dict[int, tuple[int, int]] = {}
    for i, (t, m, d) in enumerate(zip(times, month_of, doy_of, strict=True)):
        if str(t.date()) in done and (m in dirty_m or d in dirty_d):
            days[i] = (m if m in dirty_m else -1, d if d in dirty_d else -1)
    year_of_month = group_of(years, months, "Y")
    year_months = {y: [int(m) for m in np.flatnonzero(year_of_month == y)] for y in range(len(years))}
    job = _Job(products_ref.join("sm"), dest, products.FILL, products.SCALE, int(sm.encoding["chunks"][0]), days,
               year_months, p)
    ny, nx = sm.shape[1:]
    parts = [delayed(_block, pure=False)(job, slice(y, min(y + by, ny)), slice(x, min(x + bx, nx)))
             for y in range(0, ny, by) for x in range(0, nx, bx)]
    return p, delayed(_finish, pure=False)(dest, p, parts)


def _finish(dest: StoreRef, p: MeansPlan, parts: Iterable[dict[int, tuple[float, int]]]) -> str:
    """Write the regional means of the days of the year redone (summed over the chunks in their
    order), then the days record; returns the store's URL."""
    array = _array(dest, "sm_daily_mean_regional")
    regional = np.asarray(array[:], np.float64)
    parts = list(parts)
    for d in p.doys:
        total, n = 0.0, 0
        for part in parts:
            s, k = part[d]
            total += s
            n += k
        regional[d] = total / n if n else np.nan
    array[:] = regional
    zarr.open_group(dest.url, mode="r+", storage_options=dest.zarr_options).attrs[DAYS_ATTR] = json.dumps(p.record)
    return dest.url


def _stored_record(dest: StoreRef) -> dict[str, Any] | None:
    """The days record of the mean maps store (None: no store, or one made before the record)."""
    fs, root = dest.fs()
    if not fs.exists(f"{root}/zarr.json"):
        return None
    text = zarr.open_group(dest.url, mode="r", storage_options=dest.zarr_options).attrs.get(DAYS_ATTR)
    return json.loads(text) if isinstance(text, str) else None
