"""Read SDS and attributes of one HDF4 file; run as a script by :mod:`dsm.ingest.hdf4`.

Usage: ``python _hdf4_child.py PATH [SDS_NAME ...]``. Writes a pickled dict to stdout:
``{"attributes": {...}, "names": [...], "sds": {name: array}, "sds_attributes": {name: {...}}}``
or ``{"error": "..."}``. Only numpy and pyhdf are imported, so the script runs without dsm on
the path. The HDF4 library can crash (SIGSEGV) on corrupt compressed data; running here keeps
such a crash out of the caller's process.
"""

from __future__ import annotations

import pickle
import sys


def read(path: str, names: list[str]) -> dict:
    """Global attributes, SDS names and the requested SDS of ``path`` (all SDS when none)."""
    from pyhdf.SD import SD, SDC  # noqa: PLC0415 - pyhdf loads only in the process that reads (the isolated child)

    sd = SD(path, SDC.READ)
    try:
        out = {"attributes": sd.attributes(), "names": list(sd.datasets()), "sds": {}, "sds_attributes": {}}
        for name in names or out["names"]:
            if name not in out["names"]:
                continue
            s = sd.select(name)
            try:
                out["sds_attributes"][name] = s.attributes()
                out["sds"][name] = s[:]
            finally:
                s.endaccess()
        return out
    finally:
        sd.end()


def main(argv: list[str]) -> int:
    """Entry point: read and pickle to stdout; errors are reported, not raised."""
    try:
        result = read(argv[1], argv[2:])
    except Exception as exc:  # noqa: BLE001 - every library error becomes a report
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.buffer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
