"""Writing the synthetic twin: the predictor cube, the separate truth store and stations.

The simulation itself is pure (:mod:`dsm.synthetic`); this module is its IO edge. Daily
variables are buffered one time chunk at a time and written by chunk-aligned region writes;
composites are written as their windows close. The truth goes to its own store (kind
``truth``), never into the cube, so no pipeline stage can read it by mistake.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from dsm import cube, files, fingerprint, store
from dsm.antecedent import write_antecedent
from dsm.config import PrecipInput, RainConfig, TwinConfig
from dsm.cube import Layout, VariableSpec, whole_chunks
from dsm.extend import resize_time
from dsm.periods import composite_8day_of, time_position
from dsm.progress import bar_disabled
from dsm.remap import remap_to_region
from dsm.storeref import StoreRef
from dsm.synthetic import (
    Day,
    StationRecorder,
    TwinSpec,
    composite_8day,
    composite_16day,
    composite_ends,
    describe,
    make_static,
    place_stations,
    simulate,
)
from dsm.synthetic_precip import ProductGrid, product_days

TRUTH_SPECS: tuple[VariableSpec, ...] = (
    VariableSpec("sm_true", "daily", "m3 m-3", "True 1 km surface soil moisture of the twin",
                 (0.0, 1.0), "volume_fraction_of_condensed_water_in_soil", "dsm.synthetic"),
    cube.SPECS["land_mask"],
)


@dataclass(frozen=True)
class TwinStores:
    """Where a twin was written: its cube, its truth store and its station folder."""

    cube: StoreRef
    truth: StoreRef
    stations: StoreRef

    @property
    def insitu_csv(self) -> StoreRef:
        """In situ station table (station, network, lon, lat, depth, time, value)."""
        return self.stations.join("insitu.csv")

    @property
    def weather_csv(self) -> StoreRef:
        """Weather station table (station, lon, lat, elevation, time, precip_mm, tair_c)."""
        return self.stations.join("weather.csv")


def written_prefix(ranges: Any) -> int:
    """The end of the first range of written rows when it starts at row 0 (else 0): the rows
    ``[0, end)`` a build has written without a gap."""
    if ranges and int(ranges[0][0]) == 0:
        return int(ranges[0][1])
    return 0


def twin_complete(attrs: Mapping[str, Any], n_days: int) -> bool:
    """Whether a twin cube of attributes ``attrs`` has every one of its ``n_days`` days written
    (daily inputs and antecedent indices: :data:`dsm.store.WRITTEN_ATTR`)."""
    rows = attrs.get(store.WRITTEN_ATTR, {})
    return all(written_prefix(rows.get(v)) >= n_days for v in ("lst", "api_age"))


def _dataset(coords: Mapping[str, Any], arrays: Mapping[str, tuple[tuple[str, ...], np.ndarray]]) -> xr.Dataset:
    return xr.Dataset({k: (dims, a) for k, (dims, a) in arrays.items()}, coords=dict(coords))


class _Writer:
    """Buffers daily data per time chunk and writes regions of the cube and the truth."""

    def __init__(self, stores: TwinStores, layout: Layout, seed: int) -> None:
        self.stores, self.layout = stores, layout
        self.cube = cube.open_cube(stores.cube)
        # rows already written (a twin extended in time, or resumed): their chunks are kept
        self.covered = {k: written_prefix(v) for k, v in self.cube.attrs.get(store.WRITTEN_ATTR, {}).items()}
        self.truth = store.open_store(stores.truth, "truth")
        self.times = self.cube.indexes["time"]
        self.buffer: list[Day] = []
        self.precip_times = self.cube.indexes["time_precip"]
        self.rain: list[tuple[dt.date, np.ndarray]] = []
        self.product_grid = ProductGrid.over(layout.region)
        self.product_rng = np.random.default_rng([seed, 3])
        self.written: list[dict[str, list[int]]] = []

    def _kept(self, ds: xr.Dataset) -> bool:
        """Whether every variable of ``ds`` lies within the rows already written (left as stored)."""
        for name, var in ds.data_vars.items():
            rows = store.region_slices(self.cube, var)[var.dims[0]]
            if rows.stop > self.covered.get(str(name), 0):
                return False
        return True

    def _cube(self, ds: xr.Dataset) -> bool:
        """Write ``ds`` into the cube, noting the rows written (:data:`dsm.store.WRITTEN_ATTR`),
        unless its rows are already written; returns whether it wrote."""
        if self._kept(ds):
            return False
        self.written.append(store.first_axis_ranges(store.write_region(self.stores.cube, ds, self.cube)))
        return True

    def record_written(self) -> None:
        """Record in the cube every row the twin wrote (after the last write)."""
        store.record_written(self.stores.cube, self.cube.attrs, *self.written)

    def precip(self, d: Day) -> None:
        """Buffer the day's rain for the 0.1 degree product; write one time chunk at a time."""
        t = np.datetime64(d.date, "ns")
        if t not in self.precip_times:
            return
        self.rain.append((d.date, d.rain))
        index = time_position(self.precip_times, t)
        if (index + 1) % self.layout.time_chunk == 0 or index + 1 == len(self.precip_times):
            dates = [date for date, _ in self.rain]
            product = product_days([r for _, r in self.rain], dates, self.product_grid, self.product_rng)
            fine = remap_to_region(product, self.layout.region, PrecipInput.model_fields["remap"].default)
            coords = {"time_precip": [np.datetime64(x, "ns") for x in dates],
                      "y": self.cube["y"].values, "x": self.cube["x"].values}
            ds = _dataset(coords, {"precip": (("time_precip", "y", "x"), fine.astype(np.float32))})
            self._cube(ds)
            self.rain = []

    def static(self, static: Any) -> None:
        fine = {"y": self.cube["y"].values, "x": self.cube["x"].values}
        water = ~static.land
        arrays = {k: getattr(static, k).copy() for k in ("dem", "slope", "aspect", "sand", "silt", "clay")}
        for k in ("sand", "silt", "clay"):
            arrays[k][water] = np.nan
        ds = _dataset(fine, {k: (("y", "x"), v.astype(np.float32)) for k, v in arrays.items()})
        ds["land_mask"] = (("y", "x"), static.land.astype(np.uint8))
        if self._cube(ds):
            store.write_region(self.stores.truth, ds[["land_mask"]], self.truth)

    def day(self, d: Day) -> None:
        if self.layout.start <= d.date <= self.layout.end:
            self.buffer.append(d)
            index = time_position(self.times, np.datetime64(d.date, "ns"))
            if (index + 1) % self.layout.time_chunk == 0 or index + 1 == len(self.times):
                self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        b = self.buffer
        coords = {"time": [np.datetime64(d.date, "ns") for d in b], "y": self.cube["y"].values,
                  "x": self.cube["x"].values, "cy": self.cube["cy"].values, "cx": self.cube["cx"].values}
        daily = ("time", "y", "x")
        ds = _dataset(coords, {
            "lst": (daily, np.stack([d.lst for d in b])),
            "albedo": (daily, np.stack([d.albedo for d in b])),
            "smap_sm": (("time", "cy", "cx"), np.stack([d.smap for d in b])),
        })
        if self._cube(ds):
            truth = _dataset(coords, {"sm_true": (daily, np.stack([d.truth for d in b]))})
            store.write_region(self.stores.truth, truth, self.truth)
        self.buffer = []

    def composite(self, axis: str, start: dt.date, fields: Mapping[str, np.ndarray]) -> None:
        coords = {axis: [np.datetime64(start, "ns")], "y": self.cube["y"].values, "x": self.cube["x"].values}
        if np.datetime64(start, "ns") not in self.cube.indexes[axis]:
            return  # a composite outside the configured dates
        ds = _dataset(coords, {k: ((axis, "y", "x"), v[None]) for k, v in fields.items()})
        self._cube(ds)


def build_twin(
    stores: TwinStores,
    spec: TwinSpec,
    space_chunk: int = 720,
    time_chunk: int = 8,
    overwrite: bool = False,
    progress: bool = True,
    rain: RainConfig | None = None,
    extend: bool = False,
) -> TwinStores:
    """Simulate the twin of ``spec`` and write its cube, truth store and station tables.

    With ``extend`` the existing stores (made by the same spec to an earlier end) are resized
    to ``spec.end`` (:func:`dsm.extend.resize_time`) and only what they lack is written: the
    rows not recorded written (:data:`dsm.store.WRITTEN_ATTR`: the new days, the last time
    chunk that was partial, the new composites, and whatever an interrupted run left unwritten)
    and the antecedent indices from the first such day. The simulation runs from the start
    again (it is sequential), so the stores hold the same values as a twin built to
    ``spec.end`` at once; the station tables are rewritten whole.

    The cube gets the twin's 0.1 degree precipitation product (:mod:`dsm.synthetic_precip`)
    on the 1 km grid from ``rain.spinup_days`` (whole time chunks) before the first day, and
    the antecedent precipitation indices computed from it (:func:`dsm.antecedent.write_antecedent`).

    Parameters
    ----------
    stores
        The cube, the truth store and the station folder (each a :class:`~dsm.storeref.StoreRef`:
        a local path or fsspec URL with its options).
    spec
        Region, dates and seed of the twin; the same spec always gives the same bytes.
    space_chunk, time_chunk
        Chunking of the stores (``space_chunk`` a multiple of 36).
    overwrite
        Replace existing stores; without it an existing store is an error (unless ``extend``).
    progress
        Show a progress bar over the simulated days.
    rain
        Spin-up and gap settings of the antecedent indices (default: :class:`~dsm.config.RainConfig`).
    """
    rain = rain or RainConfig()
    layout = Layout(spec.region, spec.start, spec.end, space_chunk, time_chunk,
                    whole_chunks(rain.spinup_days, time_chunk))
    attrs = dict(describe(spec))
    settings = fingerprint.cube_record(None, TwinConfig(seed=spec.seed, n_insitu=spec.n_insitu, n_weather=spec.n_weather),
                                       rain)
    cube_tpl = cube.template(layout, cube.SCHEMA, {"title": "dsm predictor cube (synthetic twin)", **attrs,
                                                   fingerprint.CUBE_ATTR: settings})
    truth_tpl = cube.template(layout, TRUTH_SPECS, {"title": "dsm twin 1 km truth", **attrs})
    if extend:
        for ref, tpl in ((stores.cube, cube_tpl), (stores.truth, truth_tpl)):
            resize_time(ref, tpl, attrs)
    else:
        store.create(stores.cube, cube_tpl, "cube", overwrite)
        store.create(stores.truth, truth_tpl, "truth", overwrite)

    rng_static = np.random.default_rng(spec.seed)
    static = make_static(spec.region, rng_static)
    writer = _Writer(stores, layout, spec.seed)
    writer.static(static)
    recorder = StationRecorder(place_stations(spec, static, spec.seed), spec.seed)

    history = max(0, (spec.sim_start - layout.precip_start).days)
    n_days = (spec.sim_end - spec.sim_start).days + 1 + history
    window: list[Day] = []
    for d in tqdm(simulate(spec, static, rng_static, history), total=n_days, desc="twin days", unit="day",
                  disable=bar_disabled(progress)):
        writer.precip(d)
        if d.date < spec.sim_start:
            continue
        window.append(d)
        writer.day(d)
        if spec.start <= d.date <= spec.end:
            recorder.record(d)
        ends_8, ends_16 = composite_ends(d.date)
        if ends_8:
            w8 = window[-composite_8day_of(d.date).ndays:]
            writer.composite("time_8d", w8[0].date, composite_8day(w8))
        if ends_16:
            writer.composite("time_16d", window[0].date, composite_16day(window))
            window = []
    writer.flush()
    writer.record_written()
    write_antecedent(stores.cube, rain, from_index=writer.covered.get("api_age", 0))

    insitu, weather = recorder.frames()
    fs, root = stores.stations.fs()
    files.make_folder(fs, root)
    for table, ref in ((insitu, stores.insitu_csv), (weather, stores.weather_csv)):
        files.write_url(ref, table.to_csv(index=False, date_format="%Y-%m-%d"))
    return stores


# one candidate per model and 2 folds: a quick demonstration, not a tuned product
QUICK_TRAINING: dict[str, Any] = {
    "pooled": False, "cv_folds": 2,
    "fusion": {"grid": {"max_depth": [4], "min_child_weight": [5], "reg_lambda": [1.0]}, "max_rounds": 200,
               "cv_folds": 3},
    "grids": {
        "svr": {"C": [1.0], "epsilon": [0.02]}, "ann": {"hidden_layer_sizes": [[32]], "alpha": [1e-2]},
        "rf": {"n_estimators": [50], "max_depth": [8]},
        "xgb": {"n_estimators": [100], "max_depth": [4], "learning_rate": [0.1]}},
}


#: the demo's comparison runs beside the default one: folder -> (label, configuration changes)
COMPARISONS: dict[str, tuple[str, dict[str, Any]]] = {
    "rao2022": ("rao2022", {"training": {"method": "rao2022"}}),
    "no-rain": ("fusion, no rain", {"rain": {"predictors": "off"}}),
}


def demo_config(size: str = "default", seed: int = 42, root: str | None = None, quick: bool = False,
                comparison: str | None = None, compare: bool = False) -> dict[str, Any]:
    """The run configuration of the standard twin of ``size`` (what ``dsm demo`` writes).

    Parameters
    ----------
    size
        ``"default"`` (8 x 8 SMAP cells, 2016) or ``"tiny"`` (4 x 4 cells, 48 days).
    seed
        Seed of the twin.
    root
        Folder or fsspec URL the stores go under; None leaves them relative (to the YAML file
        the configuration is written to).
    quick
        One hyperparameter candidate per model, 2 CV folds and no pooled model
        (:data:`QUICK_TRAINING`), for notebooks and examples.
    comparison
        A key of :data:`COMPARISONS`: the run of the paper's method (``rao2022``) or of the
        default method without rain predictors (``no-rain``), whose models and products then
        go under that folder beside the shared twin stores, with the stages cube, train and
        predict only.
    compare
        Score every comparison's products beside this run's in the twin skill
        (``validation.compare``).

    Returns
    -------
    dict
        The raw configuration, for :func:`dsm.config.from_dict` or a YAML file.
    """
    if comparison is not None and comparison not in COMPARISONS:
        raise ValueError(f"comparison {comparison!r} is not one of {sorted(COMPARISONS)}")
    spec = TwinSpec.of_size(size, seed)
    r = spec.region
    names: dict[str, str | None] = {"cube": "cube.zarr", "truth": "truth.zarr", "stations": "stations",
                                    "models": "models", "output": "sm.zarr", "cog": "cog", "stac": "stac"}

    def where(v: str) -> str:
        return v if root is None else f"{root.rstrip('/')}/{v}"

    if comparison is not None:
        names.update(models=f"{comparison}/models", output=f"{comparison}/sm.zarr", cog=None, stac=None)
    raw: dict[str, Any] = {
        "region": {"cells": [r.row0, r.col0, r.nrows, r.ncols]},
        "dates": {"start": spec.start.isoformat(), "end": spec.end.isoformat()},
        "stores": {k: v if v is None else where(v) for k, v in names.items()},
        "cluster": {"n_workers": 2, "threads_per_worker": 1},
        "chunks": {"space": 144, "time": 8},
        "twin": {"seed": seed},
    }
    training: dict[str, Any] = dict(QUICK_TRAINING) if quick else {}
    if comparison is not None:
        changes = COMPARISONS[comparison][1]
        training.update(changes.get("training", {}))
        raw.update({k: v for k, v in changes.items() if k != "training"})
        raw["run"] = {"stages": ["cube", "train", "predict"]}
    validation: dict[str, Any] = {}
    if size == "tiny":  # 4 x 4 cells give at most 256 samples a period, about 60-75 valid
        training["min_samples"] = 40
        validation["partial_correlation_freq"] = "W"  # 48 days hold too few months
    if compare:
        validation["compare"] = {label: where(f"{key}/sm.zarr") for key, (label, _) in COMPARISONS.items()}
    if validation:
        raw["validation"] = validation
    if training:
        raw["training"] = training
    return raw
