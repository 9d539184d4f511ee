"""Readers of gridded daily precipitation: GPM IMERG, CHIRPS and ERA5-Land.

Every reader returns an :class:`xarray.DataArray` named ``precip``, dims ``(time, lat, lon)``,
float32 in mm per day, NaN where missing, with 1-D cell-centre coordinates (latitude north to
south, longitude west to east; -180..180 unless the grid runs across the antimeridian), ``time``
the day at midnight (datetime64[ns]) and attributes ``product``, ``day`` (the day convention),
``res_deg`` ``(dlat, dlon)`` and ``source``. :func:`remap_to_region` (:mod:`dsm.remap`)
puts such a field on a Region's 1 km grid.

* **IMERG** (GES DISC daily netCDF4 ``3B-DAY[-E|-L].MS.MRG.3IMERG.YYYYMMDD-S000000-E235959.V0x.nc4``,
  Final/Late/Early run): ``precipitation`` (V07, "mm/day": mean rate x 24) or
  ``precipitationCal`` (V06, "mm": sum of the half hours), dims ``(time, lon, lat)``
  (lon-major), 0.1 degree, ``_FillValue`` -9999.9. Day: the **UTC day** (00:00-23:59:59 UTC);
  a daily file cannot be shifted to a local day.
* **CHIRPS** v2.0, 0.05 degree: daily GeoTIFF ``chirps-v2.0.YYYY.MM.DD.tif`` (or ``.tif.gz``;
  one float32 band, nodata -9999, EPSG:4326, date from the name) or yearly netCDF
  ``chirps-v2.0.YYYY.days_p05.nc`` (``precip (time, latitude, longitude)`` "mm/day", fill
  -9999). Day: the CHIRPS day as labelled (CHC states no time zone).
* **ERA5-Land** ``tp`` ("m", converted to mm) as the CDS delivers it: old CDS (``time``, int16
  packed, fill -32767) or new CDS (``valid_time``, float32 with NaN, ``number``/``expver``
  coordinates); hourly, or one total per day (the CDS daily-statistics ``daily_sum``). Day:
  hourly files are summed into the **local day** UTC + ``utc_offset_hours``; daily files keep
  the day they were delivered with (the CDS request's time zone).

The readers live in :mod:`dsm.ingest.precip_imerg`, :mod:`dsm.ingest.precip_chirps` and
:mod:`dsm.ingest.precip_era5land` (which also says how hourly ``tp``, accumulated since 00 UTC,
is summed into local days), what they share in :mod:`dsm.ingest.precip_common`; this module
picks the reader of a configured product and checks that a grid covers the region.

Checks (each raises an :mod:`dsm.ingest.base` error naming the file and what to do): a missing
variable, no date, the wrong product, units that are not a depth per day (IMERG "mm" or
"mm/day", CHIRPS "mm/day", ERA5-Land "m" converted to mm; rates such as "mm/hr" or
"kg m-2 s-1" are refused), negative values beyond rounding noise, values above
:data:`MAX_DAILY_MM` (units mislabelled), and with :func:`check_covers` a grid that does not
cover the region.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import xarray as xr

from dsm.grid import Region
from dsm.ingest.base import GeolocationError, NoOverlapError, PathLike
from dsm.ingest.precip_chirps import chirps_dates, read_chirps
from dsm.ingest.precip_common import MAX_DAILY_MM, NEG_TOL_MM, netcdf_times
from dsm.ingest.precip_era5land import hourly_to_local_days, read_era5land, read_era5land_file
from dsm.ingest.precip_imerg import imerg_date, read_imerg
from dsm.remap import BBox, RemapMethod, grid_spacing, remap_to_region

__all__ = ["MAX_DAILY_MM", "NEG_TOL_MM", "RemapMethod", "check_covers", "chirps_dates", "hourly_to_local_days",
           "imerg_date", "local_utc_offset", "netcdf_times", "read_chirps", "read_era5land", "read_era5land_file",
           "read_imerg", "read_precip", "remap_to_region"]


def read_precip(product: str, paths: Sequence[PathLike], *, utc_offset_hours: int = 0, bbox: BBox | None = None,
                days: Iterable[dt.date] | None = None) -> xr.DataArray:
    """Daily ``precip`` of a configured product from its files (see the readers)."""
    if product == "era5land":
        return read_era5land(paths, utc_offset_hours, bbox=bbox, days=days)
    reader = {"imerg": lambda p: read_imerg(p, bbox=bbox), "chirps": lambda p: read_chirps(p, bbox=bbox, days=days)}
    if product not in reader:
        raise ValueError(f"unknown precipitation product {product!r} (imerg, chirps, era5land)")
    out = xr.concat([reader[product](p) for p in paths], dim="time")
    return out.isel(time=~out.indexes["time"].duplicated(keep="last")).sortby("time")


def local_utc_offset(region: Region) -> int:
    """The region's mean solar time: round(centre longitude / 15) hours east of UTC."""
    lon0, _, lon1, _ = region.lonlat_bounds
    return int(round((lon0 + lon1) / 2 / 15.0))


def check_covers(da: xr.DataArray, region: Region, path: str) -> None:
    """Refuse a grid that misses the region (NoOverlapError) or covers only part of it (GeolocationError)."""
    dlat, dlon = da.attrs.get("res_deg") or (grid_spacing(da.lat.values), grid_spacing(da.lon.values))
    lat, lon = da["lat"].values, da["lon"].values
    if lat.size == 0 or lon.size == 0:
        raise NoOverlapError(path, f"no grid cell near region {region.to_dict()}")
    s, n = lat.min() - dlat / 2, lat.max() + dlat / 2
    w, e = lon.min() - dlon / 2, lon.max() + dlon / 2
    r_w, r_s, r_e, r_n = region.lonlat_bounds
    shift = min((-360.0, 0.0, 360.0), key=lambda k: -(min(r_e + k, e) - max(r_w + k, w)))
    full_lon = e - w >= 360.0 - 1e-6
    if n <= r_s or s >= r_n or (not full_lon and (e <= r_w + shift or w >= r_e + shift)):
        raise NoOverlapError(path, f"the grid (lon {w:.3f}..{e:.3f}, lat {s:.3f}..{n:.3f}) does not touch region "
                                   f"{region.to_dict()} (lon {r_w:.3f}..{r_e:.3f}, lat {r_s:.3f}..{r_n:.3f})")
    eps = 1e-6
    if s > r_s + eps or n < r_n - eps or (not full_lon and (w > r_w + shift + eps or e < r_e + shift - eps)):
        raise GeolocationError(path, f"the grid (lon {w:.3f}..{e:.3f}, lat {s:.3f}..{n:.3f}) covers only part of "
                                     f"the region (lon {r_w:.3f}..{r_e:.3f}, lat {r_s:.3f}..{r_n:.3f}): download "
                                     "an area that contains the whole region")
