"""One handle for a store or file location: its fsspec URL and the fsspec options to open it.

Every store dsm reads or writes (the cube, the products store, the model store, the truth
store, the station tables, the COG, STAC and netCDF folders, the run records) is named by a
:class:`StoreRef` from the configuration (:meth:`dsm.config.StoresConfig.ref`), never by a
loose ``(url, storage_options)`` pair. A ref is immutable, hashable (it keys per-process
caches of open stores) and picklable (it travels inside the jobs sent to the workers), and it
knows what zarr and xarray need: a plain local path takes no options (zarr opens it with its
own local store), so one set of options serves a configuration whose stores are partly local
and partly on object storage.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec

from dsm.frozen import FrozenDict, frozen

__all__ = ["StoreRef"]


def _frozen_options(options: Mapping[str, Any] | None) -> FrozenDict:
    copy: FrozenDict = frozen(dict(options or {}))
    return copy


@dataclass(frozen=True, eq=False)
class StoreRef:
    """The location of a store or file: an fsspec URL (or local path) and its fsspec options.

    Attributes
    ----------
    url : str
        A local path, ``file://`` URL or remote fsspec URL (``s3://bucket/sm.zarr``).
    options : Mapping
        The fsspec options of ``url`` (endpoint, credentials, ``anon``...), kept as a read-only
        copy (:class:`~dsm.frozen.FrozenDict`, nested mappings too).

    Examples
    --------
    >>> ref = StoreRef("s3://bucket/sm.zarr", {"anon": True})
    >>> ref.join("_ledger", "2020-01-01.json").url
    's3://bucket/sm.zarr/_ledger/2020-01-01.json'
    >>> StoreRef("/data/cube.zarr", {"anon": True}).zarr_options is None
    True
    """

    url: str
    options: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url:
            raise TypeError(f"a store location must be a non-empty path or URL string, got {self.url!r}")
        object.__setattr__(self, "options", _frozen_options(self.options))

    def _key(self) -> tuple[str, str]:
        return self.url, json.dumps(self.options, sort_keys=True, default=repr)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreRef) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"StoreRef({self.url!r}{', <options>' if self.options else ''})"  # options may hold secrets

    def __reduce__(self) -> tuple[Any, ...]:
        return (StoreRef, (self.url, dict(self.options)))

    @classmethod
    def of(cls, where: StoreRef | str) -> StoreRef:
        """``where`` itself, or a plain path or URL (no options) as a ref: the public openers take either."""
        return where if isinstance(where, StoreRef) else cls(where)

    @property
    def is_local(self) -> bool:
        """Whether :attr:`url` is a plain path (or ``file://``) rather than a remote URL."""
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def local_path(self) -> str:
        """The local path of a local :attr:`url` (``file://`` removed).

        Raises
        ------
        ValueError
            The URL is remote.
        """
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local path")
        return self.url.removeprefix("file://")

    @property
    def zarr_options(self) -> dict[str, Any] | None:
        """The ``storage_options`` to give zarr or xarray: None for a plain local path (zarr's
        local store takes none), else a copy of :attr:`options` (None when empty)."""
        return None if "://" not in self.url else (dict(self.options) or None)

    @property
    def name(self) -> str:
        """The last part of the path (``sm.zarr`` of ``s3://bucket/out/sm.zarr``)."""
        return posixpath.basename(self.url.rstrip("/"))

    def fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """The fsspec file system of :attr:`url` and the path in it (no trailing slash)."""
        fs, path = fsspec.core.url_to_fs(self.url, **dict(self.options))
        return fs, path.rstrip("/") or path

    def open(self, mode: str = "rb") -> fsspec.core.OpenFile:
        """The file at :attr:`url`, to open with ``with ref.open("r") as f`` (fsspec, with the options)."""
        return fsspec.open(self.url, mode, **dict(self.options))

    def join(self, *parts: str) -> StoreRef:
        """The location of ``parts`` under this one, with the same options."""
        tail = "/".join(p.strip("/") for p in parts if p)
        return StoreRef(f"{self.url.rstrip('/')}/{tail}" if tail else self.url, self.options)

    def sibling(self, name: str) -> StoreRef:
        """The location ``name`` beside this one (in the same folder), with the same options."""
        parent = self.url.rstrip("/").rsplit("/", 1)[0] if "/" in self.url.rstrip("/") else "."
        return StoreRef(f"{parent}/{name}", self.options)

    def at(self, url: str) -> StoreRef:
        """Another location under the same options (``url`` itself, not joined)."""
        return StoreRef(url, self.options)
