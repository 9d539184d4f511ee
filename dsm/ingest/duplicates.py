"""Duplicate granules: the newest *intact* file of a product and date wins.

Two files give the same product, date (and MODIS tile) when a granule was reprocessed (a
new SMAP CRID or counter, a new MODIS production stamp or collection). Their names sort by
age, so the name that sorts last is the newest (:func:`newest_first`). The plan keeps every
candidate of a slot; the worker reads the newest and, when it *fails* (corrupt, truncated,
wrong product), reads the next older one in its place (:func:`read_newest_intact`). The
report then lists the failed newer file (``failed``), the older one (``used``, its reason
names the fallback), every older file not needed (``skipped``, "superseded by ...") and a
``fallbacks`` entry. A newer file that is readable but empty (all fill, outside the region)
is intact: it wins and no older file is read.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsm.files import FileReport

Reader = Callable[[list[str]], tuple[Any, list[FileReport]]]


def newest_first(urls: Iterable[str]) -> tuple[str, ...]:
    """Candidates of one slot, newest (the name that sorts last) first."""
    return tuple(sorted(urls, key=posixpath.basename, reverse=True))


@dataclass
class Resolved:
    """The outcome of :func:`read_newest_intact`.

    ``arrays``: what the reader returned for the chosen files; ``final``: their reports (they
    decide the group's status); ``others``: reports of the newer files that failed and were
    replaced and of the older files not needed; ``fallbacks``: one entry per replacement.
    """

    arrays: Any
    final: list[FileReport]
    others: list[FileReport] = field(default_factory=list)
    fallbacks: list[dict[str, str]] = field(default_factory=list)


def read_newest_intact(slots: Sequence[Sequence[str]], read: Reader) -> Resolved:
    """Read one file per slot, falling back to older candidates of slots whose file failed.

    Parameters
    ----------
    slots
        Candidates of each slot (a product, date and tile), newest first (:func:`newest_first`).
    read
        Reads a list of files together (a group: mosaic and warp) and returns ``(arrays,
        reports)``, one :class:`FileReport` per file, paths as given.

    Returns
    -------
    Resolved
    """
    pos = [0] * len(slots)
    replaced: list[list[FileReport]] = [[] for _ in slots]
    while True:
        arrays, reports = read([s[k] for s, k in zip(slots, pos, strict=True)])
        by_path = {r.path: r for r in reports}
        again = False
        for i, s in enumerate(slots):
            r = by_path.get(s[pos[i]])
            if r is not None and r.status == "failed" and pos[i] + 1 < len(s):
                replaced[i].append(r)
                pos[i] += 1
                again = True
        if not again:
            break
    out = Resolved(arrays, [])
    final = {r.path: r for r in reports}
    for i, s in enumerate(slots):
        chosen = s[pos[i]]
        r = final.get(chosen)
        for bad in replaced[i]:
            older = posixpath.basename(chosen)
            out.others.append(dataclasses.replace(bad, reason=f"{bad.reason} (the older {older} was tried instead)"))
            if r is not None and r.status == "used":
                out.fallbacks.append({"failed": bad.path, "used": chosen, "reason": bad.reason})
        if r is not None and r.status == "used" and replaced[i]:
            failed = ", ".join(posixpath.basename(b.path) for b in replaced[i])
            r = dataclasses.replace(r, reason=f"fallback: the newer {failed} failed to read")
            final[chosen] = r
        out.others += [FileReport(u, "skipped", f"superseded by {posixpath.basename(chosen)}") for u in s[pos[i] + 1:]]
    out.final = [final[r.path] for r in reports]
    return out
