"""Slope/aspect conventions and the spectral index formulas."""

from __future__ import annotations

import numpy as np
import pytest

from dsm import indices
from dsm.terrain import ease_spacing, slope_aspect

# (dz/dx east, dz/dy north) -> expected downslope azimuth
CASES = [((1, 0), 270.0), ((-1, 0), 90.0), ((0, 1), 180.0), ((0, -1), 0.0), ((1, 1), 225.0), ((-1, -1), 45.0)]


@pytest.mark.parametrize("grad, azimuth", CASES)
def test_aspect_is_the_downslope_direction_clockwise_from_north(grad, azimuth):
    gx, gy = grad
    y, x = np.mgrid[0:7, 0:7].astype(float)
    north = -y  # rows run north to south
    dem = 20.0 * (gx * x + gy * north)
    slope, aspect = slope_aspect(dem, 10.0, 10.0)
    assert aspect[3, 3] == pytest.approx(azimuth, abs=1e-4)
    assert slope[3, 3] == pytest.approx(np.degrees(np.arctan(2.0 * np.hypot(gx, gy))), abs=1e-4)


def test_anisotropic_spacing_and_flat_ground():
    y, x = np.mgrid[0:6, 0:6].astype(float)
    dem = 5.0 * x  # 5 m per column
    slope, _ = slope_aspect(dem, np.full(6, 50.0), np.full(6, 10.0))
    assert slope[2, 2] == pytest.approx(np.degrees(np.arctan(0.1)), rel=1e-6)
    s, a = slope_aspect(np.full((5, 5), 100.0), 30.0, 30.0)
    assert np.all(s == 0) and np.all(a == 0)


def test_ease_spacing_is_ground_distance():
    dx, dy = ease_spacing(1000.0, np.array([30.0, 60.0]))
    assert dx[0] == pytest.approx(1000.0) and dy[0] == pytest.approx(1000.0)
    assert dx[1] < 1000.0 < dy[1] and dx[1] * dy[1] == pytest.approx(1e6)  # equal area


def test_index_formulas_on_known_reflectances():
    b1, b2, b3, b4, b6, b7 = (np.float32(v) for v in (0.05, 0.40, 0.03, 0.08, 0.20, 0.10))
    assert indices.ndvi(b1, b2) == pytest.approx(0.35 / 0.45)
    assert indices.evi(b1, b2, b3) == pytest.approx(2.5 * 0.35 / (0.40 + 0.30 - 0.225 + 1.0), rel=1e-6)
    assert indices.ndwi(b2, b4) == pytest.approx(-0.32 / 0.48)
    assert indices.lswi(b2, b6) == pytest.approx(0.2 / 0.6)
    assert indices.nsdsi(b6, b7) == pytest.approx(0.5)
    # zero denominators and NaN inputs give NaN, never inf or a fill
    assert np.isnan(indices.nsdsi(np.float32(0), np.float32(0.1)))
    assert np.isnan(indices.ndvi(np.array([np.nan]), np.array([0.3]))[0])
