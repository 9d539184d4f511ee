"""The ``dsm`` command line.

Commands
--------
``dsm demo --workdir DIR``     build the twin region under DIR and print its summary
``dsm twin CONFIG``            build the twin over a configuration's region, dates and stores
``dsm cube info URL``          variables, axes, chunks, extent and valid fractions of a cube
``dsm config check CONFIG``    validate a configuration file and print it resolved
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from dsm import config as config_mod
from dsm.errors import DsmError


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


class _Group(click.Group):
    """Turns dsm's own errors into one clear line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DsmError as exc:
            _fail(exc)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """dsm: daily 1 km soil moisture from SMAP, MODIS, terrain and soil, on Dask."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # distributed configures its own loggers at INFO; follow the command's verbosity instead
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
def demo(workdir: Path, size: str, seed: int, overwrite: bool) -> None:
    """Build the embedded twin region under WORKDIR and print its summary.

    Leaves WORKDIR/config.yaml (reusable by every other command), WORKDIR/cube.zarr,
    WORKDIR/truth.zarr and WORKDIR/stations/.
    """
    from dsm import cluster, cube
    from dsm.synthetic import TwinSpec

    spec = TwinSpec.of_size(size, seed)
    workdir.mkdir(parents=True, exist_ok=True)
    r = spec.region
    raw = {
        "region": {"cells": [r.row0, r.col0, r.nrows, r.ncols]},
        "dates": {"start": spec.start.isoformat(), "end": spec.end.isoformat()},
        "stores": {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations"},
        "cluster": {"n_workers": 2, "threads_per_worker": 1},
        "chunks": {"space": 144, "time": 8},
        "twin": {"seed": seed},
    }
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = config_mod.load(cfg_path)
    click.echo(f"building the {size} twin region (seed {seed}) in {workdir}")
    _build_twin(cfg, overwrite)
    with cluster.connect(cfg.cluster) as client:
        click.echo(cluster.describe(client))
        _print_summary(cube.summary(cube.open_cube(cfg.stores.cube)))
    click.echo(f"config: {cfg_path}")


def _build_twin(cfg: config_mod.Config, overwrite: bool) -> None:
    from dsm.synthetic import TwinSpec
    from dsm.twin import TwinStores, build_twin

    if cfg.stores.truth is None or cfg.stores.stations is None:
        raise config_mod.ConfigError("stores.truth and stores.stations must be set to build the twin")
    t = cfg.twin or config_mod.TwinConfig()
    spec = TwinSpec(cfg.grid_region, cfg.dates.start, cfg.dates.end, t.seed, t.n_insitu, t.n_weather)
    stores = TwinStores(cfg.stores.cube, cfg.stores.truth, cfg.stores.stations)
    build_twin(stores, spec, cfg.chunks.space, cfg.chunks.time, cfg.stores.storage_options, overwrite)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace existing stores.")
def twin(config_path: str, overwrite: bool) -> None:
    """Build the synthetic twin over CONFIG's region and dates into its stores."""
    cfg = config_mod.load(config_path)
    _build_twin(cfg, overwrite)
    click.echo(f"twin written: cube {cfg.stores.cube}, truth {cfg.stores.truth}, stations {cfg.stores.stations}")


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


@main.group("config")
def config_group() -> None:
    """Work with configuration files."""


@config_group.command("check")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
def config_check(config_path: str) -> None:
    """Validate CONFIG and print it with defaults filled in and paths resolved."""
    cfg = config_mod.load(config_path)
    click.echo(config_mod.dump(cfg), nl=False)
    r = cfg.grid_region
    click.echo(f"# region: {r.nrows} x {r.ncols} SMAP cells, 1 km {r.fine_shape[0]} x {r.fine_shape[1]}")
