"""Valid ranges of the cube's variables, enforced wherever an input value enters dsm.

Every cube variable has a physical valid range (``valid_range`` of :data:`dsm.cube.SPECS`,
written as ``valid_min``/``valid_max``; SMAP's is its product's own, [0.02, 0.5] m3/m3). A value
outside it, or an infinite one, is impossible: a broken granule, a wrong scale factor, a fill
value a reader did not know. Such a value is treated as missing, exactly like a cloud:

- at ingest, before a block is written to the cube (:mod:`dsm.ingest.write`);
- when samples are built from the cube, for training and for prediction's 36 km cell means
  (:mod:`dsm.samples`, :mod:`dsm.cellmeans`, :mod:`dsm.models.disaggregation`), and for
  SMAP wherever it is a target or is fused;
- at prediction, before the models see a pixel (:func:`dsm.block_models.model_days`).

Each place counts what it masked and reports it. The functions work on numpy and dask arrays
alike. Bounds are float32 (the cube's dtype), so a value stored at a bound (float32(0.02) is
slightly below 0.02) is valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dsm.cube import SPECS

SMAP = "smap_sm"


def valid_range(name: str) -> tuple[float, float] | None:
    """The valid range of cube variable ``name`` (None: not a cube variable)."""
    spec = SPECS.get(name)
    return None if spec is None else (float(spec.valid_range[0]), float(spec.valid_range[1]))


def outside(values: Any, bounds: tuple[float, float]) -> Any:
    """True where a value is not NaN and not within ``bounds`` (so infinite values are outside).

    Parameters
    ----------
    values
        A numpy or dask array (any real dtype).
    bounds
        ``(low, high)``, inclusive, compared as float32.
    """
    lo, hi = np.float32(bounds[0]), np.float32(bounds[1])
    return ~(np.isnan(values) | ((values >= lo) & (values <= hi)))


def masked(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """``values`` with NaN where :func:`outside` ``bounds`` (numpy; floating dtypes kept)."""
    return np.where(outside(values, bounds), np.nan, values)


def screen_lazy(name: str, values: Any) -> Any:
    """A dask array with NaN outside the valid range of ``name``: one task per chunk
    (:func:`masked` mapped over the blocks), unchanged for a name without a valid range."""
    bounds = valid_range(name)
    if bounds is None:
        return values
    dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float32)
    return values.map_blocks(masked, bounds, dtype=dtype, meta=np.empty((0,) * values.ndim, dtype))


def screen(name: str, values: Any) -> tuple[Any, Any | None]:
    """``values`` with NaN where outside the valid range of ``name``, and the mask of those values.

    Returns the values unchanged and None for a name without a valid range.
    """
    bounds = valid_range(name)
    if bounds is None:
        return values, None
    bad = outside(values, bounds)
    return np.where(bad, np.nan, values), bad


def screen_layers(layers: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`screen` on every layer; returns the screened layers and the masks of the layers
    that had values outside their range (numpy)."""
    out: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for name, values in layers.items():
        bounds = valid_range(name)
        bad = outside(values, bounds) if bounds is not None else None
        if bad is not None and bad.any():
            out[name] = np.where(bad, np.nan, values).astype(values.dtype if values.dtype.kind == "f" else np.float32)
            masks[name] = bad
        else:
            out[name] = values
    return out, masks


def merge_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum of ``{variable: count}`` mappings, sorted by variable, without zero counts."""
    total: dict[str, int] = {}
    for c in counts:
        for k, n in c.items():
            total[k] = total.get(k, 0) + int(n)
    return {k: total[k] for k in sorted(total) if total[k]}


def describe(counts: Mapping[str, int], unit: str = "values") -> str:
    """One line: ``lst 1296, ndvi 144 (values)`` (``none`` when nothing was masked)."""
    parts = [f"{k} {n}" for k, n in counts.items() if n]
    return ", ".join(parts) + f" ({unit})" if parts else "none"


__all__ = ["SMAP", "valid_range", "outside", "masked", "screen", "screen_lazy", "screen_layers", "merge_counts",
           "describe"]
