"""The products at the in situ stations: each product's daily value at every station.

* :func:`sample_store`: the 1 km product (``sm`` of the products store, days in ``days_done``)
  at each station's pixel and SMAP 36 km (``smap_sm`` of the cube) at its cell;
* :func:`open_gridded`: any other gridded product (NetCDF, Zarr or a GeoTIFF series, in any
  CRS) opened lazily as ``(time, y, x)`` that knows its CRS;
* :func:`sample_gridded`: such a product at the station lon/lat (nearest cell of its grid,
  after transforming lon/lat into its CRS; sub-daily values averaged over UTC days).

Each returns the long table ``network, station, time, <product>`` that
:func:`dsm.station_scores.pair_table` joins with the in situ daily means.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from distributed import Client
from pyproj import CRS, Transformer

from dsm import ledger
from dsm.config import GriddedProductConfig
from dsm.cube import open_cube
from dsm.errors import InputError
from dsm.filedates import DEFAULT_DATE_REGEX, date_from_name
from dsm.products import open_products
from dsm.stations import Problems
from dsm.storeref import StoreRef
from dsm.zarr_reads import read_selections

PRODUCT_1KM = "sm_1km"
SMAP_36KM = "smap_36km"


class ProductError(InputError):
    """A gridded product cannot be used (no CRS, no such variable, unreadable); names the product."""


def _at_points(ds: xr.Dataset, name: str, ydim: str, xdim: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``ds[name]`` ``(time, ydim, xdim)`` at the points ``(rows[i], cols[i])``, ``(time, point)``.

    One selection per spatial chunk holding points (the outer selection of those points' rows and
    columns, inside that chunk), all in one call of zarr's async API
    (:func:`dsm.zarr_reads.read_selections`): only the chunks holding a point are read, however
    far apart the points are."""
    var = ds[name]
    chunks = var.encoding.get("chunks", var.shape)
    ych, xch = chunks[var.dims.index(ydim)], chunks[var.dims.index(xdim)]
    members: dict[tuple[int, int], list[int]] = {}
    for i, chunk in enumerate(zip((rows // ych).tolist(), (cols // xch).tolist(), strict=True)):
        members.setdefault(chunk, []).append(i)
    picks, reads = {}, {}
    for chunk, idx in members.items():
        urows, irow = np.unique(rows[idx], return_inverse=True)
        ucols, icol = np.unique(cols[idx], return_inverse=True)
        picks[chunk] = (idx, irow, icol)
        reads[chunk] = (name, {ydim: urows, xdim: ucols})
    got = read_selections(ds, reads)
    out = np.empty((var.shape[var.dims.index("time")], rows.size), var.dtype)
    for chunk, (idx, irow, icol) in picks.items():
        out[:, idx] = got[chunk][:, irow, icol]
    return out


def point_series(output: StoreRef, cube: StoreRef | None, sites: pd.DataFrame) -> dict[str, np.ndarray]:
    """The product's ``sm`` at each site's pixel and the cube's ``smap_sm`` at its cell (NaN on
    the product's days the cube lacks), ``(time, site)`` on the product's days: what
    :func:`sample_store` reads, in one task."""
    out = open_products(output, chunks=None)
    series = {PRODUCT_1KM: _at_points(out, "sm", "y", "x", sites["row"].to_numpy(), sites["col"].to_numpy())}
    if cube is not None:
        grid = open_cube(cube, chunks=None)
        smap = _at_points(grid, "smap_sm", "cy", "cx", sites["cy"].to_numpy(), sites["cx"].to_numpy())
        at = grid.indexes["time"].get_indexer(out.indexes["time"])
        series[SMAP_36KM] = np.where((at >= 0)[:, None], smap[np.maximum(at, 0)], np.nan)
    return series


def _long(values: np.ndarray, times: np.ndarray, sites: pd.DataFrame, name: str) -> pd.DataFrame:
    """(time, site) values -> long frame ``network, station, time, name``."""
    nt, ns = values.shape
    return pd.DataFrame({
        "network": np.tile(sites["network"].to_numpy(), nt),
        "station": np.tile(sites["station"].to_numpy(), nt),
        "time": np.repeat(pd.DatetimeIndex(times).to_numpy(), ns),
        name: values.reshape(-1).astype(np.float64),
    })


def sample_store(sites: pd.DataFrame, output: StoreRef, cube: StoreRef | None, client: Client | None
                 ) -> pd.DataFrame:
    """The 1 km product at each station's pixel and SMAP 36 km at its cell, every day.

    Parameters
    ----------
    sites : pandas.DataFrame
        Stations inside the region (:func:`dsm.stations.locate`).
    output : StoreRef
        The products store (``dsm predict``); only days in its ``days_done`` are used.
    cube : StoreRef or None
        The predictor cube, for ``smap_sm``; None leaves ``smap_36km`` empty.
    client : distributed.Client or None
        Reads run on its workers (None: the local scheduler).

    Returns
    -------
    pandas.DataFrame
        ``network, station, time, sm_1km, smap_36km``.
    """
    out = open_products(output)
    done = pd.DatetimeIndex(pd.to_datetime(ledger.read(output, out.attrs).done))
    times = out.indexes["time"]
    points = sites.loc[:, ["row", "col", "cy", "cx"]]
    # one task with a raised priority: unlike a graph's many root tasks, Dask does not hold a single
    # task in its queue while another job keeps the workers busy (the twin skill, beside the validation)
    series = (client.submit(point_series, output, cube, points, priority=1, pure=False).result()
              if client is not None else point_series(output, cube, points))
    values = series[PRODUCT_1KM].astype(np.float64)
    values[~times.isin(done)] = np.nan
    frame = _long(values, times.values, sites, PRODUCT_1KM)
    smap_values = series.get(SMAP_36KM, np.full(values.shape, np.nan))
    frame[SMAP_36KM] = smap_values.reshape(-1).astype(np.float64)
    return frame


def _is_zarr(path: str) -> bool:
    p = path.rstrip("/")
    return p.endswith(".zarr") or (os.path.isdir(p) and any(
        os.path.exists(os.path.join(p, f)) for f in ("zarr.json", ".zgroup", ".zattrs")))


def _time_dim(da: xr.DataArray, p: GriddedProductConfig) -> str:
    if p.time_dim:
        if p.time_dim not in da.dims:
            raise ProductError(f"product '{p.name}' ({p.path}): no dimension {p.time_dim!r} (dims {da.dims})")
        return p.time_dim
    for dim in da.dims:
        if dim in da.coords and np.issubdtype(da[dim].dtype, np.datetime64):
            return str(dim)
    raise ProductError(f"product '{p.name}' ({p.path}): no time dimension with datetime values "
                       f"(dims {da.dims}); set time_dim")


def open_gridded(p: GriddedProductConfig) -> xr.DataArray:
    """Open a gridded product lazily as a DataArray ``(time, y, x)`` that knows its CRS.

    NetCDF/HDF5 (``.nc``, ``.nc4``, ``.h5``, ``.cdf``) and Zarr are opened with xarray
    (``decode_coords="all"``, so CF ``grid_mapping`` variables give the CRS); GeoTIFFs (one file
    per day, a glob) with rioxarray, the day from each file name (``date_regex``).

    Raises
    ------
    ProductError
        The files cannot be read, the variable or time axis is missing, or no CRS is known
        (neither in the file nor ``crs`` in the configuration).
    """
    import rioxarray  # noqa: F401, PLC0415  (registers .rio; rasterio, ~0.6 s, only once a product is opened)

    path = p.path
    low = path.lower().rstrip("/")
    try:
        da = _open_geotiff_series(p) if low.endswith((".tif", ".tiff")) else _open_variable(p, path, low)
    except ProductError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProductError(f"product '{p.name}' ({path}) cannot be read: {exc}") from exc
    try:
        crs = da.rio.crs
    except Exception as exc:  # rioxarray raises its own errors for odd grid mappings
        raise ProductError(f"product '{p.name}' ({path}): its CRS cannot be read: {exc}") from exc
    if crs is None:
        if p.crs is None:
            raise ProductError(
                f"product '{p.name}' ({path}) has no CRS (no CF grid_mapping / spatial_ref, no GeoTIFF CRS); "
                f"set crs for it in validation.products (e.g. crs: EPSG:4326 for plain lon/lat grids)")
        da = da.rio.write_crs(p.crs)
    try:
        da.rio.x_dim, da.rio.y_dim  # noqa: B018 (raises when the spatial dimensions are unknown)
    except Exception as exc:
        xd, yd = _spatial_dim(da, "x"), _spatial_dim(da, "y")
        if xd is None or yd is None:
            raise ProductError(f"product '{p.name}' ({path}): no x/y (or lon/lat) dimensions: {exc}") from exc
        da = da.rio.set_spatial_dims(x_dim=xd, y_dim=yd)
    _time_dim(da, p)
    return da


def _open_variable(p: GriddedProductConfig, path: str, low: str) -> xr.DataArray:
    """The product's variable of a Zarr store or a netCDF/HDF5 file (``low``: ``path`` in lower case)."""
    src = StoreRef(path, p.storage_options)  # an input: the product's own fsspec options
    if _is_zarr(path):
        ds = _open_user_zarr(src)
    elif low.endswith((".nc", ".nc4", ".h5", ".hdf5", ".cdf", ".netcdf")):
        if "://" in path:
            fs, fpath = src.fs()
            ds = xr.open_dataset(fs.open(fpath, "rb"), engine="h5netcdf", decode_coords="all")
        else:
            ds = xr.open_dataset(path, decode_coords="all", chunks={})
    else:
        raise ProductError(f"product '{p.name}' ({path}): unknown format (expected .nc/.nc4/.h5, "
                           ".zarr or .tif/.tiff)")
    if p.variable is None or p.variable not in ds.data_vars:
        raise ProductError(f"product '{p.name}' ({path}): variable {p.variable!r} not found; "
                           f"it has {sorted(map(str, ds.data_vars))}")
    return ds[p.variable]


_SPATIAL_NAMES = {"x": ("x", "lon", "longitude", "easting"), "y": ("y", "lat", "latitude", "northing")}
_SPATIAL_UNITS = {"x": ("degrees_east", "degree_east", "degrees_e", "degree_e"),
                  "y": ("degrees_north", "degree_north", "degrees_n", "degree_n")}


def _spatial_dim(da: xr.DataArray, axis: str) -> str | None:
    """The dimension of ``axis`` ("x" or "y") by name, CF ``axis`` or CF units."""
    for dim in map(str, da.dims):
        attrs = da[dim].attrs if dim in da.coords else {}
        if (dim.lower() in _SPATIAL_NAMES[axis] or str(attrs.get("axis", "")).lower() == axis
                or str(attrs.get("units", "")).lower() in _SPATIAL_UNITS[axis]):
            return dim
    return None


def _open_user_zarr(src: StoreRef) -> xr.Dataset:
    """A Zarr store with consolidated metadata when it has them, else without (no fallback warning)."""
    try:
        return xr.open_zarr(src.url, consolidated=True, decode_coords="all", storage_options=src.zarr_options)
    except (KeyError, ValueError, OSError, zarr.errors.BaseZarrError):
        return xr.open_zarr(src.url, consolidated=False, decode_coords="all", storage_options=src.zarr_options)


def _open_geotiff_series(p: GriddedProductConfig) -> xr.DataArray:
    import rioxarray  # noqa: PLC0415 - rioxarray (rasterio, ~0.6 s) only for GeoTIFF products


    files = sorted(glob.glob(p.path)) if glob.has_magic(p.path) else [p.path]
    if not files:
        raise ProductError(f"product '{p.name}' ({p.path}): no file matches")
    days, arrays = [], []
    for f in files:
        try:
            day = date_from_name(f, p.date_regex or DEFAULT_DATE_REGEX)
        except InputError as exc:
            raise ProductError(f"product '{p.name}': {exc}") from exc
        opened = rioxarray.open_rasterio(f, masked=True, mask_and_scale=True)
        if not isinstance(opened, xr.DataArray):
            raise ProductError(f"product '{p.name}': {f} holds several subdatasets; give one GeoTIFF band per day "
                               "(or a NetCDF/Zarr product with `variable:`)")
        a = opened.isel(band=0, drop=True)
        days.append(np.datetime64(day, "ns"))
        arrays.append(a)
    da: xr.DataArray = xr.concat(arrays, dim=xr.DataArray(days, dims="time", name="time"), coords="minimal",
                   compat="override", join="override")
    return da.sortby("time")


def sample_gridded(da: xr.DataArray, p: GriddedProductConfig, sites: pd.DataFrame,
                   problems: Problems | None = None) -> pd.DataFrame:
    """A gridded product at the station lon/lat: nearest cell, daily (UTC) means, scaled.

    Stations outside the product's grid get NaN (and a problem entry).

    Returns
    -------
    pandas.DataFrame
        ``network, station, time, <p.name>``.
    """
    crs = CRS.from_user_input(da.rio.crs)
    xdim, ydim, tdim = da.rio.x_dim, da.rio.y_dim, _time_dim(da, p)
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    sx, sy = tr.transform(sites["lon"].to_numpy(np.float64), sites["lat"].to_numpy(np.float64))
    sx, sy = np.asarray(sx, np.float64), np.asarray(sy, np.float64)
    xs, ys = da[xdim].to_numpy().astype(np.float64), da[ydim].to_numpy().astype(np.float64)
    if crs.is_geographic and xs.size and np.nanmax(xs) > 180.0:
        sx = np.mod(sx, 360.0)
    ix, okx = _nearest(xs, sx)
    iy, oky = _nearest(ys, sy)
    ok = okx & oky
    if problems is not None:
        for _, s in sites.loc[~ok].iterrows():
            problems.add("product", p.name, f"station {s.network}/{s.station} (lon {s.lon:.4f}, lat {s.lat:.4f}) "
                                            "is outside the product's grid")
    pts = da.isel({xdim: xr.DataArray(np.where(ok, ix, 0), dims="site"),
                   ydim: xr.DataArray(np.where(ok, iy, 0), dims="site")})
    pts = pts.transpose(tdim, "site").drop_vars([c for c in pts.coords if c != tdim])
    values = np.asarray(pts.values, dtype=np.float64) * p.scale + p.offset
    values[:, ~ok] = np.nan
    times = pd.DatetimeIndex(pts[tdim].values)
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    frame = _long(values, times.floor("D").values, sites, p.name)
    return frame.groupby(["network", "station", "time"], sort=True)[p.name].mean().reset_index()


def _nearest(coord: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest coordinate value and whether the point lies within half a cell of it."""
    if coord.size == 0:
        return np.zeros(points.size, np.int64), np.zeros(points.size, bool)
    order = np.argsort(coord)
    c = coord[order]
    pos = np.clip(np.searchsorted(c, points), 1, max(c.size - 1, 1))
    lo = np.clip(pos - 1, 0, c.size - 1)
    hi = np.clip(pos, 0, c.size - 1)
    pick = np.where(np.abs(points - c[lo]) <= np.abs(points - c[hi]), lo, hi)
    step = np.median(np.diff(c)) if c.size > 1 else np.inf
    ok = np.abs(points - c[pick]) <= 0.5 * step * (1 + 1e-6)
    return order[pick], ok & np.isfinite(points)

