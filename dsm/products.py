"""The output store of daily 1 km soil moisture: schema, origin bits, creation and checks.

Variables (CF attributes, grid mappings ``spatial_ref`` / ``spatial_ref_36km``):

``sm`` (time, y, x)
    Soil moisture, m3/m3, stored as int16 with ``scale_factor`` 1e-4 and ``_FillValue`` -9999
    (CF packing: xarray decodes it to float).
``sm_unc`` (time, y, x)
    Half width of the central prediction interval (``output.interval``, default 90 %), same
    packing as ``sm``: method ``fusion``, the normal interval of the fused cell mean's error
    variance plus the within-cell anomaly's (:func:`dsm.cellmeans.fuse_block`); method
    ``rao2022``, the period's XGBoost quantile models plus their conformal margin.
``sm_origin`` (time, y, x)
    uint16 bit flags, see :data:`ORIGIN_BITS`; 0 where ``sm`` is empty. Stores made before bit
    256 hold uint8 (bits 1-128): they stay readable (:func:`origin_counts`), but prediction
    refuses to resume them (:func:`check_origin`).
``sm_36km`` (time, cy, cx)
    Block mean of the 1 km ``sm`` over each SMAP cell (float32), for the 36 km consistency.

The store's root attributes describe it and stay the same size whatever the number of days;
every one is a netCDF attribute (a string, a number or a list of them: structured values such
as ``region``, ``origin_bits`` or the settings fingerprint are JSON text, :func:`netcdf_safe`,
read back with :func:`decode_attrs`), so ``xr.open_zarr(url).to_netcdf(path)`` works. What the
runs recorded per day (days done, empty or failed, the models of each day, the 36 km
consistency, the exported files) is the run ledger beside the arrays (:mod:`dsm.ledger`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from dsm import store
from dsm.cube import Layout, VariableSpec, template
from dsm.errors import StoreError
from dsm.grid import Region
from dsm.storeref import StoreRef

KIND = "products"
SCALE = 1e-4
FILL = -9999
#: key of each ``day_models`` entry holding the number of valid ``sm`` pixels predict wrote that day
VALID_PIXELS = "valid_pixels"
#: key of each ``day_models`` entry holding the digest of the day's stored ``sm`` (:func:`day_digest`)
SM_DIGEST = "sm_digest"


def digest_part(stored: np.ndarray, y0: int, x0: int) -> int:
    """The digest of one block of a day's stored (packed int16) ``sm`` whose corner is pixel
    (``y0``, ``x0``): 64 bits of BLAKE2b over its place and bytes."""
    h = hashlib.blake2b(digest_size=8)
    h.update(np.array([y0, x0, *stored.shape], np.int64).tobytes())
    h.update(np.ascontiguousarray(stored, dtype=np.int16).tobytes())
    return int.from_bytes(h.digest(), "little")


def combine_digests(parts: Iterable[int]) -> str:
    """The day's digest from its blocks' :func:`digest_part` s, whatever their order (hex)."""
    return f"{sum(parts) % (1 << 64):016x}"


def day_digest(stored: np.ndarray, chunks: tuple[int, int]) -> str:
    """The digest of a whole day's stored ``sm`` (``(y, x)`` packed int16) cut into its
    spatial ``chunks``: equal to :func:`combine_digests` of the parts predict's blocks wrote,
    so a chunk replaced by another (another day's, another place's) is told apart."""
    ny, nx = stored.shape
    cy, cx = chunks
    return combine_digests(digest_part(stored[y:y + cy, x:x + cx], y, x)
                           for y in range(0, ny, cy) for x in range(0, nx, cx))

ORIGIN_BITS: dict[int, tuple[str, str]] = {
    1: ("all_same_day_predictors", "predicted by the period's model with every predictor of the day"),
    2: ("reduced_model", "a predictor was missing (e.g. LST under cloud): the period's reduced model, "
                         "trained without it, was used"),
    4: ("reused_period_model", "the period had too few samples and reuses another period's model"),
    8: ("extrapolation", "a predictor lies outside the range seen in the model's training samples"),
    16: ("no_smap_observation", "SMAP has no observation that day in the pixel's 36 km cell"),
    32: ("smap_fused", "the cell mean was fused with the day's SMAP retrieval (method fusion)"),
    64: ("smap_carried", "the cell mean carries the decayed fusion increment of an earlier SMAP day "
                         "(method fusion)"),
    128: ("rain_memory_short", "the model used antecedent precipitation indices whose record had a missing "
                               "day within the last rain.spinup_days days (bridged or restarted)"),
    256: ("input_out_of_range", "an input value outside its variable's valid range (an impossible value) was "
                                "treated as missing and changed what the pixel got: another model, or a cell "
                                "mean or SMAP fusion made without it (dsm.ranges)"),
}
"""Bit value -> (flag meaning, description) of ``sm_origin``; 0 means not predicted."""

(ALL_PREDICTORS, REDUCED, REUSED, EXTRAPOLATION, NO_SMAP, SMAP_FUSED, SMAP_CARRIED, RAIN_MEMORY_SHORT,
 INPUT_OUT_OF_RANGE) = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ORIGIN_DTYPE = np.dtype("uint16")  #: dtype of ``sm_origin`` (uint8 before bit 256)

_SM_ENC = {"scale_factor": SCALE, "_FillValue": np.int16(FILL), "dtype": np.dtype("int16"), "fill_value": np.int16(FILL)}
PACKED_RANGE = np.array([0, round(1.0 / SCALE)], np.int16)
"""``valid_range`` of ``sm`` and ``sm_unc`` in packed units (CF: the range of the stored int16)."""
DEPTH = (0.0, 0.05)
"""The soil layer ``sm`` describes, metres below the surface (SMAP's top 5 cm)."""
CELL_METHODS = "area: mean"
"""Each value is the mean over its grid cell (1 km pixel, 36 km SMAP cell); a daily value stands
for its UTC day, whose bounds are ``time_bnds``."""
REFERENCES = ("Rao, P., Wang, Y., Wang, F., Liu, Y., Wang, X., and Wang, Z.: Daily soil moisture mapping at 1 km "
              "resolution based on SMAP data for desertification areas in northern China, Earth Syst. Sci. Data, "
              "14, 3053-3073, https://doi.org/10.5194/essd-14-3053-2022, 2022")
"""The method's paper (CF/ACDD ``references``)."""
SOURCE = ("SMAP L3 36 km soil moisture downscaled to the 1 km EASE-Grid 2.0 with MODIS land surface "
          "temperature, albedo, LAI/FPAR, NDVI/EVI, terrain and soil predictors (dsm)")
"""What the products are made from (CF ``source``)."""

SPECS: tuple[VariableSpec, ...] = (
    VariableSpec("sm", "daily", "m3 m-3", "Daily 1 km surface soil moisture (top 5 cm), downscaled SMAP",
                 (0.0, 1.0), "volume_fraction_of_condensed_water_in_soil", "dsm.stages.predict", "float32", np.nan,
                 {"comment": "stored as int16 x 10000 (CF scale_factor 1e-4, _FillValue -9999; valid_range in "
                             "packed units)", "cell_methods": CELL_METHODS,
                  "ancillary_variables": "sm_unc sm_origin"}),
    VariableSpec("sm_unc", "daily", "m3 m-3", "Half width of the central prediction interval of sm",
                 (0.0, 1.0), None, "dsm.stages.predict: fusion error model (method fusion) or quantile models (rao2022)",
                 "float32", np.nan, {"cell_methods": CELL_METHODS}),
    VariableSpec("sm_origin", "daily", "1", "Origin and quality of sm (bit flags)", (0, sum(ORIGIN_BITS)), None,
                 "dsm.stages.predict", ORIGIN_DTYPE.name, None,
                 {"flag_masks": np.array(list(ORIGIN_BITS), ORIGIN_DTYPE),
                  "flag_meanings": " ".join(m for m, _ in ORIGIN_BITS.values()),
                  "comment": "0: not predicted (water, or predictors missing)"}),
    VariableSpec("sm_36km", "smap", "m3 m-3", "Block mean of the 1 km sm over each SMAP 36 km cell",
                 (0.0, 1.0), None, "dsm.stages.predict", extra={"cell_methods": CELL_METHODS}),
)


def cf_attrs(spec: VariableSpec) -> dict[str, Any]:
    """The CF attributes of a products variable: ``valid_range`` (in packed units for the packed
    ``sm`` and ``sm_unc``, of the variable's own type otherwise) instead of ``valid_min/max``."""
    a = spec.attrs()
    lo, hi = a.pop("valid_min"), a.pop("valid_max")
    if spec.name in ("sm", "sm_unc"):
        a["valid_range"] = PACKED_RANGE.copy()
    else:
        a["valid_range"] = np.array([lo, hi], np.dtype(spec.dtype))
    return a


def bounds_coords(times: np.ndarray) -> dict[str, xr.Variable]:
    """CF bounds of the products: ``time_bnds`` (each UTC day), the scalar ``depth`` (m, positive
    down, the middle of :data:`DEPTH`) and its ``depth_bnds``."""
    t = np.asarray(times).astype("datetime64[ns]")
    bounds = np.stack([t, t + np.timedelta64(1, "D")], axis=1)
    return {
        "time_bnds": xr.Variable(("time", "nv"), bounds, {"long_name": "bounds of the UTC day"}),
        "depth": xr.Variable((), np.float32(sum(DEPTH) / 2),
                             {"standard_name": "depth", "long_name": "depth below the soil surface", "units": "m",
                              "positive": "down", "axis": "Z", "bounds": "depth_bnds"}),
        "depth_bnds": xr.Variable(("nv",), np.array(DEPTH, np.float32), {"long_name": "bounds of the soil layer"}),
    }


def products_template(layout: Layout, interval: float | None, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The lazy template of an output store (CF packing of ``sm`` and ``sm_unc`` in the encodings;
    CF attributes: packed ``valid_range``, ``cell_methods``, time and depth bounds, projection
    axes on both grids, coordinates without ``_FillValue``)."""
    # grid_mapping at the root: the store has two grids (1 km and the SMAP cells, both with CF
    # projection axes), and rioxarray's dataset-level ``ds.rio.crs`` needs to know the main one
    extra = {"title": "dsm daily 1 km soil moisture", "references": REFERENCES, "source": SOURCE,
             "grid_mapping": "spatial_ref",
             "origin_bits": {str(k): f"{m}: {d}" for k, (m, d) in ORIGIN_BITS.items()}, **dict(attrs or {})}
    ds = template(layout, SPECS, extra)
    ds.attrs = netcdf_safe(ds.attrs)
    for spec in SPECS:
        ds[spec.name].attrs = cf_attrs(spec)
    for name in ("sm", "sm_unc"):
        ds[name].encoding.update(_SM_ENC)
    if interval is not None:
        ds["sm_unc"].attrs["interval"] = interval
    ds = ds.drop_vars([v for v in ("time_8d", "time_16d") if v in ds.coords])
    ds = ds.assign_coords(bounds_coords(ds["time"].values))
    ds["time"].attrs["bounds"] = "time_bnds"
    for axis, name in (("y", "cy"), ("x", "cx")):
        ds[name].attrs.update(standard_name=f"projection_{axis}_coordinate", axis=axis.upper())
    for name in ("time", "y", "x", "cy", "cx", "lat", "lon", "depth", "depth_bnds", "time_bnds"):
        ds[name].encoding["_FillValue"] = None  # CF: coordinates hold no missing values
    ds["time_bnds"].encoding.update({k: v for k, v in ds["time"].encoding.items() if k != "_FillValue"})
    return ds


JSON_ATTRS = ("region", "origin_bits", "reduced_sets", "gap_free", "residual_correction", "settings",
              "cog_settings", "anomaly_gain", "anomaly_error")
"""Root attributes of the products store whose values are structured (mappings, nested lists,
booleans): stored as JSON text (:func:`netcdf_safe`), decoded by :func:`decode_attrs`."""


def _netcdf_value(value: Any) -> bool:
    """Whether ``value`` is a netCDF attribute as it is: a string, a number, or a non-empty list
    of strings or of numbers (booleans and None are not)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (str, int, float, np.number)):
        return True
    if isinstance(value, (list, tuple)) and value:
        return (all(isinstance(v, str) for v in value)
                or all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value))
    return False


def netcdf_safe(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` with every value that is no netCDF attribute (:func:`_netcdf_value`) as JSON text."""
    return {k: v if _netcdf_value(v) else json.dumps(v, sort_keys=True) for k, v in attrs.items()}


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The root attributes of a products store with the structured ones (:data:`JSON_ATTRS`)
    decoded; a store written before they were JSON text holds them decoded already."""
    return {k: json.loads(v) if k in JSON_ATTRS and isinstance(v, str) else v for k, v in attrs.items()}


def region_of(attrs: Mapping[str, Any]) -> Region:
    """The :class:`~dsm.grid.Region` a products store's root attributes record."""
    return Region.from_dict(decode_attrs({"region": attrs["region"]})["region"])


def create_products(ref: StoreRef, layout: Layout, interval: float | None, attrs: Mapping[str, Any] | None = None,
                    overwrite: bool = False) -> None:
    """Create the output store's template at ``ref``."""
    store.create(ref, products_template(layout, interval, attrs), KIND, overwrite)


def open_products(where: StoreRef | str, chunks: Mapping[str, int] | None | str = "store") -> xr.Dataset:
    """Open an output store lazily (checks its kind and format); ``where`` is a
    :class:`~dsm.storeref.StoreRef` (``config.stores.ref("output")``) or a plain path or URL
    opened without storage options; ``chunks`` as :func:`dsm.store.open_store`'s."""
    return store.open_store(StoreRef.of(where), KIND, chunks)


def check_layout(ds: xr.Dataset, layout: Layout, url: str, what: str = "output store") -> None:
    """Raise :class:`StoreError` naming every difference between a store and the configuration."""
    want = layout.attrs()
    have = decode_attrs(ds.attrs)
    problems = []
    for key in ("region", "start", "end"):
        if have.get(key) != want[key]:
            problems.append(f"{key} is {have.get(key)!r}, the configuration has {want[key]!r}")
    enc = ds["sm"].encoding.get("chunks") if "sm" in ds else None
    if enc is not None:
        sizes = dict(ds.sizes)
        expected = layout.chunks_for(("time", "y", "x"), sizes)
        if tuple(enc) != tuple(expected):
            problems.append(f"chunks are {tuple(enc)}, the configuration gives {tuple(expected)}")
    if problems:
        raise StoreError(f"the {what} {url} was written by another configuration: " + "; ".join(problems)
                         + f" (choose another stores.output, delete {url}, or replace it with "
                         "`dsm predict CONFIG --overwrite`; `dsm run` never replaces an output store)")


def check_origin(ds: xr.Dataset, url: str) -> None:
    """Refuse to write into a store whose ``sm_origin`` cannot hold every bit of :data:`ORIGIN_BITS`.

    Raises
    ------
    StoreError
        The store was made before bit 256 (``sm_origin`` uint8), naming the store and the remedy.
    """
    have = np.dtype(ds["sm_origin"].encoding.get("dtype", ds["sm_origin"].dtype)) if "sm_origin" in ds else None
    if have is not None and (have.kind != "u" or have.itemsize < ORIGIN_DTYPE.itemsize):
        raise StoreError(f"the output store {url} keeps sm_origin as {have}, made before origin bit "
                         f"{INPUT_OUT_OF_RANGE} ({ORIGIN_BITS[INPUT_OUT_OF_RANGE][0]}); this version writes "
                         f"{ORIGIN_DTYPE}: predict into another stores.output, or replace it with `dsm predict CONFIG --overwrite`")


def origin_counts(origin: np.ndarray) -> dict[int, int]:
    """Pixels with each bit of :data:`ORIGIN_BITS` set (``sm_origin`` of any unsigned dtype, old stores too)."""
    o = np.asarray(origin).astype(np.uint32, copy=False)
    return {b: int(((o & b) > 0).sum()) for b in ORIGIN_BITS}
