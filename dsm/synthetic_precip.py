"""The twin's gridded daily precipitation product: its own rain as a 0.1 degree satellite sees it.

The twin knows its 1 km rain (:attr:`dsm.synthetic.Day.rain`); real users have a gridded
product such as GPM IMERG (0.1 degree), never the truth. So that the value of rain as a
predictor is measured honestly, the twin hands the pipeline a product made the way such
products err:

* **block averaging**: each 0.1 degree cell (aligned with IMERG's global grid, centres at
  ``k * 0.1 + 0.05`` degrees) holds the mean of the 1 km rain of the pixels whose centres it
  contains (cells at the region's edge hold the mean of their pixels inside it);
* **missed small events**: a cell whose true mean is under :data:`DETECTION_MM` is reported
  dry with probability :data:`MISS_PROBABILITY`;
* **multiplicative error**: a log-normal factor with log-sd :data:`LOG_SD` and mean one
  (the random error of satellite estimates grows with the rain rate);
* **false alarms**: a dry cell reports light rain (:data:`FALSE_ALARM_MM`) with probability
  :data:`FALSE_ALARM_PROBABILITY`.

Everything is deterministic from its generator; the twin draws it from its own seed stream,
so adding the product leaves every other variable of the twin unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from dsm.grid import Region

CELL_DEG = 0.1
DETECTION_MM = 1.0
MISS_PROBABILITY = 0.4
LOG_SD = 0.4
FALSE_ALARM_PROBABILITY = 0.02
FALSE_ALARM_MM = (0.2, 1.5)


@dataclass(frozen=True)
class ProductGrid:
    """The 0.1 degree cells over a region and which cell each 1 km row and column falls in.

    The EASE-Grid 2.0 global projection is cylindrical, so a 1 km pixel's latitude depends on
    its row only and its longitude on its column only.
    """

    lat: np.ndarray  #: cell-centre latitudes, north to south
    lon: np.ndarray  #: cell-centre longitudes, west to east
    row_of: np.ndarray  #: product row of each 1 km row
    col_of: np.ndarray  #: product column of each 1 km column

    @classmethod
    def over(cls, region: Region) -> ProductGrid:
        """The cells of the global 0.1 degree grid that hold the region's 1 km pixel centres."""
        flat, flon = region.fine_lat, region.fine_lon
        ilat = np.floor(flat / CELL_DEG).astype(int)
        ilon = np.floor(flon / CELL_DEG).astype(int)
        lat_idx = np.arange(ilat.max(), ilat.min() - 1, -1)
        lon_idx = np.arange(ilon.min(), ilon.max() + 1)
        return cls(lat=np.round((lat_idx + 0.5) * CELL_DEG, 6), lon=np.round((lon_idx + 0.5) * CELL_DEG, 6),
                   row_of=ilat.max() - ilat, col_of=ilon - ilon.min())

    @property
    def shape(self) -> tuple[int, int]:
        """(number of latitudes, number of longitudes)."""
        return len(self.lat), len(self.lon)


def block_mean(rain: np.ndarray, grid: ProductGrid) -> np.ndarray:
    """Mean of the 1 km ``rain`` (y, x) over the pixels of each product cell (NaN for none)."""
    rows = np.broadcast_to(grid.row_of[:, None], rain.shape)
    cols = np.broadcast_to(grid.col_of[None, :], rain.shape)
    flat = (rows * grid.shape[1] + cols).ravel()
    n = grid.shape[0] * grid.shape[1]
    count = np.bincount(flat, minlength=n)
    total = np.bincount(flat, weights=rain.ravel().astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).reshape(grid.shape)


def observe(true_mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The product's estimate of the cell means ``true_mean`` (mm/day), with its errors."""
    shape = true_mean.shape
    miss = rng.random(shape) < MISS_PROBABILITY
    factor = np.exp(rng.normal(-0.5 * LOG_SD**2, LOG_SD, shape))
    alarm = rng.random(shape) < FALSE_ALARM_PROBABILITY
    light = rng.uniform(*FALSE_ALARM_MM, shape)
    wet = true_mean > 0.0
    out = np.where(wet, true_mean * factor, np.where(alarm, light, 0.0))
    out = np.where(wet & (true_mean < DETECTION_MM) & miss, 0.0, out)
    return np.where(np.isfinite(true_mean), out, np.nan).astype(np.float32)


def product_days(rain_days: list[np.ndarray], dates: list, grid: ProductGrid,
                 rng: np.random.Generator) -> xr.DataArray:
    """The product for consecutive days: ``precip`` (time, lat, lon) in mm/day, like a reader's output."""
    values = np.stack([observe(block_mean(r, grid), rng) for r in rain_days])
    return xr.DataArray(values, dims=("time", "lat", "lon"), name="precip",
                        coords={"time": pd.DatetimeIndex(dates), "lat": grid.lat, "lon": grid.lon},
                        attrs={"units": "mm", "long_name": "twin 0.1 degree daily precipitation product",
                               "day": "local"})
