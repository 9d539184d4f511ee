"""``dsm fetch --in-place``: the granules' ``s3://`` URLs in NASA Earthdata Cloud instead of downloads.

The same searches as :func:`dsm.ingest.fetch.fetch` (:func:`~dsm.ingest.fetch.search_parameters`),
but each granule's direct-access link (``data_links(access="direct")``) is kept instead of a
download, and the configuration is written again with ``inputs:`` pointing at those URLs
(:func:`cloud_config`), next to the given file; the given file is never changed.

Reading them needs a machine in AWS ``us-west-2`` (the buckets refuse other regions) and
temporary S3 credentials from the DAAC's ``s3credentials`` endpoint, which expire after one
hour. No credential is written anywhere: each input's ``storage_options`` names an AWS
profile (``profile: earthdata-nsidc-cprd``) whose ``credential_process`` is
``dsm earthdata-credentials NSIDC_CPRD`` (:func:`process_credentials`), so botocore asks for
new credentials shortly before the old ones expire, on the client and on every worker that
has the profile (:func:`aws_profile_lines`).

SRTMGL3 tiles are zip files in the cloud, which dsm's ``.hgt`` reader cannot read in place:
``dem`` is left out (download it with ``dsm fetch -s dem``, or use a DEM of COGs).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from dsm.config import Config, from_dict
from dsm.errors import ConfigError, TransientIOError
from dsm.ingest.fetch import (
    COLLECTIONS,
    EARTHDATA_HOST,
    granule_name,
    login,
    search_parameters,
    sources_of,
    wanted,
    with_retries,
)

REGION = "us-west-2"
"""The AWS region of Earthdata Cloud's buckets: direct (``s3://``) reads work only from there."""
DATA_FILES: dict[str, str] = {"smap": "*.h5", **{s: "*.hdf" for s in ("mod11a1", "mcd43", "mod15a2h", "mod09a1",
                                                                       "mod13a2")}}  # fmt: skip
"""The data file of each source's granules (a granule's links also name ``.xml``, ``.qa``...)."""
NOT_IN_PLACE: dict[str, str] = {
    "dem": "SRTMGL3 tiles are zip files, which dsm's .hgt reader cannot read in place: download them with "
           "`dsm fetch CONFIG -s dem --dest DIR`, or give a DEM of COGs (e.g. s3://copernicus-dem-30m/, anon)",
}  # fmt: skip
"""Sources ``--in-place`` leaves out, and why."""
S3_OVERRIDES: dict[str, Any] = {"key": None, "secret": None, "token": None, "endpoint_url": None, "anon": False}
"""Per-input options that cancel an ``inputs.storage_options`` meant for another store."""


@dataclass
class CloudSource:
    """The direct-access URLs of one source and who gives credentials for them."""

    source: str
    provider: str  #: the CMR provider (``NSIDC_CPRD``, ``LPCLOUD``): the credentials' scope
    endpoint: str | None  #: its ``s3credentials`` URL, when the metadata names it
    urls: list[str] = field(default_factory=list)


@dataclass
class CloudSummary:
    """What :func:`find_in_place` found: per source, and what it left out, with reasons."""

    sources: dict[str, CloudSource] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  #: source -> why it is not in the cloud config
    failed: list[tuple[str, str]] = field(default_factory=list)  #: (source, reason): a search that failed


def profile_name(provider: str) -> str:
    """The AWS profile of a provider's credentials: ``NSIDC_CPRD`` -> ``earthdata-nsidc-cprd``."""
    return "earthdata-" + provider.lower().replace("_", "-")


def direct_source(cfg: Config, source: str, granules: Iterable[Any]) -> CloudSource:
    """The ``s3://`` data links of a source's granules (those :func:`~dsm.ingest.fetch.wanted`).

    Raises
    ------
    ConfigError
        A granule has no direct-access link to its data file (the collection is not in
        Earthdata Cloud), or the granules come from several providers.
    """
    c = COLLECTIONS[source]
    out: CloudSource | None = None
    for g in granules:
        name = granule_name(g)
        if not wanted(cfg, source, name):
            continue
        links = [u for u in g.data_links(access="direct") if u.startswith("s3://")
                 and fnmatch.fnmatch(posixpath.basename(u), DATA_FILES[source])]  # fmt: skip
        if not links:
            raise ConfigError(f"{source}: granule {name} of {c.short_name} v{c.version} has no s3:// link to its data "
                              f"file ({DATA_FILES[source]}): the collection is not in Earthdata Cloud; download it "
                              f"with `dsm fetch CONFIG -s {source} --dest DIR` instead")
        provider = str(g["meta"].get("provider-id", "?"))
        if out is None:
            out = CloudSource(source, provider, g.get_s3_credentials_endpoint())
        elif provider != out.provider:
            raise ConfigError(f"{source}: granules from two providers ({out.provider}, {provider}); give one version")
        out.urls += links
    return out if out is not None else CloudSource(source, "?", None)


def find_in_place(cfg: Config, only: Sequence[str] = (), retries: int = 3,
                  earthaccess: Any = None) -> CloudSummary:  # fmt: skip
    """Log in, search every source and collect its granules' direct-access URLs.

    Parameters
    ----------
    cfg
        The configuration (region, dates, ``inputs:``).
    only
        Sources to search (default as :func:`~dsm.ingest.fetch.sources_of`); ``dem`` is
        refused here and skipped otherwise (:data:`NOT_IN_PLACE`).
    retries
        Retries per search.
    earthaccess
        The logged-in ``earthaccess`` module; None: :func:`~dsm.ingest.fetch.login`.

    Raises
    ------
    ConfigError
        No Earthdata login (naming EARTHDATA_USERNAME/EARTHDATA_PASSWORD and ~/.netrc), a
        source asked for that cannot be read in place, or a collection not in the cloud.
    """
    refused = [s for s in only if s in NOT_IN_PLACE]
    if refused:
        raise ConfigError(f"--in-place -s {refused[0]}: {NOT_IN_PLACE[refused[0]]}")
    ea = login() if earthaccess is None else earthaccess
    summary = CloudSummary()
    for source, params in zip(sources_of(cfg, only), search_parameters(cfg, only), strict=True):
        if source in NOT_IN_PLACE:
            summary.skipped[source] = NOT_IN_PLACE[source]
            continue
        try:
            found = with_retries(partial(ea.search_data, **params), f"search {params['short_name']}", retries)
        except TransientIOError as exc:
            summary.failed.append((source, str(exc)))
            continue
        got = direct_source(cfg, source, found)
        if got.urls:
            summary.sources[source] = got
        else:
            summary.skipped[source] = f"no {params['short_name']} granule over the region and dates"
    return summary


def source_options(provider: str, shared: Mapping[str, Any]) -> dict[str, Any]:
    """The ``storage_options`` of an Earthdata Cloud input: its AWS profile and region, and the
    cancelling value of each option in ``shared`` (``inputs.storage_options``, merged under
    it) that would send its requests elsewhere (``endpoint_url``, ``key``, ``anon``...)."""
    opts: dict[str, Any] = {k: v for k, v in S3_OVERRIDES.items() if k in shared}
    return {**opts, "profile": profile_name(provider), "client_kwargs": {"region_name": REGION}}


def cloud_config(raw: Mapping[str, Any], summary: CloudSummary) -> dict[str, Any]:
    """The configuration ``raw`` (as read from YAML) with ``inputs:`` pointing at the cloud URLs.

    Each found source's ``paths`` and ``storage_options`` are replaced; its other settings
    (``overpass``, ``qc``...) and every other input are kept.
    """
    out = dict(raw)
    inputs = dict(out.get("inputs") or {})
    shared = inputs.get("storage_options") or {}
    for source, got in summary.sources.items():
        kept = {k: v for k, v in (inputs.get(source) or {}).items() if k not in ("paths", "storage_options")}
        inputs[source] = {"paths": list(got.urls), "storage_options": source_options(got.provider, shared), **kept}
    out["inputs"] = inputs
    return out


def aws_profile_lines(providers: Iterable[str]) -> list[str]:
    """The ``~/.aws/config`` sections that give each provider's profile its credentials."""
    lines = []
    for p in sorted(set(providers)):
        lines += [f"[profile {profile_name(p)}]", f"credential_process = dsm earthdata-credentials {p}",
                  f"region = {REGION}", ""]  # fmt: skip
    return lines


def header(config_path: str, summary: CloudSummary, today: dt.date) -> str:
    """The comment at the top of a written configuration: where it came from, what it needs."""
    lines = [f"Written by `dsm fetch {config_path} --in-place` on {today.isoformat()}: the inputs below are granules",
             f"in NASA Earthdata Cloud, read in place (s3://) from AWS {REGION} only. No credential is in this",
             "file: each input's storage_options.profile names an AWS profile; give every machine that reads",
             "(client and Dask workers) these ~/.aws/config sections and an Earthdata login",
             "(EARTHDATA_USERNAME/EARTHDATA_PASSWORD, or ~/.netrc). Temporary credentials last 1 h; botocore",
             "runs the credential_process again before they expire.", ""]  # fmt: skip
    lines += aws_profile_lines(g.provider for g in summary.sources.values())
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def output_path(config_path: str, output: str | None) -> Path:
    """Where the cloud configuration goes: ``output``, default ``<stem>.earthdata.yaml`` beside
    ``config_path``; it must be in the same folder (relative paths keep their meaning)."""
    src = Path(config_path).resolve()
    out = Path(output).resolve() if output else src.with_name(f"{src.stem}.earthdata.yaml")
    if out == src:
        raise ConfigError(f"--output {output}: that is CONFIG itself; dsm fetch never rewrites CONFIG, give another name")
    if out.parent != src.parent:
        raise ConfigError(f"--output {output}: write it into the folder of {config_path} ({src.parent}), where its "
                          "relative paths mean the same files")
    return out


def write_cloud_config(config_path: str, summary: CloudSummary, output: str | None = None, overwrite: bool = False,
                       today: Callable[[], dt.date] = dt.date.today) -> tuple[Path, Config]:  # fmt: skip
    """Write CONFIG with the cloud ``inputs:`` to :func:`output_path`; return it and its Config.

    The YAML is checked by dsm's own loader before anything is written; comments of CONFIG
    are not carried over (the file is written from its parsed content).

    Raises
    ------
    ConfigError
        The output exists and ``overwrite`` is false, nothing was found, or the result is not
        a valid configuration.
    """
    out = output_path(config_path, output)
    if not summary.sources:
        raise ConfigError(f"no granule of {', '.join(summary.skipped) or 'any source'} found in Earthdata Cloud: "
                          f"nothing to write to {out}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists: add --overwrite to replace it (CONFIG itself is never changed)")
    raw = yaml.safe_load(Path(config_path).read_text()) or {}
    new = cloud_config(raw, summary)
    cfg = from_dict(new, source=str(out), base=out.parent)
    text = header(config_path, summary, today()) + yaml.safe_dump(new, sort_keys=False, width=120)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out, cfg


# -- credentials for botocore's credential_process ---------------------------------------
def process_credentials(creds: Mapping[str, Any], provider: str) -> dict[str, Any]:
    """Earthdata's temporary S3 credentials as the JSON an AWS ``credential_process`` prints.

    Parameters
    ----------
    creds
        What ``earthaccess.get_s3_credentials`` returns: ``accessKeyId``, ``secretAccessKey``,
        ``sessionToken``, ``expiration`` (``"2026-12-04 23:45:00+00:00"``); ``{}`` when refused.
    provider
        The provider asked for (named in the error).

    Raises
    ------
    ConfigError
        The answer holds no credentials (login refused, EULA not accepted, unknown provider).
    """
    if not creds or not creds.get("accessKeyId") or not creds.get("secretAccessKey"):
        raise ConfigError(f"Earthdata Cloud gave no S3 credentials for provider {provider!r} (earthaccess logs why): "
                          f"check EARTHDATA_USERNAME and EARTHDATA_PASSWORD (or the {EARTHDATA_HOST} entry of "
                          "~/.netrc), that the provider is a cloud provider (NSIDC_CPRD, LPCLOUD...), and that your "
                          "account accepted its EULA (https://urs.earthdata.nasa.gov/profile)")
    out: dict[str, Any] = {"Version": 1, "AccessKeyId": creds["accessKeyId"], "SecretAccessKey": creds["secretAccessKey"]}
    if creds.get("sessionToken"):
        out["SessionToken"] = creds["sessionToken"]
    if creds.get("expiration"):
        when = dt.datetime.fromisoformat(str(creds["expiration"]))
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        out["Expiration"] = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def s3_credentials(provider: str, earthaccess: Any = None) -> dict[str, Any]:
    """Log in and ask the provider's DAAC for temporary S3 credentials (:func:`process_credentials`).

    Raises
    ------
    ConfigError
        No Earthdata login, or no credentials given (see :func:`process_credentials`).
    TransientIOError
        Earthdata could not be reached.
    """
    ea = login() if earthaccess is None else earthaccess
    try:
        creds = ea.get_s3_credentials(provider=provider)
    except OSError as exc:  # requests' network errors
        raise TransientIOError(f"could not reach the s3credentials endpoint of {provider}: {exc}") from None
    return process_credentials(creds or {}, provider)
