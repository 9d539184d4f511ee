"""Merging new 2-D arrays into blocks read from the cube (shared by the dated and static writes)."""

from __future__ import annotations

import numpy as np

from dsm.ranges import screen


def merge(block: np.ndarray, new: np.ndarray, status: str) -> None:
    """Put ``new`` into ``block`` in place: replace (``complete``) or fill empty pixels (``partial``)."""
    if status == "complete":
        block[...] = new
    elif status == "partial":
        np.copyto(block, new, where=np.isnan(block))


def screened(var: str, values: np.ndarray) -> tuple[np.ndarray, int]:
    """``values`` with NaN outside the valid range of ``var`` (:mod:`dsm.ranges`) and how many were."""
    out, bad = screen(var, values)
    return out, 0 if bad is None else int(bad.sum())
