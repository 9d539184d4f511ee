"""Daily 1 km prediction into the output store (the ``dsm predict`` stage).

How a run goes
--------------
1. The client checks the stores against the configuration (the cube's grid and dates, an
   existing output store's grid, dates and chunks: another configuration's store is refused
   with the differences named), creates the output store's template when it is missing, and
   makes a **plan** for every day: the period's model (following ``reused_from``), its
   reduced (gap-free) and quantile variants, and the predictor ranges seen in training.
2. Every (time chunk, space chunk) block of the output store whose days are not all complete
   becomes one task (:func:`run_block`) on the workers. A task reads its block of the cube
   (through fsspec, no shared disk), builds float32 features of the valid land pixels only,
   applies the models (``Booster.inplace_predict`` for XGBoost), sets the origin bits, writes
   ``sm``, ``sm_unc``, ``sm_origin`` and ``sm_36km`` by chunk-aligned region writes, and
   returns small per-day summaries (counts, 36 km pairs for the consistency check).
3. When every block of a time chunk has landed the client records its days in the store's run
   ledger (:mod:`dsm.ledger`: one object per time chunk, a :class:`~dsm.ledger.DayRecord` per
   day: done or empty, its models, the 36 km consistency); a block that failed leaves its days
   failed and they are retried by the next run.

A rerun skips time chunks whose days are all done, or empty with the cube unchanged since
(:data:`dsm.store.REVISION_ATTR`, recorded with each day: an ingest that wrote anything may have
brought the inputs an empty day lacked, so its chunk is made again). A killed run leaves at most
some blocks written but unrecorded; the rerun writes them again with the same bytes, since
every block is a pure function of the cube and the models. Nothing in the store depends on
the order tasks finish (records are kept sorted; the 36 km statistics are computed from pairs
sorted by cell).

Choice of model per pixel (``output.gap_free``): the full predictor set when all of a pixel's
predictors are valid, else the first reduced variant whose predictors are (default: without
LST, then the static predictors alone); with ``gap_free: false`` such pixels stay empty, as in
the paper.

Method ``fusion`` (the default): before step 2 the client computes the fused 36 km cell means
of the days to predict (:func:`dsm.cellmeans.fused_cells`: the pooled models on every cell-day's
aggregated predictors, fused with SMAP; every day of the run when the store's calibration at
the stations is still to be made, else the days to predict and the ``max_carry_days`` before
them, so an extension by a day does not read the whole history) and gives each block its
slice; the block's map is the fused cell mean plus the 1 km model's departure from its own cell
mean (:func:`dsm.cellmeans.fuse_block`). Method ``rao2022``: each period's model, as the paper.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import xarray as xr
from distributed import Client

from dsm import extend, fingerprint, ledger, products, store
from dsm.blocks import BlockJob, run_block
from dsm.cellmeans import BlockCells, block_cells, fused_cells
from dsm.cluster import in_turn, outcomes, worker_addresses
from dsm.config import Config
from dsm.cube import Layout, open_cube
from dsm.dayplans import DayPlan, fusion_card, make_plans
from dsm.errors import ConfigError, InputError, StoreError, StoreNotFoundError
from dsm.metrics import score
from dsm.models.cards import FUSION_KEY, read_fusion_card
from dsm.models.period_cards import TrainedPeriodCard, read_period_card
from dsm.models.store import ModelStore
from dsm.periods import days as day_range
from dsm.periods import periods, time_position
from dsm.progress import Steps
from dsm.ranges import SMAP, describe, merge_counts
from dsm.runlock import Lease
from dsm.station_calibration import GAIN_ATTR, UNC_ATTR, calibrate_at_stations, calibrated
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ client side
@dataclass
class PredictReport:
    """What a prediction run did."""

    days: list[str]
    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    empty: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    pixels: int = 0  # valid pixel-days predicted in this run
    seconds: float = 0.0
    #: day -> values masked as impossible (dsm.ranges) on the day's blocks: 1 km land pixels per
    #: predictor, SMAP cells under ``smap_sm`` (days predicted in this run, only where any)
    out_of_range: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the same over the fusion method's 36 km pass, its days (SMAP: cell-days, every day of the cube)
    out_of_range_cells: dict[str, int] = field(default_factory=dict)
    #: the first and last day of the fusion method's 36 km pass (ISO; None: no pass)
    cell_days: tuple[str, str] | None = None
    #: seconds of each phase that ran (:data:`PHASES`), so a long run shows where its time went
    phases: dict[str, float] = field(default_factory=dict)


#: the phases of a prediction run, in order: the fusion method's 36 km pass and its calibration
#: at the stations, then the blocks (their tasks and the ledger's records)
PHASES = {"cell_means": "36 km cell means", "calibration": "station calibration", "blocks": "blocks"}


def check_inputs(config: Config, cube: xr.Dataset) -> None:
    """The cube must be on the configured grid and cover the configured dates."""
    want = config.grid_region.to_dict()
    if cube.attrs.get("region") != want:
        raise StoreError(f"the cube {config.stores.cube} covers region {cube.attrs.get('region')}, "
                         f"the configuration has {want}: it was written by another configuration")
    start, end = dt.date.fromisoformat(cube.attrs["start"]), dt.date.fromisoformat(cube.attrs["end"])
    if config.dates.start < start or config.dates.end > end:
        raise StoreError(f"the cube {config.stores.cube} holds {start}..{end}, the configuration asks for "
                         f"{config.dates.start}..{config.dates.end}")
    missing = [p for p in (*config.predictors, "land_mask", "smap_sm") if p not in cube.data_vars]
    if missing:
        raise InputError(f"the cube {config.stores.cube} lacks {missing}")


def open_or_create_output(config: Config, overwrite: bool = False, cube: str | None = None,
                          fence: int | None = None) -> xr.Dataset:
    """The output store, created from its template when missing (or when ``overwrite``), bound
    to ``config``'s product settings and the fingerprint ``cube`` of the cube it is made from.

    A store that ends before ``dates.end`` is extended (:func:`extend_output`); one that ends
    after it is refused, naming both dates.
    """
    if not config.stores.output:
        raise ConfigError("stores.output must be set to predict (where the daily maps go)")
    ref = config.stores.ref("output")
    url = ref.url
    layout = Layout.from_config(config)
    interval = config.output.interval if config.output.uncertainty == "quantile" else None
    exists = True
    try:
        ds = products.open_products(ref)
    except StoreNotFoundError:
        exists = False
    if exists and not overwrite:
        have_end = dt.date.fromisoformat(str(ds.attrs["end"]))
        extend.check_not_earlier("output store", url, have_end, layout.end)
        if have_end < layout.end:
            fingerprint.check_settings(ledger.store_records(ds.attrs).settings, config, "products", url,
                                       "`dsm predict CONFIG --overwrite` replaces the store", cube)
            extend.extend_output(config, have_end, products.products_template(layout, interval), fence)
            ds = products.open_products(ref)
    if overwrite or not exists:
        attrs = {"method": config.training.method, "predictors": list(config.predictors), "gap_free": config.output.gap_free,
                 "residual_correction": config.output.residual_correction,
                 "reduced_sets": [list(g) for g in config.output.reduced_sets], "models": config.stores.models,
                 "settings": fingerprint.record(config, "products", cube)}
        products.create_products(ref, layout, interval, attrs, overwrite=True)
        ds = products.open_products(ref)
    fingerprint.check_settings(ledger.store_records(ds.attrs).settings, config, "products", url,
                               "`dsm predict CONFIG --overwrite` replaces the store", cube)
    products.check_layout(ds, layout, url)
    products.check_origin(ds, url)
    return ds


def _sorted(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in sorted(d)}


def consistency(pairs: Sequence[list[float]]) -> dict[str, float | int | None]:
    """R, RMSE and bias (map minus SMAP) of the 36 km block means against SMAP for one day."""
    if not pairs:
        return {"r": None, "rmse": None, "bias": None, "n": 0}
    arr = np.array(sorted(pairs), dtype=np.float64)
    s = score(arr[:, 1], arr[:, 2], bias_convention="product_minus_reference", min_n=2) if len(arr) >= 2 else None

    def f(v: float) -> float | None:
        return None if v is None or not np.isfinite(v) else round(float(v), 6)

    if s is None:
        return {"r": None, "rmse": f(abs(arr[0, 1] - arr[0, 2])), "bias": f(arr[0, 1] - arr[0, 2]), "n": 1}
    return {"r": f(s.r), "rmse": f(s.rmse), "bias": f(s.bias), "n": int(s.n)}


def predict(config: Config, client: Client, *, overwrite: bool = False, only_days: Sequence[dt.date] | None = None,
            progress: Callable[[str], None] | None = None, lease: Lease | None = None) -> PredictReport:
    """Predict every day of ``config`` into ``stores.output`` on ``client``'s workers.

    Parameters
    ----------
    config
        The run configuration (``stores.cube``, ``stores.models``, ``stores.output``, ``output``).
    client
        The cluster's client.
    overwrite
        Replace the output store (else an existing one is resumed).
    only_days
        Restrict the run to the time chunks holding these days.
    progress
        Called with progress lines: notes, and one :class:`~dsm.progress.Step` per finished
        time chunk (task ``predict``, counted in days).
    lease
        The run's lease on the output store (:class:`dsm.runlock.Lease`), checked before the
        store is created and before each record of finished days.

    Raises
    ------
    ConfigError
        ``stores.output`` or ``stores.models`` unset.
    LockLostError
        The lease was taken over: nothing more is recorded.
    StoreError
        The cube or an existing output store does not match the configuration.
    """
    t_start = time.perf_counter()
    say = progress or (lambda line: log.info(line))
    if not config.stores.models:
        raise ConfigError("stores.models must be set to predict (where dsm train stored the models)")
    cube_ref, out_ref, models_ref = (config.stores.ref(n) for n in ("cube", "output", "models"))
    cube = open_cube(cube_ref)
    check_inputs(config, cube)
    if lease is not None:
        lease.check()
    cube_fp = fingerprint.cube_fingerprint(cube.attrs)
    fence = lease.fence if lease is not None else None
    old_end = extend.recorded_end(out_ref) if not overwrite else None
    out = open_or_create_output(config, overwrite, cube_fp, fence)
    if old_end is not None and old_end < config.dates.end:
        say(f"extended the output store {out_ref} from {old_end} to {config.dates.end}")
    models = ModelStore(models_ref)
    fingerprint.check_settings(models.read_settings(), config, "models", models_ref.url,
                               "`dsm train CONFIG --force` retrains them, or point stores.models at models "
                               "trained with these settings", cube_fp)
    all_days = list(day_range(config.dates.start, config.dates.end))
    card = fusion_card(models) if config.training.method == "fusion" else None
    plans = make_plans(config, models, all_days, card)
    report = PredictReport([d.isoformat() for d in all_days])
    led = ledger.read(out_ref, out.attrs)
    redo = extend.retrained_days(plans, led)
    if redo:
        if lease is not None:
            lease.check()
        extend.take_back(config, led, redo, fence)
        say(f"{len(redo)} day(s) made by models retrained since are predicted again ({min(redo)}..{max(redo)})")
        led = ledger.read(out_ref)
    rec = _DaysRecord(dict(led.days))
    revision = cube.attrs.get(store.REVISION_ATTR)
    layout = Layout.from_config(config)
    tchunk, schunk = layout.time_chunk, layout.space_chunk
    ny, nx = config.grid_region.fine_shape
    token = uuid.uuid4().hex
    jobs: dict[int, list[BlockJob]] = {}
    pending = _pending_chunks(all_days, tchunk, only_days, rec, revision, report)
    stored = led.stored_records()
    fused = screened = None
    if card is not None and pending:  # a rerun with nothing left to do skips the 36 km pass too
        # once the calibration is recorded, only the days to predict (and their lead-in) need it
        wanted = (all_days[min(pending)], all_days[min(max(pending) + tchunk, len(all_days)) - 1])
        with _phase(report, "cell_means"):
            fused, screened = _fuse_cells(config, client, cube, card, models, report, say,
                                          wanted if calibrated(stored) else None)
    cube_t0 = time_position(cube.indexes["time"], all_days[0])
    f = config.grid_region.fine_per_coarse

    def cells_of(t0: int, t1: int, y0: int, y1: int, x0: int, x1: int) -> BlockCells | None:
        if fused is None:
            return None
        return block_cells(fused, cube_t0 + t0, cube_t0 + t1, y0 // f, -(-y1 // f), x0 // f, -(-x1 // f),
                           smooth=config.training.fusion.smooth, screened=screened)

    fusion_args = _fusion_args(config, card)
    half = config.training.fusion.anomaly_window_days // 2 if card is not None else 0

    def job_of(t0: int, t1: int, y0: int, y1: int, x0: int, x1: int) -> BlockJob:
        window = ({"before": tuple(plans[max(0, t0 - half):t0]), "after": tuple(plans[t1:t1 + half])}
                  if half else {})
        return BlockJob(cube=cube_ref, output=out_ref, models=models_ref, token=token, t0=t0, t1=t1, y0=y0, y1=y1,
                        x0=x0, x1=x1, plans=tuple(plans[t0:t1]),
                        clip=tuple(config.output.clip),  # type: ignore[arg-type]  # a pair
                        residual_correction=config.output.residual_correction,
                        threads=config.output.predict_threads, device=config.cluster.device,
                        cells=cells_of(t0, t1, y0, y1, x0, x1), rain_spinup=config.rain.spinup_days,
                        **{**fusion_args, **window})

    if card is not None and pending:
        with _phase(report, "calibration"):
            _calibrate(config, client, lambda t0, t1, y0, x0: job_of(t0, t1, y0, y0 + f, x0, x0 + f), len(all_days),
                       stored, card.var_anomaly, fusion_args, lease, say)
    for t0 in pending:
        t1 = min(t0 + tchunk, len(all_days))
        jobs[t0] = [job_of(t0, t1, y0, min(y0 + schunk, ny), x0, min(x0 + schunk, nx))
                    for y0 in range(0, ny, schunk) for x0 in range(0, nx, schunk)]
    with _phase(report, "blocks") if jobs else contextlib.nullcontext():  # a rerun with nothing to do: none
        _run_jobs(client, jobs, plans, rec, revision, report, out_ref, lease, say)
    report.predicted.sort()
    report.out_of_range = _sorted(report.out_of_range)
    report.seconds = time.perf_counter() - t_start
    return report


@contextlib.contextmanager
def _phase(report: PredictReport, name: str) -> Iterator[None]:
    """Record the seconds of phase ``name`` (:data:`PHASES`) in ``report``."""
    t = time.perf_counter()
    yield
    report.phases[name] = time.perf_counter() - t


def _run_jobs(client: Client, jobs: Mapping[int, list[BlockJob]], plans: Sequence[DayPlan], rec: _DaysRecord,
              revision: Any, report: PredictReport, output: StoreRef, lease: Lease | None,
              say: Callable[[str], None]) -> None:
    """Run the block jobs of every time chunk; when all blocks of a chunk have landed, record its
    days (``rec`` and ``report``) in the output store's ledger."""
    steps = Steps(say, "predict", sum(len(js[0].plans) for js in jobs.values()), "day")
    if jobs:
        steps.start()
    futures = {client.submit(run_block, job, pure=False, **place): job for job, place in _in_turn(client, jobs)}
    results: dict[int, list[dict[str, Any]]] = {t0: [] for t0 in jobs}
    errors: dict[int, str] = {}
    remaining = {t0: len(js) for t0, js in jobs.items()}
    for job, result, exc in outcomes(futures):
        if exc is None:
            results[job.t0].append(result)
        else:  # the block's days are retried by the next run
            errors.setdefault(job.t0, f"block y {job.y0}:{job.y1}, x {job.x0}:{job.x1}: {type(exc).__name__}: {exc}")
        remaining[job.t0] -= 1
        if remaining[job.t0]:
            continue
        t0 = job.t0
        for i, plan in enumerate(plans[t0:t0 + len(jobs[t0][0].plans)]):
            if t0 in errors or plan.error:
                rec.failed_day(plan.day.isoformat(), plan.error or errors[t0], report)
            else:
                rec.landed_day(plan, [r["days"][i] for r in results[t0]], revision, report)
        if lease is not None:
            lease.check()
        names = [p.day.isoformat() for p in plans[t0:t0 + len(jobs[t0][0].plans)]]
        ledger.write_days(output, {n: rec.days[n] for n in names}, fence=lease.fence if lease is not None else None)
        steps.step(f"{names[0]}..{names[-1]}: " + ("FAILED " + errors[t0] if t0 in errors else "written"), len(names))


def _in_turn(client: Client, jobs: Mapping[int, list[BlockJob]]) -> list[tuple[BlockJob, dict[str, Any]]]:
    """The block jobs in the order they are submitted, each with its submit options: run in that
    order (days in time order), the workers taking them in turn (a preference,
    ``allow_other_workers``: Dask may still move a task); with a cube on remote storage, each job
    names the one its worker is expected to take next (``ahead``), whose reads it starts once its
    own are done (:func:`dsm.blocks.read_ahead`: the requests' latency hidden behind the
    prediction; on local disk the reads only compete with it for the cores)."""
    order = [job for js in jobs.values() for job in js]
    workers = worker_addresses(client)
    n = len(workers)
    ahead = n > 0 and bool(order) and not order[0].cube.is_local
    # the next block's reads need neither its cell means nor a next block: not sent twice
    return [(replace(job, ahead=replace(order[k + n], cells=None) if ahead and k + n < len(order) else None),
             in_turn(workers, k)) for k, job in enumerate(order)]


@dataclass
class _DaysRecord:
    """The output store's record of its days (:class:`dsm.ledger.DayRecord`) as this run changes them."""

    days: dict[str, ledger.DayRecord]

    def day(self, name: str) -> ledger.DayRecord:
        return self.days.get(name, ledger.DayRecord())

    def is_current(self, name: str, revision: Any) -> bool:
        """Whether day ``name`` is done, or empty with the cube unchanged (:data:`dsm.store.REVISION_ATTR`) since."""
        r = self.day(name)
        return r.done or (r.empty is not None and r.inputs_revision == revision)

    def failed_day(self, name: str, error: str, report: PredictReport) -> None:
        self.days[name] = replace(self.day(name), failed=error, done=False)
        report.failed[name] = error

    def landed_day(self, plan: DayPlan, infos: list[dict[str, Any]], revision: Any, report: PredictReport) -> None:
        """Record a day its blocks predicted (``infos``: each block's record of the day)."""
        name = plan.day.isoformat()
        prev = self.day(name)
        r = replace(prev, failed=None)
        n = sum(sum(info["counts"].values()) for info in infos)
        land = sum(info["land"] for info in infos)
        if n == 0 and land > 0:
            missing = sorted(set.intersection(*(set(info["missing"]) for info in infos)))
            r = replace(r, empty="no land pixel has the predictors of any model"
                        + (f"; missing all day: {', '.join(missing)}" if missing else ""))
            report.empty[name] = str(r.empty)
        else:
            r = replace(r, done=True, empty=None)
            report.predicted.append(name)
        report.pixels += n
        counts = merge_counts(info.get("out_of_range", {}) for info in infos)
        if counts:
            report.out_of_range[name] = counts
        replaces = None
        if prev.model and prev.failed and prev.failed.startswith(extend.REDONE):
            replaces = {"why": prev.failed, "models": extend.digests(prev.model), "sm_digest": prev.model.get(products.SM_DIGEST)}
        self.days[name] = replace(
            r, model={**plan.record(), products.VALID_PIXELS: sum(info.get("valid", 0) for info in infos),
                      products.SM_DIGEST: products.combine_digests(info["digest"] for info in infos),
                      store.REVISION_ATTR: revision, **({"replaces": replaces} if replaces else {})},
            consistency=consistency([p for info in infos for p in info["pairs"]]), out_of_range=counts or None)


def _pending_chunks(all_days: Sequence[dt.date], tchunk: int, only_days: Sequence[dt.date] | None,
                    rec: _DaysRecord, revision: Any, report: PredictReport) -> list[int]:
    """The first day index of every time chunk to predict (those of ``only_days`` when given),
    skipping (into ``report.skipped``) those whose days are all current."""
    wanted = {d for d in only_days} if only_days else None
    pending = []
    for t0 in range(0, len(all_days), tchunk):
        names = [d.isoformat() for d in all_days[t0:t0 + tchunk]]
        if wanted is not None and not wanted & set(all_days[t0:t0 + tchunk]):
            continue
        if all(rec.is_current(n, revision) for n in names):
            report.skipped += names
            continue
        pending.append(t0)
    return pending


def _fuse_cells(config: Config, client: Client, cube: xr.Dataset, card: Any, models: ModelStore,
                report: PredictReport, say: Callable[[str], None],
                wanted: tuple[dt.date, dt.date] | None) -> tuple[Any, Any]:
    """The 36 km pass of the fusion method: the fused and screened cell means (exact on the days
    ``wanted``, first and last, or on every day of the run: :func:`dsm.cellmeans.fused_cells`)."""
    say("fusing the model's cell means with SMAP" + ("" if wanted is None else
        f" for {wanted[0]}..{wanted[1]} and the days before them that carry SMAP into them"))
    cm = fused_cells(client, cube, card, lambda rec: models.load_model(rec.key), config.dates.start,
                     config.dates.end, config.training.aggregation, config.training.min_valid_fraction, wanted)
    report.cell_days = None if cm.days is None else (cm.days[0].isoformat(), cm.days[1].isoformat())
    report.out_of_range_cells = cm.out_of_range
    if cm.out_of_range:
        say("SMAP cell means: values outside their valid range, masked: "
            + describe({k: v for k, v in cm.out_of_range.items() if k != SMAP}, "1 km pixel-days")
            + f"; SMAP {cm.out_of_range.get(SMAP, 0)} cell-days")
    return cm.fused, cm.screened


def _fusion_args(config: Config, card: Any) -> dict[str, Any]:
    """The fusion method's arguments of every block job (none for the paper's method)."""
    if card is None:
        return {}
    return {"var_anomaly": card.var_anomaly, "anomaly_gain": config.training.fusion.anomaly_gain,
            "smooth": config.training.fusion.smooth,
            "interval": config.output.interval if config.output.uncertainty != "none" else None,
            "window": config.training.fusion.anomaly_window_days}


def _calibrate(config: Config, client: Client, job_at: Callable[[int, int, int, int], BlockJob], n_days: int,
               attrs: Mapping[str, Any], var_anomaly: float, fusion_args: dict[str, Any], lease: Lease | None,
               say: Callable[[str], None]) -> None:
    """Calibrate the anomaly gain and the within-cell error at the stations into ``fusion_args``;
    record them in the output store the first time."""
    gain, unc = calibrate_at_stations(config, client, job_at, n_days, attrs, float(np.sqrt(var_anomaly)))
    fusion_args.update(anomaly_gain=gain.gain, var_anomaly=unc.anomaly_sd ** 2)
    new = {k: v.to_dict() for k, v in ((GAIN_ATTR, gain), (UNC_ATTR, unc)) if k not in attrs}
    if new:
        if lease is not None:
            lease.check()
        ledger.write_records(config.stores.ref("output"), new, fence=lease.fence if lease is not None else None)
    say(f"anomaly gain k = {gain.gain:.3f} ({gain.source}): {gain.reason}"
        + (f"; 95 % interval {gain.interval[0]:.2f}..{gain.interval[1]:.2f}" if gain.interval else ""))
    if fusion_args.get("interval") is not None:
        say(f"sm_unc: within-cell error sd {unc.anomaly_sd:.4f} ({unc.source}): {unc.reason}"
            + (f"; 95 % interval {unc.interval[0]:.4f}..{unc.interval[1]:.4f}" if unc.interval else ""))


def status(config: Config) -> dict[str, Any]:
    """Periods trained, days predicted/empty/failed and exported (for ``dsm status``)."""
    out: dict[str, Any] = {"periods": {}, "days": len(list(day_range(config.dates.start, config.dates.end)))}
    if config.stores.models:
        models = ModelStore(config.stores.ref("models"))
        if config.training.method == "fusion":
            fusion = read_fusion_card(models)
            out["periods"][FUSION_KEY] = ("missing" if fusion is None else "trained (pooled xgb: "
                                          + ", ".join(v.name for v in fusion.variants) + ")")
        for p in periods(config.dates.start, config.dates.end) if config.training.method == "rao2022" else ():
            card = read_period_card(models, p.name)
            out["periods"][p.name] = ("missing" if card is None else f"{card.status} ("
                                      + (card.chosen if isinstance(card, TrainedPeriodCard) else f"from {card.reused_from}")
                                      + ")")
    if config.stores.output:
        try:
            ds = products.open_products(config.stores.ref("output"))
        except StoreError as exc:
            out["output"] = str(exc)
        else:
            led = ledger.read(config.stores.ref("output"), ds.attrs)
            out.update(predicted=len(led.done), empty=led.empty, failed=led.failed, exported=len(led.exported))
    return out
