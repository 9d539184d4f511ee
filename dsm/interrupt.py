"""Stopping a run cleanly on SIGTERM or SIGINT (Kubernetes' pod stop, Ctrl-C)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT stopped the job (a BaseException, like KeyboardInterrupt, so that no
    stage's ``except Exception`` swallows it); ``signum`` is the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Raise :class:`RunInterrupted` in the main thread on the first of ``signals``.

    The run then records the stage as ``interrupted``, writes ``run.json`` and releases its
    lock; a second signal during that cleanup is ignored (logged). Outside the main thread
    (where Python cannot install handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            log.warning("%s again: still releasing the lock and writing the run record", signal.Signals(signum).name)
            return
        fired.append(signum)
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


__all__ = ["RunInterrupted", "stop_on_signals"]
