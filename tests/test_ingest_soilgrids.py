"""SoilGrids 2.0 as ISRIC publishes it (``inputs.soil.soilgrids``): g/kg int16
in the Interrupted Goode Homolosine, as whole VRTs over tiles, cuts, or the web URL; refused
when not g/kg, and sand + silt + clay checked to make 100 %."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsm.grid import Region
from dsm.ingest import WrongProductError, soil_to_region
from dsm.ingest.soil import SUM_REFUSE, texture_sum
from dsm.ingest.soilgrids import read_soilgrids, soilgrids_files, soilgrids_layer
from dsm.testing.soilgrids import NODATA, grid_window, texture, write_cut, write_soilgrids
from dsm.testing.web import LoopbackHTTP

REGION = Region.around(110.0, 40.0, 1, 2)


@pytest.fixture(scope="module")
def soilgrids(tmp_path_factory) -> Path:
    return write_soilgrids(tmp_path_factory.mktemp("soilgrids"), REGION)


def test_vrt_over_homolosine_tiles_and_a_cut_give_the_same_percent(soilgrids, tmp_path):
    found = soilgrids_files(str(soilgrids), "sand", {})
    assert found == {str(soilgrids): [str(soilgrids / "sand" / "sand_0-5cm_mean.vrt")]}  # not the tiles
    r0, c0, nr, nc = grid_window(REGION)
    grams = texture((nr, nc))
    cut = {f: write_cut(tmp_path / f"{f}_0-5cm_mean_cut.tif", a, r0, c0) for f, a in grams.items()}
    for f in ("sand", "silt", "clay"):
        from_vrt, many = soilgrids_layer([str(soilgrids / f / f"{f}_0-5cm_mean.vrt")], f, REGION)
        assert [r.status for r in many.report] == ["used"]
        from_cut, _ = soilgrids_layer([str(cut[f])], f, REGION)
        a = from_vrt[f]
        assert a.shape == REGION.fine_shape and np.isfinite(a).all()
        np.testing.assert_array_equal(a, from_cut[f])
        # the generic raster path with scale 0.1 agrees: g/kg -> % and the same average
        generic = soil_to_region({f: cut[f]}, REGION, scale=0.1)[f].values
        np.testing.assert_allclose(a, generic, rtol=0, atol=1e-4)
    silt, _ = soilgrids_layer([str(soilgrids / "silt" / "silt_0-5cm_mean.vrt")], "silt", REGION)
    np.testing.assert_allclose(silt["silt"], 40.0, atol=1e-4)  # 400 g/kg
    # sand + silt + clay of the VRTs is 100 % on every pixel
    layers = {f: soilgrids_layer([str(soilgrids / f / f"{f}_0-5cm_mean.vrt")], f, REGION)[0][f]
              for f in ("sand", "silt", "clay")}
    check = texture_sum(layers)
    assert check.off == 0 and check.median == pytest.approx(100.0, abs=1e-3) and not check.refused


def test_files_not_in_g_per_kg_are_refused(tmp_path):
    r0, c0, nr, nc = grid_window(REGION)
    grams = texture((nr, nc))
    over = write_cut(tmp_path / "sand_0-5cm_mean.tif", (grams["sand"] * 3).astype(np.int16), r0, c0)
    with pytest.raises(WrongProductError, match="not SoilGrids texture in g/kg") as info:
        read_soilgrids(str(over), REGION)
    assert str(over) in str(info.value) and "after scale 0.1 and offset 0 (from SoilGrids g/kg -> %)" in str(info.value)
    # sand already in percent beside silt and clay in g/kg: each alone looks fine, the sum does not
    percent = np.where(grams["sand"] == NODATA, NODATA, grams["sand"] // 10).astype(np.int16)
    files = {"sand": write_cut(tmp_path / "pct" / "sand_0-5cm_mean.tif", percent, r0, c0),
             **{f: write_cut(tmp_path / "pct" / f"{f}_0-5cm_mean.tif", grams[f], r0, c0) for f in ("silt", "clay")}}
    layers = {f: soilgrids_layer([str(p)], f, REGION)[0][f] for f, p in files.items()}
    check = texture_sum(layers)
    assert check.refused and abs(check.median - 100) > SUM_REFUSE
    with pytest.raises(WrongProductError, match="are not all percent") as info:
        soil_to_region(files, REGION, scale=0.1)
    assert all(str(p) in str(info.value) for p in files.values())


def test_the_soilgrids_url_is_read_in_place_by_gdal(soilgrids):
    with LoopbackHTTP(soilgrids.parent) as web:  # files.isric.org on loopback: GDAL fetches byte ranges
        url = f"{web.url}data/"
        found = soilgrids_files(url, "clay", {})
        assert found == {url: [f"{url}clay/clay_0-5cm_mean.vrt"]}
        remote, many = soilgrids_layer(found[url], "clay", REGION)
        assert [r.status for r in many.report] == ["used"]
        local, _ = soilgrids_layer([str(soilgrids / "clay" / "clay_0-5cm_mean.vrt")], "clay", REGION)
        np.testing.assert_array_equal(remote["clay"], local["clay"])
