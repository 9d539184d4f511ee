"""Writers of input granules that follow the real product layouts, for tests and users.

* :func:`write_spl3smp` — SMAP L3 radiometer 36 km (SPL3SMP, HDF5) with the variables the
  reader uses, names, dtypes, ``_FillValue``, ``valid_min``/``valid_max``, ``units`` and
  ``long_name`` exactly as in the real version 9 schema (``SC_SPL3SMP_009.dmr``), plus the
  ``/Metadata`` attributes that carry the date and product name; :func:`write_spl3smp_e` the
  same on the 9 km grid (SPL3SMP_E); :func:`write_smap_subset` a Harmony/OPeNDAP spatial
  subset of either, laid out as the real ``hoss_shape_file_*_reference.nc4`` (``x``/``y``
  dimension scales, the ``EASE2_global_projection_<N>km`` grid-mapping variable, -9999 fills,
  the request in ``history``).
* :func:`write_modis_tile` — MODIS HDF4-EOS tiles (SD interface) with a ``StructMetadata.0``
  and ``CoreMetadata.0`` in the real ODL layout; SDS attributes of MOD11A1, MOD13A2 and MOD09A1
  copied from real collection 6/6.1 files, those of MOD15A2H and MCD43A3 from the published
  collection 6.1 layouts (no real sample could be had). The HDF-EOS Vgroup structure is not
  reproduced (readers here use the SD interface plus ``StructMetadata.0``; GDAL has no HDF4).
* :func:`write_srtm_hgt` — SRTM ``.hgt`` tiles; :func:`write_geotiff` — any GeoTIFF.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from dsm.grid import EASE2_9KM, EASE2_36KM, Grid, xy_to_lonlat

PathLike = str | os.PathLike

# ======================================================================================
# SMAP SPL3SMP / SPL3SMP_E granules and Harmony/OPeNDAP subsets
# ======================================================================================
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


def _smap_schema(suffix: str, grid: Grid = EASE2_36KM) -> dict[str, tuple[str, dict[str, object]]]:
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
    lat = {"long_name": "Latitude of the center of the Earth based grid cell.", "units": "degrees_north"}
    lon = {"long_name": "Longitude of the center of the Earth based grid cell.", "units": "degrees_east"}
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
            ny, nx = np.shape((am or pm).soil_moisture)
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
    for name, (dtype, attrs) in _smap_schema(suffix, grid).items():
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
        obs = observed[box]
        base = name.removesuffix(suffix)
        if base == "soil_moisture":
            data = np.where(valid[box], sm[box], -9999.0)
        elif base == "retrieval_qual_flag":
            data = qual[box]
        elif base in ("latitude", "longitude"):
            data = np.where(obs, (lat0 if base == "latitude" else lon0)[box], -9999.0)
        elif base == "tb_time_utc":
            data = np.where(obs, stamp.encode(), b"")
        elif base == "tb_time_seconds":
            data = np.where(obs, seconds, -9999.0)
        else:
            rows = np.arange(row0, row0 + shape[0])[box[0], None] if base == "EASE_row_index" else None
            cols = np.arange(col0, col0 + shape[1])[None, box[1]] if base == "EASE_column_index" else None
            data = np.where(obs, rows if rows is not None else cols, 65534)
        ds[box] = data
    return names


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

# ======================================================================================
# MODIS HDF4-EOS tiles
# ======================================================================================
TILE_X0 = -20015109.354
TILE_Y0 = 10007554.677
TILE_SIZE = 1111950.5197


@dataclass(frozen=True)
class SdsLayout:
    """One SDS of a product layout."""

    dtype: str  # numpy dtype name
    fill: int
    valid_range: tuple[int, int]
    attrs: Mapping[str, object]  # long_name, units, ... in file order (before the packing attrs)
    scale: float | None = None  # written with SDsetcal: scale_factor(_err), add_offset(_err), calibrated_nt
    offset: float = 0.0
    convention: str = "multiply"


@dataclass(frozen=True)
class ModisLayout:
    """Grid name, pixels per tile and SDS of a product (collection 6.1)."""

    short_name: str
    grid_name: str
    pixels: int
    sds: Mapping[str, SdsLayout]
    name_date_offset: int = 0
    composite_days: int = 1


_CLOUD_DOC = "\n\t Rank Keys: \n\t[-1] : Fill/No Data-Not Processed. \n\t [0] : Good data      - Use with confidence \n\t [1] : Marginal data  - Useful, but look at other QA information \n\t [2] : Snow/Ice       - Target covered with snow/ice \n\t [3] : Cloudy         - Target not visible, covered with cloud \n"
_LAI_FILL_DOC = (
    "MOD15A2 FILL VALUE LEGEND\n255 = _Fillvalue, assigned when:\n    * the MOD09GA suf. reflectance for channel VIS, NIR was "
    "assigned its _Fillvalue, or\n    * land cover pixel itself was assigned _Fillvalus 255 or 254.\n254 = land cover "
    "assigned as perennial salt or inland fresh water.\n253 = land cover assigned as barren, sparse vegetation (rock, "
    "tundra, desert.)\n252 = land cover assigned as perennial snow, ice.\n251 = land cover assigned as \"permanent\" "
    "wetlands/inundated marshlands.\n250 = land cover assigned as urban/built-up.\n249 = land cover assigned as "
    "\"unclassified\" or not able to determine.\n"
)
_LAI_QC_DOC = (
    "\n\tBITFIELDS IN QC BYTE:\n\tBit 0 MODLAND_QC: 0 = Good Quality (main algorithm with or without saturation), "
    "1 = Other Quality (back-up algorithm or fill values)\n\tBit 1 SENSOR: 0 = Terra, 1 = Aqua\n\tBit 2 DEADDETECTOR: "
    "0 = Detectors apparently fine for up to 50% of channels 1,2; 1 = Dead detectors caused >50% adjacent detector "
    "retrieval\n\tBits 3-4 CLOUDSTATE: 00 = Significant clouds NOT present (clear), 01 = Significant clouds WERE "
    "present, 10 = Mixed cloud present on pixel, 11 = Cloud state not defined, assumed clear\n\tBits 5-7 SCF_QC: "
    "000 = Main (RT) method used, best result possible (no saturation), 001 = Main (RT) method used with saturation, "
    "010 = Main (RT) method failed due to bad geometry, empirical algorithm used, 011 = Main (RT) method failed due "
    "to problems other than geometry, empirical algorithm used, 100 = Pixel not produced at all, value couldn't be "
    "retrieved\n"
)


def _refl(band: int) -> SdsLayout:
    return SdsLayout(
        "int16", -28672, (-100, 16000), {"long_name": f"Surface_reflectance_for_band_{band}", "units": "reflectance"}, 0.0001
    )


def _vi(name: str, units: str, fill: int, vr: tuple[int, int], scale: float | None = 10000.0, **extra: str) -> SdsLayout:
    return SdsLayout("int16", fill, vr, {"long_name": name, "units": units, **extra}, scale, convention="divide")


LAYOUTS: dict[str, ModisLayout] = {
    "MOD11A1": ModisLayout(
        "MOD11A1",
        "MODIS_Grid_Daily_1km_LST",
        1200,
        {
            "LST_Day_1km": SdsLayout(
                "uint16",
                0,
                (7500, 65535),
                {"long_name": "Daily daytime 1km grid Land-surface Temperature", "units": "K", "Number Type": "uint16", "LST": "LST data * scale_factor"},
                0.02,
            ),
            "QC_Day": SdsLayout(
                "uint8", 0, (0, 255), {"long_name": "Quality control for daytime LST and emissivity", "Number Type": "uint8"}
            ),
        },
    ),
    "MOD13A2": ModisLayout(
        "MOD13A2",
        "MODIS_Grid_16DAY_1km_VI",
        1200,
        {
            "1 km 16 days NDVI": _vi("1 km 16 days NDVI", "NDVI", -3000, (-2000, 10000)),
            "1 km 16 days EVI": _vi("1 km 16 days EVI", "EVI", -3000, (-2000, 10000)),
            "1 km 16 days VI Quality": SdsLayout("uint16", 65535, (0, 65534), {"long_name": "1 km 16 days VI Quality", "units": "bit field"}),
            "1 km 16 days pixel reliability": SdsLayout(
                "int8", -1, (0, 3), {"long_name": "1 km 16 days pixel reliability", "units": "rank", "Legend": _CLOUD_DOC}
            ),
        },
        composite_days=16,
    ),
    "MOD09A1": ModisLayout(
        "MOD09A1",
        "MOD_Grid_500m_Surface_Reflectance",
        2400,
        {
            **{f"sur_refl_b0{b}": _refl(b) for b in range(1, 8)},
            "sur_refl_qc_500m": SdsLayout(
                "uint32", 4294967295, (0, 4294966531), {"long_name": "Surface_reflectance_500m_quality_control_flags", "units": "bit field"}
            ),
            "sur_refl_state_500m": SdsLayout(
                "uint16", 65535, (0, 57343), {"long_name": "Surface_reflectance_500m_state_flags", "units": "bit field"}
            ),
        },
        composite_days=8,
    ),
    "MOD15A2H": ModisLayout(
        "MOD15A2H",
        "MOD_Grid_MOD15A2H",
        2400,
        {
            "Fpar_500m": SdsLayout(
                "uint8", 255, (0, 100),
                {"long_name": "MOD15A2H MODIS/Terra Gridded 500M FPAR (8-day composite)", "units": "Percent", "MOD15A2_FILLVALUE_DOC": _LAI_FILL_DOC},
                0.01,
            ),
            "Lai_500m": SdsLayout(
                "uint8", 255, (0, 100),
                {"long_name": "MOD15A2H MODIS/Terra Gridded 500M Leaf Area Index LAI (8-day composite)", "units": "m^2/m^2", "MOD15A2_FILLVALUE_DOC": _LAI_FILL_DOC},
                0.1,
            ),
            "FparLai_QC": SdsLayout(
                "uint8", 255, (0, 254),
                {"long_name": "MOD15A2H MODIS/Terra Gridded 500M FparLai_QC (8-day composite)", "units": "class-flag", "FparLai_QC_DOC": _LAI_QC_DOC},
            ),
            "FparExtra_QC": SdsLayout(
                "uint8", 255, (0, 254), {"long_name": "MOD15A2H MODIS/Terra Gridded 500M FparExtra_QC (8-day composite)", "units": "class-flag"}
            ),
            "FparStdDev_500m": SdsLayout(
                "uint8", 255, (0, 100), {"long_name": "MOD15A2H MODIS/Terra Gridded 500M FPAR Standard Deviation (8-day composite)", "units": "Percent"}, 0.01
            ),
            "LaiStdDev_500m": SdsLayout(
                "uint8", 255, (0, 100), {"long_name": "MOD15A2H MODIS/Terra Gridded 500M LAI Standard Deviation (8-day composite)", "units": "m^2/m^2"}, 0.1
            ),
        },
        composite_days=8,
    ),
    "MCD43A3": ModisLayout(
        "MCD43A3",
        "MOD_Grid_BRDF",
        2400,
        {
            "Albedo_BSA_shortwave": SdsLayout("int16", 32767, (0, 32766), {"long_name": "black_sky_albedo", "units": "reflectance, no units"}, 0.001),
            "Albedo_WSA_shortwave": SdsLayout("int16", 32767, (0, 32766), {"long_name": "white_sky_albedo", "units": "reflectance, no units"}, 0.001),
            "BRDF_Albedo_Band_Mandatory_Quality_shortwave": SdsLayout(
                "uint8", 255, (0, 254), {"long_name": "BRDF_Albedo_Band_Mandatory_Quality", "units": "concatenated flags"}
            ),
        },
        name_date_offset=8,
    ),
}

_SDC_TYPES = {"int8": "INT8", "uint8": "UINT8", "int16": "INT16", "uint16": "UINT16", "int32": "INT32", "uint32": "UINT32"}
_DFNT = {"int8": "DFNT_INT8", "uint8": "DFNT_UINT8", "int16": "DFNT_INT16", "uint16": "DFNT_UINT16", "uint32": "DFNT_UINT32"}


def modis_filename(product: str, date: dt.date, h: int, v: int, collection: str = "061") -> str:
    """Real-style tile name, e.g. ``MOD11A1.A2021227.h11v05.061.2021228105320.hdf``."""
    return f"{product}.A{date:%Y%j}.h{h:02d}v{v:02d}.{collection}.{date + dt.timedelta(1):%Y%j}000000.hdf"


def pack(values: np.ndarray, layout: SdsLayout) -> np.ndarray:
    """Pack physical values (NaN -> fill) with a layout's scale convention."""
    v = np.asarray(values, dtype=np.float64)
    if layout.scale is None:
        raw = v
    elif layout.convention == "divide":
        raw = v * layout.scale + layout.offset
    else:
        raw = (v - layout.offset) / layout.scale
    return np.where(np.isnan(raw), layout.fill, np.round(np.nan_to_num(raw))).astype(layout.dtype)


def write_modis_tile(
    path: PathLike,
    product: str,
    h: int,
    v: int,
    date: dt.date,
    data: Mapping[str, np.ndarray],
    *,
    row0: int = 0,
    col0: int = 0,
    shape: tuple[int, int] | None = None,
    struct_metadata: str | None = None,
    omit: tuple[str, ...] = (),
) -> Path:
    """Write a MODIS HDF4-EOS tile (or a window of one) following a product layout.

    Parameters
    ----------
    path
        Output ``.hdf`` file (see :func:`modis_filename`).
    product
        Key of :data:`LAYOUTS` (``"MOD11A1"``, ``"MOD13A2"``, ``"MOD09A1"``, ``"MOD15A2H"``,
        ``"MCD43A3"``).
    h, v
        Tile indices; the grid corners follow the published tiling.
    date
        File-name date (``AYYYYDDD``).
    data
        SDS name -> array (rows, cols). Float arrays are physical values packed with the
        layout's scale (NaN -> fill); integer arrays are written as stored values. SDS of the
        layout not given are written full of their fill value.
    row0, col0, shape
        Window of the tile (in its pixels) that the arrays cover; default the whole tile.
    struct_metadata
        Replace the generated ``StructMetadata.0`` text (to write broken files).
    omit
        SDS of the layout not to write (to write files with a missing SDS).
    """
    from pyhdf.SD import SD, SDC

    lay = LAYOUTS[product]
    if shape is None:
        shape = next(iter(data.values())).shape if data else (lay.pixels, lay.pixels)
    ny, nx = shape
    px = TILE_SIZE / lay.pixels
    ulx = TILE_X0 + h * TILE_SIZE + col0 * px
    uly = TILE_Y0 - v * TILE_SIZE - row0 * px
    path = Path(path)
    sd = SD(str(path), SDC.WRITE | SDC.CREATE | SDC.TRUNC)
    try:
        for name, sl in lay.sds.items():
            if name in omit:
                continue
            arr = data.get(name)
            if arr is None:
                raw = np.full(shape, sl.fill, dtype=sl.dtype)
            elif np.issubdtype(np.asarray(arr).dtype, np.floating):
                raw = pack(arr, sl)
            else:
                raw = np.asarray(arr).astype(sl.dtype)
            if raw.shape != (ny, nx):
                raise ValueError(f"{name}: shape {raw.shape} is not {(ny, nx)}")
            sdc_type = getattr(SDC, _SDC_TYPES[sl.dtype])
            sds = sd.create(name, sdc_type, (ny, nx))
            sds.dim(0).setname(f"YDim:{lay.grid_name}")
            sds.dim(1).setname(f"XDim:{lay.grid_name}")
            for k, val in sl.attrs.items():
                sds.attr(k).set(SDC.CHAR8, str(val))
            sds.setrange(*(np.array(sl.valid_range, dtype=sl.dtype).tolist()))
            sds.setfillvalue(np.array(sl.fill, dtype=sl.dtype).item())
            if sl.scale is not None:
                sds.setcal(sl.scale, 0.0, sl.offset, 0.0, sdc_type)
            sds.setcompress(SDC.COMP_DEFLATE, value=4)
            sds[:] = raw
            sds.endaccess()
        sm = struct_metadata if struct_metadata is not None else _struct_metadata(lay, nx, ny, (ulx, uly), (ulx + nx * px, uly - ny * px))
        sd.attr("HDFEOSVersion").set(SDC.CHAR8, "HDFEOS_V2.19")
        sd.attr("StructMetadata.0").set(SDC.CHAR8, sm)
        begin = date - dt.timedelta(lay.name_date_offset)
        end = begin + dt.timedelta(max(lay.composite_days, 16 if lay.name_date_offset else 1) - 1)
        sd.attr("CoreMetadata.0").set(SDC.CHAR8, _core_metadata(lay.short_name, begin, end))
    finally:
        sd.end()
    return path


def _struct_metadata(lay: ModisLayout, nx: int, ny: int, ul: tuple[float, float], lr: tuple[float, float]) -> str:
    fields = "".join(
        f'\t\t\tOBJECT=DataField_{i}\n\t\t\t\tDataFieldName="{name}"\n\t\t\t\tDataType={_DFNT[sl.dtype]}\n'
        f'\t\t\t\tDimList=("YDim","XDim")\n\t\t\tEND_OBJECT=DataField_{i}\n'
        for i, (name, sl) in enumerate(lay.sds.items(), start=1)
    )
    return (
        "GROUP=SwathStructure\nEND_GROUP=SwathStructure\nGROUP=GridStructure\n\tGROUP=GRID_1\n"
        f'\t\tGridName="{lay.grid_name}"\n\t\tXDim={nx}\n\t\tYDim={ny}\n'
        f"\t\tUpperLeftPointMtrs=({ul[0]:.6f},{ul[1]:.6f})\n\t\tLowerRightMtrs=({lr[0]:.6f},{lr[1]:.6f})\n"
        "\t\tProjection=GCTP_SNSOID\n\t\tProjParams=(6371007.181000,0,0,0,0,0,0,0,0,0,0,0,0)\n"
        "\t\tSphereCode=-1\n\t\tGridOrigin=HDFE_GD_UL\n\t\tGROUP=Dimension\n\t\tEND_GROUP=Dimension\n"
        f"\t\tGROUP=DataField\n{fields}\t\tEND_GROUP=DataField\n\t\tGROUP=MergedFields\n\t\tEND_GROUP=MergedFields\n"
        "\tEND_GROUP=GRID_1\nEND_GROUP=GridStructure\nGROUP=PointStructure\nEND_GROUP=PointStructure\nEND\n"
    )


def _odl_object(name: str, value: str, quote: bool = True) -> str:
    v = f'"{value}"' if quote else value
    return f"    OBJECT                 = {name}\n      NUM_VAL              = 1\n      VALUE                = {v}\n    END_OBJECT             = {name}\n\n"


def _core_metadata(short: str, begin: dt.date, end: dt.date) -> str:
    return (
        "\nGROUP                  = INVENTORYMETADATA\n  GROUPTYPE            = MASTERGROUP\n\n"
        "  GROUP                  = COLLECTIONDESCRIPTIONCLASS\n\n"
        + _odl_object("SHORTNAME", short)
        + _odl_object("VERSIONID", "61", quote=False)
        + "  END_GROUP              = COLLECTIONDESCRIPTIONCLASS\n\n  GROUP                  = RANGEDATETIME\n\n"
        + _odl_object("RANGEENDINGDATE", end.isoformat())
        + _odl_object("RANGEENDINGTIME", "23:59:59.000000")
        + _odl_object("RANGEBEGINNINGDATE", begin.isoformat())
        + _odl_object("RANGEBEGINNINGTIME", "00:00:00.000000")
        + "  END_GROUP              = RANGEDATETIME\n\nEND_GROUP              = INVENTORYMETADATA\n\nEND\n"
    )


# ======================================================================================
# DEM and generic rasters
# ======================================================================================
def srtm_name(lat: int, lon: int) -> str:
    """SRTM tile name of the tile whose south-west corner is (lat, lon), e.g. ``N44W072.hgt``."""
    return f"{'N' if lat >= 0 else 'S'}{abs(lat):02d}{'E' if lon >= 0 else 'W'}{abs(lon):03d}.hgt"


def write_srtm_hgt(folder: PathLike, lat: int, lon: int, elevation: np.ndarray) -> Path:
    """Write an SRTM ``.hgt`` tile: big-endian int16, 1201 or 3601 square, void -32768 (NaN)."""
    z = np.asarray(elevation)
    if z.shape not in ((1201, 1201), (3601, 3601)):
        raise ValueError(f"an .hgt tile is 1201 x 1201 or 3601 x 3601, got {z.shape}")
    if np.issubdtype(z.dtype, np.floating):
        z = np.where(np.isnan(z), -32768, np.round(np.nan_to_num(z)))
    path = Path(folder) / srtm_name(lat, lon)
    z.astype(">i2").tofile(path)
    return path


def write_geotiff(path: PathLike, array: np.ndarray, transform, crs, nodata: float | None = None) -> Path:
    """Write a one-band GeoTIFF (any CRS rasterio accepts, or None for no CRS)."""
    import rasterio

    a = np.asarray(array)
    profile = {
        "driver": "GTiff", "width": a.shape[1], "height": a.shape[0], "count": 1, "dtype": a.dtype.name,
        "transform": transform, "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(a, 1)
    return Path(path)
