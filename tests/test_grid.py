"""EASE-Grid 2.0 grids against the real SMAP coordinates, and region arithmetic."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyproj import Proj

from dsm import grid
from dsm.errors import GridError
from dsm.grid import CELL_1KM, CELL_9KM, CELL_36KM, EASE2_1KM, EASE2_9KM, EASE2_36KM, Grid, Region


def test_grid_constants_match_the_published_grids():
    assert EASE2_36KM.ncols == 964 and EASE2_36KM.nrows == 406
    assert EASE2_1KM.ncols == 34704 and EASE2_1KM.nrows == 14616
    assert CELL_1KM == pytest.approx(1000.89502334956, abs=1e-9)
    # the grid spans the whole EASE-Grid 2.0 global x extent symmetrically
    assert EASE2_36KM.x_min + 964 * CELL_36KM == pytest.approx(-EASE2_36KM.x_min, abs=1e-6)
    assert EASE2_36KM.y_max - 406 * CELL_36KM == pytest.approx(-EASE2_36KM.y_max, abs=1e-5)  # corner published to 1e-6 m


def test_cell_centres_match_real_smap_latitude_longitude(shared_data):
    path = shared_data / "smap" / "SC_SPL3SMP_009_prefetch.nc4"
    with h5py.File(path, "r") as f:
        for group, lat_name, lon_name in (("AM", "latitude", "longitude"), ("PM", "latitude_pm", "longitude_pm")):
            g = f[f"Soil_Moisture_Retrieval_Data_{group}"]
            lat, lon = g[lat_name][:], g[lon_name][:]
            valid = lat != -9999
            assert valid.sum() > 100_000
            whole = Region(0, 0, 406, 964)
            lat_g = np.broadcast_to(whole.coarse_lat[:, None], lat.shape)
            lon_g = np.broadcast_to(whole.coarse_lon[None, :], lon.shape)
            assert np.abs(lat_g - lat)[valid].max() < 1e-4
            assert np.abs(lon_g - lon)[valid].max() < 1e-4
            # and the inverse: each real lat/lon falls in its own row/col
            x, y = grid.lonlat_to_xy(lon[valid], lat[valid])
            rows, cols = EASE2_36KM.index(x, y)
            r_exp, c_exp = np.nonzero(valid)
            assert np.array_equal(rows, r_exp) and np.array_equal(cols, c_exp)


def test_land_point_index_of_ease36land(shared_data):
    ds = xr.open_dataset(shared_data / "smap" / "ease36land.nc")
    gpi = ds["gpi"].values
    x, y = grid.lonlat_to_xy(ds["lon"].values, ds["lat"].values)
    rows, cols = EASE2_36KM.index(x, y)
    assert np.array_equal(grid.land_point_index(rows, cols), gpi)
    assert len(gpi) == 103_902


def test_scale_factors_match_pyproj():
    lats = np.array([-80.0, -45.0, 0.0, 30.0, 38.9, 60.0, 84.0])
    k, h = grid.scale_factors(lats)
    f = Proj("EPSG:6933").get_factors(np.zeros_like(lats), lats)
    np.testing.assert_allclose(k, f.parallel_scale, rtol=1e-9)
    np.testing.assert_allclose(h, f.meridional_scale, rtol=1e-9)
    np.testing.assert_allclose(k[3], 1.0, rtol=1e-12)  # true scale at the standard parallel


@settings(max_examples=60, deadline=None)
@example(lon=0.0, lat=-5.960464477539063e-08, dlon=1.0, dlat=1.0)  # 7.6 mm past a cell edge
@given(
    lon=st.floats(-179.0, 178.0), lat=st.floats(-80.0, 78.0),
    dlon=st.floats(0.01, 1.5), dlat=st.floats(0.01, 1.5),
)
def test_bbox_snaps_outward_to_the_smallest_cover(lon, lat, dlon, dlat):
    box = (lon, lat, lon + dlon, lat + dlat)
    r = Region.from_bbox(*box)
    x0, y0, x1, y1 = r.bounds
    (bx0, bx1), (by0, by1) = grid.lonlat_to_xy([box[0], box[2]], [box[1], box[3]])
    tol = 1e-6
    assert x0 <= bx0 + tol and bx1 <= x1 + tol and y0 <= by0 + tol and by1 <= y1 + tol
    # minimal: the box reaches into the first and last row and column
    assert bx0 < x0 + CELL_36KM and bx1 > x1 - CELL_36KM
    assert by1 > y1 - CELL_36KM and by0 < y0 + CELL_36KM


def test_region_transforms_and_coordinates_agree():
    r = Region.around(109.0, 38.9, 8, 8)
    assert r.fine_shape == (288, 288) and r.coarse_shape == (8, 8)
    t = r.fine_transform
    np.testing.assert_allclose((t * (np.arange(288) + 0.5, np.full(288, 0.5)))[0], r.fine_x)
    np.testing.assert_allclose((t * (np.full(288, 0.5), np.arange(288) + 0.5))[1], r.fine_y)
    # every block of 36 x 36 fine centres averages to its coarse centre
    np.testing.assert_allclose(r.fine_x.reshape(8, 36).mean(axis=1), r.coarse_x)
    np.testing.assert_allclose(r.fine_y.reshape(8, 36).mean(axis=1), r.coarse_y)
    lon, lat = r.fine_lon, r.fine_lat
    assert np.all(np.diff(lon) > 0) and np.all(np.diff(lat) < 0)
    row, col = r.pixel_of(lon[[5, 100]], lat[[7, 200]])
    assert row.tolist() == [7, 200] and col.tolist() == [5, 100]


def test_9km_grid_nests_between_the_36km_and_1km_grids():
    assert (EASE2_9KM.nrows, EASE2_9KM.ncols) == (1624, 3856)
    assert CELL_9KM == pytest.approx(9008.055210146, abs=1e-9) and CELL_9KM == pytest.approx(9 * CELL_1KM, abs=1e-9)
    assert (EASE2_9KM.x_min, EASE2_9KM.y_max) == (EASE2_36KM.x_min, EASE2_36KM.y_max)
    assert [grid.cells_per_coarse(g) for g in (EASE2_36KM, EASE2_9KM, EASE2_1KM)] == [1, 4, 36]
    r = Region(100, 700, 3, 5)
    assert r.window(EASE2_36KM) == (100, 700, 3, 5)
    assert r.window(EASE2_9KM) == (400, 2800, 12, 20)
    assert r.window(EASE2_1KM) == (r.fine_row0, r.fine_col0, *r.fine_shape)
    # the region's 9 km cells: 4 x 4 per 36 km cell, 9 x 9 one-km pixels each, one outline
    x9 = EASE2_9KM.x_centres(np.arange(2800, 2820))
    y9 = EASE2_9KM.y_centres(np.arange(400, 412))
    np.testing.assert_allclose(x9.reshape(5, 4).mean(axis=1), r.coarse_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y9.reshape(3, 4).mean(axis=1), r.coarse_y, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.fine_x.reshape(20, 9).mean(axis=1), x9, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.fine_y.reshape(12, 9).mean(axis=1), y9, rtol=0, atol=1e-6)
    rows, cols = EASE2_9KM.index(r.fine_x[[0, 8, 9]], r.fine_y[[0, 8, 9]])
    assert rows.tolist() == [400, 400, 401] and cols.tolist() == [2800, 2800, 2801]
    for bad in (Grid(CELL_36KM / 3.5, 3374, 1421), Grid(CELL_9KM, 3856, 1624, x_min=0.0), Grid(CELL_9KM, 3855, 1624)):
        with pytest.raises(GridError, match="not a global EASE-Grid 2.0 grid nested"):
            grid.cells_per_coarse(bad)


def test_fine_and_coarse_indices_nest():
    rows = np.array([0, 35, 36, 14615])
    cols = np.array([0, 35, 36, 34703])
    cr, cc = grid.fine_to_coarse(rows, cols)
    assert cr.tolist() == [0, 0, 1, 405] and cc.tolist() == [0, 0, 1, 963]
    rs, cs = grid.coarse_to_fine(1, 2)
    assert (rs.start, rs.stop, cs.start, cs.stop) == (36, 72, 72, 108)
    r = Region(10, 20, 4, 5)
    sub = Region(11, 22, 2, 2)
    assert r.fine_slices(sub) == (slice(36, 108), slice(72, 144))
    assert r.cell_ids[1, 2] == grid.cell_id(11, 22)
    with pytest.raises(GridError, match="not inside"):
        sub.coarse_slices(r)


@pytest.mark.parametrize(
    "bbox, message",
    [((10.0, 5.0, 9.0, 6.0), "lon_min < lon_max"), ((0.0, -89.9, 1.0, -88.0), "beyond"),
     ((0.0, 0.0, 400.0, 1.0), "not in degrees")],
)
def test_bad_boxes_are_named(bbox, message):
    with pytest.raises(GridError, match=message):
        Region.from_bbox(*bbox)


def test_region_outside_the_grid_is_refused():
    with pytest.raises(GridError, match="outside the EASE-Grid 2.0"):
        Region(400, 0, 10, 10)
    with pytest.raises(GridError, match="at least 1 x 1"):
        Region(0, 0, 0, 3)


def test_block_reduce_mean_uses_valid_pixels_only():
    fine = np.arange(72 * 72, dtype=np.float32).reshape(72, 72)
    fine[:36, :36] = np.nan
    fine[:36, 36:40] = np.nan  # 4 of 36 columns missing in cell (0, 1)
    out = grid.block_reduce_mean(fine, valid_fraction=0.5)
    assert np.isnan(out[0, 0])
    expected = np.nanmean(fine[:36, 36:72])
    assert out[0, 1] == pytest.approx(expected, rel=1e-6)
    assert np.isnan(grid.block_reduce_mean(fine, valid_fraction=0.95)[0, 1])
    with pytest.raises(GridError, match="multiple of 36"):
        grid.block_reduce_mean(np.zeros((40, 36)))


def test_a_region_on_the_9km_grid_keeps_its_extent_and_1km_grid():
    from dsm.grid import EASE2_9KM, block_reduce_mean

    r36, r9 = Region(74, 772, 3, 2), Region(74, 772, 3, 2, coarse_km=9)
    assert r9.fine_shape == r36.fine_shape == (108, 72) and r9.bounds == r36.bounds
    assert r9.coarse_shape == (12, 8) and r9.fine_per_coarse == 9 and r36.fine_per_coarse == 36
    row0, col0, nrows, ncols = r9.window(EASE2_9KM)
    assert (row0, col0) == (296, 3088)
    np.testing.assert_allclose(r9.coarse_x, EASE2_9KM.x_centres(np.arange(col0, col0 + ncols)))
    np.testing.assert_allclose(r9.coarse_y, EASE2_9KM.y_centres(np.arange(row0, row0 + nrows)))
    assert r9.coarse_transform.a == EASE2_9KM.cell and r9.coarse_transform * (0, 0) == r36.coarse_transform * (0, 0)
    # the 9 km cell centres are the means of their 9 x 9 one-km pixel centres
    np.testing.assert_allclose(r9.coarse_x, r9.fine_x.reshape(-1, 9).mean(axis=1), rtol=0, atol=1e-6)
    assert r9.cell_ids[0, 0] == 296 * 3856 + 3088 and r9.cell_ids.shape == (12, 8)
    assert Region.from_dict(r9.to_dict()) == r9 and r36.to_dict() == {"row0": 74, "col0": 772, "nrows": 3, "ncols": 2}
    assert r9.coarse_slices(Region(75, 773, 1, 1, coarse_km=9)) == (slice(4, 8), slice(4, 8))
    assert r9.fine_slices(Region(75, 773, 1, 1, coarse_km=9)) == (slice(36, 72), slice(36, 72))
    fine = np.arange(108 * 72, dtype=np.float64).reshape(108, 72)
    np.testing.assert_allclose(block_reduce_mean(fine, factor=9)[1, 2], fine[9:18, 18:27].mean())
    with pytest.raises(GridError, match="coarse grid of 3 km"):
        Region(74, 772, 1, 1, coarse_km=3)
