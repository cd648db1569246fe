"""The store's tables, its layout migrations, and how a file is recognised as a store before anything is written."""
from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path

from extractor.errors import CacheError
from extractor.store.keys import STORE_SCHEMA
from extractor.store.files import store_files

LABEL_FIELDS = """
    key TEXT NOT NULL PRIMARY KEY, digest TEXT NOT NULL, teacher TEXT NOT NULL, preprocess TEXT NOT NULL,
    label INTEGER NOT NULL, kind TEXT NOT NULL, soft BLOB, num_classes INTEGER,
    job_id INTEGER, created REAL NOT NULL"""
# A rowid table: answers are appended in the order they come and only the key index takes random writes.
# (A WITHOUT ROWID table, layout 2, keeps whole rows in key order, interior pages included: a random insert
# rewrote about 2.5x the bytes.)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS teachers (
    fingerprint TEXT PRIMARY KEY, description TEXT NOT NULL, num_classes INTEGER,
    class_names TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS preprocessings (
    fingerprint TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS labels ({LABEL_FIELDS});
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
CREATE TABLE IF NOT EXISTS invalid_answers (
    key TEXT NOT NULL PRIMARY KEY, digest TEXT NOT NULL, teacher TEXT NOT NULL, preprocess TEXT NOT NULL,
    reason TEXT NOT NULL, job_id INTEGER NOT NULL, time REAL NOT NULL) WITHOUT ROWID;
"""
"""Every table, created where missing each time a store is opened for writing: a table added here (as
``invalid_answers`` was, for answers the teacher gave but that cannot be used) is the whole migration, and
extractors that do not know it ignore it."""
LAYOUT = "3"
"""The physical layout (table kinds, indexes, counters). Unlike STORE_SCHEMA, which is part of every cache key,
a new layout migrates a store in place when it is opened, and older extractors still read and write it. Answers
are counted by :meth:`LabelStore.commit_batch`, one update per batch (a trigger cost ~7 us per row); a layout-2
extractor that opens the store puts its counting trigger back and recounts, and this one drops the trigger and
recounts when it next opens the store. An extractor older than layout 2 leaves the counts short."""
_REBUILD_LABELS = f"""
CREATE TABLE labels_appended ({LABEL_FIELDS});
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
SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES_NAMED = 6  # tables of a foreign database named in the message


def uri(path: Path, *, immutable: bool = False) -> str:
    """A read-only SQLite URI for ``path``; ``immutable`` also skips locking and the WAL (read-only media)."""
    quoted = urllib.parse.quote(str(Path(path).resolve()))
    return f"file:{quoted}?{'immutable=1' if immutable else 'mode=ro'}"


def foreign(path: Path) -> str | None:
    """What ``path`` is when it is not an extractor store, read without changing it; None for a store, an
    empty file or an empty SQLite database (a new store may be made there)."""
    with open(path, "rb") as file:
        head = file.read(100)
    if not head:
        return None
    if not head.startswith(SQLITE_MAGIC):
        return f"it is not a SQLite database ({_sniff(head)})"
    try:
        db = connect_read_only(path)
        try:
            tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                     "ORDER BY name")]
            ours = "meta" in tables and db.execute("SELECT 1 FROM meta WHERE key = 'schema'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return f"it is a damaged SQLite database ({exc}); `extractor store check` says more"
    if not tables or ours:
        return None
    named = ", ".join(tables[:_TABLES_NAMED]) + (f" and {len(tables) - _TABLES_NAMED} more"
                                                 if len(tables) > _TABLES_NAMED else "")
    return f"it is a SQLite database of another program (tables: {named})"


def _sniff(head: bytes) -> str:
    """A few words on what a file's first bytes say it is."""
    for magic, name in ((b"PAR1", "a Parquet file"), (b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "gzip data"),
                        (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image")):
        if head.startswith(magic):
            return name
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if not all(char.isprintable() or char in "\t\r\n" for char in text):
        return f"binary data starting {head[:8].hex(' ')}"
    first = text.splitlines()[0][:40] if text.strip() else ""
    return f"text starting {first!r}"


def open_writable(path: Path) -> sqlite3.Connection:
    """Opens (or creates) a store for reading and writing: WAL, its tables, its layout."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: the key indexes of a 1M-answer store
        # Checkpoints (each syncs the WAL and the file) every 64 MiB of WAL rather than 4 MiB: a page that
        # several commits changed is copied once. A kill loses nothing committed; a power cut may lose
        # what was committed since the last checkpoint (synchronous=NORMAL).
        db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
        db.executescript(SCHEMA)
        _check_schema(db, path, create=True)
        _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def open_read_only(path: Path) -> sqlite3.Connection:
    """Opens a store that this process cannot write (a read-only file or mount) without writing anything.

    ``mode=ro`` reads the WAL where its index can be made; on read-only media with no ``-wal`` left (a store
    closed cleanly) it cannot, and the store is opened ``immutable``. A ``-wal`` that holds commits but cannot
    be read is an error: the ``.db`` alone would lack them.
    """
    db = connect_read_only(path)
    try:
        db.execute("PRAGMA cache_size=-65536")
        _check_schema(db, path, create=False)
        layout = db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
        if layout is None or layout[0] != LAYOUT:
            raise CacheError(f"--store {path} has an older layout and is read-only; open it once where it can be "
                             "written (any extractor command) to bring it up to date")
    except BaseException:
        db.close()
        raise
    return db


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write: ``mode=ro``, or ``immutable`` on read-only media without a ``-wal``."""
    db = sqlite3.connect(uri(path), uri=True, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as exc:
        db.close()
        if "unable to open" not in str(exc):
            raise
    wal = store_files(path)[1]
    if wal.exists() and wal.stat().st_size > 0:
        raise CacheError(f"--store {path} is read-only and its {wal.name} holds answers that cannot be read "
                         "here; copy the .db and its -wal together to a writable place")
    return sqlite3.connect(uri(path, immutable=True), uri=True, isolation_level=None, check_same_thread=False)


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether the store has table ``name`` (a read-only store from an older extractor may lack newer ones)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _check_schema(db: sqlite3.Connection, path: Path, *, create: bool) -> None:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None and create:
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (STORE_SCHEMA,))
    elif row is None:
        raise CacheError(f"{path} is not a usable label store: it has no store schema")
    elif row[0] != STORE_SCHEMA:
        raise CacheError(f"{path} has store schema {row[0]}; this extractor reads schema {STORE_SCHEMA}")


def _migrate(db: sqlite3.Connection) -> None:
    """Brings an older store's tables, indexes and counters to this layout, once (a layout-2 store's labels
    are copied into a rowid table: about 10 s at a million answers)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
    if row is None or row[0] != LAYOUT:
        (labels,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'labels'").fetchone()
        rebuild = _REBUILD_LABELS if "WITHOUT ROWID" in labels.upper() else ""
        db.executescript(f"BEGIN IMMEDIATE; {rebuild} {_LAYOUT_SCRIPT} COMMIT;")
