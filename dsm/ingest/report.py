"""The ingest report, on the client: the tasks' results put together, counted and printed.

:func:`_assemble` gathers every file with its status and reason, every group, what was
written, values masked as out of range, duplicate fallbacks, the land mask's source and the
precipitation days with and without data; :func:`summarize` counts them;
:func:`_merge_provenance` keeps the provenance of earlier runs (:func:`_previous`) for the
dates this run did not write; :func:`format_report` gives the lines printed by ``dsm ingest``
and :func:`report_ref` where the JSON report lives (beside the cube).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from dsm.config import Config
from dsm.ingest.inputs import input_errors
from dsm.ingest.plan import Plan
from dsm.ingest.static import STATIC_VARS
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)


def report_ref(cube: StoreRef) -> StoreRef:
    """Where the ingest report of a cube lives: beside it, ``<cube stem>.ingest_report.json``
    (same options).

    Not inside the store: a report of thousands of files in the store's attributes would be
    read on every open, and the store's bytes would change with every run.
    """
    stem = cube.name.removesuffix(".zarr")
    return cube.sibling(f"{stem}.ingest_report.json")

def _precip_report(p: Plan, groups: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Days of the precipitation axis with data this run, and the missing days (not filled).

    ``days_without_file``: no file gives the day; ``days_without_data``: its files failed, hold
    no value over the region (or not all 24 hours, ERA5-Land), or their task failed.
    """
    src = dict(p.sources["precip"])
    no_file = src.pop("days_without_file")
    no_data = sorted({*(g["date"] for g in groups if g["source"] == "precip" and g["status"] in ("failed", "empty")),
                      *(d for e in errors if e["task"].startswith("ingest-precip-") for d in e.get("dates", []))})
    return {**src, "days_with_data": sum(1 for g in groups if g["source"] == "precip" and g["variables"]),
            "missing_days": sorted({*no_file, *no_data}), "days_without_file": no_file, "days_without_data": no_data}


def _assemble(cfg: Config, p: Plan, results: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]],
              started: dt.datetime, seconds: float) -> dict[str, Any]:  # fmt: skip
    files, seen = [], set()
    for f in sorted([*p.files, *(f for r in results for f in r["files"])], key=lambda e: (e["source"], e["date"] or "", e["path"])):
        key = (f["source"], f["path"], f["status"], f["reason"]) if f["source"] == "precip" else id(f)
        if key not in seen:  # a precipitation file of many days is listed once per outcome
            seen.add(key)
            files.append(f)
    groups = sorted((g for r in results for g in r["groups"]), key=lambda g: (g["source"], g["date"] or ""))
    prov: dict[str, dict[str, list[str]]] = {}
    for r in results:
        for v, d in r["provenance"].items():
            prov.setdefault(v, {}).update(d)
    wrote: dict[str, int] = {}
    for r in results:
        for v in r["wrote"]:
            wrote[v] = wrote.get(v, 0) + 1
    masked: dict[str, dict[str, int]] = {}
    for r in results:
        for v, by_date in r.get("out_of_range", {}).items():
            entry = masked.setdefault(v, {})
            for d, n in by_date.items():
                entry[d] = entry.get(d, 0) + n
    static = next((r for r in results if "land_mask_source" in r), None)
    errors = [*errors, *input_errors(p.sources, files, errors)]
    report = {
        "cube": cfg.stores.cube,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "summary": {},
        "sources": p.sources,
        "files": files,
        "groups": groups,
        "blocks_written": wrote,
        # values outside their variable's valid range, masked before writing: variable -> date -> count
        "out_of_range": {v: dict(sorted(d.items())) for v, d in sorted(masked.items())},
        # failed tasks, and configured inputs that gave nothing ({"task": "input", "input": setting, ...})
        "task_errors": list(errors),
        # duplicates: a newer file that failed to read, and the older one used instead
        "fallbacks": sorted((f for r in results for f in r.get("fallbacks", [])), key=lambda f: (f["source"], f["date"])),
        "land_mask_source": static["land_mask_source"] if static else (
            "unknown (the static task failed)" if any(k in p.sources for k in STATIC_VARS)
            else "unchanged (no land_mask, dem or soil input)"),
        "warnings": [w for r in results for w in r.get("warnings", [])],
        "task_seconds": {r["task"]: r["seconds"] for r in results},
        "provenance": {v: dict(sorted(d.items())) for v, d in sorted(prov.items())},
    }
    if "precip" in p.sources:
        report["precip"] = _precip_report(p, groups, errors)
    report["summary"] = summarize(report)
    return report


def summarize(report: Mapping[str, Any]) -> dict[str, int]:
    """Counts of files per status, groups per status, blocks written, task errors (of which
    ``input_errors`` are inputs that gave nothing), duplicate fallbacks and values masked as
    out of range."""
    out: dict[str, int] = {s: 0 for s in ("used", "skipped", "failed")}
    for f in report["files"]:
        out[f["status"]] = out.get(f["status"], 0) + 1
    for g in report["groups"]:
        key = f"groups_{g['status']}"
        out[key] = out.get(key, 0) + 1
    out["blocks_written"] = sum(report["blocks_written"].values())
    out["task_errors"] = len(report["task_errors"])
    out["input_errors"] = sum(1 for e in report["task_errors"] if e["task"] == "input")
    out["fallbacks"] = len(report.get("fallbacks", []))
    out["out_of_range"] = sum(n for d in report.get("out_of_range", {}).values() for n in d.values())
    return out


def _previous(ref: StoreRef) -> dict[str, Any]:
    """The provenance of the earlier report at ``ref`` ({} when there is none)."""
    try:
        with ref.open("r") as f:
            return json.load(f).get("provenance", {})
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("ignoring the unreadable previous report %s: %s", ref, exc)
        return {}


def _merge_provenance(old: Mapping[str, Mapping[str, list[str]]], new: Mapping[str, Mapping[str, list[str]]]) -> dict[str, Any]:
    """Provenance over runs: a date written in this run replaces that date's earlier entry."""
    out = {v: dict(d) for v, d in old.items()}
    for v, d in new.items():
        out.setdefault(v, {}).update(d)
    return {v: dict(sorted(d.items())) for v, d in sorted(out.items())}


def format_report(report: Mapping[str, Any], max_lines: int = 40) -> list[str]:
    """Human-readable lines: the summary, then every failed and skipped file with its reason."""
    s = report["summary"]
    lines = [
        f"files: {s['used']} used, {s['skipped']} skipped, {s['failed']} failed; "
        + ", ".join(f"{k.removeprefix('groups_')} {v}" for k, v in s.items() if k.startswith("groups_"))
        + f" groups; {s['blocks_written']} blocks written; {s['task_errors']} task errors; {report['seconds']} s",
    ]
    bad = [f for f in report["files"] if f["status"] not in ("used", "kept")]
    for f in bad[:max_lines]:
        lines.append(f"  {f['status']:<7} {f['source']:<9} {f['date'] or '-':<10} {f['path']}: {f['reason']}")
    if len(bad) > max_lines:
        lines.append(f"  ... {len(bad) - max_lines} more in the JSON report")
    if report.get("not_run"):
        lines.append(f"extended from {report['not_run']['extended_from']}: {len(report['not_run']['tasks'])} tasks "
                     f"of chunks complete before it not run, their {s.get('kept', 0)} files kept (ingested earlier)")
    for e in report["task_errors"]:
        lines.append(f"  ERROR   {e['error']}" if e["task"] == "input" else f"  ERROR   task {e['task']}: {e['error']}")
    for f in report.get("fallbacks", []):
        lines.append(f"  fallback {f['source']} {f['date']}: {posixpath.basename(f['failed'])} failed "
                     f"({f['reason']}); used the older {posixpath.basename(f['used'])}")
    if "land_mask_source" in report:
        lines.append(f"land mask: {report['land_mask_source']}")
    for w in report.get("warnings", []):
        lines.append(f"  WARNING {w}")
    if report.get("out_of_range"):
        per_var = {v: sum(d.values()) for v, d in report["out_of_range"].items()}
        lines.append("values outside their valid range, masked (not written): "
                     + ", ".join(f"{v} {n} ({len(report['out_of_range'][v])} dates)" for v, n in per_var.items()))
    if "precip" in report:
        pr = report["precip"]
        miss = pr["missing_days"]
        shown = ", ".join(miss[:8]) + (f" ... ({len(miss) - 8} more)" if len(miss) > 8 else "")
        lines.append(f"precip ({pr['product']}, day {pr['day']}): {pr['days_with_data']} days with data this run, "
                     f"{len(miss)} missing{': ' + shown if miss else ''}")
    if "antecedent" in report:
        a = report["antecedent"]
        lines.append("antecedent indices: " + (a.get("error") or a.get("skipped") or
                                               f"{a['days']} days written, {a['missing_precip_days']} days without rain data"))
    return lines
