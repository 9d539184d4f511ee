"""The date-stratified split with KS redraw, and the spatial-block split."""

from __future__ import annotations

import numpy as np
import pytest

from dsm.models.split import _draw_by_date, date_split, ks_test, spatial_block_split


def _data(seed=0, n_dates=12):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, n_dates)
    dates = np.repeat(np.datetime64("2016-06-01") + np.arange(n_dates), sizes)
    sm = rng.gamma(4.0, 0.04, dates.size)
    return dates, sm


def test_split_is_stratified_by_date():
    dates, sm = _data()
    s = date_split(dates, sm, seed=3)
    assert np.intersect1d(s.train, s.test).size == 0
    assert np.union1d(s.train, s.test).size == dates.size
    for d in np.unique(dates):
        n = int((dates == d).sum())
        n_tr = int(np.isin(np.flatnonzero(dates == d), s.train).sum())
        assert abs(n_tr - (n - n_tr)) <= 1
        if n >= 2:
            assert 0 < n_tr < n  # present in both halves
    assert abs(s.train.size - s.test.size) <= len(np.unique(dates))


def test_split_is_reproducible_from_its_seed():
    dates, sm = _data()
    a, b, c = date_split(dates, sm, 5), date_split(dates, sm, 5), date_split(dates, sm, 6)
    assert np.array_equal(a.train, b.train) and a.ks_pvalue == b.ks_pvalue and a.attempts == b.attempts
    assert not np.array_equal(a.train, c.train)


def test_ks_redraw_stops_at_first_pass_and_records_every_draw():
    dates, sm = _data(1)
    s = date_split(dates, sm, seed=11, alpha=0.6, max_attempts=50)
    assert s.attempts == len(s.pvalues) >= 1
    assert all(p <= 0.6 for p in s.pvalues[:-1])
    assert s.accepted and s.pvalues[-1] > 0.6 and s.ks_pvalue == s.pvalues[-1]
    # the kept split is exactly the last draw of the seeded generator, and its p-value is real
    _, codes = np.unique(dates, return_inverse=True)
    rng = np.random.default_rng(11)
    for _ in range(s.attempts):
        in_train = _draw_by_date(codes, rng)
    assert np.array_equal(np.flatnonzero(in_train), s.train)
    assert ks_test(sm[s.train], sm[s.test]) == (s.ks_statistic, s.ks_pvalue)


def test_ks_redraw_keeps_the_best_draw_when_none_passes():
    dates, sm = _data(2)
    s = date_split(dates, sm, seed=0, alpha=1.0, max_attempts=7)
    assert s.attempts == 7 and not s.accepted
    assert s.ks_pvalue == max(s.pvalues)
    first = date_split(dates, sm, seed=0, alpha=0.0, max_attempts=7)
    assert first.attempts == 1 and first.accepted


def test_ks_redraw_with_a_scripted_test_counts_attempts():
    dates, sm = _data(3)
    script = iter([0.01, 0.05, 0.3, 0.9])
    s = date_split(dates, sm, seed=1, alpha=0.05, max_attempts=10, test=lambda a, b: (0.1, next(script)))
    assert s.attempts == 3 and s.pvalues == (0.01, 0.05, 0.3) and s.accepted


def test_spatial_split_keeps_blocks_whole():
    rng = np.random.default_rng(0)
    rows = rng.integers(70, 80, 500)
    cols = rng.integers(770, 780, 500)
    s = spatial_block_split(rows, cols, rng.random(500), seed=2, block=2)
    blocks = (rows // 2) * 10_000 + cols // 2
    assert not set(blocks[s.train]) & set(blocks[s.test])
    assert 0.3 < s.train.size / 500 < 0.7
    again = spatial_block_split(rows, cols, rng.random(500), seed=2, block=2)
    assert np.array_equal(s.train, again.train)


def test_bad_arguments():
    with pytest.raises(ValueError):
        date_split([1, 2], [0.1], 0)
    with pytest.raises(ValueError):
        spatial_block_split([1], [1], [0.1], 0, block=0)
