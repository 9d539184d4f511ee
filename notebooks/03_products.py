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
# # The daily 1 km products
#
# `dsm predict` writes one Zarr store of daily maps: `sm` (soil moisture, m3/m3), `sm_unc`
# (half width of the 90 % prediction interval), `sm_origin` (bit flags saying which model made
# each pixel and how far to trust it) and `sm_36km` (the 1 km map averaged back to the SMAP
# cells). `dsm export` turns each day into a Cloud-Optimized GeoTIFF with a STAC item.
#
# This notebook builds the tiny twin region (4 x 4 SMAP cells, 48 days), trains, predicts and
# exports it with `dsm.chain.run`, the function behind `dsm run` (about a minute, through
# `dsm.chain.config_or_demo`), then looks at what came out. To look at your own run instead, set
# `CONFIG_PATH` (or the environment variable `DSM_NOTEBOOK_CONFIG`) to its configuration
# (for example `work/demo/config.yaml` after `make demo`): every store it names may be a local
# path or an `s3://...` URL, with fsspec options under `stores.storage_options` (each store is
# then a `dsm.storeref.StoreRef`, `cfg.stores.ref(name)`: its URL and those options together).

# %%

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pystac
import rasterio
import rioxarray
import xarray as xr
from distributed import Client

import dsm.analysis
import dsm.cube
import dsm.ledger
import dsm.products
from dsm.chain import config_or_demo
from dsm.cluster import local_cluster
from dsm.stages.export import FsspecStacIO

CONFIG_PATH = os.environ.get("DSM_NOTEBOOK_CONFIG")  # or e.g. "work/demo/config.yaml"; stores may be s3://

# as dsm starts its workers (dsm.cluster.WORKER_ENVIRON: numpy temporaries from the heap)
cluster = local_cluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0")
client = Client(cluster)
# without a configuration: the configuration `dsm demo --size tiny` writes, made quicker (one
# hyperparameter candidate per model, 2 CV folds, no pooled model), its stores in a temporary
# folder, run through these stages as `dsm run` does
cfg = config_or_demo(CONFIG_PATH, client, stages=("cube", "train", "predict", "export"))
output = cfg.stores.ref("output")

# %% [markdown]
# ## The output store
# `open_products` opens it lazily and checks that it is a products store. `sm` and `sm_unc` are
# stored as int16 with a CF `scale_factor` of 1e-4 and `_FillValue` -9999; xarray decodes them to
# float m3/m3 with NaN where nothing was predicted (water, or no usable predictor).

# %%
ds = dsm.products.open_products(output)
cube = dsm.cube.open_cube(cfg.stores.ref("cube"))
print("sm on disk:", ds.sm.encoding["dtype"], "scale_factor", ds.sm.encoding["scale_factor"],
      "_FillValue", ds.sm.encoding["_FillValue"])
led = dsm.ledger.read(output)  # the run ledger beside the arrays: one record per day
print(f"days done {len(led.done)}, empty {len(led.empty)}, failed {len(led.failed)}, exported {len(led.exported)}")
ds

# %% [markdown]
# ## One day at 1 km beside SMAP at 36 km
# Each 36 km SMAP cell holds 36 x 36 pixels of the 1 km map. On the right, `sm_36km` is the
# 1 km map averaged back over each cell: where SMAP observed the cell it should be close to
# SMAP, since the models were trained on SMAP at that scale. We pick a day on which SMAP's
# swath covered only part of the region, so the last panel has holes where the 1 km map has
# none: the map is made from the same-day 1 km predictors and needs SMAP only to train.

# %%
smap_cells = cube.smap_sm.notnull().sum(("cy", "cx")).to_series()
ncells = cube.sizes["cy"] * cube.sizes["cx"]
partial = smap_cells[(smap_cells >= ncells / 3) & (smap_cells <= 2 * ncells / 3)]
day = partial.index[0] if len(partial) else smap_cells.idxmax()
dstr = f"{day:%Y-%m-%d}"
sm_day = ds.sm.sel(time=day)
kw = {"cmap": "YlGnBu", "vmin": float(sm_day.quantile(0.02)), "vmax": float(sm_day.quantile(0.98)),
      "add_colorbar": False, "add_labels": False}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
im = cube.smap_sm.sel(time=day).plot(ax=axes[0], **kw)
axes[0].set_title(f"SMAP 36 km, {dstr}")
sm_day.plot(ax=axes[1], **kw)
axes[1].set_title("dsm 1 km (sm)")
ds.sm_36km.sel(time=day).where(cube.smap_sm.sel(time=day).notnull()).plot(ax=axes[2], **kw)
axes[2].set_title("sm averaged to 36 km (sm_36km), where SMAP observed")
for ax in axes:
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, EASE-Grid 2.0)")
fig.colorbar(im, ax=axes, shrink=0.85, label="soil moisture (m3/m3)")

# %% [markdown]
# ## Uncertainty and origin
# `sm_unc` is the half width of the central 90 % interval (`ds.sm_unc.attrs["interval"]`) from
# the period's XGBoost quantile models, widened by a conformal margin measured on the test half.
# `sm_origin` stores bit flags (the store's attribute `origin_bits`): 1 all predictors of the day were
# there; 2 a predictor was missing (LST under cloud) and the period's reduced model made the
# pixel; 4 the period reuses another period's model; 8 a predictor lies outside the range the
# model saw in training; 16 SMAP did not observe the pixel's cell that day. 0: not predicted.

# %%
for bit, text in dsm.products.decode_attrs(ds.attrs)["origin_bits"].items():  # structured attributes are JSON text
    print(f"{bit:>3}  {text}")
origin = ds.sm_origin.sel(time=day).values
short = {1: "all", 2: "reduced", 4: "reused", 8: "extrapolation", 16: "no SMAP"}
values = np.unique(origin)
labels = {v: "+".join(short[b] for b in short if v & b) or "not predicted" for v in values}
fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True)
ds.sm_unc.sel(time=day).plot(ax=axes[0], cmap="magma_r", cbar_kwargs={"label": "m3/m3"})
axes[0].set_title(f"sm_unc: half width of the {ds.sm_unc.attrs['interval']:.0%} interval, {dstr}")
codes = np.searchsorted(values, origin)
im = axes[1].imshow(codes, cmap=plt.get_cmap("tab10", len(values)), vmin=-0.5, vmax=len(values) - 0.5,
                    interpolation="nearest")
cb = fig.colorbar(im, ax=axes[1], ticks=range(len(values)))
cb.ax.set_yticklabels([f"{v}: {labels[v]}" for v in values], fontsize=8)
axes[1].set_title(f"sm_origin, {dstr} (pixel row / column)")
for ax in axes:
    ax.set_aspect("equal")

# %% [markdown]
# Over all days: the share of predicted pixels carrying each flag. Cloudy days lean on the
# reduced (no-LST) models; days SMAP missed are still mapped, from the same-day predictors.

# %%
predicted_px = (ds.sm_origin > 0).sum(("y", "x"))
shares = pd.DataFrame({
    name: ((ds.sm_origin & bit) > 0).sum(("y", "x")) / predicted_px
    for bit, (name, _) in dsm.products.ORIGIN_BITS.items()
}, index=ds.time.values)
ax = shares.plot(figsize=(11, 3.5), marker=".")
ax.set_ylabel("share of predicted pixels")
ax.set_title("sm_origin flags per day")
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
shares.mean().rename("mean share").to_frame()

# %% [markdown]
# Read the `extrapolation` flag with care: the ranges it checks come from the training samples,
# which are 36 km cell means, and 1 km pixels (a slope, a DEM value, a bright or dark pixel)
# spread much wider than cell means. On the twin nearly every pixel carries it, so on its own
# it says little; it is the other bits that separate the pixels.

# %% [markdown]
# ## Monthly means
# `dsm.analysis.monthly_means` is a lazy reduction (the mean of the valid days of each calendar
# month, per pixel); `dsm report` computes it with the annual and multi-year daily means on the
# cluster into a Zarr store (`dsm.analysis.write_means`). The tiny twin spans June and July.

# %%
monthly = dsm.analysis.monthly_means(ds.sm).compute()
grid = monthly.plot(col="month", cmap="YlGnBu", figsize=(10, 4.2), cbar_kwargs={"label": "m3/m3"})
for ax, month in zip(grid.axs.flat, monthly.month.values):
    ax.set_title(pd.Timestamp(month).strftime("%Y-%m"))
    ax.set_aspect("equal")
(monthly.mean(("y", "x")).to_series().rename("regional mean (m3/m3)")
 .set_axis(pd.DatetimeIndex(monthly.month.values).strftime("%Y-%m")).to_frame())

# %% [markdown]
# ## The 36 km consistency check
# For each predicted day the store's run ledger records (`consistency`) R, RMSE and bias
# (map minus SMAP) of `sm_36km` against SMAP over the cells SMAP observed. A map that drifts
# away from SMAP at its own scale shows up here first. (`output.residual_correction: true`
# shifts each cell's pixels so that this bias is zero on observed days.)

# %%
cons = pd.DataFrame({d: r.consistency for d, r in led.days.items() if r.consistency}).T
cons.index = pd.to_datetime(cons.index)
cons = cons.astype(float)
pairs = xr.Dataset({"map": ds.sm_36km, "smap": cube.smap_sm.sel(time=ds.time)}).to_dataframe()[["map", "smap"]].dropna()
fig, axes = plt.subplots(1, 2, figsize=(13, 4), constrained_layout=True, gridspec_kw={"width_ratios": [1.6, 1]})
cons[["rmse", "bias"]].plot(ax=axes[0], marker="o", linestyle="none")
cons["r"].plot(ax=axes[0], secondary_y=True, marker="s", linestyle="none", color="k", label="R (right axis)")
axes[0].set_title("sm_36km against SMAP per day (attrs['consistency']; no point: SMAP saw < 2 cells)")
axes[0].set_ylabel("m3/m3")
axes[0].legend(loc="upper left")
axes[1].scatter(pairs["smap"], pairs["map"], s=6, alpha=0.5)
lim = [0, float(pairs.max().max()) * 1.05]
axes[1].plot(lim, lim, "k--", lw=0.8)
axes[1].set(xlim=lim, ylim=lim, xlabel="SMAP 36 km (m3/m3)", ylabel="1 km map averaged to 36 km (m3/m3)",
            title=f"all cell-days: R {pairs.corr().iloc[0, 1]:.3f}, "
                  f"RMSE {np.sqrt(((pairs['map'] - pairs['smap']) ** 2).mean()):.4f}")
cons.describe().loc[["mean", "min", "max"]]

# %% [markdown]
# ## A day's Cloud-Optimized GeoTIFF and its STAC item
# `dsm export` wrote `SM_1km_YYYYDDD.tif` per day (int16 = sm x 10000, nodata -9999, band scale
# 0.0001, tiles, overviews) and a STAC Collection with one Item per COG (projection and raster
# extensions, plus the period's model and the origin statistics). Both are read here through
# fsspec, so the same cell reads them from a folder or from `s3://`.
# `mask_and_scale=True` makes rioxarray apply the nodata and the band scale.

# %%
info = led.exported[dstr]
fs, path = cfg.stores.at(info["url"]).fs()  # the COG's URL, under the stores' fsspec options
with fs.open(path, "rb") as f, rasterio.open(f) as src:
    print(f"{info['url']}\n  {src.dtypes[0]}, nodata {src.nodata}, scale {src.scales[0]}, offset {src.offsets[0]}, "
          f"{src.crs}, {src.width} x {src.height}, tiles {src.block_shapes[0]}, overviews {src.overviews(1)}, "
          f"{src.compression.name}")
    f.seek(0)
    cog = rioxarray.open_rasterio(f, mask_and_scale=True).squeeze("band", drop=True).load()
stored = sm_day.values
print("largest |COG - store| (m3/m3):", float(np.nanmax(np.abs(cog.values - stored))),
      "| same empty pixels:", bool((np.isnan(cog.values) == np.isnan(stored)).all()))

# %% [markdown]
# The STAC item of the same day, found through the collection. `FsspecStacIO` is the pystac IO
# dsm writes with; it reads `s3://` catalogs as well.

# %%
stac = cfg.stores.ref("stac")
collection = pystac.Collection.from_file(stac.join("collection.json").url, stac_io=FsspecStacIO(stac))
item = collection.get_item(info["name"].removesuffix(".tif"))
print(f"collection {collection.id}: {len(list(collection.get_items()))} items; extent "
      f"{collection.extent.temporal.intervals[0][0]:%Y-%m-%d} .. {collection.extent.temporal.intervals[0][1]:%Y-%m-%d}")
band = item.assets["sm"].extra_fields["raster:bands"][0]
print(f"item {item.id}: {item.datetime:%Y-%m-%d}, {item.properties['proj:code']}, shape {item.properties['proj:shape']}, "
      f"band scale {band['scale']}, nodata {band['nodata']}")
print(f"  asset href {item.assets['sm'].href} (relative to the item: {item.assets['sm'].get_absolute_href()})")
print(f"  period {item.properties['dsm:period']}, model {item.properties['dsm:model']} "
      f"(reused: {item.properties['dsm:reused']}), variants {item.properties['dsm:variants']}")
print("  origin pixels:", item.properties["dsm:origin_pixels"])

# %% [markdown]
# The full-resolution COG beside its first overview, the coarser copy a map viewer reads when
# zoomed out. GDAL does not carry the band scale to an overview level, so the overview is
# scaled here with the item's `raster:bands` scale and offset.

# %%
with fs.open(path, "rb") as f:
    overview = rioxarray.open_rasterio(f, masked=True, overview_level=0).squeeze("band", drop=True).load()
resampling = overview.attrs.get("OVERVIEW_RESAMPLING", "?").lower()
overview = overview * band["scale"] + band["offset"]
kw["add_labels"] = True
fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
im = cog.plot(ax=axes[0], **kw)
axes[0].set_title(f"{info['name']} via rioxarray, {cog.shape[0]} x {cog.shape[1]}")
overview.plot(ax=axes[1], **kw)
axes[1].set_title(f"its first overview, {overview.shape[0]} x {overview.shape[1]} "
                  f"({resampling}; what a viewer reads zoomed out)", fontsize=9)
for ax in axes:
    ax.set_aspect("equal")
fig.colorbar(im, ax=axes, shrink=0.85, label="soil moisture (m3/m3)")

# %%
client.close()
cluster.close()
