"""The query ledger of one job: the image budget, charged before each request, and a record of every request."""
from __future__ import annotations

import threading
from dataclasses import dataclass

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


class Ledger:
    """The images one job may still send, and the requests it made: thread-safe, shared by the teacher's
    threads (which charge and record) and the job (which drains the records into each committed batch).

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

    @property
    def used(self) -> int:
        """Images charged so far, earlier runs included."""
        return self._used

    @property
    def remaining(self) -> int | None:
        """Images that may still be sent; None without a budget."""
        return None if self.budget is None else max(0, self.budget - self._used)

    def charge(self, images: int) -> None:
        """Counts ``images`` as sent, before they are: raises QueryBudgetExceeded and counts nothing
        when they would pass the budget."""
        with self._lock:
            if self.budget is not None and self._used + images > self.budget:
                raise QueryBudgetExceeded(
                    f"sending {images} more images would exceed --budget {self.budget} "
                    f"({self._used} sent, {max(0, self.budget - self._used)} left)")
            self._used += images

    def charged_elsewhere(self, images: int) -> None:
        """Counts ``images`` that another process charged against this job's budget (a Ray worker, through
        the budget actor that checked them), so that :attr:`remaining` stays true here."""
        with self._lock:
            self._used += images

    def record(self, record: RequestRecord) -> None:
        """Keeps one request's record until the next :meth:`drain`."""
        with self._lock:
            self._records.append(record)

    def drain(self) -> list[RequestRecord]:
        """The records kept since the last call, oldest first; the ledger forgets them."""
        with self._lock:
            records, self._records = self._records, []
        return records
