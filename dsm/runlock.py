"""A lease on an output store, so two runs never interleave their writes.

``dsm run`` holds the lock for as long as it runs. The lock is a small JSON object stored
beside the output store (``<output>.lock``: a local file or an object in the same bucket,
outside the store so that replacing the store cannot delete it) that names its holder (run
id, host, process id, start time) and carries a heartbeat refreshed by a background thread.

A lock is *live* while its heartbeat is younger than ``ttl`` seconds, and *stale* when the
heartbeat is older, or when its holder ran on this host and that process is gone (a job
killed by SIGKILL leaves its lock behind; the rerun takes it over at once). A live lock held
by another run makes :func:`acquire` raise :class:`LockError` naming the holder.

The lease is enforced, not advisory: every writer (the stores of models, products, COGs and
the stage records) calls :meth:`RunLock.check` before it writes, and a holder whose lock was
taken over (or whose heartbeat could not be renewed for ``ttl`` seconds, so another run may
have taken it) gets :class:`LockLostError` naming the new holder and stops before it records
anything more, so what its workers may still write is never marked done. A holder can still
lose its lease between its check and its write (a long pause): each lease carries a fencing
token (:attr:`RunLock.fence`, larger for every later lease), writers record it with the
store's records, and a record write carrying a smaller token than the one stored is refused
(:func:`dsm.store.set_attrs`), so a stale holder's late write is detected, never applied.

Object stores have no atomic create-if-absent that every S3-compatible server honours, so
acquiring is *write, wait, read back*: two runs racing within ``settle`` seconds both write,
and only the one whose record is read back proceeds. That is the usual lease protocol and is
enough for two people starting the same job, which is what the lock is for.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Protocol

from dsm import files
from dsm.errors import LockError, LockLostError, StoreError, TransientIOError
from dsm.storeref import StoreRef

log = logging.getLogger(__name__)


class Lease(Protocol):
    """What a writer needs of a lock: the holder's run id, its fencing token and a check
    before each write."""

    @property
    def run_id(self) -> str: ...

    @property
    def fence(self) -> int: ...

    def check(self) -> None:
        """Raise :class:`LockLostError` when the lease is no longer this run's."""


@dataclass(frozen=True)
class LockRecord:
    """Who holds a lock, and since when."""

    run_id: str
    host: str
    pid: int
    started: str
    heartbeat: float  # seconds since the epoch
    fence: int = 0  #: fencing token: nanoseconds since the epoch when the lease was taken (0: a record of dsm < 0.9)

    def age(self, now: float | None = None) -> float:
        """Seconds since the last heartbeat."""
        return (time.time() if now is None else now) - self.heartbeat

    def describe(self) -> str:
        """One line naming the holder."""
        return f"run {self.run_id} (pid {self.pid} on {self.host}, started {self.started}, heartbeat {self.age():.0f} s ago)"


def lock_ref(target: StoreRef) -> StoreRef:
    """The lock's location for an output store (``<store>.lock`` beside it, same options)."""
    return target.at(target.url.rstrip("/") + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(record: LockRecord, ttl: float, now: float | None = None) -> bool:
    """Whether ``record`` no longer protects anything (old heartbeat or dead local holder)."""
    if record.age(now) > ttl:
        return True
    return record.host == socket.gethostname() and not _pid_alive(record.pid)


class RunLock:
    """The lease of one run on an output store; use :func:`acquire`.

    Parameters
    ----------
    ref
        Location of the lock object (see :func:`lock_ref`).
    ttl
        Seconds after the last heartbeat at which the lock counts as abandoned.
    heartbeat
        Seconds between heartbeats (well below ``ttl``).
    run_id
        The run's id (default: a new random one).
    break_lock
        Take the lock even from a live holder (the user knows it is dead).

    Used as a context manager, the lock is acquired on entry and released on exit.
    """

    def __init__(self, ref: StoreRef, *, ttl: float = 120.0,
                 heartbeat: float = 15.0, run_id: str | None = None, break_lock: bool = False) -> None:
        if heartbeat >= ttl:
            raise ValueError(f"heartbeat ({heartbeat} s) must be shorter than ttl ({ttl} s)")
        self.url = ref.url
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.break_lock = break_lock
        self._fs, self._path = ref.fs()
        self.record = LockRecord(run_id or uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(),
                                 dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), time.time())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False
        self._lost: str | None = None  # why the lease was lost (set by the heartbeat thread)
        self._renewed = 0.0  # time.time() of the last heartbeat written

    @property
    def run_id(self) -> str:
        """The holder's run id."""
        return self.record.run_id

    @property
    def fence(self) -> int:
        """The lease's fencing token: larger for every later lease (the time it was taken, ns).

        Writers record it with what they write (:func:`dsm.store.set_attrs`), and a write
        carrying a smaller token than the one recorded is refused: a holder that lost its
        lease between its check and its write cannot overwrite a later run's records.
        """
        return self.record.fence

    # -- reading and writing the object ----------------------------------------------
    def read(self) -> LockRecord | None:
        """The record stored now, or None when there is none (or it is unreadable)."""
        try:
            with self._fs.open(self._path, "rb") as f:
                raw = json.loads(f.read())
            return LockRecord(**raw)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:  # a torn or foreign object: treat as absent, say so
            log.warning("ignoring unreadable lock %s: %s", self.url, exc)
            return None

    def _write(self) -> None:
        self.record = LockRecord(**{**asdict(self.record), "heartbeat": time.time()})
        files.make_folder(self._fs, self._path.rsplit("/", 1)[0])
        files.write_bytes(self._fs, self._path, json.dumps(asdict(self.record)).encode())
        self._renewed = self.record.heartbeat

    # -- the lease ----------------------------------------------------------------------
    def acquire(self, settle: float = 0.5) -> None:
        """Take the lock, or raise :class:`LockError` when another live run holds it.

        Raises
        ------
        LockError
            Another live run holds the lock, or took it at the same moment.
        TransientIOError
            The lock's storage cannot be reached (endpoint, credentials, network).
        """
        try:
            self._acquire(settle)
        except (LockError, StoreError):
            raise
        except Exception as exc:  # the first contact with the output storage: say which and why
            raise TransientIOError(
                f"cannot take the lock {self.url}: {type(exc).__name__}: {exc}. Check that the output storage "
                "is reachable (stores.storage_options: endpoint_url, credentials) and rerun") from exc

    def _acquire(self, settle: float) -> None:
        break_lock = self.break_lock
        held = self.read()
        if held is not None and held.run_id != self.record.run_id and not break_lock and not is_stale(held, self.ttl):
            raise LockError(
                f"{self.url.removesuffix('.lock')} is locked by {held.describe()}: another dsm run is writing to it. "
                f"Wait for it to finish; if it is dead, the lock expires {self.ttl:.0f} s after its last "
                f"heartbeat, or rerun with --break-lock (lock: {self.url})")
        if held is not None and held.run_id != self.record.run_id:
            log.warning("taking over %s lock of %s", "the" if break_lock else "the stale", held.describe())
        if not self.record.fence or held is None or held.run_id != self.record.run_id:  # a new lease: a later token
            self.record = LockRecord(**{**asdict(self.record), "fence": max(time.time_ns(), (held.fence if held else 0) + 1)})
        self._write()
        time.sleep(settle)
        now = self.read()
        if now is None or now.run_id != self.record.run_id:
            raise LockError(f"another dsm run took the lock {self.url} at the same moment "
                            f"({now.describe() if now else 'and released it'}); start again later")
        self._held, self._lost = True, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="dsm-run-lock", daemon=True)
        self._thread.start()

    def _taken_by(self, held: LockRecord | None) -> str | None:
        """Why the lease is gone, given the record stored now (None: it is still ours)."""
        if held is None:
            return f"the lock {self.url} was removed"
        if held.run_id != self.record.run_id:
            return f"lost the lock {self.url} to {held.describe()}"
        return None

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                lost = self._taken_by(self.read())
                if lost is not None:
                    self._lost = lost
                    log.error("%s: this run stops before its next write", lost)
                    return
                self._write()
            except Exception as exc:  # a storage hiccup: the next beat tries again
                log.warning("lock heartbeat failed (%s); retrying in %.0f s", exc, self.heartbeat)

    def check(self) -> None:
        """Raise :class:`LockLostError` unless this run still holds the lease.

        Called by every writer before it writes. The lease is gone when the heartbeat thread
        saw another holder, when the stored record now names another run (or none), or when
        no heartbeat could be written for ``ttl`` seconds (another run may then take it).
        """
        if not self._held:
            raise LockLostError(f"run {self.run_id} does not hold the lock {self.url} (not acquired, or released)")
        lost = self._lost
        if lost is None:
            try:
                lost = self._taken_by(self.read())
            except Exception as exc:  # unreadable now: trust the lease while the heartbeat is recent
                if time.time() - self._renewed <= self.ttl:
                    log.warning("could not read the lock %s (%s); the last heartbeat is recent", self.url, exc)
                    return
                lost = f"the lock {self.url} could not be renewed for {self.ttl:.0f} s ({exc})"
        if lost is None and time.time() - self._renewed > self.ttl:
            lost = f"the lock {self.url} was not renewed for {time.time() - self._renewed:.0f} s (ttl {self.ttl:.0f} s)"
        if lost is not None:
            self._lost = lost
            raise LockLostError(f"{lost}: run {self.run_id} stopped before writing more. "
                                "What it wrote so far is recorded; the run holding the lock now goes on")

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 5)
        self._held = False
        try:
            held = self.read()
            if held is not None and held.run_id == self.record.run_id:
                self._fs.rm(self._path)
        except Exception as exc:  # the lock then goes stale by itself
            log.warning("could not remove the lock %s (%s); it expires after %.0f s", self.url, exc, self.ttl)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
