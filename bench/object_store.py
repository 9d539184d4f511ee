"""Prediction from and to object storage with latency: dsm's concurrent requests against one at a time.

The benchmark twin (``--size`` x ``--size`` SMAP cells, 2016-06-09..2016-07-10, 72 x 72-pixel
blocks of 8 days, the fusion method trained as in ``bench/predict.py``) is uploaded to the
S3-compatible server on loopback (:class:`dsm.testing.s3.LoopbackS3`), reached through a proxy
that delays every request by ``--latency-ms`` (default 20 ms, a cloud object store's first
byte; :mod:`_latency`). The models stay on local disk. ``dsm.stages.predict.predict`` then runs
from the cube on S3 into an output store on S3, on a LocalCluster of 2 single-threaded workers,
in two ways, interleaved over ``--rounds`` rounds (a new output store each run):

* ``now``: as dsm runs: the 36 km pass's sample tables and the blocks read their layers in one
  call of zarr's async API each (:func:`dsm.zarr_reads.read_selections`), a block's four arrays
  are written together (:func:`dsm.store.write_together`), and each block starts the reads of
  the one its worker takes next (:func:`dsm.blocks.read_ahead`);
* ``serial``: the same code with those three undone on the workers and the client (this
  file's baseline, patched in here): every layer read through xarray one after another, the
  arrays written one after another, no read-ahead. (Both create the output store in one batch,
  :func:`dsm.store.create`.)

Both write the same bytes (checked: every chunk of ``sm``, ``sm_unc``, ``sm_origin`` and
``sm_36km``). Prints each run's wall time and the 36 km pass's and the blocks' shares of it,
the ratio serial / now (> 1: faster now) with its median and range over the rounds; ``--json
PATH`` writes them.

Run: ``.venv/bin/python bench/object_store.py [--size 8] [--latency-ms 20] [--rounds 3]
[--workdir DIR] [--json PATH]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from _common import (
    END,
    START,
    ensure_twin,
    load_average,
    local_cluster,
    machine_facts,
    ratio_spread,
    spread_text,
    train_models,
)
from _latency import LatencyProxy
from distributed import Client
from predict import method_config

from dsm import config as config_mod
from dsm import samples, store, zarr_reads
from dsm.stages import predict as predict_mod
from dsm.testing.s3 import LoopbackS3

PARALLEL_IN_TURN = predict_mod._in_turn


def serial_in_turn(client: Client, jobs: Mapping[int, list[Any]]) -> list[tuple[Any, dict[str, Any]]]:
    """The submission of the ``now`` path without the read-ahead."""
    return [(replace(job, ahead=None), place) for job, place in PARALLEL_IN_TURN(client, jobs)]


def _reads_one_by_one(ds: Any, reads: Mapping[Any, Any]) -> dict[Any, Any]:
    return samples.values_each(ds, reads)


def _writes_one_by_one(writes: Mapping[Any, Callable[[], None]]) -> None:
    for write in writes.values():
        write()


def set_serial(serial: bool) -> None:
    """On a worker (``client.run``) or here: the concurrent reads of sample tables and blocks and
    the writes of blocks made one after another (``serial``), or restored."""
    if not hasattr(store, "_bench_concurrent"):
        store._bench_concurrent = (zarr_reads.read_selections, store.write_together)  # type: ignore[attr-defined]
    concurrent = store._bench_concurrent  # type: ignore[attr-defined]
    zarr_reads.read_selections, store.write_together = (_reads_one_by_one, _writes_one_by_one) if serial else concurrent


def config_on(cfg: config_mod.Config, bucket: str, output: str, options: dict[str, Any]) -> config_mod.Config:
    """``cfg`` with its cube and the output store ``output`` in ``bucket`` (models where they are)."""
    stores = cfg.stores.model_copy(update={"cube": f"{bucket}/cube.zarr", "output": f"{bucket}/{output}",
                                           "storage_options": options})
    return cfg.model_copy(update={"stores": stores})


def digests(fs: Any, root: str) -> dict[str, str]:
    """SHA-256 of every chunk of the products' arrays under ``root``."""
    out = {}
    for var in ("sm", "sm_unc", "sm_origin", "sm_36km"):
        for path in sorted(fs.find(f"{root}/{var}/c")):
            out[path[len(root):]] = hashlib.sha256(fs.cat_file(path)).hexdigest()
    return out


def timed(cfg: config_mod.Config, client: Client) -> dict[str, float]:
    """One prediction into a new output store: wall seconds, and those before the 36 km pass,
    of the pass (up to the line after it) and of the blocks."""
    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def note(line: Any) -> None:
        text = str(line)
        if "anomaly gain" in text and "pass" not in marks:
            marks["pass"] = time.perf_counter() - t0
        if text.startswith("fusing") and "start" not in marks:
            marks["start"] = time.perf_counter() - t0

    rep = predict_mod.predict(cfg, client, progress=note)
    wall = time.perf_counter() - t0
    assert not rep.failed, rep.failed
    return {"wall": wall, "before_pass": marks.get("start", 0.0),
            "pass": marks.get("pass", 0.0) - marks.get("start", 0.0), "blocks": wall - marks.get("pass", 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8, help="region of N x N SMAP cells (default 8)")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="delay added to every request (default 20)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--workdir", default=None, help="folder holding (or to hold) the twin and its models")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = ap.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="dsm-bench-object-store-")) / f"fusion-{args.size}"
    cfg = method_config(root, args.size, "fusion", "none")  # as bench/predict.py's, in the same folder
    ensure_twin(cfg, root)
    train_models(cfg)
    for line in machine_facts():
        print(line)
    walls: dict[str, list[dict[str, float]]] = {"now": [], "serial": []}
    same: dict[str, str] = {}
    with LoopbackS3() as s3:
        bucket = s3.make_bucket("bench")
        fs = s3.filesystem()
        path = bucket.removeprefix("s3://")
        fs.put(str(root / "cube.zarr") + "/", f"{path}/cube.zarr/", recursive=True)
        end = urlparse(s3.endpoint_url)
        proxy = LatencyProxy(end.hostname or "127.0.0.1", end.port or 80, args.latency_ms / 1000.0)
        options = dict(s3.storage_options)
        options["endpoint_url"] = proxy.url
        options["client_kwargs"] = {**options.get("client_kwargs", {}), "endpoint_url": proxy.url}
        print(f"{args.size} x {args.size} cells, {START}..{END}, fusion; cube and output on the loopback S3 server "
              f"behind {args.latency_ms:g} ms per request; 2 workers x 1 thread; {args.rounds} interleaved rounds")
        ways = ["now", "serial"]
        try:
            with local_cluster(2, profile=False) as client:
                for i in range(args.rounds):
                    for way in (ways if i % 2 == 0 else ways[::-1]):
                        serial = way == "serial"
                        client.run(set_serial, serial)
                        set_serial(serial)
                        predict_mod._in_turn = serial_in_turn if serial else PARALLEL_IN_TURN
                        output = f"sm-{i}-{way}.zarr"  # a new store each run
                        walls[way].append(timed(config_on(cfg, bucket, output, options), client))
                        fs.invalidate_cache()
                        got = digests(fs, f"{path}/{output}")
                        assert got and (not same or got == same), f"{way} wrote other bytes"
                        same = got
                        w = walls[way][-1]
                        print(f"round {i + 1} {way:6s} {w['wall']:6.1f} s (before the 36 km pass {w['before_pass']:.1f}, "
                              f"the pass {w['pass']:.1f}, the blocks {w['blocks']:.1f})", flush=True)
        finally:
            predict_mod._in_turn = PARALLEL_IN_TURN
            set_serial(False)
            proxy.close()
    figures: dict[str, Any] = {"size": args.size, "latency_ms": args.latency_ms, "rounds": args.rounds,
                               "machine": machine_facts(), "runs": walls, "chunks_compared": len(same)}
    for part in ("wall", "pass", "blocks"):
        figures[f"serial/now {part}"] = ratio_spread([w[part] for w in walls["serial"]], [w[part] for w in walls["now"]])
    print(f"the same bytes in every run ({len(same)} chunks); medians: " + ", ".join(
        f"{k} {statistics.median(w['wall'] for w in v):.1f} s" for k, v in walls.items()))
    for part in ("wall", "pass", "blocks"):
        print(f"ratio serial / now, {part:6s} {spread_text(figures[f'serial/now {part}'])}")
    print(f"load average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
