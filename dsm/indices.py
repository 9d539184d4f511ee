"""Spectral indices of the method, from surface reflectance (MODIS band numbering).

Used both on real MOD09A1 / MOD13A2 bands and by the synthetic twin, so the predictors of the
twin are computed by the same code as the real ones. Inputs are reflectance (0-1) arrays;
the result is NaN where the denominator is zero or an input is NaN.

======  ==========================  ===========================================
index   formula                     MODIS bands
======  ==========================  ===========================================
NDVI    (B2 - B1) / (B2 + B1)       B1 red 620-670 nm, B2 NIR 841-876 nm
EVI     2.5 (B2 - B1) /             B3 blue 459-479 nm
        (B2 + 6 B1 - 7.5 B3 + 1)
NDWI    (B4 - B2) / (B4 + B2)       B4 green 545-565 nm (Rao et al. 2022, Eq. 1)
LSWI    (B2 - B6) / (B2 + B6)       B6 SWIR 1628-1652 nm (Eq. 2)
NSDSI   (B6 - B7) / B6              B7 SWIR 2105-2155 nm (Eq. 3)
======  ==========================  ===========================================
"""

from __future__ import annotations

import numpy as np


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num)
    den = np.asarray(den)
    out = np.full(np.broadcast(num, den).shape, np.nan, dtype=np.result_type(num, den, np.float32))
    np.divide(num, den, out=out, where=den != 0)
    return out


def ndvi(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Normalised difference vegetation index from red (B1) and NIR (B2)."""
    return _ratio(b2 - b1, b2 + b1)


def evi(b1: np.ndarray, b2: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """Enhanced vegetation index (MOD13 coefficients G=2.5, C1=6, C2=7.5, L=1)."""
    return _ratio(2.5 * (b2 - b1), b2 + 6.0 * b1 - 7.5 * b3 + 1.0)


def ndwi(b2: np.ndarray, b4: np.ndarray) -> np.ndarray:
    """Normalised difference water index (B4 - B2) / (B4 + B2)."""
    return _ratio(b4 - b2, b4 + b2)


def lswi(b2: np.ndarray, b6: np.ndarray) -> np.ndarray:
    """Land surface water index (B2 - B6) / (B2 + B6)."""
    return _ratio(b2 - b6, b2 + b6)


def nsdsi(b6: np.ndarray, b7: np.ndarray) -> np.ndarray:
    """Normalised shortwave-infrared difference soil-moisture index (B6 - B7) / B6."""
    return _ratio(b6 - b7, b6)


def shortwave_albedo(b1, b2, b3, b4, b5, b7) -> np.ndarray:
    """Broadband shortwave albedo from MODIS narrow bands (Liang 2001, Eq. for MODIS)."""
    return 0.160 * b1 + 0.291 * b2 + 0.243 * b3 + 0.116 * b4 + 0.112 * b5 + 0.081 * b7 - 0.0015
