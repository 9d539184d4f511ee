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
    from dsm.ingest.report import format_report
    from dsm.stages.ingest import run_ingest

    cfg = config_mod.load(config_path)
    if cfg.inputs is None:
        raise config_mod.ConfigError(f"{config_path} has no 'inputs:' section: nothing to ingest")
    with _locked(cfg, break_lock) as lease:
        report_at = cfg.stores.at(report_path) if report_path else None
        report = _on_cluster(cfg, lambda client: run_ingest(cfg, client, progress=progress and not quiet(), report_at=report_at,
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
@click.option("--dest", default=None, type=click.Path(file_okay=False),
              help="Folder for the granules (DEST/<source>/); needed unless --in-place or --dry-run.")
@click.option("--source", "-s", "sources", multiple=True, help="Only these sources (smap, mod11a1, mcd43, "
              "mod15a2h, mod09a1, mod13a2, dem); default: those in inputs:, else all.")
@click.option("--retries", type=int, default=3, show_default=True, help="Retries per search and per download.")
@click.option("--dry-run", is_flag=True, help="Print the searches (JSON) without contacting Earthdata.")
@click.option("--in-place", is_flag=True, help="Download nothing: write a copy of CONFIG with inputs: pointing at the granules' "
              "s3:// URLs in Earthdata Cloud (read from AWS us-west-2 only) to --output, and print them.")
@click.option("--output", default=None, type=click.Path(dir_okay=False),
              help="With --in-place: the configuration to write (default CONFIG's folder/<stem>.earthdata.yaml).")
@click.option("--overwrite", is_flag=True, help="With --in-place: replace --output when it exists.")
def fetch(config_path: str, dest: str | None, sources: tuple[str, ...], retries: int, dry_run: bool, in_place: bool,
          output: str | None, overwrite: bool) -> None:
    """Search and download CONFIG's granules from NASA Earthdata (needs earthaccess).

    Credentials come from EARTHDATA_USERNAME/EARTHDATA_PASSWORD (or EARTHDATA_TOKEN) or from
    ~/.netrc, never from the command line. Prints an inputs: block for the downloaded files.
    With --in-place, nothing is downloaded: a copy of CONFIG whose inputs: are the s3:// URLs
    is written beside it (CONFIG is never changed), with an AWS profile per DAAC whose
    credential_process is `dsm earthdata-credentials PROVIDER` (temporary credentials).
    """
    from dsm.ingest import fetch as fetch_mod

    cfg = config_mod.load(config_path)
    if dry_run:
        params = fetch_mod.search_parameters(cfg, sources)
        searches = [{**p, "source": s} for s, p in zip(fetch_mod.sources_of(cfg, sources), params, strict=True)]
        click.echo(json.dumps(searches, indent=1))
        return
    if in_place:
        if dest is not None:
            raise click.UsageError("--dest is where downloads go; --in-place downloads nothing: leave one out")
        _fetch_in_place(cfg, config_path, sources, retries, output, overwrite)
        return
    if dest is None:
        raise click.UsageError("give --dest DIR (where the granules go), or --in-place to read them in Earthdata Cloud")
    summary = fetch_mod.fetch(cfg, dest, sources, retries, progress=not quiet())
    for source, n in summary.found.items():
        click.echo(f"{source:<9} found {n}, have {len(summary.downloaded.get(source, []))}")
    for source, name, reason in summary.failed:
        click.echo(f"  FAILED {source} {name}: {reason}")
    click.echo(yaml.safe_dump({"inputs": fetch_mod.inputs_block(str(Path(dest).resolve()), summary.found)}, sort_keys=False))
    if summary.failed:
        sys.exit(1)


def _fetch_in_place(cfg: config_mod.Config, config_path: str, sources: tuple[str, ...], retries: int,
                    output: str | None, overwrite: bool) -> None:
    from dsm.ingest import fetch_cloud

    out = fetch_cloud.output_path(config_path, output)  # refuse a bad --output before any network
    if out.exists() and not overwrite:
        raise config_mod.ConfigError(f"{out} exists: add --overwrite to replace it (CONFIG itself is never changed)")
    summary = fetch_cloud.find_in_place(cfg, sources, retries)
    for source, got in summary.sources.items():
        click.echo(f"# {source}: {len(got.urls)} granules, provider {got.provider}, profile "
                   f"{fetch_cloud.profile_name(got.provider)}")
    for source, why in summary.skipped.items():
        click.echo(f"# {source}: not written: {why}")
    for source, reason in summary.failed:
        click.echo(f"# FAILED {source}: {reason}")
    if summary.sources:
        block = fetch_cloud.cloud_config({}, summary)["inputs"]
        click.echo(yaml.safe_dump({"inputs": block}, sort_keys=False, width=120), nl=False)
        click.echo("# temporary S3 credentials (1 h, usable from us-west-2 only), per provider:")
        for p in sorted({g.provider for g in summary.sources.values()}):
            click.echo(f"#   earthaccess.login(); earthaccess.get_s3_credentials(provider={p!r})")
        click.echo("# ~/.aws/config on the client and on every Dask worker:")
        for line in fetch_cloud.aws_profile_lines(g.provider for g in summary.sources.values()):
            click.echo(line)
    path, _ = fetch_cloud.write_cloud_config(config_path, summary, output, overwrite)
    click.echo(f"wrote {path} ({'replaced' if overwrite else 'new'}; {config_path} unchanged): dsm run {path}")
    if summary.failed:
        sys.exit(1)


@click.command("earthdata-credentials")
@click.argument("provider")
def earthdata_credentials(provider: str) -> None:
    """Print temporary S3 credentials of an Earthdata Cloud PROVIDER (NSIDC_CPRD, LPCLOUD...) as the
    JSON of an AWS credential_process, for ~/.aws/config:

    \b
      [profile earthdata-nsidc-cprd]
      credential_process = dsm earthdata-credentials NSIDC_CPRD

    The output is a secret: it is meant for botocore, which runs this again before the
    credentials expire (1 h). Needs an Earthdata login (EARTHDATA_USERNAME/EARTHDATA_PASSWORD
    or ~/.netrc) and works only from AWS us-west-2.
    """
    from dsm.ingest import fetch_cloud

    click.echo(json.dumps(fetch_cloud.s3_credentials(provider)))
