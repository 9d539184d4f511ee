"""Per-cell statistics of 1 km layers: the values a sample table's columns are made of (pure).

Each function takes a 1 km array whose last two axes are whole coarse cells (``factor`` pixels
a side: 36 on the 36 km grid, 9 on the 9 km one) and the land mask, and returns one value per
cell: :func:`aggregate` (the mean of the valid pixels, or the pixel at the cell's centre:
:mod:`dsm.samples`' aggregation rules), :func:`cell_extreme` (the least or greatest valid
pixel), :func:`count_cells` (the land pixels outside a valid range), and
:func:`cell_statistics` (the aggregate and both extremes of one layer, its valid pixels found
once). A pixel is valid when it is on land, finite and, given ``bounds``, within them
(:func:`dsm.ranges.masked`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dsm.grid import FINE_PER_COARSE, block_reduce_mean
from dsm.ranges import masked, outside

__all__ = ["Aggregation", "aggregate", "cell_extreme", "cell_statistics", "count_cells", "land_values"]

Aggregation = Literal["mean", "nearest"]


def aggregate(fine: np.ndarray, land: np.ndarray, how: Aggregation = "mean",
              min_valid_fraction: float = 0.5, bounds: tuple[float, float] | None = None,
              factor: int = FINE_PER_COARSE) -> np.ndarray:
    """Aggregate 1 km pixels to coarse (36 or 9 km) cells by the rule ``how`` (:mod:`dsm.samples`).

    Parameters
    ----------
    fine
        Array whose last two axes are 1 km rows and columns (multiples of ``factor``).
    land
        Boolean land mask of the last two axes; pixels off land count as invalid.
    how
        ``"mean"`` or ``"nearest"`` (the aggregation rules in :mod:`dsm.samples`).
    min_valid_fraction
        For ``"mean"``: fewest valid pixels, as a fraction of the cell's (1296 at 36 km), for a valid cell.
    bounds
        The valid range: pixels outside it are invalid (:func:`dsm.ranges.outside`).
    factor
        1 km pixels per coarse cell along each axis (:attr:`dsm.grid.Region.fine_per_coarse`).

    Returns
    -------
    numpy.ndarray
        float32 array with the last two axes divided by ``factor``; NaN where invalid.
    """
    return _aggregated(land_values(fine, land, bounds), how, min_valid_fraction, factor)


def land_values(fine: np.ndarray, land: np.ndarray, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """``fine`` as float32 with NaN off ``land`` and, with ``bounds``, outside them
    (:func:`dsm.ranges.masked`): the valid pixels every per-cell statistic is taken over."""
    return np.where(land, fine if bounds is None else masked(fine, bounds), np.nan).astype(np.float32, copy=False)


def _aggregated(values: np.ndarray, how: Aggregation, min_valid_fraction: float, factor: int) -> np.ndarray:
    """:func:`aggregate` of :func:`land_values`."""
    if how == "mean":
        return block_reduce_mean(values, min_valid_fraction, factor).astype(np.float32)
    if how == "nearest":
        f, centre = factor, factor // 2  # NEAREST_OFFSET on the 36 km grid
        return np.ascontiguousarray(values[..., centre::f, centre::f])
    raise ValueError(f"unknown aggregation {how!r}; use 'mean' or 'nearest'")


def cell_extreme(fine: np.ndarray, land: np.ndarray, stat: str,
                 bounds: tuple[float, float] | None = None, factor: int = FINE_PER_COARSE) -> np.ndarray:
    """Per coarse cell (``factor`` pixels a side), the minimum (``stat="min"``) or maximum of the
    valid land pixels (NaN if none); with ``bounds``, pixels outside them are invalid."""
    return _extreme(_Cells.of(land_values(fine, land, bounds), factor), stat)


@dataclass(frozen=True)
class _Cells:
    """:func:`land_values` as ``(..., cy, f, cx, f)`` blocks, which of them are finite, and the
    cells holding one."""

    blocks: np.ndarray
    finite: np.ndarray
    valid: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, factor: int) -> _Cells:
        f = factor
        blocks = values.reshape(*values.shape[:-2], values.shape[-2] // f, f, values.shape[-1] // f, f)
        finite = np.isfinite(blocks)
        return cls(blocks, finite, finite.any(axis=(-3, -1)))


def _extreme(cells: _Cells, stat: str) -> np.ndarray:
    """:func:`cell_extreme` of the cells."""
    fill = np.inf if stat == "min" else -np.inf
    reduce = np.min if stat == "min" else np.max
    out = reduce(np.where(cells.finite, cells.blocks, fill), axis=(-3, -1))
    return np.where(cells.valid, out, np.nan).astype(np.float32)


def cell_statistics(fine: np.ndarray, land: np.ndarray, how: Aggregation = "mean", min_valid_fraction: float = 0.5,
                    bounds: tuple[float, float] | None = None, ranges: bool = False,
                    factor: int = FINE_PER_COARSE) -> list[np.ndarray]:
    """:func:`aggregate` and, with ``ranges``, :func:`cell_extreme` ``"min"`` and ``"max"`` of
    one layer, its valid pixels (:func:`land_values`) found once for all three."""
    values = land_values(fine, land, bounds)
    out = [_aggregated(values, how, min_valid_fraction, factor)]
    if ranges:
        cells = _Cells.of(values, factor)
        out += [_extreme(cells, "min"), _extreme(cells, "max")]
    return out


def count_cells(fine: np.ndarray, land: np.ndarray, bounds: tuple[float, float],
                factor: int = FINE_PER_COARSE) -> np.ndarray:
    """Per coarse cell (``factor`` pixels a side), the number of land pixels whose value is
    outside ``bounds`` (:func:`dsm.ranges.outside`; int32, the last two axes divided by ``factor``)."""
    f = factor
    x = outside(fine, bounds) & np.asarray(land, bool)
    return x.reshape(*x.shape[:-2], x.shape[-2] // f, f, x.shape[-1] // f, f).sum(axis=(-3, -1), dtype=np.int32)
