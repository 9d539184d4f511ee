"""Cube write/read throughput of dsm against raw zarr writes of the same bytes, as ratios.

Both paths write the same float32 array (daily LST-like data) with the same chunks and the
same codec into Zarr format 3 in the same process, in alternating order, several times:

* raw:  ``zarr.create_array`` + one ``arr[...] = block`` per time chunk, ``arr[:]`` to read;
* dsm:  ``dsm.store.write_region`` per time chunk into a cube made by
        ``dsm.cube.create_cube``; ``dsm.cube.open_cube(...)["lst"].values`` to read (xarray +
        dask). The template creation and the open are one-off costs, printed apart;
* plain: the raw path with Blosc alone, without the CRC32C checksum that
        ``dsm.store.default_compressors`` appends: raw / plain is what the checksum costs.

Each ratio is printed as its median over the repeats with the range of the per-repeat ratios.

Run: ``.venv/bin/python bench/cube_io.py [--days 64] [--cells 8] [--repeat 3] [--s3] [--json PATH]``.
The figures that matter are the ratios dsm / raw (1.0 = no overhead); MB/s are printed
for context only, since these machines are noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec

from dsm import cube, store
from dsm.grid import Region
from dsm.storeref import StoreRef


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(days: int, cells: int, repeat: int, root: StoreRef) -> dict[str, float]:
    """Median write/read seconds of both paths under the folder ``root``; returns the figures."""
    region = Region.around(109.0, 38.9, cells, cells)
    start = dt.date(2016, 6, 1)
    layout = cube.Layout(region, start, start + dt.timedelta(days - 1), space_chunk=144, time_chunk=8)
    ny, nx = region.fine_shape
    rng = np.random.default_rng(0)
    data = (280 + 30 * rng.random((days, ny, nx))).astype(np.float32)
    data[:, ::7, ::5] = np.nan
    nbytes = data.nbytes
    chunks = (8, 144, 144)
    times: dict[str, list[float]] = {k: [] for k in (
        "raw_write", "raw_read", "plain_write", "plain_read", "dsm_create", "dsm_write", "dsm_open", "dsm_read")}

    for i in range(repeat):
        raw_ref, plain_ref, dsm_ref = root.join(f"raw{i}.zarr"), root.join(f"plain{i}.zarr"), root.join(f"dsm{i}.zarr")
        opened: dict[str, xr.Dataset] = {}

        def write_zarr(ref: StoreRef, compressors: list) -> None:
            arr = zarr.create_array(ref.url, shape=data.shape, chunks=chunks, dtype="float32", compressors=compressors,
                                    fill_value=np.nan, zarr_format=3, storage_options=ref.zarr_options)
            for t0 in range(0, days, 8):
                arr[t0 : t0 + 8] = data[t0 : t0 + 8]

        def raw_write() -> None:
            write_zarr(raw_ref, store.default_compressors())

        def plain_write() -> None:
            write_zarr(plain_ref, [c for c in store.default_compressors() if not isinstance(c, Crc32cCodec)])

        def dsm_create() -> None:
            cube.create_cube(dsm_ref, layout)
            opened["ds"] = cube.open_cube(dsm_ref)

        def dsm_write() -> None:
            ds = opened["ds"]
            for t0 in range(0, days, 8):
                part = xr.Dataset({"lst": (("time", "y", "x"), data[t0 : t0 + 8])},
                                  coords={"time": ds["time"].values[t0 : t0 + 8], "y": ds["y"].values, "x": ds["x"].values})
                store.write_region(dsm_ref, part, ds)

        def raw_read(ref: StoreRef = raw_ref) -> None:
            back = zarr.open_array(ref.url, mode="r", storage_options=ref.zarr_options)[:]
            assert np.array_equal(back, data, equal_nan=True)

        def plain_read() -> None:
            raw_read(plain_ref)

        def dsm_open() -> None:
            opened["back"] = cube.open_cube(dsm_ref)

        def dsm_read() -> None:
            assert np.array_equal(opened["back"]["lst"].values, data, equal_nan=True)

        times["dsm_create"].append(_timed(dsm_create))
        order = [("raw_write", raw_write), ("plain_write", plain_write), ("dsm_write", dsm_write)]
        for name, fn in (order if i % 2 == 0 else order[::-1]):
            times[name].append(_timed(fn))
        times["dsm_open"].append(_timed(dsm_open))
        order = [("raw_read", raw_read), ("plain_read", plain_read), ("dsm_read", dsm_read)]
        for name, fn in (order if i % 2 == 0 else order[::-1]):
            times[name].append(_timed(fn))

    med = {k: statistics.median(v) for k, v in times.items()}
    mb = nbytes / 1e6
    print(f"array {days} x {ny} x {nx} float32 = {mb:.1f} MB, chunks {chunks}, {repeat} repeats (median)")
    print(f"one-off: cube template (17 variables) {1e3 * med['dsm_create']:.0f} ms, "
          f"open {1e3 * med['dsm_open']:.0f} ms")
    out: dict[str, float] = dict(med)
    for op in ("write", "read"):
        raw, dsm = med[f"raw_{op}"], med[f"dsm_{op}"]
        for label, num, den in (("dsm/raw", f"raw_{op}", f"dsm_{op}"), ("checksum", f"plain_{op}", f"raw_{op}")):
            ratios = [a / b for a, b in zip(times[num], times[den])]  # throughput ratio per repeat
            out[f"{label}_{op}_ratio"] = statistics.median(ratios)
            out[f"{label}_{op}_ratio_min"], out[f"{label}_{op}_ratio_max"] = min(ratios), max(ratios)
        print(f"{op:5s}  raw zarr {mb / raw:8.1f} MB/s   dsm {mb / dsm:8.1f} MB/s   "
              f"dsm/raw throughput ratio {out[f'dsm/raw_{op}_ratio']:5.2f} "
              f"({out[f'dsm/raw_{op}_ratio_min']:.2f}..{out[f'dsm/raw_{op}_ratio_max']:.2f})   "
              f"with/without CRC32C {out[f'checksum_{op}_ratio']:5.2f} "
              f"({out[f'checksum_{op}_ratio_min']:.2f}..{out[f'checksum_{op}_ratio_max']:.2f})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=64)
    p.add_argument("--cells", type=int, default=8, help="region side in SMAP cells")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--s3", action="store_true", help="also run against a loopback S3 server")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="dsm-bench-")
    figures: dict[str, dict[str, float]] = {}
    try:
        print("== local filesystem")
        figures["local"] = run(a.days, a.cells, a.repeat, StoreRef(root))
        if a.s3:
            from dsm.testing.s3 import LoopbackS3

            with LoopbackS3() as s3:
                print(f"== S3 ({s3.backend} on loopback)")
                figures["s3"] = run(a.days, a.cells, a.repeat, s3.ref(s3.make_bucket("bench")))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
