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
# # Exploring a dsm predictor cube
#
# The cube holds the 14 predictors of Rao et al. (2022) plus FAPAR, SMAP at 36 km and a land
# mask, on the EASE-Grid 2.0 1 km grid, each variable on its own time axis. This notebook
# builds the tiny twin region (seconds) and explores it. To explore your own cube, set
# `CUBE_URL` (a path or `s3://...`) and `STORAGE_OPTIONS` in the next cell.

# %%
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import dsm.cube
from dsm.storeref import StoreRef
from dsm.testing import make_synthetic_cube

CUBE_URL = None  # e.g. "s3://my-bucket/dsm/cube.zarr"
STORAGE_OPTIONS = {}  # e.g. {"endpoint_url": "https://..."}; credentials from AWS_* variables

if CUBE_URL is None:
    cube = make_synthetic_cube(tempfile.mkdtemp(prefix="dsm-nb-"), size="tiny").cube
else:
    cube = StoreRef(CUBE_URL, STORAGE_OPTIONS)  # a store's location and the fsspec options to reach it
ds = dsm.cube.open_cube(cube)
ds

# %% [markdown]
# Everything is lazy (dask): nothing is read until a value is needed. The summary below reads
# the whole cube to count valid values.

# %%
summary = dsm.cube.summary(ds)
for name, v in summary["variables"].items():
    print(f"{name:10s} {v['axis']:7s} {'x'.join(map(str, v['chunks'])):14s} valid {v['valid_fraction']:.3f}")
print(ds.rio.crs, ds.rio.transform(), sep="\n")

# %% [markdown]
# ## The predictors on one day
# Daily variables are indexed by `time`, 8-day ones by `time_8d` and 16-day ones by
# `time_16d` (first day of each composite); `method="ffill"` picks the composite covering a day.

# %%
day = ds.time.values[len(ds.time) // 2]
layers = {
    "lst": ds.lst.sel(time=day),
    "albedo": ds.albedo.sel(time=day),
    "lai": ds.lai.sel(time_8d=day, method="ffill"),
    "lswi": ds.lswi.sel(time_8d=day, method="ffill"),
    "ndvi": ds.ndvi.sel(time_16d=day, method="ffill"),
    "dem": ds.dem, "slope": ds.slope, "sand": ds.sand,
}
fig, axes = plt.subplots(2, 4, figsize=(14, 6), constrained_layout=True)
for ax, (name, da) in zip(axes.flat, layers.items()):
    da.plot(ax=ax, add_labels=False, cbar_kwargs={"label": da.attrs.get("units", "")})
    ax.set_title(name)
    ax.set_aspect("equal")
fig.suptitle(f"predictors on {str(day)[:10]}")

# %% [markdown]
# ## A pixel's time series of the dynamic predictors

# %%
px = ds.isel(y=ds.sizes["y"] // 3, x=ds.sizes["x"] // 3)
fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True, constrained_layout=True)
px.lst.plot(ax=axes[0], marker=".", linestyle="none")
axes[0].set_title("daily LST (gaps: clouds)")
px.ndvi.plot.step(ax=axes[1], where="post", label="NDVI (16-day)")
px.lai.plot.step(ax=axes[1], where="post", label="LAI (8-day)")
axes[1].legend()
px.albedo.plot(ax=axes[2])

# %% [markdown]
# ## SMAP 36 km beside the 1 km predictors of the same day
# SMAP lives on its own grid `(cy, cx)`; every 36 x 36 block of 1 km pixels is one SMAP cell.

# %%
has_smap = ds.smap_sm.notnull().sum(("cy", "cx")).values
sday = ds.time.values[int(np.argmax(has_smap))]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
ds.smap_sm.sel(time=sday).plot(ax=axes[0], cmap="YlGnBu", vmin=0, vmax=0.35)
axes[0].set_title(f"SMAP 36 km, {str(sday)[:10]}")
ds.lst.sel(time=sday).plot(ax=axes[1], cmap="inferno")
axes[1].set_title("LST 1 km, same day")
for ax in axes:
    ax.set_aspect("equal")
