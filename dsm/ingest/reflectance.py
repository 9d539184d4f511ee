"""MOD09A1 surface reflectance bands as per-date rasters -> NDWI, LSWI, NSDSI on the 1 km grid.

MODIStsp and NASA AppEEARS deliver MOD09A1 as one GeoTIFF per band and 8-day composite
(``MOD09A1_sur_refl_b02_2021_193.tif``, ``MOD09A1.061_sur_refl_b02_doy2021193_aid0001.tif``),
int16 counts (scale 0.0001, fill -28672) or scaled floats. ``inputs.reflectance`` gives the
files of bands 2, 4, 6 and 7 (and optionally ``sur_refl_state_500m``); the indices are computed
by the MOD09A1 tile reader's own code (:data:`dsm.ingest.modis.PRODUCTS` ``["MOD09A1"]``:
its ``derive``, i.e. :func:`dsm.indices.ndwi`, :func:`~dsm.indices.lswi`,
:func:`~dsm.indices.nsdsi`; its QC rules on the state band; its resampling), at the bands'
own resolution and then averaged to 1 km, so the same pixels give the same values as the HDF
path.

Dates (:func:`match_band_dates`): every file is dated by its name; a date needs every band
(and the state band when configured). A date missing one is skipped, each of its files named
with the band that is missing; a file matched by two bands' paths is refused.

Values (:func:`read_band`): ``value = raw * scale + offset`` as for any raster
(:mod:`dsm.ingest.rasters`: the file's scale wins, integers need a scale); reflectance over
the region outside :data:`REFLECTANCE_RANGE` (MOD09A1's valid range, -100..16000 counts)
refuses the file, which catches counts read without their scale. Bands of one date are paired
by their grid (CRS, transform and size): a band raster with no partner of every other band on
its grid is refused.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from dsm.files import Status
from dsm.grid import CELL_1KM, Region
from dsm.ingest.base import (
    DEFAULT_DATE_REGEX,
    InputDateError,
    ManyResult,
    PathLike,
    date_from_name,
    read_many,
)
from dsm.ingest.modis_products import PRODUCTS, QCRule, passes_all
from dsm.ingest.rasters import ValueRule, check_range, read_values, require_scale, require_values
from dsm.ingest.reproject import Raster, warp_many_to_region

BANDS = ("b2", "b4", "b6", "b7")
STATE = "state"
MOD09 = PRODUCTS["MOD09A1"]
assert MOD09.derive is not None
#: The indices from the bands: the MOD09A1 tile reader's own function.
DERIVE = MOD09.derive
STATE_SDS = "sur_refl_state_500m"
#: The MOD09A1 cloud and shadow screening applied with a state band (the tile reader's defaults).
DEFAULT_QC: tuple[QCRule, ...] = tuple(MOD09.qc_defaults[STATE_SDS])
#: Valid reflectance after scaling: MOD09A1's valid_range (-100..16000) times its scale 0.0001.
REFLECTANCE_RANGE = (-0.01, 1.6)
#: File-name dates: MODIStsp's ``_YYYY_DDD`` besides :data:`dsm.ingest.base.DEFAULT_DATE_REGEX`
#: (``AYYYYDDD``, AppEEARS' ``doyYYYYDDD``, ``YYYY-MM-DD``, ``YYYYMMDD``).
DATE_REGEX = DEFAULT_DATE_REGEX + r"|(?<!\d)(?P<year4>\d{4})_(?P<doy4>\d{3})(?!\d)"


@dataclass
class BandDates:
    """What :func:`match_band_dates` found: the complete dates with their ``(band, file)``
    pairs, and the files it set aside (``(file, date or None, status, reason, error)``)."""

    complete: dict[dt.date, list[tuple[str, str]]] = field(default_factory=dict)
    problems: list[tuple[str, dt.date | None, str, str, str]] = field(default_factory=list)


def match_band_dates(files: Mapping[str, Sequence[str]], regex: str = DATE_REGEX,
                     setting: str = "inputs.reflectance") -> BandDates:
    """Pair the files of every band by the date in their names (pure).

    Parameters
    ----------
    files
        Band (``b2``, ``b4``, ``b6``, ``b7``, ``state``) -> its files.
    regex
        File-name date pattern (:func:`dsm.ingest.base.date_from_name`).
    setting
        The configuration key named in the reasons (``inputs.reflectance``).

    Returns
    -------
    BandDates
        Dates that have every band of ``files``; the others are skipped, each file with the
        bands its date lacks; files without a date or given for two bands are failed.
    """
    owner: dict[str, list[str]] = {}
    for band, urls in files.items():
        for u in urls:
            owner.setdefault(u, []).append(band)
    out = BandDates()
    by_date: dict[dt.date, dict[str, list[str]]] = {}
    for url, bands in sorted(owner.items()):
        if len(bands) > 1:
            out.problems.append((url, None, "failed", f"matched by the paths of {' and '.join(f'{setting}.{b}' for b in bands)}: "
                                 "give each band its own files", "ConfigError"))
            continue
        try:
            date = date_from_name(url, regex)
        except InputDateError as exc:
            out.problems.append((url, None, "failed", exc.reason, type(exc).__name__))
            continue
        by_date.setdefault(date, {}).setdefault(bands[0], []).append(url)
    for date, have in sorted(by_date.items()):
        missing = [b for b in files if b not in have]
        if not missing:
            out.complete[date] = [(b, u) for b in files for u in have[b]]
            continue
        what = ", ".join(f"{b} ({setting}.{b})" for b in missing)
        for urls in have.values():
            out.problems += [(u, date, "skipped", f"no {what} file for {date}: the date is skipped", "") for u in urls]
    return out


def read_band(path: PathLike, band: str, region: Region, rule: ValueRule) -> Raster:
    """One band raster over ``region`` (with a 1 km margin): reflectance checked against
    :data:`REFLECTANCE_RANGE`, or the state band's integers as stored.

    Raises
    ------
    InputError
        Unreadable, no or unknown CRS, not north-up, off the region (:class:`NoOverlapError`),
        all nodata (:class:`EmptyGranuleError`), integers without a scale, values outside the range.
    """
    path = os.fspath(path)
    if band == STATE:
        raster, _ = read_values(path, 1, ValueRule(setting=rule.key(STATE)), region, CELL_1KM)
        return raster
    raster, applied = read_values(path, 1, rule, region, CELL_1KM)
    require_scale(path, applied, rule, example="0.0001 for MOD09A1 reflectance counts")
    require_values(path, raster, " over the region")
    check_range(path, raster, f"{band} reflectance", region, rule, applied, REFLECTANCE_RANGE)
    return raster


def _band_part(path: str, bands: Mapping[str, str], region: Region, rule: ValueRule) -> tuple[str, Raster]:
    return bands[path], read_band(path, bands[path], region, rule)


def _grid_key(r: Raster) -> tuple:
    return r.crs.to_wkt(), tuple(round(v, 6) for v in r.transform[:6]), r.data.shape


def screen_state(layers: Mapping[str, np.ndarray], state: np.ndarray, rules: Sequence[QCRule]) -> dict[str, np.ndarray]:
    """Bands with NaN where the state band fails ``rules`` (:meth:`QCRule.passes`) or has no value."""
    ok = np.isfinite(state) & passes_all(rules, np.where(np.isfinite(state), state, 0).astype(np.int64))
    return {b: np.where(ok, a, np.float32(np.nan)).astype(np.float32) for b, a in layers.items()}


def reflectance_indices(bands: Mapping[str, str], region: Region, rule: ValueRule | None = None,
                        qc: Sequence[QCRule] | None = None) -> tuple[dict[str, np.ndarray] | None, ManyResult]:
    """NDWI, LSWI and NSDSI on the region's 1 km grid from the band rasters of one date.

    Parameters
    ----------
    bands
        File -> its band (``b2``, ``b4``, ``b6``, ``b7``, optionally ``state``); several files
        of a band (tiles) are paired with the other bands on their grid.
    region
        Destination region.
    rule
        Configured scale, offset and nodata of the reflectance bands.
    qc
        Rules on the state band (None: :data:`DEFAULT_QC`); used when a state file is given.

    Returns
    -------
    (dict or None, ManyResult)
        ``{"ndwi", "lswi", "nsdsi"}`` -> float32 (y, x), None when no grid had every band;
        and the per-file report (bad files failed, grids without a valid pixel skipped).
    """
    rule = rule or ValueRule(setting="inputs.reflectance")
    many = read_many(list(bands), _band_part, bands=bands, region=region, rule=rule)
    needed = sorted(set(bands.values()), key=[*BANDS, STATE].index)
    grids: dict[tuple, dict[str, list[tuple[str, Raster]]]] = {}
    for path, (band, raster) in many.results.items():
        grids.setdefault(_grid_key(raster), {}).setdefault(band, []).append((path, raster))
    verdicts: dict[str, tuple[Status, str, str]] = {}
    derived: list[tuple[Raster, dict[str, np.ndarray]]] = []
    for have in grids.values():
        files = [p for pairs in have.values() for p, _ in pairs]
        missing = [b for b in needed if b not in have]
        twice = [b for b, pairs in have.items() if len(pairs) > 1]
        if missing or twice:
            why = (f"no usable {', '.join(missing)} raster on its grid (same CRS, transform and size) for this date: "
                   "the bands of one date must share a grid" if missing else f"several {', '.join(twice)} rasters on "
                   "one grid for this date: give one file per band, grid and date")
            verdicts.update({p: ("failed", why, "WrongProductError") for p in files})
            continue
        first = have[needed[0]][0][1]
        layers = {b: have[b][0][1].data for b in BANDS}
        if STATE in have:
            layers = screen_state(layers, have[STATE][0][1].data, DEFAULT_QC if qc is None else qc)
        out = DERIVE(layers)
        if all(np.isnan(a).all() for a in out.values()):
            why = "no pixel with all four bands valid" + (" after the state screening" if STATE in have else "")
            verdicts.update({p: ("skipped", why, "EmptyGranuleError") for p in files})
            continue
        derived.append((first, out))
    many.report = [replace(r, status=verdicts[r.path][0], reason=verdicts[r.path][1], error=verdicts[r.path][2])
                   if r.path in verdicts else r for r in many.report]
    for p in verdicts:
        many.results.pop(p, None)
    if not derived:
        return None, many
    return {k: warp_many_to_region([Raster(out[k], g.transform, g.crs) for g, out in derived], region, o.resampling)
            for k, o in MOD09.outputs.items()}, many


__all__ = ["BANDS", "DATE_REGEX", "DEFAULT_QC", "REFLECTANCE_RANGE", "STATE", "BandDates", "match_band_dates",
           "read_band", "reflectance_indices", "screen_state"]
