"""Child processes for the loopback test services: free ports, polling, and `ManagedProcess`.

`ManagedProcess` runs a command in its own session with its output in a log file and
always kills it (and its process group) on `ManagedProcess.stop` or at interpreter exit;
`free_ports` and `wait_until` choose ports on 127.0.0.1 and wait for a service to come up.
Shared by `dsm.testing.processes`, `dsm.testing.s3` and `dsm.testing.web`.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "LOOPBACK",
    "ManagedProcess",
    "ProcessStartError",
    "child_env",
    "free_ports",
    "wait_until",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
"""The only address the test services bind to."""

_POLL_S = 0.1
_TAIL_BYTES = 256 * 1024
_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


class ProcessStartError(RuntimeError):
    """A helper process did not start or did not become ready in time."""


def free_ports(n: int) -> list[int]:
    """Return `n` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets are held open until every port is chosen, so the ports are distinct.
    Another process may still take a port before it is used; callers that can
    should retry on "address already in use".

    Parameters
    ----------
    n : int
        Number of ports.

    Returns
    -------
    list of int
        The ports.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    check: Callable[[], None] | None = None,
    interval: float = _POLL_S,
) -> None:
    """Poll `predicate` until it is true, for at most `timeout` seconds.

    Parameters
    ----------
    predicate : callable
        Returns True when the wait is over. Exceptions count as "not yet".
    timeout : float
        Seconds.
    what : str
        Description used in the timeout message.
    check : callable, optional
        Called on every round before `predicate`; it raises to abort the wait
        (for example when the process being waited for has died).
    interval : float
        Seconds between rounds.

    Raises
    ------
    TimeoutError
        If `predicate` is not true within `timeout`.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        if check is not None:
            check()
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - "not ready yet", reported on timeout
            logger.debug("still waiting for %s: %r", what, exc)
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def child_env(overrides: Mapping[str, str | None] | None) -> dict[str, str]:
    """Return a copy of ``os.environ`` with `overrides` applied (None removes)."""
    env = dict(os.environ)
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class ManagedProcess:
    """A child process in its own session whose output goes to a log file.

    The process (and its process group) is always killed on `stop`, and at
    interpreter exit if the owner forgot.

    Parameters
    ----------
    name : str
        Short name used in logs and errors.
    argv : sequence of str
        Command line.
    log_path : Path
        File that receives stdout and stderr (appended to, so restarts keep history).
    env : mapping, optional
        Complete environment of the child; default: this process's environment.
    cwd : Path, optional
        Working directory of the child.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """Process id of the child (kept after it exits), or None if never started."""
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once the child has exited, else None."""
        return self._popen.poll() if self._popen is not None else None

    @property
    def alive(self) -> bool:
        """Whether the child is running."""
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        """Start the child; a running child is left alone."""
        if self.alive:
            return
        self._close_log()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_offset = self._log.tell()
        logger.debug("starting %s: %s", self.name, " ".join(self.argv))
        self._popen = subprocess.Popen(  # noqa: S603 - argv built by this package
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        _LIVE.add(self)
        logger.info("started %s (pid %d)", self.name, self._popen.pid)

    def check_running(self) -> None:
        """Raise `ProcessStartError` with the log tail if the child has exited."""
        if self._popen is None:
            raise ProcessStartError(f"{self.name} was never started")
        code = self._popen.poll()
        if code is not None:
            tail = self.log_tail(since_start=True)
            raise ProcessStartError(f"{self.name} exited with status {code}; last log lines:\n{tail}")

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the child's whole process group (no-op once it exited)."""
        if self._popen is None or self._popen.poll() is not None:
            return
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0, *, kill: bool = False) -> int | None:
        """Stop the child and wait for it.

        Parameters
        ----------
        timeout : float
            Seconds to wait after SIGTERM before escalating to SIGKILL.
        kill : bool
            Send SIGKILL right away (an abrupt crash, for fault tests).

        Returns
        -------
        int or None
            The exit status, or None if the child was never started.
        """
        popen = self._popen
        if popen is None:
            return None
        if popen.returncode is not None and self._log is None:
            return popen.returncode  # already stopped and reaped
        if popen.poll() is None:
            self.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.info("%s still running %.0f s after SIGTERM; killing it", self.name, timeout)
                self.send_signal(signal.SIGKILL)
                popen.wait(timeout=10.0)
        # Reap leftovers of the group (e.g. a nanny's worker) that outlived the leader.
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._close_log()
        _LIVE.discard(self)
        logger.info("stopped %s (status %s)", self.name, popen.returncode)
        return popen.returncode

    def log_tail(self, lines: int = 40, *, since_start: bool = False) -> str:
        """Return the last `lines` lines of the child's log.

        Parameters
        ----------
        lines : int
            Number of lines.
        since_start : bool
            Only what the latest `start` wrote (the log is appended to across restarts).
        """
        try:
            with open(self.log_path, "rb") as log:
                end = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_offset if since_start else 0, end - _TAIL_BYTES))
                data = log.read()
        except OSError:
            return "<no log>"
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@atexit.register
def _kill_leftovers() -> None:
    """Kill children whose owners did not stop them."""
    for proc in list(_LIVE):
        proc.stop(timeout=2.0)
