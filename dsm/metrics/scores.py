"""Point scores of a product against a reference: R, RMSE, ubRMSE, bias and N of one pair
of series (:func:`score`), of many groups in one vectorised pass (:func:`score_groups`) or
of a table's columns (:func:`score_table`). Definitions and conventions: :mod:`dsm.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import pandas as pd

BiasConvention = Literal["reference_minus_product", "product_minus_reference"]
BIAS_CONVENTIONS: tuple[str, ...] = ("reference_minus_product", "product_minus_reference")
METRIC_NAMES: tuple[str, ...] = ("r", "rmse", "ubrmse", "bias", "n")


@dataclass(frozen=True)
class Scores:
    """Validation scores of one product/reference pairing.

    Attributes
    ----------
    r : float
        Pearson correlation coefficient (NaN when a series is constant or ``n < min_n``).
    rmse : float
        Root mean square error, in the unit of the data (m3/m3).
    ubrmse : float
        Unbiased RMSE: RMSE of the anomalies from each series' mean.
    bias : float
        Difference of means, signed by the chosen convention (see :mod:`dsm.metrics`).
    n : int
        Number of valid (non-NaN) pairs used.
    """

    r: float
    rmse: float
    ubrmse: float
    bias: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """Return the scores as a plain dictionary keyed by :data:`METRIC_NAMES`."""
        return asdict(self)


# --------------------------------------------------------------------------- validation


def _as_float_array(values: ArrayLike, name: str) -> NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    return array.ravel()


def _check_same_labels(product: Any, reference: Any) -> None:
    """Refuse labelled inputs (pandas objects) whose labels differ.

    Pairs are formed by position; two Series on different indexes would be paired
    silently wrong, so they must be aligned by the caller first.
    """
    p_index = getattr(product, "index", None)
    q_index = getattr(reference, "index", None)
    if p_index is None or q_index is None:
        return
    equals = getattr(p_index, "equals", None)
    if equals is not None and not equals(q_index):
        raise ValueError(
            "product and reference have different indexes; align them first "
            "(for example with Series.align or DataFrame.join)"
        )


def _check_convention(bias_convention: str) -> None:
    if bias_convention not in BIAS_CONVENTIONS:
        raise ValueError(
            f"bias_convention must be one of {BIAS_CONVENTIONS}, got {bias_convention!r}"
        )


def _check_min_n(min_n: int) -> None:
    if isinstance(min_n, bool) or not isinstance(min_n, (int, np.integer)) or min_n < 2:
        raise ValueError(f"min_n must be an integer >= 2, got {min_n!r}")


def _prepare(
    product: ArrayLike, reference: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Both inputs as flat float arrays of the same shape, without infinities."""
    _check_same_labels(product, reference)
    p = np.asarray(product)
    q = np.asarray(reference)
    if p.shape != q.shape:
        raise ValueError(
            f"product and reference must have the same shape, got {p.shape} and {q.shape}"
        )
    p_flat = _as_float_array(p, "product")
    q_flat = _as_float_array(q, "reference")
    for name, array in (("product", p_flat), ("reference", q_flat)):
        if np.isinf(array).any():
            raise ValueError(f"{name} contains infinite values; use NaN for missing data")
    return p_flat, q_flat


def valid_pairs(
    product: ArrayLike, reference: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the pairs where neither member is NaN.

    Parameters
    ----------
    product, reference : array_like
        Values paired by position; same shape (flattened).

    Returns
    -------
    tuple of numpy.ndarray
        The product and reference values of the valid pairs, 1-D, in input order.

    Raises
    ------
    ValueError
        On a shape mismatch, non-numeric or infinite values, or pandas inputs with
        different indexes.
    """
    p, q = _prepare(product, reference)
    keep = ~(np.isnan(p) | np.isnan(q))
    return p[keep], q[keep]


# --------------------------------------------------------------------------- core


def _safe_divide(num: NDArray[Any], den: NDArray[Any]) -> NDArray[np.float64]:
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class CentredSums:
    """Per-group sums from which the scores follow, each array one value per group.

    ``pp``, ``qq`` and ``pq`` are sums of products of the departures from the group's means
    (``mean_p``, ``mean_q``), ``diff2`` the sum of ``(p - q)**2`` and ``anomaly_diff2`` that
    of the departures' difference squared, over the group's ``n`` valid pairs.
    """

    n: NDArray[Any]  # integers
    mean_p: NDArray[Any]  # the rest float64 (bincount's stubs type its weighted sums as integers)
    mean_q: NDArray[Any]
    pp: NDArray[Any]
    qq: NDArray[Any]
    pq: NDArray[Any]
    diff2: NDArray[Any]
    anomaly_diff2: NDArray[Any]

    def scores(self, bias_convention: str, min_n: int) -> dict[str, NDArray[Any]]:
        """R, RMSE, ubRMSE, bias (NaN where ``n < min_n``) and ``n`` of every group."""
        r = np.clip(_safe_divide(self.pq, np.sqrt(self.pp * self.qq)), -1.0, 1.0)
        diff = self.mean_q - self.mean_p
        scores = {
            "r": r,
            "rmse": np.sqrt(_safe_divide(self.diff2, self.n)),
            "ubrmse": np.sqrt(_safe_divide(self.anomaly_diff2, self.n)),
            "bias": diff if bias_convention == "reference_minus_product" else -diff,
        }
        too_few = self.n < min_n
        for values in scores.values():
            values[too_few] = np.nan
        return {**scores, "n": np.asarray(self.n).astype(np.int64)}


def _grouped_scores(
    p: NDArray[np.float64],
    q: NDArray[np.float64],
    codes: NDArray[np.intp],
    n_groups: int,
    bias_convention: str,
    min_n: int,
) -> dict[str, NDArray[Any]]:
    """Scores of every group at once; the inputs hold valid pairs only.

    ``codes`` gives each pair's group in ``0 .. n_groups - 1``. Each group is first
    shifted by one of its own values (so a constant series has exactly zero anomalies
    and R is NaN, not rounding noise), then two-pass centred sums keep the result
    accurate for large means and small variances.
    """
    n = np.bincount(codes, minlength=n_groups)
    pivot_p, pivot_q = np.zeros(n_groups), np.zeros(n_groups)
    pivot_p[codes], pivot_q[codes] = p, q
    p_shift, q_shift = p - pivot_p[codes], q - pivot_q[codes]
    mean_p_shift = _safe_divide(np.bincount(codes, p_shift, n_groups), n)
    mean_q_shift = _safe_divide(np.bincount(codes, q_shift, n_groups), n)
    dp = p_shift - mean_p_shift[codes]
    dq = q_shift - mean_q_shift[codes]
    sums = CentredSums(
        n=n,
        mean_p=pivot_p + mean_p_shift,
        mean_q=pivot_q + mean_q_shift,
        pp=np.bincount(codes, dp * dp, n_groups),
        qq=np.bincount(codes, dq * dq, n_groups),
        pq=np.bincount(codes, dp * dq, n_groups),
        diff2=np.bincount(codes, (p - q) ** 2, n_groups),
        anomaly_diff2=np.bincount(codes, (dp - dq) ** 2, n_groups),
    )
    return sums.scores(bias_convention, min_n)


def score(
    product: ArrayLike,
    reference: ArrayLike,
    *,
    bias_convention: BiasConvention = "reference_minus_product",
    min_n: int = 2,
) -> Scores:
    """Score a product against a reference.

    Parameters
    ----------
    product : array_like
        Estimated soil moisture (e.g. the 1 km map at a site), paired by position.
    reference : array_like
        Reference soil moisture (e.g. in situ daily means), same shape as ``product``.
    bias_convention : {"reference_minus_product", "product_minus_reference"}
        Sign of the bias. Default: reference minus product, as in Rao et al. (2022).
    min_n : int, default 2
        Fewest valid pairs for which scores are computed; below it all scores are NaN.

    Returns
    -------
    Scores
        R, RMSE, ubRMSE, bias and the number of valid pairs.

    Raises
    ------
    ValueError
        On a shape mismatch, non-numeric or infinite values, differently indexed
        pandas inputs, an unknown ``bias_convention`` or ``min_n < 2``.

    Examples
    --------
    >>> score([0.20, 0.25, 0.30], [0.22, 0.26, 0.35])
    Scores(r=0.976..., rmse=0.0316..., ubrmse=0.0169..., bias=0.0266..., n=3)
    """
    _check_convention(bias_convention)
    _check_min_n(min_n)
    p, q = valid_pairs(product, reference)
    codes = np.zeros(p.size, dtype=np.intp)
    result = _grouped_scores(p, q, codes, 1, bias_convention, min_n)
    return Scores(
        r=float(result["r"][0]),
        rmse=float(result["rmse"][0]),
        ubrmse=float(result["ubrmse"][0]),
        bias=float(result["bias"][0]),
        n=int(result["n"][0]),
    )


def pearson_r(product: ArrayLike, reference: ArrayLike, *, min_n: int = 2) -> float:
    """Pearson correlation coefficient of the valid pairs (see :func:`score`)."""
    return score(product, reference, min_n=min_n).r


def rmse(product: ArrayLike, reference: ArrayLike, *, min_n: int = 2) -> float:
    """Root mean square error of the valid pairs (see :func:`score`)."""
    return score(product, reference, min_n=min_n).rmse


def ubrmse(product: ArrayLike, reference: ArrayLike, *, min_n: int = 2) -> float:
    """Unbiased RMSE, ``sqrt(rmse**2 - bias**2)``, of the valid pairs (see :func:`score`)."""
    return score(product, reference, min_n=min_n).ubrmse


def bias(
    product: ArrayLike,
    reference: ArrayLike,
    *,
    bias_convention: BiasConvention = "reference_minus_product",
    min_n: int = 2,
) -> float:
    """Difference of means of the valid pairs, signed by ``bias_convention``.

    The default, ``"reference_minus_product"``, is ``mean(reference) - mean(product)``
    (Rao et al., 2022); ``"product_minus_reference"`` is the pytesmo/QA4SM sign.
    """
    return score(product, reference, bias_convention=bias_convention, min_n=min_n).bias


# --------------------------------------------------------------------------- groups


def score_groups(
    product: ArrayLike,
    reference: ArrayLike,
    groups: ArrayLike,
    *,
    bias_convention: BiasConvention = "reference_minus_product",
    min_n: int = 2,
) -> tuple[NDArray[Any], dict[str, NDArray[Any]]]:
    """Score many groups (sites, networks, ...) in one vectorised pass.

    Parameters
    ----------
    product, reference : array_like
        Values paired by position, same shape.
    groups : array_like
        Group label of every pair, same shape; any sortable labels (not NaN).
    bias_convention : {"reference_minus_product", "product_minus_reference"}
        Sign of the bias (see :mod:`dsm.metrics`).
    min_n : int, default 2
        Fewest valid pairs per group for which scores are computed.

    Returns
    -------
    labels : numpy.ndarray
        The sorted unique group labels, including groups without any valid pair.
    scores : dict of str to numpy.ndarray
        ``"r"``, ``"rmse"``, ``"ubrmse"``, ``"bias"`` (float) and ``"n"`` (int), one
        value per label.
    """
    _check_convention(bias_convention)
    _check_min_n(min_n)
    p, q = _prepare(product, reference)
    labels_in = np.asarray(groups).ravel()
    if labels_in.shape != p.shape:
        raise ValueError(
            f"groups must have one label per pair: got {labels_in.size} labels "
            f"for {p.size} pairs"
        )
    labels, codes = np.unique(labels_in, return_inverse=True)
    keep = ~(np.isnan(p) | np.isnan(q))
    result = _grouped_scores(
        p[keep], q[keep], codes.ravel()[keep], labels.size, bias_convention, min_n
    )
    return labels, result


def score_table(
    frame: pd.DataFrame,
    product: str,
    reference: str,
    by: str | Sequence[str] | None = None,
    *,
    bias_convention: BiasConvention = "reference_minus_product",
    min_n: int = 2,
) -> pd.DataFrame:
    """Score the columns of a table per group (site, network) or over all rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per pair (e.g. per site and day).
    product, reference : str
        Names of the product and reference columns.
    by : str or sequence of str, optional
        Grouping column(s), e.g. ``"station"`` or ``["network", "station"]``. None
        pools every row into one score.
    bias_convention : {"reference_minus_product", "product_minus_reference"}
        Sign of the bias (see :mod:`dsm.metrics`).
    min_n : int, default 2
        Fewest valid pairs per group for which scores are computed.

    Returns
    -------
    pandas.DataFrame
        One row per group (the ``by`` columns, then ``r, rmse, ubrmse, bias, n``),
        groups in sorted order; groups with a missing key are kept.

    Raises
    ------
    ValueError
        When a named column is missing, and as :func:`score`.
    """
    import pandas as pd  # noqa: PLC0415 - pandas stays out of the light metrics

    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    missing = [c for c in (product, reference, *keys) if c not in frame.columns]
    if missing:
        raise ValueError(f"score_table: frame has no column(s) {missing}")
    if keys:
        grouped = frame.groupby(keys, sort=True, dropna=False, observed=True)
        codes = grouped.ngroup().to_numpy(dtype=np.intp)
    else:
        codes = np.zeros(len(frame), dtype=np.intp)
    _, result = score_groups(
        frame[product].to_numpy(dtype=np.float64, na_value=np.nan),
        frame[reference].to_numpy(dtype=np.float64, na_value=np.nan),
        codes,
        bias_convention=bias_convention,
        min_n=min_n,
    )
    table = pd.DataFrame(result, columns=list(METRIC_NAMES))
    if not keys:
        return table
    _, first_rows = np.unique(codes, return_index=True)
    labels = frame[keys].iloc[first_rows].reset_index(drop=True)
    return pd.concat([labels, table], axis=1)
