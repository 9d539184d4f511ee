"""Exception tree of dsm, grouped by what the caller does about it.

``DsmError``
    ``ConfigError``      the run configuration is wrong: fix the YAML / arguments.
    ``GridError``        a region or index does not fit the EASE-Grid 2.0 grid.
    ``InputError``       an input file or store is missing, corrupt or of the wrong kind:
                         skip it, report it, carry on with the rest.
        ``StoreError``   a Zarr store is missing or is not what dsm expects.
    ``TransientIOError`` a storage or network failure that may succeed when retried.
        ``WorkerLostError``  a Dask worker was lost during a distributed computation:
                             rerun to resume.
"""

from __future__ import annotations


class DsmError(Exception):
    """Base class of every error raised on purpose by dsm."""


class ConfigError(DsmError, ValueError):
    """The configuration (file, key or argument) is invalid; the message names it."""


class GridError(DsmError, ValueError):
    """A region, bounding box or index does not fit the EASE-Grid 2.0 grid."""


class InputError(DsmError):
    """An input file or store is missing, unreadable or of the wrong kind."""


class StoreError(InputError):
    """A Zarr store does not exist or is not the kind of dsm store expected."""


class LockError(DsmError):
    """Another live run holds the output store's lock (:mod:`dsm.runlock`)."""


class LockLostError(LockError):
    """This run's lease was taken over (or could not be renewed): it must stop writing."""


class TransientIOError(DsmError):
    """A storage or network failure that may succeed if retried."""


class WorkerLostError(TransientIOError):
    """A Dask worker was lost during a distributed computation (an ``xgboost.dask`` fit); a
    rerun resumes."""
