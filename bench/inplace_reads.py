"""Remote inputs read in place against copied first: bytes transferred and time, as ratios.

On the loopback S3 server (``dsm.testing.s3.LoopbackS3``), behind a TCP proxy that counts
every byte the server sends (HTTP headers included) and can add a delay to every request
(``--latency-ms``: loopback has none, a bucket in the same cloud region some 10-30 ms), the
two paths of an ingest task read the same files onto the same region:

* copy:     ``dsm.files.local_copies`` (each file downloaded whole to a temporary folder),
            then the reader on the local copy (what ``inputs.read: copy`` does, and what
            every remote file got before in-place reads);
* in place: ``dsm.inplace.input_files`` (one size lookup per file), then the reader on the
            ``RemoteFile``, fetching byte ranges through fsspec (``inputs.read: auto``).

``--mbps`` holds each connection to a bandwidth (loopback has gigabytes per second; one S3
stream in the same region some 50-100 MB/s).

Files: SPL3SMP granules of the real granule's size (~30 MB: the 8 variables the reader uses
and 20 more float32 variables per pass, 40 % of the cells observed, gzip as the writer
stores them), read by ``dsm.ingest.smap.read_smap``; and COGs of a continental 1 km int16
product (deflate, 512-pixel tiles), read by ``dsm.ingest.rasters.geotiff_series_to_region``.
The region is ``--cells`` x ``--cells`` 36 km cells. Both paths must give identical arrays
(checked every round). Rounds alternate the order of the two paths; each figure is the
median over rounds with the range of the per-round ratios. ``--sweep`` also prints what each
fsspec cache type and block size fetches for one granule and one COG (how
``dsm.inplace.HDF5_CACHE`` and ``GDAL_CACHE`` were chosen).

Run: ``.venv/bin/python bench/inplace_reads.py [--granules 3] [--cogs 3] [--cells 8] [--rounds 3]
[--latency-ms 0] [--mbps 0] [--sweep] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _common import machine_facts
from affine import Affine
from rasterio.shutil import copy as rio_copy

import dsm.ingest.smap
import dsm.inplace
from dsm.files import local_copies
from dsm.grid import Region
from dsm.ingest.rasters import ValueRule, geotiff_series_to_region
from dsm.ingest.smap import read_smap
from dsm.inplace import input_files
from dsm.testing.granules import SmapPass, spl3smp_filename, write_geotiff, write_spl3smp

CENTRE = (109.0, 38.9)
EXTRA_VARIABLES = 20  # per pass, beside the 8 the writer writes: the real granule's ~30 MB


class CountingProxy:
    """A TCP proxy on 127.0.0.1 to ``target`` that counts the bytes each way, delays every
    chunk sent to the server by ``latency_s`` (one delay per request of a keep-alive connection)
    and holds what the server sends to ``bytes_per_s`` per connection (0: no limit)."""

    def __init__(self, target: tuple[str, int], latency_s: float = 0.0, bytes_per_s: float = 0.0) -> None:
        self.target, self.latency_s, self.bytes_per_s = target, latency_s, bytes_per_s
        self.down = self.up = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def reset(self) -> tuple[int, int]:
        """``(bytes from the server, bytes to it)`` since the last reset."""
        with self._lock:
            out, self.down, self.up = (self.down, self.up), 0, 0
        return out

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if not from_server and self.latency_s:
                    time.sleep(self.latency_s)
                dst.sendall(data)
                if from_server and self.bytes_per_s:
                    time.sleep(len(data) / self.bytes_per_s)
                with self._lock:
                    if from_server:
                        self.down += len(data)
                    else:
                        self.up += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def write_granule(path: Path, day: dt.date, region: Region, rng: np.random.Generator) -> Path:
    """An SPL3SMP granule of the real one's size (module docstring)."""
    observed = rng.random((406, 964)) < 0.4
    observed[region.row0:region.row0 + region.nrows, region.col0:region.col0 + region.ncols] = True
    sm = np.where(observed, 0.05 + 0.4 * rng.random(observed.shape), np.nan).astype(np.float32)
    write_spl3smp(path, day, SmapPass(sm), SmapPass(sm[::-1].copy()))
    with h5py.File(path, "a") as f:
        for group, sfx in (("Soil_Moisture_Retrieval_Data_AM", ""), ("Soil_Moisture_Retrieval_Data_PM", "_pm")):
            for i in range(EXTRA_VARIABLES):
                data = np.where(observed, 200 + 100 * rng.random(observed.shape), -9999.0).astype(np.float32)
                f[group].create_dataset(f"tb_extra_{i}{sfx}", data=data, chunks=(203, 482), compression="gzip",
                                        compression_opts=4)
    return path


def write_cog(path: Path, region: Region, rng: np.random.Generator, pixels: int) -> Path:
    """A ``pixels`` x ``pixels`` int16 COG at 0.01 degree (NDVI-like counts, scale 0.0001)
    centred on the region: a smooth field with noise, as a continental 1 km product."""
    lon0, lat0, lon1, lat1 = region.lonlat_bounds
    res = 0.01
    west, north = math.floor((lon0 + lon1) / 2 - pixels * res / 2), math.ceil((lat0 + lat1) / 2 + pixels * res / 2)
    yy, xx = np.mgrid[0:pixels, 0:pixels] / pixels
    field = 0.45 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + 0.05 * rng.standard_normal((pixels, pixels))
    counts = np.clip(field, 0.0, 1.0) * 10000
    plain = path.with_suffix(".plain.tif")
    write_geotiff(plain, counts.astype(np.int16), Affine(res, 0, west, 0, -res, north), "EPSG:4326", nodata=-3000)
    rio_copy(str(plain), str(path), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512)
    plain.unlink()
    return path


RULE = ValueRule(scale=0.0001, nodata=-3000, setting="inputs.geotiff.ndvi")


def read_granule(path: str, region: Region) -> np.ndarray:
    return read_smap(path, region)[0].values


def read_cog(path: str, region: Region) -> np.ndarray:
    da, many = geotiff_series_to_region([path], region, "ndvi", rule=RULE)
    assert [r.status for r in many.report] == ["used"], many.report
    return da.values


def run_path(how: str, urls: Sequence[str], so: dict, reader: Callable[[str, Region], np.ndarray],
             region: Region) -> tuple[float, list[np.ndarray], int]:
    """Seconds, arrays and fsspec range requests (in place) of one path over ``urls``."""
    t0 = time.perf_counter()
    out, requests = [], 0
    for url in urls:
        if how == "copy":
            with local_copies([url], so) as (paths, failed):
                assert not failed, failed
                out.append(reader(paths[url], region))
        else:
            with input_files([url], so, True) as got:
                assert not got.failed, got.failed
                out.append(reader(got.paths[url], region))
                requests += got.transfers()[url].requests
    return time.perf_counter() - t0, out, requests


def compare(kind: str, urls: Sequence[str], sizes: Sequence[int], so: dict, proxy: CountingProxy, region: Region,
            rounds: int, reader: Callable[[str, Region], np.ndarray]) -> dict[str, Any]:
    """Interleaved rounds of both paths over ``urls``; prints and returns the figures."""
    times: dict[str, list[float]] = {"copy": [], "in_place": []}
    sent: dict[str, list[int]] = {"copy": [], "in_place": []}
    requests = 0
    for r in range(rounds):
        arrays = {}
        for how in (("copy", "in_place") if r % 2 == 0 else ("in_place", "copy")):
            proxy.reset()
            seconds, arrays[how], n = run_path(how, urls, so, reader, region)
            times[how].append(seconds)
            sent[how].append(proxy.reset()[0])
            requests = n or requests
        for a, b in zip(arrays["copy"], arrays["in_place"], strict=True):
            assert np.array_equal(a, b, equal_nan=True), f"{kind}: in place and copied differ"
    total = sum(sizes)
    speed = [c / i for c, i in zip(times["copy"], times["in_place"], strict=True)]
    volume = [c / i for c, i in zip(sent["copy"], sent["in_place"], strict=True)]
    out = {
        "files": len(urls), "file_bytes": total,
        "copy_seconds": statistics.median(times["copy"]), "in_place_seconds": statistics.median(times["in_place"]),
        "copy_bytes": statistics.median(sent["copy"]), "in_place_bytes": statistics.median(sent["in_place"]),
        "in_place_requests": requests,
        "speedup": statistics.median(speed), "speedup_min": min(speed), "speedup_max": max(speed),
        "bytes_ratio": statistics.median(volume), "bytes_ratio_min": min(volume), "bytes_ratio_max": max(volume),
    }
    print(f"{kind:5s} {len(urls)} files, {total / 1e6:.1f} MB: copy {out['copy_bytes'] / 1e6:6.1f} MB "
          f"{out['copy_seconds']:6.2f} s | in place {out['in_place_bytes'] / 1e6:6.2f} MB "
          f"({out['in_place_bytes'] / total:.1%} of the files, {requests} range requests) {out['in_place_seconds']:6.2f} s"
          f" | bytes copy/in place {out['bytes_ratio']:.1f} ({out['bytes_ratio_min']:.1f}..{out['bytes_ratio_max']:.1f})"
          f", time copy/in place {out['speedup']:.2f} ({out['speedup_min']:.2f}..{out['speedup_max']:.2f})")
    return out


def sweep(granule: str, cog: str, so: dict, proxy: CountingProxy, region: Region) -> list[dict[str, Any]]:
    """Bytes, requests and seconds of one in-place read per fsspec cache type and block size."""
    rows = []
    for kind, url, reader, module, name in (("smap", granule, read_granule, dsm.ingest.smap, "HDF5_CACHE"),
                                            ("cog", cog, read_cog, dsm.inplace, "GDAL_CACHE")):
        default = getattr(module, name)
        try:
            for cache in ("blockcache", "readahead", "bytes", "none"):
                for block in (64 << 10, 256 << 10, 1 << 20, 4 << 20):
                    setattr(module, name, (cache, block))
                    proxy.reset()
                    seconds, _, n = run_path("in_place", [url], so, reader, region)
                    down = proxy.reset()[0]
                    rows.append({"file": kind, "cache": cache, "block": block, "bytes": down, "requests": n,
                                 "seconds": seconds, "default": (cache, block) == default})
                    print(f"  {kind:5s} {cache:10s} {block >> 10:5d} KiB: {down / 1e6:6.2f} MB in {n:3d} requests, "
                          f"{seconds:.3f} s{'  (default)' if (cache, block) == default else ''}")
        finally:
            setattr(module, name, default)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--granules", type=int, default=3, help="SPL3SMP granules (~30 MB each)")
    p.add_argument("--cogs", type=int, default=3, help="COGs (--cog-pixels square, int16)")
    p.add_argument("--cog-pixels", type=int, default=4000)
    p.add_argument("--cells", type=int, default=8, help="region side in 36 km cells")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every request (loopback has none)")
    p.add_argument("--mbps", type=float, default=0.0, help="MB/s per connection from the server (0: loopback's)")
    p.add_argument("--sweep", action="store_true", help="also print each fsspec cache type and block size")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    a = p.parse_args()
    from dsm.testing.s3 import LoopbackS3  # noqa: PLC0415

    region = Region.around(*CENTRE, a.cells, a.cells)
    rng = np.random.default_rng(0)
    figures: dict[str, Any] = {"args": vars(a)}
    with tempfile.TemporaryDirectory(prefix="dsm-bench-") as tmp, LoopbackS3() as s3:
        root = Path(tmp)
        granules = [write_granule(root / spl3smp_filename(dt.date(2021, 8, 13) + dt.timedelta(d)),
                                  dt.date(2021, 8, 13) + dt.timedelta(d), region, rng) for d in range(a.granules)]
        cogs = [write_cog(root / f"ndvi_{dt.date(2021, 8, 13) + dt.timedelta(16 * d)}.tif", region, rng, a.cog_pixels)
                for d in range(a.cogs)]
        s3.make_bucket("bench")
        fs = s3.filesystem()
        for f in (*granules, *cogs):
            fs.put_file(str(f), f"bench/{f.name}")
        host, port = s3.endpoint_url.removeprefix("http://").split(":")
        proxy = CountingProxy((host, int(port)), a.latency_ms / 1000, a.mbps * 1e6)
        so = {**s3.storage_options, "endpoint_url": proxy.endpoint_url}
        for line in machine_facts():
            print(line)
        limit = f"{a.mbps:g} MB/s per connection" if a.mbps else "no bandwidth limit"
        print(f"S3: {s3.backend} on loopback, {a.latency_ms:g} ms added per request, {limit}; region {a.cells} x {a.cells} "
              f"36 km cells; {a.rounds} interleaved rounds (median, range of the per-round ratios)")
        try:
            figures["smap"] = compare("smap", [f"s3://bench/{g.name}" for g in granules],
                                      [g.stat().st_size for g in granules], so, proxy, region, a.rounds, read_granule)
            figures["cog"] = compare("cog", [f"s3://bench/{c.name}" for c in cogs], [c.stat().st_size for c in cogs],
                                     so, proxy, region, a.rounds, read_cog)
            if a.sweep:
                print("in place, one file, per fsspec cache type and block size:")
                figures["sweep"] = sweep(f"s3://bench/{granules[0].name}", f"s3://bench/{cogs[0].name}", so, proxy,
                                         region)
        finally:
            proxy.close()
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
