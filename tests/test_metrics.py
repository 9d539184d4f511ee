"""Tests of dsm.metrics: hand-computed cases, independent definitions, NaN and sign rules."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mean_squared_error

from dsm import metrics
from dsm.metrics import BootstrapScores, Scores, bootstrap_scores, score, score_groups, score_table
from dsm.metrics.bootstrap import _block_indices, _pair_indices, _resample_scores

PRODUCT = [0.20, 0.25, 0.30]
REFERENCE = [0.22, 0.26, 0.35]


def _random_pair(n: int = 400, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.uniform(0.05, 0.45, n)
    product = 0.8 * reference + 0.06 + rng.normal(0.0, 0.03, n)
    return product, reference


def _ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, n)
    out = np.empty(n)
    out[0] = noise[0]
    for i in range(1, n):
        out[i] = phi * out[i - 1] + noise[i]
    return out


# --------------------------------------------------------------------------- point scores


def test_hand_computed_case() -> None:
    # Differences q - p = 0.02, 0.01, 0.05: mean 0.08/3, mean square 0.001.
    # Anomalies: dp = (-0.05, 0, 0.05); sum dp*dq = 0.0065; sum dp^2 = 0.005;
    # sum dq^2 = sum q^2 - 3 mean(q)^2 = 0.2385 - 0.83^2/3 = 0.0266/3.
    result = score(PRODUCT, REFERENCE)
    assert result.n == 3
    assert result.bias == pytest.approx(0.08 / 3, rel=1e-12)
    assert result.rmse == pytest.approx(math.sqrt(0.001), rel=1e-12)
    assert result.ubrmse == pytest.approx(math.sqrt(0.001 - (0.08 / 3) ** 2), rel=1e-9)
    assert result.r == pytest.approx(0.0065 / math.sqrt(0.005 * 0.0266 / 3), rel=1e-9)


def test_matches_independent_definitions() -> None:
    product, reference = _random_pair()
    result = score(product, reference)
    expected_rmse = math.sqrt(mean_squared_error(reference, product))
    expected_bias = reference.mean() - product.mean()
    assert result.r == pytest.approx(np.corrcoef(product, reference)[0, 1], rel=1e-12)
    assert result.r == pytest.approx(stats.pearsonr(product, reference).statistic, rel=1e-12)
    assert result.rmse == pytest.approx(expected_rmse, rel=1e-12)
    assert result.bias == pytest.approx(expected_bias, rel=1e-12)
    assert result.ubrmse == pytest.approx(math.sqrt(expected_rmse**2 - expected_bias**2), rel=1e-9)
    anomalies = (product - product.mean()) - (reference - reference.mean())
    assert result.ubrmse == pytest.approx(np.sqrt(np.mean(anomalies**2)), rel=1e-12)
    assert result.n == product.size


def test_single_metric_functions_agree_with_score() -> None:
    product, reference = _random_pair(50)
    result = score(product, reference)
    assert metrics.pearson_r(product, reference) == result.r
    assert metrics.rmse(product, reference) == result.rmse
    assert metrics.ubrmse(product, reference) == result.ubrmse
    assert metrics.bias(product, reference) == result.bias


def test_bias_sign_conventions() -> None:
    reference = np.array([0.10, 0.20, 0.30, 0.25])
    product = reference + 0.02  # product too wet
    paper = score(product, reference)
    qa4sm = score(product, reference, bias_convention="product_minus_reference")
    assert paper.bias == pytest.approx(-0.02, abs=1e-12)
    assert qa4sm.bias == pytest.approx(0.02, abs=1e-12)
    assert metrics.bias(product, reference, bias_convention="product_minus_reference") > 0
    assert dataclasses.replace(paper, bias=qa4sm.bias) == qa4sm  # only the bias changes
    assert paper.rmse == pytest.approx(0.02, abs=1e-12)
    assert paper.ubrmse == pytest.approx(0.0, abs=1e-12)


def test_nan_pairs_are_dropped_not_filled() -> None:
    product, reference = _random_pair(100)
    p_gappy, q_gappy = product.copy(), reference.copy()
    p_gappy[[3, 10, 11]] = np.nan
    q_gappy[[10, 40]] = np.nan
    keep = np.ones(100, dtype=bool)
    keep[[3, 10, 11, 40]] = False
    gappy = score(p_gappy, q_gappy)
    assert gappy.n == 96
    assert gappy == score(product[keep], reference[keep])
    valid_p, valid_q = metrics.valid_pairs(p_gappy, q_gappy)
    np.testing.assert_array_equal(valid_p, product[keep])
    np.testing.assert_array_equal(valid_q, reference[keep])


@pytest.mark.parametrize(
    ("product", "reference", "n"),
    [([], [], 0), ([0.2], [0.3], 1), ([0.2, np.nan, 0.1], [np.nan, 0.3, np.nan], 0),
     ([0.2, 0.3, np.nan], [0.1, np.nan, 0.2], 1)],
)
def test_too_few_pairs_give_nan_scores_with_n(product, reference, n) -> None:
    result = score(product, reference)
    assert result.n == n
    assert all(math.isnan(v) for v in (result.r, result.rmse, result.ubrmse, result.bias))


def test_min_n_threshold() -> None:
    product, reference = _random_pair(10)
    assert math.isnan(score(product, reference, min_n=11).rmse)
    assert score(product, reference, min_n=11).n == 10
    assert not math.isnan(score(product, reference, min_n=10).rmse)


def test_constant_series_gives_nan_r_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = score([0.2, 0.2, 0.2], [0.1, 0.3, 0.2])
    assert math.isnan(result.r)
    assert result.bias == pytest.approx(0.0, abs=1e-12)
    assert result.rmse == pytest.approx(math.sqrt(0.02 / 3), rel=1e-12)


def test_perfect_and_anti_correlation_are_exact_bounds() -> None:
    x = np.linspace(0.05, 0.4, 30)
    assert score(x, 2 * x + 0.01).r == pytest.approx(1.0, abs=1e-12)
    assert score(x, -x).r == pytest.approx(-1.0, abs=1e-12)
    assert -1.0 <= score(x, -x).r <= 1.0


def test_scores_is_frozen_and_exports_dict() -> None:
    result = score(PRODUCT, REFERENCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.r = 0.0  # type: ignore[misc]
    assert list(result.as_dict()) == list(metrics.METRIC_NAMES)
    assert isinstance(result.n, int) and isinstance(result.r, float)


def test_accepts_aligned_series_and_two_dimensional_maps() -> None:
    index = pd.date_range("2016-01-01", periods=3, freq="D")
    series_result = score(pd.Series(PRODUCT, index), pd.Series(REFERENCE, index))
    assert series_result == score(PRODUCT, REFERENCE)
    grid_p = np.arange(12, dtype=float).reshape(3, 4) / 40
    grid_q = grid_p[::-1]
    assert score(grid_p, grid_q) == score(grid_p.ravel(), grid_q.ravel())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"product": [0.1, 0.2], "reference": [0.1, 0.2, 0.3]}, "same shape"),
        ({"product": ["a", "b"], "reference": [0.1, 0.2]}, "product must be numeric"),
        ({"product": [0.1, np.inf], "reference": [0.1, 0.2]}, "product contains infinite"),
        ({"product": [0.1, 0.2], "reference": [-np.inf, 0.2]}, "reference contains infinite"),
        ({"product": [0.1], "reference": [0.1], "bias_convention": "x"}, "bias_convention"),
        ({"product": [0.1, 0.2], "reference": [0.1, 0.2], "min_n": 1}, "min_n"),
    ],
)
def test_bad_input_raises_value_error(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        score(**kwargs)


def test_differently_indexed_series_are_refused() -> None:
    product = pd.Series(PRODUCT, index=pd.date_range("2016-01-01", periods=3))
    reference = pd.Series(REFERENCE, index=pd.date_range("2016-01-02", periods=3))
    with pytest.raises(ValueError, match="different indexes"):
        score(product, reference)


# --------------------------------------------------------------------------- groups


def _site_table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for network, station, n in [("N1", "a", 40), ("N1", "b", 25), ("N2", "c", 2), ("N2", "d", 30)]:
        q = rng.uniform(0.1, 0.4, n)
        p = q + rng.normal(0.01, 0.02, n)
        p[::9] = np.nan
        rows.append(pd.DataFrame({"network": network, "station": station, "sm": p, "insitu": q}))
    return pd.concat(rows, ignore_index=True)


def test_score_groups_equals_per_group_scores() -> None:
    table = _site_table()
    labels, result = score_groups(table["sm"], table["insitu"], table["station"].to_numpy())
    assert list(labels) == ["a", "b", "c", "d"]
    for i, station in enumerate(labels):
        sub = table[table["station"] == station]
        expected = score(sub["sm"].to_numpy(), sub["insitu"].to_numpy())
        got = Scores(*(result[k][i].item() for k in metrics.METRIC_NAMES))
        floats = ("r", "rmse", "ubrmse", "bias")
        np.testing.assert_allclose(
            [getattr(got, k) for k in floats], [getattr(expected, k) for k in floats], rtol=1e-12
        )
        assert got.n == expected.n
    assert result["n"][2] == 1 and math.isnan(result["rmse"][2])  # one valid pair: NaN, n kept


def test_score_groups_rejects_wrong_label_count() -> None:
    with pytest.raises(ValueError, match="one label per pair"):
        score_groups([0.1, 0.2], [0.1, 0.2], ["a"])


def test_score_table_per_site_per_network_and_pooled() -> None:
    table = _site_table()
    per_site = score_table(table, "sm", "insitu", by=["network", "station"])
    assert list(per_site.columns) == ["network", "station", *metrics.METRIC_NAMES]
    assert list(per_site["station"]) == ["a", "b", "c", "d"]
    sub = table[table["station"] == "b"]
    expected = score(sub["sm"].to_numpy(), sub["insitu"].to_numpy())
    assert per_site.loc[1, "rmse"] == pytest.approx(expected.rmse, rel=1e-12)
    assert per_site.loc[1, "n"] == expected.n

    per_network = score_table(table, "sm", "insitu", by="network")
    n2 = table[table["network"] == "N2"]
    assert per_network.loc[1, "r"] == pytest.approx(score(n2["sm"], n2["insitu"]).r, rel=1e-12)

    pooled = score_table(table, "sm", "insitu", bias_convention="product_minus_reference")
    assert len(pooled) == 1
    all_scores = score(table["sm"], table["insitu"], bias_convention="product_minus_reference")
    assert pooled.loc[0, "bias"] == pytest.approx(all_scores.bias, rel=1e-12)
    assert pooled.loc[0, "n"] == all_scores.n == int(table["sm"].notna().sum())


def test_score_table_keeps_missing_group_keys_and_names_missing_columns() -> None:
    table = pd.DataFrame(
        {"station": ["a", "a", None, None], "p": [0.1, 0.2, 0.3, 0.1], "q": [0.1, 0.3, 0.2, 0.2]}
    )
    result = score_table(table, "p", "q", by="station")
    assert len(result) == 2 and result["n"].tolist() == [2, 2]
    assert result["station"].isna().tolist() == [False, True]
    with pytest.raises(ValueError, match="no column"):
        score_table(table, "p", "missing", by="station")


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_contains_estimate_and_is_reproducible() -> None:
    product, reference = _random_pair(300)
    product[::13] = np.nan
    result = bootstrap_scores(product, reference, n_resamples=500, seed=42)
    assert isinstance(result, BootstrapScores)
    assert result.estimate == score(product, reference)
    for name in ("r", "rmse", "ubrmse", "bias"):
        low, high = getattr(result, name)
        assert low < getattr(result.estimate, name) < high
    assert result == bootstrap_scores(product, reference, n_resamples=500, seed=42)
    assert result.r != bootstrap_scores(product, reference, n_resamples=500, seed=43).r


def test_bootstrap_interval_narrows_with_confidence_level() -> None:
    product, reference = _random_pair(200)
    wide = bootstrap_scores(product, reference, n_resamples=400, seed=1, confidence=0.99)
    narrow = bootstrap_scores(product, reference, n_resamples=400, seed=1, confidence=0.5)
    assert wide.rmse[0] < narrow.rmse[0] < narrow.rmse[1] < wide.rmse[1]


def test_block_bootstrap_of_whole_series_reproduces_estimate() -> None:
    # One block as long as the series leaves a single possible resample: the series itself.
    product, reference = _random_pair(60)
    product[5] = np.nan
    result = bootstrap_scores(product, reference, n_resamples=20, seed=0, block_length=60)
    for name in ("r", "rmse", "ubrmse", "bias"):
        estimate = getattr(result.estimate, name)
        assert getattr(result, name) == pytest.approx((estimate, estimate), rel=1e-12)
    assert result.block_length == 60


def test_block_bootstrap_widens_interval_for_autocorrelated_errors() -> None:
    rng = np.random.default_rng(5)
    reference = 0.25 + 0.05 * _ar1(730, 0.5, rng) / 2
    product = reference + 0.01 * _ar1(730, 0.97, rng)  # slowly wandering error
    iid = bootstrap_scores(product, reference, n_resamples=400, seed=9)
    block = bootstrap_scores(product, reference, n_resamples=400, seed=9, block_length=60)
    assert block.bias[1] - block.bias[0] > 2 * (iid.bias[1] - iid.bias[0])
    assert block.bias[0] < block.estimate.bias < block.bias[1]


@pytest.mark.parametrize("convention", ["reference_minus_product", "product_minus_reference"])
def test_every_resample_is_scored_as_score_scores_its_pairs(convention) -> None:
    # the resamples are scored together, along rows; each row must give what score() gives
    # for its own pairs: gaps dropped, a constant resample's R NaN, fewer than min_n all NaN
    product, reference = _random_pair(90, seed=3)
    product[10:20] = np.nan
    product[40:70], reference[40:70] = 0.25, 0.31  # a constant stretch
    rng = np.random.default_rng(4)
    rows = np.vstack([
        _pair_indices(rng, 90, 60), _block_indices(rng, 90, 60, 12),
        np.full((1, 90), 45), np.arange(90).reshape(1, -1), np.full((1, 90), 12),
        np.r_[np.arange(4), np.full(86, 15)].reshape(1, -1),  # 4 valid pairs, the rest gaps
    ])  # fmt: skip
    taken = [0]

    def draw(k: int) -> np.ndarray:  # the rows above in turn
        taken[0] += k
        return rows[taken[0] - k:taken[0]]

    together = _resample_scores(product, reference, draw, len(rows), convention, 5)
    for k, row in enumerate(rows):
        alone = score(product[row], reference[row], bias_convention=convention, min_n=5)
        for name in metrics.METRIC_NAMES:
            assert together[name][k] == pytest.approx(getattr(alone, name), rel=1e-12, abs=1e-15, nan_ok=True)
    assert np.isnan(together["r"][120]) and together["rmse"][120] == pytest.approx(0.06)  # constant
    assert np.isnan(together["rmse"][122]) and together["n"][122] == 0  # every pair a gap
    assert np.isnan(together["rmse"][123]) and together["n"][123] == 4  # under min_n


def test_resamples_drawn_in_parts_are_those_drawn_at_once(monkeypatch) -> None:
    # the resamples are drawn a bounded number at a time: the intervals are those of one draw
    product, reference = _random_pair(300, seed=2)
    product[::7] = np.nan
    for block in (None, 20):
        at_once = bootstrap_scores(product, reference, n_resamples=99, seed=5, block_length=block)
        with monkeypatch.context() as m:
            m.setattr("dsm.metrics.bootstrap._MAX_RESAMPLE_VALUES", 3 * 300)
            in_parts = bootstrap_scores(product, reference, n_resamples=99, seed=5, block_length=block)
        assert in_parts == at_once


def test_bootstrap_with_too_few_pairs_gives_nan_bounds() -> None:
    result = bootstrap_scores([0.1, np.nan], [0.2, 0.3], n_resamples=10, seed=0)
    assert result.estimate.n == 1
    assert all(math.isnan(v) for v in (*result.r, *result.rmse, *result.ubrmse, *result.bias))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_resamples": 0}, "n_resamples"),
        ({"n_resamples": 2.5}, "n_resamples"),
        ({"confidence": 1.0}, "confidence"),
        ({"block_length": 0}, "block_length"),
        ({"block_length": 4}, "block_length"),
    ],
)
def test_bootstrap_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_scores(PRODUCT, REFERENCE, **kwargs)
