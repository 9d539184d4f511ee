"""The commands that run the whole chain: ``dsm demo``, ``dsm run`` and ``dsm twin``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from dsm import config as config_mod
from dsm.cli.bars import Bars, bars, quiet
from dsm.cli.common import _break_lock, _locked, _on_cluster
from dsm.cli.printing import _one_line, _print_export, _print_predict, _print_skill, _print_summary, _print_training


@click.command()
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
    summaries: dict[tuple[str, Any], dict[str, Any]] = {}  # the chains share one cube: its summary made once

    def chains(client: Any) -> bool:
        ok = True
        for key, other in others.items():
            click.echo(f"comparison {COMPARISONS[key][0]!r} on the {size} twin region (seed {seed}) in "
                       f"{workdir}/{key}: twin, train, predict")
            ok = _run_chain(other, None, break_lock=False, valid_fractions=True, client=client,
                            summaries=summaries) and ok
        click.echo(f"running the {size} twin region (seed {seed}) in {workdir}: twin, train, predict, export, validate")
        return _run_chain(cfg, None, break_lock=False, valid_fractions=True, client=client,
                          summaries=summaries) and ok

    ok = _on_cluster(cfg, chains, err=False)  # one cluster for all the chains: started once, workers warm
    click.echo(f"config: {cfg_path}  (rerun any stage with `dsm run {cfg_path}` or `dsm <stage> {cfg_path}`)")
    if not ok:
        sys.exit(1)


def _remove_outputs(cfg: config_mod.Config) -> None:
    """Delete every store a run of ``cfg`` writes (the demo's --overwrite), except the lock,
    which the caller holds."""
    from dsm.chain import records_ref
    from dsm.stages.validate import stations_config

    s = cfg.stores
    urls = [s.cube, s.truth, s.stations, s.models, s.output, s.cog, s.stac, str(stations_config(cfg).out)]
    for ref in [*(s.at(url) for url in urls if url), records_ref(cfg)]:
        fs, path = ref.fs()
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _print_stage(cfg: config_mod.Config, res: Any, valid_fractions: bool,
                 summaries: dict[tuple[str, Any], dict[str, Any]] | None = None) -> None:
    """What one stage of ``dsm run`` did, as the single-stage commands print it; ``summaries``
    keeps the cube summaries made, by cube and revision, so a cube unchanged since is not read
    again for its valid fractions."""
    message = _one_line(res.message)
    click.secho(f"== {res.stage}: {res.status} ({res.seconds:.1f} s){'; ' + message if message else ''}",
                bold=True, fg={"error": "red", "partial": "yellow"}.get(res.status))
    if res.status in ("error", "skipped", "interrupted"):
        return
    if res.stage == "cube":
        from dsm import cube

        _print_summary(_cube_summary(cube.open_cube(cfg.stores.ref("cube")), str(cfg.stores.ref("cube")),
                                     valid_fractions, summaries))
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


def _cube_summary(ds: Any, name: str, valid_fractions: bool,
                  summaries: dict[tuple[str, Any], dict[str, Any]] | None) -> dict[str, Any]:
    """:func:`dsm.cube.summary` of the cube ``ds`` stored at ``name``, taken from ``summaries``
    when that cube's revision (:data:`dsm.store.REVISION_ATTR`, counted up by every write) was
    summarised before, and kept there."""
    from dsm import cube, store

    key = (name, ds.attrs.get(store.REVISION_ATTR))
    if summaries is not None and valid_fractions and key in summaries:
        return summaries[key]
    out = cube.summary(ds, valid_fractions=valid_fractions)
    if summaries is not None and valid_fractions:
        summaries[key] = out
    return out


def _run_chain(cfg: config_mod.Config, stages: tuple[str, ...] | None, break_lock: bool,
               valid_fractions: bool = False, client: Any = None,
               summaries: dict[tuple[str, Any], dict[str, Any]] | None = None) -> bool:
    """``dsm run`` on ``client`` (default: the configured cluster, started for it), printing
    each stage; True when complete. ``summaries``: see :func:`_print_stage`."""
    from dsm.chain import AFTER_PRODUCTS, last_error, run

    def on_stage(progress: Bars, res: Any) -> None:
        progress.close()  # the stage's bar ends before its summary
        _print_stage(cfg, res, valid_fractions, summaries)

    with _locked(cfg, break_lock) as lock, bars() as progress:  # refuse before starting a cluster
        def chain(c: Any) -> Any:
            return run(cfg, c, stages=stages, lock=lock, progress=progress,
                       on_stage=lambda res: on_stage(progress, res))

        result = chain(client) if client is not None else _on_cluster(cfg, chain, err=False)
    click.echo(f"run {result.run_id}: {result.outcome}; record {result.records}/run.json")
    stopped = last_error(result)
    if stopped is not None:
        click.secho(f"error in stage {stopped.stage}: {_one_line(stopped.message)}", fg="red", err=True)
        if stopped.stage in AFTER_PRODUCTS:
            click.echo(f"the products are written; fix the cause and rerun `dsm run --stage {stopped.stage} CONFIG`",
                       err=True)
    return result.outcome == "complete"


@click.command("run")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--stage", "stages", multiple=True, type=click.Choice(config_mod.STAGES),
              help="Run only these stages (repeatable; default run.stages, all five).")
@click.option("--until", metavar="DATE", default=None,
              help="Run to DATE (YYYY-MM-DD or 'today', UTC) instead of dates.end: stores made to an earlier "
                   "end are extended (new days only), never shortened.")
@_break_lock
def run_cmd(config_path: str, stages: tuple[str, ...], until: str | None, break_lock: bool) -> None:
    """Run the whole chain of CONFIG as one resumable job: cube, train, predict, export, validate.

    --until DATE (or dates.end: today in CONFIG) extends the stores of an earlier run to DATE:
    the cube, the truth and the products grow along time (no chunk rewritten but the last
    partial one), the new days are ingested (or simulated), rao2022 retrains only the periods
    whose days changed (and predicts their days again), the fusion method keeps its model
    (dsm train CONFIG --force retrains it), and the new days are predicted, exported and added
    to the STAC collection. An --until before the output store's end is an error; so is one
    with other settings than those that made the stores (the keys are named). Rerunning the
    same --until does nothing new.

    The cube stage ingests CONFIG's inputs (or builds the twin when CONFIG has twin:); every
    stage skips what an earlier run finished, so a rerun after a crash resumes. The output
    store is locked while the job runs: a second run on it refuses to start. Each run leaves
    run.json and Dask's performance report under run.records. Exit status 1 when a stage
    failed or left failed items; a failed validate stage leaves the products written and the
    run partial.
    """
    cfg = config_mod.load(config_path)
    if until is not None:
        from dsm.extend import parse_until, with_end

        cfg = with_end(cfg, parse_until(until))
    if not _run_chain(cfg, stages or None, break_lock):
        sys.exit(1)


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace existing stores.")
@_break_lock
def twin(config_path: str, overwrite: bool, break_lock: bool) -> None:
    """Build the synthetic twin over CONFIG's region and dates into its stores."""
    from dsm.chain import build_twin_stores

    cfg = config_mod.load(config_path)
    with _locked(cfg, break_lock):
        build_twin_stores(cfg, overwrite, progress=not quiet())
    click.echo(f"twin written: cube {cfg.stores.cube}, truth {cfg.stores.truth}, stations {cfg.stores.stations}")
