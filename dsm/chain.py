"""The whole chain as one resumable job (``dsm run``).

Stages, in order (``run.stages`` selects a subset):

``cube``      the predictor cube: ``dsm ingest`` when the configuration has ``inputs:``,
              else the synthetic twin when it has ``twin:`` (built once; a twin whose station
              tables, written last, are missing is rebuilt), else the existing cube is checked;
``train``     every period's models (periods already stored are skipped);
``predict``   the daily 1 km maps (days already done are skipped);
``export``    COGs and STAC (needs ``stores.cog``) and/or netCDF files (``output.formats``); days
              already exported are skipped;
``validate``  in situ validation, analysis and the HTML report, and on the twin the skill
              against the 1 km truth (``skill.json`` beside the output store).

Every stage is resumable on its own, so rerunning ``dsm run`` after a crash, a killed job or
a storage outage redoes only what was not recorded as finished. While it runs, the job holds
the output store's lock (:mod:`dsm.runlock`): a second run on the same output store refuses
to start. Each run leaves ``<run.records>/<run id>/run.json`` (stages, timings, outcomes) and
Dask's HTML performance report beside it.

Every stage receives the run's lease and checks it before it writes: a run whose lock was
taken over stops (stage ``error``, "lost the lock to run X"). SIGTERM and SIGINT (under
:func:`dsm.interrupt.stop_on_signals`, as the command line runs) stop the run between two Python
statements: the stage is recorded as ``interrupted``, ``run.json`` is written and the lock is
released, so the rerun resumes at once.

A stage that raises stops the run (later stages depend on it) and its outcome is "failed",
except the validate stage, which only reads the products: when it raises, the products and
the stages that wrote them stay ``done`` and the outcome is "partial". A stage that finishes
with some failed items (a period, a day) lets the run go on, and the outcome is "partial".
Storage and network failures are reported as :class:`~dsm.errors.TransientIOError`: what was
written stays valid and a rerun resumes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, performance_report

from dsm import extend, files, fingerprint, ledger, store
from dsm.config import STAGES, Config, ConfigError
from dsm.errors import DsmError, TransientIOError
from dsm.interrupt import RunInterrupted
from dsm.runlock import Lease, RunLock, lock_ref
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What one stage did.

    ``status`` is ``done`` (everything finished), ``partial`` (finished with failed items,
    named in ``failed``), ``skipped`` (not configured; ``message`` says why), ``error`` (the
    stage raised; ``message`` holds the error and later stages did not run) or
    ``interrupted`` (SIGTERM/SIGINT; what it wrote is recorded, the rerun resumes).
    """

    stage: str
    status: str
    seconds: float = 0.0
    message: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    report: Any = None  # the stage's own report object (not serialised)

    def record(self) -> dict[str, Any]:
        """JSON-ready form for ``run.json``."""
        return {"stage": self.stage, "status": self.status, "seconds": round(self.seconds, 3),
                "message": self.message, "summary": self.summary, "failed": self.failed}


@dataclass
class RunResult:
    """A whole run: its id, stages and where its records are."""

    run_id: str
    started: str
    stages: list[StageResult] = field(default_factory=list)
    records: str | None = None

    @property
    def outcome(self) -> str:
        """``complete``, ``partial`` (some items failed, or a stage of :data:`AFTER_PRODUCTS`
        raised), ``failed`` (another stage raised) or ``interrupted`` (SIGTERM/SIGINT)."""
        status = {s.status for s in self.stages}
        if "interrupted" in status:
            return "interrupted"
        if any(s.status == "error" and s.stage not in AFTER_PRODUCTS for s in self.stages):
            return "failed"
        return "partial" if status & {"partial", "error"} else "complete"


AFTER_PRODUCTS: tuple[str, ...] = ("validate",)
"""Stages that only read the products: when one raises, the products (and the stages that wrote
them) stay valid and ``done``, so the run is ``partial``, not ``failed``."""


def records_ref(config: Config) -> StoreRef:
    """Where run records go: ``run.records``, else ``runs/`` beside the output store."""
    if config.run.records:
        return config.stores.at(config.run.records.rstrip("/"))
    return config.stores.primary().sibling("runs")


def _transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a storage or network failure worth a rerun (not bad input)."""
    if isinstance(exc, TransientIOError):
        return True
    if isinstance(exc, DsmError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ClientError", "ClientConnectorError", "EndpointConnectionError", "ConnectTimeoutError",
                         "ReadTimeoutError", "ServerDisconnectedError", "ConnectionClosedError"}) or (
        isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)))


# ------------------------------------------------------------------------------ stages
def _stage_cube(config: Config, client: Client, say: Callable[[str], None], lease: Lease | None) -> StageResult:
    from dsm import cube
    from dsm.twin import twin_complete

    if config.inputs is not None:
        from dsm.stages.ingest import run_ingest

        rep = run_ingest(config, client, progress=False, lease=lease)
        s = rep["summary"]
        failed = {str(f.get("path")): str(f.get("reason", "")) for f in rep["files"] if f.get("status") == "failed"}
        failed.update({f"task {i}": str(e) for i, e in enumerate(rep["task_errors"])})
        status = "partial" if s.get("failed") or s.get("task_errors") else "done"
        return StageResult("cube", status, message=f"ingest report {rep.get('report')}", summary=dict(s),
                           failed=failed, report=rep)
    if config.twin is not None:
        if store.exists(twin_stores(config).weather_csv):
            built = cube.open_cube(config.stores.ref("cube"))
            fingerprint.check_settings(built.attrs.get(fingerprint.CUBE_ATTR), config, "cube", config.stores.cube,
                                       "`dsm twin CONFIG --overwrite` rebuilds the twin (then dsm train --force "
                                       "and dsm predict --overwrite), or choose other stores")
            old_end = dt.date.fromisoformat(built.attrs["end"])
            ndays = (config.dates.end - config.dates.start).days + 1
            if old_end >= config.dates.end and twin_complete(built.attrs, built.sizes["time"]):
                return StageResult("cube", "done", message="twin already built", summary={"built": False})
            if old_end > config.dates.end:  # a twin longer than the run: its days are all there
                return StageResult("cube", "done", message="twin already built", summary={"built": False})
            say(f"extending the twin {config.stores.cube} from {old_end} to {config.dates.end}")
            if lease is not None:
                lease.check()
            build_twin_stores(config, overwrite=False, extend=True)
            return StageResult("cube", "done", message=f"twin extended from {old_end} to {config.dates.end}",
                               summary={"built": False, "extended_from": old_end.isoformat(), "days": ndays})
        say(f"building the twin region into {config.stores.cube}")
        if lease is not None:
            lease.check()
        build_twin_stores(config, overwrite=True)
        return StageResult("cube", "done", message="twin built", summary={"built": True})
    cube.open_cube(config.stores.ref("cube"))
    return StageResult("cube", "done", message=f"using the existing cube {config.stores.cube}", summary={"built": False})


def twin_stores(config: Config) -> Any:
    """The :class:`~dsm.twin.TwinStores` of ``config`` (truth and stations must be set)."""
    from dsm.twin import TwinStores

    if config.stores.truth is None or config.stores.stations is None:
        raise ConfigError("stores.truth and stores.stations must be set to build the twin")
    return TwinStores(config.stores.ref("cube"), config.stores.ref("truth"), config.stores.ref("stations"))


def build_twin_stores(config: Config, overwrite: bool, progress: bool = True, extend: bool = False) -> None:
    """Build the twin of ``config`` (region, dates, ``twin:`` section) into its stores.

    ``overwrite`` replaces existing stores (else they are an error); ``extend`` grows existing
    stores to ``dates.end`` and writes what they lack (:func:`dsm.twin.build_twin`); ``progress``
    shows a progress bar over the simulated days.
    """
    from dsm.config import TwinConfig
    from dsm.synthetic import TwinSpec
    from dsm.twin import build_twin

    stores = twin_stores(config)
    t = config.twin or TwinConfig()
    spec = TwinSpec(config.grid_region, config.dates.start, config.dates.end, t.seed, t.n_insitu, t.n_weather)
    build_twin(stores, spec, config.chunks.space, config.chunks.time, overwrite, progress=progress, rain=config.rain,
               extend=extend)


def _finished(stage: str, rep: Any, **summary: Any) -> StageResult:
    """The result of a stage whose report names its failed items in ``rep.failed``."""
    return StageResult(stage, "partial" if rep.failed else "done", summary=summary, failed=dict(rep.failed), report=rep)


def _stage_train(config: Config, client: Client, say: Callable[[str], None], lease: Lease | None) -> StageResult:
    from dsm.stages.train import check_training_config, train

    if not config.stores.models:
        return StageResult("train", "skipped", message="stores.models is not set")
    check_training_config(config)
    rep = train(config, client, progress=say, lease=lease)
    return _finished("train", rep, periods=len(rep.periods), trained=len(rep.trained), reused=len(rep.reused),
                     skipped=len(rep.skipped))


def _stage_predict(config: Config, client: Client, say: Callable[[str], None], lease: Lease | None) -> StageResult:
    from dsm.stages.predict import predict

    if not config.stores.output:
        return StageResult("predict", "skipped", message="stores.output is not set")
    rep = predict(config, client, progress=say, lease=lease)
    return _finished("predict", rep, predicted=len(rep.predicted), skipped=len(rep.skipped), empty=len(rep.empty),
                     pixels=rep.pixels, days_with_inputs_out_of_range=len(rep.out_of_range),
                     phase_seconds={k: round(v, 3) for k, v in rep.phases.items()}, cell_days=rep.cell_days)


def _stage_export(config: Config, client: Client, say: Callable[[str], None], lease: Lease | None) -> StageResult:
    from dsm.stages.export import export

    formats = tuple(config.output.formats)
    if not config.stores.cog and "cog" in formats:
        formats = tuple(f for f in formats if f != "cog")  # netCDF files need no COG folder
        if not formats:
            return StageResult("export", "skipped", message="stores.cog is not set (and output.formats has no netcdf)")
    rep = export(config, client, progress=export_steps(config, say, formats=formats), lease=lease, formats=formats)
    return _finished("export", rep, exported=len(rep.exported), skipped=len(rep.skipped), stac=rep.stac)


def export_steps(config: Config, say: Callable[[str], None], force: bool = False,
                 formats: tuple[str, ...] = ()) -> Callable[[str], None]:
    """The ``progress`` callback to give :func:`dsm.stages.export.export`: each line it reports (one per
    file written) goes to ``say`` as a :class:`~dsm.progress.Step` of the task ``export``. The
    total counts the predicted days whose COGs are not yet written (all of them with ``force``)
    when ``formats`` (default ``output.formats``) holds COGs; netCDF files add to it as they come.
    """
    from dsm.progress import Steps

    total: int | None = 0
    if "cog" in (formats or getattr(config.output, "formats", ("cog",))):
        try:
            out = config.stores.ref("output")
            led = ledger.read(out)
            done = set(led.done)
            total = len(done if force else done - set(led.exported))
        except DsmError:  # export names the problem itself
            total = None
    steps = Steps(say, "export", total, "file")
    steps.start()
    return steps.step


def _stage_validate(config: Config, client: Client, say: Callable[[str], None], lease: Lease | None) -> StageResult:
    from dsm.stages.validate import stations_config

    v = stations_config(config)
    if not v.stations:
        return StageResult("validate", "skipped", message="no stations configured (validation.stations)")
    from dsm.progress import Steps
    from dsm.stages.report import run_report, start_means
    from dsm.stages.validate import run_validate

    summary: dict[str, Any] = {}
    scores = None
    if lease is not None:
        lease.check()
    twin = bool(config.stores.truth and config.stores.output)
    steps = Steps(say, "validate", 1 + twin, "step")
    steps.start()
    means = start_means(config, client)  # the report's mean maps, made while the rest of the stage runs
    if twin:
        dest = config.stores.ref("output").sibling("skill.json")
        summary["skill"] = dest.url
        # the skill runs beside the validation, started once the stations are sampled (their reads
        # would wait behind the skill's tasks): the scores at the stations fill the workers' gaps
        with ThreadPoolExecutor(1, thread_name_prefix="dsm-twin-skill") as pool:
            started: list[Future[dict[str, Any]]] = []

            def start_skill() -> Future[dict[str, Any]]:
                started.append(pool.submit(twin_skill, config, dest, client))
                return started[-1]

            validation = run_validate(config, client, twin=start_skill)  # calls it, or raises
            scores = started[0].result()
        steps.step(f"twin skill against the 1 km truth: {summary['skill']}")
    else:
        validation = run_validate(config, client)
    summary["report"] = run_report(config, client, validation, twin=scores, lease=lease, means=means)
    steps.step(f"validation report: {summary['report']}")
    return StageResult("validate", "done", summary=summary, report=scores)


def twin_skill(config: Config, dest: StoreRef, client: Client | None = None) -> dict[str, Any]:
    """Score the products of ``config`` against the twin's 1 km truth
    (:func:`dsm.skill.twin_skill_of`, on ``client``'s workers when given) and write the scores
    as JSON to ``dest``; returns them.

    Raises
    ------
    ConfigError
        ``stores.truth`` or ``stores.output`` unset.
    """
    from dsm.skill import twin_skill_of, write_skill

    scores = twin_skill_of(config, client)
    write_skill(scores, dest)
    return scores


STAGE_FUNCTIONS: dict[str, Callable[[Config, Client, Callable[[str], None], Lease | None], StageResult]] = {
    "cube": _stage_cube, "train": _stage_train, "predict": _stage_predict, "export": _stage_export,
    "validate": _stage_validate,
}


# ------------------------------------------------------------------------------ the run
def write_record(result: RunResult, config: Config, extra: dict[str, Any] | None = None) -> str:
    """Write ``run.json`` of ``result`` under its records folder; returns its URL."""
    body = {"run_id": result.run_id, "started": result.started, "outcome": result.outcome,
            "region": config.grid_region.to_dict(),
            "dates": [config.dates.start.isoformat(), config.dates.end.isoformat()],
            "stores": config.stores.model_dump(mode="json", exclude={"storage_options"}),
            "stages": [s.record() for s in result.stages], **(extra or {})}
    return files.write_url(config.stores.at(f"{result.records}/run.json"), json.dumps(body, indent=1))


@contextmanager
def _performance_report(enabled: bool, dest: StoreRef) -> Iterator[None]:
    """Dask's HTML performance report of the block, uploaded to ``dest`` afterwards."""
    if not enabled:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="dsm-run-") as tmp:
        local = os.path.join(tmp, "dask-performance.html")
        try:
            with performance_report(filename=local):
                yield
        finally:
            if os.path.exists(local):
                try:
                    fs, path = dest.fs()
                    files.put_file(fs, local, path)
                except Exception as exc:  # the report is a convenience: never fail the run for it
                    log.warning("could not save the performance report to %s: %s", dest, exc)


def new_run_id() -> str:
    """A run id: the UTC start time and a random suffix (sorts by time)."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def lock_for(config: Config, run_id: str | None = None, break_lock: bool = False) -> RunLock:
    """The (not yet acquired) lock of ``config``'s output store; use it as a context manager."""
    return RunLock(lock_ref(config.stores.primary()), ttl=config.run.lock_ttl,
                   heartbeat=config.run.lock_heartbeat, run_id=run_id or new_run_id(), break_lock=break_lock)


def run(config: Config, client: Client, *, stages: tuple[str, ...] | None = None, break_lock: bool = False,
        lock: RunLock | None = None, progress: Callable[[str], None] | None = None,
        on_stage: Callable[[StageResult], None] | None = None) -> RunResult:
    """Run the chain of ``config`` on ``client``'s cluster, resuming whatever is already done.

    Parameters
    ----------
    config
        The run configuration; ``run.stages`` lists the stages to run.
    client
        The cluster's client (a LocalCluster, or a scheduler reached by address).
    stages
        Overrides ``run.stages``.
    break_lock
        Take the output store's lock even when another run seems to hold it.
    lock
        A lock from :func:`lock_for` that the caller already holds (for example taken before
        starting a cluster); by default the run takes its own.
    progress
        Called with progress lines.
    on_stage
        Called with each stage's result as soon as the stage ends.

    Returns
    -------
    RunResult
        The stages' results; ``run.json`` and the performance report are under ``records``.

    Raises
    ------
    LockError
        Another live run holds the output store's lock (nothing was done).
    StoreError
        ``dates.end`` is before the output store's end (both dates named), or stores to be
        extended to ``dates.end`` were made with other settings (the keys named;
        :func:`dsm.extend.preflight`): nothing was done.
    """
    say = progress or (lambda line: log.info(line))
    chosen = tuple(stages or config.run.stages)
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    own_lock = lock is None
    lock = lock or lock_for(config, break_lock=break_lock)
    run_id = lock.record.run_id
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    records = records_ref(config).join(run_id)
    result = RunResult(run_id, now, records=records.url)
    with lock if own_lock else nullcontext(lock):
        say(f"run {run_id}: stages {', '.join(chosen)}; records {result.records}")
        for line in extend.preflight(config):
            say(f"extending {line}")
        report_ctx = _performance_report(config.run.performance_report, records.join("dask-performance.html")
                                         ) if client is not None else nullcontext()
        with report_ctx:
            for name in STAGES:
                if name not in chosen:
                    continue
                t0 = time.perf_counter()
                try:
                    res = STAGE_FUNCTIONS[name](config, client, say, lock)
                except RunInterrupted as exc:
                    res = StageResult(name, "interrupted", message=f"{exc}; what was written is recorded, "
                                      "rerun to resume")
                except Exception as exc:
                    if _transient(exc):
                        msg = (f"storage or network failure in stage {name}: {type(exc).__name__}: {exc}. "
                               "What was written stays valid; rerun to resume.")
                    elif isinstance(exc, DsmError):
                        msg = str(exc)
                    else:
                        log.exception("stage %s failed", name)
                        msg = f"{type(exc).__name__}: {exc}"
                    res = StageResult(name, "error", message=msg)
                res.seconds = time.perf_counter() - t0
                result.stages.append(res)
                if on_stage is not None:
                    on_stage(res)
                if res.status in ("error", "interrupted"):
                    break
        try:
            write_record(result, config, {"lock": lock.url, "stages_requested": list(chosen),
                                          "performance_report": f"{result.records}/dask-performance.html"
                                          if config.run.performance_report else None})
        except Exception as exc:
            log.warning("could not write the run record under %s: %s", result.records, exc)
    return result


def last_error(result: RunResult) -> StageResult | None:
    """The stage that stopped the run, if one did."""
    return next((s for s in result.stages if s.status == "error"), None)




def config_or_demo(config_path: str | None, client: Client, stages: tuple[str, ...],
                   say: Callable[[str], None] = print) -> Config:
    """The configuration at ``config_path``, or, without one, the quick tiny twin demo
    (:func:`dsm.twin.demo_config` with ``quick=True``) in a new temporary folder, run through
    ``stages`` on ``client`` with one line per stage to ``say`` (how the notebooks start).
    """
    from dsm import config as config_mod
    from dsm.twin import demo_config

    if config_path is not None:
        return config_mod.load(config_path)
    cfg = config_mod.from_dict(demo_config("tiny", root=tempfile.mkdtemp(prefix="dsm-nb-"), quick=True))
    for s in run(cfg, client, stages=stages).stages:
        say(f"{s.stage:8s} {s.status:8s} {s.seconds:5.1f} s  {s.summary}")
    return cfg
