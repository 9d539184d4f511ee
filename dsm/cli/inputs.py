"""The commands that bring the inputs in: ``dsm ingest`` (files -> cube) and ``dsm fetch`` (NASA Earthdata)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from dsm import config as config_mod
from dsm.cli.bars import quiet
from dsm.cli.common import _break_lock, _locked, _on_cluster


@click.command()
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
        report = _on_cluster(cfg, lambda client: run_ingest(cfg, client, progress=progress and not quiet(), report_path=report_path,
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


@click.command()
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
        searches = [{**p, "source": s} for s, p in zip(fetch_mod.sources_of(cfg, sources), params, strict=True)]
        click.echo(json.dumps(searches, indent=1))
        return
    summary = fetch_mod.fetch(cfg, dest, sources, retries, progress=not quiet())
    for source, n in summary.found.items():
        click.echo(f"{source:<9} found {n}, have {len(summary.downloaded.get(source, []))}")
    for source, name, reason in summary.failed:
        click.echo(f"  FAILED {source} {name}: {reason}")
    click.echo(yaml.safe_dump({"inputs": fetch_mod.inputs_block(str(Path(dest).resolve()), summary.found)}, sort_keys=False))
    if summary.failed:
        sys.exit(1)
