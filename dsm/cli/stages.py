"""The single-stage commands: ``dsm train``, ``predict``, ``export``, ``validate``, ``report`` and ``skill``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from dsm import config as config_mod
from dsm.cli.bars import bars
from dsm.cli.common import _break_lock, _locked, _on_cluster, _run_locked
from dsm.cli.printing import _print_export, _print_predict, _print_skill, _print_training, pd_options


def _run_training(cfg: config_mod.Config, client: Any, force: bool = False,
                  only: tuple[str, ...] = (), lease: Any = None) -> bool:
    """Train, print the per-period table and Table 4; True when nothing failed."""
    from dsm.stages.train import train

    with bars() as progress:
        report = train(cfg, client, force=force, only=only or None, progress=progress, lease=lease)
    _print_training(report)
    return not report.failed


@click.command("train")
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
    from dsm.stages.train import check_training_config

    check_training_config(cfg)
    _run_locked(cfg, break_lock, lambda client, lease: _run_training(cfg, client, force=force, only=only, lease=lease))


def _run_predict(cfg: config_mod.Config, client: Any, overwrite: bool = False, lease: Any = None) -> bool:
    from dsm.stages.predict import predict

    with bars() as progress:
        r = predict(cfg, client, overwrite=overwrite, progress=progress, lease=lease)
    _print_predict(r)
    return not r.failed


def _run_export(cfg: config_mod.Config, client: Any, force: bool = False, lease: Any = None,
                formats: tuple[str, ...] = ()) -> bool:
    from dsm.chain import export_steps
    from dsm.stages.export import export

    formats = formats or cfg.output.formats
    command = " ".join(["dsm", "export", *sys.argv[2:]]) if sys.argv[1:2] == ["export"] else "dsm export"
    with bars() as progress:
        steps = export_steps(cfg, progress, force) if "cog" in formats else None  # one step per COG day
        r = export(cfg, client, force=force, progress=steps, lease=lease, formats=formats, command=command)
    _print_export(cfg, r)
    return not r.failed and not r.netcdf_failed


def _run_skill(cfg: config_mod.Config, dest: str) -> None:
    """The twin skill of ``cfg`` written to ``dest`` (a path or URL, under the stores' options)."""
    from dsm.chain import twin_skill

    _print_skill(_on_cluster(cfg, lambda client: twin_skill(cfg, cfg.stores.at(dest), client)), dest)


def _report_on(cfg: config_mod.Config, client: Any, lease: Any) -> str:
    """Validate and report on ``client``: on the twin, the skill is computed once (on the workers)
    and shared by the validation's period table and the report."""
    from dsm.errors import DsmError
    from dsm.skill import twin_skill_of
    from dsm.stages.report import run_report
    from dsm.stages.validate import run_validate

    twin = None
    if cfg.stores.truth and cfg.stores.output:
        try:
            twin = twin_skill_of(cfg, client)
        except (DsmError, ValueError):  # the report names the problem (it tries again and fails)
            twin = None
    return run_report(cfg, client, run_validate(cfg, client, twin=twin), twin=twin, lease=lease)


@click.command("predict")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace the output store instead of resuming it.")
@_break_lock
def predict_cmd(config_path: str, overwrite: bool, break_lock: bool) -> None:
    """Predict every day of CONFIG into stores.output (skips days already done).

    Exit status 1 when a day failed (the other days are still written).
    """
    cfg = config_mod.load(config_path)
    _run_locked(cfg, break_lock, lambda client, lease: _run_predict(cfg, client, overwrite=overwrite, lease=lease))


@click.command("export")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Rewrite the files already exported.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["cog", "netcdf"]),
              help="What to write (repeatable); default: output.formats of CONFIG (cog).")
@_break_lock
def export_cmd(config_path: str, force: bool, formats: tuple[str, ...], break_lock: bool) -> None:
    """Write the predicted days: COGs (sm, sm_unc, sm_origin per day) to stores.cog with the STAC
    catalog in stores.stac, and/or CF/ACDD netCDF4 files (one per year or month) to stores.netcdf.

    Exit status 1 when a day or a file failed (the others are still written).
    """
    cfg = config_mod.load(config_path)
    _run_locked(cfg, break_lock,
                lambda client, lease: _run_export(cfg, client, force=force, lease=lease, formats=formats))


@click.command("validate")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@_break_lock
def validate_cmd(config_path: str, break_lock: bool) -> None:
    """Score the 1 km product, SMAP 36 km and CONFIG's other products against the in situ stations.

    Writes pairs.csv, scores.csv/json, stations.csv, problems.csv and timeseries/ (pytesmo/QA4SM
    CSVs) under validation.out. Inputs that cannot be used are listed; exit status 1 when
    nothing could be scored.
    """
    from dsm.stages.validate import format_scores, problem_lines, run_validate

    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock), bars() as progress:
        result, written = _on_cluster(cfg, lambda client: run_validate(cfg, client, progress=progress))
    for line in problem_lines(result.problems):
        click.secho(f"  left out: {line}", fg="yellow", err=True)
    if result.scores.empty:
        click.secho("nothing could be scored", fg="red", err=True)
        sys.exit(1)
    with pd_options():
        click.echo(format_scores(result.scores))
    click.echo(f"tables: {', '.join(sorted(written.values()))}")


@click.command("report")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@_break_lock
def report_cmd(config_path: str, break_lock: bool) -> None:
    """Validate, analyse and write one self-contained HTML report (validation.report)."""
    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock) as lease:
        path = _on_cluster(cfg, lambda client: _report_on(cfg, client, lease))
    click.echo(f"report: {path}")


@click.command("skill")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "dest", default=None, help="Where to write skill.json (default: beside the config).")
def skill_cmd(config_path: str, dest: str | None) -> None:
    """Score the predicted maps against the twin's 1 km truth, beside the SMAP baselines."""
    cfg = config_mod.load(config_path)
    _run_skill(cfg, dest or str(Path(config_path).resolve().parent / "skill.json"))
