"""Writers of MODIS HDF4-EOS tiles (SD interface) that follow the real product layouts.

:func:`write_modis_tile` writes a tile (or a window of one) with a ``StructMetadata.0`` and
``CoreMetadata.0`` in the real ODL layout. The SDS attributes of MOD11A1, MOD13A2 and MOD09A1
in :data:`LAYOUTS` are copied from real collection 6/6.1 files, those of MOD15A2H and MCD43A3
from the published collection 6.1 layouts (no real sample could be had). The HDF-EOS Vgroup
structure is not reproduced (readers here use the SD interface plus ``StructMetadata.0``; GDAL
has no HDF4).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike

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


__all__ = ["LAYOUTS", "TILE_SIZE", "TILE_X0", "TILE_Y0", "ModisLayout", "SdsLayout", "modis_filename", "pack",
           "write_modis_tile"]
