"""Fixtures users and tests can reuse.

* :func:`make_synthetic_cube` builds a twin (cube, truth, stations) in a folder or bucket;
* :mod:`dsm.testing.s3` runs a real S3-compatible server on loopback (``LoopbackS3``);
* :mod:`dsm.testing.processes` runs a real ``dask scheduler`` and ``dask worker`` processes
  (``ProcessCluster``).
* :mod:`dsm.testing.web` serves a folder over HTTP with range requests (``LoopbackHTTP``), as
  GDAL's ``/vsicurl/`` reads web rasters;
* :mod:`dsm.testing.soilgrids` writes SoilGrids 2.0 texture VRTs and tiles as ISRIC publishes them;
* :func:`assert_maximum_dask_computes` fails a block that computes more Dask graphs than allowed.
"""

from __future__ import annotations

from dsm.storeref import StoreRef
from dsm.synthetic import TwinSpec
from dsm.testing.dask_computes import TooManyComputesError, assert_maximum_dask_computes
from dsm.twin import TwinStores, build_twin


def make_synthetic_cube(
    root: StoreRef | str,
    size: str = "tiny",
    seed: int = 42,
    space_chunk: int = 72,
    time_chunk: int = 8,
    overwrite: bool = False,
) -> TwinStores:
    """Build a twin under ``root`` (a :class:`~dsm.storeref.StoreRef`, or a path or fsspec URL
    that needs no options): ``cube.zarr``, ``truth.zarr``, ``stations/``.

    ``size`` is ``"tiny"`` (4 x 4 SMAP cells, 48 days; seconds) or ``"default"``
    (8 x 8 cells, one year).
    """
    base = StoreRef.of(root)
    stores = TwinStores(base.join("cube.zarr"), base.join("truth.zarr"), base.join("stations"))
    return build_twin(stores, TwinSpec.of_size(size, seed), space_chunk, time_chunk,
                      overwrite=overwrite, progress=False)


__all__ = ["TooManyComputesError", "TwinStores", "assert_maximum_dask_computes", "make_synthetic_cube"]
