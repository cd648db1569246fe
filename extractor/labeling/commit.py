"""The group commit of a label job: answered batches committed several at a time, a kill losing at most one group."""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from extractor.ledger import RequestRecord
from extractor.store.label_store import Failure, LabelRow, LabelStore

GROUP_ROWS = 65_536
"""Answers a label job commits in one transaction, at most: the most that a kill -9 of the job loses. At 1M
answers a group of 64k writes about a third of a key-index page per answer; one of 4k, nearly a whole page."""
GROUP_WAIT_S = 1.0
"""Seconds after a commit at which a label job's next answered batch is committed with those pending: a kill
loses at most about the last second of answers."""


class GroupCommit:
    """A job's answered batches, committed several at a time (group commit).

    Each batch's failures and request records are committed with it (the ledger never forgets a paid
    request); its answers wait in memory until ``rows`` are pending, until a batch arrives ``wait_s`` or
    more after the last commit, or until :meth:`flush`. A kill loses the answers not committed: those of
    the last ``wait_s`` of answering, at most ``rows``, paid for and asked about again by the next run. A
    job slower than a batch every ``wait_s`` commits each batch as it comes.

    Args:
        store: where the answers go.
        job_id: the job they belong to.
        rows: pending answers that make a commit due (the most a kill loses).
        wait_s: time since the last commit that makes the next batch's commit due.
        detector: the fingerprint of the face detector whose detections :meth:`hold_detections` takes, if any.
    """

    def __init__(self, store: LabelStore, job_id: int, rows: int = GROUP_ROWS, wait_s: float = GROUP_WAIT_S,
                 detector: str | None = None) -> None:
        self.store, self.job_id, self.rows, self.wait_s, self.detector = store, job_id, rows, wait_s, detector
        self._detections: list[tuple[str, str | None]] = []
        self._detections_lock = threading.Lock()
        self._source: tuple[str, str] | None = None  # (teacher, preprocess) of the pending answers
        self._answers: list[LabelRow] = []
        self._committed = float("-inf")  # time.monotonic() of the last commit of answers

    def hold_detections(self, detections: list[tuple[str, str | None]]) -> None:
        """Takes face detections (digest, JSON or None for no face), from any thread: stored with the next batch."""
        with self._detections_lock:
            self._detections += detections

    def add(self, teacher: str, preprocess: str, rows: Sequence[LabelRow], failures: Sequence[Failure] = (),
            requests: Sequence[RequestRecord] = ()) -> None:
        """Takes one answered batch; commits the answers when due, else only the failures and records. The
        detections held are stored at once: the batch's requests were cropped by them."""
        with self._detections_lock:
            detections, self._detections = self._detections, []
        if detections and self.detector is not None:
            self.store.put_detections(self.detector, detections)
        if (rows or failures) and self._source not in (None, (teacher, preprocess)):
            self.flush()  # a transaction holds the answers (and invalid answers) of one teacher and preprocessing
        if rows:
            self._source = (teacher, preprocess)
            self._answers += rows
        if self._answers and (len(self._answers) >= self.rows or time.monotonic() - self._committed >= self.wait_s):
            self._commit(failures, requests)
        elif failures or requests:
            self.store.commit_batch(self.job_id, teacher, preprocess, (), failures, requests)

    def flush(self) -> None:
        """Commits the pending answers, if any."""
        if self._answers:
            self._commit()

    def _commit(self, failures: Sequence[Failure] = (), requests: Sequence[RequestRecord] = ()) -> None:
        self.store.commit_batch(self.job_id, *self._source, self._answers, failures, requests)
        self._source, self._answers, self._committed = None, [], time.monotonic()
