"""Writers of SMAP L3 radiometer granules that follow the real product layouts.

:func:`write_spl3smp` writes SPL3SMP (36 km, HDF5) with the variables the reader uses, names,
dtypes, ``_FillValue``, ``valid_min``/``valid_max``, ``units`` and ``long_name`` exactly as in
the real version 9 schema (``SC_SPL3SMP_009.dmr``, :func:`smap_schema`), plus the
``/Metadata`` attributes that carry the date and product name; :func:`write_spl3smp_e` the
same on the 9 km grid (SPL3SMP_E); :func:`write_smap_subset` a Harmony/OPeNDAP spatial subset
of either, laid out as the real ``hoss_shape_file_*_reference.nc4`` (``x``/``y`` dimension
scales, the ``EASE2_global_projection_<N>km`` grid-mapping variable, -9999 fills, the request
in ``history``).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from dsm.grid import EASE2_9KM, EASE2_36KM, Grid, xy_to_lonlat

PathLike = str | os.PathLike

AM_GROUP = "Soil_Moisture_Retrieval_Data_AM"
PM_GROUP = "Soil_Moisture_Retrieval_Data_PM"
_COORDS = f"/{AM_GROUP}/latitude /{AM_GROUP}/longitude"
_TB_TIME_LONG = (
    "Arithmetic average of the acquisition time of all of the brightness temperature footprints with "
    "a center that falls within the EASE grid cell in UTC."
)
_TB_SECONDS_LONG = (
    "Arithmetic average of the acquisition time of all of the brightness temperature footprints with a "
    "center that falls within the EASE grid cell in seconds since noon on January 1, 2000 UTC."
)
_QUAL_LONG = (
    "Bit flags that record the conditions and the quality of the DCA retrieval algorithms that generate "
    "soil moisture for the grid cell."
)
#: J2000 epoch of ``tb_time_seconds`` (``/Metadata/ProcessStep epochUTCDateTime``).
J2000_UTC = dt.datetime(2000, 1, 1, 11, 58, 55, 816000, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class SmapProduct:
    """Grid, default version and SMAP short name of an L3 product."""

    grid: Grid
    version: str
    smap_short: str


SMAP_PRODUCTS = {
    "SPL3SMP": SmapProduct(EASE2_36KM, "009", "L3_SM_P"),
    "SPL3SMP_E": SmapProduct(EASE2_9KM, "006", "L3_SM_P_E"),
}
#: CF attributes of the ``EASE2_global_projection_<N>km`` variable, as in real Harmony subsets.
_PROJECTION_ATTRS = {
    "grid_mapping_name": "lambert_cylindrical_equal_area",
    "standard_parallel": np.array([30.0]),
    "longitude_of_central_meridian": np.array([0.0]),
    "false_easting": np.array([0.0]),
    "false_northing": np.array([0.0]),
    "horizontal_datum_name": "WGS84",
    "inverse_flattening": np.array([298.257223563]),
    "semi_major_axis": np.array([6378137.0]),
    "semi_minor_axis": np.array([6356752.314245]),
}


def _km(grid: Grid) -> str:
    return f"{grid.cell / 1000:.0f}"


def smap_schema(suffix: str, grid: Grid = EASE2_36KM) -> dict[str, tuple[str, dict[str, object]]]:
    """dtype and attributes (name -> numpy-typed value) of the variables written, per the DMR.

    ``suffix`` is "" (AM) or "_pm" (PM). Attribute order follows the version 9 DMR; on the
    9 km grid the row/column indices name the 9 km grid and its size.
    """
    f32, u16, f64 = np.float32, np.uint16, np.float64
    sm = {
        "long_name": "Representative DCA soil moisture measurement for the Earth based grid cell.",
        "units": "cm**3/cm**3",
        "valid_min": f32(0.02),
        "coordinates": _COORDS,
        "valid_max": f32(0.5),
        "_FillValue": f32(-9999.0),
    }
    if suffix:
        sm = {k: sm[k] for k in ("long_name", "units", "coordinates", "valid_min", "valid_max", "_FillValue")}
    qual = {
        "long_name": _QUAL_LONG,
        "coordinates": _COORDS,
        "_FillValue": u16(65534),
        "flag_masks": "1s, 2s, 4s, 8s",
        "flag_meanings": "Retrieval_recommended Retrieval_attempted Retrieval_success FT_retrieval_success",
    }
    if suffix:
        qual = {k: qual[k] for k in ("_FillValue", "flag_masks", "long_name", "coordinates", "flag_meanings")}
    lat: dict[str, object] = {"long_name": "Latitude of the center of the Earth based grid cell.", "units": "degrees_north"}
    lon: dict[str, object] = {"long_name": "Longitude of the center of the Earth based grid cell.", "units": "degrees_east"}
    if suffix:
        lat |= {"coordinates": _COORDS, "valid_min": f32(-90.0), "valid_max": f32(90.0), "_FillValue": f32(-9999.0)}
        lon |= {"coordinates": _COORDS, "valid_min": f32(-180.0), "valid_max": f32(179.998993), "_FillValue": f32(-9999.0)}

    def index(what: str, vmax: int) -> dict[str, object]:
        return {
            "long_name": f"The {what} index of the {_km(grid)} km EASE grid cell that contains the associated data.",
            "coordinates": _COORDS,
            "valid_min": u16(0),
            "valid_max": u16(vmax),
            "_FillValue": u16(65534),
        }

    return {
        f"soil_moisture{suffix}": ("f4", sm),
        f"retrieval_qual_flag{suffix}": ("u2", qual),
        f"latitude{suffix}": ("f4", lat),
        f"longitude{suffix}": ("f4", lon),
        f"tb_time_utc{suffix}": ("S24", {"long_name": _TB_TIME_LONG, "coordinates": _COORDS}),
        f"tb_time_seconds{suffix}": (
            "f8",
            {
                "long_name": _TB_SECONDS_LONG,
                "units": "seconds",
                "coordinates": _COORDS,
                "valid_min": f64(-999999.9),
                "valid_max": f64(940000000.0),
                "_FillValue": f64(-9999.0),
            },
        ),
        f"EASE_row_index{suffix}": ("u2", index("row", grid.nrows - 1)),
        f"EASE_column_index{suffix}": ("u2", index("column", grid.ncols - 1)),
    }


def smap_grid_latlon(
    grid: Grid = EASE2_36KM, row0: int = 0, col0: int = 0, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitude and longitude (float32) of a window of a global EASE-Grid 2.0 grid
    (default the whole grid)."""
    ny, nx = shape or (grid.nrows, grid.ncols)
    lon, _ = xy_to_lonlat(grid.x_centres(np.arange(col0, col0 + nx)), np.zeros(nx))
    _, lat = xy_to_lonlat(np.zeros(ny), grid.y_centres(np.arange(row0, row0 + ny)))
    return (
        np.broadcast_to(lat[:, None], (ny, nx)).astype(np.float32),
        np.broadcast_to(lon[None, :], (ny, nx)).astype(np.float32),
    )


def ease36_latlon() -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitude and longitude (406 x 964, float32) of the global 36 km grid."""
    return smap_grid_latlon(EASE2_36KM)


@dataclass
class SmapPass:
    """Fields of one pass, on the file's arrays: the whole global grid for
    :func:`write_spl3smp` (406 x 964) and :func:`write_spl3smp_e` (1624 x 3856), the subset's
    window for :func:`write_smap_subset`.

    ``soil_moisture`` is in m3/m3 with NaN where there is no retrieval; ``retrieval_qual_flag``
    defaults to 0 (recommended) where there is a value and to fill elsewhere; ``observed``
    marks cells with brightness temperatures (latitude/longitude/time written, otherwise
    -9999 as in the real product) and defaults to ``~isnan(soil_moisture)``.
    """

    soil_moisture: np.ndarray
    retrieval_qual_flag: np.ndarray | None = None
    observed: np.ndarray | None = None
    hour_utc: float = 6.0


def write_spl3smp(
    path: PathLike,
    date: dt.date,
    am: SmapPass | None,
    pm: SmapPass | None = None,
    *,
    latitude: np.ndarray | None = None,
    longitude: np.ndarray | None = None,
    version: str = "009",
    metadata: bool = True,
    omit: tuple[str, ...] = (),
) -> Path:
    """Write an SPL3SMP-like HDF5 granule following the version 9 schema.

    Parameters
    ----------
    path
        Output file (use :func:`spl3smp_filename` for the real naming).
    date
        Day of the granule (``/Metadata/Extent`` ``rangeBeginningDateTime``).
    am, pm
        Fields of the descending (AM) and ascending (PM) pass; a pass that is None gets no
        group (to write files with a group missing).
    latitude, longitude
        Global cell-centre arrays to write where a cell is observed; default
        :func:`ease36_latlon` (the real grid, e.g. from ``SC_SPL3SMP_009_prefetch.nc4``,
        can be passed instead).
    version
        ECS version written to the metadata.
    metadata
        Write the ``/Metadata`` group (set False to test the date fallbacks).
    omit
        Variables (names without the ``_pm`` suffix) not to write.
    """
    return _write_l3(path, date, am, pm, product="SPL3SMP", version=version, metadata=metadata, omit=omit,
                     latitude=latitude, longitude=longitude)


def write_spl3smp_e(
    path: PathLike,
    date: dt.date,
    am: SmapPass | None,
    pm: SmapPass | None = None,
    *,
    version: str = "006",
    metadata: bool = True,
    omit: tuple[str, ...] = (),
) -> Path:
    """Write an SPL3SMP_E-like (9 km, 1624 x 3856) HDF5 granule: the SPL3SMP variables,
    names and attributes on the 9 km grid (use :func:`spl3smp_filename` with ``enhanced=True``).

    Only the bounding box of the observed cells is stored (chunked datasets; the rest reads as
    fill), so a regional granule stays small. Parameters as :func:`write_spl3smp`.
    """
    return _write_l3(path, date, am, pm, product="SPL3SMP_E", version=version, metadata=metadata, omit=omit)


def write_smap_subset(
    path: PathLike,
    date: dt.date,
    am: SmapPass | None,
    pm: SmapPass | None = None,
    *,
    row0: int,
    col0: int,
    product: str = "SPL3SMP",
    xy: bool = True,
    omit: tuple[str, ...] = ("EASE_row_index", "EASE_column_index"),
    history: bool = True,
    metadata: bool = False,
    version: str | None = None,
) -> Path:
    """Write a Harmony/OPeNDAP spatial subset of an SPL3SMP or SPL3SMP_E granule (netCDF-4).

    The layout follows the real subsets ``hoss_shape_file_*_reference.nc4``: the arrays are
    the window of the global grid starting at global ``row0``, ``col0`` (their shape is that
    of the passes' arrays); every variable carries ``grid_mapping`` ->
    ``/EASE2_global_projection_<N>km`` (a root variable with the projection's CF attributes);
    latitude/longitude have ``_FillValue`` -9999; each group has ``x``/``y`` (float64, cell
    centres in metres, ``_FillValue`` NaN) as dimension scales of its arrays; the root
    ``history`` holds the OPeNDAP request with the window's ``[row0:row1][col0:col1]`` and
    the collection id (``SC:SPL3SMP.009``), ``build_dmrpp_metadata.invocation`` the granule
    name. No ``/Metadata`` and no row/column indices by default, as in the real subsets.

    Parameters
    ----------
    path
        Output file; any name (a download tool's name carries no date).
    date
        The granule's date (in the granule name of the history, tb_time and the metadata).
    am, pm
        Fields of each pass on the subset's window; a pass that is None gets no group.
    row0, col0
        Global row and column of the subset's first cell on the product's grid.
    product
        ``"SPL3SMP"`` (36 km) or ``"SPL3SMP_E"`` (9 km).
    xy
        Write the ``x``/``y`` coordinates.
    omit
        Variables (names without ``_pm``) not to write.
    history
        Write the ``history`` and ``build_dmrpp_metadata.invocation`` root attributes.
    metadata
        Write a ``/Metadata`` group.
    version
        Collection version (default the product's: 009, 006).
    """
    return _write_l3(path, date, am, pm, product=product, version=version, metadata=metadata, omit=omit,
                     row0=row0, col0=col0, subset=True, xy=xy, history=history)


def spl3smp_filename(date: dt.date, crid: str = "R19240", counter: int = 1, enhanced: bool = False) -> str:
    """Real SPL3SMP file name, e.g. ``SMAP_L3_SM_P_20150410_R19240_001.h5``
    (``SMAP_L3_SM_P_E_...`` with ``enhanced``, the SPL3SMP_E name)."""
    return f"SMAP_L3_SM_P_{'E_' if enhanced else ''}{date:%Y%m%d}_{crid}_{counter:03d}.h5"


def _write_l3(
    path: PathLike, date: dt.date, am: SmapPass | None, pm: SmapPass | None, *, product: str, version: str | None,
    metadata: bool, omit: tuple[str, ...], latitude: np.ndarray | None = None, longitude: np.ndarray | None = None,
    row0: int = 0, col0: int = 0, subset: bool = False, xy: bool = False, history: bool = False,
) -> Path:
    import h5py

    spec = SMAP_PRODUCTS[product]
    version = version or spec.version
    granule = spl3smp_filename(date, enhanced=product == "SPL3SMP_E")
    mapping = f"EASE2_global_projection_{_km(spec.grid)}km"
    path = Path(path)
    written: list[str] = []
    with h5py.File(path, "w") as f:
        if subset:
            f.create_dataset(mapping, shape=(1,), dtype="S1")
            for k, v in _PROJECTION_ATTRS.items():
                f[mapping].attrs[k] = np.bytes_(v) if isinstance(v, str) else v
        for group, suffix, fields in ((AM_GROUP, "", am), (PM_GROUP, "_pm", pm)):
            if fields is None:
                continue
            g = f.create_group(group)
            shape = np.shape(fields.soil_moisture)
            if not subset and shape != (spec.grid.nrows, spec.grid.ncols):
                raise ValueError(f"soil_moisture must be the global {(spec.grid.nrows, spec.grid.ncols)} grid, got {shape}")
            lat0, lon0 = smap_grid_latlon(spec.grid, row0, col0, shape)
            lat0 = lat0 if latitude is None else np.asarray(latitude, np.float32)
            lon0 = lon0 if longitude is None else np.asarray(longitude, np.float32)
            names = _write_pass(g, date, suffix, fields, spec.grid, row0, col0, lat0, lon0, omit, f"/{mapping}" if subset else None)
            written += [f"/{group}/{n}" for n in names]
            if xy:
                _write_xy(g, spec.grid, row0, col0, shape, f"/{mapping}", names)
        if metadata:
            _smap_metadata(f, date, granule, version, product, spec.smap_short)
        if history and written:
            first = am or pm
            assert first is not None  # something was written
            ny, nx = np.shape(first.soil_moisture)
            ce = ";".join(f"{n}[{row0}:{row0 + ny - 1}][{col0}:{col0 + nx - 1}]" for n in written)
            f.attrs["history"] = np.bytes_(
                "2025-08-13 18:42:53 GMT hyrax-1.17.1-219 https://opendap.earthdata.nasa.gov/collections/C2938663676-NSIDC_CPRD/"
                f"granules/SC:{product}.{version}:296012210.dap.nc4?dap4.ce={quote(ce, safe='')}\n\n"
                "2025-08-13T18:42:59.375303+00:00 Harmony Metadata Annotator 1.0.4"
            )
            f.attrs["build_dmrpp_metadata.invocation"] = np.bytes_(
                f"build_dmrpp -c /tmp/bes_conf_PXTZ -f /usr/share/hyrax/DATA/{granule} -r /tmp/dmr__MLbLWr -u OPeNDAP_DMRpp_DATA_ACCESS_URL -M"
            )
    return path


def _write_pass(g, date, suffix, p: SmapPass, grid: Grid, row0, col0, lat0, lon0, omit, mapping: str | None) -> list[str]:
    """Write one pass's variables; only the bounding box of the observed cells is stored."""
    sm = np.asarray(p.soil_moisture, dtype=np.float32)
    shape = sm.shape
    valid = ~np.isnan(sm)
    observed = valid if p.observed is None else np.asarray(p.observed, bool) | valid
    qual = np.where(valid, 0, 65534).astype(np.uint16) if p.retrieval_qual_flag is None else np.asarray(p.retrieval_qual_flag, np.uint16)
    seconds = (dt.datetime.combine(date, dt.time(), dt.timezone.utc) - J2000_UTC).total_seconds() + 3600 * p.hour_utc
    stamp = (J2000_UTC + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
    box: tuple[slice, slice] | None = None
    if observed.any():
        r, c = np.nonzero(observed.any(axis=1))[0], np.nonzero(observed.any(axis=0))[0]
        box = (slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1))
    names = []
    for name, (dtype, attrs) in smap_schema(suffix, grid).items():
        if name.removesuffix(suffix) in omit:
            continue
        if mapping:
            attrs = dict(attrs) | {"grid_mapping": mapping}
            if name.startswith(("latitude", "longitude")):
                attrs.setdefault("_FillValue", np.float32(-9999.0))
        fill = attrs.get("_FillValue", b"" if dtype == "S24" else -9999.0)
        ds = g.create_dataset(name, shape=shape, dtype=dtype, fillvalue=fill, chunks=(min(shape[0], 203), min(shape[1], 482)),
                              compression="gzip", compression_opts=4)
        for k, v in attrs.items():
            ds.attrs[k] = np.bytes_(v) if isinstance(v, str) else v
        names.append(name)
        if box is None:
            continue
        ds[box] = _pass_data(name.removesuffix(suffix), box, sm, valid, observed, qual,
                             {"latitude": lat0, "longitude": lon0}, stamp, seconds, row0, col0)
    return names


def _pass_data(base: str, box: tuple[slice, slice], sm: np.ndarray, valid: np.ndarray, observed: np.ndarray,
               qual: np.ndarray, latlon: dict[str, np.ndarray], stamp: str, seconds: float, row0: int, col0: int
               ) -> np.ndarray:
    """The stored values (over ``box``) of the pass variable ``base`` (its name without the suffix)."""
    obs = observed[box]
    shape = sm.shape
    if base == "soil_moisture":
        return np.where(valid[box], sm[box], -9999.0)
    if base == "retrieval_qual_flag":
        return qual[box]
    if base in ("latitude", "longitude"):
        return np.where(obs, latlon[base][box], -9999.0)
    if base == "tb_time_utc":
        return np.where(obs, stamp.encode(), b"")
    if base == "tb_time_seconds":
        return np.where(obs, seconds, -9999.0)
    if base == "EASE_row_index":
        return np.where(obs, np.arange(row0, row0 + shape[0])[box[0], None], 65534)
    assert base == "EASE_column_index", base  # the last variable of smap_schema
    return np.where(obs, np.arange(col0, col0 + shape[1])[None, box[1]], 65534)


def _write_xy(g, grid: Grid, row0: int, col0: int, shape: tuple[int, int], mapping: str, names: list[str]) -> None:
    """``x``/``y`` cell-centre coordinates as dimension scales of the group's arrays."""
    scales = {}
    for axis, values in (("y", grid.y_centres(np.arange(row0, row0 + shape[0]))), ("x", grid.x_centres(np.arange(col0, col0 + shape[1])))):
        ds = g.create_dataset(axis, data=values, dtype="f8", fillvalue=np.nan)
        attrs = {
            "_FillValue": np.float64(np.nan), "axis": axis.upper(), "grid_mapping": mapping,
            "long_name": f"{axis} coordinate of projection", "standard_name": f"projection_{axis}_coordinate", "units": "m",
        }
        for k, v in attrs.items():
            ds.attrs[k] = np.bytes_(v) if isinstance(v, str) else v
        ds.make_scale(axis)
        scales[axis] = ds
    for name in names:
        g[name].dims[0].attach_scale(scales["y"])
        g[name].dims[1].attach_scale(scales["x"])


def _smap_metadata(f, date: dt.date, filename: str, version: str, short: str = "SPL3SMP", smap_short: str = "L3_SM_P") -> None:
    ext = f.create_group("Metadata/Extent")
    ext.attrs["rangeBeginningDateTime"] = np.bytes_(f"{date.isoformat()}T00:00:00.000Z")
    ext.attrs["rangeEndingDateTime"] = np.bytes_(f"{date.isoformat()}T23:59:59.999Z")
    ds = f.create_group("Metadata/DatasetIdentification")
    for k, v in {"shortName": short, "ECSVersionID": version, "fileName": filename, "SMAPShortName": smap_short}.items():
        ds.attrs[k] = np.bytes_(v)


__all__ = ["AM_GROUP", "J2000_UTC", "PM_GROUP", "SMAP_PRODUCTS", "SmapPass", "SmapProduct", "ease36_latlon",
           "smap_grid_latlon", "smap_schema", "spl3smp_filename", "write_smap_subset", "write_spl3smp",
           "write_spl3smp_e"]
