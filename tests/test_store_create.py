"""A store's template is made in memory and written together (:func:`dsm.store.create`): the bytes
xarray and zarr would write, locally and on object storage, an existing store replaced whole."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dsm import store
from dsm.cube import Layout, cube_template
from dsm.errors import StoreError
from dsm.grid import Region
from dsm.storeref import StoreRef


def _template() -> xr.Dataset:
    return cube_template(Layout(Region(74, 772, 2, 2), dt.date(2016, 6, 9), dt.date(2016, 6, 24), space_chunk=36))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_template_is_the_bytes_xarray_writes_and_overwrite_replaces_the_store(tmp_path):
    tpl = _template()
    ref = StoreRef.of(str(tmp_path / "made.zarr"))
    store.create(ref, tpl, "cube")
    direct = tmp_path / "direct.zarr"
    ds = tpl.copy()
    ds.attrs = {**tpl.attrs, "dsm_store": "cube", "dsm_format": store.FORMAT_VERSION}
    ds.to_zarr(direct, mode="w", compute=False, zarr_format=3, consolidated=False)
    made = _files(tmp_path / "made.zarr")
    assert made and made == _files(direct)
    assert store.open_store(ref, "cube").sizes == tpl.sizes
    with pytest.raises(StoreError, match="already exists"):
        store.create(ref, tpl, "cube")
    (tmp_path / "made.zarr" / "lst" / "c" / "0" / "0" / "0").parent.mkdir(parents=True)
    (tmp_path / "made.zarr" / "lst" / "c" / "0" / "0" / "0").write_bytes(b"old data")
    (tmp_path / "made.zarr" / "gone").mkdir()
    (tmp_path / "made.zarr" / "gone" / "zarr.json").write_text("{}")
    store.create(ref, tpl, "cube", overwrite=True)
    assert _files(tmp_path / "made.zarr") == made  # the old chunk and array are gone


def test_a_template_on_object_storage_replaces_the_old_store_without_warnings(s3):
    bucket = s3.make_bucket("dsm-create")
    ref = StoreRef(f"{bucket}/cube.zarr", s3.storage_options)
    tpl = _template()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr warns of leftovers it cannot place
        store.create(ref, tpl, "cube")
        ds = store.open_store(ref, "cube")
        part = ds[["dem"]].isel(y=slice(0, 36), x=slice(0, 36)).compute()
        part["dem"][:] = 5.0
        store.write_region(ref, part)
        store.create(ref, tpl, "cube", overwrite=True)
        again = store.open_store(ref, "cube")
        assert np.isnan(again["dem"].isel(y=slice(0, 36), x=slice(0, 36)).values).all()  # replaced, not kept
    assert sorted(again.data_vars) == sorted(tpl.data_vars)
