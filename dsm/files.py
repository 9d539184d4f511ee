"""Whole-file writes through fsspec: a file under its final name is always complete.

A crash, a kill or a full disk in the middle of a write must never leave a truncated COG,
model, card or record under the name a resumed run trusts. On a local file system the bytes
go to ``NAME.<random>.partial`` in the same folder, are flushed to disk, and the file is
renamed over ``NAME`` (``os.replace``: atomic on POSIX); a failed write removes its partial
file. On object storage (``s3://``, ``gs://``...) an upload is already all-or-nothing (the
object appears only when the PUT or the multipart upload completes), so the bytes are
uploaded directly.

Object storage has no folders: :func:`make_folder` creates local folders only, and on object
storage checks that the bucket exists. A mistyped bucket is an error naming it, never a new
bucket (fsspec's ``makedirs`` would create one).

Inputs are found by :func:`expand`: files, globs and folders, local or fsspec URLs. Readers
that need a local path (pyhdf, the station readers) get one through :func:`local_copies`:
remote files are copied whole to a temporary folder, local ones (:func:`is_local`) are used
in place; readers of file objects read remote files in place (:mod:`dsm.inplace`). Either
way a remote file that cannot be had is reported by :func:`fetch_failure`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem

from dsm.errors import StoreError
from dsm.storeref import StoreRef

PARTIAL_SUFFIX = ".partial"
Status = Literal["used", "skipped", "failed"]


@dataclass(frozen=True)
class FileReport:
    """What happened to one input file (read, fetched): used, skipped or failed, and why."""

    path: str
    status: Status
    reason: str = ""
    error: str = ""  #: exception class name for skipped/failed files


def is_local(url: str) -> bool:
    """Whether ``url`` is a plain path (or ``file://``) rather than a remote fsspec URL."""
    return StoreRef(url).is_local


def fetch_failure(url: str, exc: BaseException, doing: str = "download") -> FileReport:
    """The ``failed`` report of a remote file that could not be had (copied, or read in place:
    :mod:`dsm.inplace`): a missing file is ``UnreadableFileError`` ("file does not exist"),
    any other error a ``TransientIOError`` (storage or network: rerun to resume)."""
    if isinstance(exc, FileNotFoundError):
        return FileReport(url, "failed", "file does not exist", "UnreadableFileError")
    return FileReport(url, "failed", f"{doing} failed ({type(exc).__name__}: {exc}); rerun to resume",
                      "TransientIOError")


@contextlib.contextmanager
def local_copies(urls: Sequence[str], storage_options: Mapping[str, Any]) -> Iterator[tuple[dict[str, str], list[FileReport]]]:
    """Local paths of ``urls``: remote files are downloaded to a temporary folder (removed on exit).

    Yields
    ------
    (dict, list)
        ``{url: local path}`` of the files that could be had, and a ``failed`` report for
        the others. The local copy keeps the file's name (readers take dates from names).
    """
    paths: dict[str, str] = {}
    failed: list[FileReport] = []
    with tempfile.TemporaryDirectory(prefix="dsm-ingest-") as tmp:
        for i, url in enumerate(urls):
            ref = StoreRef(url)
            if ref.is_local:
                paths[url] = ref.local_path
                continue
            target = os.path.join(tmp, str(i), posixpath.basename(url))
            os.makedirs(os.path.dirname(target))
            try:
                fs, path = fsspec.core.url_to_fs(url, **dict(storage_options))
                fs.get_file(path, target)
            except Exception as exc:  # noqa: BLE001 - s3fs/botocore/aiohttp raise many kinds
                failed.append(fetch_failure(url, exc))
            else:
                paths[url] = target
        yield paths, failed


def _partial_name(path: str) -> str:
    return f"{path}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}"


def _replace_from(path: str, fill: Any) -> None:
    """Write ``path`` through a partial file: ``fill(f)`` writes the bytes to an open binary file."""
    tmp = _partial_name(path)
    try:
        with open(tmp, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def make_folder(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Create the local folder ``path``; on object storage, check that its bucket exists.

    Raises
    ------
    StoreError
        The bucket (first part of ``path``) does not exist or cannot be listed.
    """
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(path, exist_ok=True)
        return
    bucket = path.strip("/").split("/", 1)[0]
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    try:
        fs.info(bucket)  # unlike exists(), lets an unreachable endpoint or bad options raise as themselves
    except FileNotFoundError:
        raise StoreError(f"the bucket {protocol}://{bucket} does not exist (or these credentials cannot see it): "
                         f"create it, or correct the URL; dsm never creates buckets") from None


def _make_parent(fs: fsspec.AbstractFileSystem, path: str) -> None:
    parent = path.rsplit("/", 1)[0]
    if isinstance(fs, LocalFileSystem) and parent and parent != path:
        fs.makedirs(parent, exist_ok=True)


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` of ``fs`` whole (local parent folders created)."""
    _make_parent(fs, path)
    if isinstance(fs, LocalFileSystem):
        _replace_from(path, lambda f: f.write(data))
    else:
        fs.pipe_file(path, data)


def write_all(fs: fsspec.AbstractFileSystem, contents: Mapping[str, bytes]) -> None:
    """Write every ``path -> data`` of ``contents`` to ``fs``, each file whole (local parent
    folders created); on object storage in one batch of concurrent requests (``fs.pipe``)."""
    if isinstance(fs, LocalFileSystem):
        for path, data in contents.items():
            write_bytes(fs, path, data)
    elif contents:
        fs.pipe(dict(contents))


def put_file(fs: fsspec.AbstractFileSystem, local: str, path: str) -> None:
    """Copy the local file ``local`` to ``path`` of ``fs`` whole (local parent folders created)."""
    _make_parent(fs, path)
    if isinstance(fs, LocalFileSystem):
        def copy(f: Any) -> None:
            with open(local, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        _replace_from(path, copy)
    else:
        fs.put_file(local, path)


def has_size(ref: StoreRef, size: int | None) -> bool:
    """Whether the file at ``ref`` exists and, unless ``size`` is None, has ``size`` bytes."""
    fs, path = ref.fs()
    try:
        got = fs.size(path)
    except FileNotFoundError:
        return False
    return size is None or got == size


@dataclass(frozen=True)
class Listing:
    """The files under a folder and their sizes, from one listing (:func:`listing`): a check of
    many files there costs one request per thousand files on object storage, not one per file."""

    root: str  # the folder's path as its filesystem names it
    sizes: Mapping[str, int]  # path -> bytes

    def has_size(self, ref: StoreRef, size: int | None) -> bool:
        """:func:`has_size` from the listing; a file outside its folder is asked on its own."""
        path = ref.fs()[1]
        if not path.startswith(self.root.rstrip("/") + "/"):
            return has_size(ref, size)
        got = self.sizes.get(path)
        return got is not None and (size is None or got == size)


def listing(ref: StoreRef) -> Listing:
    """Every file under the folder ``ref`` (at any depth) with its size, in one listing; none
    when the folder does not exist."""
    fs, root = ref.fs()
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        found = {}
    return Listing(root, {path: int(info["size"]) for path, info in found.items() if info.get("type") != "directory"})


def write_url(ref: StoreRef, data: bytes | str) -> str:
    """Write ``data`` (text is UTF-8 encoded) to ``ref`` whole; returns its URL."""
    fs, path = ref.fs()
    write_bytes(fs, path, data.encode("utf-8") if isinstance(data, str) else data)
    return ref.url


def _sha256_of(f: Any) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def file_sha256(path: str) -> str:
    """SHA-256 hex digest of a local file."""
    with open(path, "rb") as f:
        return _sha256_of(f)[1]


def url_digest(ref: StoreRef) -> tuple[int, str] | None:
    """``(size, SHA-256 hex digest)`` of the file at ``ref``, read in blocks; None when absent."""
    try:
        with ref.open("rb") as f:
            return _sha256_of(f)
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------ finding input files
def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _matches(name: str, patterns: Sequence[str]) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def expand_each(patterns: Sequence[str], storage_options: Mapping[str, Any],
                folder: Sequence[str] = ()) -> dict[str, list[str]]:
    """Files of each entry of ``patterns`` (a file, a glob or a folder; local or fsspec URL).

    Parameters
    ----------
    patterns
        The ``paths`` of an input; one ending in ``/`` names folders only.
    storage_options
        fsspec options for URLs.
    folder
        File-name patterns searched (recursively) in a folder; empty: folders give nothing.

    Returns
    -------
    dict
        ``{entry: sorted files}`` (full URLs for remote entries, paths for local ones).
    """
    out: dict[str, list[str]] = {}
    for pattern in patterns:
        fs, path = fsspec.core.url_to_fs(pattern, **dict(storage_options))
        remote = "://" in pattern and not pattern.startswith("file://")
        found: set[str] = set()
        for p in _candidates(fs, path):
            if fs.isdir(p):
                found.update(f for f in fs.find(p) if folder and _matches(posixpath.basename(f), folder))
            elif not pattern.endswith("/"):  # "dir/*/" names folders only (s3fs's glob also returns files)
                found.add(p)
        out[pattern] = sorted(fs.unstrip_protocol(p) if remote else p for p in found)
    return out


def _candidates(fs: Any, path: str) -> Iterator[str]:
    if _has_magic(path):
        yield from fs.glob(path)
    elif fs.exists(path):
        yield path.rstrip("/") or path


def expand(patterns: Sequence[str], storage_options: Mapping[str, Any], folder: Sequence[str] = ()) -> list[str]:
    """All files of ``patterns`` (:func:`expand_each`), sorted, without repeats."""
    return sorted({u for urls in expand_each(patterns, storage_options, folder).values() for u in urls})
