"""The per-time-chunk work of :func:`dsm.skill.skill`: read one chunk of days, return its sums.

:func:`pass1` reads the truth, SMAP and every product's ``sm`` / ``sm_unc`` / ``sm_origin`` of
some days from their stores (by their :class:`~dsm.storeref.StoreRef`, so it runs on a Dask
worker as well as in-process) and scores them (:func:`score_chunk`, pure numpy) into a :class:`ChunkSums`: the
:class:`~dsm.skill_sums.MapScores` of every map on the common and on each product's own
pixel-days, the coverage counts, the station pixels' series and, on request, the
:class:`~dsm.skill_sums.ScoreSums` of the first product and the baselines per 16-day period.
:func:`pass2` returns the anomaly sums of the same days from the pixels' time means of pass 1. It
needs the truth, SMAP and the products' ``sm`` again: pass 1 keeps them in the memory of the
process that read them, up to the job's ``keep_bytes`` (:meth:`SkillJob.keep`), so a pass-2 task
that runs there reads nothing; elsewhere, or beyond that budget, it reads them again (the same
arrays: the sums do not depend on which). Chunk sums merged in time order
(:meth:`ChunkSums.merge`) equal those of one pass over all days, bit for bit; :func:`fold1` and
:func:`fold2` merge them without changing their inputs (on the workers, as Dask tasks).
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dsm import store
from dsm.cube import open_cube
from dsm.grid import bilinear as grid_bilinear
from dsm.grid import repeat_to_fine
from dsm.periods import period_of
from dsm.products import open_products
from dsm.skill_sums import CoverageSums, MapScores, ScoreSums, SumsMemo, anomaly_sums
from dsm.storeref import StoreRef

BASELINES = ("smap_repeat", "smap_bilinear")
Opened = tuple[xr.Dataset, xr.Dataset, dict[str, xr.Dataset]]
"""A job's truth, cube and products stores, opened lazily without Dask."""
KEEP_SHARE = 0.25
"""The share of a process's memory pass 1 may fill with arrays kept for pass 2 (the default
``keep_bytes`` of :func:`dsm.skill.skill`)."""
PERIOD_MAPS = ("product", *BASELINES)
"""The maps of the per-period scores: the first product (named ``product``) and the baselines."""
_HELD: dict[str, dict[int, dict[str, Any]]] = {}
"""The pass-1 arrays this process holds for pass 2: job token -> chunk key -> arrays. Held by the
process, not by its copy of the job: between the passes, when no task waits for the job, Dask's
active memory manager may drop a worker's copy of it, and the copy the worker fetches for pass 2
must still find them."""
_HELD_LOCK = threading.Lock()


def keep_share(limit: int, available: int, sharing: int = 1) -> int:
    """The default ``keep_bytes`` of a process: :data:`KEEP_SHARE` of its memory ``limit`` (0:
    none), else of the ``available`` memory split among the ``sharing`` processes that use it."""
    return int(KEEP_SHARE * (limit or available // max(sharing, 1)))


@dataclass(frozen=True)
class SkillJob:
    """What every chunk task of one :func:`dsm.skill.skill` needs (small: sent once to each worker).

    ``maps``: label -> products store; ``truth`` / ``cube``: the twin's truth store and
    predictor cube; ``land``: the cube's land mask (bool); ``factor``: 1 km
    pixels per SMAP cell side; ``cover``: an empty :class:`~dsm.skill_sums.CoverageSums` per
    label; ``rows`` / ``cols``: the station pixels (None: no stations); ``periods``: also score
    per 16-day period; ``keep_bytes``: how many bytes of pass-1 arrays each process holding the
    job may keep for pass 2 (0: pass 2 reads its days again); ``token``: names the job's held
    arrays in each process (:data:`_HELD`), unique per job.
    """

    maps: dict[str, StoreRef]
    truth: StoreRef
    cube: StoreRef
    land: np.ndarray
    factor: int
    cover: dict[str, CoverageSums]
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    periods: bool = False
    keep_bytes: int = 0
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def opened(self) -> Opened:
        """Truth, cube and products (:func:`open_all`), opened once by each process that holds
        this job (a Dask worker holds one copy for all of its chunk tasks, scattered with the job)
        and never pickled with it."""
        stores = self.__dict__.get("_opened")
        if stores is None:
            stores = open_all(self)
            object.__setattr__(self, "_opened", stores)  # a cache, not a field: the job stays frozen
        return stores

    def keep(self, t: np.ndarray, data: dict[str, Any]) -> bool:
        """Hold the arrays ``data`` of days ``t`` (nested in dicts) as float32 in this process for
        :meth:`take`, unless they would bring what it holds for this job beyond ``keep_bytes``
        (then nothing is copied); returns whether they are held."""
        size = _float32_bytes(data)
        with _HELD_LOCK:
            held = _HELD.setdefault(self.token, {})
            if sum(_array_bytes(d) for d in held.values()) + size > self.keep_bytes:
                return False
            held[days_key(t)] = _as_float32(data)
        return True

    def take(self, t: np.ndarray) -> dict[str, Any] | None:
        """The arrays of days ``t`` held by :meth:`keep` in this process, released here; None
        when they are not held."""
        with _HELD_LOCK:
            return _HELD.get(self.token, {}).pop(days_key(t), None)

    def release(self) -> None:
        """Drop whatever this process still holds for this job (pass 2 never ran for it)."""
        release_held(self.token)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_opened"}

    @property
    def labels(self) -> list[str]:
        return list(self.maps)

    @property
    def names(self) -> list[str]:
        return [*self.maps, *BASELINES]


@dataclass
class ChunkSums:
    """The pass-1 sums of some days (see the module doc); ``series``: map -> (days, stations)."""

    common: dict[str, MapScores]
    own: dict[str, MapScores]
    cover: dict[str, CoverageSums]
    series: dict[str, np.ndarray] | None = None
    periods: dict[str, dict[str, ScoreSums]] = field(default_factory=dict)

    def __sizeof__(self) -> int:
        """Bytes held, arrays included (what Dask counts for a task's result: ``sys.getsizeof``)."""
        return object.__sizeof__(self) + _array_bytes(vars(self))

    def merge(self, other: ChunkSums) -> ChunkSums:
        """Add the sums of ``other`` (the days after these) to these; returns self."""
        for k, m in other.common.items():
            self.common[k].merge(m)
        for k, m in other.own.items():
            self.own[k].merge(m)
        for k, c in other.cover.items():
            self.cover[k].merge(c)
        if other.series is not None:
            self.series = other.series if self.series is None else {
                k: np.concatenate([v, other.series[k]]) for k, v in self.series.items()}
        for p, sums in other.periods.items():
            mine = self.periods.setdefault(p, {})
            for k, a in sums.items():
                mine.setdefault(k, ScoreSums(a.factor)).merge(a)
        return self


def held_chunks(token: str) -> list[int]:
    """The keys (:func:`days_key`) of the chunks whose arrays this process holds for the job
    ``token`` (:attr:`SkillJob.token`)."""
    with _HELD_LOCK:
        return list(_HELD.get(token, {}))


def release_held(token: str) -> None:
    """Drop the arrays this process holds for the job ``token`` (none: nothing to do)."""
    with _HELD_LOCK:
        _HELD.pop(token, None)


def days_key(t: np.ndarray) -> int:
    """The key of a chunk of days: its first day (ns since the epoch)."""
    return int(np.asarray(t, "datetime64[ns]")[0].astype(np.int64))


def _float32_bytes(data: Mapping[str, Any]) -> int:
    """The bytes of the arrays in ``data`` (nested in dicts) once float32."""
    return sum(_float32_bytes(v) if isinstance(v, Mapping) else 4 * np.asarray(v).size for v in data.values())


def _as_float32(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (arrays nested in dicts) as float32 copies."""
    return {k: _as_float32(v) if isinstance(v, Mapping) else np.asarray(v).astype(np.float32) for k, v in data.items()}


def _array_bytes(obj: Any) -> int:
    """The bytes of the numpy arrays in ``obj`` (nested in dicts, tuples, lists and objects)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_array_bytes(v) for v in obj.values())
    if isinstance(obj, tuple | list):
        return sum(_array_bytes(v) for v in obj)
    return _array_bytes(vars(obj)) if hasattr(obj, "__dict__") else 0


def empty_sums(job: SkillJob, shape: tuple[int, int]) -> ChunkSums:
    """The sums of no day."""
    return ChunkSums({k: MapScores(shape, job.factor) for k in job.names},
                     {k: MapScores(shape, job.factor) for k in job.labels},
                     {k: c.empty() for k, c in job.cover.items()})


def open_all(job: SkillJob) -> Opened:
    """Truth, cube and products of ``job``, opened lazily without Dask (reads fetch the chunks
    they touch)."""
    return (store.open_store(job.truth, "truth", chunks=None), open_cube(job.cube, chunks=None),
            {k: open_products(ref, chunks=None) for k, ref in job.maps.items()})


def _read(ds: xr.Dataset, name: str, t: np.ndarray) -> np.ndarray:
    return ds[name].sel(time=t).values


def read_chunk(job: SkillJob, t: np.ndarray, uncertainty: bool) -> dict[str, Any]:
    """The arrays of days ``t``: ``truth``, ``smap`` and ``sm`` (label -> array), with
    ``uncertainty`` also ``unc`` and ``origin`` (label -> array or None)."""
    truth, cube, outs = job.opened()
    out: dict[str, Any] = {"truth": _read(truth, "sm_true", t), "smap": _read(cube, "smap_sm", t),
                           "sm": {k: _read(o, "sm", t) for k, o in outs.items()}}
    if uncertainty:
        out["unc"] = {k: _read(o, "sm_unc", t) for k, o in outs.items()}
        out["origin"] = {k: _read(o, "sm_origin", t) if "sm_origin" in o else None for k, o in outs.items()}
    return out


def _maps(job: SkillJob, data: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Truth, the maps and baselines (float32), the base mask (land, truth) and the common mask."""
    f = job.factor
    tr = data["truth"].astype(np.float32, copy=False)  # never changed in place: float32 as read is not copied
    smap = data["smap"].astype(np.float32, copy=False)
    vals = {k: v.astype(np.float32, copy=False) for k, v in data["sm"].items()}
    vals["smap_repeat"] = repeat_to_fine(smap, f)
    vals["smap_bilinear"] = grid_bilinear(smap, f).astype(np.float32, copy=False)
    base = job.land[None] & np.isfinite(tr)
    mask = base & np.isfinite(vals["smap_repeat"]) & np.isfinite(vals["smap_bilinear"])
    for k in job.labels:
        mask &= np.isfinite(vals[k])
    return tr, vals, base, mask


def score_chunk(job: SkillJob, t: np.ndarray, data: Mapping[str, Any]) -> ChunkSums:
    """The pass-1 sums of days ``t`` from their arrays (:func:`read_chunk` with uncertainty)."""
    tr, vals, base, mask = _maps(job, data)
    sums = empty_sums(job, tr.shape[1:])
    memo = SumsMemo(job.factor, tr.shape[1:])  # equal masks of a map summed once (e.g. one season, one product)
    months = pd.DatetimeIndex(t).month.to_numpy()
    smap_obs = np.isfinite(vals["smap_repeat"])
    for k in job.names:
        sums.common[k].add(vals[k], tr, mask, months, memo=memo)
    for k in job.labels:
        mine = base & np.isfinite(vals[k])
        sums.own[k].add(vals[k], tr, mine, months, smap=mine & smap_obs, other=mine & ~smap_obs, memo=memo)
        unc = data["unc"][k].astype(np.float32, copy=False)
        ok = mine & np.isfinite(unc)
        with np.errstate(invalid="ignore"):
            inside = np.abs(tr - vals[k]) <= unc
        sums.cover[k].add(inside, ok, data["origin"][k])
    if job.rows is not None and job.cols is not None:
        sums.series = {k: vals[k][:, job.rows, job.cols] for k in job.names}
    if job.periods:
        # the first product's own pixel-days with SMAP (the common ones when it is the only map)
        first = base & np.isfinite(vals[job.labels[0]]) & smap_obs & np.isfinite(vals["smap_bilinear"])
        _add_periods(sums, job, t, tr, vals, first, memo)
    return sums


def _add_periods(sums: ChunkSums, job: SkillJob, t: np.ndarray, tr: np.ndarray, vals: Mapping[str, np.ndarray],
                 mask: np.ndarray, memo: SumsMemo) -> None:
    """Per 16-day period (and ``all``): the first product and the baselines on ``mask``."""
    names = [period_of(d.date()).name for d in pd.DatetimeIndex(t)]
    srcs = dict(zip(PERIOD_MAPS, (job.labels[0], *BASELINES), strict=True))
    for p in ["all", *dict.fromkeys(names)]:
        i = np.array([p in ("all", n) for n in names])
        sums.periods[p] = {m: ScoreSums(job.factor) for m in PERIOD_MAPS}
        for m, k in srcs.items():
            cells = memo.cells(vals[k], tr, mask)
            sums.periods[p][m].add_cells(cells if i.all() else cells.days(i))


def pass1(job: SkillJob, t: np.ndarray) -> ChunkSums:
    """Read days ``t`` and return their pass-1 sums; keep what pass 2 needs of them
    (:meth:`SkillJob.keep`)."""
    data = read_chunk(job, t, uncertainty=True)
    sums = score_chunk(job, t, data)
    job.keep(t, {k: data[k] for k in ("truth", "smap", "sm")})
    return sums


Means = dict[str, tuple[np.ndarray, np.ndarray]]
Runner = Callable[[Callable[..., Any], list[tuple[Any, ...]]], Iterator[Any]]
"""Runs :func:`pass1` or :func:`pass2` of one job (bound to it by a runner factory, for both
passes) on a list of per-chunk arguments and yields sums of consecutive chunks, in the order of
the list, whose merge in that order is the pass's sums: in process one per chunk; on Dask
workers (:func:`dsm.skill_workers.on_workers`) one, the chunks' sums folded there
(:data:`FOLDS`), each chunk's pass 2 where its pass 1 ran."""


@dataclass
class Anomalies:
    """The pass-2 sums of some days: label -> anomaly :class:`~dsm.skill_sums.ScoreSums` on the
    common (``common``) and on each product's own pixel-days (``own``), and how many of their
    chunks pass 2 had to read again (``read_again``: not kept by pass 1 where it ran)."""

    common: dict[str, ScoreSums] = field(default_factory=dict)
    own: dict[str, ScoreSums] = field(default_factory=dict)
    read_again: int = 0

    def merge(self, other: Anomalies) -> Anomalies:
        """Add the sums of ``other`` (the days after these) to these; returns self."""
        for mine, theirs in ((self.common, other.common), (self.own, other.own)):
            for k, a in theirs.items():
                mine.setdefault(k, ScoreSums(a.factor)).merge(a)
        self.read_again += other.read_again
        return self


def pass2(job: SkillJob, t: np.ndarray, common: Means, own: Means) -> Anomalies:
    """The anomaly sums of days ``t`` on the common and on each product's own pixel-days, from the
    pixels' time means of pass 1 (:meth:`~dsm.skill_sums.PixelSums.means` of each map), on the
    arrays pass 1 kept in this process, else read again."""
    data = job.take(t)
    again = data is None
    tr, vals, base, mask = _maps(job, read_chunk(job, t, uncertainty=False) if data is None else data)
    return Anomalies({k: anomaly_sums(vals[k], tr, mask, m, job.factor) for k, m in common.items()},
                     {k: anomaly_sums(vals[k], tr, base & np.isfinite(vals[k]), m, job.factor) for k, m in own.items()},
                     int(again))


def fold1(job: SkillJob, acc: ChunkSums | None, part: ChunkSums) -> ChunkSums:
    """The pass-1 sums of the days of ``acc`` (None: no day yet) and then those of ``part``
    (the next chunk): a new object, the inputs unchanged (they are Dask results). Folded in time
    order from None, they are bit for bit the sums :func:`dsm.skill.skill` merges into
    :func:`empty_sums` chunk after chunk."""
    out = empty_sums(job, job.land.shape) if acc is None else copy.deepcopy(acc)
    return out.merge(part)


def fold2(job: SkillJob, acc: Anomalies | None, part: Anomalies) -> Anomalies:
    """:func:`fold1` of the pass-2 sums (:func:`pass2`)."""
    out = Anomalies() if acc is None else copy.deepcopy(acc)
    return out.merge(part)


FOLDS: dict[Callable[..., Any], Callable[..., Any]] = {pass1: fold1, pass2: fold2}
"""The fold of each chunk function's results, for runners that merge where the chunks are scored."""


def period_rows(periods: Mapping[str, Mapping[str, ScoreSums]]) -> list[dict[str, Any]]:
    """The per-period scores as rows ``period, map, n, rmse, r, ubrmse, bias, cell_r`` (periods in
    order, ``all`` last)."""
    keys = ("n", "rmse", "r", "ubrmse", "bias", "cell_r")
    order = [*sorted(p for p in periods if p != "all"), *(["all"] if "all" in periods else [])]
    rows = []
    for p in order:
        for m in PERIOD_MAPS:
            res = periods[p][m].result()
            rows.append({"period": p, "map": m, **{k: res[k] for k in keys}})
    return rows


__all__ = ["BASELINES", "FOLDS", "KEEP_SHARE", "PERIOD_MAPS", "days_key", "keep_share", "Anomalies", "ChunkSums", "Means", "Runner", "SkillJob", "empty_sums",
           "Opened", "fold1", "fold2", "open_all", "pass1", "pass2", "period_rows", "read_chunk", "score_chunk"]
