"""Remote input files read where they are: byte ranges through fsspec, no local copy.

A reader that can read a file object (h5py for SMAP HDF5 granules, GDAL through rasterio's
``opener`` for GeoTIFFs and COGs) reads a remote input (``s3://``, ``gs://``, ``https://``...)
in place: :func:`input_files` gives it a :class:`RemoteFile`, which *is* the file's URL (a
``str``: reports, messages and dates from names use it as any path) and opens seekable binary
handles whose reads fetch only the byte ranges the reader asks for, through a block cache
(:data:`HDF5_CACHE` for h5py, :data:`GDAL_CACHE` for GDAL). Readers that need a path (pyhdf
for the MODIS HDF4 tiles, the SRTM ``.hgt`` and precipitation readers) still get a local copy
(:func:`dsm.files.local_copies`); local files are read directly.

Failures are reported as a failed copy is (:func:`dsm.files.fetch_failure`): a file that
cannot be found is ``failed`` (``UnreadableFileError``, "file does not exist"), any other
error while reaching it a transient ``failed`` (``TransientIOError``: rerun to resume). A
read that fails halfway is never raised into the reader (GDAL aborts the process on an
exception from a Python file object): the handle records the error and reads as the end of
the file, the reader refuses the truncated file, and :meth:`Inputs.reports` replaces that
refusal by the transient failure naming the URL.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.caching import caches

from dsm.files import FileReport, fetch_failure, is_local, local_copies

#: fsspec cache type and block size for HDF5 read by h5py: its metadata is scattered in small
#: pieces between the chunks, which an LRU cache of 1 MiB blocks serves with few requests
#: (measured with ``bench/inplace_reads.py``).
HDF5_CACHE: tuple[str, int] = ("blockcache", 1 << 20)
#: fsspec cache type and block size for GDAL rasters: GDAL reads a header and then one tile
#: (a COG's compressed block) per call, which a 64 KiB read-ahead serves in one request each.
GDAL_CACHE: tuple[str, int] = ("readahead", 64 << 10)

InPlace = bool | Callable[[str], bool]


@dataclass
class Transfer:
    """What was fetched of one remote file: ``requests`` (byte ranges), ``bytes`` and the first
    ``error`` a fetch raised (None: none failed)."""

    requests: int = 0
    bytes: int = 0
    error: BaseException | None = None


class RemoteFile(str):
    """The URL of a remote input read in place; :meth:`open` gives seekable binary handles.

    Handles of one file share its block caches, so a header read by GDAL's several opens of
    one dataset is fetched once. Pickles as the plain URL.
    """

    fs: fsspec.AbstractFileSystem
    fs_path: str
    size: int
    transfer: Transfer
    _caches: dict[tuple[str, int], Any]

    def __new__(cls, url: str, fs: fsspec.AbstractFileSystem, fs_path: str, size: int) -> RemoteFile:
        self = super().__new__(cls, url)
        self.fs, self.fs_path, self.size = fs, fs_path, size
        self.transfer = Transfer()
        self._caches = {}
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (str(self),))

    def _fetch(self, start: int, end: int) -> bytes:
        self.transfer.requests += 1
        data = self.fs.cat_file(self.fs_path, start=start, end=end)
        self.transfer.bytes += len(data)
        return data

    def open(self, cache: tuple[str, int] = GDAL_CACHE) -> io.RawIOBase:
        """A new seekable binary handle on the file, read through the fsspec ``cache``
        (cache type, block size) shared by the handles opened with it."""
        if cache not in self._caches:
            kind, block = cache
            self._caches[cache] = caches[kind](block, self._fetch, self.size)
        return _Handle(self, self._caches[cache])

    def gdal_opener(self) -> Callable[..., io.RawIOBase]:
        """An ``opener`` for ``rasterio.open(self.fs_path, opener=...)``: this file's handles
        (:data:`GDAL_CACHE`), ``FileNotFoundError`` for any other path GDAL probes (side-car
        ``.aux.xml``, ``.ovr``, ``.msk`` files)."""

        def opener(path: str, mode: str = "rb", **_: Any) -> io.RawIOBase:
            if path != self.fs_path or "w" in mode or "a" in mode:
                raise FileNotFoundError(path)
            return self.open(GDAL_CACHE)

        return opener

    def release(self) -> None:
        """Drop the cached blocks."""
        self._caches.clear()


class _Handle(io.RawIOBase):
    """A position in a :class:`RemoteFile` read through a shared fsspec cache; a failed fetch
    is recorded on the file and reads as the end of the file (never raised into the reader)."""

    def __init__(self, file: RemoteFile, cache: Any) -> None:
        super().__init__()
        self._file, self._cache, self._loc = file, cache, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._loc

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._loc, io.SEEK_END: self._file.size}[whence]
        self._loc = max(base + offset, 0)
        return self._loc

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._loc + len(view), self._file.size)
        if end <= self._loc or self._file.transfer.error is not None:
            return 0
        try:
            data = self._cache._fetch(self._loc, end)
        except Exception as exc:  # noqa: BLE001 - s3fs/botocore/aiohttp raise many kinds; reported by Inputs.reports
            self._file.transfer.error = _without_frames(exc)
            return 0
        view[: len(data)] = data
        self._loc += len(data)
        return len(data)


def _without_frames(exc: BaseException) -> BaseException:
    """``exc`` (and the exceptions it chains) without tracebacks: an error raised in a read that
    h5py's or GDAL's C code called holds their frames, and kept until the interpreter exits it
    would be freed after those libraries shut down (a segmentation fault at exit)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return exc


@dataclass
class Inputs:
    """The files of one read: ``paths`` maps each URL that could be had to what its reader
    opens (the local path or copy, or a :class:`RemoteFile`); ``failed`` reports the others."""

    paths: dict[str, str]
    failed: list[FileReport]
    remote: dict[str, RemoteFile] = field(default_factory=dict)

    def reports(self, reports: Iterable[FileReport]) -> list[FileReport]:
        """``failed`` and the reader's ``reports`` under each file's URL; a file whose bytes
        could not all be fetched is the transient failure of its fetch, whatever the reader
        made of the truncated file."""
        back = {v: k for k, v in self.paths.items()}
        out = list(self.failed)
        for r in reports:
            url = back.get(r.path, r.path)
            remote = self.remote.get(url)
            if remote is not None and remote.transfer.error is not None:
                out.append(fetch_failure(url, remote.transfer.error, "reading it in place"))
            else:
                out.append(FileReport(str(url), r.status, r.reason, r.error))
        return out

    def transfers(self) -> dict[str, Transfer]:
        """What was fetched of each file read in place."""
        return {u: f.transfer for u, f in self.remote.items()}


@contextlib.contextmanager
def input_files(urls: Sequence[str], storage_options: Mapping[str, Any], in_place: InPlace) -> Iterator[Inputs]:
    """What the readers open for ``urls``: local files as they are, remote ones in place
    (:class:`RemoteFile`) where ``in_place`` (a bool, or a test of each URL), else copied to a
    temporary folder (:func:`dsm.files.local_copies`, removed on exit).

    A remote file read in place is looked up first (its size: one request); one that cannot
    be is reported as a failed download is (:func:`dsm.files.fetch_failure`).
    """
    test = in_place if callable(in_place) else (lambda _u: bool(in_place))
    direct = [u for u in urls if not is_local(u) and test(u)]
    copied = [u for u in urls if u not in set(direct)]
    out = Inputs({}, [])
    for url in direct:
        try:
            fs, path = fsspec.core.url_to_fs(url, **dict(storage_options))
            info = fs.info(path)
            if info.get("type", "file") == "directory":
                raise FileNotFoundError(url)
            remote = RemoteFile(url, fs, path, int(info.get("size", info.get("Size", 0))))
        except Exception as exc:  # noqa: BLE001 - s3fs/botocore/aiohttp raise many kinds
            out.failed.append(fetch_failure(url, exc, "opening it in place"))
        else:
            out.paths[url] = out.remote[url] = remote
    try:
        with local_copies(copied, storage_options) as (local, failed):
            out.paths.update(local)
            out.failed += failed
            yield out
    finally:
        for f in out.remote.values():
            f.release()


__all__ = ["GDAL_CACHE", "HDF5_CACHE", "InPlace", "Inputs", "RemoteFile", "Transfer", "input_files"]
