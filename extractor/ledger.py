"""The query ledger of one job: the image budget, charged before each request, and a record of every request."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from extractor.errors import ConfigError, QueryBudgetExceeded


@dataclass(frozen=True)
class RequestRecord:
    """One request to a teacher (one ``predict`` call, or one HTTP request with its retries). Holds no
    header values."""

    time: float
    """Unix time the request started."""
    images: int
    """Images in the request (0 for a metadata read)."""
    charged: int
    """Images charged to the budget for this request, every attempt included (the store's images_sent)."""
    status: int | str
    """The final HTTP status, "ok" for a local call, or the error's name when no answer came."""
    latency_s: float
    """Wall time from start to outcome, retries and backoff included."""
    retries: int = 0
    """Attempts after the first."""
    error: str | None = None
    """``"ErrorName: message"`` (or the message) when the request failed, else None."""


class Journal(Protocol):
    """Where a ledger puts each request on record before it is sent (the store's request journal)."""

    def open(self, started: float, images: int) -> int: ...

    def add(self, row: int, images: int) -> None: ...

    def settle(self, row: int | None, record: RequestRecord, charged: int) -> None: ...

    def abandon(self, row: int) -> None: ...


class Ledger:
    """The images one job may still send, and the requests it made: thread-safe, shared by the teacher's
    threads (which charge and record) and the job.

    Without a journal, records are kept until the job drains them into a committed batch. With one
    (:meth:`keep_in`), each charge is on record in the journal before :meth:`charge` returns, so before
    anything is sent: a request is the charges one thread makes until it records the outcome, which then
    settles that request's row. A kill loses no charge.

    Args:
        budget: the most images this job may ever send (--budget), retries included; None for no limit.
        used: images already sent by earlier runs of the same job (from the store).
    """

    def __init__(self, budget: int | None = None, used: int = 0) -> None:
        if (budget is not None and budget < 0) or used < 0:
            raise ConfigError(f"--budget must be >= 0 images, got {budget} (used {used})")
        self.budget = budget
        self._used = used
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._journal: Journal | None = None
        self._open: dict[int, tuple[int, int]] = {}
        """Per thread (its ident): the journal row of its request in flight, and the images charged to it."""

    def keep_in(self, journal: Journal) -> None:
        """Puts every request on record in ``journal`` from now on, the records kept so far included."""
        for record in self.drain():
            journal.settle(None, record, record.charged)
        self._journal = journal

    def close(self) -> None:
        """Marks requests charged but never recorded (their teacher raised first) as lost; they stay counted."""
        with self._lock:
            rows, self._open = list(self._open.values()), {}
        if self._journal is not None:
            for row, _ in rows:
                self._journal.abandon(row)

    @property
    def used(self) -> int:
        """Images charged so far, earlier runs included."""
        return self._used

    @property
    def remaining(self) -> int | None:
        """Images that may still be sent; None without a budget."""
        return None if self.budget is None else max(0, self.budget - self._used)

    def charge(self, images: int) -> None:
        """Counts ``images`` as sent, before they are, and puts them on record in the journal: raises
        QueryBudgetExceeded and counts nothing when they would pass the budget."""
        with self._lock:
            if self.budget is not None and self._used + images > self.budget:
                raise QueryBudgetExceeded(
                    f"sending {images} more images would exceed --budget {self.budget} "
                    f"({self._used} sent, {max(0, self.budget - self._used)} left)")
            self._used += images
            journal = self._journal
            thread = threading.get_ident()
            row, charged = self._open.get(thread, (None, 0))
        if journal is None:
            return
        try:  # outside the lock: the other threads' charges do not wait for this one's write
            if row is None:
                row = journal.open(time.time(), images)
            else:
                journal.add(row, images)
        except BaseException:
            with self._lock:
                self._used -= images  # not on record, so not sent
            raise
        with self._lock:
            self._open[thread] = (row, charged + images)

    def charged_elsewhere(self, images: int) -> None:
        """Counts ``images`` that another process charged against this job's budget (a Ray worker, through
        the budget actor that checked them), so that :attr:`remaining` stays true here."""
        with self._lock:
            self._used += images

    def record(self, record: RequestRecord) -> None:
        """Settles the request this thread charged for in the journal; without one, keeps the record until
        the next :meth:`drain`."""
        with self._lock:
            journal = self._journal
            if journal is None:
                self._records.append(record)
                return
            row, charged = self._open.pop(threading.get_ident(), (None, 0))
        journal.settle(row, record, charged)

    def drain(self) -> list[RequestRecord]:
        """The records kept since the last call, oldest first; the ledger forgets them."""
        with self._lock:
            records, self._records = self._records, []
        return records
