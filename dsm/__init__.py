"""dsm: daily 1 km soil moisture by downscaling SMAP with MODIS, terrain and soil predictors.

The public API, for notebooks and scripts (each name is also the function behind a command)::

    import dsm
    from distributed import Client

    config = dsm.load_config("region.yaml")
    with Client() as client:
        dsm.train(config, client)        # dsm train: the models
        dsm.predict(config, client)      # dsm predict: the daily 1 km maps
        dsm.export(config, client)       # dsm export: COGs + STAC and/or netCDF
        dsm.validate(config, client)     # dsm validate: against in situ stations
        # or all of it, resumably: dsm.run(config, client)
    maps = dsm.open_products(config.stores.ref("output"))  # the store with its storage options
    cube = dsm.open_cube(config.stores.ref("cube"))
    maps = dsm.open_products("s3://bucket/sm.zarr")          # or any path or URL, without options
    maps = dsm.open_products(dsm.StoreRef("s3://bucket/sm.zarr", {"anon": True}))

``dsm ingest`` is :func:`dsm.stages.ingest.run_ingest` (``dsm.ingest`` is the package of the
input readers). The names are resolved on first use, so ``import dsm.grid`` or ``import dsm.metrics`` loads
neither xgboost nor distributed. The stages themselves live in :mod:`dsm.stages`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("dsm")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

#: public name -> (module, attribute)
_PUBLIC: dict[str, tuple[str, str]] = {
    "load_config": ("dsm.config", "load"),
    "Config": ("dsm.config", "Config"),
    "open_cube": ("dsm.cube", "open_cube"),
    "open_products": ("dsm.products", "open_products"),
    "StoreRef": ("dsm.storeref", "StoreRef"),
    "train": ("dsm.stages.train", "train"),
    "predict": ("dsm.stages.predict", "predict"),
    "export": ("dsm.stages.export", "export"),
    "validate": ("dsm.stages.validate", "validate"),
    "run": ("dsm.chain", "run"),
    "DsmError": ("dsm.errors", "DsmError"),
    "ConfigError": ("dsm.errors", "ConfigError"),
    "InputError": ("dsm.errors", "InputError"),
}

__all__ = ["Config", "ConfigError", "DsmError", "InputError", "StoreRef", "__version__", "export", "load_config",
           "open_cube", "open_products", "predict", "run", "train", "validate"]

if TYPE_CHECKING:  # the names as type checkers and IDEs see them
    from dsm.chain import run
    from dsm.config import Config
    from dsm.config import load as load_config
    from dsm.cube import open_cube
    from dsm.errors import ConfigError, DsmError, InputError
    from dsm.products import open_products
    from dsm.stages.export import export
    from dsm.stages.predict import predict
    from dsm.stages.train import train
    from dsm.stages.validate import validate
    from dsm.storeref import StoreRef


def __getattr__(name: str) -> Any:
    try:
        module, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'dsm' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
