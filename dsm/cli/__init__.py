"""The ``dsm`` command line: the ``main`` group, with one module a command group.

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

Modules
-------
=====================  ===========================================================
:mod:`.chain`          ``dsm demo``, ``dsm run``, ``dsm twin``
:mod:`.inputs`         ``dsm ingest``, ``dsm fetch``
:mod:`.stages`         ``dsm train``, ``predict``, ``export``, ``validate``, ``report``, ``skill``
:mod:`.stores`         ``dsm status``, ``dsm verify``, ``dsm cube info``
:mod:`.configure`      ``dsm config ...``, ``dsm deploy ...``
:mod:`.common`         a command on the configured cluster, under the output store's lock
:mod:`.printing`       what a stage did, as the commands print it
:mod:`.bars`           the progress bars of the long stages (stderr; ``-q`` none, ``-v`` every item)
=====================  ===========================================================
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from dsm import __version__
from dsm.cli.chain import demo, run_cmd, twin
from dsm.cli.configure import config_group, deploy_group
from dsm.cli.inputs import earthdata_credentials, fetch, ingest
from dsm.cli.stages import export_cmd, predict_cmd, report_cmd, skill_cmd, train_cmd, validate_cmd
from dsm.cli.stores import cube_group, status_cmd, verify_cmd
from dsm.errors import DsmError


def _fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns dsm's own errors into one clear line and exit status 2, and SIGTERM/SIGINT (after
    the lock was released) into one line and exit status 128 + the signal's number."""

    def invoke(self, ctx: click.Context) -> Any:
        from dsm.interrupt import RunInterrupted

        try:
            return super().invoke(ctx)
        except DsmError as exc:
            _fail(exc)
        except RunInterrupted as exc:
            click.secho(f"interrupted: {exc}; the lock was released and what was written is recorded: "
                        "rerun the command to resume", fg="yellow", err=True)
            sys.exit(128 + exc.signum)


@click.group(cls=_Group)
@click.version_option(__version__, "-V", "--version", prog_name="dsm")
@click.option("-v", "--verbose", count=True,
              help="More output: -v prints every item's progress line (period, time chunk, file) and info logs, "
                   "-vv debug logs.")
@click.option("-q", "--quiet", is_flag=True,
              help="Only results and errors: no progress bars, notes or cluster line, no warnings.")
def main(verbose: int, quiet: bool) -> None:
    """dsm: daily 1 km soil moisture from SMAP, MODIS, terrain and soil, on Dask."""
    level = logging.ERROR if quiet else logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # distributed configures its own loggers at INFO when first imported: import it now, then
    # make its loggers follow the command's verbosity
    import distributed  # noqa: F401

    for name in ("distributed", "dask"):
        logging.getLogger(name).setLevel(level)


for _command in (demo, run_cmd, twin, ingest, fetch, earthdata_credentials, train_cmd, predict_cmd, export_cmd,
                 verify_cmd, status_cmd, validate_cmd, report_cmd, skill_cmd, cube_group, deploy_group, config_group):
    main.add_command(_command)
