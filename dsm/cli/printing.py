"""How the commands print what a stage did: cube summaries, training, predict, export and skill reports."""

from __future__ import annotations

from typing import Any

import click

from dsm import config as config_mod


def _print_summary(summary: dict[str, Any]) -> None:
    r = summary["region"]
    click.echo(f"region  rows {r['row0']}+{r['nrows']}, cols {r['col0']}+{r['ncols']} (36 km cells); "
               f"1 km {r['fine_shape'][0]} x {r['fine_shape'][1]}")
    lo0, la0, lo1, la1 = r["lonlat_bounds"]
    click.echo(f"extent  lon {lo0:.4f} .. {lo1:.4f}, lat {la0:.4f} .. {la1:.4f}  (EPSG:6933 EASE-Grid 2.0)")
    click.echo(f"dates   {summary['dates'][0]} .. {summary['dates'][1]}")
    click.echo("axes    " + ", ".join(f"{k}={v}" for k, v in summary["sizes"].items()))
    fractions = any(v.get("valid_fraction") is not None for v in summary["variables"].values())
    click.echo(f"{'variable':<10} {'axis':<7} {'dtype':<8} {'units':<8} {'chunks':<16}" + (" valid" if fractions else ""))
    for name, v in summary["variables"].items():
        row = f"{name:<10} {v['axis']:<7} {v['dtype']:<8} {v['units'] or '':<8} {'x'.join(map(str, v['chunks'])):<16}"
        frac = v.get("valid_fraction")
        click.echo(row.rstrip() if frac is None else f"{row} {frac:.3f}")
    if not fractions:
        click.echo("(valid fractions not computed: `dsm cube info URL` reads the whole cube for them)")


def _one_line(text: str) -> str:
    """``text`` with its lines joined by "; " (an error message printed as one line)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _print_training(report: Any) -> None:
    """The per-period table, Table 4, skipped and failed periods of a TrainReport (method
    rao2022), or the fusion method's models and error model."""
    if report.fusion is not None:
        _print_fusion(report.fusion)
    elif report.method == "rao2022":
        _print_periods(report)
    click.echo(f"train: {len(report.trained)} trained, {len(report.reused)} reusing another period's model, "
               f"{len(report.skipped)} already stored, {len(report.failed)} failed")
    if report.skipped:
        click.echo(f"skipped (already stored; --force retrains): {', '.join(report.skipped)}")
    retrained = {k: w for k, w in getattr(report, "windows", {}).items() if k in report.trained and w}
    if retrained:
        click.echo("trained on: " + ", ".join(f"{k} {w[0]}..{w[1]}" for k, w in sorted(retrained.items())))
    if getattr(report, "kept", ""):
        click.echo(report.kept)
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


def _print_predict(r: Any) -> None:
    """One line for a PredictReport, then its empty and failed days."""
    rate = r.pixels / r.seconds if r.seconds else 0.0
    click.echo(f"predicted {len(r.predicted)} day(s) ({r.pixels} pixel-days, {rate:,.0f}/s); "
               f"skipped {len(r.skipped)} already done; empty {len(r.empty)}; failed {len(r.failed)}")
    if r.phases:
        from dsm.stages.predict import PHASES

        click.echo("time: " + ", ".join(f"{PHASES[k]} {v:.1f} s" for k, v in r.phases.items()))
    if r.out_of_range:
        from dsm.ranges import describe, merge_counts

        click.secho(f"impossible input values masked on {len(r.out_of_range)} day(s) (origin bit 256 where they "
                    f"changed a pixel): {describe(merge_counts(r.out_of_range.values()), '1 km values')}",
                    fg="yellow", err=True)
    for day, why in r.empty.items():
        click.echo(f"  empty {day}: {why}")
    for day, why in r.failed.items():
        click.secho(f"  FAILED {day}: {why}", fg="red", err=True)


def _print_export(cfg: config_mod.Config, r: Any) -> None:
    """One line per format an ExportReport wrote, then its failed days and files."""
    if r.exported or r.skipped or r.failed or r.stac:
        click.echo(f"exported {len(r.exported)} day(s) of COGs to {cfg.stores.cog}; skipped {len(r.skipped)}; "
                   f"STAC: {r.stac or '-'}")
    netcdf = getattr(r, "netcdf", [])
    if netcdf or getattr(r, "netcdf_skipped", []) or getattr(r, "netcdf_failed", {}):
        where = netcdf[0].rsplit("/", 1)[0] if netcdf else "-"
        click.echo(f"wrote {len(netcdf)} netCDF file(s) to {where}; up to date {len(r.netcdf_skipped)}")
    for day, why in r.failed.items():
        click.secho(f"  FAILED {day}: {why}", fg="red", err=True)
    for label, why in getattr(r, "netcdf_failed", {}).items():
        click.secho(f"  FAILED netCDF {label}: {why}", fg="red", err=True)


def _print_skill(result: dict[str, Any], dest: str) -> None:
    """The twin skill table (see :func:`dsm.skill.format_table`) and where it was written."""
    from dsm.skill import format_table

    click.echo(f"skill of the 1 km maps against the twin's 1 km truth ({result['days']} days; {dest}):")
    click.echo(format_table(result))
