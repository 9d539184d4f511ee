"""The fused 36 km cell means of the default method, for every cell and day of a run.

Before the 1 km prediction, the fusion method needs, per SMAP cell and day:

1. ``m``: the pooled model's cell mean, the model applied to the cell's aggregated
   features, the very quantity it was trained and cross-validated on (so the error model's
   ``var_M``, estimated from held-out samples, applies to it exactly). The features of every
   cell-day are a dask graph over the cube (:func:`dsm.samples.sample_graph`, ``keep="all"``)
   computed on the workers; each cell-day uses the first model variant whose features are
   valid (full, then the reduced companions, then the static model);
2. the fusion of ``m`` with the day's SMAP and the increments carried over days without it
   (:func:`dsm.fusion.fuse`, with the error model of the model card).

The result is small (days x cells) and travels to the block tasks with their jobs. It is a
pure function of the cube and the stored models, so every run computes the same bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client

from dsm.features import doy_terms
from dsm.fusion import ErrorModel, FusedCells, fuse
from dsm.models.cards import FusionCard, ModelRecord
from dsm.periods import periods
from dsm.samples import sample_graph, table_to_grid


@dataclass(frozen=True)
class BlockCells:
    """The fused cell means of one block (its days x its cells), sent with its job.

    ``halo`` holds the field to smooth (the increments or the fused cell means) on the
    block's cells plus one ring of neighbours (NaN beyond the region), for smoothing across
    cell edges.
    """

    cell_mean: np.ndarray  # (t, cy, cx) C = m + increment
    increment: np.ndarray
    variance: np.ndarray  # error variance of C
    state: np.ndarray  # 0 model only, 1 fused with the day's SMAP, 2 increment carried
    halo: np.ndarray | None = None


def cell_model(table: pd.DataFrame, records: Sequence[ModelRecord], load: Callable[[ModelRecord], Any]) -> np.ndarray:
    """The model's cell mean of every row: the first variant whose features are all valid."""
    out = np.full(len(table), np.nan, np.float32)
    todo = np.ones(len(table), bool)
    doy = doy_terms(table["date"].to_numpy()) if len(table) else np.zeros((0, 2), np.float32)
    for rec in records:
        cols = [f for f in rec.features if f not in ("doy_sin", "doy_cos")]
        X = np.concatenate([table.loc[:, cols].to_numpy(np.float32), doy], axis=1)
        ok = todo & np.isfinite(X).all(axis=1)
        if ok.any():
            out[ok] = np.asarray(load(rec).predict(X[ok]), np.float32)
        todo &= ~ok
    return out


def fused_cells(client: Client, ds: xr.Dataset, card: FusionCard, load: Callable[[ModelRecord], Any],
                start: dt.date, end: dt.date, aggregation: str = "mean", min_valid_fraction: float = 0.5
                ) -> tuple[FusedCells, np.ndarray]:
    """Fused cell means over the cube's time axis; returns them and the model cell means ``m``.

    Days outside ``start``..``end`` have no model value (state 0, NaN).
    """
    features = sorted({f for r in card.variants for f in r.features if f not in ("doy_sin", "doy_cos")})
    graphs = [sample_graph(ds, p, card.predictors, aggregation, min_valid_fraction,  # type: ignore[arg-type]
                           features=features, keep="all") for p in periods(start, end)]
    tables = [t for t in client.gather(client.compute(graphs)) if len(t)]
    r = ds.attrs["region"]
    m = np.full((ds.sizes["time"], r["nrows"], r["ncols"]), np.nan, np.float32)
    if tables:
        table = pd.concat(tables, ignore_index=True)
        m = table_to_grid(table, cell_model(table, card.variants, load), ds)
    smap = ds["smap_sm"].values.astype(np.float32)
    return fuse(m, smap, ErrorModel.from_dict(card.error_model)), m


def block_cells(fused: FusedCells, t0: int, t1: int, cy0: int, cy1: int, cx0: int, cx1: int,
                smooth: str = "none") -> BlockCells:
    """The slice of one block (time indices of the cube, cell indices of the region), with the
    halo of the field that ``smooth`` names (``increments``, ``cell_means``; ``none``: no halo)."""
    sl = (slice(t0, t1), slice(cy0, cy1), slice(cx0, cx1))
    ring = None
    if smooth != "none":
        field = fused.increment if smooth == "increments" else fused.cell_mean
        ny, nx = field.shape[1:]
        padded = np.pad(field[t0:t1].astype(np.float32), ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
        ring = padded[:, cy0:cy1 + 2, cx0:cx1 + 2].copy()
        assert ring.shape[1:] == (cy1 - cy0 + 2, cx1 - cx0 + 2) and cy1 <= ny and cx1 <= nx
    return BlockCells(fused.cell_mean[sl].astype(np.float32), fused.increment[sl].astype(np.float32),
                      fused.variance[sl].astype(np.float32), fused.state[sl].copy(), ring)


__all__ = ["BlockCells", "cell_model", "fused_cells", "block_cells"]
