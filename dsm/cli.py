"""The ``dsm`` command line.

Commands
--------
``dsm demo --workdir DIR``     build the twin region under DIR and print its summary
``dsm twin CONFIG``            build the twin over a configuration's region, dates and stores
``dsm run CONFIG``             the whole chain as one resumable, locked job (cube .. validate)
``dsm train CONFIG``           train every 16-day period's models; per-period table and Table 4
``dsm predict CONFIG``         daily 1 km sm, sm_unc, sm_origin into stores.output (resumable)
``dsm export CONFIG``          one COG per predicted day (SM_1km_YYYYDDD.tif) and a STAC catalog
``dsm status CONFIG``          periods trained, days predicted, empty, failed and exported
``dsm verify CONFIG [--fix]``  every chunk, model and COG against its record; what to redo
``dsm skill CONFIG``           the twin skill table against the 1 km truth (DIR/skill.json)
``dsm validate CONFIG``        in situ scores of the 1 km product, SMAP and other products (CSV/JSON)
``dsm report CONFIG``          validation + analysis + figures in one offline HTML file
``dsm ingest CONFIG``          real input files (inputs:) -> the predictor cube, with a report
``dsm fetch CONFIG --dest D``  download the granules of CONFIG from NASA Earthdata (earthaccess)
``dsm cube info URL``          variables, axes, chunks, extent and valid fractions of a cube
``dsm config check CONFIG``    validate a configuration file and print it resolved
``dsm config schema``          the JSON schema of the configuration, with every key's description
``dsm deploy render CONFIG --image IMG``  Kubernetes DaskJob/DaskCluster YAML for CONFIG
``dsm deploy secret CONFIG``  the Secret of CONFIG's inline credentials (only on request)
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from dsm import config as config_mod
from dsm.errors import DsmError

T = TypeVar("T")


def _fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(2)


def _storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--storage-option")
        out[key] = yaml.safe_load(value)
    return out


def _on_cluster(cfg: config_mod.Config, stage: Callable[[Any], T], err: bool = True) -> T:
    """Run ``stage(client)`` on the configured cluster, naming the cluster (and its dashboard)
    on stderr (``err``) or stdout."""
    from dsm import cluster

    with cluster.connect(cfg.cluster) as client:
        click.echo(cluster.describe(client), err=err)
        return stage(client)


class _Group(click.Group):
    """Turns dsm's own errors into one clear line and exit status 2, and SIGTERM/SIGINT (after
    the lock was released) into one line and exit status 128 + the signal's number."""

    def invoke(self, ctx: click.Context) -> Any:
        from dsm.run import RunInterrupted

        try:
            return super().invoke(ctx)
        except DsmError as exc:
            _fail(exc)
        except RunInterrupted as exc:
            click.secho(f"interrupted: {exc}; the lock was released and what was written is recorded: "
                        "rerun the command to resume", fg="yellow", err=True)
            sys.exit(128 + exc.signum)


@contextmanager
def _locked(cfg: config_mod.Config, break_lock: bool = False) -> Iterator[Any]:
    """Hold ``cfg``'s output-store lock (:mod:`dsm.runlock`) around a writing command, with
    SIGTERM/SIGINT turned into a clean stop that releases it; yields the lock (the lease)."""
    from dsm.run import lock_for, stop_on_signals

    with stop_on_signals(), lock_for(cfg, break_lock=break_lock) as lock:
        yield lock


_break_lock = click.option("--break-lock", is_flag=True,
                           help="Take the output store's lock from a run known to be dead.")


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """dsm: daily 1 km soil moisture from SMAP, MODIS, terrain and soil, on Dask."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # distributed configures its own loggers at INFO when first imported: import it now, then
    # make its loggers follow the command's verbosity
    import distributed  # noqa: F401

    for name in ("distributed", "dask"):
        logging.getLogger(name).setLevel(level)


def _print_summary(summary: dict[str, Any]) -> None:
    r = summary["region"]
    click.echo(f"region  rows {r['row0']}+{r['nrows']}, cols {r['col0']}+{r['ncols']} (36 km cells); "
               f"1 km {r['fine_shape'][0]} x {r['fine_shape'][1]}")
    lo0, la0, lo1, la1 = r["lonlat_bounds"]
    click.echo(f"extent  lon {lo0:.4f} .. {lo1:.4f}, lat {la0:.4f} .. {la1:.4f}  (EPSG:6933 EASE-Grid 2.0)")
    click.echo(f"dates   {summary['dates'][0]} .. {summary['dates'][1]}")
    click.echo("axes    " + ", ".join(f"{k}={v}" for k, v in summary["sizes"].items()))
    click.echo(f"{'variable':<10} {'axis':<7} {'dtype':<8} {'units':<8} {'chunks':<16} valid")
    for name, v in summary["variables"].items():
        frac = v.get("valid_fraction")
        click.echo(f"{name:<10} {v['axis']:<7} {v['dtype']:<8} {v['units'] or '':<8} "
                   f"{'x'.join(map(str, v['chunks'])):<16} {'' if frac is None else f'{frac:.3f}'}")


@main.command()
@click.option("--workdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to build the demo in (created).")
@click.option("--size", type=click.Choice(["tiny", "default"]), default="default", show_default=True,
              help="tiny: 4 x 4 SMAP cells, 48 days; default: 8 x 8 cells, 2016.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the twin.")
@click.option("--overwrite/--no-overwrite", default=True, show_default=True,
              help="Replace stores left by an earlier demo in the same folder.")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also run the paper's method (rao2022) and score it beside the default one.")
def demo(workdir: Path, size: str, seed: int, overwrite: bool, compare: bool) -> None:
    """Run the whole chain on the embedded twin region under WORKDIR (`dsm run` of its config).

    Writes WORKDIR/config.yaml (reusable by every other command), builds WORKDIR/cube.zarr,
    WORKDIR/truth.zarr and WORKDIR/stations/, trains (WORKDIR/models/), predicts
    (WORKDIR/sm.zarr), exports (WORKDIR/cog/, WORKDIR/stac/), prints the skill of the 1 km
    product against the truth beside the SMAP baselines (WORKDIR/skill.json) and writes the
    validation report (WORKDIR/validation/report.html). --no-overwrite resumes an earlier demo.

    With --compare (default) the paper's method and the default method without rain predictors
    first train and predict into WORKDIR/rao2022/ and WORKDIR/no-rain/ (their own
    WORKDIR/config-<name>.yaml), and the skill table and the report score all of them on the
    same pixel-days.
    """
    from dsm.twin import COMPARISONS, demo_config

    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(demo_config(size, seed, compare=compare), sort_keys=False))
    cfg = config_mod.load(cfg_path)
    others = {}
    for key in COMPARISONS if compare else ():
        path = workdir / f"config-{key}.yaml"
        path.write_text(yaml.safe_dump(demo_config(size, seed, comparison=key), sort_keys=False))
        others[key] = config_mod.load(path)
    if overwrite:
        for c in (cfg, *others.values()):
            with _locked(c):  # never delete the stores of a live run: its lock refuses
                _remove_outputs(c)
    ok = True
    for key, other in others.items():
        click.echo(f"comparison {COMPARISONS[key][0]!r} on the {size} twin region (seed {seed}) in {workdir}/{key}: "
                   "twin, train, predict")
        ok = _run_chain(other, None, break_lock=False, valid_fractions=True) and ok
    click.echo(f"running the {size} twin region (seed {seed}) in {workdir}: twin, train, predict, export, validate")
    ok = _run_chain(cfg, None, break_lock=False, valid_fractions=True) and ok
    click.echo(f"config: {cfg_path}  (rerun any stage with `dsm run {cfg_path}` or `dsm <stage> {cfg_path}`)")
    if not ok:
        sys.exit(1)


def _remove_outputs(cfg: config_mod.Config) -> None:
    """Delete every store a run of ``cfg`` writes (the demo's --overwrite), except the lock,
    which the caller holds."""
    import fsspec

    from dsm.run import records_url
    from dsm.validate import stations_config

    s = cfg.stores
    targets = [s.cube, s.truth, s.stations, s.models, s.output, s.cog, s.stac, str(stations_config(cfg).out),
               records_url(cfg)]
    for url in filter(None, targets):
        fs, path = fsspec.core.url_to_fs(url, **s.storage_options)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _one_line(text: str) -> str:
    """``text`` with its lines joined by "; " (an error message printed as one line)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _print_stage(cfg: config_mod.Config, res: Any, valid_fractions: bool) -> None:
    """What one stage of ``dsm run`` did, as the single-stage commands print it."""
    message = _one_line(res.message)
    click.secho(f"== {res.stage}: {res.status} ({res.seconds:.1f} s){'; ' + message if message else ''}",
                bold=True, fg={"error": "red", "partial": "yellow"}.get(res.status))
    if res.status in ("error", "skipped", "interrupted"):
        return
    if res.stage == "cube":
        from dsm import cube

        _print_summary(cube.summary(cube.open_cube(cfg.stores.cube, cfg.stores.storage_options),
                                    valid_fractions=valid_fractions))
        for name, why in res.failed.items():
            click.secho(f"  FAILED {name}: {why}", fg="red", err=True)
    elif res.stage == "train":
        _print_training(res.report)
    elif res.stage == "predict":
        _print_predict(res.report)
    elif res.stage == "export":
        _print_export(cfg, res.report)
    elif res.stage == "validate":
        click.echo(f"report: {res.summary['report']}")
        if res.report is not None:
            _print_skill(res.report, res.summary["skill"])


def _run_chain(cfg: config_mod.Config, stages: tuple[str, ...] | None, break_lock: bool,
               valid_fractions: bool = False) -> bool:
    """``dsm run`` on the configured cluster, printing each stage; True when complete."""
    from dsm.run import AFTER_PRODUCTS, last_error, run

    with _locked(cfg, break_lock) as lock:  # refuse before starting a cluster
        result = _on_cluster(cfg, lambda client: run(
            cfg, client, stages=stages, lock=lock, progress=_progress,
            on_stage=lambda res: _print_stage(cfg, res, valid_fractions)), err=False)
    click.echo(f"run {result.run_id}: {result.outcome}; record {result.records}/run.json")
    stopped = last_error(result)
    if stopped is not None:
        click.secho(f"error in stage {stopped.stage}: {_one_line(stopped.message)}", fg="red", err=True)
        if stopped.stage in AFTER_PRODUCTS:
            click.echo(f"the products are written; fix the cause and rerun `dsm run --stage {stopped.stage} CONFIG`",
                       err=True)
    return result.outcome == "complete"


@main.command("run")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--stage", "stages", multiple=True, type=click.Choice(config_mod.STAGES),
              help="Run only these stages (repeatable; default run.stages, all five).")
@_break_lock
def run_cmd(config_path: str, stages: tuple[str, ...], break_lock: bool) -> None:
    """Run the whole chain of CONFIG as one resumable job: cube, train, predict, export, validate.

    The cube stage ingests CONFIG's inputs (or builds the twin when CONFIG has twin:); every
    stage skips what an earlier run finished, so a rerun after a crash resumes. The output
    store is locked while the job runs: a second run on it refuses to start. Each run leaves
    run.json and Dask's performance report under run.records. Exit status 1 when a stage
    failed or left failed items; a failed validate stage leaves the products written and the
    run partial.
    """
    cfg = config_mod.load(config_path)
    if not _run_chain(cfg, stages or None, break_lock):
        sys.exit(1)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace existing stores.")
@_break_lock
def twin(config_path: str, overwrite: bool, break_lock: bool) -> None:
    """Build the synthetic twin over CONFIG's region and dates into its stores."""
    from dsm.run import build_twin_stores

    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock):
        build_twin_stores(cfg, overwrite)
    click.echo(f"twin written: cube {cfg.stores.cube}, truth {cfg.stores.truth}, stations {cfg.stores.stations}")


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--report", "report_path", default=None, metavar="URL",
              help="Where to write the JSON report (default: <cube stem>.ingest_report.json beside the cube).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--strict", is_flag=True,
              help="Exit with status 1 when any input file failed (unreadable, corrupt or not downloaded). "
                   "Without it only a failed task (a bug or storage failure writing part of the cube) does; "
                   "failed files are listed in the report either way.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar over the tasks.")
@click.option("--overwrite", is_flag=True, help="Start a new, empty cube in place of the existing one (needed when "
                                                "the inputs' value settings changed).")
@_break_lock
def ingest(config_path: str, report_path: str | None, as_json: bool, strict: bool, progress: bool, overwrite: bool,
           break_lock: bool) -> None:
    """Ingest CONFIG's inputs (SMAP, MODIS, DEM, soil, GeoTIFF series, precipitation) into its cube.

    Creates the cube when missing; runs on the configured cluster; bad files are reported
    with their reason and the rest completes. Exit status 1 when a task failed. A cube made
    with other value settings (scale, offset, nodata, QC, overpass...) is refused, naming them.
    """
    from dsm.ingest.pipeline import run_ingest
    from dsm.ingest.report import format_report

    cfg = config_mod.load(config_path)
    if cfg.inputs is None:
        raise config_mod.ConfigError(f"{config_path} has no 'inputs:' section: nothing to ingest")
    with _locked(cfg, break_lock) as lease:
        report = _on_cluster(cfg, lambda client: run_ingest(cfg, client, progress=progress, report_path=report_path,
                                                            lease=lease, overwrite=overwrite))
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        for line in format_report(report):
            click.echo(line)
        click.echo(f"report: {report['report']}")
    s = report["summary"]
    if s["task_errors"] or (strict and s["failed"]):
        sys.exit(1)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--dest", required=True, type=click.Path(file_okay=False), help="Folder for the granules (DEST/<source>/).")
@click.option("--source", "-s", "sources", multiple=True, help="Only these sources (smap, mod11a1, mcd43, "
              "mod15a2h, mod09a1, mod13a2, dem); default: those in inputs:, else all.")
@click.option("--retries", type=int, default=3, show_default=True, help="Retries per search and per download.")
@click.option("--dry-run", is_flag=True, help="Print the searches (JSON) without contacting Earthdata.")
def fetch(config_path: str, dest: str, sources: tuple[str, ...], retries: int, dry_run: bool) -> None:
    """Search and download CONFIG's granules from NASA Earthdata (needs earthaccess).

    Credentials come from EARTHDATA_USERNAME/EARTHDATA_PASSWORD (or EARTHDATA_TOKEN) or from
    ~/.netrc, never from the command line. Prints an inputs: block for the downloaded files.
    """
    from dsm.ingest import fetch as fetch_mod

    cfg = config_mod.load(config_path)
    if dry_run:
        params = fetch_mod.search_parameters(cfg, sources)
        click.echo(json.dumps([{**p, "source": s} for s, p in zip(fetch_mod.sources_of(cfg, sources), params)], indent=1))
        return
    summary = fetch_mod.fetch(cfg, dest, sources, retries)
    for source, n in summary.found.items():
        click.echo(f"{source:<9} found {n}, have {len(summary.downloaded.get(source, []))}")
    for source, name, reason in summary.failed:
        click.echo(f"  FAILED {source} {name}: {reason}")
    click.echo(yaml.safe_dump({"inputs": fetch_mod.inputs_block(str(Path(dest).resolve()), summary.found)}, sort_keys=False))
    if summary.failed:
        sys.exit(1)


def _run_training(cfg: config_mod.Config, client: Any, force: bool = False,
                  only: tuple[str, ...] = (), lease: Any = None) -> bool:
    """Train, print the per-period table and Table 4; True when nothing failed."""
    from dsm.models.train import train

    report = train(cfg, client, force=force, only=only or None, progress=_progress, lease=lease)
    _print_training(report)
    return not report.failed


def _progress(line: str) -> None:
    click.echo(line, err=True)


def _print_training(report: Any) -> None:
    """The per-period table, Table 4, skipped and failed periods of a TrainReport (method
    rao2022), or the fusion method's models and error model."""
    if report.fusion is not None:
        _print_fusion(report.fusion)
    elif report.method == "rao2022":
        _print_periods(report)
    if report.skipped:
        click.echo(f"skipped (already stored; --force retrains): {', '.join(report.skipped)}")
    for name, cause in report.failed.items():
        click.secho(f"FAILED {name}: {cause}", fg="red", err=True)


def _print_fusion(card: Any) -> None:
    """The fusion card: CV of each model, the chosen hyperparameters and the error model."""
    click.echo(f"fusion method: pooled XGBoost {card.params}")
    click.echo(f"{'model':<16} {'samples':>8} {'rounds':>7} {'CV RMSE':>8}")
    for v in card.variants:
        cv = f"{v.cv_rmse:.4f}" if v.cv_rmse is not None else "—"
        click.echo(f"{v.name:<16} {v.n_train:>8d} {v.n_rounds:>7d} {cv:>8}")
    em = card.error_model
    click.echo(f"SMAP error sd {em['var_smap'] ** 0.5:.4f} ({em['var_smap_method']}, {em['n_triplets']} triplets); "
               f"model error sd {em['var_model'] ** 0.5:.4f}; fusion weight {em['weight']:.2f}; increments carried "
               f"with e-folding {em['decay_days']:.1f} d ({em['decay_method']}) for up to {em['max_carry_days']} d")
    for w in em.get("warnings", []):
        click.secho(f"warning: {w}", fg="yellow")


def _print_periods(report: Any) -> None:
    """The per-period table and Table 4 of the paper's method."""
    with pd_options():
        click.echo("per period:")
        click.echo(report.period_table().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        click.echo("Table 4 (mean over trained periods):")
        click.echo(report.table4().to_string(float_format=lambda v: f"{v:.4f}"))


def pd_options() -> Any:
    """pandas display options for wide tables."""
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", 30)


@main.command("train")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Retrain periods whose model and card are already stored.")
@click.option("--period", "only", multiple=True, metavar="YYYYDDD", help="Only this period (repeatable).")
@_break_lock
def train_cmd(config_path: str, force: bool, only: tuple[str, ...], break_lock: bool) -> None:
    """Train the five models of every 16-day period of CONFIG and store the chosen ones.

    Prints a per-period table (samples, chosen model, train/test R and RMSE, fallback) and the
    Table-4 summary. Exit status 1 when a period failed (the others are still trained).
    """
    cfg = config_mod.load(config_path)
    from dsm.models.train import check_training_config

    check_training_config(cfg)
    with _locked(cfg, break_lock) as lease:
        ok = _on_cluster(cfg, lambda client: _run_training(cfg, client, force=force, only=only, lease=lease))
    if not ok:
        sys.exit(1)


def _run_predict(cfg: config_mod.Config, client: Any, overwrite: bool = False, lease: Any = None) -> bool:
    from dsm.predict import predict

    r = predict(cfg, client, overwrite=overwrite, progress=_progress, lease=lease)
    _print_predict(r)
    return not r.failed


def _print_predict(r: Any) -> None:
    """One line for a PredictReport, then its empty and failed days."""
    rate = r.pixels / r.seconds if r.seconds else 0.0
    click.echo(f"predicted {len(r.predicted)} day(s) ({r.pixels} pixel-days, {rate:,.0f}/s); "
               f"skipped {len(r.skipped)} already done; empty {len(r.empty)}; failed {len(r.failed)}")
    if r.out_of_range:
        from dsm.ranges import describe, merge_counts

        click.secho(f"impossible input values masked on {len(r.out_of_range)} day(s) (origin bit 256 where they "
                    f"changed a pixel): {describe(merge_counts(r.out_of_range.values()), '1 km values')}",
                    fg="yellow", err=True)
    for day, why in r.empty.items():
        click.echo(f"  empty {day}: {why}")
    for day, why in r.failed.items():
        click.secho(f"  FAILED {day}: {why}", fg="red", err=True)


def _run_export(cfg: config_mod.Config, client: Any, force: bool = False, lease: Any = None) -> bool:
    from dsm.export import export

    r = export(cfg, client, force=force, lease=lease)
    _print_export(cfg, r)
    return not r.failed


def _print_export(cfg: config_mod.Config, r: Any) -> None:
    """One line for an ExportReport, then its failed days."""
    click.echo(f"exported {len(r.exported)} COG(s) to {cfg.stores.cog}; skipped {len(r.skipped)}; "
               f"STAC: {r.stac or '-'}")
    for day, why in r.failed.items():
        click.secho(f"  FAILED {day}: {why}", fg="red", err=True)


def _run_skill(cfg: config_mod.Config, dest: str) -> None:
    from dsm.run import twin_skill

    _print_skill(twin_skill(cfg, dest), dest)


def _print_skill(result: dict[str, Any], dest: str) -> None:
    """The twin skill table (see :func:`dsm.skill.format_table`) and where it was written."""
    from dsm.skill import format_table

    click.echo(f"skill of the 1 km maps against the twin's 1 km truth ({result['days']} days; {dest}):")
    click.echo(format_table(result))


@main.command("predict")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace the output store instead of resuming it.")
@_break_lock
def predict_cmd(config_path: str, overwrite: bool, break_lock: bool) -> None:
    """Predict every day of CONFIG into stores.output (skips days already done).

    Exit status 1 when a day failed (the other days are still written).
    """
    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock) as lease:
        ok = _on_cluster(cfg, lambda client: _run_predict(cfg, client, overwrite=overwrite, lease=lease))
    if not ok:
        sys.exit(1)


@main.command("export")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Rewrite COGs already exported.")
@_break_lock
def export_cmd(config_path: str, force: bool, break_lock: bool) -> None:
    """Write one COG per predicted day to stores.cog and the STAC catalog to stores.stac."""
    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock) as lease:
        ok = _on_cluster(cfg, lambda client: _run_export(cfg, client, force=force, lease=lease))
    if not ok:
        sys.exit(1)


@main.command("verify")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--fix", is_flag=True, help="Un-mark what failed (delete damaged product chunks and bad model files, "
                                          "forget bad COGs) so that the next dsm run redoes exactly that.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_break_lock
def verify_cmd(config_path: str, fix: bool, as_json: bool, break_lock: bool) -> None:
    """Check every chunk, model and COG of CONFIG's stores against what was recorded.

    Exit status 1 when anything is damaged, missing or different; each finding names the
    store, the chunk, day, model or COG, and the command that redoes it.
    """
    from contextlib import nullcontext

    from dsm.verify import verify

    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock) if fix else nullcontext():
        report = _on_cluster(cfg, lambda client: verify(cfg, client, fix=fix))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo("checked: " + ", ".join(f"{n} {what}" for what, n in report.checked.items()))
        for finding in report.findings:
            click.echo(finding.line())
        for line in report.fixed:
            click.echo(f"fixed: {line}")
        click.echo("all verified" if report.ok else f"{len(report.findings)} problem(s) found")
    if not report.ok:
        sys.exit(1)


@main.command("status")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(config_path: str, as_json: bool) -> None:
    """Periods trained, days predicted, empty and failed, COGs exported."""
    from dsm.predict import status

    s = status(config_mod.load(config_path))
    if as_json:
        click.echo(json.dumps(s, indent=1))
        return
    for name, what in s["periods"].items():
        click.echo(f"{name}: {what}" if name == "fusion" else f"period {name}: {what}")
    if "output" in s:
        click.echo(f"output: {s['output']}")
    elif "predicted" in s:
        click.echo(f"days: {s['days']}, predicted {s['predicted']}, empty {len(s['empty'])}, "
                   f"failed {len(s['failed'])}, exported {s['exported']}")
        for day, why in {**s["empty"], **s["failed"]}.items():
            click.echo(f"  {day}: {why}")


@main.command("validate")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@_break_lock
def validate_cmd(config_path: str, break_lock: bool) -> None:
    """Score the 1 km product, SMAP 36 km and CONFIG's other products against the in situ stations.

    Writes pairs.csv, scores.csv/json, stations.csv, problems.csv and timeseries/ (pytesmo/QA4SM
    CSVs) under validation.out. Inputs that cannot be used are listed; exit status 1 when
    nothing could be scored.
    """
    from dsm.validate import format_scores, problem_lines, run_validate

    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock):
        result, written = _on_cluster(cfg, lambda client: run_validate(cfg, client))
    for line in problem_lines(result.problems):
        click.secho(f"  left out: {line}", fg="yellow", err=True)
    if result.scores.empty:
        click.secho("nothing could be scored", fg="red", err=True)
        sys.exit(1)
    with pd_options():
        click.echo(format_scores(result.scores))
    click.echo(f"tables: {', '.join(sorted(written.values()))}")


@main.command("report")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@_break_lock
def report_cmd(config_path: str, break_lock: bool) -> None:
    """Validate, analyse and write one self-contained HTML report (validation.report)."""
    from dsm.report import run_report

    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock) as lease:
        path = _on_cluster(cfg, lambda client: run_report(cfg, client, lease=lease))
    click.echo(f"report: {path}")


@main.command("skill")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "dest", default=None, help="Where to write skill.json (default: beside the config).")
def skill_cmd(config_path: str, dest: str | None) -> None:
    """Score the predicted maps against the twin's 1 km truth, beside the SMAP baselines."""
    cfg = config_mod.load(config_path)
    _run_skill(cfg, dest or str(Path(config_path).resolve().parent / "skill.json"))


@main.group("cube")
def cube_group() -> None:
    """Inspect predictor cubes."""


@cube_group.command("info")
@click.argument("url")
@click.option("--storage-option", "-o", multiple=True, metavar="KEY=VALUE",
              help="fsspec option for remote URLs (repeatable), e.g. -o endpoint_url=http://127.0.0.1:8333")
@click.option("--no-valid", is_flag=True, help="Skip the valid fractions (which read the whole cube).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def cube_info(url: str, storage_option: tuple[str, ...], no_valid: bool, as_json: bool) -> None:
    """Variables, axes, chunks, extent and valid fractions of the cube at URL."""
    from dsm import cube

    ds = cube.open_cube(url, _storage_options(storage_option))
    summary = cube.summary(ds, valid_fractions=not no_valid)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


@main.group("deploy")
def deploy_group() -> None:
    """Kubernetes manifests for the dask-kubernetes operator (see deploy/README.md)."""


@deploy_group.command("render")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--image", required=True, help="Image with a pinned tag, e.g. registry.example.org/dsm:0.1.0.")
@click.option("--kind", type=click.Choice(["cluster", "job"]), default="job", show_default=True,
              help="job: ConfigMap + DaskJob running `dsm run`; cluster: interactive DaskCluster.")
@click.option("--name", default=None, help="Resource name (default: dsm-run for a job, dsm for a cluster).")
@click.option("--workers", type=int, default=None, help="Worker replicas (default: cluster.n_workers).")
@click.option("--worker-cpu", type=int, default=2, show_default=True, help="Cores per worker (= --nthreads).")
@click.option("--worker-memory", default="8Gi", show_default=True, help="Memory limit per worker container.")
@click.option("--gpu-workers", type=int, default=1, show_default=True, help="GPU workers when cluster.device is cuda.")
@click.option("--gpu-worker-cpu", type=int, default=4, show_default=True)
@click.option("--gpu-worker-memory", default="16Gi", show_default=True)
@click.option("--gpu-image", default=None, help="Image of GPU pods (default: IMAGE-cuda).")
@click.option("--secret", "secrets", multiple=True, metavar="NAME",
              help="Secret passed to workers and runner with envFrom (repeatable; default dsm-s3-credentials).")
@click.option("--idle-timeout", type=int, default=0, show_default=True,
              help="Seconds idle before the operator deletes a DaskCluster (0: never).")
def deploy_render(config_path: str, image: str, kind: str, name: str | None, workers: int | None,
                  worker_cpu: int, worker_memory: str, gpu_workers: int, gpu_worker_cpu: int,
                  gpu_worker_memory: str, gpu_image: str | None, secrets: tuple[str, ...],
                  idle_timeout: int) -> None:
    """Print the Kubernetes resources for CONFIG as YAML (pipe into `kubectl apply -f -`)."""
    from dsm import deploy

    cfg = config_mod.load(config_path)
    try:
        spec = deploy.DeploySpec(
            image=image, name=name or ("dsm-run" if kind == "job" else "dsm"), workers=workers,
            worker=deploy.Resources(worker_cpu, worker_memory), gpu_workers=gpu_workers,
            gpu_worker=deploy.Resources(gpu_worker_cpu, gpu_worker_memory, gpu=1), gpu_image=gpu_image,
            secrets=secrets or (deploy.CREDENTIALS_SECRET,), idle_timeout=idle_timeout,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(deploy.to_yaml(deploy.render(cfg, spec, kind)), nl=False)  # type: ignore[arg-type]
    notice = deploy.credentials_notice(cfg, spec, config_path)
    if notice:
        click.echo(notice, err=True)


@deploy_group.command("secret")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default="dsm-s3-credentials", show_default=True,
              help="Secret name (the one `render --secret` references).")
def deploy_secret(config_path: str, name: str) -> None:
    """Print a Secret with the credentials in CONFIG's storage_options as AWS_* variables.

    Its output contains the credentials: pipe it into `kubectl apply -f -`, never commit it.
    `render` never writes them; without this command create the Secret with
    `kubectl create secret generic NAME --from-literal=AWS_ACCESS_KEY_ID=...`.
    """
    from dsm import deploy

    doc = deploy.render_secret(config_mod.load(config_path), name)
    click.echo(deploy.to_yaml([doc]), nl=False)


@main.group("config")
def config_group() -> None:
    """Work with configuration files."""


@config_group.command("check")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
def config_check(config_path: str) -> None:
    """Validate CONFIG and print it with defaults filled in and paths resolved.

    Every training grid value (and XGBoost setting) is also tried on its estimator. An
    unknown or misspelt key is named with the keys valid at its place (`dsm config schema`
    describes them all).
    """
    cfg = config_mod.load(config_path)
    from dsm.models.estimators import check_training_grids

    check_training_grids(cfg.training)
    click.echo(config_mod.dump(cfg), nl=False)
    r = cfg.grid_region
    click.echo(f"# region: {r.nrows} x {r.ncols} SMAP cells, 1 km {r.fine_shape[0]} x {r.fine_shape[1]}")


@config_group.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the configuration: every section and key, its type, default
    and description (for editors' YAML validation, e.g. yaml-language-server)."""
    from dsm.config_help import schema

    click.echo(json.dumps(schema(), indent=1))
