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
# # Scaling out: a scheduler address and object storage
#
# Every dsm stage takes a `distributed.Client` and reads and writes its stores through fsspec
# URLs, so the same calls run on a laptop's LocalCluster or on a cluster of many machines
# (a `dask scheduler` started by hand, a Kubernetes DaskCluster from `deploy/`), with the
# stores in a folder or in a bucket. Workers never share a local disk: data moves only
# through the stores.
#
# Point the next cell at your own cluster and bucket:
#
# * `SCHEDULER_ADDRESS`: `tcp://host:8786` of a running scheduler; `None` starts a small
#   LocalCluster (2 worker processes, 1 thread each) that is shut down at the end;
# * `S3_URL`: a folder URL such as `s3://my-bucket/dsm-tiny` with `STORAGE_OPTIONS` for fsspec
#   (`endpoint_url` for a non-AWS store; credentials either as `key` and `secret` there, which
#   travel with the tasks to the workers, or in the `AWS_*` environment variables of the
#   notebook *and of every worker*); `None` uses a local temporary folder, which only works
#   when the workers run on this machine.
#
# Everything below uses `ROOT` and `STORAGE_OPTIONS` and nothing else, so a local folder and a
# bucket take exactly the same code path. The notebook writes the tiny twin (4 x 4 SMAP cells,
# 48 days) to `ROOT`, trains the default method's pooled model and predicts one 16-day period
# across the workers.

# %%
import contextlib
import tempfile

import matplotlib.pyplot as plt
import pandas as pd
import xarray as xr
from dask.utils import key_split
from distributed import get_task_stream

import dsm.analysis
import dsm.cluster
import dsm.ledger
import dsm.products
from dsm import config as dsm_config
from dsm.periods import periods
from dsm.stages.predict import predict
from dsm.stages.train import train
from dsm.testing import make_synthetic_cube
from dsm.twin import demo_config

SCHEDULER_ADDRESS = None  # e.g. "tcp://10.0.0.5:8786"
S3_URL = None  # e.g. "s3://my-bucket/dsm-tiny"
STORAGE_OPTIONS = {}  # e.g. {"endpoint_url": "https://s3.example.org"}

ROOT = (S3_URL or tempfile.mkdtemp(prefix="dsm-nb-")).rstrip("/")
# the configuration `dsm demo --size tiny` writes, made quicker (one hyperparameter candidate
# per model, 2 CV folds, no pooled model), with every store under ROOT and this cluster
raw = demo_config("tiny", root=ROOT, quick=True)
raw["stores"]["storage_options"] = STORAGE_OPTIONS
raw["cluster"] = {"address": SCHEDULER_ADDRESS, "n_workers": 2, "threads_per_worker": 1,
                  "dashboard_address": "127.0.0.1:0"}
raw["chunks"] = {"space": 72, "time": 8}  # 4 blocks a time chunk, so the workers share each chunk's days
cfg = dsm_config.from_dict(raw)
root = cfg.stores.at(ROOT)  # ROOT under STORAGE_OPTIONS: one handle (dsm.storeref.StoreRef) for both
print("stores under", ROOT)

# %% [markdown]
# ## Connect
# `dsm.cluster.connect` is what every `dsm` command uses: with `cluster.address` it connects
# to that scheduler (and leaves it running when done), otherwise it starts a LocalCluster.
# It is a context manager; an `ExitStack` keeps it open across the cells of this notebook.
# Open the dashboard link to watch the tasks below run (on a remote cluster, the link is the
# scheduler's: you may need a port-forward).

# %%
session = contextlib.ExitStack()
client = session.enter_context(dsm.cluster.connect(cfg.cluster))
print(dsm.cluster.describe(client))
print("dashboard:", client.dashboard_link)
workers = client.scheduler_info(n_workers=-1)["workers"]
pd.DataFrame({a: {"name": str(w.get("name")), "threads": w["nthreads"], "memory (GB)": w["memory_limit"] / 1e9}
              for a, w in workers.items()}).T

# %% [markdown]
# ## The inputs, written to `ROOT`
# The twin is simulated here, in the notebook's process, and written chunk by chunk to the
# cube at `ROOT/cube.zarr` (Zarr v3) through fsspec. On a real run this is `dsm ingest`, whose
# tasks run on the workers and write straight to the store.

# %%
make_synthetic_cube(root, size="tiny", space_chunk=cfg.chunks.space, time_chunk=cfg.chunks.time,
                    overwrite=True)  # replaces a twin an earlier run left at ROOT
fs, path = root.fs()
print(type(fs).__name__, path)
for entry in fs.ls(path, detail=True):
    size = fs.du(entry["name"]) if entry["type"] == "directory" else entry["size"]
    print(f"  {entry['name'].rsplit('/', 1)[-1]:<12} {entry['type']:<10} {size / 1e6:8.2f} MB")

# %% [markdown]
# ## Train the pooled model
# The samples of every period are aggregated on the workers, the cross-validation fits
# (candidate x fold) spread over them, and each model (the full one and its reduced
# companions) is refitted with `xgboost.dask`; the models land in `ROOT/models/fusion/`, next
# to the JSON card that records the search and the fusion error model.

# %%
report = train(cfg, client, force=True)  # force: retrain if an earlier run left one
card = report.fusion
print("\n".join(f"{v.name:<8} {v.n_train:>5} samples, CV RMSE {v.cv_rmse:.4f}, {v.n_rounds} rounds"
                for v in card.variants))
print(f"fusion weight of SMAP {card.error_model['weight']:.2f}")
period = periods(cfg.dates.start, cfg.dates.end)[1]

# %% [markdown]
# ## Predict that period across the workers
# `predict(..., only_days=...)` restricts the run to the time chunks (here 8 days deep) that
# hold those days. Each task owns one (time chunk, 72 x 72 pixel) block of the output store:
# it reads its predictors from the cube, loads the models once per worker, predicts, and
# writes its block to `ROOT/sm.zarr` itself; only a small summary goes back to the client,
# which records the days as done once all their blocks landed. Before the blocks, the workers
# aggregate every cell-day's predictors to 36 km, so the client can fuse the model's cell
# means with SMAP and send each block its fused cell means. `get_task_stream` records
# where and when each task ran.

# %%
with get_task_stream(client) as stream:
    result = predict(cfg, client, only_days=period.days, overwrite=True)  # overwrite: start the store afresh
print(f"predicted {len(result.predicted)} days ({result.predicted[0]} .. {result.predicted[-1]}), "
      f"{result.pixels:,} pixel-days in {result.seconds:.1f} s; failed {len(result.failed)}")

tasks = pd.DataFrame([{"worker": t["worker"], "kind": key_split(t["key"]), "start": s["start"], "stop": s["stop"]}
                      for t in stream.data for s in t["startstops"] if s["action"] == "compute"])
tasks["seconds"] = tasks["stop"] - tasks["start"]
# before the blocks, the fusion method aggregates every cell-day's predictors on the workers
tasks["kind"] = tasks["kind"].where(tasks["kind"] == "run_block", "cell means (aggregation)")
t0 = tasks["start"].min()
fig, ax = plt.subplots(figsize=(11, 2.8), constrained_layout=True)
names = sorted(tasks["worker"].unique())
colors = dict(zip(sorted(tasks["kind"].unique()), plt.get_cmap("tab10").colors))
for i, w in enumerate(names):
    for _, t in tasks[tasks["worker"] == w].iterrows():
        ax.barh(i, t["seconds"], left=t["start"] - t0, color=colors[t["kind"]], edgecolor="k", height=0.6)
ax.set_yticks(range(len(names)), names)
ax.set_xlabel("seconds since the first task")
ax.set_title(f"{len(tasks)} tasks of period {period.name} on {len(names)} workers "
             "(each: 8 days x 72 x 72 pixels; a worker's first task also loads the models)")
ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()], labels=list(colors), fontsize=8)
tasks.groupby("worker").agg(tasks=("kind", "size"), busy_seconds=("seconds", "sum")).round(2)

# %% [markdown]
# A second call finds the period's days done in the store's run ledger and has nothing to do:
# the output is written as independent chunk-aligned regions and a day counts as done only
# after all its blocks landed, so a run that died midway is simply run again.

# %%
again = predict(cfg, client, only_days=period.days)
print(f"second run: predicted {len(again.predicted)}, skipped {len(again.skipped)} days already done")

# %% [markdown]
# ## Read back from `ROOT`
# Any machine with the URL and the storage options can open the products: with dsm
# (`open_products` checks the store's kind) or plain xarray (Zarr v3, no consolidated metadata).

# %%
output = cfg.stores.ref("output")
ds = dsm.products.open_products(output)
plain = xr.open_zarr(output.url, storage_options=output.zarr_options, consolidated=False)
print("days done:", len(dsm.ledger.read(output).done), "of", ds.sizes["time"], "| same data with xarray:",
      plain.sm.sel(time=result.predicted[0]).equals(ds.sm.sel(time=result.predicted[0])))
sm = ds.sm.sel(time=slice(str(period.start), str(period.end)))
grid = sm.isel(time=[0, 5, 10, 15]).plot(col="time", cmap="YlGnBu", figsize=(14, 3.6),
                                          cbar_kwargs={"label": "m3/m3"})
for ax in grid.axs.flat:
    ax.set_aspect("equal")
    ax.set_xlabel("")
    ax.set_ylabel("")

# %% [markdown]
# Writing from the cluster works the same way: `dsm.analysis.write_means` computes the
# period's mean maps on the workers, which write their chunks straight to `ROOT/means.zarr`.

# %%
means_ref = root.join("means.zarr")
dsm.analysis.write_means(sm, means_ref, client)
means = xr.open_zarr(means_ref.url, storage_options=means_ref.zarr_options, consolidated=False)
print(means_ref, dict(means.sizes))
print(sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path)))

# %%
session.close()  # closes the client; a LocalCluster started above is shut down, a remote one keeps running
