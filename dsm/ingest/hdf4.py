"""Low-level HDF4 (SD interface) reading with pyhdf, optionally in a child process.

The HDF4 library has no checksums and can crash the whole Python process with a
segmentation fault when it decompresses a corrupt SDS (seen on the real MOD13A2 tile with a
few hundred flipped bytes). ``isolate=True`` (the default of the MODIS readers) reads the file
in a short-lived child process (``python _hdf4_child.py``), so a crash becomes an
:class:`~dsm.ingest.base.UnreadableFileError` instead of killing a Dask worker. It costs one
Python start-up (~0.2 s) per file. Corruption that decompresses cleanly cannot be detected.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsm.ingest.base import MissingVariableError, PathLike, UnreadableFileError

log = logging.getLogger(__name__)

_CHILD = Path(__file__).with_name("_hdf4_child.py")


@dataclass(frozen=True)
class Hdf4Content:
    """What was read from one HDF4 file."""

    path: str
    attributes: dict[str, Any]  #: global (file) attributes, e.g. ``StructMetadata.0``
    names: list[str]  #: every SDS in the file
    sds: dict[str, np.ndarray]  #: the requested SDS, raw (packed) values
    sds_attributes: dict[str, dict[str, Any]]


def read_hdf4(
    path: PathLike, names: Sequence[str] = (), *, isolate: bool = True, timeout: float = 300.0, require: bool = True
) -> Hdf4Content:
    """Read global attributes and the SDS ``names`` (raw values) of an HDF4 file.

    Parameters
    ----------
    path
        HDF4 file.
    names
        SDS to read; every one must exist. Empty: only attributes and the SDS list.
    isolate
        Read in a child process so that a crash of the HDF4 library on a corrupt file is
        reported as ``UnreadableFileError`` (see module docstring).
    timeout
        Seconds before the child is killed (isolated mode).
    require
        Raise ``MissingVariableError`` when one of ``names`` is absent; otherwise skip it.

    Raises
    ------
    UnreadableFileError
        Missing, truncated, corrupt or not HDF4.
    MissingVariableError
        One of ``names`` is not in the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UnreadableFileError(path, "file does not exist")
    names = list(names)
    if isolate:
        result = _read_isolated(path, names, timeout)
    else:
        from dsm.ingest import _hdf4_child  # noqa: PLC0415 - pyhdf enters this process only when not isolated

        try:
            result = _hdf4_child.read(path, names)
        except Exception as exc:  # noqa: BLE001 - pyhdf raises HDF4Error, ValueError...
            result = {"error": f"{type(exc).__name__}: {exc}"}
    if "error" in result:
        raise UnreadableFileError(path, f"not a readable HDF4 file ({result['error']})")
    missing = [n for n in names if n not in result["names"]]
    if missing and require:
        raise MissingVariableError(path, f"SDS {missing} not in the file (it has {result['names']})")
    return Hdf4Content(path, result["attributes"], result["names"], result["sds"], result["sds_attributes"])


def _read_isolated(path: str, names: list[str], timeout: float) -> dict:
    try:
        proc = subprocess.run(
            [sys.executable, str(_CHILD), path, *names], capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise UnreadableFileError(path, f"reading took more than {timeout} s (HDF4 reader killed)") from None
    if proc.returncode != 0:
        sig = -proc.returncode
        what = signal.Signals(sig).name if 0 < sig < signal.NSIG else f"exit status {proc.returncode}"
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise UnreadableFileError(path, f"the HDF4 library crashed reading the file ({what}): corrupt file {detail[0]}".rstrip())
    try:
        return pickle.loads(proc.stdout)
    except Exception as exc:  # noqa: BLE001
        raise UnreadableFileError(path, f"HDF4 reader returned no result ({exc})") from exc
