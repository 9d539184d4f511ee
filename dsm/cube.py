"""The predictor cube: its schema, its template, opening it, and a summary of it.

Variables live on their native time axes (see :data:`AXES`): static ``(y, x)``; daily
``(time, y, x)``; 8-day ``(time_8d, y, x)``; 16-day ``(time_16d, y, x)``; SMAP on the 36 km
grid ``(time, cy, cx)``. ``time_8d`` and ``time_16d`` hold the first day of each composite.
Spatial chunks are multiples of 36 so no 36 km cell straddles a chunk; the 36 km chunks are
the same areas (``space // 36`` cells).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from pyproj import CRS

from dsm import store
from dsm.errors import ConfigError, StoreError
from dsm.grid import CRS_WKT, EPSG, FINE_PER_COARSE, Region
from dsm.periods import composite_8day_of, composites_8day, days, period_of, periods
from dsm.storeref import StoreRef

FINE_GRID_MAPPING = "spatial_ref"  # 1 km variables
COARSE_GRID_MAPPING = "spatial_ref_36km"  # SMAP variables

AXES: dict[str, tuple[str, ...]] = {
    "static": ("y", "x"),
    "daily": ("time", "y", "x"),
    "8day": ("time_8d", "y", "x"),
    "16day": ("time_16d", "y", "x"),
    "smap": ("time", "cy", "cx"),
    "precip": ("time_precip", "y", "x"),
}

#: e-folding times (days) of the antecedent precipitation indices (:mod:`dsm.rain`)
API_EFOLDING_DAYS: tuple[int, ...] = (2, 5, 15)


def api_name(efolding_days: int) -> str:
    """Cube variable of the antecedent precipitation index with e-folding ``efolding_days``."""
    return f"api_{efolding_days}d"


API_NAMES: tuple[str, ...] = tuple(api_name(d) for d in API_EFOLDING_DAYS)
#: valid maximum of daily precipitation (mm): above the world record, 1825 mm in 24 h (the
#: precipitation readers refuse files with more, ``dsm.ingest.precip.MAX_DAILY_MM``)
PRECIP_MAX_MM = 2000.0


def api_max(efolding_days: int) -> float:
    """Valid maximum of an antecedent precipitation index: every day at :data:`PRECIP_MAX_MM`,
    ``PRECIP_MAX_MM / (1 - exp(-1/e))``, rounded up to whole mm."""
    return float(np.ceil(PRECIP_MAX_MM / -np.expm1(-1.0 / efolding_days)))
#: the rain variables: a cube made before them opens without them (they are optional)
RAIN_VARS: tuple[str, ...] = ("precip", *API_NAMES, "api_age")
#: predictors that come from the precipitation record
RAIN_PREDICTORS: tuple[str, ...] = ("precip", *API_NAMES)


@dataclass(frozen=True)
class VariableSpec:
    """One variable of a dsm store: axis, dtype, fill and CF attributes."""

    name: str
    axis: str
    units: str
    long_name: str
    valid_range: tuple[float, float]
    standard_name: str | None = None
    source: str = ""
    dtype: str = "float32"
    fill: Any = np.nan
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names of the variable."""
        return AXES[self.axis]

    def attrs(self) -> dict[str, Any]:
        """CF attributes of the variable."""
        a: dict[str, Any] = {"long_name": self.long_name, "units": self.units}
        if self.standard_name:
            a["standard_name"] = self.standard_name
        a["valid_min"], a["valid_max"] = self.valid_range
        if self.source:
            a["source"] = self.source
        a["grid_mapping"] = COARSE_GRID_MAPPING if self.axis == "smap" else FINE_GRID_MAPPING
        a.update(self.extra)
        return a


_V = VariableSpec
SCHEMA: tuple[VariableSpec, ...] = (
    _V("lst", "daily", "K", "Daytime land surface temperature, good-quality only",
       (150.0, 360.0), "surface_temperature", "MOD11A1 LST_Day_1km"),
    _V("albedo", "daily", "1", "Shortwave broadband surface albedo", (0.0, 1.0),
       "surface_albedo", "MCD43A3 / MCD43D58"),
    _V("lai", "8day", "1", "Leaf area index", (0.0, 10.0), "leaf_area_index", "MOD15A2H Lai_500m"),
    _V("fapar", "8day", "1", "Fraction of absorbed photosynthetically active radiation",
       (0.0, 1.0), None, "MOD15A2H Fpar_500m"),
    _V("ndwi", "8day", "1", "Normalised difference water index (B4-B2)/(B4+B2)", (-1.0, 1.0),
       None, "MOD09A1"),
    _V("lswi", "8day", "1", "Land surface water index (B2-B6)/(B2+B6)", (-1.0, 1.0), None, "MOD09A1"),
    _V("nsdsi", "8day", "1", "Normalised SWIR difference soil-moisture index (B6-B7)/B6",
       (-1.0, 1.0), None, "MOD09A1"),
    _V("ndvi", "16day", "1", "Normalised difference vegetation index", (-0.2, 1.0),
       "normalized_difference_vegetation_index", "MOD13A2"),
    _V("evi", "16day", "1", "Enhanced vegetation index", (-0.2, 1.0), None, "MOD13A2"),
    _V("dem", "static", "m", "Elevation above sea level", (-500.0, 9000.0), "surface_altitude", "SRTM"),
    _V("slope", "static", "degree", "Terrain slope", (0.0, 90.0), None, "computed from dem (Horn)"),
    _V("aspect", "static", "degree", "Terrain aspect: downslope direction clockwise from north",
       (0.0, 360.0), None, "computed from dem (Horn); 0 where flat"),
    _V("sand", "static", "percent", "Sand content of the topsoil", (0.0, 100.0), None, "soil texture"),
    _V("silt", "static", "percent", "Silt content of the topsoil", (0.0, 100.0), None, "soil texture"),
    _V("clay", "static", "percent", "Clay content of the topsoil", (0.0, 100.0), None, "soil texture"),
    _V("land_mask", "static", "1", "Land mask", (0, 1), None, "", "uint8", None,
       {"flag_values": [0, 1], "flag_meanings": "water land"}),
    _V("precip", "precip", "mm", "Daily precipitation on the 1 km grid (remapped gridded product)",
       (0.0, PRECIP_MAX_MM), "lwe_thickness_of_precipitation_amount", "inputs.precip (dsm.ingest.precip)",
       extra={"cell_methods": "time: sum (interval: 1 day)",
              "comment": "time_precip starts before the first day: the spin-up of the antecedent indices"}),
    *(_V(api_name(d), "daily", "mm", f"Antecedent precipitation index, e-folding {d} days",
         (0.0, api_max(d)), None, "dsm.rain: API_t = exp(-1/%d) API_(t-1) + P_t" % d) for d in API_EFOLDING_DAYS),
    _V("api_age", "daily", "day", "Days since the last missing day of the precipitation record (capped at 255)",
       (0, 255), None, "dsm.rain", "uint8", None),
    _V("smap_sm", "smap", "m3 m-3", "SMAP L3 36 km surface soil moisture, AM descending pass",
       (0.02, 0.5), "volume_fraction_of_condensed_water_in_soil", "SPL3SMP soil_moisture",
       extra={"comment": "top 5 cm; recommended-quality retrievals only; valid range: SPL3SMP's valid_min/max"}),
)  # fmt: skip
SPECS: dict[str, VariableSpec] = {v.name: v for v in SCHEMA}
PREDICTOR_NAMES: frozenset[str] = frozenset(v.name for v in SCHEMA if v.name not in ("land_mask", "smap_sm", "api_age"))


def layer_dim(name: str) -> str | None:
    """The time dimension of cube variable ``name`` (:data:`AXES`); None for a static layer
    (and a name the schema does not hold)."""
    axis = SPECS[name].axis if name in SPECS else "static"
    return None if axis == "static" else AXES[axis][0]


def layer_time(name: str, day: dt.date) -> tuple[str, dt.date] | None:
    """Where the cube holds variable ``name`` for ``day``: its time dimension and the label on
    it (``day`` itself on ``time`` and ``time_precip``; the first day of the 8-day or 16-day
    composite that contains it on ``time_8d`` / ``time_16d``); None for a static layer.

    The one rule for "the layers of a day", used by training (:func:`dsm.samples.predictor_layer`)
    and prediction (:func:`dsm.blocks.block_features`) alike.
    """
    dim = layer_dim(name)
    if dim is None:
        return None
    if dim == "time_8d":
        return dim, composite_8day_of(day).start
    if dim == "time_16d":
        return dim, period_of(day).start
    return dim, day


def whole_chunks(ndays: int, time_chunk: int) -> int:
    """``ndays`` rounded up to whole time chunks (the precipitation spin-up of a layout)."""
    return -(-ndays // time_chunk) * time_chunk


@dataclass(frozen=True)
class Layout:
    """Everything that fixes a store's shape: region, dates and chunking."""

    region: Region
    start: dt.date
    end: dt.date
    space_chunk: int = 720
    time_chunk: int = 8
    precip_spinup: int = 0  #: days of precipitation before ``start`` (a multiple of ``time_chunk``)

    def __post_init__(self) -> None:
        if self.space_chunk <= 0 or self.space_chunk % FINE_PER_COARSE:
            raise ConfigError(
                f"space chunk {self.space_chunk} is not a positive multiple of {FINE_PER_COARSE}"
            )
        if self.time_chunk < 1:
            raise ConfigError(f"time chunk {self.time_chunk} must be at least 1")
        if self.precip_spinup < 0 or self.precip_spinup % self.time_chunk:
            raise ConfigError(f"precipitation spin-up {self.precip_spinup} days is not a multiple of the "
                              f"time chunk {self.time_chunk}")

    @classmethod
    def from_config(cls, config: Any) -> Layout:
        """The layout of a :class:`dsm.config.Config`."""
        tc = config.chunks.time
        return cls(config.grid_region, config.dates.start, config.dates.end, config.chunks.space, tc,
                   whole_chunks(config.rain.spinup_days, tc))

    @property
    def precip_start(self) -> dt.date:
        """First day of the precipitation axis: ``start`` minus the spin-up."""
        return self.start - dt.timedelta(days=self.precip_spinup)

    def coords(self) -> dict[str, Any]:
        """Dimension and auxiliary coordinates with CF attributes."""
        r = self.region
        t = pd.DatetimeIndex([np.datetime64(d, "ns") for d in days(self.start, self.end)])
        t8 = pd.DatetimeIndex([np.datetime64(c.start, "ns") for c in composites_8day(self.start, self.end)])
        t16 = pd.DatetimeIndex([np.datetime64(c.start, "ns") for c in periods(self.start, self.end)])
        tp = pd.DatetimeIndex([np.datetime64(d, "ns") for d in days(self.precip_start, self.end)])
        xy = {"units": "m"}
        return {
            "time": ("time", t, {"standard_name": "time", "long_name": "day (UTC)", "axis": "T"}),
            "time_8d": ("time_8d", t8, {"long_name": "first day of the 8-day composite"}),
            "time_16d": ("time_16d", t16, {"long_name": "first day of the 16-day period"}),
            "time_precip": ("time_precip", tp, {"long_name": "day of precipitation (spin-up days first)"}),
            "y": ("y", r.fine_y, {**xy, "standard_name": "projection_y_coordinate", "axis": "Y"}),
            "x": ("x", r.fine_x, {**xy, "standard_name": "projection_x_coordinate", "axis": "X"}),
            "cy": ("cy", r.coarse_y, {**xy, "long_name": f"y of {r.coarse_km} km SMAP cell centres"}),
            "cx": ("cx", r.coarse_x, {**xy, "long_name": f"x of {r.coarse_km} km SMAP cell centres"}),
            "lat": ("y", r.fine_lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("x", r.fine_lon, {"standard_name": "longitude", "units": "degrees_east"}),
        }

    def chunks_for(self, dims: Sequence[str], sizes: Mapping[Hashable, int]) -> tuple[int, ...]:
        """Chunk shape for a variable with ``dims``."""
        coarse = self.space_chunk // self.region.fine_per_coarse
        per_dim = {"y": self.space_chunk, "x": self.space_chunk, "cy": coarse, "cx": coarse,
                   "time": self.time_chunk, "time_8d": 1, "time_16d": 1,
                   "time_precip": self.time_chunk}
        return tuple(min(per_dim[d], sizes[d]) for d in dims)

    def attrs(self) -> dict[str, Any]:
        """Store attributes that record the layout (checked when a store is reused)."""
        return {
            "region": self.region.to_dict(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "grid": f"EASE-Grid 2.0 global, EPSG:{EPSG}, 1 km nested {self.region.fine_per_coarse} x "
                    f"{self.region.fine_per_coarse} in the SMAP {self.region.coarse_km} km grid",
            "Conventions": "CF-1.10",
        }


def spatial_ref(transform: Affine) -> xr.DataArray:
    """A CF grid-mapping variable of EASE-Grid 2.0 with its exact GDAL GeoTransform.

    rioxarray and GDAL use ``GeoTransform`` instead of recomputing the transform from the
    (rounded) coordinates; the 36 km variables get their own grid mapping for that reason.
    """
    attrs = CRS.from_epsg(EPSG).to_cf()
    attrs["spatial_ref"] = CRS_WKT
    attrs["crs_wkt"] = CRS_WKT
    attrs["GeoTransform"] = " ".join(repr(float(v)) for v in transform.to_gdal())
    return xr.DataArray(np.int32(0), attrs=attrs)


def template(layout: Layout, specs: Sequence[VariableSpec], attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """A lazy dataset with the given variables, coordinates, attributes and encodings."""
    coords = layout.coords()
    if not any("time_precip" in spec.dims for spec in specs):
        coords.pop("time_precip")
    ds = xr.Dataset(coords={k: xr.Variable(v[0], v[1], v[2]) for k, v in coords.items()})
    ds = ds.assign_coords({FINE_GRID_MAPPING: spatial_ref(layout.region.fine_transform),
                           COARSE_GRID_MAPPING: spatial_ref(layout.region.coarse_transform)})
    sizes = dict(ds.sizes)
    for spec in specs:
        shape = tuple(sizes[d] for d in spec.dims)
        chunks = layout.chunks_for(spec.dims, sizes)
        data = da.full(shape, 0 if spec.fill is None else spec.fill, dtype=spec.dtype, chunks=chunks)
        ds[spec.name] = xr.Variable(spec.dims, data, spec.attrs())
        ds[spec.name].encoding = store.encoding_for(np.dtype(spec.dtype), chunks, spec.fill)
    # time encodings: whole days since the epoch, no float drift
    for t in ("time", "time_8d", "time_16d", "time_precip"):
        if t in ds.coords:
            ds[t].encoding = {"units": "days since 1970-01-01", "dtype": "int32", "calendar": "proleptic_gregorian"}
    ds.attrs = {**layout.attrs(), **dict(attrs or {})}
    return ds


def cube_template(layout: Layout) -> xr.Dataset:
    """The template of a predictor cube with every variable of :data:`SCHEMA`."""
    return template(layout, SCHEMA, {"title": "dsm predictor cube"})


def create_cube(ref: StoreRef, layout: Layout, overwrite: bool = False) -> None:
    """Create an empty predictor cube at ``ref``."""
    store.create(ref, cube_template(layout), "cube", overwrite)


def open_cube(where: StoreRef | str, chunks: Mapping[str, int] | None | str = "store") -> xr.Dataset:
    """Open a predictor cube lazily; rioxarray finds its CRS and transforms (``ds.rio``).

    ``where`` is a :class:`~dsm.storeref.StoreRef` (``config.stores.ref("cube")``) or a plain
    path or URL opened without storage options; ``chunks`` as :func:`dsm.store.open_store`'s
    (None: numpy arrays read on indexing, for the workers).

    Raises :class:`dsm.errors.StoreError` if the cube is missing or not a dsm cube, or if
    it lacks a variable of the schema.
    """
    ref = StoreRef.of(where)
    ds = store.open_store(ref, "cube", chunks)
    missing = [v.name for v in SCHEMA if v.name not in ds and v.name not in RAIN_VARS]
    if missing:
        raise StoreError(f"cube {ref} lacks variable(s) {missing}")
    return ds


ANTECEDENT_ATTR = "antecedent_precipitation"  #: cube attribute written with the antecedent indices


def has_rain(ds: xr.Dataset) -> bool:
    """Whether the cube holds precipitation and its antecedent indices (:mod:`dsm.antecedent`)."""
    return ANTECEDENT_ATTR in ds.attrs and all(v in ds for v in RAIN_VARS)


def layout_of(ds: xr.Dataset) -> Layout:
    """The :class:`Layout` a store was written with (from its attributes and chunks)."""
    r = ds.attrs["region"]
    ychunk = ds["y"].size if "chunks" not in ds["dem"].encoding else ds["dem"].encoding["chunks"][0]
    tchunk = ds["lst"].encoding.get("chunks", (ds.sizes["time"],))[0]
    spinup = ds.sizes["time_precip"] - ds.sizes["time"] if "time_precip" in ds.dims else 0
    return Layout(Region.from_dict(r),
                  dt.date.fromisoformat(ds.attrs["start"]), dt.date.fromisoformat(ds.attrs["end"]),
                  ychunk, tchunk, spinup)


def valid_fractions_of(ds: xr.Dataset) -> dict[str, float]:
    """Each variable's fraction of values within its valid range: over land pixels and all its
    time steps (``land_mask``: the land fraction; SMAP: over the whole 36 km grid). One task per
    spatial block of the cube's chunks reads the whole cube (:func:`_block_counts`), with
    Dask's default scheduler (a cluster's workers when a client is the default)."""
    ref = store.store_ref_of(ds)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    cy, cx = ds["land_mask"].encoding.get("chunks") or (ny, nx)
    count, token = dask.delayed(_block_counts, pure=False), uuid.uuid4().hex
    parts = dask.compute(*(count(ref, token, slice(y0, min(y0 + cy, ny)), slice(x0, min(x0 + cx, nx)))
                           for y0 in range(0, ny, cy) for x0 in range(0, nx, cx)))
    names = [spec.name for spec in SCHEMA if spec.name in ds]
    valid = {n: sum(p[n][0] for p in parts) for n in names}
    total = {n: sum(p[n][1] for p in parts) for n in names}
    return {n: valid[n] / total[n] if total[n] else float("nan") for n in names}


def _block_counts(ref: StoreRef, token: str, ys: slice, xs: slice) -> dict[str, tuple[int, int]]:
    """Per variable of the cube at ``ref``: its values within the valid range and the values
    counted, in one spatial block (its 36 km cells for SMAP), over land pixels, read a time
    chunk at a time, every variable's chunk in one call (runs on a worker; the cube opened once
    per worker and ``token``)."""
    from dsm.zarr_reads import read_selections  # noqa: PLC0415 - the cube module stays light to import

    ds = store.open_cached(ref, token, "raw")
    f = Region.from_dict(ds.attrs["region"]).fine_per_coarse
    cells = {"cy": slice(ys.start // f, -(-ys.stop // f)), "cx": slice(xs.start // f, -(-xs.stop // f))}
    land = read_selections(ds, {"land": ("land_mask", {"y": ys, "x": xs})})["land"] == 1
    n_land = int(land.sum())
    specs = [spec for spec in SCHEMA if spec.name in ds]
    ranges = {spec.name: spec.valid_range for spec in specs}
    out = {spec.name: (0, 0) for spec in specs}
    out["land_mask"] = (n_land, land.size)
    steps: dict[str, tuple[str, int, int]] = {}  # variable -> (time dimension, length, chunk)
    for spec in specs:
        v = ds[spec.name]
        if v.dims[0] not in ("y", "x"):  # static layers (land_mask among them) have no time axis
            steps[spec.name] = (str(v.dims[0]), v.shape[0], (v.encoding.get("chunks") or v.shape)[0])
    static = [spec.name for spec in specs if spec.name not in steps and spec.name != "land_mask"]
    chunks = max([-(-n // c) for _, n, c in steps.values()], default=0)
    for k in range(max(chunks, 1 if static else 0)):
        reads = {name: (name, {dim: slice(k * c, (k + 1) * c), "y": ys, "x": xs, **cells})
                 for name, (dim, n, c) in steps.items() if k * c < n}
        if k == 0:
            reads.update({name: (name, {"y": ys, "x": xs}) for name in static})
        for name, values in read_selections(ds, reads).items():
            lo, hi = ranges[name]
            ok = (values >= lo) & (values <= hi)
            if ds[name].dims[-2:] == ("cy", "cx"):  # SMAP: every cell
                counted = ok.size
            else:
                ok = ok & land
                counted = n_land * (ok.size // land.size)
            valid, total = out[name]
            out[name] = (valid + int(ok.sum()), total + counted)
    return out


def summary(ds: xr.Dataset, valid_fractions: bool = True) -> dict[str, Any]:
    """Variables, axes, chunks, extent and (optionally computed) valid fractions of a cube.

    Valid fractions count finite values within each variable's valid range over land
    pixels (the whole 36 km grid for SMAP); computing them reads the whole cube.
    """
    r = ds.attrs["region"]
    region = Region.from_dict(r)
    out: dict[str, Any] = {
        "region": {**region.to_dict(), "lonlat_bounds": [round(b, 5) for b in region.lonlat_bounds],
                   "fine_shape": list(region.fine_shape)},
        "dates": [ds.attrs["start"], ds.attrs["end"]],
        "sizes": {k: int(v) for k, v in ds.sizes.items()},
        "variables": {},
    }
    fractions = valid_fractions_of(ds) if valid_fractions else {}
    for spec in SCHEMA:
        if spec.name not in ds:
            continue
        v = ds[spec.name]
        entry: dict[str, Any] = {"axis": spec.axis, "dims": list(v.dims), "dtype": str(v.dtype),
                                 "units": v.attrs.get("units"), "chunks": list(v.encoding.get("chunks", ()))}
        if spec.name in fractions:
            entry["valid_fraction"] = round(float(fractions[spec.name]), 4)
        out["variables"][spec.name] = entry
    return out
