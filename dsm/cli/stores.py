"""The commands that inspect the stores: ``dsm status``, ``dsm verify`` and ``dsm cube info``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import yaml

from dsm import config as config_mod
from dsm.cli.common import _break_lock, _locked, _on_cluster
from dsm.cli.printing import _print_summary


@click.command("verify")
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


@click.command("status")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(config_path: str, as_json: bool) -> None:
    """Periods trained, days predicted, empty and failed, COGs exported."""
    from dsm.stages.predict import status

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


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """The fsspec options of ``--storage-option KEY=VALUE`` pairs (values read as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--storage-option")
        out[key] = yaml.safe_load(value)
    return out


@click.group("cube")
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
    from dsm.storeref import StoreRef

    ds = cube.open_cube(StoreRef(url, _parse_options(storage_option)))
    summary = cube.summary(ds, valid_fractions=not no_valid)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
