"""Exception tree of dsm, grouped by what the caller does about it.

``DsmError``
    ``ConfigError``      the run configuration is wrong: fix the YAML / arguments.
    ``GridError``        a region or index does not fit the EASE-Grid 2.0 grid.
    ``InputError``       an input file or store is missing, corrupt or of the wrong kind:
                         skip it, report it, carry on with the rest.
        ``IngestInputError`` one input file (``path``, ``reason``): ``UnreadableFileError``,
                         ``WrongProductError``, ``MissingVariableError``, ``EmptyGranuleError``,
                         ``NoOverlapError``, ``InputDateError``, ``GeolocationError``.
        ``StoreError``   a Zarr store is missing or is not what dsm expects.
            ``StoreNotFoundError``  no store at the URL (nothing written there yet).
    ``TransientIOError`` a storage or network failure that may succeed when retried.
        ``WorkerLostError``  a Dask worker was lost during a distributed computation:
                             rerun to resume.
"""

from __future__ import annotations

import os


class DsmError(Exception):
    """Base class of every error raised on purpose by dsm."""


class ConfigError(DsmError, ValueError):
    """The configuration (file, key or argument) is invalid; the message names it."""


class GridError(DsmError, ValueError):
    """A region, bounding box or index does not fit the EASE-Grid 2.0 grid."""


class InputError(DsmError):
    """An input file or store is missing, unreadable or of the wrong kind."""


class IngestInputError(InputError):
    """An input file cannot be used; ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnreadableFileError(IngestInputError):
    """The file is missing, truncated, corrupt or not of the expected format."""


class WrongProductError(IngestInputError):
    """The file is readable but is not the product (or grid) that was asked for."""


class MissingVariableError(IngestInputError):
    """A variable (SDS, HDF5 dataset, attribute) the reader needs is absent."""


class EmptyGranuleError(IngestInputError):
    """The file holds no valid pixel (all fill or all rejected by quality control)."""


class NoOverlapError(IngestInputError):
    """The file does not cover any part of the requested region."""


class InputDateError(IngestInputError):
    """The date of the file cannot be determined, or its sources disagree."""


class GeolocationError(IngestInputError):
    """The file's geolocation is missing, unknown (CRS) or disagrees with the grid."""


class StoreError(InputError):
    """A Zarr store does not exist or is not the kind of dsm store expected."""


class StoreNotFoundError(StoreError):
    """There is no Zarr store at the URL (callers that create missing stores catch this)."""


class LockError(DsmError):
    """Another live run holds the output store's lock (:mod:`dsm.runlock`)."""


class LockLostError(LockError):
    """This run's lease was taken over (or could not be renewed): it must stop writing."""


class TransientIOError(DsmError):
    """A storage or network failure that may succeed if retried."""


class WorkerLostError(TransientIOError):
    """A Dask worker was lost during a distributed computation (an ``xgboost.dask`` fit); a
    rerun resumes."""
