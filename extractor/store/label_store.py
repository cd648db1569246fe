"""The label store: one SQLite file (WAL) of teacher answers keyed by content, teacher and preprocessing."""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from extractor.errors import CacheError
from extractor.ledger import RequestRecord
from extractor.store.holdings import ANSWERED, Holdings, images_sent, present, read_holdings, stored_detections
from extractor.store.journal import RequestJournal, settle_lost
from extractor.store.keys import cache_keys
from extractor.store.label_query import LABEL_COLUMNS, LABELS_QUERY, labels_query, shaped
from extractor.store.lock import StoreLock
from extractor.store.schema import foreign, has_table, open_read_only, open_writable
from extractor.store.summary import summarize

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_EXPORT_CHUNK = 100_000  # rows per chunk of a streamed read: memory stays flat whatever the table's size


@dataclass(frozen=True)
class LabelRow:
    """One teacher answer about one image content."""

    digest: str
    label: int
    kind: str
    soft: np.ndarray | None  # (C,) float32, or None for a label-only teacher


@dataclass(frozen=True)
class Failure:
    """An input that could not be labeled, with a one-line reason."""

    path: str
    digest: str | None
    stage: str
    """Where it failed: "decode", "teacher" (the request brought no answer), INVALID_ANSWER, ..."""
    reason: str


INVALID_ANSWER = "answer"
"""The stage of a failure whose image the teacher answered, paid for, with an answer that cannot be used."""


class LabelStore:
    """A persistent, content-addressed cache of teacher answers.

    Writes are grouped: :meth:`commit_batch` writes rows in one transaction, and a label job commits
    through a ``GroupCommit`` (``extractor.labeling.commit``), so a crash loses at most its open group. Safe
    to open from one thread; readers in other processes are fine (WAL). One job writes at a time
    (:meth:`writer`).

    A file that is not a store is refused before anything is written to it. A store this process cannot
    write (a read-only file or mount) is opened read-only: reading works, writing raises CacheError.

    Args:
        path: the store's file.
        wait_s: how long a job on this handle waits for another job's write lock (:meth:`writer`); 0: none.
    """

    def __init__(self, path: str | Path, wait_s: float = 0.0) -> None:
        self.path, self.wait_s = Path(path), wait_s
        if self.path.exists() and self.path.is_dir():
            raise CacheError(f"--store {self.path} is a directory; give a file path such as labels.db")
        self._guard = threading.RLock()  # one transaction at a time on this connection
        try:
            what = foreign(self.path) if self.path.exists() else None
            if what is not None:
                raise CacheError(f"{self.path} is not a usable label store: {what}; nothing was changed")
            self.read_only = self.path.exists() and not _writable(self.path)
            if self.read_only:
                self.db = open_read_only(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = open_writable(self.path)
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"{self.path} is not a usable label store: {exc}") from None
        self._lock: StoreLock | None = None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one writer ---------------------------------------------------------------------

    @contextmanager
    def writer(self, kind: str, wait_s: float | None = None) -> Iterator[StoreLock]:
        """Holds the store's write lock for a job of ``kind``, waiting up to ``wait_s`` (None: the handle's own
        ``wait_s``) for another job's (0: stop at once). Taking it marks the requests a killed job left in flight
        as lost (they stay counted).

        Raises:
            StoreBusy: another job holds the store.
            CacheError: the store is read-only.
        """
        if self.read_only:
            raise CacheError(f"--store {self.path} is read-only; a job that buys answers needs to write it")
        with StoreLock.of(self.path, kind, self.wait_s if wait_s is None else wait_s) as lock:
            with self._transaction() as db:
                lost = settle_lost(db)
            if lost:
                log.warning("%d requests that an earlier job left in flight when it was killed count as sent",
                            lost)
            self._lock = lock
            try:
                yield lock
            finally:
                self._lock = None

    def journal(self, job_id: int, identity: str) -> RequestJournal:
        """The job's request journal: each request on record before it is sent."""
        return RequestJournal(self.path, job_id, identity)

    # -- teachers, preprocessing, files -------------------------------------------------

    def register(self, teacher_fingerprint: str, description: dict, num_classes: int,
                 class_names: Sequence[str] | None, preprocess_fingerprint: str, spec: dict) -> None:
        """Records what a teacher and a preprocessing fingerprint stand for."""
        now = time.time()
        with self._transaction():
            self.db.execute(
                "INSERT INTO teachers VALUES (?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE SET "
                "description = excluded.description, num_classes = excluded.num_classes, "
                "class_names = COALESCE(excluded.class_names, class_names)",
                (teacher_fingerprint, json.dumps(description), num_classes,
                 json.dumps(list(class_names)) if class_names else None, now))
            self.db.execute("INSERT OR IGNORE INTO preprocessings VALUES (?, ?, ?)",
                            (preprocess_fingerprint, json.dumps(spec, sort_keys=True), now))

    def teacher(self, fingerprint: str) -> dict:
        """The registered description of a teacher, with num_classes and class_names."""
        row = self.db.execute("SELECT description, num_classes, class_names FROM teachers "
                              "WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if row is None:
            raise CacheError(f"teacher {fingerprint[:12]} is not in {self.path}")
        return {**json.loads(row[0]), "fingerprint": fingerprint, "num_classes": row[1],
                "class_names": json.loads(row[2]) if row[2] else None}

    def preprocess_spec(self, fingerprint: str) -> dict:
        row = self.db.execute("SELECT spec FROM preprocessings WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if row is None:
            raise CacheError(f"preprocessing {fingerprint[:12]} is not in {self.path}")
        return json.loads(row[0])

    def known_files(self, root: str) -> dict[str, tuple[int, int, str]]:
        """relative_path -> (size, mtime_ns, digest) of every file seen under ``root``."""
        rows = self.db.execute("SELECT relative_path, size, mtime_ns, digest FROM files WHERE root = ?",
                               (storable_name(root),))
        return {relative: (size, mtime_ns, digest) for relative, size, mtime_ns, digest in rows}

    def record_files(self, root: str, files: Iterable[tuple[str, int, int, str]]) -> None:
        """Remembers where each content was seen: (relative_path, size, mtime_ns, digest) under root."""
        now = time.time()
        with self._transaction():
            self.db.executemany(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(root, relative_path) DO UPDATE SET "
                "digest = excluded.digest, size = excluded.size, mtime_ns = excluded.mtime_ns, seen = excluded.seen",
                ((storable_name(root), storable_name(relative), digest, size, mtime_ns, now)
                 for relative, size, mtime_ns, digest in files))

    # -- labels -----------------------------------------------------------------------

    def cached_digests(self, teacher: str, preprocess: str, digests: Iterable[str]) -> set[str]:
        """The subset of ``digests`` that already has an answer for this teacher and preprocessing."""
        digests = list(digests)
        return present(self.db, ANSWERED, dict(zip(cache_keys(digests, teacher, preprocess), digests)))

    def holdings(self, teacher: str, identity: str, preprocesses: Iterable[str], digests: Iterable[str], *,
                 retry_failed: bool = False, detector: str | None = None, canary: int = 0) -> Holdings:
        """What the store holds about a label job's images (``digests``, in the job's order), in one read: the
        answers under each of ``preprocesses`` (the first is the plain images'), invalid answers unless
        ``retry_failed``, the job's ledger (``identity``), ``detector``'s detections and ``canary`` answers."""
        digests, preprocesses = list(digests), list(preprocesses)
        with_invalid = not retry_failed and has_table(self.db, "invalid_answers")
        keyed = {fp: dict(zip(cache_keys(digests, teacher, fp), digests)) for fp in preprocesses}
        return read_holdings(self.db, keyed, plain=preprocesses[0], teacher=teacher, identity=identity,
                             with_invalid=with_invalid, detector=detector, canary=canary)

    def commit_batch(self, job_id: int, teacher: str, preprocess: str, rows: Sequence[LabelRow],
                     failures: Sequence[Failure] = (), requests: Sequence[RequestRecord] = ()) -> None:
        """Writes answers, failures and ledger rows in one transaction, and counts the new answers. A failure
        of stage ``INVALID_ANSWER`` also records that this teacher's answer about that content was invalid."""
        now = time.time()
        by_kind: dict[str, list[tuple]] = {}
        for key, row in zip(cache_keys([row.digest for row in rows], teacher, preprocess), rows):
            soft = None if row.soft is None else np.asarray(row.soft, np.float32)
            by_kind.setdefault(row.kind, []).append((key, row.digest, teacher, preprocess, int(row.label), row.kind,
                                                     None if soft is None else soft.tobytes(),
                                                     None if soft is None else len(soft), job_id, now))
        with self._transaction():
            for kind, values in by_kind.items():
                values.sort(key=itemgetter(0))  # in key order, the index takes them leaf after leaf
                added = self.db.executemany("INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                            values).rowcount  # answers already stored are not counted again
                self.db.execute("INSERT INTO label_counts VALUES (?, ?, ?, ?) ON CONFLICT (teacher, preprocess, "
                                "kind) DO UPDATE SET answers = answers + excluded.answers",
                                (teacher, preprocess, kind, added))
            self.db.executemany("INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                                ((job_id, storable_name(f.path), f.digest, f.stage, f.reason, now)
                                 for f in failures))
            invalid = {f.digest: f.reason for f in failures if f.stage == INVALID_ANSWER and f.digest}
            if invalid:
                self.db.executemany("INSERT OR REPLACE INTO invalid_answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                                    ((key, digest, teacher, preprocess, reason, job_id, now) for key, (digest, reason)
                                     in zip(cache_keys(list(invalid), teacher, preprocess), invalid.items())))
            self._insert_requests(job_id, requests)

    def _insert_requests(self, job_id: int, requests: Sequence[RequestRecord]) -> None:
        if not requests:
            return
        identity = self.db.execute("SELECT identity FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        self.db.executemany(
            "INSERT INTO requests (job_id, identity, time, images, images_sent, status, latency_s, retries, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((job_id, identity, r.time, r.images, r.charged, str(r.status), r.latency_s, r.retries, r.error)
             for r in requests))

    def label_sources(self) -> list[tuple[str, str, int]]:
        """(teacher fingerprint, preprocess fingerprint, answers) of every source of answers, most first."""
        rows = self.db.execute("SELECT teacher, preprocess, SUM(answers) AS n FROM label_counts GROUP BY teacher, "
                               "preprocess HAVING n > 0 ORDER BY n DESC")
        return [(teacher, preprocess, int(count)) for teacher, preprocess, count in rows]

    def labels(self, teacher: str | None = None, preprocess: str | None = None,
               digests: Sequence[str] | None = None) -> pd.DataFrame:
        """Stored answers joined with the files they came from, one row per answer.

        Columns: digest, teacher, preprocess, label, kind, soft (float32 array or None),
        created, root, relative_path (the first path seen for that content).
        ``digests`` (at most a few hundred) restricts the rows to those contents.
        """
        import pandas as pd  # pandas takes 0.5 s to import: only reads that return frames pay for it

        query, params = labels_query(teacher, preprocess, digests)
        return shaped(pd.read_sql_query(query, self.db, params=params))

    def label_columns(self, rows: int = _EXPORT_CHUNK) -> Iterator[dict[str, list]]:
        """Every row of :meth:`labels`, ``rows`` at a time from one streamed cursor, as columns (name -> list;
        ``soft`` as its stored float32 bytes): memory stays flat whatever the size of the table (export)."""
        cursor = self.db.execute(LABELS_QUERY)
        while True:
            chunk = cursor.fetchmany(rows)
            if not chunk:
                return
            *front, seen = zip(*chunk)
            paths = [(None, None) if text is None else text.split("\0", 1) for text in seen]
            yield {**dict(zip(LABEL_COLUMNS[:7], map(list, front))), "root": [root for _, root in paths],
                   "relative_path": [relative for relative, _ in paths]}

    # -- jobs, failures, ledger ---------------------------------------------------------

    def begin_job(self, kind: str, identity: str, teacher: str | None, preprocess: str | None,
                  images_root: str | None, config: dict) -> int:
        with self._transaction():
            cursor = self.db.execute(
                "INSERT INTO jobs (kind, identity, teacher, preprocess, images_root, config, started, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (kind, identity, teacher, preprocess, images_root, json.dumps(config, sort_keys=True), time.time()))
        if self._lock is not None:
            self._lock.set_job(int(cursor.lastrowid))
        return int(cursor.lastrowid)

    def finish_job(self, job_id: int, status: str, summary: dict) -> None:
        with self._transaction():
            self.db.execute("UPDATE jobs SET finished = ?, status = ?, summary = ? WHERE id = ?",
                            (time.time(), status, json.dumps(summary, sort_keys=True), job_id))

    def label_roots(self, teacher: str, preprocess: str) -> list[str]:
        """The image folders that label jobs of this teacher and preprocessing ran on, oldest first."""
        rows = self.db.execute("SELECT images_root FROM jobs WHERE kind = 'label' AND teacher = ? AND preprocess = ? "
                               "AND images_root IS NOT NULL GROUP BY images_root ORDER BY MIN(id)",
                               (teacher, preprocess))
        return [root for (root,) in rows]

    def last_job_config(self, kind: str, identity: str) -> dict | None:
        """The configuration the latest job of this kind and identity ran with, or None."""
        row = self.db.execute("SELECT config FROM jobs WHERE kind = ? AND identity = ? ORDER BY id DESC LIMIT 1",
                              (kind, identity)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def images_sent(self, identity: str) -> int:
        """Images sent to the teacher, retries included, by every job with this identity."""
        return images_sent(self.db, identity)

    def teacher_requests(self, teacher: str) -> pd.DataFrame:
        """The ledger of every job that asked this teacher (any images, preprocessing or views), one row
        per request. Columns: time, images, images_sent, status, latency_s (retries and backoff included),
        retries, error.
        """
        import pandas as pd

        return pd.read_sql_query(
            "SELECT r.time, r.images, r.images_sent, r.status, r.latency_s, r.retries, r.error FROM requests r "
            "JOIN jobs j ON r.job_id = j.id WHERE j.teacher = ? ORDER BY r.id", self.db, params=(teacher,))

    def failures(self, job_id: int) -> pd.DataFrame:
        """The inputs a job could not label, with their one-line reasons."""
        import pandas as pd

        return pd.read_sql_query("SELECT path, digest, stage, reason FROM failures WHERE job_id = ? ORDER BY path",
                                 self.db, params=(job_id,))

    # -- face detections ----------------------------------------------------------------

    def detections(self, detector: str, digests: Iterable[str]) -> dict[str, str | None]:
        """Stored detections (JSON text, or None where no face was found) by digest."""
        return stored_detections(self.db, detector, digests)

    def put_detections(self, detector: str, detections: Iterable[tuple[str, str | None]]) -> None:
        now = time.time()
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO detections VALUES (?, ?, ?, ?)",
                                ((digest, detector, detection, now) for digest, detection in detections))

    # -- summaries ----------------------------------------------------------------------

    def stats(self) -> dict:
        """Counts by teacher and preprocessing, jobs, failures and the request ledger (``store.summary``)."""
        return summarize(self.db, self.path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on error; one at a time on this connection."""
        if self.read_only:
            raise CacheError(f"--store {self.path} is read-only: this command needs to write it")
        with self._guard:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")


def _writable(path: Path) -> bool:
    """Whether this process may write the store: its file and its folder (for the -wal and -shm)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def storable_name(name: str) -> str:
    """A file name as the store keeps it: valid UTF-8 text. Bytes that are not UTF-8 (which Python carries as
    surrogate escapes) are written as ``\\xNN``, so the name is kept, printable and exported."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
