"""One writer per store: an exclusive lock on ``<store>.lock`` that names its holder, with a heartbeat.

The lock is a POSIX record lock (``fcntl``) on a file beside the store, so the kernel releases it the moment its
holder dies, however it dies (``kill -9`` included): a killed job's lock is stale at once, and the next job takes
it over. Unlike ``flock``, a record lock is not inherited by forked children (the decode workers), which could
outlive a killed job; and NFS carries it to the server. Closing any descriptor of the file releases it, so this
process opens the file once while it holds the lock (``_HELD``) and reads it through that descriptor. The file
says who holds it (job, pid, host, since) and a heartbeat the holder rewrites every ``HEARTBEAT_S``: where a
file system shares the file between machines but not its locks (NFS mounted ``nolock``, some FUSE file
systems), a holder on another host whose heartbeat is younger than ``STALE_AFTER_S`` still counts as holding
it. The file is never deleted: a lock file removed and made again would let two holders lock two files.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from extractor.errors import CacheError, ConfigError

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
"""Seconds between the holder's rewrites of the lock file."""
STALE_AFTER_S = 60.0
"""A holder on another host whose heartbeat is older than this is taken to be gone (clocks may differ a little)."""
POLL_S = 0.2
"""Seconds between tries while waiting for a busy store."""
_LOCK_BYTES = 1024  # the lock file's size: its JSON, padded with spaces
_HELD: dict[str, StoreLock] = {}
"""The locks this process holds, by the lock file's real path: a second open of a held lock is the same lock."""
_HELD_GUARD = threading.Lock()


class StoreBusy(CacheError):
    """Another job writes to the store: the message names it, and how to wait for it."""


@dataclass(frozen=True)
class Holder:
    """Who holds a store, as its lock file says."""

    pid: int
    host: str
    kind: str
    since: float
    heartbeat: float
    token: str
    job: int | None = None
    released: float | None = None

    def describe(self) -> str:
        job = f"{self.kind} job {self.job}" if self.job is not None else f"a {self.kind} job starting"
        where = f"pid {self.pid}" + ("" if self.host == socket.gethostname() else f" on {self.host}")
        return f"{job}, {where}, since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))}"


def lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".lock")


def read_holder(store: Path) -> Holder | None:
    """What the lock file says, or None where there is none (or it was released, or cannot be read)."""
    path = lock_path(Path(store))
    with _HELD_GUARD:
        held = _HELD.get(os.path.realpath(path))
    if held is not None:  # opening the file again here would release this process's lock
        return held.holder
    try:
        return _parse(path.read_bytes())
    except OSError:
        return None


def _parse(data: bytes) -> Holder | None:
    try:
        fields = json.loads(data or b"null")
        holder = Holder(**fields) if isinstance(fields, dict) else None
    except (ValueError, TypeError):
        return None
    return None if holder is None or holder.released is not None else holder


class StoreLock:
    """The write lock of one store, held by this process from :meth:`acquire` to :meth:`release`.

    Args:
        store: the store's path.
        kind: the kind of job that writes (named to whoever finds the store busy).
        wait_s: how long :meth:`acquire` waits for a busy store; 0 stops at once, ``inf`` waits for ever.
    """

    def __init__(self, store: Path, kind: str, wait_s: float = 0.0) -> None:
        if not wait_s >= 0:
            raise ConfigError(f"--wait-for-store must be >= 0 seconds (or inf), got {wait_s}")
        self.store, self.kind, self.wait_s = Path(store), kind, wait_s
        self.path = lock_path(self.store)
        self.holder: Holder | None = None
        self.took_over: Holder | None = None
        """The holder before this one, where it ended without releasing the lock (killed, crashed)."""
        self._fd: int | None = None
        self._depth = 0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._write_guard = threading.Lock()

    @classmethod
    def of(cls, store: Path, kind: str, wait_s: float = 0.0) -> StoreLock:
        """This process's lock of ``store``: the one it holds already, else a new one."""
        with _HELD_GUARD:
            held = _HELD.get(os.path.realpath(lock_path(Path(store))))
        return held if held is not None else cls(store, kind, wait_s)

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lock, waiting up to ``wait_s`` for its holder.

        Raises:
            StoreBusy: naming the holder, when it still holds the store after ``wait_s``.
            CacheError: when the lock file cannot be made (a read-only folder: the store cannot be written).
        """
        if self._depth:
            self._depth += 1
            return
        deadline, waited = time.monotonic() + self.wait_s, False
        while True:
            busy = self._try()
            if busy is None:
                break
            if time.monotonic() >= deadline:
                hint = (f"waited {self.wait_s:g} s; " if self.wait_s else "") + \
                    "--wait-for-store SECONDS waits for it (inf: until it is done)"
                raise StoreBusy(f"store {self.store} is busy ({busy.describe()}); {hint}")
            if not waited:
                log.warning("store %s is busy (%s); waiting up to %g s", self.store, busy.describe(), self.wait_s)
                waited = True
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        self._depth = 1
        with _HELD_GUARD:
            _HELD[os.path.realpath(self.path)] = self
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="store-lock", daemon=True)
        self._beat.start()
        if self.took_over is not None:
            log.warning("took over store %s from %s, which ended without releasing it", self.store,
                        self.took_over.describe())

    def set_job(self, job_id: int) -> None:
        """Names the job that holds the store (known once it is recorded)."""
        if self.holder is not None:
            self._write(replace(self.holder, job=job_id))

    def release(self) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with _HELD_GUARD:
            _HELD.pop(os.path.realpath(self.path), None)
        try:
            if self.holder is not None:
                self._write(replace(self.holder, released=time.time()))
        finally:
            os.close(self._fd)
            self._fd, self.holder = None, None

    def _try(self) -> Holder | None:
        """Takes the lock if it is free; else returns its holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CacheError(f"--store {self.store} cannot be written: cannot make its lock file {self.path.name} "
                             f"({exc.strerror})") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):  # a file system without locks: say so
                os.close(fd)
                raise CacheError(f"--store {self.store}: its file system cannot lock {self.path.name} "
                                 f"({exc.strerror}); keep the store on a local disk") from None
            before = _parse(os.pread(fd, 1 << 16, 0))
            os.close(fd)
            return before or Holder(0, "?", "?", time.time(), time.time(), "?")
        before = _parse(os.pread(fd, 1 << 16, 0))
        if before is not None and before.host != socket.gethostname() and \
                time.time() - before.heartbeat < STALE_AFTER_S:
            os.close(fd)  # this file system's locks do not reach the other host: its heartbeat says it is there
            return before
        self._fd, self.took_over = fd, before
        now = time.time()
        self._write(Holder(os.getpid(), socket.gethostname(), self.kind, now, now, uuid.uuid4().hex))
        return None

    def _write(self, holder: Holder) -> None:
        """Rewrites the file in one write of a fixed size, so that a reader never sees half of it."""
        with self._write_guard:
            data = json.dumps(asdict(holder), sort_keys=True).encode().ljust(_LOCK_BYTES)
            os.pwrite(self._fd, data, 0)
            os.fsync(self._fd)
            self.holder = holder

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write(replace(self.holder, heartbeat=time.time()))
            except (OSError, TypeError) as exc:  # a full disk: the lock itself still holds
                log.debug("store lock heartbeat failed: %s", exc)
