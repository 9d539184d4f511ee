"""``dsm fetch``: search and download the granules a configuration needs, with earthaccess.

A network step, never run in CI: the searches are built by pure functions
(:func:`search_parameters`, :func:`wanted`) that the tests check offline, and ``earthaccess``
is imported only when a search really runs (it is an optional dependency:
``pip install earthaccess``).

Credentials: ``EARTHDATA_USERNAME`` / ``EARTHDATA_PASSWORD`` (or ``EARTHDATA_TOKEN``) in the
environment, otherwise the ``urs.earthdata.nasa.gov`` entry of ``~/.netrc`` (or of the file
named by ``NETRC``) (:func:`credential_strategy`). There is no command-line password on purpose.
:func:`credentials_problem` checks that one of them is there before earthaccess is asked to log
in, so that a missing login is one message naming what to set.

========  ==========  =======  ======================================================
source    short name  version  temporal search
========  ==========  =======  ======================================================
smap      SPL3SMP     009      the configured dates
mod11a1   MOD11A1     061      the configured dates
mcd43     MCD43A3     061      the dates; granules whose name date (the middle of the
                               16-day window) is outside them are dropped
mod15a2h  MOD15A2H    061      from the start of the 8-day composite holding the first day
mod09a1   MOD09A1     061      likewise
mod13a2   MOD13A2     061      from the start of the 16-day period holding the first day
dem       SRTMGL3     003      none (static)
========  ==========  =======  ======================================================

Granules go to ``DEST/<source>/`` (the layout the printed ``inputs:`` block points to);
files already there are not downloaded again.
"""

from __future__ import annotations

import logging
import netrc
import os
import posixpath
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from dsm.config import Config
from dsm.errors import ConfigError, TransientIOError
from dsm.ingest.base import IngestInputError, date_from_name
from dsm.ingest.sources import MODIS_DATE
from dsm.periods import composite_8day_of, period_of
from dsm.progress import bar_disabled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collection:
    """An Earthdata collection and the calendar its granules follow."""

    short_name: str
    version: str
    calendar: str  #: ``daily``, ``8day``, ``16day`` or ``static``
    name_date: str = "start"  #: what the file-name date is: composite ``start`` or ``middle``


COLLECTIONS: dict[str, Collection] = {
    "smap": Collection("SPL3SMP", "009", "daily"),
    "mod11a1": Collection("MOD11A1", "061", "daily"),
    "mcd43": Collection("MCD43A3", "061", "daily", "middle"),
    "mod15a2h": Collection("MOD15A2H", "061", "8day"),
    "mod09a1": Collection("MOD09A1", "061", "8day"),
    "mod13a2": Collection("MOD13A2", "061", "16day"),
    "dem": Collection("SRTMGL3", "003", "static"),
}


def sources_of(cfg: Config, only: Iterable[str] = ()) -> list[str]:
    """Sources to fetch: ``only`` if given, else those in ``inputs:``, else every collection."""
    only = list(only)
    unknown = [s for s in only if s not in COLLECTIONS]
    if unknown:
        raise ConfigError(f"unknown source(s) {unknown} to fetch; known: {sorted(COLLECTIONS)}")
    if only:
        return only
    if cfg.inputs is not None:
        chosen = [s for s in COLLECTIONS if getattr(cfg.inputs, s, None) is not None]
        if chosen:
            return chosen
    return list(COLLECTIONS)


def temporal(cfg: Config, source: str) -> tuple[str, str] | None:
    """The temporal search range of a source (ISO strings, UTC), None for static products."""
    c = COLLECTIONS[source]
    start, end = cfg.dates.start, cfg.dates.end
    if c.calendar == "static":
        return None
    if c.calendar == "8day":
        start = composite_8day_of(start).start
    elif c.calendar == "16day":
        start = period_of(start).start
    return f"{start.isoformat()}T00:00:00Z", f"{end.isoformat()}T23:59:59Z"


def search_parameters(cfg: Config, only: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The keyword arguments of every ``earthaccess.search_data`` call ``dsm fetch`` makes.

    The bounding box is the region snapped to whole 36 km cells (lon/lat of its outer edges),
    so every tile touching a SMAP cell of the region is found.
    """
    w, s, e, n = cfg.grid_region.lonlat_bounds
    out = []
    for source in sources_of(cfg, only):
        c = COLLECTIONS[source]
        params: dict[str, Any] = {"short_name": c.short_name, "version": c.version,
                                  "bounding_box": (round(w, 6), round(s, 6), round(e, 6), round(n, 6)), "count": -1}  # fmt: skip
        t = temporal(cfg, source)
        if t is not None:
            params["temporal"] = t
        out.append(params)
    return out


def wanted(cfg: Config, source: str, name: str) -> bool:
    """Whether a granule file name is needed: its name date falls on the configured dates.

    Only MCD43A3 is filtered (its 16-day windows overlap the search range on both sides);
    names without a recognisable date are kept (the ingest report will name them).
    """
    if COLLECTIONS[source].name_date != "middle":
        return True
    try:
        d = date_from_name(name, MODIS_DATE)
    except IngestInputError:
        return True
    return cfg.dates.start <= d <= cfg.dates.end


def credential_strategy(env: Mapping[str, str] | None = None) -> str:
    """``"environment"`` when Earthdata credentials are in the environment, else ``"netrc"``."""
    env = os.environ if env is None else env
    if env.get("EARTHDATA_TOKEN") or (env.get("EARTHDATA_USERNAME") and env.get("EARTHDATA_PASSWORD")):
        return "environment"
    return "netrc"


EARTHDATA_HOST = "urs.earthdata.nasa.gov"


def netrc_path(env: Mapping[str, str] | None = None) -> str:
    """The netrc file earthaccess reads: ``$NETRC``, else ``~/.netrc`` (``$HOME/.netrc``)."""
    env = os.environ if env is None else env
    if env.get("NETRC"):
        return env["NETRC"]
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), ".netrc")


def credentials_problem(env: Mapping[str, str] | None = None) -> str | None:
    """None when Earthdata credentials are set (:func:`credential_strategy`: the environment, or a
    netrc entry for ``urs.earthdata.nasa.gov`` with a login and a password); otherwise one
    paragraph saying what is missing and what to set. Reads no network."""
    env = os.environ if env is None else env
    if credential_strategy(env) == "environment":
        return None
    path = netrc_path(env)
    if not os.path.isfile(path):
        why = f"there is no netrc file {path}"
    else:
        try:
            entry = netrc.netrc(path).authenticators(EARTHDATA_HOST)
        except (netrc.NetrcParseError, OSError) as exc:
            why = f"{path} cannot be read ({exc})"
        else:
            if entry is not None and entry[0] and entry[2]:
                return None
            why = f"{path} has no 'machine {EARTHDATA_HOST}' entry with a login and a password"
    partial = " (EARTHDATA_USERNAME is set without EARTHDATA_PASSWORD)" if env.get("EARTHDATA_USERNAME") else ""
    return (f"no NASA Earthdata login: EARTHDATA_USERNAME and EARTHDATA_PASSWORD (or EARTHDATA_TOKEN) are not "
            f"set{partial} and {why}. Set both variables in the environment, or add the line "
            f"'machine {EARTHDATA_HOST} login YOUR_USER password YOUR_PASSWORD' to ~/.netrc (chmod 600; NETRC "
            "names another file). An account is free at https://urs.earthdata.nasa.gov/users/new.")


# -- retries ----------------------------------------------------------------------------
@dataclass
class FetchSummary:
    """What a fetch did: files per source, and failures with their reasons."""

    found: dict[str, int] = field(default_factory=dict)
    downloaded: dict[str, list[str]] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  #: (source, granule, reason)


def with_retries(fn: Callable[[], Any], what: str, retries: int = 3, backoff: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> Any:  # fmt: skip
    """Call ``fn`` until it succeeds, at most ``retries + 1`` times, waiting ``backoff ** k`` s.

    Raises
    ------
    TransientIOError
        Every attempt failed; the message names ``what`` and the last error.
    """
    last: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - network stacks raise many kinds
            last = exc
            log.warning("%s: attempt %d of %d failed: %s", what, attempt + 1, retries + 1, exc)
            if attempt < retries:
                sleep(backoff**attempt)
    raise TransientIOError(f"{what}: failed {retries + 1} times, last error {type(last).__name__}: {last}")


def granule_name(granule: Any) -> str:
    """File name of an earthaccess granule (its first data link)."""
    links = granule.data_links()
    return posixpath.basename(links[0]) if links else str(granule["umm"].get("GranuleUR", "?"))


def download_one(earthaccess: Any, granule: Any, folder: str) -> str:
    """Download one granule into ``folder`` (skipped when already there); return its path."""
    name = granule_name(granule)
    target = os.path.join(folder, name)
    if not (os.path.isfile(target) and os.path.getsize(target) > 0):
        paths = earthaccess.download([granule], folder, show_progress=False)
        if not paths or not os.path.isfile(target):
            raise TransientIOError(f"{name}: earthaccess returned no file")
    if name.lower().endswith(".zip"):  # SRTMGL3 tiles come zipped: N44W072.SRTMGL3.hgt.zip
        unzip_hgt(target, folder)
    return target


def unzip_hgt(path: str, folder: str) -> list[str]:
    """Extract the ``.hgt`` members of a zip next to it (once); return their paths."""
    out = []
    try:
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if member.lower().endswith(".hgt"):
                    target = os.path.join(folder, os.path.basename(member))
                    if not os.path.isfile(target):
                        with z.open(member) as src, open(target, "wb") as dst:
                            dst.write(src.read())
                    out.append(target)
    except zipfile.BadZipFile as exc:
        os.remove(path)  # a truncated download: fetch it again on the next attempt
        raise TransientIOError(f"{path}: not a complete zip file ({exc})") from exc
    return out


def login() -> Any:
    """Log in to NASA Earthdata with earthaccess; return the ``earthaccess`` module, logged in.

    Raises
    ------
    ConfigError
        No Earthdata credentials are set (:func:`credentials_problem`, checked first, with no
        network), earthaccess is not installed, or the Earthdata login was refused.
    TransientIOError
        Earthdata could not be reached to log in.
    """
    problem = credentials_problem()
    if problem is not None:
        raise ConfigError(problem)
    try:
        import earthaccess  # noqa: PLC0415 - optional dependency (the fetch extra)
    except ImportError:
        raise ConfigError("dsm fetch needs the optional package earthaccess (pip install earthaccess)") from None
    strategy = credential_strategy()
    try:
        auth = earthaccess.login(strategy=strategy)
    except OSError as exc:  # requests' network errors are OSErrors
        raise TransientIOError(f"could not reach NASA Earthdata to log in: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - earthaccess raises its own kinds for refused logins
        raise ConfigError(f"Earthdata login failed (strategy {strategy!r}: {type(exc).__name__}: {exc}): check "
                          f"EARTHDATA_USERNAME and EARTHDATA_PASSWORD, or the {EARTHDATA_HOST} entry of "
                          f"{netrc_path()}") from None
    if not getattr(auth, "authenticated", False):
        raise ConfigError(
            f"Earthdata login failed (strategy {strategy!r}): set EARTHDATA_USERNAME and EARTHDATA_PASSWORD, "
            "or add machine urs.earthdata.nasa.gov to ~/.netrc"
        )
    return earthaccess


def fetch(cfg: Config, dest: str, only: Sequence[str] = (), retries: int = 3, progress: bool = True) -> FetchSummary:
    """Search and download every needed granule into ``dest/<source>/``.

    Raises
    ------
    ConfigError
        No Earthdata credentials are set (:func:`credentials_problem`, checked first),
        earthaccess is not installed, or the Earthdata login failed.
    TransientIOError
        Earthdata could not be reached to log in.
    """
    earthaccess = login()
    summary = FetchSummary()
    for source, params in zip(sources_of(cfg, only), search_parameters(cfg, only), strict=True):
        try:
            found = with_retries(partial(earthaccess.search_data, **params), f"search {params['short_name']}", retries)
        except TransientIOError as exc:
            summary.failed.append((source, "(search)", str(exc)))
            continue
        granules = [g for g in found if wanted(cfg, source, granule_name(g))]
        summary.found[source] = len(granules)
        folder = os.path.join(dest, source)
        os.makedirs(folder, exist_ok=True)
        for g in tqdm(granules, desc=source, unit="file", disable=bar_disabled(progress)):
            name = granule_name(g)
            try:
                path = with_retries(partial(download_one, earthaccess, g, folder), name, retries)
            except TransientIOError as exc:
                summary.failed.append((source, name, str(exc)))
            else:
                summary.downloaded.setdefault(source, []).append(path)
    return summary


def inputs_block(dest: str, sources: Iterable[str]) -> dict[str, Any]:
    """The ``inputs:`` configuration reading what :func:`fetch` put under ``dest``."""
    patterns = {"smap": "*.h5", "dem": "*.hgt", **{s: "*.hdf" for s in ("mod11a1", "mcd43", "mod15a2h", "mod09a1", "mod13a2")}}
    return {s: {"paths": os.path.join(dest, s, patterns[s])} for s in sources}
