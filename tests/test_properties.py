"""Property tests (hypothesis) of the identities the metrics and the grid operations must keep,
on arbitrary data rather than hand-picked cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dsm.grid import bilinear, block_reduce_mean, repeat_to_fine
from dsm.metrics import score

moisture = st.floats(0.0, 0.6, allow_nan=False, width=64)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(3, 60))
    ref = draw(arrays(np.float64, n, elements=moisture))
    prod = draw(arrays(np.float64, n, elements=moisture))
    assume(np.std(ref) > 1e-3 and np.std(prod) > 1e-3)  # R is defined
    return prod, ref


@settings(max_examples=80)
@given(pairs())
def test_ubrmse_squared_is_rmse_squared_minus_bias_squared(pr):
    s = score(*pr)
    assert s.ubrmse ** 2 == pytest.approx(s.rmse ** 2 - s.bias ** 2, abs=1e-12)
    assert s.ubrmse <= s.rmse + 1e-15 and -1 - 1e-12 <= s.r <= 1 + 1e-12


@settings(max_examples=80)
@given(pairs(), st.floats(0.2, 5.0), st.floats(-0.3, 0.3))
def test_r_and_the_scaled_scores_under_an_affine_map_of_the_product(pr, a, b):
    prod, ref = pr
    s, t = score(prod, ref), score(a * prod + b, ref)
    assert t.r == pytest.approx(s.r, abs=1e-9)  # R is invariant under a positive affine map
    shifted = score(prod + b, ref)  # a shift moves the bias only (reference - product by default)
    assert shifted.bias == pytest.approx(s.bias - b, abs=1e-12)
    flipped = score(prod + b, ref, bias_convention="product_minus_reference")
    assert flipped.bias == pytest.approx(-shifted.bias, abs=1e-15)
    assert shifted.ubrmse == pytest.approx(s.ubrmse, abs=1e-12)


@settings(max_examples=60)
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from([2, 3, 9]), st.data())
def test_block_mean_of_a_repeated_field_is_the_field(cy, cx, f, data):
    coarse = data.draw(arrays(np.float64, (cy, cx), elements=moisture))
    fine = repeat_to_fine(coarse, f)
    assert fine.shape == (cy * f, cx * f)
    np.testing.assert_allclose(block_reduce_mean(fine, factor=f), coarse, rtol=0, atol=1e-12)
    # and the block mean of any field, repeated, keeps every cell's mean
    field = data.draw(arrays(np.float64, (cy * f, cx * f), elements=moisture))
    means = block_reduce_mean(field, factor=f)
    np.testing.assert_allclose(block_reduce_mean(repeat_to_fine(means, f), factor=f), means, atol=1e-12)


@settings(max_examples=60)
@given(st.integers(2, 5), st.integers(2, 5), st.sampled_from([3, 9, 36]),
       st.floats(-0.05, 0.05), st.floats(-0.05, 0.05), st.floats(0.1, 0.3))
def test_bilinear_reproduces_a_linear_field_between_the_outer_cell_centres(cy, cx, f, gy, gx, c):
    rows, cols = np.arange(cy, dtype=float)[:, None], np.arange(cx, dtype=float)[None, :]
    coarse = c + gy * rows + gx * cols  # a linear field sampled at the cell centres
    fine = bilinear(coarse, f)
    # fine pixel centres in coarse-cell units: (i + 0.5) / f - 0.5
    fy = (np.arange(cy * f) + 0.5) / f - 0.5
    fx = (np.arange(cx * f) + 0.5) / f - 0.5
    inside = (fy >= 0) & (fy <= cy - 1)
    inside_x = (fx >= 0) & (fx <= cx - 1)
    expect = c + gy * fy[:, None] + gx * fx[None, :]
    np.testing.assert_allclose(fine[np.ix_(inside, inside_x)], expect[np.ix_(inside, inside_x)], atol=1e-12)
