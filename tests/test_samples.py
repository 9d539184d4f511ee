"""Sample tables: counts and values against an independent per-cell computation."""

from __future__ import annotations

import datetime as dt

import dask
import numpy as np
import pandas as pd
import pytest
from dask.delayed import Delayed
from distributed import get_task_stream

from dsm.config import PAPER_PREDICTORS
from dsm.cube import SPECS, open_cube
from dsm.errors import InputError
from dsm.periods import composite_8day_of, periods
from dsm.samples import NEAREST_OFFSET, aggregate, empty_table, sample_graph


@pytest.fixture(scope="module")
def cube(tiny_twin):
    return open_cube(tiny_twin.cube)


def _independent(ds, period, how: str, frac: float) -> dict[tuple[np.datetime64, int], dict[str, float]]:
    """Per (day, cell) loops over the loaded cube, written without dsm.samples or block_reduce_mean."""
    land = ds["land_mask"].values == 1
    r = ds.attrs["region"]
    times = set(pd.DatetimeIndex(ds["time"].values).date)
    loaded = {p: ds[p].load() for p in (*PAPER_PREDICTORS, "smap_sm")}
    out = {}
    for day in period.days:
        if day not in times:
            continue
        t = np.datetime64(day, "ns")
        fields = {}
        for p in PAPER_PREDICTORS:
            axis = SPECS[p].axis
            v = loaded[p]
            if axis == "static":
                fields[p] = v.values
            elif axis == "daily":
                fields[p] = v.sel(time=t).values
            elif axis == "8day":
                fields[p] = v.sel(time_8d=np.datetime64(composite_8day_of(day).start, "ns")).values
            else:
                fields[p] = v.sel(time_16d=np.datetime64(period.start, "ns")).values
        sm = loaded["smap_sm"].sel(time=t).values
        for i in range(r["nrows"]):
            for j in range(r["ncols"]):
                if not np.isfinite(sm[i, j]):
                    continue
                row = {}
                for p, f in fields.items():
                    block = f[i * 36:(i + 1) * 36, j * 36:(j + 1) * 36]
                    lblock = land[i * 36:(i + 1) * 36, j * 36:(j + 1) * 36]
                    if how == "mean":
                        vals = [float(x) for x, ok in zip(block.ravel(), lblock.ravel()) if ok and np.isfinite(x)]
                        row[p] = sum(vals) / len(vals) if vals and len(vals) >= frac * 1296 else np.nan
                    else:
                        x = block[18, 18]
                        row[p] = float(x) if lblock[18, 18] and np.isfinite(x) else np.nan
                if all(np.isfinite(list(row.values()))):
                    cell = (r["row0"] + i) * 964 + (r["col0"] + j)
                    out[(t, cell)] = {**row, "sm": float(sm[i, j])}
    return out


@pytest.mark.parametrize("how,frac", [("mean", 0.5), ("mean", 0.9), ("nearest", 0.5)])
def test_sample_counts_and_values_match_an_independent_count(cube, how, frac):
    ps = periods(dt.date(2016, 6, 9), dt.date(2016, 7, 26))
    for period in ps:
        graph = sample_graph(cube, period, PAPER_PREDICTORS, how, frac)
        assert isinstance(graph, Delayed)
        table = graph.compute(scheduler="sync")
        expect = _independent(cube, period, how, frac)
        assert len(table) == len(expect) > 0
        got = {(np.datetime64(d, "ns"), int(c)) for d, c in zip(table["date"], table["cell"])}
        assert got == set(expect)
        for rec in table.head(10).to_dict("records"):
            ref = expect[(np.datetime64(rec["date"], "ns"), int(rec["cell"]))]
            for p in (*PAPER_PREDICTORS, "sm"):
                assert rec[p] == pytest.approx(ref[p], rel=1e-5), p
        assert table["date"].between(pd.Timestamp(period.start), pd.Timestamp(period.end)).all()
        assert (table["cell"] == table["row"] * 964 + table["col"]).all()


def test_mean_threshold_drops_cells():
    fine = np.ones((1, 72, 36), np.float32)
    fine[0, :20, :] = np.nan  # 20 of 36 rows missing in the first cell: 44 % valid
    land = np.ones((72, 36), bool)
    assert np.isnan(aggregate(fine, land, "mean", 0.5)[0, 0, 0])
    assert aggregate(fine, land, "mean", 0.4)[0, 0, 0] == 1.0
    assert aggregate(fine, ~land, "mean", 0.01).shape == (1, 2, 1)
    assert np.isnan(aggregate(fine, ~land, "mean", 0.01)).all()


def test_nearest_takes_pixel_18_18():
    fine = np.arange(72 * 72, dtype=np.float32).reshape(72, 72)
    out = aggregate(fine, np.ones_like(fine, bool), "nearest")
    assert NEAREST_OFFSET == 18
    assert out[1, 0] == fine[36 + 18, 18]


def test_missing_predictor_is_named(cube):
    period = periods(dt.date(2016, 6, 9), dt.date(2016, 6, 9))[0]
    with pytest.raises(InputError, match="lst"):
        sample_graph(cube.drop_vars("lst"), period, PAPER_PREDICTORS)


def test_period_outside_the_cube_gives_an_empty_table(cube):
    period = periods(dt.date(2016, 1, 1), dt.date(2016, 1, 1))[0]
    table = sample_graph(cube, period, PAPER_PREDICTORS).compute(scheduler="sync")
    assert len(table) == 0
    assert list(table.columns) == list(empty_table(PAPER_PREDICTORS).columns)


@pytest.mark.parametrize("options", [dict(keep="all", count_column=True),
                                     dict(keep="smap", ranges=True, how="nearest"),
                                     dict(keep="smap", ranges=True, min_valid_fraction=0.6),
                                     dict(keep="complete", min_valid_fraction=0.8)])
def test_tables_computed_by_block_on_the_workers_equal_the_whole_cube_graph(cube, client, options):
    """One task per (period, 72 x 72 block: four of them) and one merge per period: the same
    rows, order, values and counts of masked values as the whole-cube graph, for each kind of
    table."""
    from dsm.features import feature_names
    from dsm.sample_tables import sample_tables

    preds = list(PAPER_PREDICTORS)
    feats = list(feature_names(preds))
    chosen = list(periods(dt.date(2016, 6, 9), dt.date(2016, 7, 26)))
    assert cube["land_mask"].encoding["chunks"] == (72, 72) and cube.sizes["y"] == 144
    with get_task_stream(client) as stream:
        by_block = sample_tables(client, cube, chosen, preds, features=feats, **options)
    # the oracle: each period's whole-cube graph, computed here (not through the cluster)
    whole = dask.compute(*[sample_graph(cube, p, preds, features=feats, **options) for p in chosen], scheduler="sync")
    assert len(by_block) == len(whole) == len(chosen) == 3
    for got, want in zip(by_block, whole, strict=True):
        assert len(want) > 0
        pd.testing.assert_frame_equal(got, want)
        assert got.attrs == want.attrs and set(want.attrs) == {"out_of_range"}
    keys = [str(t["key"]) for t in stream.data]
    assert sum(k.startswith("block_table") for k in keys) == 3 * 4  # one per (period, block)
    assert sum(k.startswith("_merge") for k in keys) == 3 and len(keys) == 15  # and one merge per period


def test_the_tables_of_every_predictor_set_come_from_one_task_per_period_and_block(cube, client):
    """table_set_futures: a task per (period, block) tables all the sets, a merge per (period,
    set); each table the whole-cube graph's of its set."""
    from dsm.sample_tables import table_set_futures

    sets = [list(PAPER_PREDICTORS), [p for p in PAPER_PREDICTORS if p != "lst"], ["dem", "slope", "aspect"]]
    chosen = list(periods(dt.date(2016, 6, 9), dt.date(2016, 7, 10)))
    with get_task_stream(client) as stream:
        got = [client.gather(fs) for fs in table_set_futures(client, cube, chosen, sets, min_valid_fraction=0.6)]
    assert len(got) == len(chosen) == 2
    for period, tables in zip(chosen, got, strict=True):
        want = dask.compute(*[sample_graph(cube, period, s, min_valid_fraction=0.6) for s in sets], scheduler="sync")
        assert [len(t) for t in want] != [len(want[0])] * len(sets)  # the sets keep different rows
        for table, oracle in zip(tables, want, strict=True):
            assert len(oracle) > 0
            pd.testing.assert_frame_equal(table, oracle)
            assert table.attrs == oracle.attrs
    keys = [str(t["key"]) for t in stream.data]
    assert sum(k.startswith("block_tables") for k in keys) == 2 * 4  # not one per set
    assert sum(k.startswith("_merge") for k in keys) == 2 * 3 and len(keys) == 14
