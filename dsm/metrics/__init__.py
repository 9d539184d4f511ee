"""Validation metrics of a soil moisture product against a reference.

The scores are those of Rao et al. (2022, ESSD), section 2.5: Pearson correlation
coefficient R, root mean square error RMSE, unbiased RMSE (ubRMSE) and bias, with the
number of valid pairs N. All are population statistics (divisor N):

* ``rmse   = sqrt(mean((p - q)**2))``
* ``bias   = mean(q) - mean(p)``  (default, the paper's convention, see below)
* ``ubrmse = sqrt(mean(((p - mean(p)) - (q - mean(q)))**2)) = sqrt(rmse**2 - bias**2)``
* ``r      = sum(dp * dq) / sqrt(sum(dp**2) * sum(dq**2))`` with ``dp = p - mean(p)``

where ``p`` is the product (estimate) and ``q`` the reference (in situ).

Sign of the bias
----------------
Rao et al. (2022) define the bias as the in situ mean minus the product mean, so a
positive bias means the product is too *dry*. That is the default here,
``bias_convention="reference_minus_product"``. The usual convention of pytesmo and
QA4SM, product mean minus reference mean (positive = product too *wet*), is
``bias_convention="product_minus_reference"``. RMSE, ubRMSE and R do not depend on it.

Missing values
--------------
Pairs are formed by position and a pair is dropped when either member is NaN; nothing
is ever filled. Infinite values are rejected (``ValueError``): they are a bug upstream,
not a missing observation. With fewer than ``min_n`` valid pairs (at least 2) every
score is NaN and ``n`` still reports the number of valid pairs, so that scoring many
sites keeps going and the caller can see why a site has no score.

The package is pure: numpy only (``score_table`` imports pandas when called).
:mod:`dsm.metrics.scores` computes the scores, :mod:`dsm.metrics.bootstrap` their
confidence intervals; both are re-exported here.
"""

from __future__ import annotations

from dsm.metrics.bootstrap import BootstrapScores, bootstrap_scores
from dsm.metrics.scores import (
    BIAS_CONVENTIONS,
    METRIC_NAMES,
    BiasConvention,
    Scores,
    bias,
    pearson_r,
    rmse,
    score,
    score_groups,
    score_table,
    ubrmse,
    valid_pairs,
)

__all__ = [
    "BIAS_CONVENTIONS",
    "METRIC_NAMES",
    "BiasConvention",
    "BootstrapScores",
    "Scores",
    "bias",
    "bootstrap_scores",
    "pearson_r",
    "rmse",
    "score",
    "score_groups",
    "score_table",
    "ubrmse",
    "valid_pairs",
]
