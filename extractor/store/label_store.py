"""The label store: one SQLite file (WAL) of teacher answers keyed by content, teacher and preprocessing."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from extractor.errors import CacheError
from extractor.fingerprint import STORE_SCHEMA, cache_keys
from extractor.ledger import RequestRecord

if TYPE_CHECKING:
    import pandas as pd

_LABEL_FIELDS = """
    key TEXT NOT NULL PRIMARY KEY, digest TEXT NOT NULL, teacher TEXT NOT NULL, preprocess TEXT NOT NULL,
    label INTEGER NOT NULL, kind TEXT NOT NULL, soft BLOB, num_classes INTEGER,
    job_id INTEGER, created REAL NOT NULL"""
# A rowid table: answers are appended in the order they come and only the key index takes random writes.
# (A WITHOUT ROWID table, layout 2, keeps whole rows in key order, interior pages included: a random insert
# rewrote about 2.5x the bytes.)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS teachers (
    fingerprint TEXT PRIMARY KEY, description TEXT NOT NULL, num_classes INTEGER,
    class_names TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS preprocessings (
    fingerprint TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS labels ({_LABEL_FIELDS});
CREATE TABLE IF NOT EXISTS files (
    root TEXT NOT NULL, relative_path TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, seen REAL NOT NULL, PRIMARY KEY (root, relative_path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, identity TEXT NOT NULL, teacher TEXT,
    preprocess TEXT, images_root TEXT, config TEXT, started REAL NOT NULL, finished REAL,
    status TEXT NOT NULL, summary TEXT);
CREATE TABLE IF NOT EXISTS failures (
    job_id INTEGER NOT NULL, path TEXT NOT NULL, digest TEXT, stage TEXT NOT NULL,
    reason TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, identity TEXT NOT NULL, time REAL NOT NULL,
    images INTEGER NOT NULL, images_sent INTEGER NOT NULL, status TEXT NOT NULL,
    latency_s REAL NOT NULL, retries INTEGER NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS requests_by_identity ON requests (identity);
CREATE TABLE IF NOT EXISTS detections (
    digest TEXT NOT NULL, detector TEXT NOT NULL, detection TEXT, created REAL NOT NULL,
    PRIMARY KEY (digest, detector)) WITHOUT ROWID;
"""
_LAYOUT = "3"
"""The physical layout (table kinds, indexes, counters). Unlike STORE_SCHEMA, which is part of every cache key,
a new layout migrates a store in place when it is opened, and older extractors still read and write it. Answers
are counted by :meth:`LabelStore.commit_batch`, one update per batch (a trigger cost ~7 us per row); a layout-2
extractor that opens the store puts its counting trigger back and recounts, and this one drops the trigger and
recounts when it next opens the store. An extractor older than layout 2 leaves the counts short."""
_REBUILD_LABELS = f"""
CREATE TABLE labels_appended ({_LABEL_FIELDS});
INSERT INTO labels_appended SELECT * FROM labels;
DROP TABLE labels;
ALTER TABLE labels_appended RENAME TO labels;
"""
"""Layout 2 to 3: the labels as a rowid table (their triggers go with the old table)."""
_LAYOUT_SCRIPT = """
DROP INDEX IF EXISTS labels_by_source;
DROP INDEX IF EXISTS files_by_digest;
CREATE INDEX IF NOT EXISTS files_by_content ON files (digest, relative_path, root);
CREATE TABLE IF NOT EXISTS label_counts (
    teacher TEXT NOT NULL, preprocess TEXT NOT NULL, kind TEXT NOT NULL, answers INTEGER NOT NULL,
    PRIMARY KEY (teacher, preprocess, kind)) WITHOUT ROWID;
DELETE FROM label_counts;
INSERT INTO label_counts SELECT teacher, preprocess, kind, COUNT(*) FROM labels GROUP BY teacher, preprocess, kind;
CREATE TABLE IF NOT EXISTS row_counts (name TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR REPLACE INTO row_counts VALUES ('files', (SELECT COUNT(*) FROM files));
DROP TRIGGER IF EXISTS labels_counted;
CREATE TRIGGER IF NOT EXISTS labels_uncounted AFTER DELETE ON labels BEGIN
    UPDATE label_counts SET answers = answers - 1
    WHERE teacher = OLD.teacher AND preprocess = OLD.preprocess AND kind = OLD.kind;
END;
CREATE TRIGGER IF NOT EXISTS files_counted AFTER INSERT ON files BEGIN
    UPDATE row_counts SET count = count + 1 WHERE name = 'files';
END;
CREATE TRIGGER IF NOT EXISTS files_uncounted AFTER DELETE ON files BEGIN
    UPDATE row_counts SET count = count - 1 WHERE name = 'files';
END;
INSERT OR REPLACE INTO meta VALUES ('layout', '3');
"""
_CHECKPOINT_PAGES = 16_384  # 64 MiB of 4 KiB pages
GROUP_ROWS = 65_536
"""Answers a label job commits in one transaction, at most: the most that a kill -9 of the job loses. At 1M
answers a group of 64k writes about a third of a key-index page per answer; one of 4k, nearly a whole page."""
GROUP_WAIT_S = 1.0
"""Seconds after a commit at which a label job's next answered batch is committed with those pending: a kill
loses at most about the last second of answers."""
_LOOKUP_CHUNK = 900  # stays under SQLite's default limit of bound parameters
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
    reason: str


class LabelStore:
    """A persistent, content-addressed cache of teacher answers.

    Writes are grouped: :meth:`commit_batch` writes rows in one transaction, and a label job commits
    through a :class:`GroupCommit`, so a crash loses at most its open group. Safe to open from one
    thread; readers in other processes are fine (WAL).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise CacheError(f"--store {self.path} is a directory; give a file path such as labels.db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: the key indexes of a 1M-answer store
            # Checkpoints (each syncs the WAL and the file) every 64 MiB of WAL rather than 4 MiB: a page that
            # several commits changed is copied once. A kill loses nothing committed; a power cut may lose
            # what was committed since the last checkpoint (synchronous=NORMAL).
            self.db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
            self.db.executescript(_SCHEMA)
            self._check_schema()
            self._check_layout()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"{self.path} is not a usable label store: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_schema(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (STORE_SCHEMA,))
        elif row[0] != STORE_SCHEMA:
            raise CacheError(f"{self.path} has store schema {row[0]}; this extractor reads schema {STORE_SCHEMA}")

    def _check_layout(self) -> None:
        """Brings an older store's tables, indexes and counters to this layout, once (a layout-2 store's labels
        are copied into a rowid table: about 10 s at a million answers)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
        if row is None or row[0] != _LAYOUT:
            (labels,) = self.db.execute("SELECT sql FROM sqlite_master WHERE name = 'labels'").fetchone()
            rebuild = _REBUILD_LABELS if "WITHOUT ROWID" in labels.upper() else ""
            self.db.executescript(f"BEGIN IMMEDIATE; {rebuild} {_LAYOUT_SCRIPT} COMMIT;")

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
        rows = self.db.execute("SELECT relative_path, size, mtime_ns, digest FROM files WHERE root = ?", (root,))
        return {relative: (size, mtime_ns, digest) for relative, size, mtime_ns, digest in rows}

    def record_files(self, root: str, files: Iterable[tuple[str, int, int, str]]) -> None:
        """Remembers where each content was seen: (relative_path, size, mtime_ns, digest) under root."""
        now = time.time()
        with self._transaction():
            self.db.executemany(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(root, relative_path) DO UPDATE SET "
                "digest = excluded.digest, size = excluded.size, mtime_ns = excluded.mtime_ns, seen = excluded.seen",
                ((root, relative, digest, size, mtime_ns, now) for relative, size, mtime_ns, digest in files))

    # -- labels -----------------------------------------------------------------------

    def cached_digests(self, teacher: str, preprocess: str, digests: Iterable[str]) -> set[str]:
        """The subset of ``digests`` that already has an answer for this teacher and preprocessing."""
        found: set[str] = set()
        digests = list(digests)
        keys = dict(zip(cache_keys(digests, teacher, preprocess), digests))
        for chunk in _chunks(list(keys)):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key FROM labels WHERE key IN ({marks})", chunk)
            found.update(keys[key] for (key,) in rows)
        return found

    def commit_batch(self, job_id: int, teacher: str, preprocess: str, rows: Sequence[LabelRow],
                     failures: Sequence[Failure] = (), requests: Sequence[RequestRecord] = ()) -> None:
        """Writes answers, failures and ledger rows in one transaction, and counts the new answers."""
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
                                ((job_id, f.path, f.digest, f.stage, f.reason, now) for f in failures))
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

        query, params = _labels_query(teacher, preprocess, digests)
        return _shaped(pd.read_sql_query(query, self.db, params=params))

    def label_columns(self, rows: int = _EXPORT_CHUNK) -> Iterator[dict[str, list]]:
        """Every row of :meth:`labels`, ``rows`` at a time from one streamed cursor, as columns (name -> list;
        ``soft`` as its stored float32 bytes): memory stays flat whatever the size of the table (export)."""
        cursor = self.db.execute(_LABELS_QUERY)
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
        row = self.db.execute("SELECT COALESCE(SUM(images_sent), 0) FROM requests WHERE identity = ?",
                              (identity,)).fetchone()
        return int(row[0])

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
        found: dict[str, str | None] = {}
        for chunk in _chunks(list(digests)):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT digest, detection FROM detections WHERE detector = ? "
                                   f"AND digest IN ({marks})", [detector, *chunk])
            found.update(rows)
        return found

    def put_detections(self, detector: str, detections: Iterable[tuple[str, str | None]]) -> None:
        now = time.time()
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO detections VALUES (?, ?, ?, ?)",
                                ((digest, detector, detection, now) for digest, detection in detections))

    # -- summaries ----------------------------------------------------------------------

    def stats(self) -> dict:
        """Counts by teacher and preprocessing, jobs, failures and the request ledger."""
        query = self.db.execute
        by_source = query("SELECT teacher, preprocess, kind, answers FROM label_counts WHERE answers > 0").fetchall()
        answers = sum(count for *_, count in by_source)
        # One teacher and preprocessing: one answer per content. Several: count the contents (a scan).
        images = answers if len({(t, p) for t, p, *_ in by_source}) <= 1 else \
            query("SELECT COUNT(DISTINCT digest) FROM labels").fetchone()[0]
        ledger = query("SELECT identity, COUNT(*), SUM(images), SUM(images_sent), SUM(retries), "
                       "SUM(status NOT IN ('ok', '200')), AVG(latency_s), MAX(latency_s) FROM requests "
                       "GROUP BY identity").fetchall()
        return {
            "path": str(self.path),
            "size_bytes": self.path.stat().st_size,
            "labels": answers,
            "images": images,
            "files": query("SELECT count FROM row_counts WHERE name = 'files'").fetchone()[0],
            "by_teacher": [{"teacher": t, "preprocess": p, "kind": k, "labels": n} for t, p, k, n in by_source],
            "jobs": [dict(zip(("id", "kind", "status", "started", "finished", "summary"), row[:5] + (
                json.loads(row[5]) if row[5] else None,))) for row in query(
                "SELECT id, kind, status, started, finished, summary FROM jobs ORDER BY id")],
            "failures": query("SELECT COUNT(*) FROM failures").fetchone()[0],
            "detections": query("SELECT COUNT(*) FROM detections").fetchone()[0],
            "requests": [dict(zip(("identity", "requests", "images", "images_sent", "retries", "errors",
                                   "mean_latency_s", "max_latency_s"), row)) for row in ledger],
        }

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


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
    """

    def __init__(self, store: LabelStore, job_id: int, rows: int = GROUP_ROWS, wait_s: float = GROUP_WAIT_S) -> None:
        self.store, self.job_id, self.rows, self.wait_s = store, job_id, rows, wait_s
        self._source: tuple[str, str] | None = None  # (teacher, preprocess) of the pending answers
        self._answers: list[LabelRow] = []
        self._committed = float("-inf")  # time.monotonic() of the last commit of answers

    def add(self, teacher: str, preprocess: str, rows: Sequence[LabelRow], failures: Sequence[Failure] = (),
            requests: Sequence[RequestRecord] = ()) -> None:
        """Takes one answered batch; commits the answers when due, else only the failures and records."""
        if rows and self._source not in (None, (teacher, preprocess)):
            self.flush()  # a transaction holds the answers of one teacher and preprocessing
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


LABEL_COLUMNS: tuple[str, ...] = ("digest", "teacher", "preprocess", "label", "kind", "soft", "created", "root",
                                  "relative_path")
# The first path seen for each content, from one search of the (digest, relative_path, root) index per answer:
# the table is read in its own order (no sort, no temporary table), so the cursor streams.
_LABELS_QUERY = (
    "SELECT l.digest, l.teacher, l.preprocess, l.label, l.kind, l.soft, l.created, "
    "(SELECT relative_path || char(0) || root FROM files WHERE digest = l.digest "
    "ORDER BY relative_path LIMIT 1) AS seen FROM labels l"
)


def _labels_query(teacher: str | None, preprocess: str | None,
                  digests: Sequence[str] | None) -> tuple[str, list[str]]:
    """The labels query with its filters. Contents of one teacher and preprocessing are found by their keys
    (the primary key); the table has no index by content alone, which would slow every insert."""
    if digests is not None and teacher and preprocess:
        keys = cache_keys(digests, teacher, preprocess)
        return _LABELS_QUERY + f" WHERE l.key IN ({','.join('?' * len(keys))})", keys
    where, params = _where(teacher=teacher, preprocess=preprocess)
    if digests is not None:
        marks = ",".join("?" * len(digests))
        where += (" AND " if where else " WHERE ") + f"l.digest IN ({marks})"
        params = [*params, *digests]
    return _LABELS_QUERY + where, params


def _shaped(frame: pd.DataFrame) -> pd.DataFrame:
    """The query's rows as :meth:`LabelStore.labels` returns them: soft as float32 arrays, the path split."""
    frame["soft"] = [None if blob is None else np.frombuffer(blob, dtype=np.float32) for blob in frame["soft"]]
    seen = [(None, None) if text is None else text.split("\0", 1) for text in frame.pop("seen").tolist()]
    frame["root"] = [root for _, root in seen]
    frame["relative_path"] = [relative for relative, _ in seen]
    return frame


def _where(**filters: str | None) -> tuple[str, list[str]]:
    clauses = [f"l.{name} = ?" for name, value in filters.items() if value]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), [v for v in filters.values() if v]


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _LOOKUP_CHUNK):
        yield items[start:start + _LOOKUP_CHUNK]
