"""The embedded synthetic twin region: predictors, SMAP and a known 1 km truth.

The twin is a small, physically plausible world on the real EASE-Grid 2.0 grid, centred on
the Mu Us Sandy Land (Northern China, the paper's kind of region). It exists so the whole
pipeline can run without NASA downloads *and* so the downscaling skill can be measured
against a truth that real data never has. Everything is deterministic from ``seed``.

What drives what (one day at a time):

* terrain: a multi-scale random DEM; slope and aspect from :func:`dsm.terrain.slope_aspect`
  (the code used for real DEMs); a wetness index (valleys wetter) and small lakes in the
  lowest hollows; sand/silt/clay from an additive log-ratio field, summing to 100 %;
* weather: seasonal air temperature with a lapse rate and an AR(1) anomaly; rain storms
  (Gaussian cells, monsoon season), snow below 0 C and melt;
* soil water (top 5 cm, m3/m3): infiltration, drainage above field capacity and
  evaporative drying towards a terrain-dependent base level, all set by soil texture; the
  **truth** adds a static and a slowly varying random part that no predictor sees;
* vegetation cover follows phenology and the 20-day soil-moisture memory; MODIS-like
  reflectance bands mix vegetation and soil spectra, the soil darkening as it wets
  (strongest in the SWIR); NDVI, EVI, NDWI, LSWI, NSDSI and albedo come from those bands
  through :mod:`dsm.indices`;
* daytime LST: air temperature plus a surface-air difference that grows with radiation,
  dryness (a non-linear evaporative fraction) and bare soil; removed under clouds
  (spatially coherent, likelier on rain days);
* composites as the products make them: 8-day (MOD09A1: clear day of minimum blue; MOD15A2H:
  maximum FAPAR) and 16-day (MOD13A2: maximum NDVI) over clear days only;
* SMAP 36 km: the block mean of the truth over land plus retrieval noise (0.02 m3/m3),
  clipped to SMAP's valid range [0.02, 0.5], missing outside the daily swath, when the
  soil is frozen, over cells with less than 90 % land, and at random (RFI). On a region
  whose coarse grid is 9 km (SPL3SMP_E, :attr:`dsm.grid.Region.coarse_km`): the 9 km block
  mean of the truth plus the 36 km retrieval error interpolated bilinearly to the 9 km cells
  (SPL3SMP_E interpolates the same radiometer footprints, so its errors are smooth across
  neighbouring 9 km cells), missing where its 36 km cell is, or where the 9 km cell has less
  than 90 % land; the random draws are those of the 36 km product, so both grids see one world;
* stations: in situ probes (truth at the pixel + a station bias + AR(1) point-scale noise)
  and weather stations (daily precipitation, air temperature).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.special import ndtri

from dsm import indices
from dsm.grid import CELL_1KM, EASE2_1KM, Region, bilinear, block_reduce_mean, repeat_to_fine, xy_to_lonlat
from dsm.periods import composite_8day_of, julian_name, period_of, periods
from dsm.terrain import ease_spacing, slope_aspect

TWIN_CENTRE = (109.0, 38.9)  # lon, lat: Mu Us Sandy Land
TWIN_SIZES: dict[str, tuple[int, dt.date, dt.date]] = {
    # cells per side, first day, last day
    "default": (8, dt.date(2016, 1, 1), dt.date(2016, 12, 31)),
    "tiny": (4, dt.date(2016, 6, 9), dt.date(2016, 7, 26)),  # three whole 16-day periods
}
SMAP_NOISE = 0.02  # m3/m3, retrieval noise of the twin's SMAP
SMAP_VALID = (0.02, 0.5)
SPIN_UP_DAYS = 90
BANDS = ("b1", "b2", "b3", "b4", "b5", "b6", "b7")
_VEG = np.array([0.04, 0.42, 0.03, 0.08, 0.40, 0.22, 0.10], np.float32)
_SOIL_DRY = np.array([0.22, 0.28, 0.14, 0.19, 0.32, 0.38, 0.33], np.float32)
_WET_DARKENING = np.array([0.35, 0.30, 0.35, 0.35, 0.40, 0.50, 0.55], np.float32)


@dataclass(frozen=True)
class TwinSpec:
    """What twin to make: region, dates, seed and station counts."""

    region: Region
    start: dt.date
    end: dt.date
    seed: int = 42
    n_insitu: int = 12
    n_weather: int = 6

    @classmethod
    def of_size(cls, size: str = "default", seed: int = 42) -> TwinSpec:
        """The standard twin of ``size`` (``"default"``: 8 x 8 cells, 2016; ``"tiny"``)."""
        if size not in TWIN_SIZES:
            raise ValueError(f"twin size {size!r} is not one of {sorted(TWIN_SIZES)}")
        n, start, end = TWIN_SIZES[size]
        return cls(Region.around(*TWIN_CENTRE, n, n), start, end, seed)

    @property
    def sim_start(self) -> dt.date:
        """First simulated day that is recorded: the start of the first 16-day period."""
        return period_of(self.start).start

    @property
    def sim_end(self) -> dt.date:
        """Last simulated day: the end of the last 16-day period (composites need it)."""
        return period_of(self.end).end


# ----------------------------------------------------------------------------------------
# random fields
def smooth_field(rng: np.random.Generator, shape: tuple[int, int], length: float) -> np.ndarray:
    """A standardised Gaussian random field with correlation length ``length`` pixels.

    White noise on a padded grid, low-passed by a Gaussian in the Fourier domain and cropped,
    so the field is not periodic over the region.
    """
    pad = int(min(3 * length, 256))
    ny, nx = shape[0] + 2 * pad, shape[1] + 2 * pad
    noise = rng.standard_normal((ny, nx))
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    kernel = np.exp(-2.0 * np.pi**2 * length**2 * (fy**2 + fx**2))
    f = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=(ny, nx))[pad : pad + shape[0], pad : pad + shape[1]]
    return ((f - f.mean()) / (f.std() + 1e-12)).astype(np.float32)


def _blob(n: int, centre: float, radius: float) -> np.ndarray:
    return np.exp(-0.5 * ((np.arange(n, dtype=np.float32) - centre) / radius) ** 2)


# ----------------------------------------------------------------------------------------
# static world
@dataclass(frozen=True)
class Static:
    """Time-invariant fields of the twin (1 km, region shape)."""

    dem: np.ndarray
    slope: np.ndarray
    aspect: np.ndarray
    sand: np.ndarray
    silt: np.ndarray
    clay: np.ndarray
    land: np.ndarray  # bool
    theta_s: np.ndarray  # porosity
    theta_fc: np.ndarray  # field capacity
    theta_wp: np.ndarray  # wilting point
    base: np.ndarray  # drying base level (valleys wetter)
    fv_max: np.ndarray  # vegetation potential
    eps_static: np.ndarray  # unexplained static part of the truth
    orography: np.ndarray  # rain enhancement with height


def make_static(region: Region, rng: np.random.Generator) -> Static:
    """Terrain, soil and land/water of the twin."""
    shape = region.fine_shape
    relief = (260.0 * smooth_field(rng, shape, 40) + 120.0 * smooth_field(rng, shape, 10)
              + 45.0 * smooth_field(rng, shape, 3) + 12.0 * smooth_field(rng, shape, 1.2))
    ramp = np.linspace(120.0, -120.0, shape[1], dtype=np.float32)[None, :]
    dem = (1350.0 + relief + ramp).astype(np.float32)
    dx, dy = ease_spacing(CELL_1KM, region.fine_lat)
    slope, aspect = slope_aspect(dem, dx, dy)

    # wetness: hollows relative to the smoothed landscape
    hollow = _smooth_like(dem, 8.0) - dem
    wet = (hollow - hollow.mean()) / (hollow.std() + 1e-6)
    lakes = (dem < np.quantile(dem, 0.012)) & (wet > 0)
    land = ~lakes

    # soil texture: additive log-ratio against clay, sand-dominated
    a_sand = np.log(62.0 / 12.0) + 0.55 * smooth_field(rng, shape, 20) - 0.15 * wet
    a_silt = np.log(26.0 / 12.0) + 0.35 * smooth_field(rng, shape, 15) + 0.1 * wet
    denom = np.exp(a_sand) + np.exp(a_silt) + 1.0
    sand = 100.0 * np.exp(a_sand) / denom
    silt = 100.0 * np.exp(a_silt) / denom
    clay = 100.0 - sand - silt

    theta_s = 0.50 - 0.0013 * sand
    theta_fc = 0.06 + 0.0042 * clay + 0.0016 * silt
    theta_wp = 0.02 + 0.0025 * clay
    base = theta_wp * 0.6 + 0.035 / (1.0 + np.exp(-1.5 * wet))
    fv_max = 0.2 + 0.5 / (1.0 + np.exp(-1.2 * wet)) * (1.1 - sand / 120.0)
    eps_static = 0.01 * smooth_field(rng, shape, 2.5)
    oro = np.clip((dem - dem.mean()) / dem.std(), -1.5, 2.0) * 0.15

    f32 = {k: np.asarray(v, dtype=np.float32) for k, v in dict(
        sand=sand, silt=silt, clay=clay, theta_s=theta_s, theta_fc=theta_fc, theta_wp=theta_wp,
        base=base, fv_max=fv_max, eps_static=eps_static, orography=oro).items()}
    return Static(dem=dem, slope=slope, aspect=aspect, land=land, **f32)


def _smooth_like(a: np.ndarray, length: float) -> np.ndarray:
    return gaussian_filter(a.astype(np.float64), length, mode="nearest").astype(np.float32)


# ----------------------------------------------------------------------------------------
# one simulated day
@dataclass
class Day:
    """The state of the twin on one day (1 km arrays unless noted; NaN over water)."""

    date: dt.date
    truth: np.ndarray
    lst: np.ndarray
    albedo: np.ndarray
    bands: np.ndarray  # (7, ny, nx) surface reflectance, noise included
    clear: np.ndarray  # bool, no cloud
    fv: np.ndarray
    rain: np.ndarray  # mm/day, rain + snowfall
    tair: np.ndarray  # deg C
    frozen: np.ndarray  # bool, soil frozen
    smap: np.ndarray  # (cy, cx) m3/m3


@dataclass
class _State:
    theta: np.ndarray
    sm_ema: np.ndarray
    snow: np.ndarray
    tsoil: np.ndarray
    eps: np.ndarray
    fv: np.ndarray
    ta_anom: float = 0.0


@dataclass
class Simulator:
    """Steps the twin one day at a time (deterministic from the generator it is given)."""

    spec: TwinSpec
    rng: np.random.Generator
    static: Static
    state: _State = field(init=False)

    def __post_init__(self) -> None:
        s = self.static
        theta0 = (0.5 * (s.theta_wp + s.theta_fc)).astype(np.float32)
        shape = s.dem.shape
        zeros = np.zeros(shape, np.float32)
        self.state = _State(theta0, theta0.copy(), zeros.copy(), zeros.copy(), zeros.copy(),
                            (0.04 + 0.3 * s.fv_max).astype(np.float32))
        r = dataclasses.replace(self.spec.region, coarse_km=36)  # SMAP's footprints: the 36 km cells
        self._cx, self._cy = r.coarse_x[None, :], r.coarse_y[:, None]
        self._x0 = float(r.coarse_x.mean())
        self._y0 = float(r.coarse_y.mean())
        self._land_frac = block_reduce_mean(s.land.astype(np.float32))

    def step(self, day: dt.date) -> Day:
        """Advance the world by one day and observe it."""
        s, st, rng = self.static, self.state, self.rng
        shape = s.dem.shape
        doy = day.timetuple().tm_yday
        season = np.sin(2 * np.pi * (doy - 105) / 365.25)
        summer = max(season, 0.0)
        rn = 0.55 + 0.45 * np.cos(2 * np.pi * (doy - 172) / 365.25)

        # weather
        st.ta_anom = 0.75 * st.ta_anom + float(rng.normal(0.0, 2.0))
        ta = (8.0 + 15.0 * season + st.ta_anom - 0.0065 * (s.dem - 1350.0)).astype(np.float32)
        rain = np.zeros(shape, np.float32)
        rainy = rng.random() < 0.06 + 0.30 * summer**1.5
        n_storms = int(rng.integers(1, 4))
        storm = rng.random((n_storms, 5))
        if rainy:
            for cy, cx, rad, amt, _ in storm:
                radius = 12.0 + 50.0 * rad
                amount = -np.log(1.0 - 0.999 * amt) * 26.0 * (0.5 + summer)
                rain += amount * np.outer(_blob(shape[0], cy * shape[0], radius), _blob(shape[1], cx * shape[1], radius))
            rain *= 1.0 + s.orography
            rain[rain < 0.3] = 0.0
        snowfall = np.where(ta < 0.0, rain, 0.0)
        st.snow += snowfall
        melt = np.where(ta > 0.0, np.minimum(st.snow, 3.0 * ta), 0.0)
        st.snow -= melt
        st.tsoil += (ta - st.tsoil) / 5.0
        frozen = st.tsoil < -1.0

        # soil water of the top layer
        theta = st.theta
        wetness = np.clip((theta - s.theta_fc) / (s.theta_s - s.theta_fc), 0.0, 1.0)
        runoff = np.clip(0.05 + 0.01 * s.slope + 0.4 * wetness, 0.0, 0.9)
        infil = (rain - snowfall + melt) * (1.0 - runoff) / 100.0  # mm over ~100 mm
        theta = np.where(frozen, theta, np.minimum(theta + infil, s.theta_s))
        theta = np.where(theta > s.theta_fc, s.theta_fc + (theta - s.theta_fc) * np.exp(-0.8), theta)
        rate = 0.045 * (1.0 + 0.07 * np.maximum(ta, 0.0)) * (1.0 + 0.6 * st.fv) * rn
        theta = np.where(frozen, theta, s.base + (theta - s.base) * np.exp(-rate)).astype(np.float32)
        st.theta = theta

        # vegetation
        st.sm_ema += (theta - st.sm_ema) / 20.0
        stress = np.clip((st.sm_ema - s.theta_wp) / (s.theta_fc - s.theta_wp), 0.0, 1.0)
        phen = np.exp(-(((doy - 215) / 48.0) ** 2))
        fv = (0.04 + s.fv_max * phen * (0.35 + 0.65 * stress)).astype(np.float32)
        st.fv = fv

        # the truth: physics plus what no predictor sees
        st.eps = (0.85 * st.eps + np.sqrt(1 - 0.85**2) * 0.012 * smooth_field(rng, shape, 10)).astype(np.float32)
        truth = np.clip(theta + st.eps + s.eps_static, 0.01, s.theta_s)

        # reflectance and indices
        w = np.clip((theta - 0.02) / (s.theta_s - 0.02), 0.0, 1.0)
        soil_dry = _SOIL_DRY[:, None, None] * (0.75 + 0.5 * s.sand / 100.0)[None]
        soil = soil_dry * (1.0 - _WET_DARKENING[:, None, None] * w[None])
        bands = fv[None] * _VEG[:, None, None] + (1.0 - fv[None]) * soil
        bands = (bands + rng.normal(0.0, 0.004, bands.shape)).astype(np.float32)
        b1, b2, b3, b4, b5, _, b7 = bands
        snow_cover = np.clip(st.snow / 10.0, 0.0, 1.0)
        albedo = (1 - snow_cover) * indices.shortwave_albedo(b1, b2, b3, b4, b5, b7) + snow_cover * 0.65
        albedo = (albedo + rng.normal(0.0, 0.002, shape)).astype(np.float32)

        # daytime LST and clouds
        # evaporative fraction of the surface: water content against ~half the porosity
        ef = np.clip((theta - 0.02) / (0.55 * s.theta_s - 0.02), 0.0, 1.0) ** 0.6
        dT = 30.0 * rn * (1.0 - ef) * (1.0 - 0.55 * fv) * (1.0 - 1.0 * (albedo - 0.25)) + 1.0
        lst = (ta + 273.15 + dT + rng.normal(0.0, 0.8, shape)).astype(np.float32)
        p_cloud = min(0.15 + 0.35 * rainy + 0.15 * summer, 0.9)
        clouds = smooth_field(rng, shape, 25) > ndtri(1.0 - p_cloud)
        clear = ~clouds
        lst[clouds] = np.nan

        smap = self._smap(day, truth, frozen)
        water = ~s.land
        for a in (truth, lst, albedo, fv):
            a[water] = np.nan
        bands[:, water] = np.nan
        return Day(day, truth.astype(np.float32), lst, albedo, bands, clear & s.land, fv,
                   rain.astype(np.float32), ta, frozen, smap)

    def _smap(self, day: dt.date, truth: np.ndarray, frozen: np.ndarray) -> np.ndarray:
        rng, s = self.rng, self.static
        mean = block_reduce_mean(np.where(s.land, truth, np.nan))
        frozen_cell = block_reduce_mean(frozen.astype(np.float32)) > 0.5
        noise = rng.normal(0.0, SMAP_NOISE, mean.shape)
        rfi = rng.random(mean.shape) < 0.02
        # 1000 km swath of a sun-synchronous orbit: an 8-day repeating pattern of tracks
        period = 2.2e6
        phase = (day.toordinal() * 0.375 + 0.1) % 1.0
        xc = self._x0 + (phase - 0.5) * period
        offset = (self._cx - xc - 0.25 * (self._cy - self._y0) + period / 2) % period - period / 2
        covered = np.abs(offset) < 5.0e5
        ok = covered & (self._land_frac >= 0.9) & ~frozen_cell & ~rfi & np.isfinite(mean)
        f = self.spec.region.fine_per_coarse
        if f != 36:  # SPL3SMP_E: 9 km means, the 36 km error spread smoothly over the 9 km cells
            n = 36 // f
            observed = repeat_to_fine(covered & ~frozen_cell & ~rfi, n)
            mean = block_reduce_mean(np.where(s.land, truth, np.nan), factor=f)
            noise = bilinear(noise, n)
            ok = observed & (block_reduce_mean(s.land.astype(np.float32), factor=f) >= 0.9) & np.isfinite(mean)
        return np.where(ok, np.clip(mean + noise, *SMAP_VALID), np.nan).astype(np.float32)


def simulate(spec: TwinSpec, static: Static | None = None, rng: np.random.Generator | None = None,
             history_days: int = 0) -> Iterator[Day]:
    """Yield every day from ``spec.sim_start`` to ``spec.sim_end`` after a spin-up.

    ``static`` and ``rng`` may be given together: the static world and the generator that
    made it (``rng = default_rng(spec.seed)``; ``static = make_static(region, rng)``), so a
    caller can use the static fields first and still get the same days. ``history_days``
    also yields that many of the last spin-up days first (for the precipitation record
    before the first day); the spin-up lasts ``max(SPIN_UP_DAYS, history_days)`` days, so
    a history longer than :data:`SPIN_UP_DAYS` makes another (equally valid) world.
    """
    if (static is None) != (rng is None):
        raise ValueError("give both static and rng, or neither")
    if rng is None or static is None:
        rng = np.random.default_rng(spec.seed)
        static = make_static(spec.region, rng)
    sim = Simulator(spec, rng, static)
    for k in range(max(SPIN_UP_DAYS, history_days), 0, -1):
        d = sim.step(spec.sim_start - dt.timedelta(k))
        if k <= history_days:
            yield d
    day = spec.sim_start
    while day <= spec.sim_end:
        yield sim.step(day)
        day += dt.timedelta(1)


# ----------------------------------------------------------------------------------------
# composites, as the MODIS products make them
def composite_8day(window: list[Day]) -> dict[str, np.ndarray]:
    """MOD09A1-like indices (clear day of minimum blue) and MOD15A2H-like LAI/FAPAR (max FAPAR)."""
    clear = np.stack([d.clear for d in window])
    blue = np.where(clear, np.stack([d.bands[2] for d in window]), np.inf)
    pick = np.argmin(blue, axis=0)
    none = ~clear.any(axis=0)
    bands = np.take_along_axis(np.stack([d.bands for d in window]), pick[None, None], axis=0)[0]
    b2, b4, b6, b7 = bands[1], bands[3], bands[5], bands[6]
    fv = np.where(clear, np.stack([d.fv for d in window]), -np.inf).max(axis=0)
    lai = -np.log(1.0 - np.clip(fv, 0.0, 0.95) / 0.95 * 0.9) / 0.5
    out = {
        "ndwi": indices.ndwi(b2, b4),
        "lswi": indices.lswi(b2, b6),
        "nsdsi": indices.nsdsi(b6, b7),
        "lai": lai,
        "fapar": 0.95 * (1.0 - np.exp(-0.5 * lai)),
    }
    return {k: np.where(none, np.nan, v).astype(np.float32) for k, v in out.items()}


def composite_16day(window: list[Day]) -> dict[str, np.ndarray]:
    """MOD13A2-like NDVI and EVI from the clear day of maximum NDVI."""
    clear = np.stack([d.clear for d in window])
    stack = np.stack([d.bands for d in window])
    nd = np.where(clear, indices.ndvi(stack[:, 0], stack[:, 1]), -np.inf)
    pick = np.argmax(nd, axis=0)
    none = ~clear.any(axis=0)
    bands = np.take_along_axis(stack, pick[None, None], axis=0)[0]
    out = {"ndvi": indices.ndvi(bands[0], bands[1]), "evi": indices.evi(bands[0], bands[1], bands[2])}
    return {k: np.where(none, np.nan, v).astype(np.float32) for k, v in out.items()}


# ----------------------------------------------------------------------------------------
# stations
@dataclass(frozen=True)
class Stations:
    """Where the twin's stations are (region-relative 1 km pixels) and their noise."""

    insitu_pixels: np.ndarray  # (n, 2) row, col
    insitu_lonlat: np.ndarray  # (n, 2)
    insitu_bias: np.ndarray
    weather_pixels: np.ndarray
    weather_lonlat: np.ndarray
    weather_elev: np.ndarray


def place_stations(spec: TwinSpec, static: Static, seed: int) -> Stations:
    """Choose station pixels on land, away from the edges, and a location inside each."""
    rng = np.random.default_rng([seed, 1])
    ny, nx = static.dem.shape
    ok = static.land.copy()
    ok[:2], ok[-2:], ok[:, :2], ok[:, -2:] = False, False, False, False
    cand = np.argwhere(ok)
    n = spec.n_insitu + spec.n_weather
    pick = cand[rng.choice(len(cand), size=n, replace=False)]
    r = spec.region
    gx = EASE2_1KM.x_centres(pick[:, 1] + r.fine_col0) + rng.uniform(-0.4, 0.4, n) * CELL_1KM
    gy = EASE2_1KM.y_centres(pick[:, 0] + r.fine_row0) + rng.uniform(-0.4, 0.4, n) * CELL_1KM
    lon, lat = xy_to_lonlat(gx, gy)
    lonlat = np.round(np.column_stack([lon, lat]), 6)
    k = spec.n_insitu
    return Stations(pick[:k], lonlat[:k], rng.normal(0.0, 0.01, k), pick[k:], lonlat[k:],
                    static.dem[pick[k:, 0], pick[k:, 1]])


class StationRecorder:
    """Collects the twin's station observations day by day."""

    def __init__(self, stations: Stations, seed: int) -> None:
        self.st = stations
        self.rng = np.random.default_rng([seed, 2])
        self.noise = np.zeros(len(stations.insitu_pixels))
        self.insitu: list[tuple] = []
        self.weather: list[tuple] = []

    def record(self, d: Day) -> None:
        """Observe day ``d`` at every station."""
        st = self.st
        r, c = st.insitu_pixels[:, 0], st.insitu_pixels[:, 1]
        self.noise = 0.6 * self.noise + self.rng.normal(0.0, 0.015 * np.sqrt(1 - 0.36), len(r))
        missing = self.rng.random(len(r)) < 0.03
        value = np.clip(d.truth[r, c] + st.insitu_bias + self.noise, 0.01, 0.6)
        for i in range(len(r)):
            if not (missing[i] or d.frozen[r[i], c[i]]):
                self.insitu.append((f"TW{i + 1:02d}", *st.insitu_lonlat[i], 0.05, d.date, round(float(value[i]), 4)))
        wr, wc = st.weather_pixels[:, 0], st.weather_pixels[:, 1]
        t = d.tair[wr, wc] + self.rng.normal(0.0, 0.3, len(wr))
        for i in range(len(wr)):
            self.weather.append((f"WX{i + 1:02d}", *st.weather_lonlat[i], round(float(st.weather_elev[i]), 1),
                                 d.date, round(float(d.rain[wr[i], wc[i]]), 2), round(float(t[i]), 2)))

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """In situ (station, network, lon, lat, depth, time, value) and weather tables."""
        insitu = pd.DataFrame(self.insitu, columns=["station", "lon", "lat", "depth", "time", "value"])
        insitu.insert(1, "network", "TWIN")
        weather = pd.DataFrame(self.weather, columns=["station", "lon", "lat", "elevation", "time", "precip_mm", "tair_c"])
        return insitu, weather


def describe(spec: TwinSpec) -> Mapping[str, Any]:
    """Attributes recorded in the twin's stores."""
    return {
        "source": "dsm synthetic twin (dsm.synthetic)",
        "twin_seed": spec.seed,
        "twin_smap_noise": SMAP_NOISE,
        "twin_periods": [julian_name(p.start) for p in periods(spec.start, spec.end)],
        "twin_centre_lonlat": list(TWIN_CENTRE),
    }


def composite_ends(day: dt.date) -> tuple[bool, bool]:
    """Whether ``day`` closes an 8-day composite and a 16-day period."""
    return composite_8day_of(day).end == day, period_of(day).end == day


__all__ = [
    "TwinSpec", "Static", "Day", "Simulator", "Stations", "StationRecorder",
    "make_static", "simulate", "composite_8day", "composite_16day", "place_stations", "smooth_field",
    "describe", "composite_ends",
]  # fmt: skip
