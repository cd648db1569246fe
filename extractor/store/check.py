"""`store check`: SQLite's integrity check of a store, then the invariants of its answers, read without writing."""
from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from extractor.errors import CacheError
from extractor.store.keys import STORE_SCHEMA, cache_keys
from extractor.store.journal import SENDING
from extractor.store.lock import read_holder
from extractor.store.schema import LAYOUT, connect_read_only, foreign

_KINDS = ("probs", "logits", "topk", "label")
_INTEGRITY_LINES = 20  # integrity_check stops after this many problems
_CHUNK = 50_000  # answers read at a time
_EXAMPLES = 3  # example keys named per kind of problem


@dataclass
class CheckReport:
    """What a check found: ``healthy`` iff SQLite's integrity check is "ok" and no invariant is broken."""

    path: str
    integrity: list[str] = field(default_factory=list)
    """integrity_check's lines: ["ok"] for a sound file."""
    problems: list[str] = field(default_factory=list)
    """Broken invariants, one line each."""
    notes: list[str] = field(default_factory=list)
    """What is worth knowing but not wrong (requests left in flight by a killed job, an older layout)."""
    answers: int = 0
    """Answers checked."""
    foreign: str | None = None
    """What the file is, when it is not an extractor store."""
    check: str = "integrity_check"
    """SQLite's check that ran: "integrity_check" or "quick_check"."""
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return self.integrity == ["ok"] and not self.problems

    @property
    def damaged(self) -> bool:
        """The file itself is damaged (SQLite's check failed or could not run), not just an invariant."""
        return self.foreign is None and self.integrity != ["ok"]

    def as_dict(self) -> dict:
        return {**asdict(self), "healthy": self.healthy, "damaged": self.damaged}


def check_store(path: Path, thorough: bool = True) -> CheckReport:
    """Checks the file at ``path``: integrity first, then, when the file is sound, the answers: each key is the
    hash of its content, teacher and preprocessing; each soft vector has ``num_classes`` finite float32 values;
    labels lie within the classes; the counters match the tables.

    Args:
        thorough: SQLite's ``integrity_check`` (every page, and every index against its table: about 5 s per
            million answers); else its ``quick_check`` (every page, no index cross-check: about 0.5 s).
    """
    started = time.perf_counter()
    report = CheckReport(str(path))
    what = foreign(path)
    if what is not None:
        report.foreign = what
        report.problems.append(f"not an extractor store: {what}")
        report.seconds = time.perf_counter() - started
        return report
    try:
        db = connect_read_only(path)
    except CacheError as exc:
        report.problems.append(str(exc))
        return report
    try:
        pragma = "integrity_check" if thorough else "quick_check"
        report.check = pragma
        report.integrity = [row[0] for row in db.execute(f"PRAGMA {pragma}({_INTEGRITY_LINES})")]
        if report.integrity == ["ok"]:
            _invariants(db, path, report)
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"the file cannot be read: {exc}")
    finally:
        db.close()
    report.seconds = time.perf_counter() - started
    return report


def _invariants(db: sqlite3.Connection, path: Path, report: CheckReport) -> None:
    meta = dict(db.execute("SELECT key, value FROM meta"))
    if meta.get("schema") != STORE_SCHEMA:
        report.problems.append(f"store schema {meta.get('schema')}; this extractor reads schema {STORE_SCHEMA}")
        return
    if meta.get("layout") != LAYOUT:
        report.notes.append(f"layout {meta.get('layout')}: brought up to layout {LAYOUT} when next written")
        return
    counts: dict[tuple[str, str, str], int] = {}
    bad: dict[str, list[str]] = {}
    cursor = db.execute("SELECT key, digest, teacher, preprocess, label, kind, soft, num_classes FROM labels")
    while chunk := cursor.fetchmany(_CHUNK):
        report.answers += len(chunk)
        _check_answers(chunk, counts, bad)
    for reason, keys in bad.items():
        report.problems.append(f"{len(keys)} answers {reason} (e.g. key {keys[0][:16]})")
    stored = {(t, p, k): n for t, p, k, n in db.execute("SELECT teacher, preprocess, kind, answers FROM label_counts")
              if n}
    if stored != counts:
        report.problems.append(f"the answer counters say {sum(stored.values())} answers, the table holds "
                               f"{sum(counts.values())} (counted again when next written)")
    (files,) = db.execute("SELECT COUNT(*) FROM files").fetchone()
    counted = db.execute("SELECT count FROM row_counts WHERE name = 'files'").fetchone()
    if counted is None or counted[0] != files:
        report.problems.append(f"the file counter says {counted[0] if counted else None}, the table holds {files}")
    (negative,) = db.execute("SELECT COUNT(*) FROM requests WHERE images_sent < 0 OR images < 0").fetchone()
    if negative:
        report.problems.append(f"{negative} request records have a negative image count")
    (in_flight,) = db.execute("SELECT COUNT(*) FROM requests WHERE status = ?", (SENDING,)).fetchone()
    if in_flight:
        holder = read_holder(path)
        report.notes.append(f"{in_flight} requests in flight" + (
            f" ({holder.describe()})" if holder else ", left by a killed job; counted as sent"))


def _check_answers(rows: list[tuple], counts: dict[tuple[str, str, str], int], bad: dict[str, list[str]]) -> None:
    """Checks one chunk of answers (key, digest, teacher, preprocess, label, kind, soft, num_classes), adding to
    the counts by source and to the problems by reason; the soft vectors a matrix at a time."""
    by_source: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        by_source.setdefault((row[2], row[3]), []).append(row)
    for (teacher, preprocess), group in by_source.items():
        for kind, count in Counter(row[5] for row in group).items():
            counts[(teacher, preprocess, kind)] = counts.get((teacher, preprocess, kind), 0) + count
        expected = cache_keys([row[1] for row in group], teacher, preprocess)
        _add(bad, "are stored under a key that is not theirs",
             [row[0] for row, want in zip(group, expected) if row[0] != want])
        by_length: dict[int, list[tuple]] = {}
        for row in group:
            key, _, _, _, _, kind, soft, classes = row
            if kind not in _KINDS:
                _add(bad, f"have an unknown kind {kind!r}", [key])
            elif soft is None:
                if kind != "label":
                    _add(bad, "lack their soft vector", [key])
            elif len(soft) % 4 or not soft or (classes is not None and len(soft) != 4 * classes):
                _add(bad, "have a soft vector of the wrong length", [key])
            else:
                by_length.setdefault(len(soft), []).append(row)
        for length, same in by_length.items():
            scores = np.frombuffer(b"".join(row[6] for row in same), dtype=np.float32).reshape(len(same), length // 4)
            labels = np.fromiter((row[4] for row in same), dtype=np.int64, count=len(same))
            finite = np.isfinite(scores).all(axis=1)
            outside = finite & ((labels < 0) | (labels >= length // 4))
            _add(bad, "have NaN or infinite scores", [same[i][0] for i in np.flatnonzero(~finite)])
            _add(bad, "have a label outside their classes", [same[i][0] for i in np.flatnonzero(outside)])


def _add(bad: dict[str, list[str]], reason: str, keys: list[str]) -> None:
    """Counts ``keys`` under ``reason``, naming the first few."""
    if keys:
        named = bad.setdefault(reason, [])
        named += [key if len(named) + i < _EXAMPLES else "" for i, key in enumerate(keys)]
