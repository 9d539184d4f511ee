# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Validating the 1 km maps
#
# Two ways to judge the downscaled maps:
#
# * **in situ**: probes at 5 cm depth, scored (R, RMSE, ubRMSE, bias with bootstrap intervals)
#   against the 1 km pixel that holds them and against SMAP's 36 km cell (`dsm.stages.validate`,
#   the figures of `dsm.figures`, the partial correlations of `dsm.analysis`); this is all a
#   real region has;
# * **against the 1 km truth**, which only the synthetic twin has: every pixel of every day is
#   scored, next to what you would get without downscaling at all (SMAP repeated on its
#   pixels, or interpolated bilinearly between cell centres) (`dsm.skill`).
#
# `dsm report` does all of this into one HTML file. This notebook builds, trains and predicts
# the tiny twin (about a minute), then walks through the same calls. To validate your own run,
# set `CONFIG_PATH` (or the environment variable `DSM_NOTEBOOK_CONFIG`) to its configuration: its
# `validation:` section names the station files
# (ISMN or CSV) and other gridded products to compare; without a `stores.truth` the second
# half has nothing to score.

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from distributed import Client
from IPython.display import Image, display

import dsm.analysis
import dsm.figures
import dsm.skill
import dsm.stages.report
import dsm.stages.validate
from dsm import products, store
from dsm.blocks import residual_correct
from dsm.chain import config_or_demo
from dsm.cluster import local_cluster
from dsm.storeref import StoreRef

CONFIG_PATH = os.environ.get("DSM_NOTEBOOK_CONFIG")  # or e.g. "work/demo/config.yaml"; stores may be s3://

# as dsm starts its workers (dsm.cluster.WORKER_ENVIRON: numpy temporaries from the heap)
cluster = local_cluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0")
client = Client(cluster)
# without a configuration: the configuration `dsm demo --size tiny` writes, made quicker (one
# hyperparameter candidate per model, 2 CV folds, no pooled model), its stores in a temporary
# folder, run through these stages as `dsm run` does
cfg = config_or_demo(CONFIG_PATH, client, stages=("cube", "train", "predict"))
figdir = StoreRef(tempfile.mkdtemp(prefix="dsm-figures-"))  # dsm.figures writes PNG files (any fsspec URL)

# %% [markdown]
# ## In situ scores
# `validate` reads the stations, keeps the surface sensors, makes daily means, finds each
# station's 1 km pixel and 36 km cell, samples the products there (on the cluster) and scores
# them. Every product is scored twice: on the station-days all products share (`common`: the
# fair comparison) and on all of its own days (`own`). Anything left out is listed with the reason.
# Bias is in situ minus product (the paper's sign; `validation.bias_convention` flips it).

# %%
result = dsm.stages.validate.validate(cfg, client)
print(dsm.stages.validate.format_scores(result.scores))
for line in dsm.stages.validate.problem_lines(result.problems):
    print("left out:", line)
result.stations

# %% [markdown]
# Per site, on the common days: R and ubRMSE of the 1 km pixel and of the 36 km cell.
# A station sees a point; SMAP sees 1300 km2; the 1 km map sits in between.

# %%
sites = result.scores.query("level == 'site' and days == 'common'")
table = sites.pivot(index="station", columns="product", values=["n", "r", "ubrmse", "bias"])
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), constrained_layout=True)
for ax, metric in zip(axes, ("r", "ubrmse")):
    table[metric].plot.bar(ax=ax, color=[dsm.figures.PRODUCT_COLORS.get(c, "gray") for c in table[metric].columns])
    ax.set_title(f"{metric} per site (common days)")
    ax.grid(axis="y", alpha=0.3)
axes[1].set_ylabel("m3/m3")
table.round(3)

# %% [markdown]
# ## Scatter and time series at the stations
# `dsm.figures` draws the report's figures into PNG files (no pyplot state), shown here as
# images. The time series carry the daily precipitation of the nearest weather station
# (`dsm.stages.report.nearest_weather`), which explains most jumps of the in situ curve.

# %%
display(Image(dsm.figures.site_scatter(result.pairs, result.scores, figdir.join("scatter.png"))))

# %%
v = dsm.stages.validate.stations_config(cfg)  # the validation section, with the twin's station files as defaults
weather = dsm.stages.validate.weather_table(v, cfg.stores)  # None without a weather file
scored = result.stations.query("status == 'scored'")
precip = dsm.stages.report.nearest_weather(scored, weather, v.weather_max_km) if weather is not None else None
display(Image(dsm.figures.site_timeseries(result.pairs, figdir.join("timeseries.png"), result.products, precip,
                                          max_sites=4)))

# %% [markdown]
# ## Soil moisture against rain and temperature (partial correlation)
# At each weather station: the 1 km map at its pixel averaged per period, against the period's
# rain (controlling for temperature) and its mean temperature (controlling for rain), with a
# t-test. The paper uses months; 48 days give only weekly periods (`partial_correlation_freq:
# W`), so expect few significant stations here.

# %%
if weather is not None:
    wsites = dsm.stages.validate.locate(weather.assign(network="weather"), cfg.grid_region).query("inside")
    daily = dsm.stages.validate.sample_store(wsites, cfg.stores.ref("output"), None, client)
    sm_periods = dsm.analysis.aggregate_sm(daily, dsm.stages.validate.PRODUCT_1KM, v.partial_correlation_freq)
    w_periods = dsm.analysis.aggregate_weather(weather, v.partial_correlation_freq)
    pcor = dsm.analysis.station_partial_correlations(sm_periods, w_periods,
                                                    wsites[["station", "lon", "lat", "x", "y"]], v.alpha)
    display(pcor.drop(columns=["x", "y"]).round(3))

# %% [markdown]
# ## The twin: skill against the 1 km truth
# `dsm.skill.twin_skill_of` (`dsm.skill.skill` on this run's products, any
# `validation.compare` stores, and the twin's stations) streams over the predicted days and
# scores every land pixel-day where the truth, every map and SMAP exist: the products and the
# two maps without downscaling (SMAP repeated and bilinear). `cell_r` is the mean correlation
# with the truth across the 1 km pixels of one SMAP cell on one day: the part of the signal
# SMAP cannot see (repeated SMAP is constant in a cell, so it has none); the table also splits
# the error into the 36 km cell means and the departures from them, and gives temporal R per
# pixel and at the stations.

# %%
assert cfg.stores.truth, "no stores.truth: only the synthetic twin can be scored against a 1 km truth"
sk = dsm.skill.twin_skill_of(cfg)
print(dsm.skill.format_table(sk))
scores = pd.DataFrame(sk["scores"]).T.drop(index=[f"{m}_all" for m in sk["maps"]])
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), constrained_layout=True)
for ax, metric, label in zip(axes, ("rmse", "r", "cell_r"), ("RMSE (m3/m3)", "R", "mean within-cell R")):
    vals = scores[metric].astype(float)
    ax.bar(vals.index, vals.fillna(0).values, color=["tab:red", "salmon", "tab:blue", "lightsteelblue"][-len(vals):])
    for i, val in enumerate(vals):
        ax.text(i, 0 if np.isnan(val) else val, "n/a" if np.isnan(val) else f"{val:.3f}", ha="center", va="bottom",
                fontsize=8)
    ax.set_title(label)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
fig.suptitle("1 km maps against the twin's truth, same pixel-days")

# %% [markdown]
# How to read it: a downscaled map earns its keep where it beats `smap_bilinear`, above all
# on `cell_r`; if it does not, it adds noise rather than 1 km information. On the tiny twin,
# with about 60 training samples per period (and one hyperparameter candidate per model
# here), it does not overall: the maps carry 1 km structure, but too much of it, and their
# errors are larger than SMAP's own. The coverage line checks `sm_unc`: the share of
# pixel-days whose truth lies inside `sm +- sm_unc` should be close to the nominal 90 %.

# %% [markdown]
# Per 16-day period (the `periods` of `dsm.skill.skill`, computed by `validate` on the twin), the
# picture changes with the model each period chose (notebook 02): the paper's selection rule
# rewards the best fit of the training half, which is not always the best map.

# %%
display(Image(dsm.figures.skill_periods_figure(result.period_skill, figdir.join("skill_periods.png"))))
result.period_skill.query("period == 'all'").round(4)

# %% [markdown]
# ## One day, map by map
# The truth, the 1 km product, SMAP interpolated bilinearly (`dsm.skill.bilinear`) and the
# errors, on the day with the most SMAP cells; bottom left, the product after the residual
# correction (`dsm.blocks.residual_correct`: each cell's mean set to SMAP). Within a 36 km
# cell the bilinear map has only a gentle slope; the product has the 1 km structure of its
# predictors, right or wrong.

# %%
out = products.open_products(cfg.stores.ref("output"))
truth = store.open_store(cfg.stores.ref("truth"), "truth")
smap = dsm.open_cube(cfg.stores.ref("cube")).smap_sm.sel(time=out.time)
day = smap.notnull().sum(("cy", "cx")).idxmax("time").values
smap_day = smap.sel(time=day).values
maps = {"truth": truth.sm_true.sel(time=day).values, "dsm 1 km": out.sm.sel(time=day).values,
        "SMAP bilinear": dsm.skill.bilinear(smap_day)}
errors = {"dsm 1 km, residual-corrected": residual_correct(maps["dsm 1 km"], smap_day) - maps["truth"],
          "dsm 1 km": maps["dsm 1 km"] - maps["truth"], "SMAP bilinear": maps["SMAP bilinear"] - maps["truth"]}
lo, hi = np.nanquantile(maps["truth"], [0.02, 0.98])
fig, axes = plt.subplots(2, 3, figsize=(13, 8), constrained_layout=True)
for ax, (name, m) in zip(axes[0], maps.items()):
    im = ax.imshow(m, cmap="YlGnBu", vmin=lo, vmax=hi)
    ax.set_title(f"{name}, {str(day)[:10]}")
fig.colorbar(im, ax=axes[0], shrink=0.8, label="m3/m3")
for ax, (name, err) in zip(axes[1], errors.items()):
    im = ax.imshow(err, cmap="RdBu", vmin=-0.1, vmax=0.1)
    ax.set_title(f"{name} minus truth\n(RMSE {np.sqrt(np.nanmean(err ** 2)):.3f})", fontsize=10)
fig.colorbar(im, ax=axes[1], shrink=0.8, label="m3/m3")
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])

# %%
client.close()
cluster.close()
