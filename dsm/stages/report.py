"""The validation and analysis report: one self-contained HTML file (``dsm report CONFIG``).

:func:`run_report` takes the in situ validation (:func:`dsm.stages.validate.run_validate`, run first
by the caller), reads the model cards, brings the mean maps up to date on the cluster
(:func:`dsm.mean_maps.means_update`: the months, years and days of the year whose days changed,
while it draws the sections before them), the partial correlations at the weather stations and, on
the twin, the skill against the truth, draws the figures (:mod:`dsm.figures`) and writes
``report.html``: figures embedded as base64 PNG, tables as HTML, inline CSS, no script and no
external link, so it opens offline.

Every figure is a ``<figure data-figure="KEY">`` and every table a ``<div data-table="KEY">``,
KEY from :data:`FIGURES` and :data:`TABLES`; a part that cannot be made (no model store, no
weather stations ...) says why in its place.

The report prints to PDF whole (no scroll boxes; a print style sheet keeps figures on one page
and repeats table headers). Every bias in it is map minus reference (:data:`BIAS_STATEMENT`,
said once at the top; the bias columns are headed :data:`BIAS_HEADER`): the station scores are
converted for display (:func:`dsm.station_scores.map_minus_reference`) while ``scores.csv``
and ``scores.json`` keep ``validation.bias_convention`` (named in their ``bias_convention``
column/key); the twin skill is map minus truth already. Maps keep EASE-Grid 2.0 x/y with a
lat/lon graticule (:func:`dsm.figures.graticule`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client, Future
from matplotlib.figure import Figure

from dsm import analysis, figures, files, ledger, mean_maps, products
from dsm.config import Config
from dsm.errors import DsmError, GridError
from dsm.grid import lonlat_to_xy
from dsm.models.period_cards import PeriodCard, PooledCard, read_period_card, read_pooled_card
from dsm.models.report import period_table, table4
from dsm.report_html import BIAS_HEADER, BIAS_STATEMENT, FIGURES, TABLES, FigureDir, Report, bias_headers
from dsm.runlock import Lease
from dsm.skill import twin_skill_of
from dsm.station_sampling import PRODUCT_1KM, sample_store
from dsm.station_scores import ValidationResult, map_minus_reference
from dsm.stations import locate, stations_config, weather_table
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)


def model_cards(models: StoreRef | None) -> tuple[list[PeriodCard], PooledCard | None]:
    """The period cards (keys ``YYYYDDD``) and the pooled card of a model store (empty without one)."""
    from dsm.models.store import POOLED, ModelStore  # noqa: PLC0415 - xgboost stays out of the report's import

    if models is None:
        return [], None
    ms = ModelStore(models)
    cards = [c for k in ms.keys() if k.isdigit() and len(k) == 7 and (c := read_period_card(ms, k)) is not None]
    return cards, read_pooled_card(ms, POOLED)


def nearest_weather(sites: pd.DataFrame, weather: pd.DataFrame, max_km: float) -> dict[tuple[str, str], pd.Series]:
    """Daily precipitation of the nearest weather station (within ``max_km``) of each site (pure).

    Distances are measured on EASE-Grid 2.0 (equal-area; at mid-latitudes within a few per cent
    of the ground distance at these ranges).
    """
    ws = weather.drop_duplicates("station").reset_index(drop=True)
    wx, wy = lonlat_to_xy(ws["lon"].to_numpy(float), ws["lat"].to_numpy(float))
    out: dict[tuple[str, str], pd.Series] = {}
    for _, s in sites.iterrows():
        d = np.hypot(np.asarray(wx) - s["x"], np.asarray(wy) - s["y"]) / 1000.0
        if d.size == 0 or d.min() > max_km:
            continue
        i = int(np.argmin(d))
        name = str(ws.loc[i, "station"])
        rain = weather.loc[weather["station"] == name].set_index("time")["precip_mm"]
        rain.name = f"{name}, {d[i]:.1f} km"
        out[(s["network"], s["station"])] = rain
    return out


def _section_models(rep: Report, cards: list[PeriodCard], pooled: PooledCard | None, figs: FigureDir) -> None:
    rep.heading("Models per period")
    if not cards:
        for k in ("period_table", "table4", "model_scores_per_period", "split_comparison"):
            rep.missing(k, "no model cards (stores.models unset or empty)")
        return
    rep.text("Every 16-day period's five regressors are tuned by grid-search cross-validation on the train "
             "half (50 % stratified by date, KS-checked); the model with the lowest mean(train RMSE, test RMSE) "
             "is the period's model. Periods with too few samples reuse another period's model.")
    rep.table("period_table", period_table(cards))
    rep.figure("model_scores_per_period",
               figs.draw("model_scores_per_period.png", figures.model_scores_per_period, cards),
               "Train (dashed) and test (solid) R and RMSE of every model per period; circles: chosen model.")
    t4 = table4(cards, pooled)
    rep.table("table4", t4.reset_index())
    rep.figure("table4", figs.draw("table4.png", figures.table4_figure, t4),
               "Mean over trained periods of the train and test R and RMSE (Table 4 of Rao et al., 2022).")
    sc = analysis.split_comparison(cards)
    if sc.empty:
        rep.missing("split_comparison", "the model cards hold no spatial-block check (training.spatial_block)")
    else:
        rep.text("The paper's split puts neighbouring cells and days in both halves; the spatial-block split "
                 "holds out whole blocks of 2 x 2 SMAP cells. rmse_increase is the spatial minus the date-split "
                 "test RMSE: how much the date split flatters the test score.")
        rep.table("split_comparison", sc)


def _section_twin(rep: Report, config: Config, result: ValidationResult, figs: FigureDir,
                  twin: Mapping[str, Any] | None = None, client: Client | None = None) -> None:
    rep.heading("Twin skill against the known 1 km truth")
    if not config.stores.truth:
        for k in ("twin_skill", "twin_skill_stations", "twin_skill_periods", "skill_periods"):
            rep.missing(k, "no truth store (only the synthetic twin has one)")
        return
    try:
        s = twin if twin is not None else twin_skill_of(config, client)
    except (DsmError, ValueError) as exc:
        rep.missing("twin_skill", str(exc))
    else:
        scalar = ("n", "rmse", "r", "ubrmse", "bias", "cell_r", "rmse_cell_mean", "rmse_anomaly",
                  "temporal_r_median", "anomaly_cell_r")
        frame = pd.DataFrame([{"map": k, **{c: v.get(c) for c in scalar}} for k, v in s["scores"].items()])
        rep.text(f"{', '.join(s['maps'])}: the downscaled 1 km maps (method fusion: the default; rao2022: the "
                 "paper's); smap_repeat / smap_bilinear: SMAP 36 km without downscaling (repeated on its pixels / "
                 "bilinear between cell centres), all on the same pixel-days; *_all: a map on all its own "
                 "pixel-days. cell_r: mean correlation with the truth across the 1 km pixels of one SMAP cell on "
                 "one day (what SMAP cannot see); rmse_cell_mean / rmse_anomaly: the error of the 36 km cell "
                 "means and of the departures from them; temporal_r_median: median over pixels of the temporal R; "
                 "anomaly_cell_r: within-cell R of the daily anomalies (map minus its time mean). The reference "
                 "of the bias here is the truth.")
        rep.table("twin_skill", bias_headers(frame))
        st = s.get("stations")
        if st:
            rows = [{"map": k, **v} for k, v in st["maps"].items()]
            rep.text("Temporal R at the twin's in situ stations on the station-days every map covers, median and "
                     "mean over stations with a 95 % bootstrap interval over stations.")
            rep.table("twin_skill_stations", pd.DataFrame(rows))
        else:
            rep.missing("twin_skill_stations", "no in situ stations in the twin's stores")
    if result.period_skill is None or result.period_skill.empty:
        rep.missing("twin_skill_periods", "no period skill computed")
        rep.missing("skill_periods", "no period skill computed")
        return
    rep.table("twin_skill_periods", bias_headers(result.period_skill))
    rep.figure("skill_periods",
               figs.draw("skill_periods.png", figures.skill_periods_figure, result.period_skill),
               "RMSE against the truth and mean within-cell R per period for the product and the baselines.")


def _section_insitu(rep: Report, result: ValidationResult, weather: pd.DataFrame | None, max_km: float,
                    figs: FigureDir) -> None:
    rep.heading("In situ validation")
    conv = result.scores["bias_convention"].iloc[0] if len(result.scores) else "reference_minus_product"
    stored = ("in situ mean minus product mean, the sign of Rao et al. 2022"
              if conv == "reference_minus_product" else "product mean minus in situ mean, as shown here")
    sc = map_minus_reference(result.scores)
    rep.text("R, RMSE, ubRMSE (m³/m³) and bias of daily means, the reference being the in situ daily mean. "
             "Intervals: percentile bootstrap (_lo/_hi). 'common' days: every product and the in situ mean valid "
             "on the same station-day; 'own': each product on all days it shares with the in situ mean. all: "
             "pooled pairs of all sites; site_mean: mean of the per-site scores. The files scores.csv and "
             f"scores.json keep the configured sign (validation.bias_convention = {conv}: {stored}); the tables "
             "here show map − reference.")
    if sc.empty:
        rep.missing("insitu_summary", "nothing could be scored (see the inputs left out)")
        rep.missing("insitu_sites", "nothing could be scored")
    else:
        rep.table("insitu_summary", bias_headers(sc.loc[sc["level"].isin(["all", "site_mean", "network"])]))
        rep.table("insitu_sites", bias_headers(sc.loc[sc["level"] == "site"]))
    rep.table("stations", result.stations)
    rep.table("problems", result.problems if len(result.problems) else pd.DataFrame(
        {"kind": [], "name": [], "problem": []}))
    if result.pairs.empty:
        rep.missing("site_scatter", "no station-day pairs")
        rep.missing("site_timeseries", "no station-day pairs")
        return
    rep.figure("site_scatter", figs.draw("site_scatter.png", figures.site_scatter, result.pairs, sc),
               "1 km product against the in situ daily mean per site, with R, RMSE, ubRMSE, bias (map − "
               "reference) and n.")
    precip = {}
    if weather is not None:
        scored = result.stations.loc[result.stations["status"] == "scored"]
        precip = nearest_weather(scored, weather, max_km)
    rep.figure("site_timeseries",
               figs.draw("site_timeseries.png", figures.site_timeseries, result.pairs,
                         products=result.products, precip=precip),
               "In situ daily means (dots), the 1 km product, SMAP 36 km and other products; bars: daily "
               f"precipitation of the nearest weather station within {max_km:g} km.")


def _section_maps(rep: Report, means_ref: StoreRef, region_box: tuple[float, float, float, float] | None,
                  points: pd.DataFrame | None, figs: FigureDir) -> xr.DataArray | None:
    rep.heading("Mean maps")
    # read here, not by tasks: the figures drawn from them are sent from here
    means = xr.open_zarr(means_ref.url, chunks=None, consolidated=False, storage_options=means_ref.zarr_options)
    monthly = means["sm_monthly"].load()
    annual = means["sm_annual"].load()
    rep.figure("monthly_maps", figs.draw("monthly_maps.png", figures.map_panels, monthly, dim="month",
                                               title="Monthly mean soil moisture", points=points),
               f"Mean of the daily 1 km maps per calendar month. Stored with the annual and multi-year daily means "
               f"in {means_ref}.")
    rep.figure("annual_maps", figs.draw("annual_maps.png", figures.map_panels, annual, dim="year",
                                              title="Annual mean soil moisture", fmt="%Y"),
               "Mean of the daily 1 km maps per year.")
    table = pd.DataFrame({"month": pd.DatetimeIndex(monthly["month"].values).strftime("%Y-%m"),
                          "mean_sm": analysis.regional_means(monthly).values,
                          "valid_pixels": np.isfinite(monthly.values).reshape(monthly.shape[0], -1).sum(axis=1)})
    rep.table("monthly_means", table)
    daily = means["sm_daily_mean_regional"]  # summed where the maps were made
    clim = pd.Series(daily.values, index=daily["dayofyear"].values)
    rep.figure("daily_mean", figs.draw("daily_mean.png", _daily_mean_png, clim),
               "Regional average of the multi-year daily mean map for each day of the year.")
    if region_box is None:
        rep.missing("subset_maps", "no validation.box configured")
        rep.missing("subset", "no validation.box configured")
    else:
        try:
            sub = analysis.subset_box(monthly, region_box)
        except GridError as exc:
            rep.missing("subset_maps", str(exc))
            rep.missing("subset", str(exc))
        else:
            rep.heading("Regional subset view", 3)
            rep.text(f"Box lon {region_box[0]}..{region_box[2]}, lat {region_box[1]}..{region_box[3]}: "
                     f"{sub.sizes['y']} x {sub.sizes['x']} pixels of 1 km.")
            rep.figure("subset_maps", figs.draw("subset_maps.png", figures.map_panels, sub, dim="month",
                                                      title="Monthly mean soil moisture in the box"),
                       "Monthly mean maps cut to the configured box.")
            rep.table("subset", pd.DataFrame({"month": pd.DatetimeIndex(sub["month"].values).strftime("%Y-%m"),
                                              "mean_sm": analysis.regional_means(sub).values}))
    return monthly


def _daily_mean_png(clim: pd.Series, dest: StoreRef) -> str:
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    ax.plot(clim.index, clim.to_numpy(float), "-", color="tab:red")
    ax.set_xlabel("day of year")
    ax.set_ylabel("SM (m³/m³)")
    ax.grid(alpha=0.3)
    ax.set_title("Multi-year daily mean, regional average", fontsize=10)
    return figures.save(fig, dest)


def _section_importance(rep: Report, cards: list[PeriodCard], figs: FigureDir) -> None:
    rep.heading("Variable importance")
    summary = analysis.importance_summary(cards)
    if summary.empty:
        rep.missing("importance", "no trained period with RF or XGB")
        return
    rep.text("RF: mean decrease in impurity; XGB: total gain; each normalised to sum 1 within a period, then "
             "mean and standard deviation over trained periods (reused periods not counted twice).")
    rep.table("importance", summary.reset_index())
    rep.figure("importance", figs.draw("importance.png", figures.importance_bars, summary),
               "Mean importance over periods with ± one standard deviation.")


def _section_partial(rep: Report, config: Config, v: Any, weather: pd.DataFrame | None, client: Client | None,
                     background: xr.DataArray | None, figs: FigureDir) -> None:
    rep.heading("Climate: partial correlation at weather stations")
    if weather is None:
        rep.missing("partial_correlation", "no weather station file (validation.weather)")
        rep.missing("partial_correlation_map", "no weather station file (validation.weather)")
        return
    sites = locate(weather.assign(network="weather"), config.grid_region)
    sites = sites.loc[sites["inside"]].reset_index(drop=True)
    if sites.empty:
        rep.missing("partial_correlation", "no weather station inside the region")
        rep.missing("partial_correlation_map", "no weather station inside the region")
        return
    daily = sample_store(sites, config.stores.ref("output"), None, client)
    sm = analysis.aggregate_sm(daily, PRODUCT_1KM, v.partial_correlation_freq)
    wagg = analysis.aggregate_weather(weather, v.partial_correlation_freq)
    table = analysis.station_partial_correlations(sm, wagg, sites[["station", "lon", "lat", "x", "y"]], v.alpha)
    rep.text(f"Soil moisture of the 1 km product at each weather station's pixel, averaged per period "
             f"({v.partial_correlation_freq}; monthly is 'MS'), against the period's precipitation total "
             f"(controlling for mean air temperature) and mean air temperature (controlling for precipitation). "
             f"Two-sided t-test with n - 3 degrees of freedom at alpha = {v.alpha}.")
    rep.table("partial_correlation", table.drop(columns=["x", "y"]))
    bg = background.mean("month") if background is not None and background.sizes.get("month", 0) else None
    rep.figure("partial_correlation_map",
               figs.draw("partial_correlation_map.png", figures.partial_correlation_map, table, background=bg),
               "Significance classes of the partial correlations at the weather stations over the mean SM map.")


def means_ref(config: Config) -> StoreRef:
    """The report's mean maps store: ``means.zarr`` in ``validation.out``."""
    return config.stores.at(str(stations_config(config).out)).join("means.zarr")


def start_means(config: Config, client: Client) -> Future:
    """Start bringing the products' mean maps up to date (:func:`dsm.mean_maps.means_update`, in
    :func:`means_ref`) on ``client``'s workers; returns the future of the store's URL (already
    current: a task that only returns it), to pass to :func:`run_report`. The validate stage starts
    them before the twin skill, whose tasks leave the workers gaps."""
    dest = means_ref(config)
    job = mean_maps.means_update(config.stores.ref("output"), dest)[1]
    return client.submit(str, dest.url, pure=False) if job is None else client.compute(job)


def run_report(config: Config, client: Client | None, validation: tuple[ValidationResult, Mapping[str, str]],
               twin: Mapping[str, Any] | None = None, lease: Lease | None = None,
               means: Future | None = None) -> str:
    """Analyse and write the self-contained HTML report of a validation; returns its path.

    Parameters
    ----------
    config : Config
        ``stores.output`` (products), ``stores.cube``, optionally ``stores.models``,
        ``stores.truth`` (twin) and the ``validation`` section (defaults: the twin's stations,
        ``validation/`` beside the output store, ``report.html`` in it).
    client : distributed.Client or None
        The cluster: store reads and the mean maps run on its workers.
    validation : (ValidationResult, mapping)
        What :func:`dsm.stages.validate.run_validate` returned for ``config``: the result and the
        tables it wrote.
    twin : mapping, optional
        The twin skill already computed (:func:`dsm.skill.twin_skill_of`); else computed here
        (on ``client``'s workers). Pass the same one to :func:`dsm.stages.validate.run_validate`: its
        per-period table is then taken from it, and the truth is read by one skill pass only.
    lease : Lease, optional
        The run's lease (:class:`dsm.runlock.Lease`), checked before the tables, the mean maps
        and the report are written.
    means : distributed.Future, optional
        The mean maps' update already started (:func:`start_means`); else started here (on
        ``client``'s workers, while the sections before them are drawn).

    Returns
    -------
    str
        Path of the HTML file; figures are also left as PNG files in ``OUT/figures/`` and the
        tables as CSV/JSON in ``OUT/``.
    """
    check = lease.check if lease is not None else (lambda: None)
    v = stations_config(config)
    out = config.stores.at(str(v.out))
    output = config.stores.ref("output")
    figs = FigureDir(out.join("figures"), client.submit if client is not None else None)  # drawn on the workers
    check()
    fs, root = figs.root.fs()
    files.make_folder(fs, root)
    result, written = validation
    cards, pooled = model_cards(config.stores.ref("models") if config.stores.models else None)
    weather = weather_table(v, config.stores)
    products_ds = products.open_products(output, chunks=None)
    led = ledger.read(output, products_ds.attrs)
    r = config.grid_region
    rep = Report(f"dsm validation report: {r.nrows} x {r.ncols} SMAP cells, {config.dates.start} .. {config.dates.end}")
    lo0, la0, lo1, la1 = r.lonlat_bounds
    rep.text(f"Region rows {r.row0}+{r.nrows}, cols {r.col0}+{r.ncols} of the EASE-Grid 2.0 36 km grid "
             f"(lon {lo0:.3f}..{lo1:.3f}, lat {la0:.3f}..{la1:.3f}); products {output}; "
             f"{len(led.done)} predicted day(s). "
             f"Tables: {out}; station time "
             f"series for pytesmo/QA4SM: {written['timeseries_zip']}.")
    rep.text(BIAS_STATEMENT, cls_name="bias")
    check()
    means_at = means_ref(config)
    pending, job = means, None
    if pending is None:
        job = mean_maps.means_update(output, means_at, products_ds, led)[1]
        # on a cluster the workers compute the mean maps while this process draws the sections before them
        pending = client.compute(job) if client is not None and job is not None else None
    try:
        _section_models(rep, cards, pooled, figs)
        _section_twin(rep, config, result, figs, twin, client)
        _section_insitu(rep, result, weather, v.weather_max_km, figs)
        scored = result.stations.loc[result.stations["status"] == "scored"]
        box = v.box
        if box is None:  # the central half of the region, so the view is always shown; named as a default
            box = (lo0 + (lo1 - lo0) / 4, la0 + (la1 - la0) / 4, lo1 - (lo1 - lo0) / 4, la1 - (la1 - la0) / 4)
            rep.text(f"No validation.box configured: the regional subset view shows the central half of the region, "
                     f"lon {box[0]:.3f}..{box[2]:.3f}, lat {box[1]:.3f}..{box[3]:.3f}.", note=True)
        if pending is not None:
            pending.result()
        elif job is not None:  # in this process: no client
            job.compute()
        monthly = _section_maps(rep, means_at, box, scored, figs)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
    _section_importance(rep, cards, figs)
    _section_partial(rep, config, v, weather, client, monthly, figs)
    page = config.stores.at(v.report) if v.report else out.join("report.html")
    check()
    files.write_url(page, rep.html())
    files.write_url(out.join("report_contents.json"),
                    json.dumps({"figures": rep.figures, "tables": sorted(rep.tables)}, indent=1))
    return page.url


__all__ = ["BIAS_HEADER", "BIAS_STATEMENT", "FIGURES", "TABLES", "Report", "bias_headers", "means_ref", "model_cards",
           "nearest_weather", "run_report", "start_means"]
