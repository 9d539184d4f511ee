"""A static web server with HTTP range requests on loopback, in a process of its own.

GDAL reads web rasters (``https://files.isric.org/soilgrids/...vrt``) through ``/vsicurl/``,
which fetches byte ranges. :class:`LoopbackHTTP` serves a folder the same way on 127.0.0.1, so
readers of such URLs are tested with GDAL doing the fetching. The server runs as a separate
process (``python -m dsm.testing.web FOLDER PORT``): GDAL holds the interpreter lock while it
waits for a response, so a server thread in the reading process would never answer.
"""

from __future__ import annotations

import http.server
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from dsm.testing.child_processes import LOOPBACK, ManagedProcess, free_ports, wait_until

__all__ = ["LoopbackHTTP", "RangeHandler"]


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Files of a folder, whole (200) or one byte range (206, ``Range: bytes=a-b``)."""

    def _head(self) -> bytes | None:
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        data = Path(path).read_bytes()
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes="):
            first, _, last = rng.removeprefix("bytes=").partition("-")
            lo, hi = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {lo}-{hi}/{len(data)}")
            data = data[lo:hi + 1]
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return data

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        """Send the file or its range."""
        body = self._head()
        if body is not None:
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        """Send the headers only."""
        self._head()


class LoopbackHTTP:
    """Serve ``folder`` at :attr:`url` (``http://127.0.0.1:PORT/``) while the context is open."""

    def __init__(self, folder: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.folder = Path(folder)
        self.port = free_ports(1)[0]
        self.url = f"http://{LOOPBACK}:{self.port}/"
        self._log = tempfile.NamedTemporaryFile(prefix="dsm-http-", suffix=".log", delete=False)
        self._process = ManagedProcess("http", [sys.executable, "-m", "dsm.testing.web", str(self.folder),
                                                str(self.port)], Path(self._log.name))
        self.timeout = timeout

    def __enter__(self) -> Self:
        self._process.start()
        wait_until(self._answers, self.timeout, f"the web server on {self.url}", check=self._process.check_running)
        return self

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "dsm-testing-ping", timeout=1)
        except urllib.error.HTTPError:
            return True  # it answered (404)
        return True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._process.stop()
        self._log.close()
        os.unlink(self._log.name)


def main(argv: list[str]) -> None:
    """``python -m dsm.testing.web FOLDER PORT``: serve FOLDER on 127.0.0.1:PORT until killed."""
    folder, port = argv

    class Quiet(RangeHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

    handler = lambda *a, **k: Quiet(*a, directory=folder, **k)  # noqa: E731
    http.server.ThreadingHTTPServer((LOOPBACK, int(port)), handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
