"""Training on the cluster (the ``dsm train`` stage).

``training.method: fusion`` (the default) trains one pooled model over all periods
(:func:`dsm.models.fusion_train.train_fusion`). ``training.method: rao2022``, the paper, trains
every 16-day period as follows.

1. The sample tables of every period to train are submitted at once, one task per (period,
   spatial block of the cube) (:func:`dsm.sample_tables.table_futures`), so the workers read
   and aggregate the 1 km chunks and only the small tables come back.
2. Periods train concurrently: ``training.concurrent_periods`` client threads each take a
   period as its table arrives and run its grid searches, whose fits spread over the workers.
3. A period that fails (on a worker or here) is reported with its cause; the others finish.
   Failed periods get no card, so the next run retries them.
4. A period with fewer than ``training.min_samples`` samples (none valid included) gets a card
   ``status: reused`` naming the period whose model it uses (:func:`select.resolve_fallbacks`).
5. The pooled model (``training.pooled``) is trained over all periods with ``xgboost.dask``.
6. A rerun skips every period (and the pooled model) whose card and model are stored, unless
   ``force``; reuse cards are re-resolved every run, since a newly trained period may change
   which model a short period should use.
7. Every card records the days its samples came from (``window``: the first and last day of
   the period that the cube holds). A store extended in time (``dsm run --until``,
   :mod:`dsm.extend`) retrains exactly the periods whose window changed (the period that was
   partial, and the new ones); completed periods keep their models. The rao2022 pooled model
   (a comparison, never used to predict) is retrained when the whole window changed. The
   fusion method keeps its pooled model and records the window it was trained on in
   ``training_window.json``; ``force`` retrains it over the configured dates.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from distributed import Client

from dsm import fingerprint
from dsm import store as zarr_stores  # the local name store is the model store
from dsm.config import Config
from dsm.cube import RAIN_VARS, open_cube
from dsm.errors import ConfigError
from dsm.frozen import frozen
from dsm.models.cards import FUSION_KEY, FusionCard
from dsm.models.estimators import check_training_grids
from dsm.models.fusion_train import train_fusion
from dsm.models.period import SearchFn, fit_period, period_split
from dsm.models.period_cards import (
    PeriodCard,
    PooledCard,
    ReusedPeriodCard,
    StoredModel,
    TrainedPeriodCard,
    period_card_from_dict,
    read_period_card,
    read_pooled_card,
    tuple_or_none,
    write_period_card,
    write_pooled_card,
)
from dsm.models.pooled import train_pooled
from dsm.models.report import period_table, table4
from dsm.models.select import resolve_fallbacks
from dsm.models.store import POOLED, ModelStore
from dsm.models.variants import FULL, train_variants, variants_of
from dsm.periods import Composite, periods
from dsm.progress import Steps
from dsm.runlock import Lease, LockLostError, RunLock, lock_ref
from dsm.sample_tables import table_futures, table_set_futures
from dsm.samples import check_predictors, period_days

log = logging.getLogger(__name__)


@dataclass
class TrainReport:
    """What a training run did.

    Attributes
    ----------
    periods
        Every period name, in order.
    trained, reused, skipped
        Periods trained in this run; periods using another period's model; periods skipped
        because they were already stored.
    failed
        Period, ``period/model`` (a model of the period that failed to fit: the period chose
        among the others, and a rerun fits it again) or ``"pooled"`` -> cause.
    cards
        The stored card of every period that has one (after the run).
    pooled
        The pooled model's card, when there is one.
    """

    periods: list[str]
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cards: list[PeriodCard] = field(default_factory=list)
    pooled: PooledCard | None = None
    variants: list[str] = field(default_factory=list)
    method: str = "rao2022"
    fusion: FusionCard | None = None
    windows: dict[str, list[str] | None] = field(default_factory=dict)
    kept: str = ""

    def period_table(self) -> pd.DataFrame:
        """The per-period table (see :func:`dsm.models.report.period_table`)."""
        return period_table(self.cards, {k: v for k, v in self.failed.items() if k != POOLED})

    def table4(self) -> pd.DataFrame:
        """The Table-4 summary (see :func:`dsm.models.report.table4`)."""
        return table4(self.cards, self.pooled)

    def record(self) -> dict[str, Any]:
        """JSON-ready summary, stored as ``run.json``."""
        return {"method": self.method, "periods": self.periods, "trained": self.trained, "reused": self.reused,
                "skipped": self.skipped, "failed": self.failed, "windows": self.windows, "kept": self.kept,
                "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def check_training_config(config: Config) -> None:
    """Raise :class:`ConfigError` for a missing model store, or a grid or XGBoost value its
    estimator rejects (:func:`~dsm.models.estimators.check_training_grids`), before any work."""
    if not config.stores.models:
        raise ConfigError("stores.models must be set to train (where the models and cards go)")
    check_training_grids(config.training)


def _select(all_periods: list[Composite], only: Sequence[str] | None) -> list[Composite]:
    if not only:
        return all_periods
    names = {p.name for p in all_periods}
    unknown = [o for o in only if o not in names]
    if unknown:
        raise ConfigError(f"period(s) {unknown} are not 16-day periods of the configured dates "
                          f"({all_periods[0].name}..{all_periods[-1].name})")
    return [p for p in all_periods if p.name in set(only)]


def train(config: Config, client: Client, *, force: bool = False, only: Sequence[str] | None = None,
          search_fn: SearchFn | None = None, progress: Callable[[str], None] | None = None,
          lease: Lease | None = None) -> TrainReport:
    """Train every period of ``config`` (or those named in ``only``) on ``client``'s cluster.

    Parameters
    ----------
    config
        The run configuration (``stores.cube``, ``stores.models``, ``predictors``, ``training``).
    client
        The cluster's client.
    force
        Retrain periods (and the pooled model) already in the store.
    only
        Period names to consider (default: every period of the configured dates).
    search_fn
        Replaces the dask-ml grid search (same signature as :func:`dsm.models.search.search`).
    progress
        Called with progress lines: notes, and a :class:`~dsm.progress.Step` (task ``train``) per
        finished period (``rao2022``) or per model of the fusion method.
    lease
        The run's lease on the output store (:class:`dsm.runlock.Lease`), checked first. The
        model store gets its own lock (``<models>.lock``, same run id), checked before every
        model, card and report written, so two runs never train into one model store.

    Raises
    ------
    ConfigError
        Bad training settings (unknown period, bad grid, no model store).
    InputError
        The cube is missing, or lacks a predictor.
    StoreError
        The model store holds models trained with other settings (:mod:`dsm.fingerprint`);
        ``force`` (without ``only``) retrains them all.
    LockError
        Another run is training into the model store.
    """
    check_training_config(config)
    say = progress or (lambda line: log.info(line))
    all_periods = periods(config.dates.start, config.dates.end)
    chosen = _select(all_periods, only)
    if lease is not None:
        lease.check()
    models = config.stores.ref("models")
    cube = config.stores.ref("cube")
    with RunLock(lock_ref(models), ttl=config.run.lock_ttl, heartbeat=config.run.lock_heartbeat,
                 run_id=lease.run_id if lease is not None else None) as models_lease:
        ds = open_cube(cube)
        check_predictors(ds, config.predictors)
        rain = RAIN_VARS if config.rain.predictors == "auto" else ()  # the default method's rain predictors
        zarr_stores.require_present(ds, cube, [*config.predictors, "smap_sm", "land_mask", *rain])
        store = ModelStore(models, lease=models_lease)
        bind_settings(store, config, replace=force and not only, cube=fingerprint.cube_fingerprint(ds.attrs))
        return _train_into(store, config, client, ds, all_periods, chosen, force, only, search_fn, say)


def bind_settings(store: ModelStore, config: Config, replace: bool, cube: str | None = None) -> None:
    """Record ``config``'s model settings and the fingerprint ``cube`` of the cube the models are
    trained on in ``store`` (:mod:`dsm.fingerprint`), or refuse a store trained with other
    settings or on another cube unless ``replace`` (every model is retrained)."""
    current = fingerprint.record(config, "models", cube)
    recorded = store.read_settings()
    if recorded == current:
        return
    if recorded is not None and not replace:
        fingerprint.check_settings(recorded, config, "models", store.url,
                                   "`dsm train CONFIG --force` retrains every model with these settings", cube)
    store.write_settings(current)


def _train_into(store: ModelStore, config: Config, client: Client, ds: Any, all_periods: list[Composite],
                chosen: list[Composite], force: bool, only: Sequence[str] | None, search_fn: SearchFn | None,
                say: Callable[[str], None]) -> TrainReport:
    """:func:`train`'s work once the model store is locked and bound to the settings."""
    tcfg = config.training
    report = TrainReport([p.name for p in all_periods], method=tcfg.method)
    if tcfg.method == "fusion":
        if only:
            raise ConfigError("--only trains single periods of training.method: rao2022; the fusion method "
                              "trains one model over all periods")
        window = sample_window(ds, all_periods)
        report.fusion, fresh = train_fusion(config, client, store, ds, force=force, progress=say)
        (report.trained if fresh else report.skipped).append(FUSION_KEY)
        if fresh:
            store.write_window(FUSION_KEY, window)
        else:
            report.kept = _kept_note(store.read_window(FUSION_KEY), window)
            if report.kept:
                say(report.kept)
        store.write_report(report.record())
        return report

    windows = {p.name: sample_window(ds, [p]) for p in all_periods}
    todo = [p for p in chosen if force or not _current(store, p.name, period_card_from_dict, windows[p.name])]
    report.skipped = [p.name for p in chosen if p not in todo]
    report.windows = {p.name: windows[p.name] for p in todo}
    whole = sample_window(ds, all_periods)
    want_pooled = tcfg.pooled and (force or not _current(store, POOLED, PooledCard.from_dict, whole))
    need = all_periods if want_pooled else todo
    options = {"how": tcfg.aggregation, "min_valid_fraction": tcfg.min_valid_fraction}
    # the periods trained now have their variants trained afresh: their reduced predictor sets
    # are tabled from the same reads of the cube as the full set
    reduced = {v: preds for v, preds in variants_of(config).items() if v != FULL}
    sets = [config.predictors, *reduced.values()]
    by_set = dict(zip([p.name for p in todo], table_set_futures(client, ds, todo, sets, **options), strict=True))
    futures = {name: fs[0] for name, fs in by_set.items()}
    variant_tables = {(name, v): f for name, fs in by_set.items() for v, f in zip(reduced, fs[1:], strict=True)}
    others = [p for p in need if p.name not in futures]
    futures.update(zip([p.name for p in others], table_futures(client, ds, others, config.predictors, **options),
                       strict=True))
    sample_info = {"aggregation": tcfg.aggregation, "min_valid_fraction": tcfg.min_valid_fraction,
                   "rule": "mean of valid land pixels" if tcfg.aggregation == "mean"
                   else "1 km pixel at row 18, col 18 of the cell's 36 x 36 block"}
    tables: dict[str, pd.DataFrame] = {}
    small: dict[str, int] = {}

    def run_period(p: Composite) -> str:
        table = futures[p.name].result()
        tables[p.name] = table
        if len(table) < tcfg.min_samples:
            small[p.name] = len(table)
            return f"{p.name}: {len(table)} samples < {tcfg.min_samples}: will reuse another period's model"
        fit = fit_period(client, table, p.name, config.predictors, tcfg, search_fn, config.cluster.device)
        stored = StoredModel.from_dict(store.save_model(p.name, fit.estimator))
        card = replace(fit.card, aggregation=frozen(sample_info), cube=config.stores.cube,
                       window=tuple_or_none(windows[p.name]), model=stored)
        write_period_card(store, card)
        report.trained.append(p.name)
        for model, error in card.model_errors.items():  # the period stands; the stage is partial
            report.failed[f"{p.name}/{model}"] = error
        lost = f" ({', '.join(card.model_errors)} failed)" if card.model_errors else ""
        return f"{p.name}: {len(table)} samples, chose {card.chosen}{lost}"

    _run_periods(run_period, todo, tcfg.concurrent_periods, report, say)
    report.trained.sort()

    # tables of periods that were not trained in this run but the pooled model needs
    for name in [n for n in futures if n not in tables]:
        try:
            tables[name] = futures[name].result()
        except Exception as exc:
            report.failed.setdefault(name, f"{type(exc).__name__}: {exc}")

    _resolve_reuse(store, report, all_periods, small, sample_info, windows)
    # companion models for prediction: reduced (gap-free) and quantile models
    report.variants, variant_failures = train_variants(client, config, store, ds, [p.name for p in chosen],
                                                       force=force, fresh=report.trained,
                                                       tables=tables, variant_tables=variant_tables)
    variant_tables.clear()  # the reduced tables not used (periods not trained) are released
    report.failed.update(variant_failures)
    if want_pooled:
        _pooled(client, config, store, report, tables, whole)
    report.pooled = read_pooled_card(store, POOLED)
    report.cards = [c for c in (read_period_card(store, p.name) for p in all_periods) if c is not None]
    store.write_report(report.record())
    return report


def sample_window(ds: Any, chosen: Sequence[Composite]) -> list[str] | None:
    """``[first, last]`` (ISO) of the days of the periods ``chosen`` that the cube ``ds`` holds:
    the days a model of them samples; None when the cube holds none."""
    have = [d for p in chosen for d in period_days(ds, p)]
    return [min(have).isoformat(), max(have).isoformat()] if have else None


def _current(store: ModelStore, key: str, schema: Callable[[Mapping[str, Any]], Any], window: list[str] | None) -> bool:
    """Whether ``key`` is done (:meth:`ModelStore.done_card`, its card read once) and its card
    records the sample window ``window``: a store extended in time changed the period's samples.
    A card without a window (written before windows were recorded) is taken as current."""
    card = store.done_card(key, schema)
    if card is None:
        return False
    recorded = card.window
    return recorded is None or list(recorded) == list(window or [])


def _kept_note(recorded: list[str] | None, window: list[str] | None) -> str:
    """The line saying that the fusion model was kept although the dates now reach further."""
    if recorded is None or window is None or list(recorded) == list(window):
        return ""
    return (f"fusion: kept the pooled model trained on {recorded[0]}..{recorded[1]} (the dates now reach "
            f"{window[1]}); `dsm train CONFIG --force` retrains it over {window[0]}..{window[1]}")


def _run_periods(run_period: Callable[[Composite], str], todo: list[Composite], workers: int, report: TrainReport,
                 say: Callable[[str], None]) -> None:
    """Run ``run_period`` on every period of ``todo``, ``workers`` at a time, one progress step
    each: a failure is recorded in ``report.failed`` and the others go on; a lost lock stops all."""
    steps = Steps(say, "train", len(todo), "period")
    if todo:
        steps.start()
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsm-train")
    try:
        jobs = {pool.submit(run_period, p): p for p in todo}
        for job in cf.as_completed(jobs):
            p = jobs[job]
            try:
                steps.step(job.result())
            except Exception as exc:  # reported per period; the others go on
                if isinstance(exc, LockLostError):  # another run holds the models now: stop at once
                    raise
                report.failed[p.name] = f"{type(exc).__name__}: {exc}"
                steps.step(f"{p.name}: FAILED {report.failed[p.name]}")
    except BaseException:
        # a lost lock or a stop (SIGTERM, SIGINT): do not wait for the periods being fitted; the
        # caller's client closes, which cancels their tasks and ends their threads
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _resolve_reuse(store: ModelStore, report: TrainReport, all_periods: list[Composite],
                   small: dict[str, int], sample_info: dict[str, Any],
                   windows: dict[str, list[str] | None]) -> None:
    """Write (or refresh) the cards of periods that reuse another period's model."""
    cards = {p.name: read_period_card(store, p.name) for p in all_periods}
    trained = [n for n, c in cards.items() if isinstance(c, TrainedPeriodCard)]
    source = resolve_fallbacks([p.name for p in all_periods], trained)
    for p in all_periods:
        card = cards[p.name]
        if p.name in small:
            n = small[p.name]
        elif isinstance(card, ReusedPeriodCard):
            n = card.n_samples
        else:
            continue
        src = source[p.name]
        if src is None:
            report.failed[p.name] = (f"{n} samples < min_samples and no period has a model of its own "
                                     "to reuse")
            continue
        direction = "previous" if src < p.name else "next"
        reason = "no valid samples" if n == 0 else f"{n} samples, fewer than training.min_samples"
        window = card.window if card is not None and p.name not in small else windows[p.name]
        new = ReusedPeriodCard(period=p.name, n_samples=int(n), reused_from=src,
                               fallback=f"{reason}: uses the {direction} trained period's model",
                               aggregation=frozen(sample_info), window=tuple_or_none(window),
                               created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        if card is None or card.reused_from != src or p.name in small:
            write_period_card(store, new)
        report.reused.append(p.name)


def _pooled(client: Client, config: Config, store: ModelStore, report: TrainReport,
            tables: dict[str, pd.DataFrame], window: list[str] | None) -> None:
    tcfg = config.training
    try:
        splits = {k: period_split(t, k, tcfg) for k, t in tables.items() if len(t)}
        model, card = train_pooled(client, {k: tables[k] for k in splits}, splits, config.predictors,
                                   tcfg.pooled_params, tcfg.seed, config.cluster.device)
        entry = store.save_model(POOLED, model)
        # predicts: False, a comparison of the paper's method; the fusion method predicts pooled
        write_pooled_card(store, PooledCard.from_dict({**card, "predicts": False, "window": window, "model": entry}),
                          POOLED)
    except Exception as exc:
        report.failed[POOLED] = f"{type(exc).__name__}: {exc}"
