"""What each configured input names, and whether it gave anything (no silent no-ops).

``paths`` of an input may hold files, globs and folders, local or fsspec URLs
(``s3://bucket/MOD11A1/``). A folder, named directly or matched by a glob, is searched
recursively for the input's own files (:data:`FOLDER_PATTERNS`: SMAP ``SMAP_L3_SM_P_*.h5``,
MODIS ``MOD11A1.*.hdf``..., GeoTIFF ``*.tif``/``*.tiff``, DEM also ``*.hgt``).

After an ingest, :func:`input_errors` names every configured input that gave nothing: no
file matched its paths, or none of its files was used (all failed, off the cube's dates, or
outside the region). Files that were readable but held no valid pixel (clouds, fill) are a
legitimate empty result and do not count against their input. :func:`dsm.samples.empty_cube_cause` says
why a cube has nothing to train on (no SMAP, no land).
"""

from __future__ import annotations

import logging
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

_GEOTIFF = ("*.tif", "*.tiff")
#: File-name patterns searched in a folder, per input (MODIS: ``<PRODUCT>.*.hdf``, see :func:`folder_patterns`).
FOLDER_PATTERNS: dict[str, tuple[str, ...]] = {
    "smap": ("SMAP_L3_SM_P_*.h5", "SMAP_L3_SM_P_*.nc4", "SMAP_L3_SM_P_*.nc"),  # granules, Harmony subsets
    "geotiff": _GEOTIFF,
    "dem": ("*.hgt", *_GEOTIFF),
    "slope": _GEOTIFF,
    "aspect": _GEOTIFF,
    "land_mask": _GEOTIFF,
    "soil": _GEOTIFF,
    "imerg": ("3B-DAY*.nc4", "3B-DAY*.nc", "3B-DAY*.HDF5"),
    "chirps": ("chirps-v2.0.*.tif", "chirps-v2.0.*.tiff", "chirps-v2.0.*.tif.gz", "chirps-v2.0.*.nc"),
    "era5land": ("*.nc",),
}


def folder_patterns(key: str, modis_product: str | None = None) -> tuple[str, ...]:
    """The file-name patterns of input ``key`` (``smap``, ``geotiff:ndvi``, ``dem``, a precipitation
    product...); a MODIS source gives its product (``MOD11A1`` -> ``MOD11A1.*.hdf``)."""
    if modis_product is not None:
        return (f"{modis_product}.*.hdf",)
    return FOLDER_PATTERNS[key.split(":", 1)[0]]


def source_entry(setting: str, patterns: Sequence[str], found: Mapping[str, Sequence[str]],
                 folder: Sequence[str]) -> dict[str, Any]:
    """The report's entry of one input: its setting, paths, what a folder is searched for,
    how many files matched and the paths that matched nothing (logged as a warning)."""
    unmatched = [p for p in patterns if not found.get(p)]
    for p in unmatched:
        log.warning("%s: %r matches no file", setting, p)
    return {"setting": setting, "patterns": list(patterns), "folder_patterns": list(folder),
            "matched": len({u for v in found.values() for u in v}), "unmatched": unmatched}


def input_errors(sources: Mapping[str, Mapping[str, Any]], files: Sequence[Mapping[str, Any]],
                 task_errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One error per configured input that gave nothing (module docstring).

    Parameters
    ----------
    sources
        The plan's inputs: report source name (``smap``, ``geotiff:ndvi``, ``sand``...) ->
        :func:`source_entry`.
    files
        The report's file entries (``source``, ``status``, ``error``, ``reason``, ``path``).
    task_errors
        Failed tasks: an input whose task failed is already reported there.

    Returns
    -------
    list of dict
        ``{"task": "input", "input": setting, "files": paths given, "error": message}``.
    """
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for f in files:
        by_source.setdefault(f["source"], []).append(f)
    crashed = {str(e.get("task", "")) for e in task_errors}
    out: list[dict[str, Any]] = []
    for key, src in sources.items():
        setting, paths = src.get("setting", f"inputs.{key}"), list(src.get("patterns", []))
        prefix = "ingest-static-" if key in ("dem", "slope", "aspect", "land_mask", "sand", "silt", "clay") else \
            f"ingest-{key.replace(':', '-')}-"
        if any(t.startswith(prefix) for t in crashed):
            continue
        mine = by_source.get(key, [])
        if not src.get("matched"):
            folder = src.get("folder_patterns")
            where = f" (a folder is searched for {', '.join(folder)})" if folder else ""
            msg = (f"{setting}: no file matches {paths}{where}: check the paths, or remove {setting} from the "
                   "configuration")
        elif any(f["status"] in ("used", "kept") for f in mine) or any(f["error"] == "EmptyGranuleError" for f in mine):
            continue
        else:
            msg = f"{setting}: none of the {len(mine)} files of {paths} could be used ({_why(mine)}): " \
                  f"replace or fix the files, or remove {setting} from the configuration"
        out.append({"task": "input", "input": setting, "files": paths, "error": msg})
    return out


def _why(files: Sequence[Mapping[str, Any]]) -> str:
    """``2 failed (UnreadableFileError), 1 skipped (not a day of the cube); first: a.hdf: reason``."""
    counts = Counter((f["status"], f["error"] or _short(f["reason"])) for f in files)
    parts = [f"{n} {status} ({what})" for (status, what), n in sorted(counts.items())]
    first = files[0]
    return ", ".join(parts) + f"; first: {posixpath.basename(str(first['path']))}: {first['reason']}"


def _short(reason: str) -> str:
    return reason.split(":")[0][:60] if reason else "no reason given"


