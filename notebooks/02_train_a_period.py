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
# # Training one 16-day period
#
# The method fits one regression model per 16-day period: samples are the (SMAP cell, day)
# pairs where SMAP and all 14 predictors, aggregated to 36 km, are valid; a 50/50 split
# stratified by date is redrawn until a Kolmogorov-Smirnov test finds train and test soil
# moisture alike; five tuned models (MLR, SVR, ANN, RF, XGBoost) compete and the lowest
# mean(train RMSE, test RMSE) wins. This notebook walks through one period of the tiny twin
# with the same functions `dsm train` uses, on a LocalCluster.

# %%
import tempfile

import matplotlib.pyplot as plt
import pandas as pd
from distributed import Client

import dsm.cube
from dsm import config as dsm_config
from dsm.cluster import local_cluster
from dsm.models.period import fit_period, period_split
from dsm.periods import periods
from dsm.samples import sample_graph
from dsm.testing import make_synthetic_cube

root = tempfile.mkdtemp(prefix="dsm-nb-")
stores = make_synthetic_cube(root, size="tiny")
ds = dsm.cube.open_cube(stores.cube)
# as dsm starts its workers (dsm.cluster.WORKER_ENVIRON: numpy temporaries from the heap)
cluster = local_cluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0")
client = Client(cluster)
print("dashboard:", client.dashboard_link)

# %% [markdown]
# ## The period's samples
# `sample_graph` is lazy: computing it reads and aggregates the 1 km chunks on the workers;
# only the small table comes back.

# %%
start, end = (pd.Timestamp(t).date() for t in ds.time.values[[0, -1]])
period = periods(start, end)[1]
predictors = dsm_config.PAPER_PREDICTORS
table = client.compute(sample_graph(ds, period, predictors, how="mean", min_valid_fraction=0.5)).result()
print(f"period {period.name}: {len(table)} samples over {table['date'].nunique()} days")
table.head()

# %% [markdown]
# ## The split and its KS check

# %%
cfg = dsm_config.TrainingConfig(
    min_samples=40,
    grids={"svr": {"C": [0.3, 3.0], "epsilon": [0.01]}, "ann": {"hidden_layer_sizes": [[16]], "alpha": [1e-3]},
           "rf": {"n_estimators": [60], "max_depth": [8]}, "xgb": {"n_estimators": [100], "max_depth": [3, 5]},
           "mlr": {"fit_intercept": [True]}},
)
split = period_split(table, period.name, cfg)
print(split.record())
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(table["sm"].values[split.train], bins=20, alpha=0.6, label="train")
ax.hist(table["sm"].values[split.test], bins=20, alpha=0.6, label="test")
ax.set_xlabel("SMAP soil moisture (m3/m3)")
ax.legend()
ax.set_title(f"KS p = {split.ks_pvalue:.2f} after {split.attempts} draw(s)")

# %% [markdown]
# ## Five tuned models, compared
# Each grid search spreads its candidate x fold fits over the workers (dask-ml).

# %%
fit = fit_period(client, table, period.name, predictors, cfg)
card = fit.card
rows = {m: {"train R": e.train["r"], "train RMSE": e.train["rmse"],
            "test R": e.test["r"], "test RMSE": e.test["rmse"], "best": dict(e.best_params)}
        for m, e in card.models.items()}
print("chosen:", card.chosen, "by", card.selection_rule)
pd.DataFrame(rows).T

# %% [markdown]
# ## Variable importance (RF impurity, XGBoost gain)

# %%
imp = pd.DataFrame({k: dict(v) for k in ("rf_impurity", "xgb_gain") if (v := card.importance.of(k))}).fillna(0.0)
ax = imp.sort_values(imp.columns[0]).plot.barh(figsize=(7, 5))
ax.set_xlabel("normalised importance")

# %%
client.close()
cluster.close()
