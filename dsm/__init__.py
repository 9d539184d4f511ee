"""dsm: daily 1 km soil moisture by downscaling SMAP with MODIS, terrain and soil predictors."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dsm")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
