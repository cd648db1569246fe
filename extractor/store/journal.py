"""The request journal: each teacher request is on record in the store before it is sent, and settled after.

A request's row is written with status ``sending`` and the images it will send, and committed, before the
request goes out; its outcome replaces the status when it comes back. A job killed with requests in flight
leaves their rows ``sending``: they count in ``images_sent`` (the budget of the next run) like any other, and
the next job of the store marks them ``lost``. The journal has its own connection, used by the teacher's
threads while the job's connection commits answers.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from extractor.ledger import RequestRecord

SENDING = "sending"
"""The status of a request on record but not settled: in flight, or in flight when its job was killed."""
LOST = "lost"
"""A request in flight when its job ended without settling it: sent, for all we know; its answer never came."""


class RequestJournal:
    """Writes one job's request rows to the store, each in its own transaction.

    Args:
        path: the store (opened for writing elsewhere, so its tables exist).
        job_id: the job the requests belong to.
        identity: the job's identity, whose rows make up its budget across runs.
    """

    def __init__(self, path: Path, job_id: int, identity: str) -> None:
        self.job_id, self.identity = job_id, identity
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA synchronous=NORMAL")  # a kill loses nothing committed
        self._lock = threading.Lock()

    def open(self, started: float, images: int) -> int:
        """Puts a request on record before it is sent: its row id."""
        with self._lock:
            cursor = self.db.execute(
                "INSERT INTO requests (job_id, identity, time, images, images_sent, status, latency_s, retries, "
                "error) VALUES (?, ?, ?, ?, ?, ?, 0, 0, NULL)",
                (self.job_id, self.identity, started, images, images, SENDING))
            return int(cursor.lastrowid)

    def add(self, row: int, images: int) -> None:
        """Puts another attempt of an open request on record before it is sent."""
        with self._lock:
            self.db.execute("UPDATE requests SET images_sent = images_sent + ? WHERE id = ?", (images, row))

    def settle(self, row: int | None, record: RequestRecord, charged: int) -> None:
        """Writes a request's outcome over its open row (``row``), or as a new row where it had none (nothing
        was charged: a metadata read, a budget refusal). ``charged``: the images the ledger charged for it."""
        values = (record.time, record.images, max(charged, record.charged), str(record.status), record.latency_s,
                  record.retries, record.error)
        with self._lock:
            if row is None:
                self.db.execute("INSERT INTO requests (job_id, identity, time, images, images_sent, status, "
                                "latency_s, retries, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (self.job_id, self.identity, *values))
            else:
                self.db.execute("UPDATE requests SET time = ?, images = ?, images_sent = ?, status = ?, "
                                "latency_s = ?, retries = ?, error = ? WHERE id = ?", (*values, row))

    def abandon(self, row: int) -> None:
        """Marks an open row whose outcome was never recorded (its teacher raised before recording it)."""
        with self._lock:
            self.db.execute("UPDATE requests SET status = ?, error = ? WHERE id = ? AND status = ?",
                            (LOST, "no outcome was recorded for this request", row, SENDING))

    def close(self) -> None:
        self.db.close()


def settle_lost(db: sqlite3.Connection) -> int:
    """Marks the requests that jobs no longer running left in flight as ``lost``: run by a job that holds the
    store's lock, before it sends anything. Returns how many; their images stay counted as sent."""
    cursor = db.execute("UPDATE requests SET status = ?, error = 'in flight when its job was killed' "
                        "WHERE status = ?", (LOST, SENDING))
    return cursor.rowcount
