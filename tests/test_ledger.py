"""The products store's run ledger (dsm.ledger): per time chunk records beside the arrays, the
fence, stores written before the ledger, and a root that stays small and netCDF-ready."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from dsm import ledger, products, store
from dsm.cube import Layout
from dsm.errors import LockLostError, StoreNotFoundError
from dsm.grid import Region
from dsm.storeref import StoreRef

START, END = dt.date(2016, 6, 9), dt.date(2016, 7, 26)  # 48 days: 6 time chunks of 8
SETTINGS = {"fingerprint": "5c4150687722fe8d", "settings": {"cube": "5e8695c0", "output.gap_free": True}}
GAIN = {"gain": 0.51, "source": "stations", "interval": [0.4, 0.6]}


def _days(n: int, start: dt.date = START) -> list[str]:
    return [(start + dt.timedelta(i)).isoformat() for i in range(n)]


def _record(day: str) -> ledger.DayRecord:
    """A day's record as predict writes it (models, digest, consistency...)."""
    model = {"period": "2016161", "model": "xgb", "variants": {"full": {"model": "k"}}, products.VALID_PIXELS: 20000,
             products.SM_DIGEST: day.replace("-", "").rjust(16, "0"), store.REVISION_ATTR: 3}
    return ledger.DayRecord(done=True, model=model, consistency={"r": 0.9, "rmse": 0.02, "bias": -0.001, "n": 16},
                            out_of_range={"lst": 2})


def _cog(day: str) -> dict:
    return {"day": day, "url": f"/cog/{day}.tif", "size": 1000, "sha256": "ab" * 32,
            "layers": {"sm_unc": {"url": f"/cog/{day}_unc.tif", "size": 10, "sha256": "cd" * 32}}}


def _store(ref: StoreRef) -> StoreRef:
    layout = Layout(Region(74, 772, 2, 2), START, END, 72, 8)
    attrs = {"method": "fusion", "predictors": ["lst", "ndvi"], "gap_free": True, "residual_correction": False,
             "reduced_sets": [["lst"], ["lst", "ndvi"]], "models": "models", "settings": SETTINGS}
    products.create_products(ref, layout, 0.9, attrs, overwrite=True)
    return ref


def _objects(ref: StoreRef) -> dict[str, bytes]:
    root = Path(ref.url) / ledger.FOLDER
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_records_round_trip_one_object_per_time_chunk_and_other_days_are_kept(tmp_path):
    ref = _store(StoreRef(str(tmp_path / "sm.zarr")))
    days = _days(20)
    ledger.write_days(ref, {d: _record(d) for d in days[:12]})
    ledger.write_days(ref, {days[12]: ledger.DayRecord(empty="no land pixel has the predictors of any model"),
                            days[13]: ledger.DayRecord(failed="block y 0:72: OSError: gone")})
    ledger.write_exported(ref, {d: _cog(d) for d in days[:3]})
    ledger.write_netcdf(ref, {"201606": ledger.NetcdfRecord("/nc/SM_1km_201606.nc", "SM_1km_201606.nc", 5, "ef" * 32,
                                                            tuple(days[:12]), {"netcdf_period": "month"})})
    ledger.write_records(ref, {"cog_settings": {"fingerprint": "e6c1", "settings": {"output.clip": [0, 1]}},
                               "anomaly_gain": GAIN})
    assert sorted(_objects(ref)) == ["cog/2016-06-09.json", "netcdf/201606.json", "predict/2016-06-09.json",
                                     "predict/2016-06-17.json", "zarr.json"]
    led = ledger.read(ref)
    assert not led.legacy and led.done == days[:12]
    assert led.day(days[5]) == _record(days[5]) and led.day(days[5]).valid_pixels == 20000
    assert led.day(days[5]).inputs_revision == 3 and led.day(days[5]).sm_digest == _record(days[5]).sm_digest
    assert led.empty == {days[12]: "no land pixel has the predictors of any model"}
    assert led.failed == {days[13]: "block y 0:72: OSError: gone"} and led.day(days[19]) == ledger.DayRecord()
    assert led.exported == {d: _cog(d) for d in days[:3]}
    assert led.netcdf["201606"].days == tuple(days[:12]) and led.netcdf["201606"].settings == {"netcdf_period": "month"}
    assert led.settings == SETTINGS and led.anomaly_gain == GAIN and led.cog_settings["fingerprint"] == "e6c1"
    # a chunk's update keeps its other days; dropping a COG record drops only that day
    ledger.write_days(ref, {days[3]: ledger.taken_back(led.day(days[3]))})
    ledger.write_exported(ref, {days[1]: None})
    again = ledger.read(ref)
    assert again.done == [d for d in days[:12] if d != days[3]] and again.day(days[3]).model == _record(days[3]).model
    assert sorted(again.exported) == [days[0], days[2]]
    # a partial file of a local write in progress is no record; a store replaced starts with no ledger
    (tmp_path / "sm.zarr" / ledger.FOLDER / "predict" / "2016-06-25.json.1a2b.partial").write_bytes(b"{")
    assert ledger.read(ref).done == again.done
    _store(ref)
    assert ledger.read(ref) == ledger.ProductsLedger(settings=SETTINGS)
    with pytest.raises(StoreNotFoundError, match=r"no Zarr store at .*none.zarr.*dsm predict CONFIG makes it"):
        ledger.read(StoreRef(str(tmp_path / "none.zarr")))


def test_a_writer_whose_lease_was_taken_over_writes_nothing(tmp_path):
    ref = _store(StoreRef(str(tmp_path / "sm.zarr")))
    days = _days(10)
    ledger.write_days(ref, {days[0]: _record(days[0])}, fence=5)
    ledger.write_days(ref, {days[1]: _record(days[1])}, fence=7)  # a later lease took over
    before = _objects(ref), json.loads((tmp_path / "sm.zarr" / "zarr.json").read_text())
    late = [lambda: ledger.write_days(ref, {days[9]: _record(days[9])}, fence=6),
            lambda: ledger.write_exported(ref, {days[0]: _cog(days[0])}, fence=6),
            lambda: ledger.write_netcdf(ref, {"2016": ledger.NetcdfRecord("u", "n", 1, "s", ())}, fence=6),
            lambda: ledger.write_records(ref, {"anomaly_gain": GAIN}, fence=6)]
    for write in late:
        with pytest.raises(LockLostError, match=r"a later run \(lease token 7\) has written its records"):
            write()
    assert (_objects(ref), json.loads((tmp_path / "sm.zarr" / "zarr.json").read_text())) == before
    led = ledger.read(ref)
    assert led.fence == 7 and led.done == days[:2]
    ledger.write_days(ref, {days[2]: _record(days[2])}, fence=7)  # its own token: accepted
    assert ledger.read(ref).done == days[:3]


def test_the_root_attributes_stay_the_same_size_as_days_are_recorded(tmp_path):
    ref = _store(StoreRef(str(tmp_path / "sm.zarr")))
    meta = tmp_path / "sm.zarr" / "zarr.json"
    sizes = []
    for t0 in range(0, 48, 8):  # as predict records each time chunk, then export
        chunk = _days(8, START + dt.timedelta(t0))
        ledger.write_days(ref, {d: _record(d) for d in chunk}, fence=1_700_000_000_000_000_000)
        ledger.write_exported(ref, {d: _cog(d) for d in chunk}, fence=1_700_000_000_000_000_000)
        sizes.append(meta.stat().st_size)
    assert len(set(sizes)) == 1, sizes
    assert len(ledger.read(ref).done) == 48 and len(_objects(ref)) == 1 + 6 + 6


def test_plain_xarray_writes_the_store_to_netcdf_with_every_root_attribute(tmp_path):
    ref = _store(StoreRef(str(tmp_path / "sm.zarr")))
    ledger.write_days(ref, {d: _record(d) for d in _days(16)}, fence=12)
    ledger.write_records(ref, {"anomaly_gain": GAIN, "anomaly_error": {"anomaly_sd": 0.02, "interval": None},
                               "cog_settings": {"fingerprint": "e6c1", "settings": {}}}, fence=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr and xarray see the ledger as an empty group, nothing stray
        assert sorted(name for name, _ in zarr.open_group(ref.url, mode="r").arrays()) == sorted(
            ["sm", "sm_unc", "sm_origin", "sm_36km", "time", "y", "x", "cy", "cx", "lat", "lon", "spatial_ref",
             "spatial_ref_36km", "time_bnds", "depth", "depth_bnds"])
        ds = xr.open_zarr(ref.url, consolidated=False)
    path = tmp_path / "sm.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path) as nc:
        assert set(nc.attrs) == set(ds.attrs)
        for key, value in ds.attrs.items():
            assert np.asarray(nc.attrs[key]).tolist() == np.asarray(value).tolist(), key
        back = ledger.store_records(nc.attrs)
        assert back.settings == SETTINGS and back.anomaly_gain == GAIN and back.fence == 12
        assert products.region_of(nc.attrs) == Region(74, 772, 2, 2)
        assert products.decode_attrs(nc.attrs)["reduced_sets"] == [["lst"], ["lst", "ndvi"]]


def _legacy(ref: StoreRef) -> dict:
    """A store as dsm wrote it before the ledger: every record in the root attributes."""
    days = _days(20)
    attrs = {"region": {"row0": 74, "col0": 772, "nrows": 2, "ncols": 2}, "settings": SETTINGS, "gap_free": True,
             "reduced_sets": [["lst"], ["lst", "ndvi"]], "origin_bits": {"1": "all_same_day_predictors: ..."},
             "days_done": days[:10], "days_empty": {days[10]: "no land pixel"}, "days_failed": {days[11]: "OSError"},
             "day_models": {d: dict(_record(d).model) for d in days[:11]},
             "consistency": {d: dict(_record(d).consistency) for d in days[:10]},
             "inputs_out_of_range": {days[2]: {"lst": 2}}, "days_exported": {d: _cog(d) for d in days[:4]},
             "netcdf_exported": {"201606": {"url": "/nc/a.nc", "name": "a.nc", "size": 3, "sha256": "ab",
                                            "days": days[:10], "settings": {}}},
             "anomaly_gain": GAIN, store.FENCE_ATTR: 4}
    zarr.open_group(ref.url, mode="r+", storage_options=ref.zarr_options).update_attributes(attrs)
    return attrs


def test_a_store_written_before_the_ledger_is_read_and_moved_into_it_by_the_first_write(tmp_path):
    ref = _store(StoreRef(str(tmp_path / "sm.zarr")))
    old = _legacy(ref)
    led = ledger.read(ref)
    assert led.legacy and led.done == old["days_done"] and led.empty == old["days_empty"]
    assert led.failed == old["days_failed"] and led.exported == old["days_exported"]
    assert led.day(old["days_done"][2]) == replace(_record(old["days_done"][2]), out_of_range={"lst": 2})
    assert led.day(old["days_done"][3]).out_of_range is None and led.day(_days(11)[10]).model is not None
    assert led.netcdf["201606"].name == "a.nc" and led.settings == SETTINGS and led.anomaly_gain == GAIN
    assert led.fence == 4 and products.region_of(zarr.open_group(ref.url, mode="r").attrs) == Region(74, 772, 2, 2)
    # the first write moves every record into the ledger and leaves a root that netCDF takes
    day = _days(20)[15]
    ledger.write_days(ref, {day: _record(day)}, fence=5)
    moved = ledger.read(ref)
    assert not moved.legacy and moved.fence == 5
    assert moved == replace(led, days={**led.days, day: _record(day)}, fence=5, legacy=False)
    root = zarr.open_group(ref.url, mode="r").attrs.asdict()
    assert not set(root) & set(ledger.LEGACY) and isinstance(root["settings"], str)
    xr.open_zarr(ref.url, consolidated=False).to_netcdf(tmp_path / "sm.nc")
    assert ledger.migrate(ref) is False  # nothing left to move


def test_the_ledger_on_object_storage(s3):
    ref = _store(StoreRef(f"{s3.make_bucket('dsm-ledger')}/sm.zarr", s3.storage_options))
    _legacy(ref)
    assert ledger.migrate(ref) is True
    days = _days(48)
    ledger.write_days(ref, {d: _record(d) for d in days[20:48]}, fence=9)
    ledger.write_exported(ref, {days[0]: None, days[1]: _cog(days[1])}, fence=9)
    led = ledger.read(ref)
    assert led.done == days[:10] + days[20:48] and sorted(led.exported) == days[1:4] and led.fence == 9
    prefix = f"dsm-ledger/sm.zarr/{ledger.FOLDER}/"
    assert sorted(p[len(prefix):] for p in s3.filesystem().find(prefix)) == sorted(
        ["cog/2016-06-09.json", "netcdf/201606.json", "zarr.json", *[f"predict/{d}.json" for d in days[::8]]])
    with pytest.raises(LockLostError):
        ledger.write_days(ref, {days[10]: _record(days[10])}, fence=8)
    assert ledger.read(ref).day(days[10]).empty == "no land pixel"
