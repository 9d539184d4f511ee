"""XGBoost's native log lines on the Dask workers go to Python logging, not to the terminal.

When an ``xgboost.dask`` fit starts, XGBoost's collective logs ``[hh:mm:ss] Task
[xgboost.dask-0]:tcp://... got rank 0`` on every worker. The line is logged at XGBoost's
"console" level, which its ``verbosity`` setting (``xgboost.config_context(verbosity=0)`` or the
estimator's ``verbosity``) does not silence, and XGBoost's native log callback is per thread:
only the thread that imported ``xgboost`` hands lines to Python; in a worker's task threads
the library writes them straight to the process's stderr, which a ``LocalCluster`` shares with
the command.

:func:`route_worker_logs` (called before each distributed fit) runs, on every task thread of
every worker, :func:`log_to_logging`: it registers a native log callback for that thread that
hands each line to the ``xgboost`` logger instead, XGBoost's warnings at WARNING (printed, as
before), its other lines at INFO (shown only where that logger is configured to show them).
A worker process keeps its callbacks, so each is routed once: later fits skip the workers
already routed (known by address and scratch folder, which a restarted worker does not share),
instead of waiting for a free moment of every thread of every worker before each fit.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import uuid
from typing import Any

from distributed import Client

log = logging.getLogger(__name__)

_callback: Any = None  # the ctypes callback, one per process, kept alive for the library
_barriers: dict[str, threading.Barrier] = {}
_lock = threading.Lock()
_routed: set[tuple[str, str]] = set()  # on the client: (address, local directory) of the workers routed


def _forward(message: bytes) -> None:
    text = message.decode(errors="replace").rstrip()
    logging.getLogger("xgboost").log(logging.WARNING if "WARNING:" in text else logging.INFO, "%s", text)


def log_to_logging() -> bool:
    """Make XGBoost's native log of the calling thread go to the ``xgboost`` logger; True when
    it does (False: this XGBoost build offers no way to, and its own printing stays)."""
    global _callback
    try:
        import xgboost.core  # noqa: PLC0415 - a build without it is tolerated (ImportError below)

        with _lock:
            if _callback is None:
                _callback = ctypes.CFUNCTYPE(None, ctypes.c_char_p)(_forward)
        return bool(xgboost.core._LIB.XGBRegisterLogCallback(_callback) == 0)
    except (AttributeError, ImportError, OSError) as exc:
        log.debug("XGBoost's native log stays on stderr: %s", exc)
        return False


def _on_every_thread(token: str, nthreads: int, timeout: float = 5.0) -> bool:
    """One of ``nthreads`` tasks of ``token`` on a worker: register, then wait until all of them
    have, so that each runs on a thread of its own (and every task thread is covered)."""
    ok = log_to_logging()
    with _lock:
        barrier = _barriers.setdefault(token, threading.Barrier(nthreads))
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:  # a thread was busy elsewhere: the lines it logs stay printed
        pass
    finally:
        with _lock:
            _barriers.pop(token, None)
    return ok


def route_worker_logs(client: Client) -> None:
    """Run :func:`log_to_logging` on every task thread of every worker of ``client`` not routed
    before (module docstring)."""
    futures, routed = [], []
    for address, info in client.scheduler_info(n_workers=-1).get("workers", {}).items():
        worker = (address, str(info.get("local_directory", "")))
        if worker in _routed:
            continue
        n = max(1, int(info.get("nthreads", 1)))
        token = f"{address}-{uuid.uuid4().hex}"
        futures += [client.submit(_on_every_thread, token, n, workers=[address], allow_other_workers=False,
                                  pure=False, key=f"dsm-xgboost-log-{token}-{i}") for i in range(n)]
        routed.append(worker)
    client.gather(futures)
    _routed.update(routed)
